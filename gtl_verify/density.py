"""Exact log-density of a fixed-order reveal sampler, for Monte-Carlo KL on long sequences.

Revealing one position per step in a fixed order (left to right), the sampler's law factorises:

    log s(x) = sum_i log s_i(x^i | x^{<i}, rest masked),

with s_i the rule's token law at position i conditioned on a reveal. Given samples x ~ s and the
exact target log q(x), KL(s || q) = E_s[log s(x) - log q(x)] is estimated without bias at any L.
"""

from __future__ import annotations

import torch

from .rules import GuidanceRule
from .samplers import _Components
from .schedules import Schedule


def fixed_order_log_density(
    denoiser, ratio, rule: GuidanceRule, schedule: Schedule, x: torch.Tensor, gamma: float = 1.0, top_k: int | None = None
) -> torch.Tensor:
    """log s(x) [B] of the left-to-right reveal sampler (times t = m/L, s = (m-1)/L at m masked)."""
    from . import guidance

    comp = _Components(denoiser, ratio)
    mask_id = comp.denoiser.mask_id
    b, length = x.shape
    rows = torch.arange(b, device=x.device)
    total = torch.zeros(b, dtype=torch.float64, device=x.device)
    for i in range(length):
        z = x.clone()
        z[:, i:] = mask_id
        m = length - i
        t, s = m / length, (m - 1) / length
        log_probs = comp.log_probs(z, t)
        positions = torch.stack([rows, torch.full_like(rows, i)], dim=-1)
        weights = rule(comp.step_input(z, t, s, schedule, log_probs, positions, gamma))
        tokens = torch.cat([weights[:, :-1], torch.full_like(weights[:, -1:], -torch.inf)], dim=-1)
        if top_k is not None:
            tokens = guidance.top_k_truncate(tokens, min(top_k, tokens.shape[-1] - 1))
        token_log_probs = torch.log_softmax(tokens.to(torch.float64), dim=-1)
        total += token_log_probs[rows, x[:, i]]
    return total
