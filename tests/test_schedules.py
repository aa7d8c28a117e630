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
