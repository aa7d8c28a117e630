"""Independent tasks run in forked worker processes, for grids of small CPU jobs.

A benchmark grid of tiny networks cannot use more than one core per process with profit (one
torch thread: intra-op threads cost more than they save on [64, 20, 32] tensors), so the second
core of a 2-core machine sits idle. :func:`run_tasks` runs independent zero-argument tasks in
``workers`` forked processes (each inherits the parent's state, so tasks may be closures) and
returns their results in task order. Tasks must not depend on each other's side effects, except
through files they write atomically (a component store or a run folder's cells): a task's
result is then the same whether it runs in a worker or in the parent, and a grid runs in two
phases (shared components first, then the cells that load them).
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any, Callable, Sequence, TypeVar

from .validation import check_int_range

T = TypeVar("T")

_TASKS: Sequence[Callable[[], Any]] = ()


def _run(index: int) -> Any:
    return _TASKS[index]()


def _one_thread() -> None:
    """Worker start-up: one intra-op thread. The OpenMP runtime is not fork-safe: a child that opens
    a multi-threaded parallel region after the parent used one waits forever for the parent's pool
    threads, which the fork did not copy; with one thread no pool is used."""
    import torch

    torch.set_num_threads(1)


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity mask on this platform
        return max(1, os.cpu_count() or 1)


def parse_workers(value: str | int) -> int:
    """``--workers``: a positive integer, or ``auto`` (:func:`usable_cpus`); ValueError naming the
    option and the value otherwise."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return usable_cpus()
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or (isinstance(value, float) and value != n):
        raise ValueError(f"--workers must be a positive integer or 'auto', got {value!r}")
    return n


def run_tasks(tasks: Sequence[Callable[[], T]], workers: int) -> list[T]:
    """Results of ``tasks`` (zero-argument callables) in their order, computed by ``workers``
    forked processes (``workers`` = 1, or a single task: in this process). Tasks are handed out
    one at a time in the given order (put the longest first); each worker uses one torch thread;
    results must be picklable. A task's
    exception is re-raised here (the other workers are stopped). Raises ValueError for
    ``workers`` < 1 or a task that is not callable."""
    global _TASKS
    workers = check_int_range("workers", workers, 1)
    for i, task in enumerate(tasks):
        if not callable(task):
            raise ValueError(f"tasks[{i}] must be callable, got {type(task).__name__}")
    if workers == 1 or len(tasks) <= 1:
        return [task() for task in tasks]
    _TASKS = tasks
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(tasks)), initializer=_one_thread) as pool:
            return pool.map(_run, range(len(tasks)), chunksize=1)
    finally:
        _TASKS = ()


__all__ = ["run_tasks"]
