"""Training objectives of the learned components, as pure functions (THEORY section 5).

- Masked-diffusion denoiser (MDLM, SUBS parameterisation): continuous-time ELBO
      L(x) = E_{t ~ U} E_{z_t} [ w(t) * sum_{i: z_t^i = m} -log p(x^i | z_t) ] / L,
      w(t) = -alpha'_t / (1 - alpha_t).
- Domain classifier d(x) = P(source | x) with binary cross-entropy (label 1 = source), symmetric
  label smoothing eps, and the ratio r_0 = ((1 - d)/d) * (pi_s / pi_t) after inverting smoothing.
- Ratio regression on masked source samples, in ratio space (unbiased: minimiser E[r_0 | z] = r(z))
  or in log space (minimiser E[log r_0 | z] <= log r(z), Jensen-biased), plus the cycle term.
- Time-dependent classifier batches (noisy samples of both domains with their times).
- Planner targets: a masked position is "good" when the frozen denoiser's argmax is the clean token.

Sampling uses explicit ``torch.Generator`` objects (draws on the generator's device, then moved).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .forward import ForwardProcess
from .schedules import Schedule
from .validation import check_int_range, check_real_range

NEG_INF = float("-inf")
DEFAULT_T_MIN = 1e-3


# ------------------------------------------------------------------ SUBS parameterisation
def subs_log_probs(logits: torch.Tensor, z: torch.Tensor, mask_id: int) -> torch.Tensor:
    """SUBS log-probabilities [B, L, K] from network logits [B, L, K] over the K clean tokens.

    Masked positions (z^i = mask_id): log_softmax of the logits; when the mask id lies inside the
    vocabulary (a tokenizer's [MASK], e.g. 103) its column is set to -inf first, so the mask
    never receives mass. Unmasked positions carry the observed token over: log p = 0 at z^i and
    -inf elsewhere (exactly log of a one-hot, as the exact oracles return). Every row is a
    normalised distribution over 0..K-1 (logsumexp = 0).
    """
    if logits.dim() != 3 or logits.shape[:2] != z.shape:
        raise ValueError(f"logits must have shape ({z.shape[0]}, {z.shape[1]}, K) matching z, got {tuple(logits.shape)}")
    k = logits.shape[-1]
    mask_id = int(mask_id)
    if mask_id < 0:
        raise ValueError(f"mask_id must be >= 0, got {mask_id}")
    if 0 <= mask_id < k:
        logits = logits.masked_fill(F.one_hot(torch.tensor(mask_id, device=logits.device), k).bool(), NEG_INF)
    masked = z == mask_id
    if bool(((z >= k) & ~masked).any()) or bool((z < 0).any()):
        raise ValueError(f"z has an unmasked token outside 0..{k - 1} (mask id {mask_id})")
    log_probs = torch.log_softmax(logits, dim=-1)
    observed = z.clamp(0, k - 1)
    carry = torch.full_like(log_probs, NEG_INF).scatter(-1, observed[..., None], 0.0)
    return torch.where(masked[..., None], log_probs, carry)


# ------------------------------------------------------------------ masking and times
def _resolve_mask(process_or_mask_id: ForwardProcess | int, schedule: Schedule | None) -> tuple[int, Schedule]:
    if isinstance(process_or_mask_id, ForwardProcess):
        if process_or_mask_id.mask_id is None:
            raise ValueError(f"process must be a masked (absorbing) process, got {type(process_or_mask_id).__name__}")
        return process_or_mask_id.mask_id, schedule if schedule is not None else process_or_mask_id.schedule
    if isinstance(process_or_mask_id, bool) or not isinstance(process_or_mask_id, int):
        raise ValueError(f"process_or_mask_id must be a ForwardProcess or an int, got {process_or_mask_id!r}")
    if schedule is None:
        raise ValueError("schedule is required when a mask id is given instead of a process, got None")
    return check_int_range("mask_id", process_or_mask_id, 0), schedule


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=gen_device).to(device)


def sample_times(
    batch: int,
    generator: torch.Generator | None = None,
    t_min: float = DEFAULT_T_MIN,
    stratified: bool = True,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Times [B] (float64) uniform on [t_min, 1].

    ``stratified``: antithetic low-discrepancy draw t_b = t_min + (1 - t_min) ((u + b/B) mod 1)
    with one u ~ U(0, 1) (each t_b is still marginally uniform); else B independent draws.
    """
    check_int_range("batch", batch, 1)
    t_min = check_real_range("t_min", t_min, 0.0, 1.0)
    if t_min >= 1.0:
        raise ValueError(f"t_min must be < 1, got {t_min}")
    device = torch.device(device)
    if stratified:
        u = _rand((1,), generator, device)
        t = torch.remainder(u + torch.arange(batch, dtype=torch.float64, device=device) / batch, 1.0)
    else:
        t = _rand((batch,), generator, device)
    return t_min + (1.0 - t_min) * t


def _as_times(t: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float64, device=device)
    if t.dim() == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"t must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
    if not torch.isfinite(t).all() or (t < 0).any() or (t > 1).any():
        raise ValueError(f"t must lie in [0, 1], got values in [{t.min().item()}, {t.max().item()}]")
    return t


def mask_tokens(
    x: torch.Tensor, t: torch.Tensor | float, schedule: Schedule, mask_id: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z_t from clean x [B, L]: each position kept with probability alpha_t, else set to mask_id.

    Same draws as :meth:`MaskedProcess.sample` (u ~ U(0,1) in float64, kept iff u < alpha_t)."""
    if not torch.is_tensor(x) or x.dim() != 2:
        raise ValueError(f"x must be a tensor of shape (batch, length), got {getattr(x, 'shape', type(x).__name__)}")
    t = _as_times(t, x.shape[0], x.device)
    alpha = schedule.alpha(t)[:, None]
    u = _rand(tuple(x.shape), generator, x.device)
    return torch.where(u < alpha, x, torch.full_like(x, int(mask_id)))


# ------------------------------------------------------------------ MDLM loss
@dataclass
class MDLMTerms:
    """Per-sequence pieces of the MDLM loss.

    ``t`` [B] times, ``z`` [B, L] masked inputs, ``weight`` [B] = w(t) = -alpha'_t/(1-alpha_t),
    ``nll`` [B] = sum over masked i of -log p(x^i | z_t), ``loss`` [B] = weight * nll / L."""

    t: torch.Tensor
    z: torch.Tensor
    weight: torch.Tensor
    nll: torch.Tensor
    loss: torch.Tensor


def mdlm_terms(
    denoiser_net: Callable[..., torch.Tensor],
    x: torch.Tensor,
    schedule: Schedule | None,
    process_or_mask_id: ForwardProcess | int,
    generator: torch.Generator | None = None,
    t: torch.Tensor | float | None = None,
    *,
    t_min: float = DEFAULT_T_MIN,
    stratified: bool = True,
) -> MDLMTerms:
    """Draw t (unless given) and z_t ~ masked forward(x), evaluate the network and return
    :class:`MDLMTerms`. The network is called as ``denoiser_net(z, t)`` (float32 t [B]) and must
    return logits [B, L, K]; log-probs use the SUBS parameterisation."""
    mask_id, schedule = _resolve_mask(process_or_mask_id, schedule)
    if not torch.is_tensor(x) or x.dim() != 2 or x.dtype != torch.long:
        raise ValueError(f"x must be a LongTensor of shape (batch, length), got {getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
    if bool((x == mask_id).any()) or bool((x < 0).any()):
        raise ValueError(f"x must hold clean tokens (no mask id {mask_id}, no negative ids)")
    b, length = x.shape
    if t is None:
        t = sample_times(b, generator, t_min, stratified, x.device)
    else:
        t = _as_times(t, b, x.device)
        if bool((t <= 0).any()):
            raise ValueError(f"t must be > 0 (the loss weight is infinite at t = 0), got min {t.min().item()}")
    z = mask_tokens(x, t, schedule, mask_id, generator)
    logits = denoiser_net(z, t.float())
    k = logits.shape[-1]
    if int(x.max()) >= k:
        raise ValueError(f"x has a token >= the denoiser's vocabulary size {k}: {int(x.max())}")
    log_probs = subs_log_probs(logits, z, mask_id)
    masked = z == mask_id
    # gather only where masked: carry-over rows give exactly 0 at the observed token
    picked = log_probs.gather(-1, x[..., None]).squeeze(-1)
    nll = -torch.where(masked, picked, torch.zeros_like(picked)).sum(-1)
    weight = schedule.loss_weight(t).to(nll.dtype)
    return MDLMTerms(t=t, z=z, weight=weight, nll=nll, loss=weight * nll / length)


def mdlm_loss(
    denoiser_net: Callable[..., torch.Tensor],
    x: torch.Tensor,
    schedule: Schedule | None,
    process_or_mask_id: ForwardProcess | int,
    generator: torch.Generator | None = None,
    t: torch.Tensor | float | None = None,
    *,
    t_min: float = DEFAULT_T_MIN,
    stratified: bool = True,
) -> torch.Tensor:
    """MDLM continuous-time loss (scalar, mean over the batch):

        mean_b  w(t_b) * sum_{i: z_b^i = m} -log p(x_b^i | z_b) / L,   w(t) = -alpha'_t / (1 - alpha_t),

    with t_b ~ U[t_min, 1] (stratified by default) unless ``t`` is given, and z_b ~ masked
    forward(x_b, t_b). ``process_or_mask_id``: a masked ForwardProcess (its mask id; its schedule
    if ``schedule`` is None) or an integer mask id (then ``schedule`` is required)."""
    return mdlm_terms(denoiser_net, x, schedule, process_or_mask_id, generator, t, t_min=t_min, stratified=stratified).loss.mean()


@torch.no_grad()
def mdlm_elbo_nats_per_token(
    denoiser_net: Callable[..., torch.Tensor],
    x: torch.Tensor,
    schedule: Schedule | None,
    process_or_mask_id: ForwardProcess | int,
    generator: torch.Generator,
    *,
    samples: int = 8,
    batch_size: int = 256,
    t_min: float = 1e-5,
) -> float:
    """Monte-Carlo negative ELBO in nats per token (an upper bound on -log p(x)/L, up to the
    truncation at t_min):

        (1 - t_min) * mean over sequences and ``samples`` stratified draws of w(t) nll(t) / L

    which estimates int_{t_min}^1 E[w(t) sum_{masked} -log p(x^i | z_t)] dt / L. Deterministic
    for a given generator; the network is put in eval mode and restored afterwards."""
    check_int_range("samples", samples, 1)
    check_int_range("batch_size", batch_size, 1)
    training = getattr(denoiser_net, "training", False)
    if hasattr(denoiser_net, "eval"):
        denoiser_net.eval()
    try:
        total, count = 0.0, 0
        for _ in range(samples):
            for start in range(0, x.shape[0], batch_size):
                chunk = x[start : start + batch_size]
                terms = mdlm_terms(denoiser_net, chunk, schedule, process_or_mask_id, generator, t_min=t_min)
                total += float(terms.loss.double().sum())
                count += chunk.shape[0]
    finally:
        if training:
            denoiser_net.train()
    return (1.0 - t_min) * total / count


# ------------------------------------------------------------------ domain classifier
def _check_smoothing(smoothing: float) -> float:
    eps = check_real_range("smoothing", smoothing, 0.0, 0.5)
    if eps >= 0.5:
        raise ValueError(f"smoothing must be in [0, 0.5), got {smoothing}")
    return eps


def classifier_loss(logit: torch.Tensor, label: torch.Tensor, smoothing: float = 0.0, *,
                    reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy of the source logit (label 1 = source, 0 = target), mean over the batch
    (``reduction`` ``mean``) or per row [B] (``none``):

        y_eps = (1 - eps) y + eps (1 - y),   loss = -[y_eps log d + (1 - y_eps) log(1 - d)],  d = sigmoid(logit).

    With smoothing eps the population optimum is d_eps = (1 - eps) d* + eps (1 - d*)."""
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    eps = _check_smoothing(smoothing)
    logit = logit.reshape(-1)
    label = label.reshape(-1).to(logit.dtype)
    if logit.shape != label.shape:
        raise ValueError(f"label must have {logit.numel()} entries like logit, got {label.numel()}")
    if bool(((label != 0) & (label != 1)).any()):
        raise ValueError("label must hold only 0 (target) and 1 (source)")
    target = label * (1 - eps) + (1 - label) * eps
    return F.binary_cross_entropy_with_logits(logit, target, reduction=reduction)


def classifier_log_ratio(logit: torch.Tensor, n_source: int, n_target: int, smoothing: float = 0.0) -> torch.Tensor:
    """log r_0 = log q/p from a source-vs-target classifier logit (float64):

        d_eps = sigmoid(logit),  d = (d_eps - eps) / (1 - 2 eps)   (smoothing inverted),
        log r_0 = log((1 - d) / d) + log(pi_s / pi_t),   pi_s / pi_t = n_source / n_target.

    Computed as log(sigmoid(-logit) - eps) - log(sigmoid(logit) - eps) + log(n_s/n_t) (the
    1 - 2 eps cancels); each difference is clamped below at 1e-300 relative to 1 (i.e. d is
    clamped into (0, 1)), so logits beyond the smoothed range give a large finite ratio.
    With eps = 0 this is exactly -logit + log(n_s/n_t)."""
    eps = _check_smoothing(smoothing)
    n_source = check_int_range("n_source", n_source, 1)
    n_target = check_int_range("n_target", n_target, 1)
    logit = logit.to(torch.float64)
    prior = math.log(n_source / n_target)
    if eps == 0.0:
        return -logit + prior
    tiny = 1e-300
    num = (torch.sigmoid(-logit) - eps).clamp_min(tiny)
    den = (torch.sigmoid(logit) - eps).clamp_min(tiny)
    return torch.log(num) - torch.log(den) + prior


def noisy_classifier_batch(
    x_source: torch.Tensor,
    x_target: torch.Tensor,
    process: ForwardProcess | Schedule,
    generator: torch.Generator | None = None,
    *,
    mask_id: int | None = None,
    t_min: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch for the time-dependent classifier: (z [B_s + B_t, L], t [B] float64, labels [B] float).

    Each row gets its own t ~ U[t_min, 1] and z_t ~ masked forward(x, t); labels are 1 for the
    source rows (first) and 0 for the target rows. ``process``: a masked ForwardProcess (its mask
    id unless ``mask_id`` is given) or a Schedule together with ``mask_id``. The optimum logit of
    a classifier trained on these batches is log(pi_s p_t(z) / (pi_t q_t(z))) at each t."""
    if isinstance(process, ForwardProcess):
        mid, schedule = _resolve_mask(process, None)
        mid = mid if mask_id is None else check_int_range("mask_id", mask_id, 0)
    elif isinstance(process, Schedule):
        if mask_id is None:
            raise ValueError("mask_id is required when a Schedule is given, got None")
        mid, schedule = check_int_range("mask_id", mask_id, 0), process
    else:
        raise ValueError(f"process must be a ForwardProcess or a Schedule, got {type(process).__name__}")
    if x_source.dim() != 2 or x_target.dim() != 2 or x_source.shape[1] != x_target.shape[1]:
        raise ValueError(f"x_source and x_target must be [B, L] with the same L, got {tuple(x_source.shape)} and {tuple(x_target.shape)}")
    x = torch.cat([x_source, x_target.to(x_source.device)], dim=0)
    t = sample_times(x.shape[0], generator, t_min, stratified=False, device=x.device)
    z = mask_tokens(x, t, schedule, mid, generator)
    labels = torch.cat([torch.ones(x_source.shape[0]), torch.zeros(x_target.shape[0])]).to(x.device)
    return z, t, labels


# ------------------------------------------------------------------ ratio regression
SPACES = ("ratio", "log")


def ratio_regression_loss(
    pred_log_r: torch.Tensor,
    target_log_r0: torch.Tensor,
    space: str = "ratio",
    *,
    max_log_ratio: float = 30.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Regression of a network's log-ratio on pseudo-targets log r_0 of clean sequences.

    space="ratio":  (exp(pred) - exp(target))^2; its minimiser over f(z) is E[r_0 | z] = r(z)
                    (unbiased by R2). Both logs are clamped to [-M, M] (M = ``max_log_ratio``)
                    so exp never overflows.
    space="log":    (pred - target)^2; minimiser E[log r_0 | z] <= log r(z) (Jensen-biased,
                    as in the reference code).
    ``reduction``: ``mean`` (scalar) or ``none`` (per row)."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {list(SPACES)}, got {space!r}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    m = check_real_range("max_log_ratio", max_log_ratio, 0.0, open_low=True)
    pred = pred_log_r.reshape(-1)
    target = target_log_r0.reshape(-1).to(pred.dtype)
    if pred.shape != target.shape:
        raise ValueError(f"target_log_r0 must have {pred.numel()} entries like pred_log_r, got {target.numel()}")
    if space == "ratio":
        err = (pred.clamp(-m, m).exp() - target.clamp(-m, m).exp()) ** 2
    else:
        err = (pred - target) ** 2
    return err.mean() if reduction == "mean" else err


def cycle_loss(
    pred_on_masked_target: torch.Tensor,
    time_classifier_log_ratio: torch.Tensor,
    weight: float = 0.1,
    space: str = "ratio",
) -> torch.Tensor:
    """Cycle term: weight * regression of the ratio network on masked *target* samples against the
    (detached) log-ratio of a time-dependent classifier, in the same ``space`` as the main term."""
    weight = check_real_range("weight", weight, 0.0)
    return weight * ratio_regression_loss(pred_on_masked_target, time_classifier_log_ratio.detach(), space)


# ------------------------------------------------------------------ planner
def planner_targets(denoiser_log_probs: torch.Tensor, x: torch.Tensor, z: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Float targets [B, L]: 1 at masked positions where argmax_v log p(x^i = v | z) equals the
    clean token x^i, 0 elsewhere (unmasked positions are always 0)."""
    if denoiser_log_probs.dim() != 3 or denoiser_log_probs.shape[:2] != x.shape or x.shape != z.shape:
        raise ValueError(
            f"denoiser_log_probs [B, L, K], x [B, L] and z [B, L] must agree, got "
            f"{tuple(denoiser_log_probs.shape)}, {tuple(x.shape)}, {tuple(z.shape)}"
        )
    masked = z == int(mask_id)
    correct = denoiser_log_probs.argmax(-1) == x
    return (masked & correct).to(torch.float32)


def planner_loss(scores: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the planner scores (logits) against the targets, averaged over the
    masked positions only (0 with a gradient path when nothing is masked)."""
    if scores.shape != targets.shape or scores.shape != masked.shape:
        raise ValueError(f"scores, targets and masked must have one shape, got {tuple(scores.shape)}, {tuple(targets.shape)}, {tuple(masked.shape)}")
    masked = masked.bool()
    per = F.binary_cross_entropy_with_logits(scores, targets.to(scores.dtype), reduction="none")
    return (per * masked).sum() / masked.sum().clamp_min(1)


__all__ = [
    "MDLMTerms",
    "classifier_log_ratio",
    "classifier_loss",
    "cycle_loss",
    "mask_tokens",
    "mdlm_elbo_nats_per_token",
    "mdlm_loss",
    "mdlm_terms",
    "noisy_classifier_batch",
    "planner_loss",
    "planner_targets",
    "ratio_regression_loss",
    "sample_times",
    "subs_log_probs",
]
