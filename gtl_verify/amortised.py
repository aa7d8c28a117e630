"""Amortised single-site ratio: every log r(z^{i<-v}) of a sequence from one network pass.

This module trains and checks it; the network and adapter live in :mod:`gtl_verify.amortised_net`,
the teacher values and the loss in :mod:`gtl_verify.amortised_loss` (all re-exported here).

Full single-site guidance needs log r(z^{i<-v}) for every masked position i and token v: scored
on candidate sequences that is O(L K) ratio-network passes per step (THEORY section 4). The
amortised head predicts the whole table [B, L, K] from one pass over z.

Parameterisation. :class:`SingleSiteRatioNet` (a :class:`~gtl_verify.networks.Backbone`, a
per-position linear head to K outputs and an additive level head) returns

    level[b]       ~  log r(z_b)                                        (sequence level)
    delta[b, i, v] ~  log r(z_b^{i<-v}) - log r(z_b)                    (single-site increment)

so ``single_site(z) = level + delta`` (the level is a sum of per-position terms). The increment is the natural target: for exact laws
delta = log q(x^i = v | z) - log p(x^i = v | z) at a masked i (THEORY section 6), a local
quantity, and the stabilised guided step only uses differences over v, so it depends on delta
alone (any error of the level cancels in the per-position renormalisation). At unmasked
positions the increment is defined as 0 (``single_site`` returns the level there, as the exact
oracles do). By R4, sum_v p(x^i = v | z) exp(delta[i, v]) = 1 at every masked i: the optional
self-normalisation (consistency) term of the loss penalises its log.

:class:`AmortisedRatio` adapts the network to the sampler protocols: ``single_site(z, t)`` ->
[B, L, K] (one pass; the samplers' ``score_candidates`` gathers from it, so a counted run shows
``single_site_passes`` = rows per step and ``ratio_passes`` = 0), and ``__call__(z, t)`` -> log r(z)
[B] from the level head, or from ``base_ratio`` when one is given (then ``single_site`` adds the
increments to ``base_ratio(z)``; those extra base passes are counted in ``base_count``).

Training: :func:`amortised_loss` regresses (level, delta) onto a teacher's values on masked
sequences; the teacher is anything with ``single_site`` (the exact
:class:`~markov.oracle.PairOracle` on Markov data) or a plain sequence ratio (a learned
:class:`~gtl_verify.learned.NetworkRatio`), scored on all candidates z^{i<-v} by
:func:`teacher_log_ratios`. :func:`train_amortised` draws masked source (and target) sequences,
computes the teacher's values and runs :func:`gtl_verify.training.train`.

Example (Markov chains, exact teacher)::

    pair = make_pair("diagonal", vocab_size=5); teacher = PairOracle(pair)
    net = SingleSiteRatioNet(BackboneConfig(vocab_size=5, num_embeddings=6, max_length=16, hidden=32))
    train_amortised(net, teacher, pair.source.sample(4096, 16, g), TrainConfig(steps=500, batch_size=64))
    ratio = AmortisedRatio(net)       # planner_sample(denoiser, ratio, planner, schedule, cfg)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import guidance
from .amortised_loss import AmortisedTerms, amortised_loss, amortised_terms, delta_targets, teacher_log_ratios
from .amortised_net import DEFAULT_LEVEL_WEIGHT, DEFAULT_MAX_LOG_RATIO, AmortisedRatio, SingleSiteOutput, SingleSiteRatioNet
from .objectives import mask_tokens, sample_times
from .schedules import LogLinearSchedule, Schedule
from .training import TrainConfig, TrainResult, config_hash, train
from .validation import check_int_range, check_real_range, check_tokens


def amortised_batches(
    teacher: Callable[..., torch.Tensor],
    source: torch.Tensor,
    vocab_size: int,
    mask_id: int,
    batch_size: int,
    *,
    target: torch.Tensor | None = None,
    target_fraction: float = 0.5,
    schedule: Schedule | None = None,
    denoiser: Callable[..., torch.Tensor] | None = None,
    t_min: float = 0.0,
) -> Callable[[torch.Generator], tuple]:
    """``data(generator) -> (z, level_target, site_target, log_probs | None)``: clean rows drawn from
    ``source`` (a fraction ``target_fraction`` from ``target`` when given), each masked at its own
    t ~ U[t_min, 1] with the schedule (log-linear by default), scored by the teacher (and by the
    source ``denoiser`` when given, for the consistency term)."""
    check_int_range("batch_size", batch_size, 1)
    fraction = check_real_range("target_fraction", target_fraction, 0.0, 1.0) if target is not None else 0.0
    schedule = schedule if schedule is not None else LogLinearSchedule()
    for name, x in (("source", source), ("target", target)):
        if x is not None:
            check_tokens(name, x, vocab_size)
            if x.dim() != 2 or x.shape[0] < 1:
                raise ValueError(f"{name} must be a non-empty [N, L] tensor, got shape {tuple(x.shape)}")
    if target is not None and target.shape[1] != source.shape[1]:
        raise ValueError(f"target must have the source length {source.shape[1]}, got {target.shape[1]}")
    n_target = int(round(batch_size * fraction))

    def draw(gen: torch.Generator) -> tuple:
        parts = [source[torch.randint(len(source), (batch_size - n_target,), generator=gen)]]
        if n_target:
            parts.append(target[torch.randint(len(target), (n_target,), generator=gen)])
        x = torch.cat(parts)
        t = sample_times(len(x), gen, t_min, stratified=False)
        z = mask_tokens(x, t, schedule, mask_id, gen)
        level, site = teacher_log_ratios(teacher, z, vocab_size, mask_id)
        log_probs = None
        if denoiser is not None:
            with torch.no_grad():
                log_probs = torch.as_tensor(denoiser(z)).to(torch.float32)
        return z, level.float(), site.float(), log_probs

    return draw


def train_amortised(
    net: SingleSiteRatioNet,
    teacher: Callable[..., torch.Tensor],
    source: torch.Tensor,
    config: TrainConfig,
    *,
    target: torch.Tensor | None = None,
    target_fraction: float = 0.5,
    schedule: Schedule | None = None,
    denoiser: Callable[..., torch.Tensor] | None = None,
    level_weight: float = DEFAULT_LEVEL_WEIGHT,
    consistency_weight: float = 0.0,
    t_min: float = 0.0,
    max_log_ratio: float = DEFAULT_MAX_LOG_RATIO,
    checkpoint_path: str | Path | None = None,
    progress: bool = False,
) -> TrainResult:
    """Fit ``net`` to the teacher with :func:`gtl_verify.training.train` (AdamW, ``config``).

    Batches come from :func:`amortised_batches`; the loss is :func:`amortised_loss`. The
    consistency term (weight ``consistency_weight`` > 0) needs the source ``denoiser``
    (z -> log p(x^i = v | z) [B, L, K]). Times are not passed to the network unless it was built
    with ``time_conditioning=True`` (the masked-process ratio does not depend on t, R1)."""
    if not isinstance(net, SingleSiteRatioNet):
        raise ValueError(f"net must be a SingleSiteRatioNet, got {type(net).__name__}")
    if consistency_weight and denoiser is None:
        raise ValueError("consistency_weight > 0 needs the source denoiser, got denoiser=None")
    if net.config.time_conditioning:
        raise ValueError("train_amortised trains networks without a time input (time_conditioning=False)")
    data = amortised_batches(teacher, source, net.vocab_size, net.mask_id, config.batch_size, target=target,
                             target_fraction=target_fraction, schedule=schedule,
                             denoiser=denoiser if consistency_weight else None, t_min=t_min)

    def loss_fn(model: nn.Module, batch: tuple, generator: torch.Generator) -> torch.Tensor:
        z, level, site, log_probs = batch
        return amortised_loss(model(z), level, site, z, net.mask_id, log_probs=log_probs, level_weight=level_weight,
                              consistency_weight=consistency_weight, max_log_ratio=max_log_ratio)

    outer = {"model": net.config.to_dict(), "mask_id": net.mask_id, "level_head": net.level is not None,
             "target_fraction": target_fraction if target is not None else 0.0, "level_weight": level_weight,
             "consistency_weight": consistency_weight, "t_min": t_min, "max_log_ratio": max_log_ratio,
             "source_rows": int(source.shape[0]), "target_rows": 0 if target is None else int(target.shape[0])}
    return train(net, loss_fn, data, config, checkpoint_path=checkpoint_path, progress=progress,
                 config_hash=config_hash(outer), description="amortised ratio")


# ------------------------------------------------------------------ accuracy
@dataclass
class AmortisedAccuracy:
    """Errors of the amortised table against a teacher on held-out noisy sequences.

    ``site_mae``: mean |single_site - teacher| over masked positions and tokens (log space);
    ``delta_mae``: mean |delta - (teacher site - teacher level)| (what the stabilised step uses);
    ``level_mae``: mean |level - teacher log r(z)|; ``guided_tv``: mean over masked positions of
    TV between the guided token laws p(v|z) r(z^{i<-v}) / norm built from the two tables (needs
    ``log_probs``; NaN otherwise); ``positions``: number of masked positions."""

    site_mae: float
    delta_mae: float
    level_mae: float
    guided_tv: float
    positions: int


def amortised_accuracy(ratio: AmortisedRatio, teacher: Callable[..., torch.Tensor], z: torch.Tensor,
                       log_probs: torch.Tensor | None = None) -> AmortisedAccuracy:
    """Compare ``ratio`` with ``teacher`` on noisy sequences z (entries with a non-finite teacher value are left out)."""
    if not isinstance(ratio, AmortisedRatio):
        raise ValueError(f"ratio must be an AmortisedRatio, got {type(ratio).__name__}")
    level_t, site_t = teacher_log_ratios(teacher, z, ratio.vocab_size, ratio.mask_id)
    out = ratio.outputs(z)
    level = ratio(z).to(torch.float64) if ratio.base_ratio is not None else out.level.to(torch.float64)
    site = out.delta.to(torch.float64) + level[:, None, None]
    masked = (z == ratio.mask_id)[..., None].expand_as(site)
    ok = masked & torch.isfinite(site_t) & torch.isfinite(level_t)[:, None, None]
    n = int(ok.sum())
    site_mae = float((site - site_t).abs()[ok].mean()) if n else float("nan")
    delta_t = site_t - level_t[:, None, None]
    delta_mae = float((out.delta.to(torch.float64) - delta_t).abs()[ok].mean()) if n else float("nan")
    fin = torch.isfinite(level_t)
    level_mae = float((level - level_t).abs()[fin].mean()) if bool(fin.any()) else float("nan")
    tv = float("nan")
    pos = (z == ratio.mask_id)
    if log_probs is not None and bool(pos.any()):
        lp = log_probs.to(torch.float64)[pos]
        a = guidance.combine(lp, site[pos], 1.0).exp()
        b = guidance.combine(lp, site_t[pos], 1.0).exp()
        tv = float(0.5 * (a - b).abs().sum(-1).mean())
    return AmortisedAccuracy(site_mae=site_mae, delta_mae=delta_mae, level_mae=level_mae, guided_tv=tv, positions=int(pos.sum()))


__all__ = [
    "AmortisedAccuracy",
    "AmortisedRatio",
    "AmortisedTerms",
    "SingleSiteOutput",
    "SingleSiteRatioNet",
    "amortised_accuracy",
    "amortised_batches",
    "amortised_loss",
    "amortised_terms",
    "delta_targets",
    "teacher_log_ratios",
    "train_amortised",
]
