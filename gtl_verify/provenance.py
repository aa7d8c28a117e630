"""Results files: provenance record and atomic JSON writing.

Every results JSON of the suite is an envelope

    {"kind": str, "schema_version": int, "meta": {...provenance...}, "results": {...}}

so that ``gtl report`` can render any of them and re-run the recorded command. A run folder that is
resumed over several invocations keeps each one's wall time (:class:`InvocationClock`), so its
results state the whole run's time, not only the last part's.
"""

from __future__ import annotations

import json
import functools
import os
import platform
import subprocess
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from .results import SCHEMA_VERSION, check_envelope, results_dict
from .storage import atomic_write_text, read_json_cache

PACKAGES = ("torch", "numpy", "scipy", "sympy", "matplotlib", "hypothesis", "tokenizers", "mauve-text")


@functools.lru_cache(maxsize=None)
def git_commit(cwd: str | Path | None = None) -> str:
    """The git commit of the code this process runs (with ``-dirty`` when the tree had changes), or
    ``unknown``. Read once per process and kept: a long run records the commit it started from, even
    if the checkout moves on while it runs (call it at start-up, as ``gtl`` does)."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name() -> str:
    """The GPU model when CUDA is available, else the CPU description with its core count."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def invocation(argv: list[str]) -> str:
    """The command line that ran, as a user would type it: ``gtl ARGS`` for the ``gtl`` script and for
    ``python -m gtl_verify.cli`` (whose argv[0] is the module's file path), else argv joined; each
    argument shell-quoted where it needs it (a folder with a space), so the line can be run again."""
    args = [str(a) for a in argv]
    head = Path(args[0]) if args and args[0] else Path("?")
    if head.name == "gtl" or (head.name == "cli.py" and head.parent.name == "gtl_verify"):
        args = ["gtl", *args[1:]]
    return shlex.join(args) if any(args) else "?"


def provenance(config: dict[str, Any] | None = None, seeds: list[int] | None = None, wall_time_s: float | None = None,
               wall_time_parts_s: list[float] | None = None) -> dict[str, Any]:
    """Metadata recorded with every result: command, commit, config, seeds, device, time, versions;
    with ``wall_time_parts_s`` (seconds per invocation of a resumed run folder, oldest first, the
    current one last) also that list (reports/markdown.py ``wall_time_item`` shows their total)."""
    parts = {} if wall_time_parts_s is None else {"wall_time_parts_s": [float(p) for p in wall_time_parts_s]}
    return {**parts,
        "command": invocation(sys.argv),
        "git_commit": git_commit(),
        "config": config or {},
        "seeds": seeds or [],
        "device": device_name(),
        "wall_time_s": wall_time_s,
        "packages": package_versions(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


INVOCATIONS_FILE = ".invocations.json"


class InvocationClock:
    """The wall time of each invocation that worked in a run folder, kept in ``<run>/.invocations.json``
    (a JSON list of seconds, oldest first; hidden, so ``gtl report <run>`` does not list it).

    ``with InvocationClock(run_dir) as clock:`` starts timing; :meth:`parts` is the earlier invocations'
    seconds and this one's so far (for the results' provenance); leaving the block, normally or by an
    exception or Ctrl-C, appends this invocation's seconds atomically, so an interrupted run that is
    resumed later is counted too. Use it inside the run folder's lock. A damaged file is named in a
    warning and restarted (the earlier parts are then unknown)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / INVOCATIONS_FILE
        self.earlier: list[float] = []
        self.start: float | None = None

    def __enter__(self) -> "InvocationClock":
        stored = read_json_cache(self.path)
        valid = isinstance(stored, list) and all(isinstance(p, (int, float)) and not isinstance(p, bool) and p >= 0
                                                 for p in stored)
        if stored is not None and not valid:
            import warnings

            warnings.warn(f"{self.path} is not a list of seconds; the run's earlier wall times are unknown",
                          stacklevel=2)
        self.earlier = [float(p) for p in stored] if valid else []
        self.start = time.perf_counter()
        return self

    def elapsed(self) -> float:
        """Seconds since this invocation entered the block."""
        if self.start is None:
            raise RuntimeError("InvocationClock.elapsed() outside its with block")
        return time.perf_counter() - self.start

    def parts(self) -> list[float]:
        """Seconds of every invocation in the folder, oldest first, this one's so far last."""
        return [*self.earlier, self.elapsed()]

    def __exit__(self, *exc: object) -> None:
        atomic_write_text(self.path, json.dumps(self.parts()) + "\n")


def write_results(path: str | Path, kind: str, results: Any, meta: dict[str, Any]) -> Path:
    """Write the results envelope {"kind", "schema_version", "meta", "results"} as JSON, atomically
    (0644); ``results`` is a dict or typed results with ``to_dict`` (:mod:`gtl_verify.results`)."""
    envelope = {"kind": kind, "schema_version": SCHEMA_VERSION, "meta": meta, "results": results_dict(results)}
    return atomic_write_text(path, json.dumps(envelope, indent=2, sort_keys=True, default=float) + "\n")


def read_results(path: str | Path) -> dict[str, Any]:
    """Read and check a results envelope (migrated to the current schema version, required keys of
    its kind present); clear ValueError naming the file for a malformed one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"results file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not {"kind", "meta", "results"} <= data.keys():
        raise ValueError(f"results file {path} must be an object with keys 'kind', 'meta', 'results'")
    return check_envelope(data, path)
