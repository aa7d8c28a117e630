"""Residuals of the identities of THEORY sections 1-4, computed exactly by enumeration (float64).

Every function takes an :class:`~gtl_verify.enumeration.EnumerationOracle` (laws p, q and a forward
process) and returns a non-negative residual; 0 up to rounding when the identity holds. Ratios are
compared in relative terms, |a - b| / max(1, |a|, |b|), because near-degenerate laws give ratios
of order 1e9.
"""

from __future__ import annotations

import torch

from .. import guidance
from ..enumeration import EnumerationOracle
from ..forward import DTYPE


def relative_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| / max(1, |a|, |b|), elementwise."""
    return (a - b).abs() / torch.maximum(torch.ones_like(a), torch.maximum(a.abs(), b.abs()))


def _max(x: torch.Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.max()) if x.numel() else 0.0


def ratio_at(oracle: EnumerationOracle, time: float) -> torch.Tensor:
    """r_time over the noisy states; at time 0 the clean ratio on clean states (NaN elsewhere)."""
    if time > 0:
        return oracle.ratio(time)
    out = torch.full((oracle.num_states**oracle.length,), torch.nan, dtype=DTYPE)
    out[oracle.clean_in_noisy] = oracle.laws.clean_ratio
    return out


# ------------------------------------------------------------------ Theorem 1
def guided_reverse_kernel(oracle: EnumerationOracle, s: float, t: float, ratio_time: float | None = None, gamma: float = 1.0) -> torch.Tensor:
    """Guided kernel q_gamma(z_s | z_t) proportional to p(z_s | z_t) r_tau(z_s)^gamma, [z_t, z_s].

    ``ratio_time`` tau defaults to s (Theorem 1); tau = t is the classic mistake for non-absorbing
    kernels. Rows of states with p_t(z_t) = 0 are NaN."""
    kernel = oracle.reverse_kernel(s, t, "p")
    r = ratio_at(oracle, s if ratio_time is None else ratio_time)
    weight = torch.where(kernel > 0, kernel * torch.nan_to_num(r, nan=0.0)[None, :] ** gamma, torch.zeros((), dtype=DTYPE))
    weight = torch.where(torch.isnan(kernel), torch.nan, weight)
    return weight / weight.sum(-1, keepdim=True)


def theorem1_residual(oracle: EnumerationOracle, s: float, t: float, kernel: torch.Tensor | None = None) -> float:
    """max over z_t with q_t(z_t) > 0 of |kernel(z_s | z_t) - q(z_s | z_t)| (default kernel: Theorem 1)."""
    kernel = guided_reverse_kernel(oracle, s, t) if kernel is None else kernel
    exact = oracle.reverse_kernel(s, t, "q")
    rows = oracle.noisy_marginal(t, "q") > 0
    return _max((kernel[rows] - exact[rows]).abs())


def theorem1_ratio_form_residual(oracle: EnumerationOracle, s: float, t: float) -> float:
    """The unnormalised form q(z_s|z_t) = p(z_s|z_t) r_s(z_s) / r_t(z_t), relative, on q_t(z_t) > 0."""
    exact = oracle.reverse_kernel(s, t, "q")
    kernel = oracle.reverse_kernel(s, t, "p")
    rs, rt = ratio_at(oracle, s), oracle.ratio(t)
    rhs = torch.where(kernel > 0, kernel * torch.nan_to_num(rs, nan=0.0)[None, :], torch.zeros((), dtype=DTYPE)) / rt[:, None]
    rows = oracle.noisy_marginal(t, "q") > 0
    return _max(relative_error(rhs[rows], exact[rows]))


# ------------------------------------------------------------------ R1 - R4
def r1_residual(oracle: EnumerationOracle, times: tuple[float, ...]) -> float:
    """R1: max over states and pairs of times in (0, 1) of |r_t1(z) - r_t2(z)| (relative)."""
    ratios = [oracle.ratio(t) for t in times]
    return max(_max(relative_error(a, b)) for a in ratios for b in ratios)


def r2_residual(oracle: EnumerationOracle, t: float) -> float:
    """R2: r_t(z) = E_{p(x|z_t = z)}[r_0(x)] (relative), on states with p_t(z) > 0."""
    return _max(relative_error(oracle.ratio(t), oracle.expected_clean_ratio(t)))


def r3_residual(oracle: EnumerationOracle, t1: float, t2: float) -> float:
    """R3: max |p(x | z_t1 = z) - p(x | z_t2 = z)| over states with positive mass at both times."""
    return _max((oracle.clean_posterior(t1, "p") - oracle.clean_posterior(t2, "p")).abs())


def neighbour_index(oracle: EnumerationOracle) -> torch.Tensor:
    """index of z^{i <- v} for every noisy state z, position i and token v: [S^L, L, K]."""
    length, states = oracle.length, oracle.num_states
    powers = states ** torch.arange(length - 1, -1, -1)
    base = oracle.index(oracle.noisy)  # [N]
    current = oracle.noisy  # [N, L]
    v = torch.arange(oracle.vocab_size)
    return base[:, None, None] + (v[None, None, :] - current[:, :, None]) * powers[None, :, None]


def masked_positions(oracle: EnumerationOracle) -> torch.Tensor:
    """Boolean [S^L, L]: position i of state z is masked."""
    mask_id = oracle.process.mask_id
    if mask_id is None:
        raise ValueError("this identity needs the masked (absorbing) process")
    return oracle.noisy == mask_id


def single_site_ratios(oracle: EnumerationOracle, t: float, log_ratio: torch.Tensor | None = None) -> torch.Tensor:
    """log r(z^{i <- v}) for every state, position and token [S^L, L, K] (from a table over states)."""
    table = torch.log(oracle.ratio(t)) if log_ratio is None else log_ratio
    return table[neighbour_index(oracle)]


def r4_residual(oracle: EnumerationOracle, t: float) -> float:
    """R4: sum_v p(x^i = v | z) r(z^{i <- v}) = r(z) for masked i (relative), on P_obs(z) > 0."""
    r = oracle.ratio(t)
    marg = oracle.denoiser_marginals(t, "p")
    neighbours = r[neighbour_index(oracle)]
    lhs = torch.where(marg > 0, marg * torch.nan_to_num(neighbours, nan=0.0), torch.zeros((), dtype=DTYPE)).sum(-1)
    rows = masked_positions(oracle) & (oracle.noisy_marginal(t, "p") > 0)[:, None]
    return _max(relative_error(lhs, r[:, None].expand_as(lhs))[rows])


# ------------------------------------------------------------------ the factorised step
def reverse_position_marginals(oracle: EnumerationOracle, s: float, t: float, which: str) -> torch.Tensor:
    """P(z_s^i = a | z_t) of the exact joint reverse kernel, [S^L (z_t), L, S]."""
    kernel = torch.nan_to_num(oracle.reverse_kernel(s, t, which), nan=0.0)
    onehot = torch.nn.functional.one_hot(oracle.noisy, oracle.num_states).to(DTYPE)
    return torch.einsum("ts,sla->tla", kernel, onehot)


def stabiliser_residual(oracle: EnumerationOracle, s: float, t: float) -> float:
    """Stay-masked probability (1-a_s)/(1-a_t) under BOTH exact reverse kernels (p and q)."""
    a_s, a_t = float(oracle.process.schedule.alpha(s)), float(oracle.process.schedule.alpha(t))
    expected = (1 - a_s) / (1 - a_t)
    masked = masked_positions(oracle)
    worst = 0.0
    for which in ("p", "q"):
        rows = (oracle.noisy_marginal(t, which) > 0)[:, None] & masked
        stay = reverse_position_marginals(oracle, s, t, which)[..., oracle.process.mask_id]
        worst = max(worst, _max((stay[rows] - expected).abs()))
    return worst


def stabilised_step(
    oracle: EnumerationOracle, s: float, t: float, gamma: float = 1.0, log_ratio: torch.Tensor | None = None
) -> torch.Tensor:
    """The stabilised single-site guided step, probabilities [S^L, L, K+1] (slot K = stay masked),
    built from the exact source denoiser and a ratio table over states (default: the exact log r_t)
    with the functions of :mod:`gtl_verify.guidance`; computed at the masked positions of states
    with q_t > 0 (where the target step is defined), NaN elsewhere."""
    a_s, a_t = float(oracle.process.schedule.alpha(s)), float(oracle.process.schedule.alpha(t))
    rows = (oracle.noisy_marginal(t, "q") > 0)[:, None] & masked_positions(oracle)
    log_p = torch.log(oracle.denoiser_marginals(t, "p"))[rows]
    log_r = single_site_ratios(oracle, t, log_ratio)[rows]
    out = torch.full((*rows.shape, oracle.vocab_size + 1), torch.nan, dtype=DTYPE)
    out[rows] = torch.exp(guidance.stabilise(guidance.combine(log_p, log_r, gamma), a_s, a_t))
    return out


def stabilised_guidance_residual(
    oracle: EnumerationOracle, s: float, t: float, gamma: float = 1.0, log_ratio: torch.Tensor | None = None
) -> float:
    """max |stabilised guided step - exact target marginal q(z_s^i | z_t)| over masked positions of
    states with q_t(z_t) > 0 (0 with the exact ratio at gamma = 1)."""
    step = stabilised_step(oracle, s, t, gamma, log_ratio)
    exact = reverse_position_marginals(oracle, s, t, "q")
    k = oracle.vocab_size
    exact = torch.cat([exact[..., :k], exact[..., oracle.process.mask_id : oracle.process.mask_id + 1]], dim=-1)
    rows = (oracle.noisy_marginal(t, "q") > 0)[:, None] & masked_positions(oracle)
    return _max((step - exact).abs()[rows])


def unstabilised_stay_mass(oracle: EnumerationOracle, s: float, t: float, log_ratio_offset: float, gamma: float = 1.0) -> float:
    """Mean stay-masked probability of the unstabilised rule with a ratio off by a constant
    ``log_ratio_offset`` on the revealed tokens (the mask slot keeps log r(z_t)), over masked
    positions of states with q_t > 0. The exact value is (1-a_s)/(1-a_t)."""
    a_s, a_t = float(oracle.process.schedule.alpha(s)), float(oracle.process.schedule.alpha(t))
    rows = (oracle.noisy_marginal(t, "q") > 0)[:, None] & masked_positions(oracle)
    log_p = torch.log(oracle.denoiser_marginals(t, "p"))[rows]
    log_r = single_site_ratios(oracle, t)[rows] + log_ratio_offset
    stay_r = torch.log(oracle.ratio(t))[:, None].expand(rows.shape)[rows]
    step = torch.exp(guidance.unstabilised(log_p, log_r, stay_r, gamma, a_s, a_t))
    return float(step[..., -1].mean())


def top_n_tv_residuals(oracle: EnumerationOracle, t: float, n: int, gamma: float = 1.0) -> tuple[float, float]:
    """(max |TV(top-n guided, full guided) - full guided mass outside the top-n set|, max TV at n = K)
    over masked positions of states with q_t > 0 whose top-n set has guided mass (elsewhere the
    top-n law is undefined and a sampler raises); exact denoiser and single-site ratio."""
    log_p = torch.log(oracle.denoiser_marginals(t, "p"))
    log_r = single_site_ratios(oracle, t)
    rows = (oracle.noisy_marginal(t, "q") > 0)[:, None] & masked_positions(oracle)
    log_p, log_r = log_p[rows], log_r[rows]
    k = oracle.vocab_size
    full = torch.exp(guidance.combine(log_p, log_r, gamma))
    defined = full.gather(-1, guidance.top_n(log_p, n)[1]).sum(-1) > 0

    def restricted(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        values, ids = guidance.top_n(log_p[defined], m)
        cand = guidance.combine(values, log_r[defined].gather(-1, ids), gamma)
        return torch.exp(guidance.scatter_tokens(cand, ids, k)), ids

    top, ids = restricted(n)
    tv = 0.5 * (top - full[defined]).abs().sum(-1)
    outside = full[defined].sum(-1) - full[defined].gather(-1, ids).sum(-1)
    all_k, _ = restricted(k)
    return _max((tv - outside).abs()), _max(0.5 * (all_k - full[defined]).abs().sum(-1))


def jensen_gap(oracle: EnumerationOracle, t: float) -> tuple[float, float, float]:
    """(violation, mean gap, max gap) of E[log r_0 | z] <= log r(z) over states with P_obs > 0.

    violation = max(0, max(E[log r_0|z] - log r(z))) (0 when Jensen holds); the gap log r - E[log r_0]
    is the bias of log-space ratio regression."""
    log_r = torch.log(oracle.ratio(t))
    expected = oracle.expected_log_clean_ratio(t)
    rows = (oracle.noisy_marginal(t, "p") > 0) & torch.isfinite(log_r) & torch.isfinite(expected)
    gap = (log_r - expected)[rows]
    if gap.numel() == 0:
        return 0.0, 0.0, 0.0
    violation = max(0.0, float((-gap).max()))
    return violation, float(gap.mean()), float(gap.max())
