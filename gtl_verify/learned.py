"""Adapters from trained networks to the sampler interfaces of :mod:`gtl_verify.protocols`.

Every adapter evaluates its network in eval mode under ``torch.no_grad`` (the previous
train/eval mode is restored afterwards), moves inputs to the network's device, splits large
batches into chunks of ``max_batch`` rows, and returns float32 tensors on the device of the
input ``z`` (samplers upcast to float64 where they do exact work).

- :class:`NetworkDenoiser`: logits -> SUBS log-probs [B, L, K] (a ``Denoiser``).
- :class:`NetworkRatio`: a regression network's log r(z) [B] (a ``SequenceRatio``).
- :class:`ClassifierRatio`: log r(z) from a source-vs-target classifier via
  :func:`~gtl_verify.objectives.classifier_log_ratio` (prior correction, smoothing inverted).
- :class:`NetworkPlanner`: position scores [B, L] (a ``Planner``).
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from .objectives import classifier_log_ratio, subs_log_probs
from .validation import check_int_range, check_real_range

DEFAULT_MAX_BATCH = 512


def _device(net: nn.Module) -> torch.device:
    for p in net.parameters():
        return p.device
    return torch.device("cpu")


def _uses_time(net: nn.Module, uses_time: bool | None) -> bool:
    configured = bool(getattr(getattr(net, "config", None), "time_conditioning", False))
    if uses_time is None:
        return configured
    if uses_time and not configured and hasattr(net, "config"):
        raise ValueError("uses_time=True but the network was built with time_conditioning=False")
    return bool(uses_time)


class _Adapter:
    def __init__(self, net: nn.Module, uses_time: bool | None, max_batch: int) -> None:
        if not isinstance(net, nn.Module):
            raise ValueError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        self.net = net
        self.uses_time = _uses_time(net, uses_time)
        self.max_batch = check_int_range("max_batch", max_batch, 1)

    def _times(self, z: torch.Tensor, t: torch.Tensor | float | None) -> torch.Tensor | None:
        if not self.uses_time:
            return None
        if t is None:
            raise ValueError(f"t is required: this {type(self).__name__} uses a time-conditioned network, got t=None")
        t = torch.as_tensor(t, dtype=torch.float32)
        return t.expand(z.shape[0]) if t.dim() == 0 else t

    def _run(self, fn: Callable[..., torch.Tensor], z: torch.Tensor, *extra: torch.Tensor | None) -> torch.Tensor:
        """Apply ``fn(z_chunk, *extra_chunks)`` on the network's device in eval/no_grad, in chunks."""
        if not torch.is_tensor(z) or z.dim() != 2:
            raise ValueError(f"z must be a tensor of shape (batch, length), got {getattr(z, 'shape', type(z).__name__)}")
        device = _device(self.net)
        training = self.net.training
        self.net.eval()
        try:
            with torch.no_grad():
                outs = []
                for start in range(0, z.shape[0], self.max_batch):
                    sl = slice(start, start + self.max_batch)
                    args = [None if e is None else e[sl].to(device) for e in extra]
                    outs.append(fn(z[sl].to(device), *args).float().to(z.device))
        finally:
            self.net.train(training)
        if not outs:
            raise ValueError("z must hold at least one sequence, got batch size 0")
        return torch.cat(outs, dim=0)


def on_device(component, device: torch.device):
    """``component`` with its network on ``device``: a copy of an adapter of this module whose network is
    a moved copy (the original and its cached network stay where they are); anything else (an exact
    oracle, which follows the device of its inputs, or None) is returned as it is. Outputs keep the
    device of the input ``z``, so callers need not move their tensors."""
    if not isinstance(component, _Adapter) or _device(component.net) == torch.device(device):
        return component
    moved = copy.copy(component)
    moved.net = copy.deepcopy(component.net).to(device)
    return moved


class NetworkDenoiser(_Adapter):
    """``Denoiser`` from a :class:`~gtl_verify.networks.DenoiserNet`: z [B, L], t [B] -> SUBS
    log-probs [B, L, K] (float32; 0 / -inf one-hot rows at unmasked positions)."""

    def __init__(self, net: nn.Module, mask_id: int, uses_time: bool | None = None, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        super().__init__(net, uses_time, max_batch)
        self.mask_id = check_int_range("mask_id", mask_id, 0)
        config = getattr(net, "config", None)
        if config is not None and self.mask_id >= config.num_embeddings:
            raise ValueError(
                f"mask_id={self.mask_id} has no embedding row: the network has num_embeddings={config.num_embeddings}"
            )
        self.vocab_size = int(config.vocab_size) if config is not None else int(net.head.out_features)

    def __call__(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        tt = self._times(z, t)
        return self._run(lambda zc, tc: subs_log_probs(self.net(zc, tc), zc, self.mask_id), z, tt)


class NetworkRatio(_Adapter):
    """``SequenceRatio`` from a :class:`~gtl_verify.networks.SequenceNet` with one output, the
    log-ratio: z [B, L] (t [B] if time-conditioned) -> log r(z) [B] (float32)."""

    def __init__(self, net: nn.Module, uses_time: bool | None = None, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        super().__init__(net, uses_time, max_batch)

    def __call__(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        tt = self._times(z, t)
        return self._run(lambda zc, tc: self.net(zc, tc)[:, 0], z, tt)


class ClassifierRatio(_Adapter):
    """``SequenceRatio`` from a source-vs-target classifier (one logit of P(source | z)):

        log r(z) = log((1 - d)/d) + log(n_source / n_target),  d = smoothing-inverted sigmoid(logit)

    (see :func:`~gtl_verify.objectives.classifier_log_ratio`; float32 output)."""

    def __init__(
        self,
        net: nn.Module,
        n_source: int,
        n_target: int,
        smoothing: float = 0.0,
        uses_time: bool | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        super().__init__(net, uses_time, max_batch)
        self.n_source = check_int_range("n_source", n_source, 1)
        self.n_target = check_int_range("n_target", n_target, 1)
        self.smoothing = check_real_range("smoothing", smoothing, 0.0, 0.5)
        if self.smoothing >= 0.5:
            raise ValueError(f"smoothing must be in [0, 0.5), got {smoothing}")

    def __call__(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        tt = self._times(z, t)
        return self._run(
            lambda zc, tc: classifier_log_ratio(self.net(zc, tc)[:, 0], self.n_source, self.n_target, self.smoothing), z, tt
        )


class NetworkPlanner(_Adapter):
    """``Planner`` from a :class:`~gtl_verify.networks.PositionNet`: (z, log_probs) -> scores [B, L].

    The denoiser log-probs are passed to the network when it was built with
    ``log_prob_features=True`` and ignored otherwise."""

    def __init__(self, net: nn.Module, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        super().__init__(net, False, max_batch)
        self.log_prob_features = bool(getattr(net, "log_prob_features", False))

    def __call__(self, z: torch.Tensor, log_probs: torch.Tensor | None = None) -> torch.Tensor:
        if self.log_prob_features:
            if log_probs is None:
                raise ValueError("log_probs is required by this planner (log_prob_features=True), got None")
            return self._run(lambda zc, lp: self.net(zc, None, lp), z, log_probs)
        return self._run(lambda zc: self.net(zc), z)


__all__ = ["ClassifierRatio", "NetworkDenoiser", "NetworkPlanner", "NetworkRatio"]
