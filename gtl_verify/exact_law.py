"""Exact output law of a sampler on an enumerable space, propagated step by step.

States are all (K+1)^L partly masked sequences (mask id K). Starting from the all-mask state:

- ancestral step: positions move independently given z_t, so
      law_s(z_s) = sum_{z_t} law_t(z_t) prod_i P_i(z_s^i | z_t)
  with P_i the rule's step distribution at masked i and the identity at unmasked i;
- planner step: law_s(z^{i<-v}) += law_t(z) pi(i | z) q_i(v | z) with pi the planner's position
  law and q_i the rule's token law conditioned on a reveal.

The rule is evaluated on every reachable state at once (the same code path as the samplers), so
the result is the sampler's exact law, to compare with q by TV and KL. Every step law comes from
:func:`gtl_verify.step.reverse_step`, so impossible states follow the samplers' convention: when a
state of probability 0 under the source is reached with positive probability, the call raises
:class:`~gtl_verify.guidance.ImpossibleStepError` (the sampler would raise there too); otherwise
the returned law sums to 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .enumeration import kl_divergence, total_variation
from .forward import DTYPE, enumerate_sequences, sequence_index
from .planners import position_log_probs
from .protocols import Denoiser, Planner, SequenceRatio
from .samplers import SamplerConfig
from .schedules import Schedule
from .step import StepContext, argmax_fill, reverse_step

MAX_STATES = 200_000


@dataclass
class ExactLaw:
    """Law over clean sequences [K^L] (row-major) and the mass left on masked states
    (before the optional arg-max clean-up, which is folded into ``clean``)."""

    clean: torch.Tensor
    leftover_mass: float

    def tv(self, target: torch.Tensor) -> float:
        return total_variation(self.clean, target)

    def kl(self, target: torch.Tensor) -> float:
        """KL(sampler || target)."""
        return kl_divergence(self.clean, target)


def _space(vocab_size: int, length: int, mask_id: int) -> torch.Tensor:
    if mask_id != vocab_size:
        raise ValueError(f"exact laws use mask id K = {vocab_size}, got mask_id={mask_id}")
    n = (vocab_size + 1) ** length
    if n > MAX_STATES:
        raise ValueError(f"(K+1)**L = {n} states exceed {MAX_STATES}; use a smaller vocab_size or length")
    return enumerate_sequences(vocab_size + 1, length)


def _finish(law: torch.Tensor, states: torch.Tensor, ctx: StepContext, vocab_size: int, final_argmax: bool) -> ExactLaw:
    mask_id = vocab_size
    masked_rows = (states == mask_id).any(-1)
    clean_idx = sequence_index(enumerate_sequences(vocab_size, states.shape[1]), vocab_size + 1)
    clean = law[clean_idx].clone()
    leftover = float(law[masked_rows].sum())
    if leftover > 0 and final_argmax:
        rows = masked_rows & (law > 0)
        z = states[rows]
        clean.index_add_(0, sequence_index(argmax_fill(ctx, z), vocab_size), law[rows])
    return ExactLaw(clean, leftover)


def ancestral_law(
    denoiser: Denoiser, ratio: SequenceRatio | None, schedule: Schedule, config: SamplerConfig, chunk_entries: int = 4_000_000
) -> ExactLaw:
    """Exact law of :func:`~gtl_verify.samplers.ancestral_sample` with the same config."""
    ctx = config.context(denoiser, ratio, schedule)
    k, length = ctx.vocab_size, config.length
    states = _space(k, length, ctx.mask_id)
    n = states.shape[0]
    law = torch.zeros(n, dtype=DTYPE)
    law[-1] = 1.0  # all-mask state is the last in row-major order
    onehot = torch.nn.functional.one_hot(states, k + 1).to(DTYPE)  # identity for unmasked positions
    grid = torch.linspace(1.0, 0.0, config.steps + 1, dtype=torch.float64).tolist()
    for t, s in zip(grid[:-1], grid[1:]):
        alive = (law > 0).nonzero().squeeze(-1)
        z = states[alive]
        masked = z == k
        if not masked.any():
            break
        positions = masked.nonzero()
        probs = torch.exp(reverse_step(ctx, z, t, s, positions))
        per_pos = onehot[alive].clone()
        per_pos[positions[:, 0], positions[:, 1]] = probs
        new = torch.zeros(n, dtype=DTYPE)
        rows_per_chunk = max(1, chunk_entries // n)
        for a in range(0, len(alive), rows_per_chunk):
            block = law[alive[a : a + rows_per_chunk], None]
            for i in range(length):
                block = (block[:, :, None] * per_pos[a : a + rows_per_chunk, i, None, :]).reshape(block.shape[0], -1)
            new += block.sum(0)
        law = new
    return _finish(law, states, ctx, k, config.final_argmax)


def planner_law(
    denoiser: Denoiser, ratio: SequenceRatio | None, planner: Planner, schedule: Schedule, config: SamplerConfig
) -> ExactLaw:
    """Exact law of :func:`~gtl_verify.samplers.planner_sample` with the same config."""
    ctx = config.context(denoiser, ratio, schedule, planner)
    k, length = ctx.vocab_size, config.length
    states = _space(k, length, ctx.mask_id)
    n = states.shape[0]
    powers = (k + 1) ** torch.arange(length - 1, -1, -1)
    law = torch.zeros(n, dtype=DTYPE)
    law[-1] = 1.0
    for m in range(length, 0, -1):
        t, s = m / length, (m - 1) / length
        alive = (law > 0).nonzero().squeeze(-1)
        z = states[alive]
        masked = z == k
        pos_probs = torch.exp(position_log_probs(ctx.planner(z, ctx.log_probs(z, t)), masked, config.temperature))
        positions = masked.nonzero()
        token_probs = torch.exp(reverse_step(ctx, z, t, s, positions, reveal_only=True))[:, :k]  # [M, K]
        b, i = positions[:, 0], positions[:, 1]
        mass = law[alive][b, None] * pos_probs[b, i, None] * token_probs  # [M, K]
        target = alive[b, None] + (torch.arange(k)[None, :] - k) * powers[i, None]  # z^{i <- v}
        law = torch.zeros(n, dtype=DTYPE).index_add_(0, target.reshape(-1), mass.reshape(-1))
    return _finish(law, states, ctx, k, config.final_argmax)
