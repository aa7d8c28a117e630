"""The Markov benchmark end to end on a tiny grid: schema, metrics, resume and configuration."""

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from gtl_verify.methods import METHODS

from markov import benchmark
from markov.config import MarkovConfig, ModelSizes, TrainingBudget, load_config, markov_methods

TINY = MarkovConfig(
    presets=("diagonal",), n_targets=(8,), seeds=(0,), n_source=200, length=4, samples=40, methods=markov_methods(),
    gamma_sweep=(0.0, 1.0), gamma_sweep_n_target=8, overlap_sweep=(0.5,), overlap_n_target=8,
    models=ModelSizes(denoiser_hidden=16, denoiser_blocks=1, ratio_hidden=8, ratio_blocks=1, heads=2),
    training=TrainingBudget(source_steps=5, target_steps=5, finetune_steps=3, ratio_steps=5, planner_steps=3, batch_size=16),
)


def test_tiny_grid_runs_and_resumes(tmp_path, monkeypatch):
    results = benchmark.run_benchmark(TINY, tmp_path, progress=False)
    assert {c["method"] for c in results.cells} == set(TINY.methods)
    for cell in results.cells:
        m = cell["metrics"]
        assert m["transition_kl"] >= 0
        if not METHODS[cell["method"]].planner:  # a learned planner's law is not enumerated
            assert m["exact_tv"] is not None and 0 <= m["exact_tv"] <= 1  # (K+1)^L = 1296 states: enumerable
            assert m["exact_kl"] is not None
    oracle = next(c for c in results.cells if c["method"] == "gtl-oracle-ratio")
    assert oracle["metrics"]["ratio_passes_per_sequence"] == 0  # exact single-site ratio: no network passes
    gtl = next(c for c in results.cells if c["method"] == "gtl")
    assert TINY.ratio_estimator == "guided-likelihood"  # the default: a single-site model, one pass per step
    assert gtl["metrics"]["ratio_passes_per_sequence"] == 0
    assert gtl["metrics"]["single_site_passes_per_sequence"] == TINY.length  # one pass per left-to-right step
    paper = next(c for c in results.cells if c["method"] == "gtl-paper")
    assert paper["metrics"]["ratio_passes_per_sequence"] == TINY.length * 5  # sequence ratio: L steps x K = 5 candidates
    assert paper["metrics"]["single_site_passes_per_sequence"] == 0
    files = sorted(p.name for p in (tmp_path / "models").glob("ratio-*"))
    # one fit per pair: gtl, gtl-oracle-denoiser, components and the gamma sweep share the overlap-0 fit, the
    # overlap sweep (0.5) has its own; gtl-paper one
    assert [f.rsplit("-", 1)[0] for f in files] == ["ratio-guided-likelihood"] * 2 + ["ratio-paper"]
    assert len(results.gamma_sweep) == 2 and len(results.overlap_sweep) == 1
    assert results.overlap_sweep[0]["preset"] == "no-overlap"  # the sweep's own pair, not the grid's first preset
    assert {r["component"] for r in results.components} == {"ratio", "source denoiser", "autoregressive source"}
    site = [r for r in results.components if r["metric"].startswith("single-site guidance TV")]
    assert len(site) == 1 and 0 <= site[0]["value"] <= 1  # the learned ratio's headline diagnostic
    # a re-run reads every finished cell instead of recomputing it
    monkeypatch.setattr(benchmark, "evaluate", lambda *a, **k: pytest.fail("a finished cell was recomputed"))
    again = benchmark.run_benchmark(TINY, tmp_path, progress=False)
    assert again.cells == json.loads(json.dumps(results.cells))
    # ... but refuses cells computed under another configuration
    with pytest.raises(ValueError, match="another configuration"):
        benchmark.run_benchmark(dataclasses.replace(TINY, samples=41), tmp_path, progress=False)


def test_forked_workers_give_the_serial_results(tmp_path):
    """Every cell, sweep row and component row of the tiny grid (all methods, both sweeps, two
    seeds) is the same with two forked workers as in one process on one thread."""
    import torch

    config = dataclasses.replace(TINY, seeds=(0, 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # workers run on one thread each: compare with one process on one thread
    try:
        serial = benchmark.run_benchmark(config, tmp_path / "one", progress=False)
        forked = benchmark.run_benchmark(config, tmp_path / "two", progress=False, workers=2)
    finally:
        torch.set_num_threads(threads)

    def timeless(rows):  # wall times differ from run to run
        return [{**r, "metrics": {k: v for k, v in r["metrics"].items() if not k.endswith("_s")}} if "metrics" in r else r
                for r in json.loads(json.dumps(rows))]

    assert timeless(forked.cells) == timeless(serial.cells)
    assert json.loads(json.dumps(forked.gamma_sweep)) == json.loads(json.dumps(serial.gamma_sweep))
    assert json.loads(json.dumps(forked.overlap_sweep)) == json.loads(json.dumps(serial.overlap_sweep))
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in forked.components] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in serial.components]


def test_cli_writes_results_and_report(tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text(
        'presets = ["diagonal"]\nn_targets = [8]\nn_source = 100\nlength = 3\nsamples = 20\ngamma_sweep = []\n'
        'methods = ["source-only", "target-only", "gtl-oracle-ratio"]\n'
        "[models]\ndenoiser_hidden = 16\ndenoiser_blocks = 1\nratio_hidden = 8\nratio_blocks = 1\nheads = 2\n"
        "[training]\nsource_steps = 3\ntarget_steps = 3\nbatch_size = 8\n"
    )
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    with pytest.raises(ValueError, match="--workers must be"):
        benchmark.run_from_args(parser.parse_args(["--config", str(toml), "--workers", "0"]))
    args = parser.parse_args(["--config", str(toml), "--out", str(tmp_path / "run"), "--quiet", "--workers", "2"])
    assert benchmark.run_from_args(args) == 0
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    assert data["kind"] == "markov-benchmark" and data["meta"]["config"]["length"] == 3
    assert "Transition" in (tmp_path / "run" / "results.md").read_text() or (tmp_path / "run" / "results.md").stat().st_size > 200


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="presets must be chosen from"):
        MarkovConfig(presets=("nope",))
    with pytest.raises(ValueError, match=r"ratio_estimator must be one of \['paper', .*'guided-likelihood', 'telescoping-nce'\], got 'magic'"):
        MarkovConfig(ratio_estimator="magic")
    assert MarkovConfig().ratio_estimator == "guided-likelihood"
    for name in ("quick.toml", "paper_grid.toml", "presets_grid.toml"):
        config = load_config(Path(benchmark.__file__).parent / name)
        assert config.ratio_estimator == "guided-likelihood" and "gtl-paper" in config.methods or name == "quick.toml"
    with pytest.raises(ValueError, match="n_targets must be in"):
        MarkovConfig(n_targets=(0,))
    bad = tmp_path / "bad.toml"
    bad.write_text("n_target = [5]\n")
    with pytest.raises(ValueError, match="unknown key"):
        load_config(bad)
    bad.write_text("n_targets = [\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")
    assert load_config(None, seeds=[3, 4]).seeds == (3, 4)
