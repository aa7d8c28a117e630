"""Files of a run folder: atomic writes, damaged-cache detection and the run-folder lock.

- :func:`atomic_write` (and :func:`atomic_write_text`, :func:`atomic_torch_save`): the one way the
  suite writes a file: a temporary file in the same folder, fsync, rename; the result is
  world-readable (0644), like the figures.
- :func:`read_json_cache` / :func:`load_torch_cache`: a cache file that cannot be read (empty,
  truncated, not JSON, not a torch archive) is named in a :class:`DamagedCacheWarning`, removed,
  and reported as missing, so the caller recomputes it; nothing else is lost.
- :class:`RunLock`: an exclusive ``fcntl`` lock on ``<run>/.lock`` holding the owner's pid, so a
  second run into the same folder stops at once with a message naming the folder and the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, IO

import torch

FILE_MODE = 0o644


class DamagedCacheWarning(UserWarning):
    """A cache file could not be read; it is removed and recomputed."""


class RunFolderBusy(ValueError):
    """Another process holds the lock of a run folder."""


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` atomically with ``write(binary file handle)``; mode 0644; parents created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, mode 0644."""
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically, mode 0644."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def discard_damaged(path: Path, reason: object) -> None:
    """Warn that the cache file ``path`` is damaged (``reason``) and remove it."""
    warnings.warn(f"damaged cache file {path} ({str(reason).splitlines()[0] if str(reason) else type(reason).__name__}); "
                  f"removed, recomputing it", DamagedCacheWarning, stacklevel=3)
    Path(path).unlink(missing_ok=True)


def read_json_cache(path: str | Path, shape: Callable[[Any], bool] | None = None) -> Any | None:
    """The JSON value cached in ``path``; None when absent or damaged (then warned and removed). A
    value that parses but that ``shape`` rejects (the caller's test of what the cache must hold,
    e.g. an object with a ``metrics`` object) counts as damaged too."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        discard_damaged(path, exc)
        return None
    if shape is not None and not shape(value):
        discard_damaged(path, f"unexpected content: {json.dumps(value)[:60]}")
        return None
    return value


def load_torch_cache(path: str | Path, load: Callable[[Path], Any] | None = None) -> Any | None:
    """``load(path)`` (default: ``torch.load`` of tensors only); None when the file is absent or
    cannot be read (then warned and removed). ``load`` may raise ValueError for a malformed payload."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return load(path) if load is not None else torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated archive fails in torch, zipfile or pickle: it is a cache, recompute
        refused = isinstance(exc, pickle.UnpicklingError)  # torch's weights-only refusal advises an unsafe load
        discard_damaged(path, f"{type(exc).__name__}: not a tensors-only torch file" if refused else exc)
        return None


class RunLock:
    """Exclusive lock of a run folder for the life of a ``with`` block (released on exit or when
    the process dies). Raises :class:`RunFolderBusy` naming the folder and the holder's pid."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / ".lock"
        self._fh: IO[str] | None = None

    def __enter__(self) -> "RunLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise RunFolderBusy(f"run folder {self.run_dir} is in use by another run (pid {holder}); "
                                f"wait for it to finish or choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


__all__ = ["DamagedCacheWarning", "FILE_MODE", "RunFolderBusy", "RunLock", "atomic_torch_save", "atomic_write",
           "atomic_write_text", "discard_damaged", "load_torch_cache", "read_json_cache"]
