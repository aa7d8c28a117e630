"""Summaries over seeds: the mean with a 95% bootstrap percentile interval that stays inside the metric's range.

Why a bootstrap percentile interval. The metrics summarised here have bounded ranges: KL, TV, errors
and perplexities are >= 0, MAUVE and classifier probabilities lie in [0, 1]. A Student-t interval
(mean ± t s/sqrt(n)) ignores the range and, with 3-5 seeds of a skewed metric, prints negative lower
bounds for a KL, which a reader rightly takes for a bug. The two range-respecting choices are a
t-interval on log KL and a bootstrap percentile interval over seeds. We use the bootstrap because

- every resampled mean is a mean of observed values, so the interval lies within [min, max] of the
  data and therefore inside every range the metric has (>= 0, [0, 1]) with no transformation and
  no clipping;
- it is an interval for the mean, the number the tables print (a log-scale t-interval is one for the
  geometric mean) and it accepts exact zeros (a log-scale interval does not);
- one method serves every metric, so the tables and the error bars of all reports read the same way.

Its known weakness is coverage with few seeds: the percentile interval of n values cannot be wider
than [min, max], so with 3-5 seeds it is narrower than a 95% interval should be. Read it as the
spread over seeds, not as a guarantee; n (the number of seeds) is printed beside every interval.

The bootstrap is deterministic: ``RESAMPLES`` resamples with replacement drawn from
``numpy.random.default_rng(BOOTSTRAP_SEED)``; the interval is the (1 - level)/2 and (1 + level)/2
quantiles of the resampled means (numpy's default linear interpolation). Source: Efron and
Tibshirani, An Introduction to the Bootstrap (1993), chapter 13.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .markdown import fmt

#: Bootstrap resamples per interval and the seed of their generator (fixed: a report regenerated from
#: the same results file prints the same intervals).
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
#: What the printed intervals are, for table headers and figure captions.
INTERVAL_NAME = "95% bootstrap percentile interval over seeds"
INTERVAL_HEADER = "mean [95% bootstrap interval]"


@dataclass(frozen=True)
class Summary:
    """Mean of ``n`` finite values with its two-sided ``level`` bootstrap percentile interval [lo, hi]
    and the sample standard deviation (ddof = 1).

    min(values) <= lo <= hi <= max(values), so the interval stays inside every range the values respect.
    With n = 1 the interval and the std are NaN (one seed gives no spread); with n = 0 everything is NaN.
    """

    mean: float
    lo: float
    hi: float
    std: float
    n: int
    level: float = 0.95

    def interval_text(self, digits: int = 3) -> str:
        """``mean [lo, hi]`` (just the mean when there is no interval, ``-`` when there are no values)."""
        if self.n == 0:
            return "-"
        if math.isnan(self.lo):
            return fmt(self.mean, digits)
        return f"{fmt(self.mean, digits)} [{fmt(self.lo, digits)}, {fmt(self.hi, digits)}]"

    def error_bar(self) -> tuple[float, float]:
        """(mean - lo, hi - mean) for an asymmetric error bar; (0, 0) without an interval."""
        if self.n < 2 or math.isnan(self.lo):
            return 0.0, 0.0
        return max(self.mean - self.lo, 0.0), max(self.hi - self.mean, 0.0)


def bootstrap_interval(xs: np.ndarray, level: float = 0.95, resamples: int = RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``xs`` (shape [n], n >= 2, finite).

    Draws ``resamples`` index vectors of length n uniformly with replacement from
    ``numpy.random.default_rng(seed)`` and returns the (1-level)/2 and (1+level)/2 quantiles of the
    resampled means, clamped to [min(xs), max(xs)] against rounding of the sums.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(xs), size=(resamples, len(xs)))
    means = xs[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(np.clip(lo, xs.min(), xs.max())), float(np.clip(hi, xs.min(), xs.max()))


def summarize(values: Iterable[float | None], level: float = 0.95) -> Summary:
    """Mean, bootstrap percentile interval and std of the finite values (None and NaN are dropped).

    Raises ValueError when ``level`` is not in (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    xs = np.array([float(v) for v in values if v is not None and not math.isnan(float(v))], dtype=np.float64)
    n = len(xs)
    nan = float("nan")
    if n == 0:
        return Summary(nan, nan, nan, nan, 0, level)
    mean = math.fsum(xs) / n
    if n == 1:
        return Summary(mean, nan, nan, nan, 1, level)
    std = math.sqrt(math.fsum((xs - mean) ** 2) / (n - 1))
    lo, hi = bootstrap_interval(xs, level)
    return Summary(mean, lo, hi, std, n, level)
