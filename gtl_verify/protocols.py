"""The interfaces samplers consume; exact oracles and trained networks both implement them.

Conventions: clean tokens 0..K-1, mask id ``mask_id`` (K unless a tokenizer fixes another id),
sequences ``z`` are LongTensors [B, L], times ``t`` are float tensors [B] (networks without a time
input ignore them). All outputs are natural logarithms.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Denoiser(Protocol):
    """z_t -> log p(x^i = v | z_t) for every position, [B, L, K] (rows normalised over v)."""

    vocab_size: int
    mask_id: int

    def __call__(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor: ...


@runtime_checkable
class SequenceRatio(Protocol):
    """z -> log r(z), [B]: the (noisy) density ratio q/p of a whole, partly masked sequence."""

    def __call__(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor: ...


@runtime_checkable
class SingleSiteRatio(Protocol):
    """z -> log r(z^{i<-v}) for every position i and token v at once, [B, L, K].

    Entries at unmasked positions are unspecified. Implemented by exact oracles and by the
    amortised single-site head; a plain :class:`SequenceRatio` is scored on candidates instead.
    """

    def single_site(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor: ...


@runtime_checkable
class SingleSiteIncrement(Protocol):
    """z -> log r(z^{i<-v}) - log r(z) at every masked position i and token v, [B, L, K] (0 at
    unmasked positions): the single-site increments, without the sequence level log r(z).

    The stabilised guided step normalises over the candidates of each position, so a per-sequence
    constant cancels and the increments are all it needs (THEORY section 6). A model whose level
    costs extra passes (a telescoped level: up to L passes) implements this so that the step pays one
    pass; :func:`gtl_verify.guidance.score_candidates` uses it when asked for relative scores.
    """

    def increment(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor: ...


def offers(ratio: object, output: str) -> bool:
    """Whether ``ratio`` offers the optional output ``output`` (``"single_site"`` or ``"increment"``)
    as a callable: the runtime protocol checks see an attribute only, so a class that switches one off
    with ``single_site = None`` (or names an unrelated value ``increment``) would pass them."""
    return callable(getattr(ratio, output, None))


@runtime_checkable
class Planner(Protocol):
    """(z, denoiser log-probs [B, L, K]) -> position scores [B, L]; higher = reveal sooner.

    Samplers turn scores into a distribution over the masked positions with a temperature.
    """

    def __call__(self, z: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor: ...
