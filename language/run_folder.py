"""The state of one language run: its config, device, schedule, component store and prepared
data, with the helpers every stage shares (stage timing, autocast/compile on CUDA, seeds, fitting)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from gtl_verify.networks import BackboneConfig
from gtl_verify.recipes import Hooks
from gtl_verify.schedules import LogLinearSchedule, Schedule
from gtl_verify.store import ComponentId, ComponentStore, Fit, key_digest
from gtl_verify.training import train
from gtl_verify.validation import check_device

from .config import Budget, LanguageConfig, NetSize
from .vocabulary import Vocabulary


@dataclass
class PreparedData:
    """Segments in model ids (``*_val`` rows with an unseen token dropped under ``observed``),
    MAUVE reference / held-out rows (also model ids, drawn from ``target_val``), and a summary."""

    vocab: Vocabulary
    tokenizer: Any
    source_train: torch.Tensor
    source_val: torch.Tensor
    target_train: dict[float, torch.Tensor]
    target_val: torch.Tensor
    reference_rows: torch.Tensor
    held_out_rows: torch.Tensor
    summary: dict[str, Any]
    hash: str

    @property
    def length(self) -> int:
        return int(self.source_train.shape[1])


@dataclass
class Run:
    """A run folder with its config, device and the components trained or loaded so far."""

    config: LanguageConfig
    root: Path
    progress: bool = True
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    data: PreparedData | None = None
    #: seed of the current target-side replicate (None: the config's ``seed``); see :meth:`seed`
    replicate: int | None = None
    nets: dict[ComponentId, nn.Module] = field(default_factory=dict)
    keys: dict[ComponentId, str] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    schedule: Schedule = field(default_factory=LogLinearSchedule)
    store: ComponentStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = ComponentStore(self.root / "models", digest_chars=16, checkpoints=self.root / "checkpoints",
                                    device=self.device, log=self.log)

    def log(self, message: str) -> None:
        if self.progress:
            tqdm.write(f"[language {time.perf_counter() - self.started:7.1f}s] {message}", file=sys.stderr)

    @contextlib.contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + time.perf_counter() - start

    # ---------------------------------------------------------- runtime helpers
    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def hooks(self) -> Hooks:
        """The runtime's bf16 autocast and torch.compile (CUDA only), for training and sampling."""
        return Hooks(device=self.device, bf16=self.config.runtime.bf16, compile=self.config.runtime.compile)

    @property
    def target_seed(self) -> int:
        """Seed of the current replicate: every component trained on the physics share, every
        sample set and evaluation draw (the config's ``seed`` unless a replicate is set)."""
        return self.config.seed if self.replicate is None else self.replicate

    def seed(self, name: str) -> int:
        """Seed of the target-side random stream ``name`` of the current replicate."""
        return _stream_seed(self.target_seed, name)

    def source_seed(self, name: str) -> int:
        """Seed of the source-side stream ``name`` (source denoiser, planner, reference and floor
        rows), shared by every replicate: the config's ``seed``."""
        return _stream_seed(self.config.seed, name)

    # ---------------------------------------------------------- component store
    def component(self, cid: ComponentId, key: dict[str, Any], build: Callable[[], nn.Module], fit: Fit) -> nn.Module:
        """The component ``cid`` from ``<run>/models`` (see :class:`gtl_verify.store.ComponentStore`;
        training resumes from ``<run>/checkpoints``), memoised for this run."""
        digest = key_digest(key, self.store.digest_chars)
        if cid in self.nets and self.keys.get(cid) == digest:
            return self.nets[cid]
        self.keys[cid] = digest
        self.nets[cid] = self.store.get(cid.name, key, build, fit)
        return self.nets[cid]

    @property
    def components(self) -> dict[str, dict[str, Any]]:
        return self.store.components

    @property
    def trained(self) -> list[str]:
        return self.store.trained

    def fit(self, net: nn.Module, loss_fn, data, budget: Budget, name: str, ckpt: Path, digest: str, *, source_side: bool = False):
        """Train ``net`` with :func:`gtl_verify.training.train` (checkpointed, resumable), seeded by
        :meth:`source_seed` (``source_side``) or :meth:`seed` of ``name``."""
        if budget.steps == 0:
            return None
        seed = self.source_seed(name) if source_side else self.seed(name)
        cfg = dataclasses.replace(budget.train_config(seed), checkpoint_every=self.config.runtime.checkpoint_every)
        return train(net, loss_fn, data, cfg, checkpoint_path=ckpt, progress=self.progress, config_hash=digest, description=name)


def _stream_seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1)


def _payload(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """A cached torch payload holding ``keys``; ValueError (a damaged cache) otherwise."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or not set(keys) <= payload.keys():
        raise ValueError(f"expected a dict with keys {list(keys)}")
    return payload


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; otherwise :func:`gtl_verify.validation.check_device`
    (``cuda`` without a GPU raises)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device("runtime.device", name)


def backbone(size: NetSize, vocab: Vocabulary, length: int, time_conditioning: bool = False) -> BackboneConfig:
    return BackboneConfig(vocab_size=vocab.size, num_embeddings=vocab.num_embeddings, max_length=length, hidden=size.hidden,
                          blocks=size.blocks, heads=size.heads, cond=size.cond, mlp_ratio=size.mlp_ratio,
                          dropout=size.dropout, positions=size.positions, time_conditioning=time_conditioning)


def _fraction_key(f: float) -> str:
    return f"{f:g}"
