"""Counting wrappers: every network call a sampler makes is counted, so the cost formulas of
THEORY section 4 can be asserted (full guidance: masked positions x K ratio passes per step;
top-n: masked positions x n; planner schedule: n per step).

The wrappers are also the boundary where the sampler core receives a component's output, so each
output is checked there once per call (shape, dtype, normalisation) and a wrong one raises
:class:`ComponentOutputError` naming the component; checks never call a network.

Denoiser rows are normalised log-probs. A network computes ``log_softmax`` in its own dtype with unit
round-off u = ``torch.finfo(dtype).eps``; rounding each entry x_v to relative error u moves
logsumexp_v x_v by at most u * sum_v p_v |x_v| = u * H(p) <= u * ln K, and the log-sum inside
``log_softmax`` adds a few units of u * (1 + ln K). A row is accepted when its logsumexp is within
:func:`normalisation_tolerance` = 8 u (1 + ln K) of 0 (float32: ~1e-6 (1 + ln K); bfloat16:
~0.06 (1 + ln K)), and never below the suite's law-sum tolerance 1e-9: float64 tables of exact
oracles are normalised by sums over many states conditioned on near-impossible events (relative
round-off amplified far beyond one log_softmax; 3.6e-15 seen at K = 2 with 1e-12 transitions), and
a row that sums to 1 within 1e-9 is a law everywhere else in the suite. Logits (log-probs + c) or
probabilities miss it by O(1). Accepted rows are
then cast to float64 and renormalised exactly (x - logsumexp x), so every rule, guided or not,
receives the same normalised law. Rows whose logsumexp is NaN or -inf are passed on unchanged: they
mark states of probability 0 (docs/conventions.md section 4) and :func:`gtl_verify.step.check_possible`
names them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .protocols import offers
from .validation import STOCHASTIC_ATOL


class ComponentOutputError(ValueError):
    """A denoiser, ratio or planner returned an output of the wrong type, shape, dtype or
    normalisation; the message names the component and what was wrong."""


def normalisation_tolerance(dtype: torch.dtype, vocab_size: int) -> float:
    """Largest |logsumexp| of a log-prob row [K] computed in ``dtype`` that still counts as
    normalised: max(8 * eps(dtype) * (1 + ln K), STOCHASTIC_ATOL) (derivation in the module docstring)."""
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(torch.float64).eps
    return max(8.0 * eps * (1.0 + math.log(max(vocab_size, 1))), STOCHASTIC_ATOL)


def check_output(component: str, out: object, shape: tuple[int | None, ...]) -> torch.Tensor:
    """Raise :class:`ComponentOutputError` unless ``out`` is a floating tensor of ``shape``
    (``None`` matches any size)."""
    want = tuple("K" if d is None else d for d in shape)
    if not torch.is_tensor(out):
        raise ComponentOutputError(f"{component} must return a floating torch.Tensor of shape {want}, got {type(out).__name__}")
    if out.dim() != len(shape) or any(d is not None and d != g for d, g in zip(shape, out.shape)):
        raise ComponentOutputError(f"{component} must return shape {want}, got {tuple(out.shape)}")
    if not out.dtype.is_floating_point:
        raise ComponentOutputError(f"{component} must return a floating tensor, got dtype {out.dtype}")
    return out


def normalised_log_probs(out: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Denoiser output [B, L, K] -> float64 rows renormalised exactly; raise
    :class:`ComponentOutputError` when a row's logsumexp is +inf or off 0 by more than
    :func:`normalisation_tolerance` (logits or probabilities instead of log-probs)."""
    tol = normalisation_tolerance(out.dtype, vocab_size)
    x = out.detach().to(torch.float64)
    lse = torch.logsumexp(x, dim=-1, keepdim=True)
    defined = ~(torch.isnan(lse) | torch.isneginf(lse))
    off = defined & ~(lse.abs() <= tol)
    if off.any():
        b, i, _ = off.nonzero()[0].tolist()
        row = x[b, i]
        probs = bool(((row >= 0) & (row <= 1)).all()) and abs(float(row.sum()) - 1) < 1e-3
        raise ComponentOutputError(
            f"denoiser must return normalised log-probs (logsumexp 0 within {tol:.2g} for {out.dtype}); {int(off.sum())} "
            f"row(s) are not, first row {b} position {i} with logsumexp {lse[b, i, 0].item():.6g} "
            f"(looks like {'probabilities' if probs else 'logits, log-probs plus a constant'})"
        )
    return torch.where(defined, x - torch.where(defined, lse, torch.zeros_like(lse)), x)


@dataclass
class CallCount:
    """calls: forward invocations; sequences: rows evaluated (a ratio "pass" is one sequence)."""

    calls: int = 0
    sequences: int = 0

    def add(self, rows: int) -> None:
        self.calls += 1
        self.sequences += int(rows)


class CountingDenoiser:
    """Wraps a :class:`~gtl_verify.protocols.Denoiser`; forwards attributes, counts calls."""

    def __init__(self, denoiser) -> None:
        self.inner = denoiser
        self.count = CallCount()
        self.vocab_size = denoiser.vocab_size
        self.mask_id = denoiser.mask_id
        self.uses_time = bool(getattr(denoiser, "uses_time", False))

    def __call__(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        self.count.add(z.shape[0])
        out = check_output("denoiser", self.inner(z, t), (*z.shape, self.vocab_size))
        return normalised_log_probs(out, self.vocab_size)


class CountingRatio:
    """Wraps a sequence ratio (and its ``single_site`` when present); counts sequences scored.
    ``vocab_size``: K of the single-site table [B, L, K] (None: not checked).

    A ``single_site`` or ``increment`` call answers every (position, token) of a sequence in one
    pass and counts one sequence per row in ``single_site_count``."""

    def __init__(self, ratio, vocab_size: int | None = None) -> None:
        self.inner = ratio
        self.vocab_size = vocab_size
        self.count = CallCount()
        self.single_site_count = CallCount()
        if offers(ratio, "single_site"):  # keep the capabilities visible to the protocol checks
            self.single_site = self._single_site
        if offers(ratio, "increment"):
            self.increment = self._increment

    def __call__(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        self.count.add(z.shape[0])
        return check_output("ratio", self.inner(z, t), (z.shape[0],)).detach()

    def _single_site(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        self.single_site_count.add(z.shape[0])
        return check_output("ratio.single_site", self.inner.single_site(z, t), (*z.shape, self.vocab_size)).detach()

    def _increment(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        self.single_site_count.add(z.shape[0])
        return check_output("ratio.increment", self.inner.increment(z, t), (*z.shape, self.vocab_size)).detach()


class CountingPlanner:
    """Wraps a planner; counts calls."""

    def __init__(self, planner) -> None:
        self.inner = planner
        self.count = CallCount()

    def __call__(self, z: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
        self.count.add(z.shape[0])
        return check_output("planner", self.inner(z, log_probs), tuple(z.shape)).detach()
