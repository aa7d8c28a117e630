"""Minibatch draws of the single-site estimators: rows of one domain and masked rows.

Every draw uses the CPU generator the training loop passes in (seeded, reproducible). The
sequence-level estimators draw through :mod:`gtl_verify.recipes` (balanced rows of both domains:
:func:`gtl_verify.training.balanced_batches`).
"""

from __future__ import annotations

import torch

from ..objectives import mask_tokens, sample_times
from ..schedules import Schedule


def rows(x: torch.Tensor, count: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` rows of ``x`` [N, L] drawn uniformly with replacement."""
    return x[torch.randint(len(x), (count,), generator=gen)]


def masked(x: torch.Tensor, schedule: Schedule, mask_id: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(z [B, L], t [B] float64): each row masked at its own t ~ U[0, 1] with the schedule."""
    t = sample_times(len(x), gen, 0.0, stratified=False)
    return mask_tokens(x, t, schedule, mask_id, gen), t
