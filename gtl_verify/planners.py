"""Planners: which masked position to reveal next, as scores [B, L] (higher = sooner).

Rule-based planners read the denoiser's log-probabilities; a learned planner is any
:class:`~gtl_verify.protocols.Planner` (e.g. :class:`gtl_verify.learned.NetworkPlanner`).
The sampler draws the position from softmax(scores / temperature) over masked positions
(temperature 0: the arg-max).
"""

from __future__ import annotations

import torch

from .guidance import sample_categorical
from .validation import check_real_range


class RandomPlanner:
    """Uniform over masked positions (scores all 0)."""

    def __call__(self, z: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(z.shape, dtype=torch.float64, device=z.device)


class LeftToRightPlanner:
    """Fixed order: the leftmost masked position first (use temperature 0)."""

    def __call__(self, z: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
        return -torch.arange(z.shape[1], dtype=torch.float64, device=z.device).expand(z.shape)


class ConfidencePlanner:
    """Score = max_v log p(x^i = v | z): reveal where the denoiser is surest."""

    def __call__(self, z: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
        return log_probs.to(torch.float64).amax(-1)


class MarginPlanner:
    """Score = p(top-1) - p(top-2)."""

    def __call__(self, z: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
        top = torch.topk(log_probs.to(torch.float64).exp(), min(2, log_probs.shape[-1]), dim=-1).values
        return top[..., 0] - (top[..., 1] if top.shape[-1] > 1 else 0.0)


class EntropyPlanner:
    """Score = -entropy of p(x^i | z)."""

    def __call__(self, z: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
        lp = log_probs.to(torch.float64)
        return (lp.exp() * torch.where(lp > -torch.inf, lp, 0.0)).sum(-1)


PLANNERS = {
    "random": RandomPlanner,
    "left-to-right": LeftToRightPlanner,
    "confidence": ConfidencePlanner,
    "margin": MarginPlanner,
    "entropy": EntropyPlanner,
}


def make_planner(name: str):
    """A rule-based planner by name: random, left-to-right, confidence, margin, entropy."""
    try:
        return PLANNERS[name]()
    except KeyError:
        raise ValueError(f"planner must be one of {sorted(PLANNERS)}, got {name!r}") from None


def position_log_probs(scores: torch.Tensor, masked: torch.Tensor, temperature: float) -> torch.Tensor:
    """log P(reveal position i) = log softmax(scores / temperature) over masked positions [B, L];
    temperature 0 puts all mass on the first arg-max. Rows without a masked position are all -inf."""
    temperature = check_real_range("temperature", temperature, 0.0)
    scores = scores.to(torch.float64)
    if temperature == 0:
        masked_scores = torch.where(masked, scores, -torch.inf)
        best = masked_scores.argmax(-1, keepdim=True)
        out = torch.full_like(scores, -torch.inf).scatter(-1, best, 0.0)
        return torch.where(masked.any(-1, keepdim=True), out, -torch.inf)
    masked_scores = torch.where(masked, scores, -torch.inf)
    shifted = masked_scores - masked_scores.amax(-1, keepdim=True)  # <= 0, so tiny temperatures cannot overflow
    return torch.log_softmax(torch.where(masked, shifted / temperature, -torch.inf), dim=-1)


def choose_positions(scores: torch.Tensor, masked: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """One masked position per row [B] drawn from :func:`position_log_probs`."""
    return sample_categorical(position_log_probs(scores, masked, temperature), generator)
