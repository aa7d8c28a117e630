"""Fuzzing the guided step over extreme inputs, and determinism of whole benchmark runs."""

import dataclasses
import json
import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from gtl_verify import guidance
from gtl_verify.rules import GTL, StepInput
from markov import benchmark
from markov.config import MarkovConfig, ModelSizes, TrainingBudget

F64 = torch.float64


def _step(seed: int, rows: int, k: int, t: float, frac: float, gamma: float, ratio_scale: float,
          logit_scale: float, impossible: bool) -> StepInput:
    """A random step: denoiser logits of scale ``logit_scale`` (some tokens impossible when asked),
    single-site log-ratios uniform in [-ratio_scale, ratio_scale] nats."""
    g = torch.Generator().manual_seed(seed)
    logits = logit_scale * torch.randn(rows, 1, k, generator=g, dtype=F64)
    if impossible and k > 1:
        logits[..., : k // 2] = -math.inf  # a denoiser that rules tokens out (e.g. a banned id)
    log_probs = torch.log_softmax(logits, dim=-1)
    table = ratio_scale * (2 * torch.rand(rows, k, generator=g, dtype=F64) - 1)
    level = ratio_scale * (2 * torch.rand(rows, generator=g, dtype=F64) - 1)
    s = t * frac
    return StepInput(
        z=torch.full((rows, 1), k), t=t, s=s, alpha_t=1 - t, alpha_s=1 - s, log_probs=log_probs,
        positions=torch.stack([torch.arange(rows), torch.zeros(rows, dtype=torch.long)], dim=-1),
        gamma=gamma, mask_id=k,
        score=lambda ids: table.gather(1, ids), sequence_log_ratio=lambda: level,
    )


@given(
    seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 6), k=st.integers(1, 40),
    t=st.floats(1e-6, 1.0), frac=st.floats(0.0, 1 - 1e-9), gamma=st.floats(0.0, 20.0),
    ratio_scale=st.sampled_from([0.0, 1.0, 80.0, 500.0]), logit_scale=st.sampled_from([0.1, 5.0, 80.0]),
    impossible=st.booleans(), n_frac=st.floats(0.0, 1.0), stabilised=st.booleans(),
)
def test_guided_step_is_a_distribution_for_extreme_inputs(seed, rows, k, t, frac, gamma, ratio_scale, logit_scale,
                                                          impossible, n_frac, stabilised):
    """Ratios of hundreds of nats, near-deterministic denoisers and forbidden tokens: the step law is
    finite, normalised, supported on the top-n candidates when gamma > 0 (and never on a forbidden token), and with
    the stabiliser its stay-masked mass is exactly (1 - a_s) / (1 - a_t)."""
    step = _step(seed, rows, k, t, frac, gamma, ratio_scale, logit_scale, impossible)
    n = 1 + round(n_frac * (k - 1))
    out = GTL(candidates=n, stabilise=stabilised)(step)
    assert out.shape == (rows, k + 1) and out.dtype == F64
    assert not torch.isnan(out).any() and (out < math.inf).all()
    torch.testing.assert_close(torch.logsumexp(out, -1), torch.zeros(rows, dtype=F64), rtol=0, atol=1e-9)
    probs = out.exp()
    _, ids = guidance.top_n(step.position_log_probs, n)
    outside = torch.ones(rows, k, dtype=torch.bool).scatter(1, ids, False)
    if gamma > 0:  # gamma = 0 is the unguided step over all K tokens
        assert (probs[:, :k][outside] == 0).all()
    assert (probs[:, :k][step.position_log_probs.isinf()] == 0).all()
    if stabilised:
        stay = (1 - step.alpha_s) / (1 - step.alpha_t)
        torch.testing.assert_close(probs[:, k], torch.full((rows,), stay, dtype=F64), rtol=1e-12, atol=1e-12)
    draws = guidance.sample_categorical(out, torch.Generator().manual_seed(seed))
    assert ((draws >= 0) & (draws <= k)).all() and (probs.gather(1, draws[:, None]) > 0).all()


TINY = MarkovConfig(
    presets=("diagonal",), n_targets=(8,), seeds=(0,), n_source=120, length=4, samples=30,
    methods=("source-only", "fine-tuned", "gtl", "gtl-planner", "gtl-oracle-ratio"),
    gamma_sweep=(0.0, 1.0), gamma_sweep_n_target=8, overlap_sweep=(), overlap_n_target=8,
    models=ModelSizes(denoiser_hidden=16, denoiser_blocks=1, ratio_hidden=8, ratio_blocks=1, heads=2),
    training=TrainingBudget(source_steps=4, target_steps=4, finetune_steps=3, ratio_steps=4, planner_steps=3,
                            batch_size=8),
)


def test_same_seed_gives_identical_results_json(tmp_path):
    """Two independent runs of the same configuration (no shared cache) write identical results:
    every trained network, sample and metric is a function of the seed alone."""
    a = benchmark.run_benchmark(TINY, tmp_path / "a", progress=False)
    b = benchmark.run_benchmark(TINY, tmp_path / "b", progress=False)
    def strip(cells: list[dict]) -> list[dict]:  # wall times are the only thing allowed to differ
        return [{**c, "metrics": {k: v for k, v in c["metrics"].items() if not k.endswith("_s")}} for c in cells]

    assert strip(a.cells) == strip(b.cells)
    assert json.dumps(a.gamma_sweep, sort_keys=True) == json.dumps(b.gamma_sweep, sort_keys=True)
    # and a different seed changes them
    c = benchmark.run_benchmark(dataclasses.replace(TINY, seeds=(1,)), tmp_path / "c", progress=False)
    assert strip(c.cells) != strip(a.cells)


def test_resumed_run_matches_a_fresh_run(tmp_path):
    """A run that finds some components on disk (an interrupted run) and trains the others gives
    the same results as one that trains everything: initial weights never depend on what was loaded."""
    fresh = benchmark.run_benchmark(TINY, tmp_path / "fresh", progress=False)
    partial = tmp_path / "partial"
    benchmark.run_benchmark(TINY, partial, progress=False)
    models = sorted((partial / "models").glob("*.pt"))
    assert len(models) >= 3
    for path in models[::2]:  # lose every other trained network and every finished cell
        path.unlink()
    for path in (partial / "cells").glob("*"):
        path.unlink()
    resumed = benchmark.run_benchmark(TINY, partial, progress=False)

    def strip(cells: list[dict]) -> list[dict]:
        return [{**c, "metrics": {k: v for k, v in c["metrics"].items() if not k.endswith("_s")}} for c in cells]

    assert strip(resumed.cells) == strip(fresh.cells)
