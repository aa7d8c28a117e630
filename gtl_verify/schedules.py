"""Noise schedules alpha_t for masked and uniform discrete diffusion.

alpha_t is the probability that a token is still clean at time t: decreasing, alpha_0 = 1.
Each schedule gives alpha_t, its derivative alpha'_t and the MDLM continuous-time loss weight

    w(t) = -alpha'_t / (1 - alpha_t),

so that the masked-diffusion ELBO is  E_t E_{z_t} [ w(t) * sum_{i masked} -log p(x^i | z_t) ].
Functions accept a Python float or a tensor of times in [0, 1] and return the same kind.

Endpoints: every schedule has alpha_0 = 1 exactly, so w(t) -> +inf as t -> 0 and ``loss_weight(0)``
returns that limit, +inf (float or tensor entries); at t = 1 every value is finite. Each schedule
gives 1 - alpha_t in closed form (``_one_minus_alpha``), so w(t) keeps full relative precision for
small t instead of dividing two rounded near-zero numbers. Times outside [0, 1] or NaN raise
ValueError naming ``t``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TypeVar

import torch

from .validation import check_real_range

T = TypeVar("T", float, torch.Tensor)


def _check_t(t: T) -> None:
    if torch.is_tensor(t):
        if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
            raise ValueError(f"t must lie in [0, 1], got values in [{t.min().item()}, {t.max().item()}]")
    else:
        check_real_range("t", t, 0.0, 1.0)


def _lib(t):
    return torch if torch.is_tensor(t) else math


class Schedule(ABC):
    """alpha_t on [0, 1]: alpha_0 = 1, non-increasing."""

    name: str = "schedule"

    def alpha(self, t: T) -> T:
        """Probability alpha_t that a token is unchanged at time t."""
        _check_t(t)
        return self._alpha(t)

    def dalpha(self, t: T) -> T:
        """Derivative d alpha_t / dt (<= 0)."""
        _check_t(t)
        return self._dalpha(t)

    def loss_weight(self, t: T) -> T:
        """MDLM loss weight w(t) = -alpha'_t / (1 - alpha_t) (MDLM, Sahoo et al. 2024, eq. 10);
        +inf at t = 0 (its limit, as alpha_0 = 1), finite and > 0 on (0, 1]."""
        _check_t(t)
        num, den = -self._dalpha(t), self._one_minus_alpha(t)
        if torch.is_tensor(t):
            return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), torch.inf)
        return num / den if den > 0 else math.inf

    def validate(self, grid: int = 1001, atol: float = 1e-12) -> None:
        """Check alpha_0 = 1, values in [0, 1], monotone decrease and dalpha consistent with alpha."""
        t = torch.linspace(0, 1, grid, dtype=torch.float64)
        a = self._alpha(t)
        if abs(float(a[0]) - 1.0) > atol:
            raise ValueError(f"{self.name}: alpha_0 must be 1, got {float(a[0])!r}")
        if (a < -atol).any() or (a > 1 + atol).any():
            raise ValueError(f"{self.name}: alpha_t must lie in [0, 1]")
        if (a[1:] > a[:-1] + atol).any():
            raise ValueError(f"{self.name}: alpha_t must be non-increasing")
        mid = 0.5 * (t[1:] + t[:-1])
        fd = (a[1:] - a[:-1]) / (t[1:] - t[:-1])
        if not torch.allclose(fd, self._dalpha(mid), rtol=1e-3, atol=1e-6 * (1 + fd.abs().max())):
            raise ValueError(f"{self.name}: dalpha does not match the finite differences of alpha")

    @abstractmethod
    def _alpha(self, t: T) -> T: ...

    def _one_minus_alpha(self, t: T) -> T:
        """1 - alpha_t; schedules override it with a form accurate for small t (0 at t = 0)."""
        return 1 - self._alpha(t)

    @abstractmethod
    def _dalpha(self, t: T) -> T: ...

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class LogLinearSchedule(Schedule):
    """MDLM's log-linear schedule: 1 - alpha_t = (1 - eps) t, so sigma_t = -log(1 - (1-eps) t)."""

    name = "loglinear"

    def __init__(self, eps: float = 1e-3) -> None:
        self.eps = check_real_range("eps", eps, 0.0, 1.0)
        if self.eps >= 1.0:
            raise ValueError(f"eps must be < 1, got {eps}")

    def _alpha(self, t):
        return 1 - (1 - self.eps) * t

    def _one_minus_alpha(self, t):
        return (1 - self.eps) * t

    def _dalpha(self, t):
        return -(1 - self.eps) * (t * 0 + 1)


class LinearSchedule(Schedule):
    """Total noise linear in t: sigma_t = sigma_max * t, alpha_t = exp(-sigma_t)."""

    name = "linear"

    def __init__(self, sigma_max: float = 10.0) -> None:
        self.sigma_max = check_real_range("sigma_max", sigma_max, 0.0, open_low=True)

    def _alpha(self, t):
        return _lib(t).exp(-self.sigma_max * t)

    def _one_minus_alpha(self, t):
        return -_lib(t).expm1(-self.sigma_max * t)

    def _dalpha(self, t):
        return -self.sigma_max * _lib(t).exp(-self.sigma_max * t)


class CosineSchedule(Schedule):
    """MDLM's cosine schedule: alpha_t = eps + (1 - eps) cos(pi t / 2)."""

    name = "cosine"

    def __init__(self, eps: float = 1e-3) -> None:
        self.eps = check_real_range("eps", eps, 0.0, 1.0)
        if self.eps >= 1.0:
            raise ValueError(f"eps must be < 1, got {eps}")

    def _alpha(self, t):
        return self.eps + (1 - self.eps) * _lib(t).cos(math.pi * t / 2)

    def _one_minus_alpha(self, t):
        # 1 - cos(x) = 2 sin(x / 2)^2, without cancellation near t = 0
        return 2 * (1 - self.eps) * _lib(t).sin(math.pi * t / 4) ** 2

    def _dalpha(self, t):
        return -(1 - self.eps) * (math.pi / 2) * _lib(t).sin(math.pi * t / 2)


class GeometricSigmaSchedule(Schedule):
    """Geometric total noise sigma_t = sigma_min^(1-t) sigma_max^t, shifted so that alpha_0 = 1:

    alpha_t = exp(-(sigma_t - sigma_min)).
    """

    name = "geometric"

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0) -> None:
        self.sigma_min = check_real_range("sigma_min", sigma_min, 0.0, open_low=True)
        self.sigma_max = check_real_range("sigma_max", sigma_max, 0.0, open_low=True)
        if not self.sigma_max > self.sigma_min:
            raise ValueError(f"sigma_max must exceed sigma_min={sigma_min}, got {sigma_max}")

    def _sigma(self, t):
        return self.sigma_min ** (1 - t) * self.sigma_max**t

    def _excess(self, t):
        """sigma_t - sigma_min = sigma_min expm1(t log(sigma_max / sigma_min)), without cancellation."""
        return self.sigma_min * _lib(t).expm1(t * math.log(self.sigma_max / self.sigma_min))

    def _alpha(self, t):
        return _lib(t).exp(-self._excess(t))

    def _one_minus_alpha(self, t):
        return -_lib(t).expm1(-self._excess(t))

    def _dalpha(self, t):
        dsigma = self._sigma(t) * math.log(self.sigma_max / self.sigma_min)
        return -dsigma * self._alpha(t)


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (LogLinearSchedule, LinearSchedule, CosineSchedule, GeometricSigmaSchedule)
}


def make_schedule(name: str, **params: float) -> Schedule:
    """Build a schedule by name: one of ``loglinear``, ``linear``, ``cosine``, ``geometric``."""
    try:
        cls = SCHEDULES[name]
    except KeyError:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {name!r}") from None
    return cls(**params)
