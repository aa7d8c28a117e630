"""The component store: every learned component is built, fitted and saved once, then reloaded.

A component is identified by its ``name`` and a key: a frozen dataclass (or a JSON-able dict) of
everything its weights depend on. :func:`key_digest` hashes the key (sha256 of its canonical
JSON), and :meth:`ComponentStore.get` runs the one recipe

    load ``<root>/<name>-<digest>.pt``  or  build_seeded(digest) -> fit -> save

so a resumed run gets the same network as a fresh one. A model file that cannot be read is named
in a :class:`~gtl_verify.storage.DamagedCacheWarning` and rebuilt; one written under another key
raises ValueError. With ``root=None`` nothing touches the disk.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .networks import count_parameters, load_network, save_network
from .storage import load_torch_cache
from .training import TrainResult, build_seeded, config_hash

Fit = Callable[[nn.Module, Path | None, str], TrainResult | None]


@dataclass(frozen=True)
class ComponentId:
    """Which component: its ``role`` (``"clean classifier"``) and, for one trained per target set,
    its target ``fraction``. Writers and readers share one instance (``CLEAN.at(0.3)``), never a
    retyped string; :attr:`name` is the store's file-name stem and the results' label."""

    role: str
    fraction: float | None = None

    def at(self, fraction: float) -> "ComponentId":
        """This role for the target set ``fraction``."""
        return ComponentId(self.role, float(fraction))

    @property
    def name(self) -> str:
        return self.role if self.fraction is None else f"{self.role} {self.fraction:g}"


def key_dict(key: Any) -> dict[str, Any]:
    """A component key as the plain dict that is hashed and recorded (dataclass -> asdict)."""
    if dataclasses.is_dataclass(key) and not isinstance(key, type):
        key = dataclasses.asdict(key)
    return json.loads(json.dumps(key, default=str))


def key_digest(key: Any, chars: int = 16) -> str:
    """Stable hex digest (first ``chars`` of sha256 over the canonical JSON) of a component key."""
    return config_hash(key_dict(key))[:chars]


def slug(name: str) -> str:
    """``name`` with every character but letters, digits, '-' and '.' replaced by '-' (file names)."""
    return "".join(c if c.isalnum() or c in "-." else "-" for c in name)


def train_info(net: nn.Module, result: TrainResult | None) -> dict[str, Any]:
    """Parameter count and, when trained, steps, first and final loss (mean of the last tenth) and time."""
    info: dict[str, Any] = {"parameters": count_parameters(net)}
    if result is not None:
        losses = result.losses
        tail = losses[-max(1, len(losses) // 10):] if losses else []
        info.update({"steps": result.steps, "final_loss": float(np.mean(tail)) if tail else None,
                     "first_loss": float(losses[0]) if losses else None, "train_seconds": result.wall_time_s})
    return info


@dataclass
class ComponentStore:
    """Builds, fits and saves components under ``root`` (None: in memory only), keyed by digest.

    ``digest_chars``: hex characters of the key digest in file names and in the build seed.
    ``checkpoints``: folder of resumable training checkpoints handed to ``fit`` (None: no
    checkpoints). ``device``: where networks live. ``log``: one-line progress messages (or None);
    ``progress``: whether recipes show training progress bars.
    ``components``: name -> info of every component got so far; ``trained``: names fitted in this
    process, in order."""

    root: Path | None
    _: KW_ONLY
    digest_chars: int = 12
    checkpoints: Path | None = None
    device: torch.device | str = "cpu"
    log: Callable[[str], None] | None = None
    progress: bool = False
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)

    def path(self, name: str, digest: str) -> Path | None:
        return None if self.root is None else self.root / f"{slug(name)}-{digest}.pt"

    def _say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)

    def _load(self, path: Path | None, digest: str) -> tuple[nn.Module, dict[str, Any]] | None:
        if path is None:
            return None
        loaded = load_torch_cache(path, lambda p: load_network(p, map_location=self.device))
        if loaded is None:
            return None
        net, meta = loaded
        if meta.get("config_hash") != digest:
            raise ValueError(f"model file {path} was written by a different config (hash {meta.get('config_hash')!r}); "
                             f"delete it or choose another run folder")
        return net, meta

    def get(self, name: str, key: Any, build: Callable[[], nn.Module], fit: Fit) -> nn.Module:
        """The component ``name`` with ``key``: loaded when saved, else built with weights seeded by
        the key's digest, fitted by ``fit(net, checkpoint path or None, digest)``, put in eval mode
        and saved (with the key and :func:`train_info`)."""
        digest = key_digest(key, self.digest_chars)
        path = self.path(name, digest)
        loaded = self._load(path, digest)
        if loaded is not None:
            net, meta = loaded
            info = dict(meta.get("info", {}))
            self._say(f"{name}: loaded {path.name}")
        else:
            net = build_seeded(build, digest).to(self.device)
            ckpt = None if self.checkpoints is None else self.checkpoints / f"{slug(name)}-{digest}.ckpt"
            self._say(f"{name}: training ({count_parameters(net):,} parameters)")
            result = fit(net, ckpt, digest)
            net.eval()
            info = train_info(net, result)
            if path is not None:
                save_network(net, path, {"config_hash": digest, "key": key_dict(key), "info": info})
            if ckpt is not None:
                ckpt.unlink(missing_ok=True)
            self.trained.append(name)
            losses = "" if info.get("final_loss") is None else f", loss {info['first_loss']:.4f} -> {info['final_loss']:.4f}"
            self._say(f"{name}: saved ({info.get('steps', 0)} steps{losses})")
        info["parameters"] = count_parameters(net)
        self.components[name] = info
        return net

    def fit_ratio(self, name: str, key: Any, estimator: str, source: torch.Tensor, target: torch.Tensor,
                  budget: Any, **fit: Any) -> Any:
        """The density-ratio model ``name`` with ``key``: estimator ``estimator`` of
        :mod:`gtl_verify.estimators` loaded from ``<root>/<name>-<digest>.pt`` when saved, else fitted
        on ``source`` [N_s, L] and ``target`` [N_t, L] with ``budget`` (an EstimatorBudget) on the
        store's device and saved (:func:`gtl_verify.estimators.fit_or_load`; ``fit``: its keyword
        arguments, schedule, vocab_size, mask_id, denoiser, seed). Records the estimator, parameter
        count and, when fitted now, the seconds it took in :attr:`components`. Raises ValueError (one
        line) for an unknown estimator, bad samples or a file written under another key, before any
        training; a damaged file is warned about and refitted."""
        from .estimators import fit_or_load, get_estimator  # the estimators build on the store's networks

        get_estimator(estimator)  # an unknown name is refused before anything is logged
        digest = key_digest(key, self.digest_chars)
        path = self.path(name, digest)
        self._say(f"{name}: {'loading' if path is not None and path.is_file() else 'fitting'} {estimator}"
                  + ("" if path is None else f" ({path.name})"))
        start = time.perf_counter()
        model, trained = fit_or_load(estimator, path, {"config_hash": digest}, source, target, budget,
                                     device=self.device, **fit)
        info: dict[str, Any] = {"estimator": estimator,
                                "parameters": sum(count_parameters(net) for net in model.parts.values())}
        if trained:
            self.trained.append(name)
            info["train_seconds"] = time.perf_counter() - start
            self._say(f"{name}: fitted in {info['train_seconds']:.1f}s" + ("" if path is None else ", saved"))
        self.components[name] = info
        return model


def stderr_log(prefix: str) -> Callable[[str], None]:
    """A ``log`` for :class:`ComponentStore` writing ``prefix message`` lines to stderr."""
    return lambda message: print(f"{prefix} {message}", file=sys.stderr)


__all__ = ["ComponentStore", "key_dict", "key_digest", "slug", "stderr_log", "train_info"]
