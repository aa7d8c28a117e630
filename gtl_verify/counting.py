"""Counting wrappers: every network call a sampler makes is counted, so the cost formulas of
THEORY section 4 can be asserted (full guidance: masked positions x K ratio passes per step;
top-n: masked positions x n; planner schedule: n per step)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .protocols import SingleSiteRatio


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
        return self.inner(z, t)


class CountingRatio:
    """Wraps a sequence ratio (and its ``single_site`` when present); counts sequences scored.

    A ``single_site`` call answers every (position, token) of a sequence in one pass and counts
    one sequence per row."""

    def __init__(self, ratio) -> None:
        self.inner = ratio
        self.count = CallCount()
        self.single_site_count = CallCount()
        if isinstance(ratio, SingleSiteRatio):  # keep the capability visible to the protocol check
            self.single_site = self._single_site

    def __call__(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        self.count.add(z.shape[0])
        return self.inner(z, t)

    def _single_site(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        self.single_site_count.add(z.shape[0])
        return self.inner.single_site(z, t)


class CountingPlanner:
    """Wraps a planner; counts calls."""

    def __init__(self, planner) -> None:
        self.inner = planner
        self.count = CallCount()

    def __call__(self, z: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
        self.count.add(z.shape[0])
        return self.inner(z, log_probs)
