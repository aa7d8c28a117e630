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

from ..config import Budget, NetSize
from ..networks import BackboneConfig
from ..schedules import Schedule
from ..training import TrainConfig
from ..validation import check_device, check_int_range

DenoiserFn = Callable[..., torch.Tensor]


@dataclass(frozen=True, init=False)
class EstimatorBudget:
    """Optimisation and size budget of one fit: ``train`` (:class:`gtl_verify.config.Budget`: AdamW
    steps, batch size, rate, weight decay, warm-up) for each network an estimator trains, and
    ``size`` (:class:`gtl_verify.config.NetSize`) of those networks' backbones.

    ``EstimatorBudget(steps, batch_size, lr, weight_decay, hidden, blocks, heads)`` builds both from
    the experiment's flat settings (warm-up over min(100, steps // 10) steps, conditioning size
    max(hidden // 2, 2)); :meth:`from_parts` takes them as they are. Values are checked by Budget
    and NetSize (ValueError naming the bad one)."""

    train: Budget
    size: NetSize

    def __init__(self, steps: int = 1000, batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 0.01,
                 hidden: int = 32, blocks: int = 2, heads: int = 4) -> None:
        train = Budget(steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=min(100, steps // 10))
        self._set(train, NetSize(hidden=hidden, blocks=blocks, heads=heads, cond=max(hidden // 2, 2)))

    @classmethod
    def from_parts(cls, train: Budget, size: NetSize) -> "EstimatorBudget":
        """The budget of ``train`` and ``size`` as given; ValueError if either has the wrong type."""
        budget = cls.__new__(cls)
        budget._set(train, size)
        return budget

    def _set(self, train: Budget, size: NetSize) -> None:
        if not isinstance(train, Budget):
            raise ValueError(f"train must be a gtl_verify.config.Budget, got {type(train).__name__}")
        if not isinstance(size, NetSize):
            raise ValueError(f"size must be a gtl_verify.config.NetSize, got {type(size).__name__}")
        if train.steps < 1:
            raise ValueError(f"steps must be >= 1 for a ratio estimator's fit (0 would return untrained networks), "
                             f"got {train.steps}")
        object.__setattr__(self, "train", train)
        object.__setattr__(self, "size", size)

    @property
    def batch_size(self) -> int:
        return self.train.batch_size

    def train_config(self, seed: int) -> TrainConfig:
        return self.train.train_config(seed)

    def backbone(self, vocab_size: int, length: int, *, time_conditioning: bool = False) -> BackboneConfig:
        """Bidirectional DiT backbone over tokens 0..K (mask id K)."""
        n = self.size
        return BackboneConfig(vocab_size=vocab_size, num_embeddings=vocab_size + 1, max_length=length, hidden=n.hidden,
                              blocks=n.blocks, heads=n.heads, cond=n.cond, mlp_ratio=n.mlp_ratio, dropout=n.dropout,
                              positions=n.positions, time_conditioning=time_conditioning)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FitInputs:
    """Checked inputs of a fit: ``source`` [N_s, L], ``target`` [N_t, L] (LongTensors of clean
    tokens 0..K-1), ``vocab_size`` K, ``mask_id`` (K), the masking ``schedule``, the frozen source
    ``denoiser`` (or None), ``seed`` and the ``device`` the networks train on (samples stay where
    they are; each batch is moved there)."""

    source: torch.Tensor
    target: torch.Tensor
    vocab_size: int
    mask_id: int
    schedule: Schedule
    denoiser: DenoiserFn | None
    seed: int
    device: torch.device = torch.device("cpu")

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
                     denoiser: DenoiserFn | None, seed: int, needs_denoiser: bool, name: str,
                     device: torch.device | str = "cpu") -> FitInputs:
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
    return FitInputs(source, target, k, mask_id, schedule, denoiser, check_int_range("seed", seed, 0),
                     check_device("device", device))


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

    Subclasses set ``name``, ``needs_denoiser`` and ``part_names`` (the networks a fit trains) and
    implement :meth:`_fit` (train the parts, return ``self.assemble(parts)``) and :meth:`_assemble`
    (the ratio model of trained parts: a saved fit is reloaded through it,
    :mod:`gtl_verify.estimators.persistence`); :meth:`fit` checks the inputs first (one-line
    ValueError naming the bad one, before any training)."""

    name: str = ""
    needs_denoiser: bool = False
    part_names: tuple[str, ...] = ()

    def fit(self, source: torch.Tensor, target: torch.Tensor, budget: EstimatorBudget, *, schedule: Schedule,
            vocab_size: int, mask_id: int | None = None, denoiser: DenoiserFn | None = None, seed: int = 0,
            device: torch.device | str = "cpu"):
        """Train on clean ``source`` [N_s, L] and ``target`` [N_t, L] samples, the networks on
        ``device``; returns a ratio model (``__call__(z, t) -> log r(z)`` [B], float64; ``single_site``
        where the estimator has one) whose parts stay on ``device``."""
        if not isinstance(budget, EstimatorBudget):
            raise ValueError(f"budget must be an EstimatorBudget, got {type(budget).__name__}")
        inputs = check_fit_inputs(source, target, vocab_size=vocab_size, mask_id=vocab_size if mask_id is None else mask_id,
                                  schedule=schedule, denoiser=denoiser, seed=seed, needs_denoiser=self.needs_denoiser,
                                  name=self.name, device=device)
        return self._fit(inputs, budget)

    @abc.abstractmethod
    def _fit(self, inputs: FitInputs, budget: EstimatorBudget): ...

    def assemble(self, parts: dict[str, torch.nn.Module]):
        """The ratio model of trained ``parts`` {part name: network} (exactly :attr:`part_names`);
        ValueError naming a missing or unexpected part."""
        if not isinstance(parts, dict) or set(parts) != set(self.part_names):
            got = sorted(parts) if isinstance(parts, dict) else type(parts).__name__
            raise ValueError(f"parts of estimator {self.name!r} must be {list(self.part_names)}, got {got}")
        return self._assemble({k: v.eval() for k, v in parts.items()})

    @abc.abstractmethod
    def _assemble(self, parts: dict[str, torch.nn.Module]): ...
