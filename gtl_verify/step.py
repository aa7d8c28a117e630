"""One reverse step t -> s of the masked process: the single place where a rule's output becomes a
step law, shared by the samplers, the exact-law propagation and the fixed-order density.

:class:`StepContext` holds the step's fixed inputs (counted denoiser, ratio and planner, schedule,
rule, gamma schedule, top-k) and the denoiser cache; :func:`reverse_step` returns the normalised
step law of the listed masked positions:

    P(z_s^i = o | z_t)  for o in {0..K-1, stay},   [M, K + 1]  (THEORY sections 3-4)

or, with ``reveal_only=True``, the token law conditioned on a reveal (the planner's and the fixed
order's step, stay slot 0). Impossible states and non-finite values follow the convention of
:mod:`gtl_verify.guidance` (docs/conventions.md): a masked position whose denoiser row is NaN or
all -inf (the state has probability 0 under the source) and a rule law with no allowed outcome
raise :class:`~gtl_verify.guidance.ImpossibleStepError` naming the cause.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from . import guidance
from .counting import CountingDenoiser, CountingPlanner, CountingRatio
from .protocols import Denoiser, Planner, SequenceRatio
from .rules import GuidanceRule, StepInput, rule_name, rule_uses_ratio
from .schedules import Schedule


@dataclass
class StepContext:
    """Fixed inputs of the reverse steps of one sampler run (build with :meth:`build`).

    ``gamma``: a gamma schedule t -> gamma(t) (see :func:`gtl_verify.guidance.make_gamma`).
    ``top_k``: truncate every step's token law to its k most likely tokens (None: no truncation).
    The denoiser output is cached while the sequences are unchanged (and t too, if the denoiser uses it)."""

    denoiser: CountingDenoiser
    ratio: CountingRatio | None
    schedule: Schedule
    rule: GuidanceRule
    gamma: guidance.GammaSchedule
    top_k: int | None = None
    planner: CountingPlanner | None = None
    _cache: tuple[torch.Tensor, float, torch.Tensor] | None = field(default=None, init=False, repr=False)

    @classmethod
    def build(
        cls,
        denoiser: Denoiser,
        ratio: SequenceRatio | None,
        schedule: Schedule,
        rule: GuidanceRule,
        gamma: float | Sequence[Sequence[float]] | guidance.GammaSchedule = 1.0,
        top_k: int | None = None,
        planner: Planner | None = None,
    ) -> "StepContext":
        """Wrap the components in counting wrappers (kept if already counted)."""
        return cls(
            denoiser=denoiser if isinstance(denoiser, CountingDenoiser) else CountingDenoiser(denoiser),
            ratio=None if ratio is None else (ratio if isinstance(ratio, CountingRatio) else CountingRatio(ratio, denoiser.vocab_size)),
            schedule=schedule, rule=rule, gamma=guidance.make_gamma(gamma), top_k=top_k,
            planner=None if planner is None else (planner if isinstance(planner, CountingPlanner) else CountingPlanner(planner)),
        )

    @property
    def mask_id(self) -> int:
        return self.denoiser.mask_id

    @property
    def vocab_size(self) -> int:
        return self.denoiser.vocab_size

    def gamma_at(self, t: float) -> float:
        """gamma(t), checked finite and >= 0."""
        return guidance.check_gamma(self.gamma(t), f"gamma(t={t:g})")

    def log_probs(self, z: torch.Tensor, t: float) -> torch.Tensor:
        """Denoiser log p(x^i = v | z_t) [B, L, K], cast to float64 before any guidance."""
        if self._cache is not None and (not self.denoiser.uses_time or self._cache[1] == t) and torch.equal(self._cache[0], z):
            return self._cache[2]
        tt = torch.full((z.shape[0],), t, dtype=torch.float32, device=z.device)
        out = self.denoiser(z, tt).to(torch.float64)
        self._cache = (z.clone(), t, out)
        return out

    def step_input(self, z: torch.Tensor, t: float, s: float, log_probs: torch.Tensor, positions: torch.Tensor,
                   gamma: float | None = None) -> StepInput:
        """The rule's input at step t -> s for the masked ``positions`` [M, 2] (``gamma``: gamma(t)
        when the caller already has it)."""
        tt = torch.full((z.shape[0],), t, dtype=torch.float32, device=z.device)
        ratio = self.ratio
        return StepInput(
            z=z, t=t, s=s, alpha_t=float(self.schedule.alpha(t)), alpha_s=float(self.schedule.alpha(s)),
            log_probs=log_probs, positions=positions, gamma=self.gamma_at(t) if gamma is None else gamma, mask_id=self.mask_id,
            score=None if ratio is None else (lambda tokens: guidance.score_candidates(ratio, z, positions, tokens, tt)),
            sequence_log_ratio=None if ratio is None else (lambda: ratio(z, tt).to(torch.float64)),
            sequence_ratio=ratio,
            relative_score=None if ratio is None else (lambda tokens: guidance.score_candidates(ratio, z, positions, tokens, tt, relative=True)),
        )


def check_possible(log_probs: torch.Tensor, positions: torch.Tensor, z: torch.Tensor | None = None,
                   mask_id: int | None = None, final_fill: bool = False) -> None:
    """Raise :class:`~gtl_verify.guidance.ImpossibleStepError` if the denoiser row [K] of a masked
    position (b, i) in ``positions`` [M, 2] is NaN or all -inf: the sequence has probability 0
    under the denoiser's law, so no reverse step from it is defined.

    The message tells the causes apart: a row at the all-mask start (every run begins there, so
    the denoiser itself is faulty), a NaN row elsewhere (0/0: an unreachable state, or a
    denoiser failure), an all -inf row (an unreachable state: independent reveals reach such
    states on chains with exact zeros); ``final_fill``: the masks are those left after the last
    step, for the final arg-max. ``z`` [B, L] and ``mask_id``: the sequences and the mask id (None:
    the start is not singled out)."""
    rows = log_probs[positions[:, 0], positions[:, 1]]
    nan, dead = torch.isnan(rows).any(-1), torch.isneginf(rows).all(-1)
    bad = nan | dead
    if not bad.any():
        return
    first = bad.nonzero()[0, 0]
    b, i = positions[first].tolist()
    what = "NaN" if nan[first] else "all -inf"
    where = f"at {int(bad.sum())} masked position(s), first row {b} position {i}"
    if final_fill:
        where += " (a mask left after the last step, for the final arg-max)"
    if z is not None and mask_id is not None and not final_fill and bool((z[b] == mask_id).all()):
        cause = "this is the all-mask start, which every run visits: the denoiser itself is faulty"
    elif nan[first]:
        cause = ("0/0: the state has probability 0 under the source (unreachable), or the denoiser failed "
                 "(independent reveals reach unreachable states on chains with exact zeros)")
    else:
        cause = ("the state has probability 0 under the source "
                 "(independent reveals reach such states on chains with exact zeros)")
    raise guidance.ImpossibleStepError(f"denoiser log-probs are {what} {where}: {cause}")


def argmax_fill(ctx: StepContext, z: torch.Tensor) -> torch.Tensor:
    """``z`` [B, L] with every mask filled by the denoiser's arg-max at t = 0 (the documented
    ``final_argmax`` option); raises as :func:`check_possible` (``final_fill``) for an impossible row."""
    masked = z == ctx.mask_id
    log_probs = ctx.log_probs(z, 0.0)
    check_possible(log_probs, masked.nonzero(), final_fill=True)
    return torch.where(masked, log_probs.argmax(-1), z)


def reverse_step(ctx: StepContext, z: torch.Tensor, t: float, s: float, positions: torch.Tensor, *, reveal_only: bool = False) -> torch.Tensor:
    """Normalised float64 step law [M, K + 1] (last slot: stay masked) of the masked ``positions``
    [M, 2] of ``z`` [B, L] for the step t -> s (0 <= s < t <= 1): the rule's output, the stay slot
    set to 0 when ``reveal_only`` (the token law conditioned on a reveal), then top-k truncation of
    the token law (stay mass unchanged).

    Raises ValueError when the rule needs a ratio that is missing (gamma(t) > 0) or returns a
    wrong shape; :class:`~gtl_verify.guidance.ImpossibleStepError` for an impossible state or a
    step law with no allowed outcome (see :func:`gtl_verify.guidance.normalise`)."""
    gamma = ctx.gamma_at(t)
    if ctx.ratio is None and gamma > 0 and rule_uses_ratio(ctx.rule):
        raise ValueError(f"ratio is None but rule {rule_name(ctx.rule)!r} needs one at gamma={gamma}; pass a ratio or gamma=0")
    log_probs = ctx.log_probs(z, t)
    check_possible(log_probs, positions, z, ctx.mask_id)
    weights = ctx.rule(ctx.step_input(z, t, s, log_probs, positions, gamma))
    expected = (positions.shape[0], ctx.vocab_size + 1)
    if not torch.is_tensor(weights) or tuple(weights.shape) != expected:
        got = tuple(weights.shape) if torch.is_tensor(weights) else type(weights).__name__
        raise ValueError(f"rule {rule_name(ctx.rule)!r} must return log-weights of shape {expected} at t={t:g}, got {got}")
    weights = weights.detach().to(torch.float64)  # a rule's autograd graph is not kept
    if reveal_only:
        weights = torch.cat([weights[:, :-1], torch.full_like(weights[:, -1:], guidance.NEG_INF)], dim=-1)
    what = f"step law of rule {rule_name(ctx.rule)!r} at t={t:g}"
    return guidance.normalise(weights, what) if ctx.top_k is None else guidance.top_k_truncate(weights, ctx.top_k, what)
