"""The guided reverse step as small pure functions (THEORY sections 3-4).

For a masked position i and a reverse step t -> s (s < t) of the masked process, the exact
source per-position marginal is

    p(z_s^i = m | z_t) = (1 - alpha_s) / (1 - alpha_t)                      (stay masked)
    p(z_s^i = v | z_t) = (alpha_s - alpha_t) / (1 - alpha_t) * p(x^i = v | z_t)

and GTL guides the token part with the single-site ratio:

    q(z_s^i = v | z_t)  proportional to  p(x^i = v | z_t) * r(z_t^{i <- v}) ** gamma(t).

Distributions over the K + 1 outcomes of a position are stored as log-weights [..., K + 1] whose
last slot (index K) is "stay masked", whatever the tokenizer's mask id is.
The stabiliser keeps the stay-masked mass at its exact value and lets guidance redistribute only
the reveal mass among tokens; without it the mask slot competes with the guided tokens.

Impossible states and non-finite values (docs/conventions.md), implemented here once:

- p(x^i = v | z) = 0 (log-prob -inf) excludes v whatever the ratio says there (0 * r^gamma = 0, also
  for r = +inf or NaN): guidance never leaves the denoiser's support.
- gamma = 0 means r^0 = 1 for every r: the ratio is not consulted (so gamma = 0 is the limit
  gamma -> 0+ for every finite ratio, with the same candidate set).
- gamma > 0 on an allowed token: log r = -inf excludes it (r = 0); log r = +inf is the limit of a
  ratio growing without bound, so all the mass goes to the allowed +inf tokens, split among them in
  proportion to p; log r = NaN (0/0) raises.
- A law whose every outcome has weight 0 (all -inf), a NaN weight, or two +inf weights (inf/inf)
  raises :class:`ImpossibleStepError` naming the cause; nothing silently returns an arbitrary index.
- Ties between equal log-probabilities are broken towards the lowest token id (top-n, top-k).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .protocols import SequenceRatio, offers
from .validation import check_int_range, check_real_range

NEG_INF = float("-inf")


# ------------------------------------------------------------------ reveal probabilities
def reveal_log_weights(alpha_s: float, alpha_t: float) -> tuple[float, float]:
    """(log P(stay masked), log P(reveal)) = (log (1-a_s)/(1-a_t), log (a_s-a_t)/(1-a_t)).

    Requires 1 >= alpha_s >= alpha_t, alpha_t < 1 (s before t in forward time)."""
    a_s = check_real_range("alpha_s", alpha_s, 0.0, 1.0)
    a_t = check_real_range("alpha_t", alpha_t, 0.0, 1.0)
    if not a_s >= a_t or a_t >= 1.0:
        raise ValueError(f"need alpha_s >= alpha_t and alpha_t < 1, got alpha_s={a_s}, alpha_t={a_t}")
    stay = (1.0 - a_s) / (1.0 - a_t)
    reveal = (a_s - a_t) / (1.0 - a_t)
    return (math.log(stay) if stay > 0 else NEG_INF), (math.log(reveal) if reveal > 0 else NEG_INF)


def mdlm_posterior(token_log_probs: torch.Tensor, alpha_s: float, alpha_t: float) -> torch.Tensor:
    """Source reverse marginal of a masked position, [..., K] -> [..., K + 1] (last slot: stay).

        log p(z_s^i = v | z_t) = log (a_s - a_t)/(1 - a_t) + log p(x^i = v | z_t)
        log p(z_s^i = m | z_t) = log (1 - a_s)/(1 - a_t)
    """
    log_stay, log_reveal = reveal_log_weights(alpha_s, alpha_t)
    stay = torch.full_like(token_log_probs[..., :1], log_stay)
    return torch.cat([token_log_probs + log_reveal, stay], dim=-1)


# ------------------------------------------------------------------ gamma schedules
def check_gamma(value: float, name: str = "gamma") -> float:
    """Raise unless ``value`` is a finite real >= 0 (gamma = inf is not a guidance strength;
    :func:`~gtl_verify.validation.check_real_range` rejects non-finite values)."""
    return check_real_range(name, value, 0.0)


@dataclass(frozen=True)
class ConstantGamma:
    """gamma(t) = value (>= 0)."""

    value: float = 1.0

    def __post_init__(self) -> None:
        check_gamma(self.value)

    def __call__(self, t: float) -> float:
        return self.value


@dataclass(frozen=True)
class PiecewiseLinearGamma:
    """gamma(t) linear between knots (t_j, g_j), constant outside; e.g. ((0, 2), (1, 1)) is 1 -> 2
    over the reverse process (t runs from 1 down to 0)."""

    knots: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.knots) < 1:
            raise ValueError("gamma knots must hold at least one (t, gamma) pair, got ()")
        times = [check_real_range("knot time", k[0], 0.0, 1.0) for k in self.knots]
        for _, g in self.knots:
            check_gamma(g)
        if any(b <= a for a, b in zip(times, times[1:])):
            raise ValueError(f"knot times must be strictly increasing, got {times}")

    def __call__(self, t: float) -> float:
        ts = [k[0] for k in self.knots]
        gs = [k[1] for k in self.knots]
        if t <= ts[0]:
            return gs[0]
        for (t0, g0), (t1, g1) in zip(self.knots, self.knots[1:]):
            if t <= t1:
                return g0 + (g1 - g0) * (t - t0) / (t1 - t0)
        return gs[-1]


GammaSchedule = Callable[[float], float]


GAMMA_FORMS = "a real number >= 0, a list of (t, gamma) knots, or a callable t -> gamma"


def make_gamma(spec: float | Sequence[Sequence[float]] | GammaSchedule) -> GammaSchedule:
    """A gamma schedule from a number (constant), a list of (t, gamma) knots, or a callable.

    Raises ValueError naming ``gamma`` for anything else (a string, a bool, None, a tensor, a flat
    list, a knot that is not a (t, gamma) pair of real numbers)."""
    if callable(spec) and not torch.is_tensor(spec):
        return CheckedGamma(spec)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return ConstantGamma(float(spec))
    if not isinstance(spec, (list, tuple)) or not all(isinstance(k, (list, tuple)) and len(k) == 2 for k in spec):
        raise ValueError(f"gamma must be {GAMMA_FORMS}, got {type(spec).__name__} {spec!r:.60}")
    if not all(_is_real(x) for knot in spec for x in knot):
        raise ValueError(f"gamma knots must be (t, gamma) pairs of real numbers, got {spec!r:.60}")
    return PiecewiseLinearGamma(tuple((float(a), float(b)) for a, b in spec))


def _is_real(x: object) -> bool:
    """A real number that is not a bool (a str, a tensor or None is not)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


@dataclass(frozen=True)
class CheckedGamma:
    """A user's callable gamma schedule whose value at t is checked finite and >= 0, the error
    naming t (``gamma(t=0.5) must be ...``)."""

    fn: GammaSchedule

    def __call__(self, t: float) -> float:
        return check_gamma(self.fn(t), f"gamma(t={t:g})")


# ------------------------------------------------------------------ non-finite convention
class ImpossibleStepError(ValueError):
    """A step law that cannot be drawn from: every outcome has weight 0, a weight is NaN (0/0), or
    two weights are +inf (inf/inf). See the module docstring and docs/conventions.md."""


def _describe_rows(bad: torch.Tensor) -> str:
    rows = bad.reshape(-1).nonzero().squeeze(-1)
    first = rows[:3].tolist()
    return f"{len(rows)} row(s), first {first}"


def normalise(log_weights: torch.Tensor, what: str = "log_weights") -> torch.Tensor:
    """Normalised float64 log-probabilities of unnormalised log-weights [..., C].

    Convention: exactly one +inf entry in a row takes all the mass (the limit of a weight growing
    without bound); -inf entries have probability 0.
    Raises :class:`ImpossibleStepError` (naming ``what``) for a row with a NaN entry, with two or
    more +inf entries (inf/inf is undefined) or with every entry -inf (no allowed outcome)."""
    w = log_weights.to(torch.float64)
    nan = torch.isnan(w).any(-1)
    if nan.any():
        raise ImpossibleStepError(f"{what} contain NaN in {_describe_rows(nan)}")
    pos_inf = torch.isposinf(w)
    if pos_inf.any():
        several = pos_inf.sum(-1) > 1
        if several.any():
            raise ImpossibleStepError(f"{what} have two or more +inf entries (inf/inf is undefined) in {_describe_rows(several)}")
        w = torch.where(pos_inf.any(-1, keepdim=True), torch.where(pos_inf, 0.0, NEG_INF), w)
    empty = torch.isneginf(w.amax(-1))
    if empty.any():
        raise ImpossibleStepError(f"{what} give every outcome weight 0 (all -inf) in {_describe_rows(empty)}")
    return torch.log_softmax(w, dim=-1)


# ------------------------------------------------------------------ candidates and ratio scores
def top_n(token_log_probs: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The n most likely tokens of the denoiser at every position: (log-probs, ids), each [..., n],
    in decreasing order; among equal log-probabilities the lowest token id comes first, so the
    candidate set never depends on the backend's tie order (torch.topk's is unspecified).

    n = K gives every token (full guidance). Raises ValueError for NaN log-probs. Cost: one
    torch.topk; rows whose n-th value is tied beyond the set are redone in O(K)."""
    k = token_log_probs.shape[-1]
    n = check_int_range("n", n, 1, k)
    if torch.isnan(token_log_probs).any():
        raise ValueError("token_log_probs contain NaN; top_n needs ordered values")
    values, ids = torch.topk(token_log_probs, n, dim=-1)
    threshold = values[..., -1:]
    room = n - (token_log_probs > threshold).sum(-1, keepdim=True)
    tied = token_log_probs == threshold
    ambiguous = (tied.sum(-1, keepdim=True) > room).squeeze(-1)  # topk chose among equal values
    if ambiguous.any():
        lp, tie = token_log_probs[ambiguous], tied[ambiguous]
        chosen = (lp > threshold[ambiguous]) | (tie & (torch.cumsum(tie, dim=-1) <= room[ambiguous]))
        every = torch.arange(k, device=lp.device).expand_as(lp)
        ids = ids.clone()
        ids[ambiguous] = -torch.topk(torch.where(chosen, -every, -k), n, dim=-1).values  # lowest tied ids
    ids = torch.sort(ids, dim=-1).values
    values = token_log_probs.gather(-1, ids)
    order = torch.sort(values, dim=-1, descending=True, stable=True).indices
    return values.gather(-1, order), ids.gather(-1, order)


def candidate_ties(token_log_probs: torch.Tensor, n: int) -> torch.Tensor:
    """Whether ties decided the top-n candidate set, per position [...] (bool).

    True where the n-th and (n+1)-th largest log-probabilities are equal and finite: then tokens
    of equal probability were left out by the lowest-id rule of :func:`top_n`. Ties among tokens of
    probability 0 are not counted (they cannot change the guided law). Always False for n = K."""
    k = token_log_probs.shape[-1]
    n = check_int_range("n", n, 1, k)
    if n == k:
        return torch.zeros(token_log_probs.shape[:-1], dtype=torch.bool, device=token_log_probs.device)
    values = torch.topk(token_log_probs, n + 1, dim=-1).values
    last, nxt = values[..., n - 1], values[..., n]
    return (last == nxt) & torch.isfinite(last)


def substitute(z: torch.Tensor, positions: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Candidate sequences z^{i <- v}: for rows ``positions`` = (b, i) [M, 2] and tokens [M, n],
    returns [M, n, L] copies of z[b] with position i set to each token."""
    rows = z[positions[:, 0]]  # [M, L]
    cand = rows[:, None, :].expand(-1, tokens.shape[1], -1).clone()
    cand.scatter_(2, positions[:, 1].reshape(-1, 1, 1).expand(-1, tokens.shape[1], 1), tokens[..., None])
    return cand


def score_candidates(
    ratio: SequenceRatio,
    z: torch.Tensor,
    positions: torch.Tensor,
    tokens: torch.Tensor,
    t: torch.Tensor | None = None,
    max_batch: int = 65536,
    relative: bool = False,
) -> torch.Tensor:
    """log r(z^{i <- v}) for each (b, i) in ``positions`` [M, 2] and candidate v in ``tokens`` [M, n],
    float64 [M, n] (network outputs are cast up before any guidance).

    ``relative=True``: the scores may be shifted by a constant per sequence b (any c(z_b)); that is
    all a step which normalises over the candidates of each position needs. A
    :class:`~gtl_verify.protocols.SingleSiteIncrement` then answers with its increments
    log r(z^{i<-v}) - log r(z) in one pass (no sequence level). Otherwise a
    :class:`~gtl_verify.protocols.SingleSiteRatio` answers for all (i, v) in one pass and is
    gathered, and a plain sequence ratio scores the M * n candidate sequences in batched calls (no
    loop over candidates)."""
    if positions.numel() == 0:
        return torch.zeros(tokens.shape, dtype=torch.float64, device=z.device)
    b, i = positions[:, 0], positions[:, 1]
    table_of = (ratio.increment if relative and offers(ratio, "increment")
                else ratio.single_site if offers(ratio, "single_site") else None)
    if table_of is not None:
        rows = sorted(set(b.tolist()))
        index = torch.full((z.shape[0],), -1, dtype=torch.long, device=z.device)
        index[torch.tensor(rows, device=z.device)] = torch.arange(len(rows), device=z.device)
        tt = None if t is None else t[rows]
        table = table_of(z[rows], tt).to(torch.float64)  # [R, L, K]
        return table[index[b], i].gather(-1, tokens)
    cand = substitute(z, positions, tokens)  # [M, n, L]
    flat = cand.reshape(-1, z.shape[1])
    tt = None if t is None else t[b].repeat_interleave(tokens.shape[1])
    out = [ratio(flat[j : j + max_batch], None if tt is None else tt[j : j + max_batch]).to(torch.float64) for j in range(0, flat.shape[0], max_batch)]
    return torch.cat(out).reshape(tokens.shape)


# ------------------------------------------------------------------ combining
def combine(candidate_log_probs: torch.Tensor, candidate_log_ratio: torch.Tensor, gamma: float) -> torch.Tensor:
    """Guided token law over the candidates [..., n], normalised float64 log-probabilities:

        log q(v) = log p(x^i = v | z) + gamma * log r(z^{i <- v}) - logsumexp(...)  over v in the set

    (THEORY section 3), with the module's convention for impossible and non-finite values:
    p(v) = 0 excludes v whatever r; gamma = 0 ignores r (r^0 = 1); at gamma > 0 log r = -inf
    excludes v, allowed +inf tokens take all the mass in proportion to p, NaN raises.

    Raises ValueError for gamma not finite and >= 0 or denoiser log-probs that are NaN or +inf;
    :class:`ImpossibleStepError` when no candidate is left or an allowed candidate's log r is NaN."""
    check_gamma(gamma)
    lp = candidate_log_probs.to(torch.float64)
    if torch.isnan(lp).any() or torch.isposinf(lp).any():
        raise ValueError("denoiser log-probs must be finite or -inf, got NaN or +inf")
    allowed = ~torch.isneginf(lp)
    if gamma == 0:
        return normalise(lp, "guided token weights (every candidate has p = 0)")
    log_r = candidate_log_ratio.to(torch.float64)
    if (torch.isnan(log_r) & allowed).any():
        raise ImpossibleStepError("log-ratio is NaN at a candidate the denoiser allows (p > 0)")
    inf_ratio = torch.isposinf(log_r) & allowed
    guided = torch.where(allowed, lp + gamma * torch.where(inf_ratio, 0.0, log_r), NEG_INF)
    guided = torch.where(inf_ratio.any(-1, keepdim=True), torch.where(inf_ratio, lp, NEG_INF), guided)
    return normalise(guided, "guided token weights (every candidate has p = 0 or log-ratio -inf)")


def scatter_tokens(candidate_log_weights: torch.Tensor, ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Place candidate log-weights [..., n] at token ids [..., n] of a [..., K] table (-inf elsewhere)."""
    out = torch.full((*ids.shape[:-1], vocab_size), NEG_INF, dtype=candidate_log_weights.dtype, device=ids.device)
    return out.scatter(-1, ids, candidate_log_weights)


def stabilise(token_log_probs: torch.Tensor, alpha_s: float, alpha_t: float) -> torch.Tensor:
    """Mask-mass stabiliser: normalised token distribution [..., K] -> step distribution [..., K+1]
    with P(stay) = (1-a_s)/(1-a_t) exactly and the reveal mass (a_s-a_t)/(1-a_t) split as given.
    (Same formula as :func:`mdlm_posterior`, applied to the guided token law.)"""
    return mdlm_posterior(normalise(token_log_probs, "guided token weights"), alpha_s, alpha_t)


def unstabilised(
    token_log_probs: torch.Tensor, token_log_ratio: torch.Tensor, stay_log_ratio: torch.Tensor, gamma: float, alpha_s: float, alpha_t: float
) -> torch.Tensor:
    """Guidance applied to the whole reverse marginal, mask slot included (no stabiliser):

        w(v) = p(z_s^i = v | z_t) r(z^{i<-v})^gamma,   w(m) = p(z_s^i = m | z_t) r(z_t)^gamma,

    normalised over the K + 1 outcomes. Exact for a calibrated ratio at gamma = 1 (Theorem 1 with one
    changing position); a ratio with the wrong level moves the stay-masked mass. The mask slot is one
    more outcome of :func:`combine` (same non-finite convention)."""
    post = mdlm_posterior(token_log_probs.to(torch.float64), alpha_s, alpha_t)
    ratio = torch.cat([token_log_ratio.to(torch.float64), stay_log_ratio[..., None].to(torch.float64)], dim=-1)
    return combine(post, ratio, gamma)


def top_k_truncate(step_log_weights: torch.Tensor, k: int, what: str = "step log-weights") -> torch.Tensor:
    """Top-k truncation of the token law inside a step distribution [..., K+1] (last slot: stay).

    The k most likely tokens (lowest id first among ties, as :func:`top_n`) keep the whole reveal
    mass, renormalised among them; the stay-masked mass keeps its value, so P(stay) stays
    (1-a_s)/(1-a_t) exactly (truncating the K+1 outcomes instead would hand the dropped token mass
    to "stay masked"). Returns normalised float64 log-probabilities; k >= K changes nothing.
    Raises as :func:`normalise` (naming ``what``)."""
    vocab = step_log_weights.shape[-1] - 1
    k = check_int_range("k", k, 1)
    step = normalise(step_log_weights, what)
    if k >= vocab:
        return step
    tokens, stay = step[..., :vocab], step[..., vocab:]
    values, ids = top_n(tokens, k)
    reveal = torch.logsumexp(tokens, dim=-1, keepdim=True)
    has_reveal = ~torch.isneginf(reveal)
    kept = torch.where(has_reveal, values - torch.logsumexp(values, dim=-1, keepdim=True).where(has_reveal, 0.0) + reveal, NEG_INF)
    return torch.cat([scatter_tokens(kept, ids, vocab), stay], dim=-1)


# ------------------------------------------------------------------ sampling
def sample_categorical(log_weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row from unnormalised log-weights [..., C], by inverse CDF in float64.

    Follows :func:`normalise`: a single +inf entry is drawn surely; rows with NaN, two +inf or all
    -inf raise :class:`ImpossibleStepError`. Zero-probability outcomes are never drawn."""
    probs = torch.exp(normalise(log_weights))
    cdf = torch.cumsum(probs, dim=-1)
    u = torch.rand(cdf.shape[:-1] + (1,), generator=generator, dtype=torch.float64, device=cdf.device) * cdf[..., -1:]
    # right=True skips zero-probability outcomes (equal consecutive cdf values)
    out = torch.searchsorted(cdf, u, right=True).squeeze(-1)
    # u == cdf[-1] after rounding: take the last outcome of positive probability
    last = probs.shape[-1] - 1 - torch.argmax((probs.flip(-1) > 0).to(torch.int8), dim=-1)
    return torch.minimum(out, last)


def outcome_to_tokens(outcome: torch.Tensor, vocab_size: int, mask_id: int) -> torch.Tensor:
    """Map step outcomes 0..K (K = stay masked) to tokens (the mask id for slot K)."""
    return torch.where(outcome == vocab_size, torch.full_like(outcome, mask_id), outcome)
