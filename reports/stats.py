"""Summaries over seeds: mean with a Student-t interval, mean with standard deviation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from scipy import stats

from .markdown import fmt


@dataclass(frozen=True)
class Summary:
    """Mean of ``n`` finite values with the two-sided ``level`` Student-t interval and the sample std.

    half_width = t_{(1+level)/2, n-1} * std / sqrt(n); std uses ddof = 1. With n = 1 the interval and the
    std are NaN (one seed gives no spread); with n = 0 everything is NaN.
    """

    mean: float
    lo: float
    hi: float
    std: float
    n: int
    level: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def interval_text(self, digits: int = 3) -> str:
        """``mean [lo, hi]`` (just the mean when there is no interval)."""
        if self.n == 0:
            return "-"
        if math.isnan(self.lo):
            return fmt(self.mean, digits)
        return f"{fmt(self.mean, digits)} [{fmt(self.lo, digits)}, {fmt(self.hi, digits)}]"

    def std_text(self, digits: int = 3) -> str:
        """``mean ± std`` (just the mean for a single value)."""
        if self.n == 0:
            return "-"
        if math.isnan(self.std):
            return fmt(self.mean, digits)
        return f"{fmt(self.mean, digits)} ± {fmt(self.std, digits)}"


def summarize(values: Iterable[float | None], level: float = 0.95) -> Summary:
    """Mean, t-interval and std of the finite values (None and NaN are dropped)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    nan = float("nan")
    if n == 0:
        return Summary(nan, nan, nan, nan, 0, level)
    mean = math.fsum(xs) / n
    if n == 1:
        return Summary(mean, nan, nan, nan, 1, level)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * std / math.sqrt(n)
    return Summary(mean, mean - half, mean + half, std, n, level)
