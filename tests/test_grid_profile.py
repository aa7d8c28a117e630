"""benchmarks/grid_profile.py: stage timing, the slice, the projection and the report table (the runs themselves are minutes long)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmark_scripts import load_benchmark

gp = load_benchmark("grid_profile")
ROOT = Path(__file__).resolve().parents[1]


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_nested_stage_is_not_counted_in_its_parent():
    timer = gp.StageTimer()
    with timer.stage("outer"):
        _busy(0.05)
        with timer.stage("inner"):
            _busy(0.1)
    assert timer.calls == {"outer": 1, "inner": 1}
    assert 0.09 <= timer.cpu["inner"] and 0.04 <= timer.cpu["outer"] < 0.09


def test_a_wrapped_call_named_none_is_counted_in_the_enclosing_stage():
    class Owner:
        @staticmethod
        def work(seconds):
            _busy(seconds)
            return seconds

    timer = gp.StageTimer()
    timer.wrap(Owner, "work", lambda seconds: None if seconds < 0.06 else "long")
    with timer.stage("outer"):
        assert Owner.work(0.05) == 0.05
    Owner.work(0.07)
    assert set(timer.cpu) == {"outer", "long"} and timer.cpu["outer"] >= 0.04 and timer.calls["long"] == 1


def test_slice_has_one_seed_the_n_targets_no_sweeps_and_the_given_methods():
    config = gp.slice_config(ROOT, gp.GRID, [1000, 20], 3, ["source-only", "gtl"])
    assert config.seeds == (3,) and config.n_targets == (1000, 20) and config.methods == ("source-only", "gtl")
    assert config.gamma_sweep == () and config.overlap_sweep == ()
    full = gp.load_grid_shape(ROOT / gp.GRID)
    assert full["seeds"] > 1 and full["n_targets"] > 2  # the whole file, not the slice
    assert "gtl-paper" in full["methods"] and full["gamma_sweep"] > 0 and full["overlap_sweep"]


def _run(variant, cpu, stages, cells, methods=("source-only", "gtl", "gtl-oracle-denoiser"), grid=None, probes=None):
    grid = grid or {"seeds": 3, "n_targets": 5, "methods": list(methods), "gamma_sweep": 0, "overlap_sweep": [],
                    "ratio_needs_denoiser": False}
    return {"variant": variant, "total": {"wall_s": 2 * cpu, "cpu_s": cpu}, "stages": {k: {"cpu_s": v} for k, v in stages.items()},
            "cells": cells, "components": [], "methods": list(methods), "ratio_estimator": "e", "ratio_steps": 1000,
            "grid": grid, "probes": probes or {}, "load_before": "load 1", "load_after": "load 2"}


def test_projection_scales_per_seed_and_per_cell_stages_and_adds_the_sweeps():
    stages = {"train: source-denoiser": 10.0, "data": 1.0, "train: learned ratio": 40.0, "sampling: gtl": 6.0,
              "density pass: gtl": 2.0, "sampling: gtl-oracle-denoiser": 4.0, "metrics": 0.0}
    grid = {"seeds": 3, "n_targets": 5, "methods": ["source-only", "gtl", "gtl-oracle-denoiser"], "gamma_sweep": 5,
            "overlap_sweep": [0.0, 0.5], "ratio_needs_denoiser": True}
    run = _run("after", 70.0, stages, {}, grid=grid)  # 7 s outside the stages
    p = gp.project(run, 2, grid)  # a slice of 2 cells
    assert p.once_s == pytest.approx(7.0) and p.per_seed_s == pytest.approx(11.0) and p.per_cell_s == pytest.approx(26.0)
    assert p.gamma_sweep_s == pytest.approx(3 * 5 * 4.0)  # gtl's sampling and density pass per cell
    assert p.overlap_sweep_s == pytest.approx(3 * ((20.0 + 10.0 + 1.0 + 2.0) + 2.0))  # ratio, source denoiser, data, eval; overlap 0: eval
    assert p.total_s == pytest.approx(7 + 3 * 11 + 15 * 26 + 60 + p.overlap_sweep_s)
    extra = gp.project(run, 2, {**grid, "methods": grid["methods"] + ["gtl-paper"]},
                       {"gtl-paper": {"ratio_fit_s": 90.0, "sampling_s": 5.0, "other_s": 1.0, "probe_steps": 200}})
    assert extra.extra_methods_s == pytest.approx(15 * 96.0) and extra.total_s == pytest.approx(p.total_s + 15 * 96.0)


def test_report_gives_ratios_kl_side_by_side_and_flags_different_after_cells():
    meta = {"base": "abc", "head": "def", "grid": gp.GRID, "seed": 0, "n_targets": [100], "probe_steps": 0, "baseline_wall_s": 4898.0}
    cells = {"gtl n=100": {"transition_kl": 0.1}}
    before = _run("before", 10.0, {"train: a": 6.0, "density pass: gtl": 2.0}, {"gtl n=100": {"transition_kl": 0.2}})
    after = _run("after", 5.0, {"train: a": 4.0}, cells)
    workers = _run("after, 2 workers", 6.0, {}, dict(cells))
    workers["total"]["wall_s"] = 5.0
    text = gp.markdown([before, after, workers], meta)
    assert "| after | 10 | 5 | 2.00x |" in text and "| density pass: gtl | 2.0 | 20.0% | 0.0 | 0.0% | 0.00 |" in text
    assert "| gtl n=100 | 0.2000 | 0.1000 |" in text and "equal exactly: **True**" in text
    assert "a projection from the slice, not a measurement" in text and "measured at 4,898 s wall" in text
    workers["cells"] = {"gtl n=100": {"transition_kl": 0.3}}
    text = gp.markdown([before, after, workers], meta)
    assert "equal exactly: **False**" in text and "- differs: gtl n=100" in text


def test_sampling_time_is_left_out_of_the_compared_metrics():
    cells = {"gtl n=5": {"transition_kl": 0.1, "sampling_s": 3.2}}
    assert gp.strip_times(cells) == {"gtl n=5": {"transition_kl": 0.1}}
    assert gp.differing({"a": 1, "b": 2}, {"a": 1, "c": 2}) == ["b", "c"]
