"""The convention for impossible states, non-finite values, ties and top-k (docs/conventions.md),
function by function: guidance.normalise / sample_categorical / combine / top_n / top_k_truncate
and the planner's position law."""

import math

import pytest
import torch
from hypothesis import given, strategies as st

from gtl_verify import guidance
from gtl_verify.guidance import ImpossibleStepError
from gtl_verify.planners import choose_positions, position_log_probs
from gtl_verify.schedules import LogLinearSchedule

INF = math.inf
seeds = st.integers(0, 2**31 - 1)


def _t(*rows):
    """One row -> a 1-d tensor; several rows -> a 2-d tensor."""
    return torch.tensor(rows[0] if len(rows) == 1 else list(rows), dtype=torch.float64)


# ------------------------------------------------------------------ the categorical draw
def test_single_plus_inf_is_drawn_surely():
    gen = torch.Generator().manual_seed(0)
    draws = guidance.sample_categorical(_t(*[[0.0, INF, 0.0]] * 200), gen)
    assert draws.shape == (200,)
    assert (draws == 1).all()


@pytest.mark.parametrize(
    "row, cause",
    [([-INF, -INF, -INF], "all -inf"), ([INF, INF, INF], "inf/inf"), ([0.0, math.nan, 0.0], "NaN"), ([INF, 0.0, INF], "inf/inf")],
)
def test_undefined_rows_raise_naming_the_cause(row, cause):
    with pytest.raises(ImpossibleStepError, match=cause):
        guidance.sample_categorical(_t(row))
    with pytest.raises(ImpossibleStepError, match=cause):
        guidance.normalise(_t([0.0, 0.0, 0.0], row))  # the second row is named, not the first


@given(seeds, st.integers(2, 9))
def test_zero_probability_outcomes_are_never_drawn(seed, c):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(64, c, generator=gen, dtype=torch.float64)
    forbidden = torch.rand(64, c, generator=gen) < 0.5
    forbidden[:, int(torch.randint(c, (1,), generator=gen))] = False  # keep one outcome per row
    w = torch.where(forbidden, -INF, w)
    draws = guidance.sample_categorical(w, gen)
    assert not forbidden[torch.arange(64), draws].any()


# ------------------------------------------------------------------ the guided combine
def test_infinite_ratio_takes_all_the_mass():
    q = guidance.combine(torch.log(_t([0.5, 0.5])), _t([0.0, INF]), 1.0).exp()
    assert q.tolist() == [0.0, 1.0]


@given(seeds, st.floats(1e-3, 5.0))
def test_several_infinite_ratios_split_by_p(seed, gamma):
    gen = torch.Generator().manual_seed(seed)
    lp = torch.log_softmax(torch.randn(6, generator=gen, dtype=torch.float64), -1)
    log_r = torch.randn(6, generator=gen, dtype=torch.float64)
    log_r[[1, 4]] = INF
    q = guidance.combine(lp, log_r, gamma).exp()
    expected = torch.zeros(6, dtype=torch.float64)
    expected[[1, 4]] = lp.exp()[[1, 4]] / lp.exp()[[1, 4]].sum()
    assert torch.allclose(q, expected, atol=1e-15)
    # the limit of finite ratios growing without bound
    big = torch.where(torch.isinf(log_r), 1e4 / gamma, log_r)
    assert torch.allclose(guidance.combine(lp, big, gamma).exp(), expected, atol=1e-12)


def test_denoiser_zero_wins_over_any_ratio():
    lp = torch.log(_t([0.5, 0.5, 0.0]))
    for bad in (INF, math.nan, -INF, 3.0):
        q = guidance.combine(lp, _t([0.0, 1.0, bad]), 1.0).exp()
        assert q[2] == 0 and q[1] / q[0] == pytest.approx(math.e)


def test_nan_ratio_on_an_allowed_token_raises_and_all_forbidden_raises():
    lp = torch.log(_t([0.5, 0.5]))
    with pytest.raises(ImpossibleStepError, match="NaN"):
        guidance.combine(lp, _t([0.0, math.nan]), 1.0)
    with pytest.raises(ImpossibleStepError, match="log-ratio -inf"):
        guidance.combine(lp, _t([-INF, -INF]), 1.0)
    with pytest.raises(ImpossibleStepError, match="p = 0"):
        guidance.combine(_t([-INF, -INF]), _t([0.0, 0.0]), 0.0)


def test_gamma_zero_ignores_every_ratio_value_and_gamma_must_be_finite():
    lp = torch.log(_t([0.2, 0.3, 0.5]))
    q = guidance.combine(lp, _t([INF, -INF, math.nan]), 0.0).exp()
    assert torch.allclose(q, lp.exp(), atol=1e-15)
    with pytest.raises(ValueError, match="gamma"):
        guidance.combine(lp, _t([0.0, 0.0, 0.0]), INF)
    with pytest.raises(ValueError, match="gamma"):
        guidance.ConstantGamma(INF)


@given(seeds, st.integers(1, 7))
def test_combine_is_continuous_at_gamma_zero(seed, n):
    gen = torch.Generator().manual_seed(seed)
    lp = torch.log_softmax(3 * torch.randn(4, 7, generator=gen, dtype=torch.float64), -1)
    log_r = 5 * torch.randn(4, 7, generator=gen, dtype=torch.float64)
    values, ids = guidance.top_n(lp, n)
    at_zero = guidance.combine(values, log_r.gather(-1, ids), 0.0).exp()
    near_zero = guidance.combine(values, log_r.gather(-1, ids), 1e-9).exp()
    assert (at_zero - near_zero).abs().sum(-1).max() < 1e-7


# ------------------------------------------------------------------ ties
def test_top_n_breaks_ties_towards_the_lowest_id():
    # five equal values: torch.topk may return any two of them
    lp = torch.log(torch.full((3, 5), 0.2, dtype=torch.float64))
    lp[1] = torch.log(_t([0.1, 0.3, 0.1, 0.3, 0.2]))
    lp[2] = torch.log(_t([0.25, 0.25, 0.25, 0.0, 0.25]))
    values, ids = guidance.top_n(lp, 2)
    assert ids.tolist() == [[0, 1], [1, 3], [0, 1]]
    assert guidance.candidate_ties(lp, 2).tolist() == [True, False, True]
    assert guidance.candidate_ties(lp, 3).tolist() == [True, False, True]
    assert guidance.candidate_ties(lp, 4).tolist() == [True, True, False]  # row 2: the tie is between zeros
    assert not guidance.candidate_ties(lp, 5).any()


@given(seeds, st.integers(1, 7))
def test_top_n_matches_the_lowest_id_order_with_many_ties(seed, n):
    gen = torch.Generator().manual_seed(seed)
    levels = torch.log(_t([0.4, 0.2, 0.1, 0.0]))  # -inf included
    lp = levels[torch.randint(4, (5, 7), generator=gen)]
    values, ids = guidance.top_n(lp, n)
    ties = guidance.candidate_ties(lp, n)
    for row in range(5):
        # reference: the n first tokens in the order (decreasing value, increasing id)
        order = sorted(range(7), key=lambda v: (-float(lp[row, v]), v))
        assert ids[row].tolist() == order[:n]
        assert torch.equal(values[row], lp[row, order[:n]])
        decided = n < 7 and float(lp[row, order[n - 1]]) == float(lp[row, order[n]]) > -INF
        assert bool(ties[row]) == decided


# ------------------------------------------------------------------ top-k
def _zipf_step(k_vocab=1000, t=0.5, steps=16):
    sched = LogLinearSchedule()
    s = t - 1 / steps
    p = 1 / torch.arange(1, k_vocab + 1, dtype=torch.float64)
    lp = torch.log(p / p.sum())
    return guidance.mdlm_posterior(lp[None], sched.alpha(s), sched.alpha(t)), (1 - sched.alpha(s)) / (1 - sched.alpha(t))


def test_top_k_keeps_the_exact_stay_mass_on_the_zipf_denoiser():
    step, stay = _zipf_step()
    assert stay == pytest.approx(0.875, abs=1e-12)
    out = guidance.top_k_truncate(step, 8).exp()
    assert out[0, -1].item() == pytest.approx(0.875, abs=1e-12)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-12) and ((out[0, :-1] > 0).sum() == 8)
    # truncating the K + 1 outcomes instead would give the dropped mass to "stay": 0.951
    p8 = step[0, :8].exp().sum()
    assert (stay / (stay + p8)).item() == pytest.approx(0.951, abs=5e-4)


@given(seeds, st.integers(1, 9), st.floats(0.0, 1.0), st.booleans())
def test_top_k_leaves_stay_mass_unchanged_for_random_step_laws(seed, k, stay_frac, zeros):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.log_softmax(4 * torch.randn(5, 9, generator=gen, dtype=torch.float64), -1)
    if zeros:
        tokens = torch.where(torch.rand(5, 9, generator=gen) < 0.4, -INF, tokens)
        tokens[:, 0] = torch.where(torch.isneginf(tokens).all(-1), 0.0, tokens[:, 0])
    step = guidance.mdlm_posterior(torch.log_softmax(tokens, -1), 1 - 0.5 * (1 - stay_frac), 0.5)
    out = guidance.top_k_truncate(step, k).exp()
    assert torch.allclose(out[:, -1], step[:, -1].exp(), atol=1e-14)
    assert torch.allclose(out.sum(-1), torch.ones(5, dtype=torch.float64), atol=1e-12)
    assert ((out[:, :-1] > 0).sum(-1) <= k).all()
    # the kept tokens keep their relative probabilities
    kept = out[:, :-1] > 0
    ratio = torch.where(kept, out[:, :-1] / step[:, :-1].exp(), 0.0)
    assert torch.allclose(ratio.amax(-1), torch.where(kept, ratio, INF).amin(-1).where(kept.any(-1), 0.0))


# ------------------------------------------------------------------ planner position law
def test_planner_chooses_masked_positions_whatever_the_scores():
    masked = torch.tensor([[False, True, False, True, True, False, False, False]])
    gen = torch.Generator().manual_seed(0)
    for scores in (torch.full((1, 8), -INF), torch.full((1, 8), INF), _t([5, -INF, 9, -INF, 2, 7, 1, 0])):
        for temperature in (0.0, 0.5):
            law = position_log_probs(scores, masked, temperature).exp()
            assert not torch.isnan(law).any() and law.sum().item() == pytest.approx(1.0)
            assert (law[~masked] == 0).all()
            assert masked[0, choose_positions(scores, masked, temperature, gen)].all()
    assert position_log_probs(torch.full((1, 8), -INF), masked, 0.0).exp()[0, 1] == 1.0
    assert torch.allclose(position_log_probs(torch.full((1, 8), -INF), masked, 0.5).exp()[0, [1, 3, 4]], _t([1 / 3] * 3))
    plus = _t([0, 1.0, 0, INF, INF, INF, 0, 0])
    assert torch.allclose(position_log_probs(plus, masked, 0.5).exp()[0], _t([0, 0, 0, 0.5, 0.5, 0, 0, 0]))
    with pytest.raises(ValueError, match="NaN"):
        position_log_probs(_t([0, math.nan, 0, 0, 0, 0, 0, 0]), masked, 0.5)
