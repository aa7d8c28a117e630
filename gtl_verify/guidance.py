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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .validation import check_int_range, check_real_range, check_times

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
@dataclass(frozen=True)
class ConstantGamma:
    """gamma(t) = value (>= 0)."""

    value: float = 1.0

    def __post_init__(self) -> None:
        check_real_range("gamma", self.value, 0.0)

    def __call__(self, t: float) -> float:
        return self.value


@dataclass(frozen=True)
class PiecewiseLinearGamma:
    """gamma(t) linear between knots (t_j, g_j), constant outside; e.g. ((0, 2), (1, 1)) is 1 -> 2
    over the reverse process (t runs from 1 down to 0)."""

    knots: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.knots) < 1:
            raise ValueError("knots must hold at least one (t, gamma) pair, got ()")
        times = [check_real_range("knot time", k[0], 0.0, 1.0) for k in self.knots]
        for _, g in self.knots:
            check_real_range("gamma", g, 0.0)
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


def make_gamma(spec: float | Sequence[Sequence[float]] | GammaSchedule) -> GammaSchedule:
    """A gamma schedule from a number (constant), a list of (t, gamma) knots, or a callable."""
    if callable(spec):
        return spec
    if isinstance(spec, (int, float)):
        return ConstantGamma(float(spec))
    return PiecewiseLinearGamma(tuple((float(a), float(b)) for a, b in spec))


# ------------------------------------------------------------------ candidates and ratio scores
def top_n(token_log_probs: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The n most likely tokens of the denoiser at every position: (log-probs, ids), each [..., n].

    n = K gives every token (full guidance)."""
    k = token_log_probs.shape[-1]
    n = check_int_range("n", n, 1, k)
    values, ids = torch.topk(token_log_probs, n, dim=-1)
    return values, ids


def substitute(z: torch.Tensor, positions: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Candidate sequences z^{i <- v}: for rows ``positions`` = (b, i) [M, 2] and tokens [M, n],
    returns [M, n, L] copies of z[b] with position i set to each token."""
    rows = z[positions[:, 0]]  # [M, L]
    cand = rows[:, None, :].expand(-1, tokens.shape[1], -1).clone()
    cand.scatter_(2, positions[:, 1].reshape(-1, 1, 1).expand(-1, tokens.shape[1], 1), tokens[..., None])
    return cand


def score_candidates(
    ratio: Callable[..., torch.Tensor],
    z: torch.Tensor,
    positions: torch.Tensor,
    tokens: torch.Tensor,
    t: torch.Tensor | None = None,
    max_batch: int = 65536,
) -> torch.Tensor:
    """log r(z^{i <- v}) for each (b, i) in ``positions`` [M, 2] and candidate v in ``tokens`` [M, n].

    A ratio with ``single_site`` answers for all (i, v) in one pass and is gathered; otherwise the
    M * n candidate sequences are scored in batched ratio calls (no loop over candidates)."""
    if positions.numel() == 0:
        return torch.zeros(tokens.shape, dtype=torch.float64, device=z.device)
    b, i = positions[:, 0], positions[:, 1]
    if hasattr(ratio, "single_site"):
        rows = sorted(set(b.tolist()))
        index = torch.full((z.shape[0],), -1, dtype=torch.long, device=z.device)
        index[torch.tensor(rows, device=z.device)] = torch.arange(len(rows), device=z.device)
        tt = None if t is None else t[rows]
        table = ratio.single_site(z[rows], tt).to(torch.float64)  # [R, L, K]
        return table[index[b], i].gather(-1, tokens)
    cand = substitute(z, positions, tokens)  # [M, n, L]
    flat = cand.reshape(-1, z.shape[1])
    tt = None if t is None else t[b].repeat_interleave(tokens.shape[1])
    out = [ratio(flat[j : j + max_batch], None if tt is None else tt[j : j + max_batch]) for j in range(0, flat.shape[0], max_batch)]
    return torch.cat(out).to(torch.float64).reshape(tokens.shape)


# ------------------------------------------------------------------ combining
def combine(candidate_log_probs: torch.Tensor, candidate_log_ratio: torch.Tensor, gamma: float) -> torch.Tensor:
    """Guided token distribution over the candidates, normalised:

        log q(v) = log p(x^i = v | z) + gamma * log r(z^{i <- v}) - logsumexp(...)  over v in the set.

    Tokens with p(x^i = v | z) = 0 keep probability 0."""
    check_real_range("gamma", gamma, 0.0)
    lp = candidate_log_probs.to(torch.float64)
    if gamma == 0:
        return torch.log_softmax(lp, dim=-1)
    # a token the denoiser excludes stays excluded, whatever the ratio says there (even NaN/inf)
    guided = torch.where(torch.isneginf(lp), lp, lp + gamma * candidate_log_ratio.to(torch.float64))
    return torch.log_softmax(guided, dim=-1)


def scatter_tokens(candidate_log_weights: torch.Tensor, ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Place candidate log-weights [..., n] at token ids [..., n] of a [..., K] table (-inf elsewhere)."""
    out = torch.full((*ids.shape[:-1], vocab_size), NEG_INF, dtype=candidate_log_weights.dtype, device=ids.device)
    return out.scatter(-1, ids, candidate_log_weights)


def stabilise(token_log_probs: torch.Tensor, alpha_s: float, alpha_t: float) -> torch.Tensor:
    """Mask-mass stabiliser: normalised token distribution [..., K] -> step distribution [..., K+1]
    with P(stay) = (1-a_s)/(1-a_t) exactly and the reveal mass (a_s-a_t)/(1-a_t) split as given.
    (Same formula as :func:`mdlm_posterior`, applied to the guided token law.)"""
    return mdlm_posterior(torch.log_softmax(token_log_probs, dim=-1), alpha_s, alpha_t)


def unstabilised(
    token_log_probs: torch.Tensor, token_log_ratio: torch.Tensor, stay_log_ratio: torch.Tensor, gamma: float, alpha_s: float, alpha_t: float
) -> torch.Tensor:
    """Guidance applied to the whole reverse marginal, mask slot included (no stabiliser):

        w(v) = p(z_s^i = v | z_t) r(z^{i<-v})^gamma,   w(m) = p(z_s^i = m | z_t) r(z_t)^gamma,

    normalised over the K + 1 outcomes. Exact for a calibrated ratio at gamma = 1 (Theorem 1 with one
    changing position); a ratio with the wrong level moves the stay-masked mass."""
    check_real_range("gamma", gamma, 0.0)
    post = mdlm_posterior(token_log_probs.to(torch.float64), alpha_s, alpha_t)
    ratio = torch.cat([token_log_ratio, stay_log_ratio[..., None]], dim=-1)
    return torch.log_softmax(post + gamma * ratio, dim=-1)


def top_k_truncate(step_log_weights: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest token entries of a step distribution [..., K+1] and always the stay slot,
    then renormalise (top-k sampling that can never force a reveal)."""
    vocab = step_log_weights.shape[-1] - 1
    k = check_int_range("k", k, 1, vocab)
    if k == vocab:
        return torch.log_softmax(step_log_weights, dim=-1)
    tokens = step_log_weights[..., :vocab]
    kth = torch.topk(tokens, k, dim=-1).values[..., -1:]
    kept = torch.where(tokens >= kth, tokens, NEG_INF)
    return torch.log_softmax(torch.cat([kept, step_log_weights[..., vocab:]], dim=-1), dim=-1)


# ------------------------------------------------------------------ sampling
def sample_categorical(log_weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row from unnormalised log-weights [..., C], by inverse CDF in float64."""
    w = log_weights.to(torch.float64)
    if torch.isnan(w).any():
        raise ValueError("log_weights contain NaN")
    w = w - w.amax(dim=-1, keepdim=True)
    probs = torch.exp(w)
    cdf = torch.cumsum(probs, dim=-1)
    u = torch.rand(cdf.shape[:-1] + (1,), generator=generator, dtype=torch.float64, device=cdf.device) * cdf[..., -1:]
    # right=True skips zero-probability outcomes (equal consecutive cdf values); the clamp only
    # guards u == cdf[-1] after rounding
    return torch.searchsorted(cdf, u, right=True).clamp_max(cdf.shape[-1] - 1).squeeze(-1)


def outcome_to_tokens(outcome: torch.Tensor, vocab_size: int, mask_id: int) -> torch.Tensor:
    """Map step outcomes 0..K (K = stay masked) to tokens (the mask id for slot K)."""
    return torch.where(outcome == vocab_size, torch.full_like(outcome, mask_id), outcome)
