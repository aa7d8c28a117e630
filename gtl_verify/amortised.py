"""Amortised single-site ratio: every log r(z^{i<-v}) of a sequence from one network pass.

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
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from . import guidance
from .counting import CallCount
from .networks import Backbone, BackboneConfig, readout
from .objectives import mask_tokens, sample_times
from .schedules import LogLinearSchedule, Schedule
from .training import TrainConfig, TrainResult, config_hash, train
from .validation import check_int_range, check_real_range, check_tokens

DEFAULT_MAX_BATCH = 512
DEFAULT_MAX_LOG_RATIO = 20.0
# log r(z) is a sum of up to L local terms, so its squared error is divided by L; a heavier level
# term slows the increments down through the shared backbone (measured on Markov chains, K = 5,
# 800 steps: effective weights 0.1 at L = 6 and 0.02 at L = 32 gave the best increments)
DEFAULT_LEVEL_WEIGHT = 0.5


class SingleSiteOutput(NamedTuple):
    """Network outputs: ``level`` [B] (log r(z); None without a level head) and ``delta``
    [B, L, K] (log r(z^{i<-v}) - log r(z); exactly 0 at unmasked positions)."""

    level: torch.Tensor | None
    delta: torch.Tensor


class SingleSiteRatioNet(nn.Module):
    """Backbone + per-position linear head to K increments + (optional) additive level head.

    The level is a sum over positions of a per-position MLP output, log r(z) ~ sum_i g(h_i): the
    noisy log-ratio of chain-like laws is a sum of local terms that grows with the number of
    revealed tokens, which a mean-pooled head has to learn as a scale (measured on Markov chains,
    K = 5, L = 32: level MAE 3.7 with mean pooling after 2000 steps).

    ``forward(z, t=None) -> SingleSiteOutput(level [B], delta [B, L, K])`` with delta forced to 0
    at unmasked positions (z^i != ``mask_id``). ``mask_id`` defaults to K and needs an embedding
    row (``config.num_embeddings > mask_id``). ``level_head=False`` leaves out the level head;
    an :class:`AmortisedRatio` then needs a ``base_ratio``.
    """

    def __init__(self, config: BackboneConfig, mask_id: int | None = None, level_head: bool = True) -> None:
        super().__init__()
        if not isinstance(config, BackboneConfig):
            raise ValueError(f"config must be a BackboneConfig, got {type(config).__name__}")
        self.config = config
        self.mask_id = check_int_range("mask_id", config.vocab_size if mask_id is None else mask_id, 0)
        if self.mask_id >= config.num_embeddings:
            raise ValueError(f"mask_id={self.mask_id} has no embedding row: num_embeddings={config.num_embeddings}")
        if not isinstance(level_head, bool):
            raise ValueError(f"level_head must be a bool, got {level_head!r}")
        self.backbone = Backbone(config)
        self.site = nn.Linear(config.hidden, config.vocab_size)
        nn.init.zeros_(self.site.weight)  # start at delta = 0: the unguided step
        nn.init.zeros_(self.site.bias)
        self.level = (
            nn.Sequential(nn.Linear(config.hidden, config.hidden), nn.SiLU(), nn.Linear(config.hidden, 1)) if level_head else None
        )

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def forward(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> SingleSiteOutput:
        h = self.backbone(z, t)  # validates z and t
        masked = (z == self.mask_id)[..., None]
        site = readout(self.site, h)  # float32 outside autocast: the outputs enter guidance
        delta = torch.where(masked, site, torch.zeros((), dtype=site.dtype, device=site.device))
        level = None if self.level is None else readout(self.level, h)[..., 0].sum(dim=1)
        return SingleSiteOutput(level, delta)


def _device(net: nn.Module) -> torch.device:
    for p in net.parameters():
        return p.device
    return torch.device("cpu")


class AmortisedRatio:
    """Sampler adapter of a :class:`SingleSiteRatioNet` (SequenceRatio + SingleSiteRatio).

    ``single_site(z, t)`` = level(z) + delta(z) [B, L, K] (float32, on z's device; the level at
    unmasked positions). ``__call__(z, t)`` = level(z) [B]. The level is the network's level head,
    or ``base_ratio(z, t)`` when ``base_ratio`` is given (one extra base pass per row, counted in
    ``base_count``). Evaluation runs in eval mode under ``torch.no_grad`` in chunks of
    ``max_batch`` rows (the previous train/eval mode is restored).
    """

    def __init__(self, net: SingleSiteRatioNet, base_ratio: Callable[..., torch.Tensor] | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if not isinstance(net, SingleSiteRatioNet):
            raise ValueError(f"net must be a SingleSiteRatioNet, got {type(net).__name__}")
        if base_ratio is None and net.level is None:
            raise ValueError("net has no level head (level_head=False): pass a base_ratio for log r(z)")
        if base_ratio is not None and not callable(base_ratio):
            raise ValueError(f"base_ratio must be callable z, t -> log r(z) [B], got {type(base_ratio).__name__}")
        self.net, self.base_ratio = net, base_ratio
        self.max_batch = check_int_range("max_batch", max_batch, 1)
        self.mask_id, self.vocab_size = net.mask_id, net.vocab_size
        self.uses_time = bool(net.config.time_conditioning)
        self.base_count = CallCount()

    def _times(self, z: torch.Tensor, t: torch.Tensor | float | None) -> torch.Tensor | None:
        if not self.uses_time:
            return None
        if t is None:
            raise ValueError("t is required: the amortised network has time_conditioning=True, got t=None")
        t = torch.as_tensor(t, dtype=torch.float32)
        return t.expand(z.shape[0]) if t.dim() == 0 else t

    def outputs(self, z: torch.Tensor, t: torch.Tensor | float | None = None, *, need_delta: bool = True) -> SingleSiteOutput:
        """(level [B] or None, delta [B, L, K] or an empty tensor) of the network, float32 on z's device."""
        if not torch.is_tensor(z) or z.dim() != 2 or z.shape[0] == 0:
            raise ValueError(f"z must be a non-empty tensor of shape (batch, length), got {getattr(z, 'shape', type(z).__name__)}")
        tt = self._times(z, t)
        device, training = _device(self.net), self.net.training
        self.net.eval()
        levels, deltas = [], []
        try:
            with torch.no_grad():
                for start in range(0, z.shape[0], self.max_batch):
                    sl = slice(start, start + self.max_batch)
                    out = self.net(z[sl].to(device), None if tt is None else tt[sl].to(device))
                    if out.level is not None:
                        levels.append(out.level.float().to(z.device))
                    if need_delta:
                        deltas.append(out.delta.float().to(z.device))
        finally:
            self.net.train(training)
        level = torch.cat(levels) if levels else None
        delta = torch.cat(deltas) if need_delta else torch.empty(0)
        return SingleSiteOutput(level, delta)

    def _base(self, z: torch.Tensor, t) -> torch.Tensor:
        self.base_count.add(z.shape[0])
        return torch.as_tensor(self.base_ratio(z, t)).float().to(z.device)

    def __call__(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        """log r(z) [B] (level head, or ``base_ratio``)."""
        if self.base_ratio is not None:
            return self._base(z, t)
        return self.outputs(z, t, need_delta=False).level

    def single_site(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        """log r(z^{i<-v}) ~ level(z) + delta(z)[i, v], [B, L, K]; the level at unmasked positions."""
        level, delta = self.outputs(z, t)
        if self.base_ratio is not None:
            level = self._base(z, t)
        return delta + level[:, None, None]


# ------------------------------------------------------------------ teacher values
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
