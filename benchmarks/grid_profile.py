"""Where the Markov benchmark grid spends its time, before and after, side by side in one run.

A slice of the paper grid (markov/paper_grid.toml with one seed, one n target and no sweeps: the
same models, budgets, samples and metrics as every cell of the grid) is run three times, each in
a fresh process, one after the other:

- ``before``: the code of ``--base`` (a git revision, checked out into a temporary worktree);
- ``after``: this tree, with the benchmark's density pass answered by the sampler's own draws
  (``SampleResult.token_log_prob``, equal bit for bit to ``fixed_order_log_density``; this is the
  proposed one-line change in ``markov.benchmark.evaluate``, applied here by wrapping);
- ``after, 2 workers``: this tree on two forked workers (:func:`gtl_verify.workers.run_tasks`):
  phase 1 trains the source denoiser and the autoregressive source model side by side, phase 2
  runs the ratio-using methods and the denoiser-only methods side by side; a final serial pass
  reads every cell back from the run folder (the proposed schedule of ``run_benchmark``).

Each stage is timed exclusively (process CPU seconds and wall seconds; a nested stage is not
counted again in its parent): training per component, sampling per method, the density pass,
metrics, component checks, the exact oracles. One fit of the ``guided-likelihood`` and ``paper``
ratio estimators (``--estimator-steps`` steps, the grid's ratio batch and rate, the trained source
denoiser) is timed in the ``after`` process. Every cell's metrics are compared across the three
runs (exact equality). The machine is shared: compare ratios, not seconds; the load (uptime) is
recorded before and after.

    OMP_NUM_THREADS=1 python benchmarks/grid_profile.py --base main --out reports/runs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RATIO_METHODS = ("gtl", "gtl-oracle-denoiser", "gtl-planner")


# ------------------------------------------------------------------ stage timer
class StageTimer:
    """Exclusive CPU and wall seconds per stage name (a nested stage is subtracted from its parent)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []

    @contextlib.contextmanager
    def stage(self, name: str):
        frame = [time.process_time(), time.perf_counter(), 0.0, 0.0]  # start cpu, wall, children cpu, wall
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            cpu, wall = time.process_time() - frame[0], time.perf_counter() - frame[1]
            self.cpu[name] += cpu - frame[2]
            self.wall[name] += wall - frame[3]
            self.calls[name] += 1
            if self._stack:
                self._stack[-1][2] += cpu
                self._stack[-1][3] += wall

    def wrap(self, owner: Any, attr: str, name) -> None:
        """Replace ``owner.attr`` by a timed call; ``name`` is a string or a function of the call's arguments."""
        fn = getattr(owner, attr)

        def timed(*args, **kwargs):
            with self.stage(name(*args, **kwargs) if callable(name) else name):
                return fn(*args, **kwargs)

        setattr(owner, attr, timed)


def slice_config(n_target: int, seed: int):
    from markov.config import load_config

    config = load_config(ROOT / "markov" / "paper_grid.toml", seeds=[seed], n_targets=[n_target])
    return replace(config, gamma_sweep=(), overlap_sweep=())


def instrument(timer: StageTimer, reuse_draws: bool) -> None:
    """Time the stages of the grid (see the module docstring) by wrapping the functions it calls."""
    import markov.benchmark as bench
    import markov.components as comp
    from markov import metrics, oracle

    current = {"method": "?"}
    last = {}
    evaluate = bench.evaluate

    def timed_evaluate(cell, method, gamma, generator):
        current["method"] = method
        return evaluate(cell, method, gamma, generator)

    bench.evaluate = timed_evaluate
    timer.wrap(comp, "train", lambda *a, **k: f"train: {k.get('description', 'train')}")
    sample = bench.planner_sample

    def timed_sample(*args, **kwargs):
        with timer.stage(f"sampling: {current['method']}"):
            res = sample(*args, **kwargs)
        last["res"] = res
        return res

    bench.planner_sample = timed_sample
    density = bench.fixed_order_log_density

    def timed_density(denoiser, ratio, rule, schedule, x, gamma=1.0, top_k=None):
        res = last.get("res")
        if reuse_draws and res is not None and getattr(res, "token_log_prob", None) is not None and res.tokens is x:
            return res.token_log_prob  # the proposed evaluate(): the sampler's draws are the density
        with timer.stage("density pass (fixed order)"):
            return density(denoiser, ratio, rule, schedule, x, gamma, top_k)

    bench.fixed_order_log_density = timed_density
    for name in ("transition_kl", "cross_entropy_gap", "mc_kl", "estimate_transition"):
        timer.wrap(metrics, name, "metrics")
    timer.wrap(bench, "component_errors", "component checks")
    timer.wrap(bench, "ar_likelihood_check", "component checks")
    timer.wrap(bench, "planner_law", "exact law")
    timer.wrap(bench, "make_data", "data")
    timer.wrap(oracle.PairOracle, "__call__", "oracle: exact ratio")
    timer.wrap(oracle.ChainOracle, "__call__", "oracle: exact denoiser")


def time_estimators(timer: StageTimer, config, steps: int, run_dir: Path) -> dict[str, float]:
    """CPU seconds of one fit of each rewired ratio estimator (``steps`` steps), in this process."""
    from gtl_verify.estimators import EstimatorBudget, get_estimator
    from gtl_verify.schedules import LogLinearSchedule
    from markov.benchmark import Cell
    from markov.components import ComponentStore, as_denoiser

    cell = Cell(config, config.presets[0], config.seeds[0], config.n_targets[0], ComponentStore(run_dir / "models"), {})
    denoiser = as_denoiser(cell.source_net, cell.k)
    b = config.training
    out = {}
    for name in ("guided-likelihood", "paper"):
        budget = EstimatorBudget(steps=steps, batch_size=b.ratio_batch_size, lr=b.ratio_lr, weight_decay=b.weight_decay)
        start = time.process_time()
        with timer.stage(f"estimator fit: {name} ({steps} steps)"):
            get_estimator(name).fit(cell.data.source_train, cell.target, budget, schedule=LogLinearSchedule(),
                                    vocab_size=cell.k, denoiser=denoiser, seed=0)
        out[name] = time.process_time() - start
    return out


def process_and_children_cpu() -> float:
    """CPU seconds of this process and of its finished children (the forked workers)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def child(args: argparse.Namespace) -> None:
    """One measured run of the slice in this process; writes {stages, cells, total} to ``args.result``."""
    import torch

    from markov.benchmark import Cell, run_benchmark
    from markov.components import ComponentStore

    torch.set_num_threads(1)
    config = slice_config(args.n_target, args.seed)
    timer = StageTimer()
    if args.variant != "before":
        instrument(timer, reuse_draws=True)
    else:
        instrument(timer, reuse_draws=False)
    run_dir = Path(args.run_dir)
    wall, cpu = time.perf_counter(), process_and_children_cpu()
    if args.workers > 1:
        from gtl_verify.workers import run_tasks  # this tree only (the base revision may not have it)

        p, s, n = config.presets[0], config.seeds[0], config.n_targets[0]
        store = ComponentStore(run_dir / "models")

        def shared(which: str):
            cell = Cell(config, p, s, n, store, {})
            getattr(cell, which)
            return None

        run_tasks([lambda: shared("source_net"), lambda: shared("ar_net")], args.workers)
        groups = [tuple(m for m in config.methods if m in RATIO_METHODS), tuple(m for m in config.methods if m not in RATIO_METHODS)]
        run_tasks([lambda g=g: run_benchmark(replace(config, methods=g), run_dir, progress=False) and None for g in groups],
                  args.workers)
    results = run_benchmark(config, run_dir, progress=False)
    total = {"wall_s": time.perf_counter() - wall, "cpu_s": process_and_children_cpu() - cpu}
    estimators = time_estimators(timer, config, args.estimator_steps, run_dir) if args.estimator_steps and args.variant == "after" else {}
    cells = {c["method"]: c["metrics"] for c in results.cells}
    stages = {k: {"cpu_s": timer.cpu[k], "wall_s": timer.wall[k], "calls": timer.calls[k]} for k in timer.cpu}
    Path(args.result).write_text(json.dumps({"variant": args.variant, "total": total, "stages": stages, "cells": cells,
                                             "estimator_fit_cpu_s": estimators}))


# ------------------------------------------------------------------ parent
def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "uptime unavailable"


def run_variant(variant: str, tree: Path, workers: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    result, run_dir = tmp / f"{variant}.json", tmp / f"run-{variant}"
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "grid_profile.py"), "--child", "--variant", variant, "--result", str(result),
           "--run-dir", str(run_dir), "--workers", str(workers), "--n-target", str(args.n_target), "--seed", str(args.seed),
           "--estimator-steps", str(args.estimator_steps)]
    print(f"[{variant}] running ({uptime()})", flush=True)
    subprocess.run(cmd, env=env, cwd=tree, check=True)
    out = json.loads(result.read_text())
    print(f"[{variant}] {out['total']['wall_s']:.0f} s wall, {out['total']['cpu_s']:.0f} s CPU", flush=True)
    return out


def markdown(runs: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    before, after = runs[0], runs[1]
    names = sorted({k for k in set(before["stages"]) | set(after["stages"]) if not k.startswith("estimator fit")},
                   key=lambda k: -before["stages"].get(k, {"cpu_s": 0})["cpu_s"])
    lines = ["# Where the Markov grid's time goes (paper-grid slice)", "",
             f"Slice: markov/paper_grid.toml with seeds = [{meta['seed']}], n_targets = [{meta['n_target']}], no sweeps "
             f"(every method, the grid's budgets and samples). Base revision `{meta['base']}`; this tree `{meta['head']}`. "
             "One torch thread per process; the three runs one after the other in one invocation.",
             f"Load before: `{meta['load_before']}`; after: `{meta['load_after']}`. The machine is shared: compare ratios.",
             *([meta["note"]] if meta.get("note") else []), "",
             "| run | wall (s) | CPU (s) | wall vs before |", "|---|---|---|---|"]
    for r in runs:
        cpu = "not recorded" if r["total"]["cpu_s"] is None else f"{r['total']['cpu_s']:.0f}"
        lines.append(f"| {r['variant']} | {r['total']['wall_s']:.0f} | {cpu} | "
                     f"{before['total']['wall_s'] / r['total']['wall_s']:.2f}x |")
    lines += ["", "Exclusive CPU seconds by stage (single process; a nested stage is not counted in its parent):", "",
              "| stage | before: CPU s | share | after: CPU s | after / before |", "|---|---|---|---|---|"]
    total_b = before["total"]["cpu_s"]
    for k in names:
        b = before["stages"].get(k, {}).get("cpu_s", 0.0)
        a = after["stages"].get(k, {}).get("cpu_s", 0.0)
        ratio = f"{a / b:.2f}" if b > 0 else "-"
        lines.append(f"| {k} | {b:.1f} | {b / total_b:.1%} | {a:.1f} | {ratio} |")
    in_grid = lambda run: sum(s["cpu_s"] for k, s in run["stages"].items() if not k.startswith("estimator fit"))
    rest_b, rest_a = total_b - in_grid(before), after["total"]["cpu_s"] - in_grid(after)
    lines.append(f"| other (setup, report, imports) | {rest_b:.1f} | {rest_b / total_b:.1%} | {rest_a:.1f} | - |")
    est = after.get("estimator_fit_cpu_s") or {}
    if est:
        ratio_s = before["stages"].get("train: noisy classifier", {}).get("cpu_s")
        lines += ["", f"Ratio estimators of the rewired methods, one fit of {meta['estimator_steps']} steps each (batch and rate of "
                  "[training.ratio], the trained source denoiser), CPU seconds per 1000 steps:", "",
                  "| estimator | CPU s per 1000 steps |", "|---|---|"]
        for name, s in est.items():
            lines.append(f"| {name} | {1000 * s / meta['estimator_steps']:.1f} |")
        if ratio_s:
            lines.append(f"| noisy-classifier (the grid's ratio stage, before) | {1000 * ratio_s / meta['ratio_steps']:.1f} |")
        lines += ["", "(The estimator fits run after the grid, outside the run totals above.)"]
    same = all(r["cells"] == before["cells"] for r in runs[1:])
    lines += ["", f"Cell metrics identical across the runs (exact equality of every metric but sampling time): **{same}**."]
    if not same:
        for r in runs[1:]:
            for m, v in r["cells"].items():
                if v != before["cells"].get(m):
                    lines.append(f"- {r['variant']} / {m}: {v} vs {before['cells'].get(m)}")
    return "\n".join(lines) + "\n"


def strip_times(cells: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m: {k: v for k, v in c.items() if k != "sampling_s"} for m, c in cells.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git revision of the 'before' run (default main)")
    parser.add_argument("--out", default="reports/runs", help="folder of grid_profile.md / .json")
    parser.add_argument("--n-target", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimator-steps", type=int, default=300, help="steps of the timed estimator fits (0: none)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="after", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    base, head = git("rev-parse", "--short", args.base), git("rev-parse", "--short", "HEAD")
    load_before = uptime()
    with tempfile.TemporaryDirectory(prefix="grid-profile-") as tmp_name:
        tmp = Path(tmp_name)
        base_tree = tmp / "base"
        git("worktree", "add", "--detach", str(base_tree), base)
        try:
            runs = [run_variant("before", base_tree, 1, args, tmp), run_variant("after", ROOT, 1, args, tmp),
                    run_variant("after, 2 workers", ROOT, 2, args, tmp)]
        finally:
            git("worktree", "remove", "--force", str(base_tree))
    for r in runs:
        r["cells"] = strip_times(r["cells"])
    meta = {"base": base, "head": head, "seed": args.seed, "n_target": args.n_target, "estimator_steps": args.estimator_steps,
            "ratio_steps": slice_config(args.n_target, args.seed).training.ratio_steps, "load_before": load_before, "load_after": uptime()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid_profile.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=2) + "\n")
    text = markdown(runs, meta)
    (out / "grid_profile.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
