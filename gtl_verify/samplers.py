"""Samplers: plain functions of (denoiser, ratio, [planner], schedule, config, generator) that
return a :class:`SampleResult`.

- :func:`ancestral_sample`: T reverse steps on the grid t_j = j / T (j = T .. 1); at each step every
  masked position independently stays masked or is revealed, according to the guidance rule
  (default :class:`~gtl_verify.rules.GTL`). Several positions may be revealed per step.
- :func:`planner_sample`: the scheduling mechanism: one position per step, chosen by a planner,
  with the rule's token law at that position (n candidates -> n ratio passes per step).

Both start from the all-mask sequence, count every network call and, as a documented option,
fill masks left at the end with the denoiser's arg-max (``final_argmax``). Categorical draws are
made in float64 from the given ``torch.Generator``. The denoiser is called again only when the
sequences changed (or when it uses the time input). Every step law comes from
:func:`gtl_verify.step.reverse_step` (the exact laws and the density use the same step), so
impossible states and non-finite values follow docs/conventions.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm

from . import guidance
from .planners import choose_positions
from .protocols import Denoiser, Planner, SequenceRatio
from .rules import GTL, GuidanceRule
from .schedules import Schedule
from .step import StepContext, argmax_fill, reverse_step
from .validation import check_int_range, check_real_range


@dataclass(frozen=True)
class SamplerConfig:
    """Sampling settings.

    num_samples, length: output shape. steps: T for the ancestral sampler (the planner sampler uses L).
    gamma: constant, (t, gamma) knots, or a callable gamma(t) (finite, >= 0). rule: the guidance rule
    (default GTL with all K candidates). top_k: truncate each step's token law to its k most likely
    tokens (P(stay masked) keeps its exact value; see :func:`gtl_verify.guidance.top_k_truncate`).
    temperature: planner softmax temperature (0 = arg-max). final_argmax: fill leftover masks.
    """

    num_samples: int
    length: int
    steps: int = 128
    gamma: float | Sequence[Sequence[float]] = 1.0
    rule: GuidanceRule = field(default_factory=GTL)
    top_k: int | None = None
    temperature: float = 0.5
    final_argmax: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        check_int_range("num_samples", self.num_samples, 1)
        check_int_range("length", self.length, 1)
        check_int_range("steps", self.steps, 1)
        check_real_range("temperature", self.temperature, 0.0)
        if self.top_k is not None:
            check_int_range("top_k", self.top_k, 1)
        guidance.make_gamma(self.gamma)  # validates

    def gamma_at(self, t: float) -> float:
        return guidance.check_gamma(guidance.make_gamma(self.gamma)(t), f"gamma(t={t:g})")

    def context(
        self, denoiser: Denoiser, ratio: SequenceRatio | None, schedule: Schedule, planner: Planner | None = None
    ) -> StepContext:
        """The :class:`~gtl_verify.step.StepContext` of these settings (counted components)."""
        return StepContext.build(denoiser, ratio, schedule, self.rule, self.gamma, self.top_k, planner)


@dataclass
class SampleResult:
    """Samples and their cost. ``ratio_passes`` counts sequences scored by the ratio network
    (candidate sequences z^{i<-v} of a plain sequence ratio); ``single_site_passes`` counts rows
    answered by one single-site pass (``single_site`` or ``increment``: every candidate of a row at
    once), one per row that still holds a mask at each step (rows already complete are not scored,
    so it is at most rows x steps); ``ratio_calls`` counts calls of either kind.

    ``token_log_prob`` (planner sampler only, else None): float64 [B], the sum over steps of the
    log-probability of each drawn token under its step's token law (the law conditioned on the
    reveal at the chosen position), in nats. At temperature 0 the reveal order is a function of the
    sequence, so this is the sampler's exact log-density log s(x) of its own output; with
    :class:`~gtl_verify.planners.LeftToRightPlanner` it equals
    :func:`gtl_verify.density.fixed_order_log_density` of the output bit for bit (same step
    inputs, same summation order), without a second pass."""

    tokens: torch.Tensor
    steps: int
    denoiser_calls: int
    denoiser_sequences: int
    ratio_calls: int
    ratio_passes: int
    single_site_passes: int
    planner_calls: int
    leftover_masks: int
    wall_time_s: float
    token_log_prob: torch.Tensor | None = None

    def cost(self) -> dict[str, int | float]:
        return {k: v for k, v in vars(self).items() if k not in ("tokens", "token_log_prob")}


def _finish(ctx: StepContext, z: torch.Tensor, steps: int, final_argmax: bool, start: float,
            token_log_prob: torch.Tensor | None = None) -> SampleResult:
    mask_id = ctx.mask_id
    leftover = int((z == mask_id).sum())
    if leftover and final_argmax:
        z = argmax_fill(ctx, z)
    ratio = ctx.ratio
    return SampleResult(
        tokens=z, steps=steps,
        denoiser_calls=ctx.denoiser.count.calls, denoiser_sequences=ctx.denoiser.count.sequences,
        ratio_calls=0 if ratio is None else ratio.count.calls + ratio.single_site_count.calls,
        ratio_passes=0 if ratio is None else ratio.count.sequences,
        single_site_passes=0 if ratio is None else ratio.single_site_count.sequences,
        planner_calls=0 if ctx.planner is None else ctx.planner.count.calls,
        leftover_masks=leftover, wall_time_s=time.perf_counter() - start, token_log_prob=token_log_prob,
    )


def _reveal(ctx: StepContext, z: torch.Tensor, positions: torch.Tensor, step_log_probs: torch.Tensor,
            generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(``z`` with an outcome drawn at every listed position, the outcomes' log-probabilities [M])."""
    outcome = guidance.sample_categorical(step_log_probs, generator)
    tokens = guidance.outcome_to_tokens(outcome, ctx.vocab_size, ctx.mask_id)
    z = z.clone()
    z[positions[:, 0], positions[:, 1]] = tokens
    return z, step_log_probs.gather(-1, outcome[:, None]).squeeze(-1)


def ancestral_sample(
    denoiser: Denoiser, ratio: SequenceRatio | None, schedule: Schedule, config: SamplerConfig, generator: torch.Generator | None = None
) -> SampleResult:
    """T-step ancestral sampling; the rule decides every masked position at every step.

    Raises :class:`~gtl_verify.guidance.ImpossibleStepError` if the draw reaches a state of
    probability 0 under the source (possible on chains with exact zeros, see docs/conventions.md)."""
    start = time.perf_counter()
    ctx = config.context(denoiser, ratio, schedule)
    device = generator.device if generator is not None else torch.device("cpu")
    z = torch.full((config.num_samples, config.length), ctx.mask_id, dtype=torch.long, device=device)
    steps = 0
    grid = torch.linspace(1.0, 0.0, config.steps + 1, dtype=torch.float64).tolist()
    for t, s in tqdm(list(zip(grid[:-1], grid[1:])), desc="sampling", disable=not config.progress):
        masked = z == ctx.mask_id
        if not masked.any():
            break
        positions = masked.nonzero()
        z = _reveal(ctx, z, positions, reverse_step(ctx, z, t, s, positions), generator)[0]
        steps += 1
    return _finish(ctx, z, steps, config.final_argmax, start)


def planner_sample(
    denoiser: Denoiser,
    ratio: SequenceRatio | None,
    planner: Planner,
    schedule: Schedule,
    config: SamplerConfig,
    generator: torch.Generator | None = None,
) -> SampleResult:
    """One planner-chosen position per step, L steps; at step m (m masked positions left) the times
    are t = m/L and s = (m-1)/L and the rule's token law is used conditioned on a reveal."""
    start = time.perf_counter()
    ctx = config.context(denoiser, ratio, schedule, planner)
    device = generator.device if generator is not None else torch.device("cpu")
    b, length = config.num_samples, config.length
    z = torch.full((b, length), ctx.mask_id, dtype=torch.long, device=device)
    rows = torch.arange(b, device=device)
    token_log_prob = torch.zeros(b, dtype=torch.float64, device=device)
    for m in tqdm(range(length, 0, -1), desc="sampling", disable=not config.progress):
        t, s = m / length, (m - 1) / length
        pos = choose_positions(ctx.planner(z, ctx.log_probs(z, t)), z == ctx.mask_id, config.temperature, generator)
        positions = torch.stack([rows, pos], dim=-1)
        z, drawn = _reveal(ctx, z, positions, reverse_step(ctx, z, t, s, positions, reveal_only=True), generator)
        token_log_prob += drawn
    return _finish(ctx, z, length, config.final_argmax, start, token_log_prob)
