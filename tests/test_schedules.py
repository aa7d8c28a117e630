import math

import pytest
import torch
from hypothesis import given, strategies as st

from gtl_verify.schedules import SCHEDULES, LogLinearSchedule, make_schedule

from gtl_verify.testing import schedule_names


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_validates_and_starts_at_one(name):
    sched = make_schedule(name)
    sched.validate()
    assert sched.alpha(0.0) == pytest.approx(1.0, abs=1e-15)


@given(schedule_names, st.floats(0.01, 0.99))
def test_derivative_matches_finite_difference(name, t):
    sched = make_schedule(name)
    h = 1e-6
    fd = (sched.alpha(t + h) - sched.alpha(t - h)) / (2 * h)
    assert sched.dalpha(t) == pytest.approx(fd, rel=1e-5, abs=1e-9)


@given(schedule_names, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_alpha_non_increasing(name, a, b):
    s, t = sorted((a, b))
    sched = make_schedule(name)
    assert sched.alpha(s) >= sched.alpha(t) - 1e-15


def test_loglinear_formula_and_loss_weight():
    sched = LogLinearSchedule(eps=1e-3)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    assert torch.allclose(1 - sched.alpha(t), (1 - 1e-3) * t)
    # MDLM weight -alpha'/(1-alpha) = 1/t for the log-linear schedule
    assert torch.allclose(sched.loss_weight(t), 1 / t)


def test_tensor_and_float_agree():
    for name in SCHEDULES:
        sched = make_schedule(name)
        assert float(sched.alpha(torch.tensor(0.3, dtype=torch.float64))) == pytest.approx(sched.alpha(0.3), rel=1e-14)


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_time_out_of_range_names_t(bad):
    with pytest.raises(ValueError, match="t must"):
        LogLinearSchedule().alpha(bad)


def test_bad_parameters():
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_schedule("exponential")
    with pytest.raises(ValueError, match="eps"):
        LogLinearSchedule(eps=1.0)
    with pytest.raises(ValueError, match="sigma_max"):
        make_schedule("geometric", sigma_min=1.0, sigma_max=0.5)


@st.composite
def schedules(draw):
    """The whole schedule family with random parameters (eps = 0 included)."""
    name = draw(schedule_names)
    if name in ("loglinear", "cosine"):
        return make_schedule(name, eps=draw(st.sampled_from([0.0, 1e-3]) | st.floats(0.0, 0.5)))
    if name == "linear":
        return make_schedule(name, sigma_max=draw(st.floats(0.1, 50.0)))
    low = draw(st.floats(1e-6, 1.0))
    return make_schedule(name, sigma_min=low, sigma_max=low * draw(st.floats(1.5, 1e5)))


def _as_float(x):
    return float(x) if torch.is_tensor(x) else x


@given(schedules())
def test_endpoints_give_their_limits_for_floats_and_tensors(sched):
    """alpha_0 = 1, w(0) = +inf (the limit of -alpha'/(1-alpha) as t -> 0), all finite at t = 1."""
    for kind in (float, lambda t: torch.tensor(t, dtype=torch.float64), lambda t: torch.tensor([t, t], dtype=torch.float32)):
        zero, one = kind(0.0), kind(1.0)
        assert torch.all(torch.as_tensor(sched.alpha(zero)) == 1.0)
        w0 = sched.loss_weight(zero)
        assert type(w0) is type(zero) and torch.all(torch.isposinf(torch.as_tensor(w0)))
        for value in (sched.alpha(one), sched.dalpha(one), sched.dalpha(zero), sched.loss_weight(one)):
            assert type(value) is type(one) and torch.all(torch.isfinite(torch.as_tensor(value)))
        assert torch.all(torch.as_tensor(sched.loss_weight(one)) >= 0)  # may underflow in float32


@given(schedules(), st.floats(1e-12, 1.0))
def test_loss_weight_is_finite_positive_and_accurate_near_zero(sched, t):
    """w(t) finite, > 0 unless it underflows, on (0, 1]; float and tensor agree; w(t) matches -alpha'/(1-alpha) computed
    in 50-digit arithmetic (no cancellation in 1 - alpha_t for tiny t)."""
    import mpmath

    mpmath.mp.dps = 50
    w = sched.loss_weight(t)
    assert math.isfinite(w) and w >= 0
    assert float(sched.loss_weight(torch.tensor([t], dtype=torch.float64))[0]) == pytest.approx(w, rel=1e-12)
    tm = mpmath.mpf(t)
    if sched.name == "loglinear":
        exact = 1 / tm
    elif sched.name == "linear":
        exact = sched.sigma_max * mpmath.exp(-sched.sigma_max * tm) / -mpmath.expm1(-sched.sigma_max * tm)
    elif sched.name == "cosine":
        x = mpmath.pi * tm / 2
        exact = (mpmath.pi / 2) * mpmath.sin(x) / (1 - mpmath.cos(x))
    else:
        lo, hi = mpmath.mpf(sched.sigma_min), mpmath.mpf(sched.sigma_max)
        sigma = lo ** (1 - tm) * hi**tm
        exact = sigma * mpmath.log(hi / lo) * mpmath.exp(-(sigma - lo)) / -mpmath.expm1(-(sigma - lo))
    if exact > 1e-300:
        assert w == pytest.approx(float(exact), rel=1e-9)
    else:  # exp underflow of alpha_t (geometric schedule with sigma_max > 700)
        assert w <= 1e-300


def test_loss_weight_at_zero_was_an_error_and_is_now_the_limit():
    assert LogLinearSchedule().loss_weight(0.0) == math.inf  # not ZeroDivisionError
    w = make_schedule("cosine").loss_weight(torch.tensor([0.0, 1e-8], dtype=torch.float64))
    assert math.isinf(w[0]) and not torch.isnan(w).any() and float(w[1]) == pytest.approx(2e8, rel=1e-6)
