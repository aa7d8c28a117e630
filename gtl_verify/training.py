"""One generic, resumable training loop (AdamW) for every learned component.

``train(model, loss_fn, data, config)`` runs ``config.steps`` optimiser steps of
``loss_fn(model, batch, generator) -> scalar``. Batches come from a LongTensor [N, L] (seeded
shuffled epochs: each row once per epoch, reshuffled every epoch) or from a callable
``data(generator) -> batch`` (given the CPU data generator; tensors in the batch are moved to
the model's device). Randomness is explicit:

- a CPU generator for choosing rows or for ``data(generator)``,
- a generator on the model's device passed to ``loss_fn`` (times, masks),
- the global torch RNG (dropout), seeded with ``config.seed`` inside an isolated RNG fork.

Checkpoints (``checkpoint_path``) hold model, optimiser, EMA, all three RNG states, the row
sampler, the step, the loss history and a config hash; they are written atomically (temporary
file + ``os.replace``) every ``checkpoint_every`` steps and at the end. A run that finds a
checkpoint with the same hash resumes from it, and on CPU the final weights are bit-identical to
an uninterrupted run; a checkpoint written by a different config raises ValueError.

The learning rate warms up linearly over ``warmup`` steps, then stays constant
(``lr_schedule = "constant"``) or follows a cosine decay toward ``lr_floor`` times the peak at the
end (``"cosine"``, Loshchilov & Hutter 2017; :func:`lr_factor`); the gradient norm is clipped to
``grad_clip`` (0 = off). With ``ema`` > 0 an exponential moving average of the parameters is kept and copied into the model at the end.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .storage import atomic_torch_save, load_torch_cache
from .validation import check_int_range, check_real_range

if TYPE_CHECKING:
    from .distributed import DataParallel

CHECKPOINT_FORMAT = 1
# fields of TrainConfig that change the optimisation trajectory (steps, logging and checkpoint
# frequency do not: a run may be extended or checkpointed differently and still resume)
TRAJECTORY_FIELDS = ("batch_size", "lr", "weight_decay", "warmup", "grad_clip", "seed", "ema")
# a decaying rate also depends on these (and on the total step count)
DECAY_FIELDS = ("lr_schedule", "lr_floor", "steps")
LR_SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, total: int, warmup: int, schedule: str = "constant", floor: float = 0.1) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based) of ``total``:
    linear warm-up (step + 1) / warmup for step < warmup, then 1 (``constant``) or
    floor + (1 - floor) (1 + cos(pi p)) / 2 with p = (step - warmup) / (total - warmup) clipped to
    [0, 1] (``cosine``: 1 right after warm-up, decaying toward ``floor`` at step ``total``; Loshchilov & Hutter 2017).
    Raises ValueError for an unknown ``schedule``."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {schedule!r}")
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    p = min(1.0, (step - warmup) / (total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))


def config_hash(config: dict[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of ``config`` (sorted keys, no whitespace)."""
    try:
        text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config must be JSON-serialisable: {exc}") from None
    return hashlib.sha256(text.encode()).hexdigest()


def balanced_batches(source: torch.Tensor, target: torch.Tensor, batch: int) -> Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """A batch function for domain classifiers and ratio estimators: ``draw(gen)`` gives
    ``batch // 2`` (at least 1) source rows and as many target rows, drawn uniformly with
    replacement, so both classes have prior 1/2 (the classifier's logit is then the log density
    ratio with no prior term: R1 of the theory)."""
    half = max(batch // 2, 1)

    def draw(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        xs = source[torch.randint(len(source), (half,), generator=gen)]
        xt = target[torch.randint(len(target), (half,), generator=gen)]
        return xs, xt

    return draw


def build_seeded(build: Callable[[], nn.Module], digest: str) -> nn.Module:
    """Construct a network with its initial weights drawn from a generator seeded by ``digest``
    (a config hash, hex), not from whatever state the global RNG happens to be in: a component
    built after others were loaded from disk (a resumed run) gets the same weights as in a
    fresh run. The global RNG state is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(digest[:15], 16))
        return build()


@dataclass
class TrainConfig:
    """Optimisation settings (see the module docstring)."""

    steps: int
    batch_size: int
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: int = 0
    grad_clip: float = 1.0
    checkpoint_every: int = 0
    seed: int = 0
    log_every: int = 50
    ema: float = 0.0
    lr_schedule: str = "constant"
    lr_floor: float = 0.1

    def __post_init__(self) -> None:
        check_int_range("steps", self.steps, 0)
        check_int_range("batch_size", self.batch_size, 1)
        check_real_range("lr", self.lr, 0.0, open_low=True)
        check_real_range("weight_decay", self.weight_decay, 0.0)
        check_int_range("warmup", self.warmup, 0)
        check_real_range("grad_clip", self.grad_clip, 0.0)
        check_int_range("checkpoint_every", self.checkpoint_every, 0)
        check_int_range("seed", self.seed, 0)
        check_int_range("log_every", self.log_every, 1)
        ema = check_real_range("ema", self.ema, 0.0, 1.0)
        if ema >= 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if not isinstance(self.lr_schedule, str) or self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        check_real_range("lr_floor", self.lr_floor, 0.0, 1.0)
        if self.lr_schedule == "cosine" and self.steps > 0 and self.warmup >= self.steps:
            raise ValueError(f"lr_schedule = 'cosine' needs warmup < steps, got warmup={self.warmup}, steps={self.steps} "
                             "(the rate would never decay)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def trajectory_hash(self, extra: str | None = None) -> str:
        """Hash of the fields that determine the trajectory, combined with an outer config hash
        (a decaying rate adds its schedule, floor and total step count)."""
        fields = TRAJECTORY_FIELDS + (DECAY_FIELDS if self.lr_schedule != "constant" else ())
        return config_hash({"train": {k: getattr(self, k) for k in fields}, "outer": extra})


@dataclass
class TrainResult:
    """Loss of every step (all steps since step 0, resumed ones included), the step reached,
    wall time of this call and the step this call resumed from (0 for a fresh run)."""

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    wall_time_s: float = 0.0
    resumed_from: int = 0

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else math.nan


class _RowSampler:
    """Minibatches of row indices: a fresh random permutation every epoch (CPU generator)."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator
        self.perm = torch.randperm(n, generator=generator)
        self.pos = 0

    def next(self, size: int) -> torch.Tensor:
        parts, need = [], size
        while need:
            if self.pos == self.n:
                self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0
            take = min(need, self.n - self.pos)
            parts.append(self.perm[self.pos : self.pos + take])
            self.pos += take
            need -= take
        return torch.cat(parts)

    def state(self) -> dict[str, Any]:
        return {"perm": self.perm.clone(), "pos": self.pos}

    def load(self, state: dict[str, Any]) -> None:
        if int(state["perm"].numel()) != self.n:
            raise ValueError(f"checkpoint sampler covers {int(state['perm'].numel())} rows, the data has {self.n}")
        self.perm, self.pos = state["perm"].clone(), int(state["pos"])


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _to_device(batch: Any, device: torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint written by :func:`train` (on CPU)."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file
        raise ValueError(f"checkpoint {path} could not be read: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} is not a training checkpoint of format {CHECKPOINT_FORMAT}")
    return payload


def _check_inputs(model: nn.Module, data: Any, config: TrainConfig) -> None:
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if torch.is_tensor(data):
        if data.dim() < 1 or data.shape[0] < 1:
            raise ValueError(f"data must hold at least one row, got shape {tuple(data.shape)}")
    elif not callable(data):
        raise ValueError(f"data must be a tensor or a callable batch(generator), got {type(data).__name__}")


@dataclass
class _Session:
    """The state of one :func:`train` call: optimiser, generators, row sampler, EMA, losses, step."""

    model: nn.Module
    config: TrainConfig
    data: Any
    path: Path | None
    digest: str
    dp: "DataParallel | None"
    device: torch.device = field(init=False)
    params: list[nn.Parameter] = field(init=False)
    optimizer: torch.optim.Optimizer = field(init=False)
    data_gen: torch.Generator = field(init=False)
    loss_gen: torch.Generator = field(init=False)
    sampler: _RowSampler | None = field(init=False)
    ema: list[torch.Tensor] | None = field(init=False)
    losses: list[float] = field(default_factory=list)
    step: int = 0

    def __post_init__(self) -> None:
        cfg = self.config
        self.device = _model_device(self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if self.dp is not None:
            self.dp.check_batch_size(cfg.batch_size)
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.loss_gen = torch.Generator(device=self.device).manual_seed(self.rank_seed(cfg.seed + 1))
        self.sampler = _RowSampler(int(self.data.shape[0]), self.data_gen) if torch.is_tensor(self.data) else None
        self.ema = [p.detach().clone() for p in self.params] if cfg.ema > 0 else None

    def rank_seed(self, seed: int) -> int:
        return self.dp.rank_seed(seed) if self.dp is not None else seed

    @property
    def cuda_devices(self) -> list[torch.device]:
        return [self.device] if self.device.type == "cuda" else []

    def restore(self) -> None:
        """Resume from the checkpoint at ``path`` if there is one (same trajectory hash)."""
        ckpt = None if self.path is None else load_torch_cache(self.path, load_checkpoint)
        if ckpt is None:
            return
        if ckpt.get("config_hash") != self.digest:
            raise ValueError(
                f"checkpoint {self.path} was written by a different config (hash {str(ckpt.get('config_hash'))[:12]}, "
                f"this run {self.digest[:12]}); delete it or use another path"
            )
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise ValueError(f"checkpoint {self.path} does not match the model: {exc}") from None
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.data_gen.set_state(ckpt["data_gen"])
        self.loss_gen.set_state(ckpt["loss_gen"])
        torch.set_rng_state(ckpt["torch_rng"])
        if self.cuda_devices and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
        if self.sampler is not None:
            self.sampler.load(ckpt["sampler"])
        if self.ema is not None:
            for e, saved in zip(self.ema, ckpt["ema"]):
                e.copy_(saved.to(e.device))
        self.losses = list(ckpt["losses"])
        self.step = int(ckpt["step"])
        if self.dp is not None:
            self.dp.restore_rng(ckpt.get("ranks"), self.loss_gen, self.config.seed + 3 + self.step)

    def save(self) -> None:
        """Write the checkpoint (rank 0 only; every rank's loss generator is gathered first)."""
        if self.path is None:
            return
        ranks = self.dp.gather_rng(self.loss_gen) if self.dp is not None else None
        if self.dp is not None and not self.dp.is_main:
            return
        atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "step": self.step,
                "config_hash": self.digest,
                "train_config": self.config.to_dict(),
                "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "data_gen": self.data_gen.get_state(),
                "loss_gen": self.loss_gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.cuda_devices else None,
                "sampler": self.sampler.state() if self.sampler is not None else None,
                "ema": [e.detach().cpu().clone() for e in self.ema] if self.ema is not None else None,
                "losses": self.losses,
                "ranks": ranks,
            },
            self.path,
        )

    def next_batch(self) -> Any:
        """The next minibatch on the model's device (this rank's share when distributed)."""
        if self.sampler is not None:
            batch = self.data[self.sampler.next(self.config.batch_size).to(self.data.device)].to(self.device)
        else:
            batch = _to_device(self.data(self.data_gen), self.device)
        return self.dp.shard(batch) if self.dp is not None else batch

    def update(self, loss_fn: Callable[..., torch.Tensor], forward_model: nn.Module, batch: Any) -> float:
        """One AdamW step (scheduled rate, gradient clipping, EMA); returns the (rank-mean) loss."""
        cfg = self.config
        lr = cfg.lr * lr_factor(self.step, cfg.steps, cfg.warmup, cfg.lr_schedule, cfg.lr_floor)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(forward_model, batch, self.loss_gen)
        if not torch.is_tensor(loss) or loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar tensor, got {getattr(loss, 'shape', type(loss).__name__)}")
        value = float(loss.detach()) if self.dp is None else self.dp.mean(float(loss.detach()))
        if not math.isfinite(value):
            raise ValueError(f"loss became non-finite at step {self.step}: {value}")
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            with torch.no_grad():
                for e, p in zip(self.ema, self.params):
                    e.mul_(cfg.ema).add_(p.detach(), alpha=1 - cfg.ema)
        return value

    def run(self, loss_fn: Callable[..., torch.Tensor], forward_model: nn.Module, end: int, progress: bool,
            description: str) -> None:
        """Steps up to ``end`` with progress and periodic checkpoints, then a final checkpoint;
        ``forward_model`` is what ``loss_fn`` calls (the data-parallel wrapper when distributed)."""
        cfg = self.config
        self.model.train()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not progress, desc=description, leave=False)
        try:
            while self.step < end:
                self.losses.append(self.update(loss_fn, forward_model, self.next_batch()))
                self.step += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == end:
                    recent = self.losses[-cfg.log_every:]
                    bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < end:
                    self.save()
            self.save()
        finally:
            bar.close()

    def finish(self) -> None:
        """Copy the EMA weights into the model once every step is done."""
        if self.ema is not None and self.step >= self.config.steps:
            with torch.no_grad():
                for e, p in zip(self.ema, self.params):
                    p.copy_(e)


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any, torch.Generator], torch.Tensor],
    data: torch.Tensor | Callable[[torch.Generator], Any],
    config: TrainConfig,
    *,
    checkpoint_path: str | Path | None = None,
    progress: bool = True,
    config_hash: str | None = None,
    stop_at: int | None = None,
    description: str = "train",
    distributed: "DataParallel | None" = None,
) -> TrainResult:
    """Train ``model`` in place for ``config.steps`` AdamW steps (see the module docstring).

    ``data``: LongTensor [N, L] (minibatches of ``batch_size`` rows, moved to the model's device)
    or a callable ``data(generator)`` (CPU generator) returning a batch (a tensor, or a
    tuple/list/dict of tensors, moved to the model's device). ``config_hash``: hash of the outer
    configuration (model, data, objective) recorded in checkpoints; resuming from a checkpoint
    whose combined hash differs raises ValueError. ``stop_at``: stop after this step (writing a
    checkpoint), as if interrupted; a later call resumes. ``distributed``: this rank of a
    data-parallel run (:class:`gtl_verify.distributed.DataParallel`; see that module): each rank
    trains on its share of the global batch, losses are averaged over the ranks and rank 0 alone
    writes checkpoints and shows progress. Returns a :class:`TrainResult`.
    """
    _check_inputs(model, data, config)
    end = config.steps if stop_at is None else min(config.steps, check_int_range("stop_at", stop_at, 0))
    started = time.perf_counter()
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    session = _Session(model, config, data, path, config.trajectory_hash(config_hash), distributed)
    progress = progress and (distributed is None or distributed.is_main)
    forward_model = distributed.wrap(model) if distributed is not None else model
    with torch.random.fork_rng(devices=session.cuda_devices):
        torch.manual_seed(session.rank_seed(config.seed + 2))
        session.restore()
        resumed_from = session.step
        session.run(loss_fn, forward_model, end, progress, description)
    session.finish()
    return TrainResult(losses=session.losses, steps=session.step, wall_time_s=time.perf_counter() - started,
                       resumed_from=resumed_from)


__all__ = ["TrainConfig", "TrainResult", "config_hash", "load_checkpoint", "train"]
