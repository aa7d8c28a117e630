"""Exact ground truth for tests: the components of a source/target pair and the exact guided step.

:func:`exact_components` turns any supported pair into one :class:`ExactComponents` bundle (exact
source and target denoisers, the exact noisy ratio with ``single_site``, and the clean laws as
enumeration tables), whatever its family:

- a first-order :class:`markov.presets.ChainPair` (forward-backward, :mod:`markov.oracle`);
- an :class:`markov.hmm.HMMPair` of hidden Markov models (forward-backward over hidden states);
- an :class:`gtl_verify.enumeration.EnumerationOracle` of two arbitrary joint laws (brute force).

:func:`exact_guided_step` is the reference every guidance rule is compared with (THEORY sections
3-4). For a masked position i of z_t and a reverse step t -> s of the masked process:

    P(stay masked)      = (1 - alpha_s) / (1 - alpha_t)
    P(z_s^i = v)        = (alpha_s - alpha_t) / (1 - alpha_t) * w(v) / sum_u w(u),
    w(v)                = p(x^i = v | z)^(1 - gamma) * q(x^i = v | z)^gamma   on the candidates,

because p(x^i = v | z) r(z^{i<-v})^gamma is proportional to p^(1-gamma) q^gamma (the single-site
identity r(z^{i<-v}) = r(z) q(x^i = v | z) / p(x^i = v | z)). It is computed from the two exact
denoisers only, never through :mod:`gtl_verify.guidance`, so it is an independent check of a rule.
Tokens the source denoiser excludes (p = 0) keep weight 0 whatever the target says: a target-only
token has log-ratio +inf, the documented failure mode of ratio guidance (docs/conventions.md).
Candidates: all K tokens, or the n most likely under p with ties broken towards the lowest token id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from markov.hmm import HMMPair, HMMPairOracle
from markov.oracle import PairOracle
from markov.presets import ChainPair

from ..enumeration import EnumerationOracle, TableRatio
from ..guidance import score_candidates
from ..protocols import Denoiser
from ..rules import StepInput
from ..schedules import LogLinearSchedule, Schedule

DTYPE = torch.float64
TableFn = Callable[[int], torch.Tensor]


@dataclass(frozen=True)
class ExactComponents:
    """Exact components of a pair, all answering in float64.

    source, target: denoisers z [B, L] -> log p(x^i = v | z) [B, L, K] (and ``log_obs(z)`` [B] for
    the Markov families). ratio: z -> log r(z) [B] with ``single_site(z)`` -> log r(z^{i<-v})
    [B, L, K]. source_table(L), target_table(L): clean laws over K^L sequences, row-major.
    """

    source: Denoiser
    target: Denoiser
    ratio: Callable[..., torch.Tensor]
    source_table: TableFn
    target_table: TableFn
    vocab_size: int
    mask_id: int
    fixed_length: int | None = None  # enumeration oracles answer for one length only

    def check_length(self, length: int) -> int:
        """Raise ValueError unless sequences of ``length`` are supported."""
        if self.fixed_length is not None and length != self.fixed_length:
            raise ValueError(f"length must be {self.fixed_length} for this enumeration oracle, got {length}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        return length


def _from_enumeration(oracle: EnumerationOracle) -> ExactComponents:
    if oracle.process.mask_id is None:
        raise ValueError("the enumeration oracle must use the masked process, got a process without a mask state")
    laws = oracle.laws  # masked process: the noisy ratio and the denoisers do not depend on t (R1, R3)
    q_t, p_t = oracle.noisy_marginal(0.5, "q"), oracle.noisy_marginal(0.5, "p")
    # the Markov oracles' convention: q_t = 0 gives log r = -inf (also when p_t = 0), p_t = 0 < q_t gives +inf
    log_ratio = torch.where(q_t > 0, q_t.log() - p_t.log(), -torch.inf)
    return ExactComponents(oracle.denoiser("p"), oracle.denoiser("q"), TableRatio(oracle, log_ratio),
                           lambda length: laws.p, lambda length: laws.q, oracle.vocab_size, oracle.process.mask_id,
                           laws.length)


def exact_components(pair) -> ExactComponents:
    """Exact denoisers, ratio and tables of a ChainPair, HMMPair or EnumerationOracle (see module doc).

    Raises ValueError naming the type of anything else."""
    if isinstance(pair, ExactComponents):
        return pair
    if isinstance(pair, EnumerationOracle):
        return _from_enumeration(pair)
    if isinstance(pair, ChainPair):
        oracle = PairOracle(pair)
    elif isinstance(pair, HMMPair):
        oracle = HMMPairOracle(pair)
    else:
        raise ValueError(f"pair must be a ChainPair, HMMPair or EnumerationOracle, got {type(pair).__name__}")
    return ExactComponents(oracle.source, oracle.target, oracle, pair.source.table, pair.target.table,
                           oracle.vocab_size, oracle.mask_id)


def exact_target_law(pair, length: int) -> torch.Tensor:
    """The target's clean law over the K^L sequences of ``length`` [K^L] (row-major), float64."""
    comp = exact_components(pair)
    return comp.target_table(comp.check_length(length)).to(DTYPE)


def all_masked(length: int, mask_id: int, batch: int = 1) -> torch.Tensor:
    """The fully masked state(s) [batch, length]."""
    return torch.full((batch, length), mask_id, dtype=torch.long)


def make_step_input(comp: ExactComponents, z: torch.Tensor, s: float, t: float, gamma: float,
                    schedule: Schedule | None = None) -> StepInput:
    """The :class:`~gtl_verify.rules.StepInput` a sampler gives a rule at z_t [B, L] for the step t -> s,
    with the exact source denoiser and the exact ratio (every masked position is to be decided)."""
    schedule = schedule or LogLinearSchedule()
    z = torch.as_tensor(z, dtype=torch.long)
    positions = (z == comp.mask_id).nonzero()
    tt = torch.full((z.shape[0],), t, dtype=torch.float32)
    log_probs = comp.source(z, tt).to(DTYPE)
    ratio = comp.ratio
    return StepInput(
        z=z, t=t, s=s, alpha_t=float(schedule.alpha(t)), alpha_s=float(schedule.alpha(s)), log_probs=log_probs,
        positions=positions, gamma=gamma, mask_id=comp.mask_id,
        score=lambda tokens: score_candidates(ratio, z, positions, tokens, tt),
        sequence_log_ratio=lambda: ratio(z, tt).to(DTYPE), sequence_ratio=ratio,
    )


def _candidate_mask(lp: torch.Tensor, candidates: int | None) -> torch.Tensor:
    """[M, K] bool: the n most likely tokens under p (ties -> lowest id), or all when n is None."""
    if candidates is None or candidates >= lp.shape[-1]:
        return torch.ones_like(lp, dtype=torch.bool)
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    order = torch.sort(-lp, dim=-1, stable=True).indices[:, :candidates]
    return torch.zeros_like(lp, dtype=torch.bool).scatter(-1, order, True)


def exact_guided_step(comp: ExactComponents, z: torch.Tensor, s: float, t: float, gamma: float,
                      schedule: Schedule | None = None, candidates: int | None = None) -> torch.Tensor:
    """Exact guided step probabilities [M, K + 1] (last slot: stay masked) at the masked positions of
    z [B, L], in the order of ``(z == mask_id).nonzero()``; see the module docstring for the formula.

    Raises ValueError if z is impossible under the source or the target (the step is then undefined)
    or if gamma is negative or not finite."""
    if not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"gamma must be finite and >= 0, got {gamma}")
    schedule = schedule or LogLinearSchedule()
    z = torch.as_tensor(z, dtype=torch.long)
    positions = (z == comp.mask_id).nonzero()
    lp = comp.source(z)[positions[:, 0], positions[:, 1]].to(DTYPE)
    lq = comp.target(z)[positions[:, 0], positions[:, 1]].to(DTYPE)
    for name, table in (("source", lp), ("target", lq)):
        bad = torch.isnan(table).any(-1)
        if bad.any():
            row = int(positions[bad.nonzero()[0, 0], 0])
            raise ValueError(f"state z = {format_state(z[row], comp.mask_id)} has probability 0 under the {name}; "
                             "the exact guided step is undefined there")
    keep = _candidate_mask(lp, candidates) & torch.isfinite(lp)
    weights = lp if gamma == 0 else (1.0 - gamma) * torch.where(keep, lp, 0.0) + gamma * lq
    weights = torch.where(keep, weights, -torch.inf)
    if torch.isneginf(weights).all(-1).any():
        row = int(positions[torch.isneginf(weights).all(-1).nonzero()[0, 0], 0])
        raise ValueError(f"at state z = {format_state(z[row], comp.mask_id)} the target gives probability 0 to every "
                         "candidate token; the guided token law is 0/0 there")
    a_s, a_t = float(schedule.alpha(s)), float(schedule.alpha(t))
    stay, reveal = (1.0 - a_s) / (1.0 - a_t), (a_s - a_t) / (1.0 - a_t)
    tokens = reveal * torch.softmax(weights, dim=-1)
    return torch.cat([tokens, torch.full_like(tokens[:, :1], stay)], dim=-1)


def format_state(z: torch.Tensor, mask_id: int) -> str:
    """A sequence as text, masks shown as M: tensor([2, 5, 0]) with mask 5 -> '[2, M, 0]'."""
    return "[" + ", ".join("M" if int(v) == mask_id else str(int(v)) for v in z) + "]"
