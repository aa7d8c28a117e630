"""Guidance rules: what a sampler does at the masked positions of one reverse step.

A rule receives a :class:`StepInput` (the current sequences, the step's times and schedule values,
the denoiser's log-probabilities and a counted ratio scorer) and returns log-weights [M, K + 1] over
the K tokens and "stay masked" (last slot) for the M masked positions listed in ``step.positions``.
The step (:func:`gtl_verify.step.reverse_step`) checks the shape, normalises the output with the
non-finite convention of :mod:`gtl_verify.guidance` (docs/conventions.md) and applies top-k.
Rules are plain callables, so a user can write one in a few lines and check it with
``gtl markov validate module:Rule``.

Built-in rules:
- :class:`Unguided`: the source posterior (all K tokens, no ratio).
- :class:`GTL`: top-n candidates, single-site ratio, gamma(t), mask-mass stabiliser (default on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from . import guidance
from .validation import check_int_range


@dataclass
class StepInput:
    """Everything a rule may use at one step t -> s (0 <= s < t <= 1)."""

    z: torch.Tensor  # [B, L] current sequences
    t: float
    s: float
    alpha_t: float
    alpha_s: float
    log_probs: torch.Tensor  # [B, L, K] float64 denoiser log p(x^i = v | z)
    positions: torch.Tensor  # [M, 2] (row, position) of the masked positions to decide
    gamma: float  # guidance strength gamma(t), finite and >= 0
    mask_id: int
    score: Callable[[torch.Tensor], torch.Tensor] | None  # tokens [M, n] -> log r(z^{i<-v}) [M, n] float64
    sequence_log_ratio: Callable[[], torch.Tensor] | None  # -> log r(z) [B]
    sequence_ratio: Callable[..., torch.Tensor] | None = None  # the (counted) ratio itself: z -> log r [B]
    # tokens [M, n] -> log r(z^{i<-v}) + c(z_b) [M, n] float64, c any constant per sequence: enough for a
    # rule that normalises over each position's candidates (one pass for a SingleSiteIncrement model)
    relative_score: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def vocab_size(self) -> int:
        return self.log_probs.shape[-1]

    @property
    def position_log_probs(self) -> torch.Tensor:
        """Denoiser log-probs at the masked positions [M, K]."""
        return self.log_probs[self.positions[:, 0], self.positions[:, 1]]


class GuidanceRule(Protocol):
    def __call__(self, step: StepInput) -> torch.Tensor: ...


class Unguided:
    """The source reverse marginal: stay (1-a_s)/(1-a_t), tokens (a_s-a_t)/(1-a_t) p(x^i=v|z)."""

    name = "unguided"
    uses_ratio = False

    def __call__(self, step: StepInput) -> torch.Tensor:
        return guidance.mdlm_posterior(step.position_log_probs, step.alpha_s, step.alpha_t)


@dataclass
class GTL:
    """Guided transfer step: candidates = top-n of the denoiser (n = None: all K tokens),

        token law  q(v) proportional to p(x^i = v | z) r(z^{i<-v})^gamma  on the candidates,

    then the stabiliser (exact stay-masked mass). With ``stabilise=False`` guidance acts on the
    whole reverse marginal, the mask slot weighted by r(z)^gamma (see guidance.unstabilised).

    gamma = 0 is the same law as gamma -> 0+: the top-n truncated source law (no ratio call);
    non-finite ratios follow :func:`gtl_verify.guidance.combine`."""

    candidates: int | None = None
    stabilise: bool = True
    name: str = "gtl"
    uses_ratio = True

    def __call__(self, step: StepInput) -> torch.Tensor:
        lp = step.position_log_probs
        k = lp.shape[-1]
        n = k if self.candidates is None else check_int_range("candidates", self.candidates, 1, k)
        values, ids = guidance.top_n(lp, n)
        log_r = self._candidate_log_ratio(step, ids, relative=self.stabilise)
        if self.stabilise:
            tokens = guidance.scatter_tokens(guidance.combine(values, log_r, step.gamma), ids, k)
            return guidance.stabilise(tokens, step.alpha_s, step.alpha_t)
        stay = torch.zeros(len(ids), dtype=torch.float64, device=ids.device) if step.gamma == 0 else step.sequence_log_ratio()[step.positions[:, 0]]
        # renormalise the candidate denoiser mass so that top-n keeps the reveal mass
        cand = guidance.normalise(values, "candidate log-probs")
        step_w = guidance.unstabilised(cand, log_r, stay.to(torch.float64), step.gamma, step.alpha_s, step.alpha_t)
        return torch.cat([guidance.scatter_tokens(step_w[:, :-1], ids, k), step_w[:, -1:]], dim=-1)

    @staticmethod
    def _candidate_log_ratio(step: StepInput, ids: torch.Tensor, relative: bool) -> torch.Tensor:
        """log r(z^{i<-v}) [M, n] of the candidates (``relative``: up to a constant per sequence, which
        the stabilised step's per-position normalisation removes); zeros at gamma = 0 (r^0 = 1: no
        ratio call), so the law is continuous in gamma and gamma = 0 keeps the candidate set."""
        if step.gamma == 0:
            return torch.zeros(ids.shape, dtype=torch.float64, device=ids.device)
        score = step.relative_score if relative and step.relative_score is not None else step.score
        if score is None:
            raise ValueError(f"rule gtl needs a ratio at gamma={step.gamma}, got score=None")
        return score(ids)


def rule_name(rule: GuidanceRule) -> str:
    return getattr(rule, "name", None) or getattr(rule, "__name__", None) or type(rule).__name__


def rule_uses_ratio(rule: GuidanceRule) -> bool:
    return bool(getattr(rule, "uses_ratio", True))
