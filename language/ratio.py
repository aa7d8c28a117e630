"""The density ratio of the language pipeline: a ratio model of the core estimator registry
(:mod:`gtl_verify.estimators`) read with the pipeline's mask id.

The estimators number the mask K = vocabulary size, outside the clean tokens 0..K-1. A ``full``
model vocabulary (:class:`language.vocabulary.Vocabulary`) keeps the tokenizer's [MASK] inside
0..K-1 (m < K, a token no clean segment holds and no denoiser reveals), so the pipeline fits its
estimator with mask K and maps between the two masks on the way in and out:

- :func:`estimator_denoiser`: the frozen source denoiser as an estimator calls it (z with mask K);
- :func:`pipeline_ratio`: the fitted model as the samplers call it (z with mask m).

With an ``observed`` vocabulary the mask already is K and nothing is mapped.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from gtl_verify.estimators import on_device
from gtl_verify.learned import NetworkDenoiser
from gtl_verify.validation import check_tokens

from .vocabulary import Vocabulary


def _renamed(z: torch.Tensor, old: int, new: int) -> torch.Tensor:
    return z if old == new else z.masked_fill(z == old, new)


def estimator_denoiser(net: nn.Module, vocab: Vocabulary) -> Callable[..., torch.Tensor]:
    """``fn(z, t) -> log p(x^i = v | z)`` [B, L, K] (float32, SUBS, no grad, ``net`` in eval mode,
    on ``z``'s device) of the denoiser network ``net`` for z [B, L] whose masked positions hold
    the estimators' mask id K = ``vocab.size``. A z holding the pipeline's mask id (< K) as a clean
    token raises ValueError: the denoiser would read it as a mask."""
    denoiser = NetworkDenoiser(net, vocab.mask_id)

    def fn(z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        if vocab.mask_id != vocab.size and bool((z == vocab.mask_id).any()):
            raise ValueError(f"z holds the pipeline's mask id {vocab.mask_id} as a clean token (an estimator's "
                             f"samples must not: the denoiser would read it as a mask)")
        return denoiser(_renamed(z, vocab.size, vocab.mask_id), t)

    return fn


class MaskMapped:
    """A fitted ratio model (mask id K) called with z [B, L] whose masked positions hold ``mask_id``
    (< K): ``__call__(z, t)`` -> log r(z) [B]; ``single_site`` / ``increment`` (z, t) -> [B, L, K]
    exactly when the fitted model has them (so the samplers' protocol checks see what it offers).
    ``parts`` and ``name`` are the fitted model's; :meth:`on_device` (what
    :func:`gtl_verify.estimators.on_device` calls) moves the fitted model and keeps the mapping.
    A token of z outside 0..K-1 raises ValueError (K, the estimators' mask, is no pipeline token:
    mapped silently it would read as a mask)."""

    def __init__(self, model: Any, mask_id: int, vocab_size: int) -> None:
        self.model, self.mask_id, self.vocab_size = model, mask_id, vocab_size
        self.parts, self.name = model.parts, model.name

    def _inner(self, z: torch.Tensor) -> torch.Tensor:
        check_tokens("z", z, self.vocab_size)
        return _renamed(z, self.mask_id, self.vocab_size)

    def on_device(self, device: torch.device | str) -> "MaskMapped":
        """This mapping of the fitted model moved to ``device`` (:func:`gtl_verify.estimators.on_device`)."""
        moved = on_device(self.model, device)
        return self if moved is self.model else MaskMapped(moved, self.mask_id, self.vocab_size)

    def __call__(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        return self.model(self._inner(z), t)

    def __getattr__(self, attr: str) -> Callable[..., torch.Tensor]:
        if attr not in ("single_site", "increment"):
            raise AttributeError(attr)
        fn = getattr(self.model, attr)  # AttributeError when the fitted model has no such output
        return lambda z, t=None: fn(self._inner(z), t)


def pipeline_ratio(model: Any, vocab: Vocabulary) -> Any:
    """``model`` (fitted with mask id ``vocab.size``) as the samplers call it with ``vocab.mask_id``:
    ``model`` itself when the two are equal (``observed``), else a :class:`MaskMapped`."""
    return model if vocab.mask_id == vocab.size else MaskMapped(model, vocab.mask_id, vocab.size)


__all__ = ["MaskMapped", "estimator_denoiser", "pipeline_ratio"]
