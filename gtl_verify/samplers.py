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
sequences changed (or when it uses the time input).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm

from . import guidance
from .counting import CountingDenoiser, CountingPlanner, CountingRatio
from .planners import choose_positions
from .rules import GTL, GuidanceRule, StepInput, rule_uses_ratio
from .schedules import Schedule
from .validation import check_int_range, check_real_range


@dataclass(frozen=True)
class SamplerConfig:
    """Sampling settings.

    num_samples, length: output shape. steps: T for the ancestral sampler (the planner sampler uses L).
    gamma: constant, (t, gamma) knots, or a callable gamma(t). rule: the guidance rule (default GTL
    with all K candidates). top_k: keep the k most likely tokens (stay-masked always kept).
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
        return check_real_range("gamma", guidance.make_gamma(self.gamma)(t), 0.0)


@dataclass
class SampleResult:
    """Samples and their cost. ``ratio_passes`` counts sequences scored by the ratio network."""

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

    def cost(self) -> dict[str, int | float]:
        return {k: v for k, v in vars(self).items() if k != "tokens"}


class _Components:
    """Counting wrappers plus the denoiser cache (reused while z and t-independence hold)."""

    def __init__(self, denoiser, ratio, planner=None) -> None:
        self.denoiser = denoiser if isinstance(denoiser, CountingDenoiser) else CountingDenoiser(denoiser)
        self.ratio = None if ratio is None else (ratio if isinstance(ratio, CountingRatio) else CountingRatio(ratio))
        self.planner = None if planner is None else (planner if isinstance(planner, CountingPlanner) else CountingPlanner(planner))
        self._cached: tuple[torch.Tensor, torch.Tensor] | None = None

    def log_probs(self, z: torch.Tensor, t: float) -> torch.Tensor:
        if self._cached is not None and not self.denoiser.uses_time and torch.equal(self._cached[0], z):
            return self._cached[1]
        tt = torch.full((z.shape[0],), t, dtype=torch.float32, device=z.device)
        out = self.denoiser(z, tt).to(torch.float64)
        self._cached = (z.clone(), out)
        return out

    def step_input(self, z, t, s, schedule, log_probs, positions, gamma) -> StepInput:
        tt = torch.full((z.shape[0],), t, dtype=torch.float32, device=z.device)
        ratio = self.ratio
        return StepInput(
            z=z, t=t, s=s, alpha_t=float(schedule.alpha(t)), alpha_s=float(schedule.alpha(s)),
            log_probs=log_probs, positions=positions, gamma=gamma, mask_id=self.denoiser.mask_id,
            score=None if ratio is None else (lambda tokens: guidance.score_candidates(ratio, z, positions, tokens, tt)),
            sequence_log_ratio=None if ratio is None else (lambda: ratio(z, tt).to(torch.float64)),
            sequence_ratio=ratio,
        )

    def finish(self, z: torch.Tensor, steps: int, final_argmax: bool, start: float) -> SampleResult:
        mask_id = self.denoiser.mask_id
        leftover = int((z == mask_id).sum())
        if leftover and final_argmax:
            best = self.log_probs(z, 0.0).argmax(-1)
            z = torch.where(z == mask_id, best, z)
        ratio = self.ratio
        return SampleResult(
            tokens=z, steps=steps,
            denoiser_calls=self.denoiser.count.calls, denoiser_sequences=self.denoiser.count.sequences,
            ratio_calls=0 if ratio is None else ratio.count.calls + ratio.single_site_count.calls,
            ratio_passes=0 if ratio is None else ratio.count.sequences,
            single_site_passes=0 if ratio is None else ratio.single_site_count.sequences,
            planner_calls=0 if self.planner is None else self.planner.count.calls,
            leftover_masks=leftover, wall_time_s=time.perf_counter() - start,
        )


def _check_ratio(rule: GuidanceRule, ratio, gamma_positive: bool) -> None:
    if ratio is None and gamma_positive and rule_uses_ratio(rule):
        raise ValueError("ratio is None but the rule needs one (gamma > 0); pass a ratio or gamma=0")


def _reveal(z: torch.Tensor, positions: torch.Tensor, log_weights: torch.Tensor, top_k: int | None, mask_id: int, generator) -> torch.Tensor:
    if top_k is not None:
        log_weights = guidance.top_k_truncate(log_weights, min(top_k, log_weights.shape[-1] - 1))
    outcome = guidance.sample_categorical(log_weights, generator)
    tokens = guidance.outcome_to_tokens(outcome, log_weights.shape[-1] - 1, mask_id)
    z = z.clone()
    z[positions[:, 0], positions[:, 1]] = tokens
    return z


def ancestral_sample(denoiser, ratio, schedule: Schedule, config: SamplerConfig, generator: torch.Generator | None = None) -> SampleResult:
    """T-step ancestral sampling; the rule decides every masked position at every step."""
    start = time.perf_counter()
    comp = _Components(denoiser, ratio)
    mask_id = comp.denoiser.mask_id
    device = generator.device if generator is not None else torch.device("cpu")
    z = torch.full((config.num_samples, config.length), mask_id, dtype=torch.long, device=device)
    steps = 0
    grid = torch.linspace(1.0, 0.0, config.steps + 1, dtype=torch.float64).tolist()
    for t, s in tqdm(list(zip(grid[:-1], grid[1:])), desc="sampling", disable=not config.progress):
        masked = z == mask_id
        if not masked.any():
            break
        gamma = config.gamma_at(t)
        _check_ratio(config.rule, ratio, gamma > 0)
        log_probs = comp.log_probs(z, t)
        positions = masked.nonzero()
        weights = config.rule(comp.step_input(z, t, s, schedule, log_probs, positions, gamma))
        z = _reveal(z, positions, weights, config.top_k, mask_id, generator)
        steps += 1
    return comp.finish(z, steps, config.final_argmax, start)


def planner_sample(
    denoiser, ratio, planner, schedule: Schedule, config: SamplerConfig, generator: torch.Generator | None = None
) -> SampleResult:
    """One planner-chosen position per step, L steps; at step m (m masked positions left) the times
    are t = m/L and s = (m-1)/L and the rule's token law is used conditioned on a reveal."""
    start = time.perf_counter()
    comp = _Components(denoiser, ratio, planner)
    mask_id = comp.denoiser.mask_id
    device = generator.device if generator is not None else torch.device("cpu")
    b, length = config.num_samples, config.length
    z = torch.full((b, length), mask_id, dtype=torch.long, device=device)
    rows = torch.arange(b, device=device)
    for m in tqdm(range(length, 0, -1), desc="sampling", disable=not config.progress):
        t, s = m / length, (m - 1) / length
        gamma = config.gamma_at(t)
        _check_ratio(config.rule, ratio, gamma > 0)
        log_probs = comp.log_probs(z, t)
        masked = z == mask_id
        pos = choose_positions(comp.planner(z, log_probs), masked, config.temperature, generator)
        positions = torch.stack([rows, pos], dim=-1)
        weights = config.rule(comp.step_input(z, t, s, schedule, log_probs, positions, gamma))
        tokens_only = torch.cat([weights[:, :-1], torch.full_like(weights[:, -1:], -torch.inf)], dim=-1)
        z = _reveal(z, positions, tokens_only, config.top_k, mask_id, generator)
    return comp.finish(z, length, config.final_argmax, start)
