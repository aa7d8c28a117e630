"""Data-parallel training for :func:`gtl_verify.training.train` (torch DistributedDataParallel).

Launch a training script with ``torchrun --nproc_per_node W script.py`` and pass
``distributed=DataParallel.from_env()`` to :func:`~gtl_verify.training.train`
(``config.batch_size`` stays the global batch). Every rank then

- draws the same *global* batch of ``config.batch_size`` rows from the same data generator and
  keeps its contiguous share: rank r of W gets rows ``[r B/W, (r+1) B/W)`` (B must be divisible
  by W), so the W shares together are exactly the rows of the single-process batch;
- evaluates ``loss_fn`` on a :class:`torch.nn.parallel.DistributedDataParallel` wrapper of the
  model, whose backward all-reduces the gradients to their mean over the ranks. For a loss that
  is a mean over rows, the mean of the W share means is the global-batch mean (equal shares), so
  the optimiser step equals the single-process step up to float rounding. ``loss_fn`` must call
  the model it is given: a loss that calls a network captured beforehand (or a torch.compile of
  it) bypasses the wrapper, and its gradients are then not all-reduced;
- records the loss averaged over the ranks (the global-batch loss);
- seeds its loss generator and global torch RNG (dropout) with a per-rank offset, so that ranks
  draw independent randomness. Rank 0 uses the single-process seeds. Per-row randomness that
  must not depend on the layout (mask times, mask draws) belongs in the batch, drawn by the
  data generator for the whole global batch: it is then sharded with its rows;
- shows a progress bar and writes checkpoints on rank 0 only; the checkpoint holds every rank's
  RNG states, so a run resumed with the same world size continues each rank's streams, and a
  single process can resume it (with rank 0's streams and the full batch).

Process groups use ``gloo`` on CPU and ``nccl`` on CUDA (one device per local rank). Without
torchrun's environment (``WORLD_SIZE`` unset) :meth:`DataParallel.from_env` returns None: a
plain single-process run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
RANK_SEED_STRIDE = 1_000_003  # offset between the seeds of consecutive ranks


def _env_int(name: str, env: dict[str, str], low: int) -> int:
    raw = env.get(name)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if value < low:
        raise ValueError(f"environment variable {name} must be >= {low}, got {value}")
    return value


@dataclass
class DataParallel:
    """One rank of a data-parallel run: ``rank`` in ``0..world_size-1`` and its ``device``.

    Build it with :meth:`from_env` (which also initialises the process group) and release the
    group with :meth:`close`."""

    rank: int
    world_size: int
    device: torch.device

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, {self.world_size}), got {self.rank}")

    # ---------------------------------------------------------- setup
    @classmethod
    def from_env(cls, device: str = "auto", env: dict[str, str] | None = None) -> "DataParallel | None":
        """Initialise the default process group from torchrun's variables (``RANK``,
        ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); None when
        ``WORLD_SIZE`` is unset. ``device``: ``auto`` (CUDA device ``LOCAL_RANK`` when CUDA is
        available, else CPU), ``cpu`` or ``cuda``. Raises ValueError naming a missing or
        malformed variable, or ``cuda`` without enough GPUs."""
        env = dict(os.environ) if env is None else env
        if "WORLD_SIZE" not in env:
            return None
        missing = [k for k in ENV_KEYS if k not in env]
        if missing:
            raise ValueError(f"torchrun environment incomplete: {', '.join(missing)} unset")
        world = _env_int("WORLD_SIZE", env, 1)
        rank = _env_int("RANK", env, 0)
        local = _env_int("LOCAL_RANK", env, 0)
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        if use_cuda:
            if local >= torch.cuda.device_count():
                raise ValueError(f"LOCAL_RANK={local} but only {torch.cuda.device_count()} CUDA devices are visible")
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        else:
            dev = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
        return cls(rank=rank, world_size=world, device=dev)

    def close(self) -> None:
        """Destroy the default process group (after the last collective)."""
        if dist.is_initialized():
            dist.destroy_process_group()

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the rank that writes checkpoints and shows progress)."""
        return self.rank == 0

    def rank_seed(self, seed: int) -> int:
        """Seed of this rank's stream derived from a single-process ``seed`` (rank 0: unchanged)."""
        return seed + RANK_SEED_STRIDE * self.rank

    # ---------------------------------------------------------- per step
    def check_batch_size(self, batch_size: int) -> int:
        """The per-rank batch B/W; ValueError unless the global batch B divides evenly."""
        if batch_size % self.world_size:
            raise ValueError(
                f"batch_size must be divisible by the world size {self.world_size} (equal shares keep the "
                f"gradient mean exact), got {batch_size}"
            )
        return batch_size // self.world_size

    def wrap(self, model: nn.Module) -> nn.Module:
        """``DistributedDataParallel(model)`` (gradients all-reduced to their mean in backward)."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def shard(self, batch: Any) -> Any:
        """This rank's contiguous share of every tensor of a global batch (rows along dim 0);
        tuples, lists and dicts are sharded element-wise, other values passed through.
        ValueError when a tensor's rows do not divide by the world size."""
        if torch.is_tensor(batch):
            rows = batch.shape[0] if batch.dim() else 0
            if rows % self.world_size or rows == 0:
                raise ValueError(f"a batch tensor has {rows} rows, not a positive multiple of the world size {self.world_size}")
            share = rows // self.world_size
            return batch[self.rank * share : (self.rank + 1) * share]
        if isinstance(batch, (tuple, list)):
            return type(batch)(self.shard(b) for b in batch)
        if isinstance(batch, dict):
            return {k: self.shard(v) for k, v in batch.items()}
        return batch

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (float64 all-reduce)."""
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t) / self.world_size

    # ---------------------------------------------------------- checkpoints
    def gather_rng(self, loss_gen: torch.Generator) -> list[dict[str, torch.Tensor]]:
        """Every rank's (loss generator, global torch RNG) states, in rank order (a collective:
        every rank must call it)."""
        mine = {"loss_gen": loss_gen.get_state(), "torch_rng": torch.get_rng_state()}
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, mine)
        return out

    def restore_rng(self, saved: list[dict[str, torch.Tensor]] | None, loss_gen: torch.Generator, fallback_seed: int) -> bool:
        """Restore this rank's RNG states from a checkpoint's ``ranks`` list. When the checkpoint
        was written by another world size or a single process, rank 0 keeps the states already
        loaded (the single-process ones) and every other rank reseeds both streams from
        ``rank_seed(fallback_seed)`` (the caller mixes in the step, so the streams are not
        replayed from step 0); returns False then."""
        if saved and len(saved) == self.world_size:
            loss_gen.set_state(saved[self.rank]["loss_gen"])
            torch.set_rng_state(saved[self.rank]["torch_rng"])
            return True
        if not self.is_main:
            loss_gen.manual_seed(self.rank_seed(fallback_seed))
            torch.manual_seed(self.rank_seed(fallback_seed) + 1)
        return False

    def barrier(self) -> None:
        dist.barrier()


__all__ = ["DataParallel"]
