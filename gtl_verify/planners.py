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


def _effective_scores(scores: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Scores at masked positions (-inf elsewhere) under the non-finite convention: +inf outranks
    every finite score (only the +inf positions stay, with score 0), -inf ranks last (used only when
    every masked position of the row is -inf, then they tie at 0). NaN at a masked position raises."""
    scores = scores.to(torch.float64)
    if (torch.isnan(scores) & masked).any():
        raise ValueError("planner scores contain NaN at a masked position")
    top = torch.isposinf(scores) & masked
    all_neg = (torch.isneginf(scores) | ~masked).all(-1, keepdim=True)
    eff = torch.where(masked, scores, -torch.inf)
    eff = torch.where(all_neg, torch.where(masked, 0.0, -torch.inf), eff)
    return torch.where(top.any(-1, keepdim=True), torch.where(top, 0.0, -torch.inf), eff)


def position_log_probs(scores: torch.Tensor, masked: torch.Tensor, temperature: float) -> torch.Tensor:
    """log P(reveal position i) = log softmax(scores / temperature) over the masked positions
    [B, L]; temperature 0 puts all mass on the first (lowest index) arg-max. Only masked positions
    are ever chosen, whatever the scores: +inf scores take all the mass (split evenly, or the first
    at temperature 0), -inf positions come last, NaN at a masked position raises ValueError.
    Rows without a masked position are all -inf."""
    temperature = check_real_range("temperature", temperature, 0.0)
    eff = _effective_scores(scores, masked)
    any_masked = masked.any(-1, keepdim=True)
    if temperature == 0:
        best = eff.argmax(-1, keepdim=True)
        out = torch.full_like(eff, -torch.inf).scatter(-1, best, 0.0)
        return torch.where(any_masked, out, -torch.inf)
    shifted = eff - torch.where(any_masked, eff.amax(-1, keepdim=True), 0.0)  # <= 0: tiny temperatures cannot overflow
    out = torch.log_softmax(torch.where(masked & ~torch.isneginf(eff), shifted / temperature, -torch.inf), dim=-1)
    return torch.where(any_masked, out, -torch.inf)


def choose_positions(scores: torch.Tensor, masked: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """One masked position per row [B] drawn from :func:`position_log_probs`."""
    return sample_categorical(position_log_probs(scores, masked, temperature), generator)
