"""``gtl markov ratios``: the grid end to end, resume and damaged cells, results schema, report and bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from gtl_verify.cli import main
from gtl_verify.config import ConfigError
from gtl_verify.provenance import write_results
from gtl_verify.estimators.base import CheckedSequenceRatio
from gtl_verify.results import RatiosResults, ResultsSchemaError, check_envelope
from gtl_verify.storage import DamagedCacheWarning
from gtl_verify.store import ComponentStore
from markov import ratios
from markov.ratios import RatiosConfig, load_ratios_config
from reports.builder import build_report
from reports.render_ratios import _separation, level_tv, monotone, overlapping, trend_text
from reports.schema import ResultsError
from reports.stats import summarize

TINY_FILE = Path(__file__).resolve().parents[1] / "markov" / "ratios_tiny.toml"
TINY = load_ratios_config(TINY_FILE)
ONE = dataclasses.replace(TINY, estimators=("noisy-classifier",), n_targets=(8,), seeds=(0,), steps=(3,))


def test_tiny_grid_has_every_cell_and_resumes(tmp_path, monkeypatch):
    results = ratios.run_ratios(TINY, tmp_path, progress=False)
    jobs = {(c["preset"], c["seed"], c["estimator"], c["n_target"], c["steps"]) for c in results.cells}
    assert len(results.cells) == len(jobs) == 2 * 2 * 2 * 2  # estimators x n x seeds x steps
    assert [(r["estimator"], r["seed"]) for r in results.reference] == [("exact-ratio", 0), ("exact-ratio", 1)]
    for ref in results.reference:  # the exact ratio: no ratio error at all
        assert ref["single_site_tv"] == pytest.approx(0, abs=1e-9) and ref["log_ratio_rmse"] == pytest.approx(0, abs=1e-9)
    for cell in results.cells:
        assert 0 <= cell["single_site_tv"] <= 1 and cell["metrics"]["transition_kl"] >= 0 and cell["fit_s"] >= 0
        assert {g["t"] for g in cell["levels"]} == set(TINY.times) and {g["domain"] for g in cell["levels"]} == {"source", "target"}
    # a re-run reads every finished cell
    monkeypatch.setattr(ratios, "run_cell", lambda *a, **k: pytest.fail("a finished cell was recomputed"))
    monkeypatch.setattr(ratios, "reference_cell", lambda *a, **k: pytest.fail("a finished cell was recomputed"))
    again = ratios.run_ratios(TINY, tmp_path, progress=False)
    assert again.cells == json.loads(json.dumps(results.cells))
    # ... refuses a folder of another configuration
    with pytest.raises(ValueError, match="another configuration"):
        ratios.run_ratios(dataclasses.replace(TINY, samples=41), tmp_path, progress=False)


def test_a_damaged_cell_is_named_and_recomputed(tmp_path):
    first = ratios.run_ratios(ONE, tmp_path, progress=False)
    path = ratios.cell_path(tmp_path, "diagonal", 0, "noisy-classifier", 8, 3)
    path.write_text('{"preset": "diag')  # a truncated write
    with pytest.warns(DamagedCacheWarning, match=path.name):
        again = ratios.run_ratios(ONE, tmp_path, progress=False)
    assert again.cells[0]["single_site_tv"] == pytest.approx(first.cells[0]["single_site_tv"])  # seeded: the same fit
    assert json.loads(path.read_text())["estimator"] == "noisy-classifier"
    for text in ("{}", '{"metrics": {}, "single_site_tv": NaN, "levels": []}'):  # parses, but is not a cell
        path.write_text(text)
        with pytest.warns(DamagedCacheWarning, match=path.name):
            assert ratios.run_ratios(ONE, tmp_path, progress=False).cells[0]["single_site_tv"] == \
                pytest.approx(first.cells[0]["single_site_tv"])


@pytest.mark.parametrize("change, message", [
    ({"times": (0.0,)}, r"times must be in \(0, 1\], got 0.0"),
    ({"seeds": (0, 0)}, r"seeds must not repeat a value, got \[0, 0\]"),
    ({"estimators": ("paper", "paper")}, "estimators must not repeat"),
    ({"samples": 3 * 10**9}, "samples = 3000000000 needs about"),
    ({"n_targets": (10**10,)}, r"n_targets \(with n_source\) = 10000000\d+ needs about"),
])
def test_config_refuses_what_would_fail_late(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(ONE, **change)


def test_learned_denoiser_is_trained_once_and_used(tmp_path):
    config = dataclasses.replace(ONE, estimators=("guided-likelihood",), denoiser="learned", denoiser_steps=2)
    results = ratios.run_ratios(config, tmp_path, progress=False)
    assert len(results.cells) == 1 and len(list((tmp_path / "models").glob("source-denoiser-*.pt"))) == 1
    exact = ratios.run_ratios(dataclasses.replace(config, denoiser="exact"), tmp_path / "exact", progress=False)
    assert exact.cells[0]["single_site_tv"] != results.cells[0]["single_site_tv"]


def test_cli_writes_results_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["markov", "ratios", "--config", str(TINY_FILE), "--out", str(out), "--quiet"]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["kind"] == "ratios" and data["meta"]["config"]["estimators"] == list(TINY.estimators)
    report = (out / "results.md").read_text()
    for text in ("single-site TV: mean [95% bootstrap interval]", "by masking level", "Monotonicity in n", "t = 0.3"):
        assert text in report
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == sorted(f"results-diagonal-{f}.png" for f in ("tv-vs-n", "kl-vs-n", "tv-vs-level", "tv-vs-steps", "kl-vs-steps"))
    assert "report:" in capsys.readouterr().out


@pytest.mark.parametrize("toml, message", [
    ('estimators = ["magic"]', "estimators must be chosen from"),
    ("n_targets = []", "n_targets must hold at least one value"),
    ("n_targets = [0]", "n_targets must be in"),
    ("times = [1.5]", "times must be in"),
    ('denoiser = "perfect"', "denoiser must be one of"),
    ("steps = [0]", "steps must be in"),
    ("n_target = [5]", "unknown key"),
])
def test_bad_config_is_one_line_naming_the_field(tmp_path, capsys, toml, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=message):
        load_ratios_config(path)
    assert main(["markov", "ratios", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gtl markov: error:") and message in err and "\n" not in err
    assert not (tmp_path / "run").exists()  # nothing done


def test_n_target_beyond_the_data_is_named(tmp_path):
    setting = ratios.make_setting(ONE, "diagonal", 0, ComponentStore(None))
    with pytest.raises(ValueError, match="n_target must be at most the 8 target training sequences drawn, got 9"):
        ratios.run_cell(ONE, setting, "noisy-classifier", 9, 3)


def test_nan_ratio_is_one_line_naming_the_estimator(tmp_path, capsys, monkeypatch):
    class NaNEstimator:
        needs_denoiser = False

        def fit(self, *a, **k):
            return CheckedSequenceRatio("noisy-classifier", lambda z, t=None: torch.full((len(z),), float("nan")), {})

    monkeypatch.setattr(ratios, "get_estimator", lambda name: NaNEstimator())
    path = tmp_path / "one.toml"
    path.write_text(TINY_FILE.read_text().replace('["noisy-classifier", "guided-likelihood"]', '["noisy-classifier"]'))
    assert main(["markov", "ratios", "--config", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "ratio model of estimator 'noisy-classifier' returned NaN" in err and "\n" not in err


def test_results_kind_ratios_is_checked(tmp_path):
    with pytest.raises(ResultsSchemaError, match="kind 'ratios' needs results key 'cells'"):
        check_envelope({"kind": "ratios", "schema_version": 2, "meta": {}, "results": {"config": {}}}, "x.json")
    assert RatiosResults.required() == ("cells", "config")
    bad = tmp_path / "bad.json"
    cell = {"preset": "p", "seed": 0, "estimator": "e", "n_target": 5, "steps": 1, "fit_s": 1.0, "single_site_tv": 0.1,
            "log_ratio_rmse": 0.1, "single_site_tv_by_domain": {"target": 0.1}, "metrics": {"transition_kl": "high"},
            "levels": []}
    bad.write_text(json.dumps({"kind": "ratios", "schema_version": 2, "meta": {}, "results": {"config": {}, "cells": [cell]}}))
    with pytest.raises(ResultsError, match=r"results.cells\[0\].metrics.transition_kl must be a number"):
        build_report(bad, tmp_path)


def test_report_helpers():
    levels = [{"t": 0.5, "tv": 0.2, "positions": 1}, {"t": 0.5, "tv": 0.5, "positions": 3}, {"t": 0.9, "tv": 0.9, "positions": 2}]
    assert level_tv(levels, 0.5) == pytest.approx((0.2 + 1.5) / 4) and level_tv(levels, 0.1) is None
    assert monotone([(100, summarize([0.2])), (20, summarize([0.3])), (1000, summarize([0.1]))])
    assert not monotone([(100, summarize([0.2])), (20, summarize([0.3])), (1000, summarize([0.2]))])
    falls = [(20, summarize([0.5, 0.45])), (100, summarize([0.2, 0.18])), (1000, summarize([0.1, 0.09]))]
    assert trend_text(falls) == "falls monotonically with n"
    flat = falls + [(5000, summarize([0.1, 0.092]))]  # mean up by 0.001, intervals overlap
    assert trend_text(flat).startswith("does not fall strictly: its mean rises at n = 1000 -> 5000 within overlapping")
    up = falls + [(5000, summarize([0.3, 0.31]))]  # a rise the seeds resolve
    assert trend_text(up) == "RISES with n beyond its intervals at n = 1000 -> 5000"
    apart, near = summarize([0.40, 0.42, 0.41]), summarize([0.10, 0.12, 0.11])
    assert not overlapping(apart, near) and overlapping(apart, summarize([0.41, 0.43, 0.39]))
    assert overlapping(summarize([0.4]), near)  # one seed: no interval, so no separation is claimed
    assert _separation([(20, apart), (100, near)]) == "; every step separated by its interval"
    assert _separation([(20, apart), (100, summarize([0.41, 0.39, 0.40]))]) == "; the intervals overlap at n = 20 -> 100"


def test_config_budget_and_hash():
    assert RatiosConfig().budget(600).train.steps == 600 and RatiosConfig().budget(600).size.hidden == 32
    assert TINY.cell_hash() == dataclasses.replace(TINY, seeds=(5,), steps=(9,)).cell_hash()
    assert TINY.cell_hash() != dataclasses.replace(TINY, samples=99).cell_hash()
    with pytest.raises(ValueError, match="lr"):
        RatiosConfig(lr=0.0)


def test_steps_curve_only_at_its_n_targets(tmp_path):
    config = dataclasses.replace(TINY, steps_n_targets=(8,))
    jobs = ratios._jobs(config)
    assert {(n, k) for _, _, _, n, k in jobs} == {(16, 6), (8, 6), (8, 3)} and len(jobs) == 2 * 2 * 3
    assert len(ratios._jobs(TINY)) == 16  # None: every step count at every n
    small = dataclasses.replace(config, estimators=("noisy-classifier",), seeds=(0,))
    results = ratios.run_ratios(small, tmp_path, progress=False)
    path = write_results(tmp_path / "results.json", "ratios", results, {})
    report = build_report(path, tmp_path).read_text()
    assert "against training steps at n target = 8" in report and "Estimators fitted for 6 steps" in report
    assert config.cell_hash() == TINY.cell_hash()
    with pytest.raises(ConfigError, match=r"steps_n_targets must be chosen from n_targets \[16, 8\], got 5"):
        dataclasses.replace(TINY, steps_n_targets=(5,))


def test_committed_grids_load():
    grid = load_ratios_config(TINY_FILE.parent / "ratios.toml")
    assert len(grid.seeds) >= 5 and all(5 <= n <= 5000 for n in grid.n_targets) and grid.presets == ("paper",)
    assert len(ratios._jobs(grid)) == len(grid.estimators) * len(grid.seeds) * (len(grid.n_targets) + 1)
    assert TINY.length == 4 and len(TINY.steps) == 2  # the tiny grid draws every figure
