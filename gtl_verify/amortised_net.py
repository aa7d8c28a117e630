"""The amortised single-site ratio network and its sampler adapter (see :mod:`gtl_verify.amortised`):
:class:`SingleSiteRatioNet` returns (level [B], delta [B, L, K]) from one pass; :class:`AmortisedRatio`
gives ``single_site(z, t)`` -> [B, L, K] and ``__call__(z, t)`` -> log r(z) [B]."""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from .counting import CallCount
from .learned import _device
from .networks import Backbone, BackboneConfig, readout
from .validation import check_int_range


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


class AmortisedRatio:
    """Sampler adapter of a :class:`SingleSiteRatioNet` (SequenceRatio + SingleSiteRatio).

    ``single_site(z, t)`` = level(z) + delta(z) [B, L, K] (float32, on z's device; the level at
    unmasked positions); ``increment(z, t)`` = delta(z) [B, L, K] (one pass, no level: what the
    stabilised step reads). ``__call__(z, t)`` = level(z) [B]. The level is the network's level head,
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

    def increment(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        """log r(z^{i<-v}) - log r(z) ~ delta(z)[i, v], [B, L, K] (0 at unmasked positions): one pass,
        no level (:class:`~gtl_verify.protocols.SingleSiteIncrement`)."""
        return self.outputs(z, t).delta

    def single_site(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        """log r(z^{i<-v}) ~ level(z) + delta(z)[i, v], [B, L, K]; the level at unmasked positions."""
        level, delta = self.outputs(z, t)
        if self.base_ratio is not None:
            level = self._base(z, t)
        return delta + level[:, None, None]


# ------------------------------------------------------------------ teacher values
