"""The guided step's pure functions, one by one."""

import math

import pytest
import torch
from hypothesis import given, strategies as st

from gtl_verify import guidance

finite = st.floats(-20, 20)


def _log_probs(gen, shape):
    return torch.log_softmax(3 * torch.randn(shape, generator=gen, dtype=torch.float64), -1)


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_mdlm_posterior_is_normalised_with_exact_stay_mass(a, b, seed):
    alpha_s, alpha_t = max(a, b), min(a, b)
    if alpha_t >= 1.0:
        return
    lp = _log_probs(torch.Generator().manual_seed(seed), (4, 6))
    post = torch.exp(guidance.mdlm_posterior(lp, alpha_s, alpha_t))
    assert torch.allclose(post.sum(-1), torch.ones(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(post[:, -1], torch.full((4,), (1 - alpha_s) / (1 - alpha_t), dtype=torch.float64), atol=1e-12)


def test_reveal_weights_reject_wrong_order():
    with pytest.raises(ValueError, match="alpha_s >= alpha_t"):
        guidance.reveal_log_weights(0.2, 0.5)
    with pytest.raises(ValueError, match="alpha_t"):
        guidance.reveal_log_weights(1.0, 1.0)


@given(st.integers(1, 8), st.integers(0, 2**31 - 1), st.floats(0, 5))
def test_top_n_support_and_full_guidance(n, seed, gamma):
    gen = torch.Generator().manual_seed(seed)
    k = 8
    lp, lr = _log_probs(gen, (5, k)), torch.randn(5, k, generator=gen, dtype=torch.float64)
    values, ids = guidance.top_n(lp, n)
    q = torch.exp(guidance.scatter_tokens(guidance.combine(values, lr.gather(-1, ids), gamma), ids, k))
    outside = torch.ones(5, k, dtype=torch.bool).scatter(-1, ids, False)
    assert (q[outside] == 0).all()  # support stays inside the top-n
    assert torch.allclose(q.sum(-1), torch.ones(5, dtype=torch.float64))
    if n == k:  # n = K is full guidance
        assert torch.allclose(q, torch.softmax(lp + gamma * lr, -1), atol=1e-12)


def test_top_n_rejects_n_outside_range():
    lp = torch.zeros(2, 4)
    for n in (0, 5):
        with pytest.raises(ValueError, match="n must be in"):
            guidance.top_n(lp, n)


def test_combine_gamma_zero_and_excluded_tokens():
    lp = torch.log(torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64))
    lr = torch.tensor([[0.0, 1.0, math.nan]], dtype=torch.float64)
    assert torch.allclose(guidance.combine(lp, lr, 0.0).exp(), lp.exp())
    q = guidance.combine(lp, lr, 1.0).exp()
    assert q[0, 2] == 0 and q[0, 1] / q[0, 0] == pytest.approx(math.e)
    with pytest.raises(ValueError, match="gamma"):
        guidance.combine(lp, lr, -1.0)


@given(st.integers(0, 2**31 - 1), st.floats(0.05, 0.95), st.floats(0.0, 0.95))
def test_stabiliser_fixes_stay_mass_for_any_ratio(seed, t, frac):
    gen = torch.Generator().manual_seed(seed)
    alpha_t, alpha_s = 1 - t, 1 - t * frac
    tokens = 10 * torch.randn(3, 5, generator=gen, dtype=torch.float64)  # arbitrary, unnormalised
    step = torch.exp(guidance.stabilise(tokens, alpha_s, alpha_t))
    assert torch.allclose(step[:, -1], torch.full((3,), (1 - alpha_s) / (1 - alpha_t), dtype=torch.float64), atol=1e-12)
    assert torch.allclose(step.sum(-1), torch.ones(3, dtype=torch.float64), atol=1e-12)


def test_unstabilised_rule_moves_stay_mass_with_a_ratio_offset():
    lp = torch.log(torch.full((1, 4), 0.25, dtype=torch.float64))
    zeros = torch.zeros(1, 4, dtype=torch.float64)
    exact = guidance.unstabilised(lp, zeros, torch.zeros(1, dtype=torch.float64), 1.0, 0.6, 0.3).exp()
    assert exact[0, -1] == pytest.approx(0.4 / 0.7)
    low = guidance.unstabilised(lp, zeros - 3, torch.zeros(1, dtype=torch.float64), 1.0, 0.6, 0.3).exp()
    assert low[0, -1] > 0.9  # an under-estimated ratio keeps positions masked


@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_top_k_keeps_the_mask(k, seed):
    w = torch.randn(4, 7, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = torch.exp(guidance.top_k_truncate(w, k))
    assert ((out[:, :-1] > 0).sum(-1) == k).all() and (out[:, -1] > 0).all()
    assert torch.allclose(out.sum(-1), torch.ones(4, dtype=torch.float64))


def test_gamma_schedules():
    assert guidance.make_gamma(2.0)(0.3) == 2.0
    ramp = guidance.make_gamma([(0.0, 2.0), (1.0, 1.0)])
    assert ramp(1.0) == 1.0 and ramp(0.0) == 2.0 and ramp(0.5) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="gamma"):
        guidance.ConstantGamma(-0.5)
    with pytest.raises(ValueError, match="strictly increasing"):
        guidance.make_gamma([(0.5, 1.0), (0.5, 2.0)])


def test_sample_categorical_frequencies_float64():
    """Chi-square at a fixed seed; n = 100k draws gives ~0.3% standard error on each probability."""
    from scipy.stats import chisquare

    probs = torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.float64)
    draws = guidance.sample_categorical(torch.log(probs).expand(100_000, 4), torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=4)
    assert counts[1] == 0
    keep = probs > 0
    assert chisquare(counts[keep].numpy(), (probs[keep] * 100_000).numpy()).pvalue > 1e-3
    with pytest.raises(ValueError, match="NaN"):
        guidance.sample_categorical(torch.tensor([[math.nan, 0.0]]))


def test_score_candidates_single_site_equals_sequence_scoring():
    from gtl_verify.checks.problems import random_law_pair
    from gtl_verify.enumeration import EnumerationOracle
    from gtl_verify.forward import MaskedProcess
    from gtl_verify.schedules import LogLinearSchedule

    gen = torch.Generator().manual_seed(0)
    oracle = EnumerationOracle(random_law_pair(3, 3, gen, "dense"), MaskedProcess(3, LogLinearSchedule()))
    ratio = oracle.ratio_model()
    z = torch.tensor([[3, 0, 3], [1, 3, 3]])
    positions = (z == 3).nonzero()
    tokens = torch.tensor([[0, 2], [1, 0], [2, 1], [0, 1]])
    a = guidance.score_candidates(ratio, z, positions, tokens)
    b = guidance.score_candidates(lambda x, t=None: ratio(x, t), z, positions, tokens, max_batch=3)
    assert torch.allclose(a, b, atol=1e-12)
