"""Teacher values and the regression loss of the amortised single-site ratio (see
:mod:`gtl_verify.amortised`): :func:`teacher_log_ratios` scores every candidate z^{i<-v} with a
teacher, :func:`amortised_terms` / :func:`amortised_loss` regress (level, delta) onto it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from .amortised_net import DEFAULT_LEVEL_WEIGHT, DEFAULT_MAX_LOG_RATIO, SingleSiteOutput
from . import guidance
from .validation import check_int_range, check_real_range, check_tokens

def teacher_log_ratios(
    teacher: Callable[..., torch.Tensor], z: torch.Tensor, vocab_size: int, mask_id: int,
    t: torch.Tensor | None = None, max_batch: int = 65536,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's (log r(z) [B], log r(z^{i<-v}) [B, L, K]) in float64.

    A teacher with ``single_site`` answers in one call; otherwise every candidate z^{i<-v}
    (masked i, all K tokens v) is scored as a sequence with
    :func:`gtl_verify.guidance.score_candidates` (M K passes for M masked positions). Entries at
    unmasked positions are set to log r(z)."""
    k = check_int_range("vocab_size", vocab_size, 1)
    check_tokens("z", z, max(k, mask_id + 1))
    with torch.no_grad():
        level = torch.as_tensor(teacher(z, t)).to(torch.float64).to(z.device)
        masked = z == mask_id
        if hasattr(teacher, "single_site"):
            site = torch.as_tensor(teacher.single_site(z, t)).to(torch.float64).to(z.device).clone()
            if site.shape != (*z.shape, k):
                raise ValueError(f"teacher.single_site must return shape {(*z.shape, k)}, got {tuple(site.shape)}")
        else:
            site = level[:, None, None].expand(*z.shape, k).clone()
            positions = masked.nonzero()
            if positions.numel():
                tokens = torch.arange(k, device=z.device).expand(positions.shape[0], k)
                site[positions[:, 0], positions[:, 1]] = guidance.score_candidates(teacher, z, positions, tokens, t, max_batch)
    site[~masked] = level[:, None].expand(z.shape)[~masked][:, None]
    return level, site


# ------------------------------------------------------------------ loss
@dataclass
class AmortisedTerms:
    """Pieces of the amortised loss (scalars): ``loss`` = site + level_weight * level +
    consistency_weight * consistency; ``site`` the mean squared increment error over masked
    positions and tokens, ``level`` the mean squared level error divided by L, ``consistency`` the mean over
    masked positions of (log sum_v p(x^i = v | z) exp(delta[i, v]))^2 (0 if not computed)."""

    loss: torch.Tensor
    site: torch.Tensor
    level: torch.Tensor
    consistency: torch.Tensor


def delta_targets(level_target: torch.Tensor, site_target: torch.Tensor, max_log_ratio: float = DEFAULT_MAX_LOG_RATIO) -> tuple[torch.Tensor, torch.Tensor]:
    """Increment targets site - level clamped to [-M, M] (a token the teacher excludes, log r =
    -inf, becomes -M) and a validity mask [B, L, K] (False on rows whose level is not finite and on
    NaN entries)."""
    m = check_real_range("max_log_ratio", max_log_ratio, 0.0, open_low=True)
    level = level_target.to(torch.float64)[:, None, None]
    site = site_target.to(torch.float64)
    row_ok = torch.isfinite(level)
    delta = torch.where(row_ok, site - torch.where(row_ok, level, 0.0), 0.0)
    valid = row_ok.expand_as(site) & ~torch.isnan(delta)
    return torch.nan_to_num(delta, nan=0.0).clamp(-m, m), valid


def amortised_terms(
    output: SingleSiteOutput,
    level_target: torch.Tensor,
    site_target: torch.Tensor,
    z: torch.Tensor,
    mask_id: int,
    *,
    log_probs: torch.Tensor | None = None,
    level_weight: float = DEFAULT_LEVEL_WEIGHT,
    consistency_weight: float = 0.0,
    max_log_ratio: float = DEFAULT_MAX_LOG_RATIO,
) -> AmortisedTerms:
    """Regression of (level, delta) onto a teacher's (log r(z), log r(z^{i<-v})) on masked z:

        site        = mean over masked i, tokens v of (delta[i, v] - clamp(log r(z^{i<-v}) - log r(z)))^2
        level       = mean over rows of (level - log r(z))^2 / L             (rows with finite log r(z))
        consistency = mean over masked i of (logsumexp_v [log p(x^i = v | z) + delta[i, v]])^2   (R4)

    ``log_probs`` [B, L, K]: the source denoiser's log p(x^i = v | z), needed when
    ``consistency_weight`` > 0 (the term is 0 for the exact increments). Clamping the increments
    at M = ``max_log_ratio`` keeps -inf teacher values (tokens the target excludes) finite; the
    level is not clamped (it grows with the number of revealed tokens)."""
    level_weight = check_real_range("level_weight", level_weight, 0.0)
    consistency_weight = check_real_range("consistency_weight", consistency_weight, 0.0)
    delta = output.delta
    if delta.dim() != 3 or delta.shape[:2] != z.shape or site_target.shape != delta.shape:
        raise ValueError(f"delta and site_target must have shape ({z.shape[0]}, {z.shape[1]}, K), got "
                         f"{tuple(delta.shape)} and {tuple(site_target.shape)}")
    target, valid = delta_targets(level_target.to(delta.device), site_target.to(delta.device), max_log_ratio)
    masked = (z == mask_id)[..., None]
    weight = (valid & masked).to(delta.dtype)
    err = (delta - target.to(delta.dtype)) ** 2
    site = (err * weight).sum() / weight.sum().clamp_min(1.0)
    zero = delta.sum() * 0.0
    level = zero
    if level_weight > 0 and output.level is not None:
        lt = level_target.to(output.level.device, torch.float64)
        ok = torch.isfinite(lt)  # log r(z) grows with L: finite values are never clamped
        lt = torch.where(ok, lt, 0.0).to(output.level.dtype)
        level = (((output.level - lt) ** 2) * ok).sum() / ok.sum().clamp_min(1) / z.shape[1]
    consistency = zero
    if consistency_weight > 0:
        if log_probs is None or log_probs.shape != delta.shape:
            raise ValueError(f"log_probs of shape {tuple(delta.shape)} is required when consistency_weight > 0, "
                             f"got {None if log_probs is None else tuple(log_probs.shape)}")
        lse = torch.logsumexp(log_probs.to(delta.dtype) + delta, dim=-1)  # [B, L]
        mk = masked[..., 0] & torch.isfinite(lse)
        consistency = (torch.where(mk, lse, 0.0) ** 2).sum() / mk.sum().clamp_min(1)
    loss = site + level_weight * level + consistency_weight * consistency
    return AmortisedTerms(loss=loss, site=site, level=level, consistency=consistency)


def amortised_loss(output: SingleSiteOutput, level_target: torch.Tensor, site_target: torch.Tensor, z: torch.Tensor,
                   mask_id: int, **kwargs: Any) -> torch.Tensor:
    """Scalar ``amortised_terms(...).loss`` (same arguments)."""
    return amortised_terms(output, level_target, site_target, z, mask_id, **kwargs).loss


# ------------------------------------------------------------------ training
