"""Minibatch draws shared by the estimators: balanced clean rows of both domains and masked rows.

Every draw uses the CPU generator the training loop passes in (seeded, reproducible).
"""

from __future__ import annotations

import torch

from ..objectives import mask_tokens, sample_times
from ..schedules import Schedule


def rows(x: torch.Tensor, count: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` rows of ``x`` [N, L] drawn uniformly with replacement."""
    return x[torch.randint(len(x), (count,), generator=gen)]


def balanced(source: torch.Tensor, target: torch.Tensor, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(source rows [batch // 2, L], target rows [batch // 2, L]): equal class priors pi_s = pi_t."""
    half = max(batch // 2, 1)
    return rows(source, half, gen), rows(target, half, gen)


def masked(x: torch.Tensor, schedule: Schedule, mask_id: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(z [B, L], t [B] float64): each row masked at its own t ~ U[0, 1] with the schedule."""
    t = sample_times(len(x), gen, 0.0, stratified=False)
    return mask_tokens(x, t, schedule, mask_id, gen), t
