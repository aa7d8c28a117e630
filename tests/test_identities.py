"""Every identity of THEORY sections 1-4 on random problems (hypothesis), plus negative tests that
show each check fails on a wrong kernel, a wrong ratio or the wrong process."""

import math

import pytest
import torch
from hypothesis import assume, given, strategies as st

from gtl_verify.checks import identities as ids
from gtl_verify.checks.ctmc import ctmc_theorem1_residual, guided_reverse_rate
from gtl_verify.enumeration import EnumerationOracle, LawPair
from gtl_verify.forward import MaskedProcess, UniformProcess
from gtl_verify.schedules import make_schedule

from gtl_verify.testing import oracles, times

TOL = 1e-10


@given(oracles("masked"), times())
def test_theorem1_masked(oracle, st_):
    s, t = st_
    assert ids.theorem1_residual(oracle, s, t) <= TOL
    assert ids.theorem1_ratio_form_residual(oracle, s, t) <= TOL


@given(oracles("uniform"), times())
def test_theorem1_uniform(oracle, st_):
    s, t = st_
    assert ids.theorem1_residual(oracle, s, t) <= TOL


@given(oracles("masked"), times(), st.floats(0.0, 3.0))
def test_gamma_family_endpoints(oracle, st_, gamma):
    """gamma = 0 gives the source kernel; gamma = 1 the target's (Theorem 1)."""
    s, t = st_
    src = oracle.reverse_kernel(s, t, "p")
    rows = oracle.noisy_marginal(t, "p") > 0
    assert (ids.guided_reverse_kernel(oracle, s, t, gamma=0.0)[rows] - src[rows]).abs().max() <= TOL


def _dense_oracle(process_cls, k=3, length=2, seed=0, schedule="loglinear"):
    gen = torch.Generator().manual_seed(seed)
    p = torch.rand(k**length, generator=gen, dtype=torch.float64) + 0.1
    q = torch.rand(k**length, generator=gen, dtype=torch.float64) ** 4 + 0.01
    return EnumerationOracle(LawPair.from_tables(p / p.sum(), q / q.sum(), k, length), process_cls(k, make_schedule(schedule)))


def test_theorem1_fails_with_ratio_at_t_on_uniform_kernel():
    """Negative test: guiding with r_t(z_s) instead of r_s(z_s) is wrong for the uniform kernel ..."""
    oracle = _dense_oracle(UniformProcess)
    wrong = ids.guided_reverse_kernel(oracle, 0.2, 0.6, ratio_time=0.6)
    assert ids.theorem1_residual(oracle, 0.2, 0.6, wrong) > 1e-3


def test_ratio_time_is_irrelevant_for_masked_kernel():
    """... but harmless for the absorbing kernel, where r_t = r_s (R1)."""
    oracle = _dense_oracle(MaskedProcess)
    kernel = ids.guided_reverse_kernel(oracle, 0.2, 0.6, ratio_time=0.6)
    assert ids.theorem1_residual(oracle, 0.2, 0.6, kernel) <= TOL


def test_theorem1_fails_for_wrong_gamma():
    oracle = _dense_oracle(MaskedProcess)
    kernel = ids.guided_reverse_kernel(oracle, 0.2, 0.6, gamma=2.0)
    assert ids.theorem1_residual(oracle, 0.2, 0.6, kernel) > 1e-3


@pytest.mark.parametrize("process_cls", [MaskedProcess, UniformProcess])
@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
def test_ctmc_guided_rates_recover_q0(process_cls, schedule):
    oracle = _dense_oracle(process_cls, k=2, length=2, schedule=schedule)
    assert ctmc_theorem1_residual(oracle) <= TOL


def test_ctmc_check_fails_with_unguided_rates():
    """Negative test: the source reverse rates (ratio ignored) do not carry q_1 to q_0."""
    oracle = _dense_oracle(MaskedProcess, k=2, length=2)
    laws = oracle.laws
    source_only = EnumerationOracle(LawPair(laws.p, laws.p, laws.vocab_size, laws.length), oracle.process)
    assert ctmc_theorem1_residual(oracle, rates=lambda t: guided_reverse_rate(source_only, t)) > 1e-3


@given(oracles("masked"), times(allow_zero=False))
def test_r1_masked(oracle, st_):
    s, t = st_
    assert ids.r1_residual(oracle, (s, t)) <= TOL


def test_r1_and_r3_fail_for_uniform():
    oracle = _dense_oracle(UniformProcess)
    assert ids.r1_residual(oracle, (0.2, 0.6)) > 1e-3
    assert ids.r3_residual(oracle, 0.2, 0.6) > 1e-3


@given(st.sampled_from(["masked", "uniform"]).flatmap(oracles), times())
def test_r2(oracle, st_):
    assert ids.r2_residual(oracle, st_[1]) <= TOL


@given(oracles("masked"), times(allow_zero=False))
def test_r3_masked(oracle, st_):
    s, t = st_
    assert ids.r3_residual(oracle, s, t) <= TOL


@given(oracles("masked"), times())
def test_r4(oracle, st_):
    assert ids.r4_residual(oracle, st_[1]) <= TOL


@given(oracles("masked"), times())
def test_stabiliser_identity(oracle, st_):
    s, t = st_
    assert ids.stabiliser_residual(oracle, s, t) <= TOL


@given(oracles("masked"), times())
def test_stabilised_guidance_is_exact(oracle, st_):
    s, t = st_
    assert ids.stabilised_guidance_residual(oracle, s, t) <= TOL


def test_stabilised_guidance_fails_with_miscalibrated_ratio():
    """Negative test: noise on log r (not a constant) changes which token is revealed."""
    oracle = _dense_oracle(MaskedProcess)
    gen = torch.Generator().manual_seed(3)
    log_r = torch.log(oracle.ratio(0.6)) + 0.5 * torch.randn(oracle.num_states**oracle.length, generator=gen, dtype=torch.float64)
    assert ids.stabilised_guidance_residual(oracle, 0.2, 0.6, log_ratio=log_r) > 1e-3
    assert ids.stabilised_guidance_residual(oracle, 0.2, 0.6, gamma=0.5) > 1e-3


def test_stabiliser_absorbs_a_constant_ratio_offset_but_the_unstabilised_rule_does_not():
    oracle = _dense_oracle(MaskedProcess)
    s, t = 0.2, 0.6
    a_s, a_t = oracle.process.schedule.alpha(s), oracle.process.schedule.alpha(t)
    exact_stay = (1 - a_s) / (1 - a_t)
    offset = torch.log(oracle.ratio(t)) + 2.0
    assert ids.stabilised_guidance_residual(oracle, s, t, log_ratio=offset) <= TOL
    assert ids.unstabilised_stay_mass(oracle, s, t, 0.0) == pytest.approx(exact_stay, abs=1e-12)
    assert ids.unstabilised_stay_mass(oracle, s, t, -2.0) > exact_stay + 0.05  # drifts toward all-mask
    assert ids.unstabilised_stay_mass(oracle, s, t, 2.0) < exact_stay - 0.05


@given(oracles("masked"), times(), st.integers(1, 5), st.floats(0.0, 4.0))
def test_top_n_tv_identity(oracle, st_, n, gamma):
    n = min(n, oracle.vocab_size)
    identity, at_k = ids.top_n_tv_residuals(oracle, st_[1], n, gamma)
    assert identity <= TOL and at_k <= TOL


@given(oracles("masked"), times())
def test_jensen(oracle, st_):
    violation, mean_gap, max_gap = ids.jensen_gap(oracle, st_[1])
    assert violation <= TOL
    assert 0 <= mean_gap + TOL and mean_gap <= max_gap + TOL


def test_jensen_gap_is_positive_when_ratio_varies():
    oracle = _dense_oracle(MaskedProcess)
    _, mean_gap, max_gap = ids.jensen_gap(oracle, 0.9)
    assert mean_gap > 1e-3 and math.isfinite(max_gap)


def test_masked_only_identities_reject_uniform():
    with pytest.raises(ValueError, match="masked"):
        ids.r4_residual(_dense_oracle(UniformProcess), 0.5)
