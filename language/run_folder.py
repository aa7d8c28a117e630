"""The state of one language run: its config, device, schedule, component store and prepared
data, with the helpers every stage shares (stage timing, autocast/compile on CUDA, seeds, fitting),
and the folder's config record (:func:`record_config`, ``<run>/config.json``)."""

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
from gtl_verify.storage import atomic_write_text
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
    #: fitted ratio models (language.components.ratio_model), keyed like ``nets``
    ratios: dict[ComponentId, Any] = field(default_factory=dict)
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
        return self.memoised(self.nets, cid, key, lambda: self.store.get(cid.name, key, build, fit))

    def memoised(self, table: dict[ComponentId, Any], cid: ComponentId, key: dict[str, Any], make: Callable[[], Any]) -> Any:
        """``table[cid]`` when it was made under ``key`` in this run, else ``make()`` recorded there
        with the key's digest in :attr:`keys` (what the sample keys name)."""
        digest = key_digest(key, self.store.digest_chars)
        if cid in table and self.keys.get(cid) == digest:
            return table[cid]
        self.keys[cid] = digest
        table[cid] = make()
        return table[cid]

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


# ------------------------------------------------------------------ the folder's config record
CONFIG_RECORD = "config.json"
#: settings that change no computed number (how fast, how often to checkpoint, what the config is
#: called, the sampling-time guard); every other setting counts, ``runtime.device`` as resolved
#: (``auto`` on a GPU machine equals ``cuda``; CPU and CUDA draw different random streams)
# data.path: the data cache is keyed on the files' names and sizes, not on where they were read from
RESULT_FREE_KEYS = frozenset({"name", "data.path", "runtime.threads", "runtime.checkpoint_every", "runtime.sampling_budget_minutes"})
_SHOWN = 3  # differing settings named in the error; the rest are counted


def record_config(root: str | Path, config: LanguageConfig, device: torch.device, allow_change: bool = False) -> list[str]:
    """Check ``config`` against the one ``<root>/config.json`` records, and record it.

    The first start writes the record (atomically). A later start whose config differs in a
    setting outside :data:`RESULT_FREE_KEYS` raises ValueError naming the first differing dotted
    keys with their old -> new values, unless ``allow_change``: then the new config is recorded
    and the old one appended to the record's ``history``. A setting the record lacks (added to
    the code later) counts as unchanged when the new value is its default; a recorded setting
    the code no longer has is ignored. Nothing else in the folder is touched: components and
    samples are keyed by their content, so the unchanged ones are reused. A damaged record raises
    ValueError naming the file (``allow_change`` replaces it). Returns the accepted differences
    (``key (old -> new)``; empty when none)."""
    root = Path(root)
    path = root / CONFIG_RECORD
    entry = {"name": config.name, "hash": config.hash(), "device": device.type, "config": _jsonable(config.to_dict())}
    try:
        old = _read_record(path, root) if path.is_file() else None
    except ValueError:
        if not allow_change:
            raise
        old = None
    if old is None:
        atomic_write_text(path, json.dumps({**entry, "history": []}, indent=1) + "\n")
        return []
    changes = config_changes(old, entry)
    if not changes:
        return []
    if not allow_change:
        more = f" and {len(changes) - _SHOWN} more" if len(changes) > _SHOWN else ""
        raise ValueError(f"run folder {root} was started with config {old['name']!r} (hash {old['hash']}); this config "
                         f"({config.name!r}, hash {entry['hash']}) differs in {', '.join(changes[:_SHOWN])}{more}; use a new "
                         f"--out, or pass --allow-config-change to reuse the components whose settings are unchanged")
    history = old.pop("history", [])
    atomic_write_text(path, json.dumps({**entry, "history": [*history, {**old, "changed": changes}]}, indent=1) + "\n")
    return changes


def config_history(root: str | Path) -> list[dict[str, Any]]:
    """The config changes accepted in the run folder ``root`` with ``--allow-config-change``, oldest
    first: ``{"from": old hash, "to": new hash, "changed": ["key (old -> new)", ...]}`` per accepted
    change (empty for a folder run under one config). Read from the record :func:`record_config`
    keeps, so a report can say that its components were computed under more than one config."""
    path = Path(root) / CONFIG_RECORD
    if not path.is_file():
        raise ValueError(f"run folder {root} has no config record {path} (record_config writes it when a run starts)")
    record = _read_record(path, Path(root))
    hashes = [h["hash"] for h in record.get("history", [])] + [record["hash"]]
    return [{"from": h["hash"], "to": hashes[j + 1], "changed": list(h["changed"])}
            for j, h in enumerate(record.get("history", []))]


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key (old -> new)`` for every result-changing setting that differs between two records
    (``{"device": ..., "config": ...}``), in the config's order."""
    before, after = _flat_settings(old), _flat_settings(new)
    defaults = _flat(_jsonable(LanguageConfig().to_dict()))
    missing = object()
    changes = []
    for key, value in after.items():
        was = before.get(key, defaults.get(key, missing))
        if key not in RESULT_FREE_KEYS and was != value:
            changes.append(f"{key} ({'absent' if was is missing else json.dumps(was)} -> {json.dumps(value)})")
    return changes


def _flat_settings(record: dict[str, Any]) -> dict[str, Any]:
    return {**_flat(record["config"]), "runtime.device": record["device"]}


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of the leaves of a nested dict (lists are leaves)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _read_record(path: Path, root: Path) -> dict[str, Any] | None:
    """The record in ``path``; ValueError naming it and the way out when it is damaged."""
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict) or not {"name", "hash", "device"} <= record.keys():
            raise ValueError("not a config record: expected an object with name, hash, device and config")
        history = record.get("history", [])
        if not isinstance(history, list) or not all(
                isinstance(h, dict) and isinstance(h.get("hash"), str) and isinstance(h.get("changed"), list)
                and all(isinstance(c, str) for c in h["changed"]) for h in history):
            raise ValueError("its history must be a list of earlier records, each with a hash and the list of changed settings")
    except (ValueError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"run folder {root}: its config record {path} is damaged ({reason}); delete it, or pass "
                             f"--allow-config-change, to record this config (computed components are kept and reused "
                             f"where their settings are unchanged)") from None
    return record
