"""The ratio-estimator interface: what an estimator is given, what it returns, and the input checks.

An estimator turns clean source and target samples (LongTensors [N, L], tokens 0..K-1) and a
training budget into a *ratio model* for the samplers (:mod:`gtl_verify.protocols`):
``model(z, t) -> log r(z)`` [B] and, where natural, ``model.single_site(z, t) -> log r(z^{i<-v})``
[B, L, K]. Estimators that need the frozen source denoiser (z -> log p(x^i = v | z) [B, L, K])
receive it as ``denoiser``. Every model output passes :func:`checked` (a NaN raises a one-line
error naming the estimator) and is cast up to float64 before guidance.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from ..networks import BackboneConfig
from ..schedules import Schedule
from ..training import TrainConfig
from ..validation import check_int_range, check_real_range

DenoiserFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class EstimatorBudget:
    """Optimisation and size budget of one fit: ``steps`` AdamW steps of ``batch_size`` rows at
    rate ``lr`` (weight decay ``weight_decay``) for each network an estimator trains, and the
    backbone sizes ``hidden`` / ``blocks`` / ``heads`` of those networks."""

    steps: int = 1000
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.01
    hidden: int = 32
    blocks: int = 2
    heads: int = 4

    def __post_init__(self) -> None:
        check_int_range("steps", self.steps, 0)
        check_int_range("batch_size", self.batch_size, 2)
        check_real_range("lr", self.lr, 0.0, open_low=True)
        check_real_range("weight_decay", self.weight_decay, 0.0)
        check_int_range("hidden", self.hidden, 2)
        check_int_range("blocks", self.blocks, 1)
        check_int_range("heads", self.heads, 1)

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                           seed=seed, warmup=min(100, self.steps // 10))

    def backbone(self, vocab_size: int, length: int, *, time_conditioning: bool = False) -> BackboneConfig:
        """Bidirectional DiT backbone over tokens 0..K (mask id K)."""
        return BackboneConfig(vocab_size=vocab_size, num_embeddings=vocab_size + 1, max_length=length, hidden=self.hidden,
                              blocks=self.blocks, heads=self.heads, cond=max(self.hidden // 2, 2),
                              time_conditioning=time_conditioning)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FitInputs:
    """Checked inputs of a fit: ``source`` [N_s, L], ``target`` [N_t, L] (LongTensors of clean
    tokens 0..K-1), ``vocab_size`` K, ``mask_id`` (K), the masking ``schedule``, the frozen source
    ``denoiser`` (or None) and ``seed``."""

    source: torch.Tensor
    target: torch.Tensor
    vocab_size: int
    mask_id: int
    schedule: Schedule
    denoiser: DenoiserFn | None
    seed: int

    @property
    def length(self) -> int:
        return int(self.source.shape[1])


def _check_samples(name: str, x: torch.Tensor, vocab_size: int) -> None:
    if not torch.is_tensor(x) or x.dtype != torch.long or x.dim() != 2:
        raise ValueError(f"{name} must be a LongTensor [N, L], got {getattr(x, 'dtype', type(x).__name__)} "
                         f"{tuple(getattr(x, 'shape', ()))}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sequence, got an empty set (shape {tuple(x.shape)})")
    if bool((x < 0).any()) or bool((x >= vocab_size).any()):
        raise ValueError(f"{name} must hold clean tokens 0..{vocab_size - 1}, got values in [{int(x.min())}, {int(x.max())}]")


def check_fit_inputs(source: torch.Tensor, target: torch.Tensor, *, vocab_size: int, mask_id: int, schedule: Schedule,
                     denoiser: DenoiserFn | None, seed: int, needs_denoiser: bool, name: str) -> FitInputs:
    """Validate a fit's inputs before any training; raises ValueError naming the bad one."""
    k = check_int_range("vocab_size", vocab_size, 2)
    mask_id = check_int_range("mask_id", mask_id, 0)
    if mask_id < k:
        raise ValueError(f"mask_id must be >= vocab_size {k} (a token outside the clean vocabulary), got {mask_id}")
    _check_samples("source", source, k)
    _check_samples("target", target, k)
    if source.shape[1] != target.shape[1]:
        raise ValueError(f"target must have the source length {source.shape[1]}, got {target.shape[1]}")
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    if needs_denoiser and denoiser is None:
        raise ValueError(f"estimator {name!r} needs the frozen source denoiser, got denoiser=None")
    if denoiser is not None and not callable(denoiser):
        raise ValueError(f"denoiser must be callable z, t -> log p(x^i = v | z) [B, L, K], got {type(denoiser).__name__}")
    return FitInputs(source, target, k, mask_id, schedule, denoiser, check_int_range("seed", seed, 0))


def checked(name: str, what: str, values: torch.Tensor) -> torch.Tensor:
    """``values`` cast to float64; raises ValueError naming the estimator if any entry is NaN."""
    values = torch.as_tensor(values).to(torch.float64)
    if bool(torch.isnan(values).any()):
        raise ValueError(f"ratio model of estimator {name!r} returned NaN in {what} "
                         f"({int(torch.isnan(values).sum())} of {values.numel()} entries)")
    return values


class CheckedSequenceRatio:
    """A sequence-level ratio model (``SequenceRatio``) whose outputs are NaN-checked float64."""

    def __init__(self, name: str, inner: Callable[..., torch.Tensor], parts: dict[str, torch.nn.Module]) -> None:
        self.name, self.inner, self.parts = name, inner, parts

    def __call__(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        return checked(self.name, "log r(z)", self.inner(z, t))


class RatioEstimator(abc.ABC):
    """An estimator of the noisy density ratio r(z) = q_t(z) / p_t(z) of the masked process.

    Subclasses set ``name`` and ``needs_denoiser`` and implement :meth:`_fit`; :meth:`fit` checks
    the inputs first (one-line ValueError naming the bad one, before any training)."""

    name: str = ""
    needs_denoiser: bool = False

    def fit(self, source: torch.Tensor, target: torch.Tensor, budget: EstimatorBudget, *, schedule: Schedule,
            vocab_size: int, mask_id: int | None = None, denoiser: DenoiserFn | None = None, seed: int = 0):
        """Train on clean ``source`` [N_s, L] and ``target`` [N_t, L] samples; returns a ratio model
        (``__call__(z, t) -> log r(z)`` [B], float64; ``single_site`` where the estimator has one)."""
        if not isinstance(budget, EstimatorBudget):
            raise ValueError(f"budget must be an EstimatorBudget, got {type(budget).__name__}")
        inputs = check_fit_inputs(source, target, vocab_size=vocab_size, mask_id=vocab_size if mask_id is None else mask_id,
                                  schedule=schedule, denoiser=denoiser, seed=seed, needs_denoiser=self.needs_denoiser,
                                  name=self.name)
        return self._fit(inputs, budget)

    @abc.abstractmethod
    def _fit(self, inputs: FitInputs, budget: EstimatorBudget): ...
