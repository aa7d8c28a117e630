"""Exact log-density of a fixed-order reveal sampler, for Monte-Carlo KL on long sequences.

Revealing one position per step in a fixed order (left to right), the sampler's law factorises:

    log s(x) = sum_i log s_i(x^i | x^{<i}, rest masked),

with s_i the rule's token law at position i conditioned on a reveal. Given samples x ~ s and the
exact target log q(x), KL(s || q) = E_s[log s(x) - log q(x)] is estimated without bias at any L.
"""

from __future__ import annotations

import torch

from .protocols import Denoiser, SequenceRatio
from .rules import GuidanceRule
from .schedules import Schedule
from .step import StepContext, reverse_step


def fixed_order_log_density(
    denoiser: Denoiser,
    ratio: SequenceRatio | None,
    rule: GuidanceRule,
    schedule: Schedule,
    x: torch.Tensor,
    gamma: float = 1.0,
    top_k: int | None = None,
) -> torch.Tensor:
    """log s(x) [B] (float64, nats) of the left-to-right reveal sampler for clean x [B, L] (times
    t = m/L, s = (m-1)/L at m masked); the step law is :func:`gtl_verify.step.reverse_step` with
    ``reveal_only=True`` (raises as it does)."""
    ctx = StepContext.build(denoiser, ratio, schedule, rule, gamma, top_k)
    b, length = x.shape
    rows = torch.arange(b, device=x.device)
    total = torch.zeros(b, dtype=torch.float64, device=x.device)
    for i in range(length):
        z = x.clone()
        z[:, i:] = ctx.mask_id
        m = length - i
        positions = torch.stack([rows, torch.full_like(rows, i)], dim=-1)
        total += reverse_step(ctx, z, m / length, (m - 1) / length, positions, reveal_only=True)[rows, x[:, i]]
    return total
