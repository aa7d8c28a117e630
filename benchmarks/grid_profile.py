"""Where the Markov benchmark grid spends its time, before and after, side by side in one run.

A slice of the paper grid (``markov/paper_grid.toml`` with one seed, a few n targets and no sweeps:
the grid's models, budgets, samples and metrics) is run three times, each in a fresh process with
one torch thread, one after the other:

- ``before``: the code of ``--base`` (a git revision, checked out into a temporary worktree) on
  the slice of *its own* ``markov/paper_grid.toml``, one process;
- ``after``: this tree on the same slice of today's ``paper_grid.toml`` restricted to the base's
  method list (the methods added since, e.g. ``gtl-paper``, are left out so both runs do the same
  cells), one process;
- ``after, 2 workers``: the same through ``run_benchmark(..., workers=2)`` (forked workers).

Each stage is timed exclusively (process CPU and wall seconds; a nested stage is not counted again
in its parent): training per component (a ratio fit is one stage, whatever it trains inside),
sampling and the density pass per method, metrics, component checks, the exact oracles. In the
``after`` process, after the timed grid, one cell of each method left out of the slice is probed
(its ratio fitted with ``--probe-steps`` steps per network, scaled to the grid's budget). The
after runs' cells (every metric but the sampling time) must be equal exactly; the before/after
metrics differ where the configuration changed (the learned ratio's estimator). From the stage
table the full grid's cost is projected (:func:`project`). The machine is shared: compare
ratios, not seconds; the load (uptime) is recorded before and after every run.

    OMP_NUM_THREADS=1 python benchmarks/grid_profile.py --base 6f4ff90 --n-targets 1000 100 20 --baseline-wall 4898 --out reports/runs
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
GRID = "markov/paper_grid.toml"
VARIANTS = ("before", "after", "after, 2 workers")
#: stages computed once per (preset, seed) in the grid; every other stage of the slice is per cell (seed, n target)
PER_SEED_STAGES = ("data", "train: source-denoiser", "train: autoregressive source", "train: ar2diff source", "train: planner",
                   "AR check")
#: the stage of the learned ratio's fit (every estimator's fit is one stage, whatever it trains inside)
RATIO_STAGE = "train: learned ratio"


# ------------------------------------------------------------------ stage timer
class StageTimer:
    """Exclusive CPU and wall seconds per stage name (a nested stage is subtracted from its parent)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
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

    def wrap(self, owner: Any, attr: str, name: str | Callable[..., str | None]) -> None:
        """Replace ``owner.attr`` by a timed call; ``name`` is a string or a function of the call's
        arguments (None: not a stage of its own, counted in the enclosing one)."""
        fn = getattr(owner, attr)

        def timed(*args, **kwargs):
            label = name(*args, **kwargs) if callable(name) else name
            if label is None:
                return fn(*args, **kwargs)
            with self.stage(label):
                return fn(*args, **kwargs)

        setattr(owner, attr, timed)

    def table(self) -> dict[str, dict[str, float]]:
        return {k: {"cpu_s": self.cpu[k], "wall_s": self.wall[k], "calls": self.calls[k]} for k in self.cpu}


def slice_config(tree: Path, grid: str, n_targets: list[int], seed: int, methods: list[str] | None = None):
    """The grid TOML ``grid`` (relative to ``tree``, or absolute) with seeds = [seed], the given n
    targets, no sweeps (and ``methods`` if given)."""
    from markov.config import load_config

    config = load_config(tree / grid, seeds=[seed], n_targets=n_targets)
    if methods is not None:
        config = replace(config, methods=tuple(methods))
    return replace(config, gamma_sweep=(), overlap_sweep=())


def instrument(timer: StageTimer) -> None:
    """Time the stages of the grid by wrapping the functions it calls (those of the base revision too)."""
    import markov.benchmark as bench
    import markov.components as comp
    from markov import metrics, oracle

    current = {"method": "?", "in_ratio": False}
    evaluate = bench.evaluate

    def timed_evaluate(cell, method, gamma, generator):
        current["method"] = method
        return evaluate(cell, method, gamma, generator)

    bench.evaluate = timed_evaluate
    timer.wrap(comp, "train", lambda *a, **k: None if current["in_ratio"] else f"train: {k.get('description', 'train')}")
    train_ratio = bench.train_ratio

    def timed_ratio(*args, **kwargs):
        current["in_ratio"] = True
        try:
            with timer.stage(RATIO_STAGE if current["method"] in ("gtl", "gtl-oracle-denoiser", "gtl-planner", "?")
                             else f"{RATIO_STAGE} ({current['method']})"):
                return train_ratio(*args, **kwargs)
        finally:
            current["in_ratio"] = False

    bench.train_ratio = timed_ratio
    timer.wrap(bench, "planner_sample", lambda *a, **k: f"sampling: {current['method']}")
    if hasattr(bench, "fixed_order_log_density"):  # the base's second pass; today the sampler returns the density
        timer.wrap(bench, "fixed_order_log_density", lambda *a, **k: f"density pass: {current['method']}")
    for name in ("transition_kl", "cross_entropy_gap", "mc_kl", "estimate_transition"):
        timer.wrap(metrics, name, "metrics")
    timer.wrap(bench, "component_errors", "component checks")
    timer.wrap(bench, "ar_likelihood_check", "AR check")
    timer.wrap(bench, "planner_law", "exact law")
    timer.wrap(bench, "make_data", "data")
    timer.wrap(oracle.PairOracle, "__call__", "oracle: exact ratio")
    timer.wrap(oracle.ChainOracle, "__call__", "oracle: exact denoiser")


def probe_methods(config, methods: list[str], steps: int, run_dir: Path) -> dict[str, dict[str, float]]:
    """CPU seconds of one cell of each of ``methods`` (first n target of ``config``), its ratio fitted
    with ``steps`` steps per network and scaled to the grid's ``ratio_steps``: {method: {"ratio_fit_s",
    "sampling_s", "other_s"}}. Runs in this process, after the timed grid."""
    import torch

    import markov.benchmark as bench
    from markov.components import ComponentStore

    out = {}
    short = replace(config, training=replace(config.training, ratio_steps=steps))
    for m in methods:
        timer = StageTimer()
        instrument(timer)  # wraps on top of the grid's wrappers: the probe's stages land in this timer and the grid's
        cell = bench.Cell(short, short.presets[0], short.seeds[0], short.n_targets[0], ComponentStore(run_dir / "models"), {})
        cell.source_net  # the grid's source denoiser, read from its store
        with timer.stage("other"):
            bench.evaluate(cell, m, short.gamma, torch.Generator().manual_seed(0))
        fit = sum(v for k, v in timer.cpu.items() if k.startswith(RATIO_STAGE))
        sampling = timer.cpu.get(f"sampling: {m}", 0.0)
        out[m] = {"ratio_fit_s": fit * config.training.ratio_steps / steps, "sampling_s": sampling,
                  "other_s": sum(timer.cpu.values()) - fit - sampling, "probe_steps": steps}
    return out


def process_and_children_cpu() -> float:
    """CPU seconds of this process and of its finished children (the forked workers)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def child(args: argparse.Namespace) -> None:
    """One measured run of the slice in this process; writes {stages, cells, total, ...} to ``args.result``."""
    import torch

    from markov.benchmark import run_benchmark

    torch.set_num_threads(1)
    tree = Path.cwd()
    config = slice_config(tree, args.grid, args.n_targets, args.seed, args.methods)
    timer = StageTimer()
    instrument(timer)
    run_dir = Path(args.run_dir)
    wall, cpu = time.perf_counter(), process_and_children_cpu()
    kwargs = {"workers": args.workers} if args.workers > 1 else {}  # the base's run_benchmark has no workers
    results = run_benchmark(config, run_dir, progress=False, **kwargs)
    total = {"wall_s": time.perf_counter() - wall, "cpu_s": process_and_children_cpu() - cpu}
    stages = timer.table()
    full = load_grid_shape(tree / args.grid)
    probes = {}
    if args.probe_steps and args.workers == 1 and args.methods is not None:
        left_out = [m for m in full["methods"] if m not in config.methods]
        probes = probe_methods(config, left_out, args.probe_steps, run_dir)
    cells = {f"{c['method']} n={c['n_target']}": c["metrics"] for c in results.cells}
    Path(args.result).write_text(json.dumps({
        "variant": args.variant, "total": total, "stages": stages, "cells": cells, "components": results.components,
        "methods": list(config.methods), "ratio_estimator": getattr(config, "ratio_estimator", "noisy classifier"),
        "ratio_steps": config.training.ratio_steps, "grid": full, "probes": probes}))


def load_grid_shape(path: Path) -> dict[str, Any]:
    """The full grid of the TOML ``path``: seeds, n targets, methods, sweeps, and whether the
    learned ratio needs the source denoiser (then every overlap value trains one)."""
    from markov.config import load_config

    config = load_config(path)
    needs = False
    with contextlib.suppress(ImportError, AttributeError):
        from gtl_verify.estimators import get_estimator

        needs = bool(get_estimator(config.ratio_estimator).needs_denoiser)
    return {"seeds": len(config.seeds), "n_targets": len(config.n_targets), "methods": list(config.methods),
            "gamma_sweep": len(config.gamma_sweep), "overlap_sweep": list(config.overlap_sweep),
            "ratio_needs_denoiser": needs}


# ------------------------------------------------------------------ projection
@dataclass(frozen=True)
class Projection:
    """CPU seconds of a full grid projected from a slice's stage table (one process, one thread)."""

    once_s: float  # setup outside every stage (imports, report)
    per_seed_s: float  # shared components of one seed
    per_cell_s: float  # one (seed, n target) cell of every method of the slice
    gamma_sweep_s: float  # the whole gamma sweep
    overlap_sweep_s: float  # the whole overlap sweep
    extra_methods_s: float  # the probed methods absent from the slice, every cell
    total_s: float


def eval_cost(stages: dict[str, dict[str, float]], method: str, cells: int) -> float:
    """CPU seconds of one evaluation of ``method`` (sampling and, before, the density pass) per cell."""
    return sum(stages.get(f"{k}: {method}", {}).get("cpu_s", 0.0) for k in ("sampling", "density pass")) / cells


def project(run: dict[str, Any], slice_cells: int, grid: dict[str, Any], probes: dict[str, dict[str, float]] | None = None
            ) -> Projection:
    """The full grid ``grid`` (:func:`load_grid_shape`) of a slice run of one seed and ``slice_cells``
    n targets: seeds x per-seed stages + seeds x n targets x per-cell stages (a cell's cost does not
    depend on n: fixed steps and samples) + the gamma sweep (one gtl evaluation per value and seed)
    + the overlap sweep (per seed and non-zero overlap: a ratio fit, a source denoiser when the
    estimator needs one, and one gtl-oracle-denoiser evaluation; overlap 0 is the grid's own cell)
    + ``probes``' methods in every cell. Time outside the stages is counted once."""
    stages = run["stages"]
    cpu = lambda k: stages.get(k, {}).get("cpu_s", 0.0)  # noqa: E731
    in_stages = sum(s["cpu_s"] for s in stages.values())
    per_seed = sum(cpu(k) for k in PER_SEED_STAGES)
    per_cell = (in_stages - per_seed) / slice_cells
    seeds, cells = grid["seeds"], grid["seeds"] * grid["n_targets"]
    gamma = seeds * grid["gamma_sweep"] * (eval_cost(stages, "gtl", slice_cells) + cpu("metrics") / (slice_cells * len(run["methods"])))
    fresh = sum(1 for o in grid["overlap_sweep"] if o != 0.0)
    ratio = cpu(RATIO_STAGE) / slice_cells
    denoiser = cpu("train: source-denoiser") if grid["ratio_needs_denoiser"] else 0.0
    god = eval_cost(stages, "gtl-oracle-denoiser", slice_cells)
    overlap = seeds * (fresh * (ratio + denoiser + cpu("data") + god) + (len(grid["overlap_sweep"]) - fresh) * god)
    extra = cells * sum(p["ratio_fit_s"] + p["sampling_s"] + p["other_s"] for m, p in (probes or {}).items()
                        if m in grid["methods"])
    once = run["total"]["cpu_s"] - in_stages
    total = once + seeds * per_seed + cells * per_cell + gamma + overlap + extra
    return Projection(once, per_seed, per_cell, gamma, overlap, extra, total)


def base_grid_today(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """Today's grid in the base's shape: the base's seeds and methods, today's sweeps and estimator."""
    return {**after["grid"], "seeds": before["grid"]["seeds"], "methods": before["methods"]}


# ------------------------------------------------------------------ report
def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "uptime unavailable"


def strip_times(cells: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every metric but the sampling time (a wall-clock reading)."""
    return {m: {k: v for k, v in c.items() if k != "sampling_s"} for m, c in cells.items()}


def differing(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two cell tables (missing on one side included)."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _stage_order(runs: list[dict[str, Any]]) -> list[str]:
    names = set().union(*(r["stages"] for r in runs[:2]))
    return sorted(names, key=lambda k: -max(r["stages"].get(k, {"cpu_s": 0.0})["cpu_s"] for r in runs[:2]))


def markdown(runs: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The report: totals, the stage table, the KL side by side, the equality check and the projection."""
    before, after = runs[0], runs[1]
    ns = ", ".join(str(n) for n in meta["n_targets"])
    dropped = [m for m in after["grid"]["methods"] if m not in after["methods"]]
    lines = ["# Where the Markov grid's time goes (paper-grid slice)", "",
             f"Slice: `{meta['grid']}` with seeds = [{meta['seed']}], n_targets = [{ns}], no sweeps. "
             f"Before: revision `{meta['base']}` on its own copy of that file (gtl's ratio: {before['ratio_estimator']}, "
             f"{before['ratio_steps']} steps). After: this tree `{meta['head']}` on today's paper grid (gtl's ratio: "
             f"{after['ratio_estimator']}, {after['ratio_steps']} steps per network) with the base's method list "
             f"({len(after['methods'])} methods"
             + (f"; left out: {', '.join(dropped)}, probed separately below" if dropped else "") + "). "
             "Each run is a fresh process on one torch thread (the two-worker run: two forked workers of one thread each, "
             "through `run_benchmark(..., workers=2)`); the runs one after the other in one invocation.", "",
             "Load (uptime) before and after each run: "
             + "; ".join(f"{r['variant']}: `{r['load_before']}` → `{r['load_after']}`" for r in runs)
             + ". The machine is shared: compare ratios, not seconds.",
             *([meta["note"]] if meta.get("note") else []), "",
             "| run | wall (s) | CPU (s, workers included) | wall: before / run |", "|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['variant']} | {r['total']['wall_s']:.0f} | {r['total']['cpu_s']:.0f} | "
                     f"{before['total']['wall_s'] / r['total']['wall_s']:.2f}x |")
    lines += ["", "Exclusive CPU seconds by stage (one-process runs; a nested stage is not counted in its parent; "
              "per seed: " + ", ".join(k for k in PER_SEED_STAGES) + "; every other stage is per cell):", "",
              "| stage | before: CPU s | share | after: CPU s | share | after / before |", "|---|---|---|---|---|---|"]
    tb, ta = before["total"]["cpu_s"], after["total"]["cpu_s"]
    for k in _stage_order(runs):
        b = before["stages"].get(k, {}).get("cpu_s", 0.0)
        a = after["stages"].get(k, {}).get("cpu_s", 0.0)
        ratio = f"{a / b:.2f}" if b > 0 else "-"
        lines.append(f"| {k} | {b:.1f} | {b / tb:.1%} | {a:.1f} | {a / ta:.1%} | {ratio} |")
    rest = lambda r: r["total"]["cpu_s"] - sum(s["cpu_s"] for s in r["stages"].values())  # noqa: E731
    lines.append(f"| other (setup, cell files, report) | {rest(before):.1f} | {rest(before) / tb:.1%} | {rest(after):.1f} | "
                 f"{rest(after) / ta:.1%} | - |")
    lines.append(f"| **total** | {tb:.1f} | 100% | {ta:.1f} | 100% | {ta / tb:.2f} |")
    if after.get("probes"):
        lines += ["", "Methods of today's grid left out of the slice, one cell each after the timed grid (ratio fitted with "
                  f"{next(iter(after['probes'].values()))['probe_steps']} steps per network and scaled to the grid's "
                  f"{after['ratio_steps']}; CPU seconds per cell):", "",
                  "| method | ratio fit (scaled) | sampling | rest | per cell |", "|---|---|---|---|---|"]
        for m, p in after["probes"].items():
            lines.append(f"| {m} | {p['ratio_fit_s']:.1f} | {p['sampling_s']:.1f} | {p['other_s']:.1f} | "
                         f"{p['ratio_fit_s'] + p['sampling_s'] + p['other_s']:.1f} |")
    lines += ["", "Transition KL per cell, before and after (the estimator of gtl's learned ratio changed, so the ratio-using "
              "methods differ by design; the others differ only where the code changed their draws):", "",
              "| cell | before | after |", "|---|---|---|"]
    for key in before["cells"]:
        b, a = before["cells"][key]["transition_kl"], after["cells"].get(key, {}).get("transition_kl")
        lines.append(f"| {key} | {b:.4f} | {'-' if a is None else f'{a:.4f}'} |")
    lines += _equality(runs[1:])
    lines += _projection(before, after, runs[2] if len(runs) > 2 else None, meta)
    return "\n".join(lines) + "\n"


def _equality(afters: list[dict[str, Any]]) -> list[str]:
    if len(afters) < 2:
        return []
    one, two = afters
    cells, comps = differing(one["cells"], two["cells"]), one.get("components") == two.get("components")
    lines = ["", f"After, one process against two workers: cell metrics (every metric but the sampling time) equal exactly: "
             f"**{not cells}** ({len(one['cells'])} cells); component checks equal: **{comps}**."]
    return lines + [f"- differs: {k}: {one['cells'].get(k)} vs {two['cells'].get(k)}" for k in cells]


def _projection(before: dict[str, Any], after: dict[str, Any], workers: dict[str, Any] | None, meta: dict[str, Any]) -> list[str]:
    k = len(meta["n_targets"])
    pb = project(before, k, before["grid"])
    pa = project(after, k, base_grid_today(after, before))
    pt = project(after, k, after["grid"], after.get("probes"))
    g = before["grid"]
    rows = [("before: the base's grid", before["grid"], pb), ("after: the same grid shape (base's seeds and methods)",
                                                               base_grid_today(after, before), pa),
            ("after: today's full paper_grid.toml", after["grid"], pt)]
    lines = ["", "## Projection to the full grid (a projection from the slice, not a measurement)", "",
             f"Full grid of the base: {g['seeds']} seeds x {g['n_targets']} n targets x {len(g['methods'])} methods, a gamma sweep "
             f"of {g['gamma_sweep']} values and an overlap sweep of {len(g['overlap_sweep'])}. The slice holds one seed's shared "
             f"components (1/{g['seeds']} of the grid's), {k} of its {g['seeds'] * g['n_targets']} cells, and no sweep. "
             "Projected CPU seconds, one process (on an idle core the wall time of one process is its CPU time):", "",
             "| grid | seeds x n x methods | once | per seed | per cell | gamma sweep | overlap sweep | left-out methods | total CPU s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, grid, p in rows:
        lines.append(f"| {name} | {grid['seeds']} x {grid['n_targets']} x {len(grid['methods'])} | {p.once_s:.0f} | "
                     f"{p.per_seed_s:.0f} | {p.per_cell_s:.0f} | {p.gamma_sweep_s:.0f} | {p.overlap_sweep_s:.0f} | "
                     f"{p.extra_methods_s:.0f} | {p.total_s:.0f} |")
    if meta.get("baseline_wall_s"):
        lines += ["", f"Calibration: the base's full grid was measured at {meta['baseline_wall_s']:,.0f} s wall (under that run's "
                  f"load); the projection gives {pb.total_s:,.0f} CPU s for it."]
    lines += ["", f"Projected before / after, same grid, one process: **{pb.total_s / pa.total_s:.2f}x** "
              f"(slice, measured: {before['total']['cpu_s'] / after['total']['cpu_s']:.2f}x in CPU, "
              f"{before['total']['wall_s'] / after['total']['wall_s']:.2f}x in wall)."]
    if workers is not None:
        eff = after["total"]["wall_s"] / workers["total"]["wall_s"]
        lines += [f"Two workers: on the slice, one process's wall / two workers' wall = {eff:.2f}; applied to the projection, "
                  f"before (one process) / after (two workers) is **{pb.total_s / pa.total_s * eff:.2f}x** (a projection: the "
                  f"full grid has {g['seeds']} times the slice's shared-component tasks and more cells to balance; with both cores "
                  f"idle the two-worker speed-up is at most 2x, which would give {2 * pb.total_s / pa.total_s:.2f}x)."]
    return lines


# ------------------------------------------------------------------ parent
def run_variant(variant: str, tree: Path, workers: int, args: argparse.Namespace, tmp: Path, methods: list[str] | None
                ) -> dict[str, Any]:
    result, run_dir = tmp / f"{variant.replace(' ', '').replace(',', '-')}.json", tmp / f"run-{variant.replace(' ', '')}"
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "grid_profile.py"), "--child", "--variant", variant, "--result", str(result),
           "--run-dir", str(run_dir), "--workers", str(workers), "--grid", args.grid, "--seed", str(args.seed), "--probe-steps", str(args.probe_steps),
           "--n-targets", *map(str, args.n_targets), *(["--methods", *methods] if methods else [])]
    load_before = uptime()
    print(f"[{variant}] running ({load_before})", flush=True)
    subprocess.run(cmd, env=env, cwd=tree, check=True)
    out = json.loads(result.read_text())
    out["load_before"], out["load_after"] = load_before, uptime()
    out["cells"] = strip_times(out["cells"])
    print(f"[{variant}] {out['total']['wall_s']:.0f} s wall, {out['total']['cpu_s']:.0f} s CPU", flush=True)
    return out


def write(out: Path, runs: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid_profile.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=2) + "\n")
    if len(runs) >= 2:
        (out / "grid_profile.md").write_text(markdown(runs, meta))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="6f4ff90", help="git revision of the 'before' run (default 6f4ff90)")
    parser.add_argument("--out", default="reports/runs", help="folder of grid_profile.md / .json")
    parser.add_argument("--grid", default=GRID, help=f"grid TOML, relative to each tree or absolute (default {GRID})")
    parser.add_argument("--n-targets", type=int, nargs="+", default=[1000, 100, 20])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-steps", type=int, default=200,
                        help="ratio steps per network of the probed left-out methods (0: no probe)")
    parser.add_argument("--baseline-wall", type=float, metavar="SECONDS",
                        help="measured wall seconds of the base's full grid, printed beside its projection")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="after", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--methods", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe_steps < 0:
        raise ValueError(f"--probe-steps must be >= 0, got {args.probe_steps}")
    if args.child:
        child(args)
        return 0
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()  # noqa: E731
    base, head = git("rev-parse", "--short", args.base), git("rev-parse", "--short", "HEAD")
    meta = {"base": base, "head": head, "grid": args.grid, "seed": args.seed, "n_targets": args.n_targets, "probe_steps": args.probe_steps,
            "baseline_wall_s": args.baseline_wall}
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="grid-profile-") as tmp_name:
        tmp = Path(tmp_name)
        base_tree = tmp / "base"
        git("worktree", "add", "--detach", str(base_tree), base)
        runs: list[dict[str, Any]] = []
        try:
            runs.append(run_variant("before", base_tree, 1, args, tmp, None))
            write(out, runs, meta)
            for variant, workers in (("after", 1), ("after, 2 workers", 2)):
                runs.append(run_variant(variant, ROOT, workers, args, tmp, runs[0]["methods"]))
                write(out, runs, meta)  # each finished run is kept
        finally:
            git("worktree", "remove", "--force", str(base_tree))
    print((out / "grid_profile.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
