"""Markov-chain data-scarcity benchmark: GTL against target-only training and fine-tuning.

For every preset, seed and number of target samples, the learned components are trained (source
denoiser once per seed) and every method draws ``samples`` sequences, scored against the exact
target chain: transition KL (the paper's metric), cross-entropy gap, Monte-Carlo KL from the exact
sampler density (fixed left-to-right reveal), and exact TV when (K+1)^L is enumerable.

Methods: source-only (unguided source denoiser), target-only (denoiser trained on the target
samples), fine-tuned (source denoiser fine-tuned on them), gtl (source denoiser + the ratio of the
configured estimator, ``ratio_estimator``), gtl-paper (the same with the paper's estimator, the
reference pipeline), gtl-oracle-ratio (exact ratio: isolates the ratio error), gtl-oracle-denoiser (exact source
denoiser + learned ratio: isolates the denoiser error), gtl-planner (learned planner schedule),
tcsm (frozen source denoiser x learned exp-correction, trained on the target with the MDLM loss),
ar2diff (denoiser initialised from an autoregressive source model, then fine-tuned).

Run folders hold one JSON per finished cell, so a re-run skips them and resumes.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from gtl_verify.estimators import get_estimator, ratio_diagnostics
from gtl_verify.estimators import on_device as ratio_on_device
from gtl_verify.exact_law import planner_law
from gtl_verify.learned import on_device
from gtl_verify.planners import LeftToRightPlanner
from gtl_verify.provenance import InvocationClock, provenance, write_results
from gtl_verify.results import MarkovResults
from gtl_verify.storage import RunLock, atomic_write_text, read_json_cache
from gtl_verify.methods import METHODS, MethodParts, method_parts
from gtl_verify.samplers import SamplerConfig, planner_sample
from gtl_verify.workers import parse_workers, run_tasks
from gtl_verify.schedules import LogLinearSchedule, Schedule

from . import metrics
from gtl_verify.store import ComponentStore

from .components import (
    as_denoiser,
    train_ar2diff,
    train_ar_source,
    train_denoiser,
    train_planner,
    train_ratio,
    train_tcsm,
)
from .config import MarkovConfig, load_config, markov_methods
from .data import make_data
from .oracle import PairOracle
from .presets import PRESETS, ChainPair, pair_identity, resolve_pair

EXACT_TV_MAX_STATES = 20_000
#: masking levels and held-out rows per domain of the ratio's single-site check in the component rows
COMPONENT_TIMES = (0.2, 0.5, 0.8)
COMPONENT_ROWS = 100


class Cell:
    """The components of one (preset, seed, n_target), trained on demand."""

    def __init__(self, config: MarkovConfig, preset: str, seed: int, n_target: int, store: ComponentStore, cache: dict, overlap: float = 0.0,
                 device: torch.device = torch.device("cpu")):
        self.config, self.preset, self.seed, self.n_target, self.device = config, preset, seed, n_target, device
        self.pair = resolve_pair(preset, seed=seed, overlap=overlap)
        self.k = self.pair.source.vocab_size
        self.oracle = PairOracle(self.pair)
        key = (preset, seed, overlap)
        if key not in cache:
            cache[key] = {"data": make_data(self.pair, n_source=config.n_source, n_target=config.max_n_target,
                                            length=config.length, seed=seed)}
        self.shared, self.store = cache[key], store
        self.data = self.shared["data"]
        self.target = self.data.target_train[:n_target]
        self.key = {"preset": pair_identity(preset), "seed": seed, "overlap": overlap, "vocab_size": self.k, "length": config.length, "n_source": config.n_source}
        self.schedule: Schedule = LogLinearSchedule()  # the masking schedule of every component and sampler
        self._memo: dict[str, Any] = {}

    def _once(self, name, fn):
        if name not in self._memo:
            self._memo[name] = fn()
        return self._memo[name]

    @property
    def source_net(self):
        if "source" not in self.shared:
            b = self.config.training
            self.shared["source"] = train_denoiser(self.store, self.data.source_train, self.config.models, b, seed=self.seed,
                                                   key=self.key, steps=b.source_steps, lr=b.lr, label="source-denoiser", schedule=self.schedule)
        return self.shared["source"]

    @property
    def ar_net(self):
        if "ar" not in self.shared:
            self.shared["ar"] = train_ar_source(self.store, self.data.source_train, self.config.models, self.config.training,
                                                seed=self.seed, key=self.key)
        return self.shared["ar"]

    def denoiser(self, which: str):
        b, m = self.config.training, self.config.models
        if which == "source":
            return as_denoiser(self.source_net, self.k)
        if which == "target-only":
            return self._once(which, lambda: as_denoiser(train_denoiser(
                self.store, self.target, m, b, seed=self.seed, key={**self.key, "n_target": self.n_target},
                steps=b.target_steps, lr=b.lr, label="target-only-denoiser", schedule=self.schedule), self.k))
        if which == "fine-tuned":
            return self._once(which, lambda: as_denoiser(train_denoiser(
                self.store, self.target, m, b, seed=self.seed, key={**self.key, "n_target": self.n_target, "init": "source"},
                steps=b.finetune_steps, lr=b.finetune_lr, init=self.source_net, label="fine-tuned-denoiser", schedule=self.schedule), self.k))
        if which == "tcsm":
            return self._once(which, lambda: as_denoiser(train_tcsm(
                self.store, self.source_net, self.target, m, b, seed=self.seed, key=self.key, schedule=self.schedule), self.k))
        if which == "ar2diff":
            return self._once(which, lambda: as_denoiser(train_ar2diff(
                self.store, self.ar_net, self.data.source_train, self.target, m, b, seed=self.seed, key=self.key,
                schedule=self.schedule), self.k))
        if which == "oracle":
            return self.oracle.source
        raise ValueError(f"unknown denoiser {which!r}")

    def ratio(self, which: str = "learned"):
        """The ratio model of the configured estimator (``learned``) or of the paper's estimator
        (``paper``), fitted on demand with the learned source denoiser (the one GTL samples with) where
        the estimator needs one; for ``oracle``, the exact ratio."""
        if which == "oracle":
            return self.oracle
        if which not in ("learned", "paper"):
            raise ValueError(f"ratio must be one of ['learned', 'paper', 'oracle'], got {which!r}")
        name = self.config.ratio_estimator if which == "learned" else "paper"
        b = self.config.training
        denoiser_key = {"steps": b.source_steps, "lr": b.lr, "batch_size": b.batch_size, "weight_decay": b.weight_decay,
                        "sizes": vars(self.config.models)}
        return self._once(f"ratio {name}", lambda: train_ratio(
            self.store, self.data.source_train, self.target, name, self.config.models, b, seed=self.seed, key=self.key,
            schedule=self.schedule, denoiser=self.denoiser("source") if get_estimator(name).needs_denoiser else None,
            denoiser_key=denoiser_key))

    def planner(self):
        return self._once("planner", lambda: train_planner(self.store, self.source_net, self.data.source_train, self.config.models,
                                                           self.config.training, seed=self.seed, key=self.key,
                                                           schedule=self.schedule))

    def method_parts(self, method: str) -> MethodParts:
        """(denoiser, ratio, planner or None, rule) of a method of the registry."""
        return method_parts(method, self, self.config.candidates)


def evaluate(cell: Cell, method: str, gamma: float, generator: torch.Generator) -> dict[str, Any]:
    """Sample ``cell.config.samples`` sequences with ``method`` and compute every metric."""
    cfg = cell.config
    return score_parts(cell.method_parts(method), cell.pair, cell.schedule, samples=cfg.samples, length=cfg.length,
                       gamma=gamma, planner_temperature=cfg.planner_temperature, generator=generator, device=cell.device)


def score_parts(parts: MethodParts, pair: ChainPair, schedule: Schedule, *, samples: int, length: int, gamma: float,
                planner_temperature: float, generator: torch.Generator,
                device: torch.device = torch.device("cpu")) -> dict[str, Any]:
    """Draw ``samples`` sequences of ``length`` with ``parts`` (left to right at temperature 0 when it
    has no planner) and score them against ``pair.target``: transition KL, cross-entropy gap,
    Monte-Carlo KL from the exact sampler density (fixed order) and exact TV when (K+1)^L is at most
    EXACT_TV_MAX_STATES. Returns {"metrics": {...}, "estimated_transition": [K][K]}."""
    denoiser, ratio, planner, rule = parts.denoiser, parts.ratio, parts.planner, parts.rule
    if ratio is None:
        gamma = 0.0
    fixed_order = planner is None
    sampler_cfg = SamplerConfig(samples, length, rule=rule, gamma=gamma,
                                temperature=0.0 if fixed_order else planner_temperature)
    denoiser, planner = (on_device(c, device) for c in (denoiser, planner))  # trained on the CPU
    ratio = ratio_on_device(ratio, device)  # a fitted model: its parts copied there; an oracle as it is
    generator = torch.Generator(device).manual_seed(generator.initial_seed())  # the sampler draws on its device
    res = planner_sample(denoiser, ratio, planner or LeftToRightPlanner(), schedule, sampler_cfg, generator)
    x, target = res.tokens.cpu(), pair.target
    k = target.vocab_size
    out: dict[str, Any] = {
        "transition_kl": metrics.transition_kl(target, x),
        "cross_entropy_gap": metrics.cross_entropy_gap(target, x),
        "exact_kl": None,
        "exact_tv": None,
        "sampling_s": res.wall_time_s,
        "ratio_passes_per_sequence": res.ratio_passes / samples,  # sequences scored by a sequence-level ratio
        "single_site_passes_per_sequence": res.single_site_passes / samples,  # passes of a single-site ratio model
    }
    if fixed_order:
        log_s = res.token_log_prob.cpu()  # the sampler's own log-density of x: fixed_order_log_density's value, bit for bit
        out["exact_kl"] = metrics.mc_kl(log_s, target.log_prob(x))[0]
        if (k + 1) ** length <= EXACT_TV_MAX_STATES:
            law = planner_law(denoiser, ratio, LeftToRightPlanner(), schedule, replace(sampler_cfg, num_samples=1))
            out["exact_tv"] = law.tv(target.table(length))
    return {"metrics": out, "estimated_transition": metrics.estimate_transition(x, metrics.SMOOTHING, vocab_size=k).tolist()}


def component_errors(cell: Cell, generator: torch.Generator) -> list[dict[str, Any]]:
    """Learned components against their exact oracles on held-out noisy sequences: the learned
    ratio's mean |log r - exact| (level included) per domain and its single-site guidance TV
    (:func:`gtl_verify.estimators.ratio_diagnostics` at COMPONENT_TIMES on the first
    COMPONENT_ROWS held-out rows of each domain), and the source denoiser's TV to the exact p."""
    rows = []
    base = {"preset": cell.preset, "n_target": cell.n_target, "seed": cell.seed}
    ratio = cell.ratio()
    for name, x in (("source", cell.data.source_heldout), ("target", cell.data.target_heldout)):
        t = torch.rand(len(x), generator=generator, dtype=torch.float64)
        z = torch.where(torch.rand(x.shape, generator=generator, dtype=torch.float64) < cell.schedule.alpha(t)[:, None], x, cell.k)
        err = (ratio(z).double() - cell.oracle(z)).abs()
        rows.append({**base, "component": "ratio", "metric": f"mean |log r - exact| on noisy {name}", "value": float(err.mean())})
        if name == "source":
            masked = z == cell.k
            lp = cell.denoiser("source")(z).double().exp()
            ex = cell.oracle.source(z).exp()
            tv = 0.5 * (lp - ex).abs().sum(-1)[masked]
            rows.append({**base, "component": "source denoiser", "metric": "mean TV to exact p(x^i|z), masked i", "value": float(tv.mean())})
    heldout = {"source": cell.data.source_heldout[:COMPONENT_ROWS], "target": cell.data.target_heldout[:COMPONENT_ROWS]}
    diag = ratio_diagnostics(ratio, cell.oracle, heldout, cell.schedule, generator, COMPONENT_TIMES)
    times = ", ".join(f"{t:g}" for t in COMPONENT_TIMES)
    rows.append({**base, "component": "ratio", "metric": f"single-site guidance TV to exact q(x^i|z), masked i, t in {{{times}}}",
                 "value": diag.single_site_tv})
    return rows


def ar_likelihood_check(cell: Cell) -> list[dict[str, Any]]:
    """The autoregressive source model's held-out NLL per token against the exact source entropy."""
    from gtl_verify.baselines import ar_log_likelihood

    x = cell.data.source_heldout
    with torch.no_grad():
        nll = float(-ar_log_likelihood(cell.ar_net, x, cell.k).mean()) / x.shape[1]
    exact = float(-cell.pair.source.log_prob(x).mean()) / x.shape[1]
    base = {"preset": cell.preset, "n_target": 0, "seed": cell.seed, "component": "autoregressive source"}  # no target data
    return [{**base, "metric": "held-out NLL per token (nats)", "value": nll},
            {**base, "metric": "excess over exact source NLL per token (nats)", "value": nll - exact}]


def cell_path(run_dir: Path, *parts: Any) -> Path:
    """The file of one cell of a run folder: ``cells/<part>__<part>....json``."""
    return run_dir / "cells" / ("__".join(str(p) for p in parts).replace("/", "-") + ".json")


def check_run_dir(run_dir: Path, cell_hash: str) -> None:
    """A run folder holds cells of one cell-defining configuration only (its ``cell_hash``, recorded
    in ``cell-config.json`` by the first run); ValueError naming the folder otherwise, and naming the
    marker when it is missing or damaged while the folder holds cells (they cannot be tied to a
    configuration, so none is reused)."""
    marker = run_dir / "cell-config.json"
    stored = read_json_cache(marker, shape=lambda v: isinstance(v, dict) and isinstance(v.get("cell_hash"), str))
    cells = run_dir / "cells"
    if stored is None and cells.is_dir() and any(cells.iterdir()):
        raise ValueError(f"{marker} is missing or damaged, so the cells in {cells} cannot be tied to a configuration; "
                         f"choose another --out, or delete {cells} to recompute them")
    if stored is not None:
        if stored.get("cell_hash") != cell_hash:
            raise ValueError(f"run folder {run_dir} holds cells of another configuration (cell hash {stored.get('cell_hash')}, "
                             f"this config {cell_hash}); choose another --out")
    else:
        atomic_write_text(marker, json.dumps({"cell_hash": cell_hash}))


GRID_FIELDS = {"presets": PRESETS, "methods": markov_methods, "n_targets": None, "seeds": None, "gamma_sweep": None, "overlap_sweep": None}


def _grid_order(name: str, order: tuple | None):
    """Sort key of a grid list: registry/preset order (chain files last), n_targets descending, else ascending."""
    if order:
        return lambda v: order.index(v) if v in order else len(order)
    return (lambda v: -v) if name == "n_targets" else None


def folder_grid(run_dir: Path, config: MarkovConfig) -> MarkovConfig:
    """``config`` with every grid list widened to the union of the grids run into ``run_dir``
    (recorded in ``grid.json``), so the summary covers every cell the folder holds."""
    path = run_dir / "grid.json"
    stored = read_json_cache(path) or {}
    union: dict[str, tuple] = {}
    for name, order in GRID_FIELDS.items():
        values = list(getattr(config, name))
        extra = [v for v in stored.get(name, []) if v not in values]
        if extra:
            values += extra
            values.sort(key=_grid_order(name, order() if callable(order) else order))
        union[name] = tuple(values)
    atomic_write_text(path, json.dumps(union))
    return replace(config, **union)


Fetch = Callable[..., Any]  # fetch(path, compute, shape=None)

#: what each kind of cell file must hold (anything else is a damaged cache: named, removed, recomputed)
GRID_CELL = lambda v: isinstance(v, dict) and isinstance(v.get("metrics"), dict)  # noqa: E731
SWEEP_CELL = lambda v: isinstance(v, dict) and isinstance(v.get("transition_kl"), (int, float))  # noqa: E731
CHECK_ROWS = lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v)  # noqa: E731


def compute_fetch(run_dir: Path | None) -> Fetch:
    """Cached computation: read the cell file when it holds a value, else compute and store it."""
    def fetch(path, compute, shape=None):
        if run_dir is None:
            return compute()
        value = read_json_cache(path, shape)
        if value is None:
            value = compute()
            atomic_write_text(path, json.dumps(value))
        return value

    return fetch


def _stored_fetch(path: Path | None, compute: Callable[[], Any], shape: Callable[[Any], bool] | None = None) -> Any:
    """Read-only: the cell file's value, or None for a cell this folder has not finished."""
    return read_json_cache(path, shape)


def _grid_rows(config: MarkovConfig, run_dir: Path | None, cell_of, fetch: Fetch, progress: bool) -> dict[str, list]:
    """The cell rows of the grid and the component checks; a cell ``fetch`` gives None for is left out."""
    out: dict[str, list] = {"cells": [], "components": []}
    path = (lambda *parts: cell_path(run_dir, *parts)) if run_dir is not None else (lambda *parts: None)
    jobs = [(p, s, n, m) for p in config.presets for s in config.seeds for n in config.n_targets for m in config.methods]
    bar = tqdm(jobs, desc="markov grid", disable=not progress)
    for p, s, n, m in bar:
        bar.set_postfix_str(f"{p} seed={s} n={n} {m}")
        gen_seed = s * 1_000_003 + n * 101 + markov_methods().index(m)
        value = fetch(path(p, s, n, m), lambda: evaluate(cell_of(p, s, n), m, config.gamma, torch.Generator().manual_seed(gen_seed)),
                      GRID_CELL)
        if value is not None:
            out["cells"].append({"preset": p, "n_target": n, "method": m, "seed": s, **value})
    if any(METHODS[m].ratio == "learned" for m in config.methods):
        for p in config.presets:
            for s in config.seeds:
                for n in config.n_targets:
                    out["components"].extend(fetch(path(p, s, n, "components"),
                                                   lambda: component_errors(cell_of(p, s, n), torch.Generator().manual_seed(s)),
                                                   CHECK_ROWS) or [])
    if "ar2diff" in config.methods:
        for p in config.presets:
            for s in config.seeds:
                out["components"].extend(fetch(path(p, s, "ar-check"), lambda: ar_likelihood_check(cell_of(p, s, config.n_targets[0])),
                                               CHECK_ROWS) or [])
    return out


def _sweep_rows(config: MarkovConfig, run_dir: Path | None, cell_of, fetch: Fetch, progress: bool) -> dict[str, list]:
    """The gamma sweep (gtl at ``gamma_sweep_n_target``) and the overlap sweep (exact source denoiser
    + learned ratio: only the ratio is retrained per overlap value)."""
    out: dict[str, list] = {"gamma_sweep": [], "overlap_sweep": []}
    path = (lambda *parts: cell_path(run_dir, *parts)) if run_dir is not None else (lambda *parts: None)
    sweep = [(p, s, g) for p in config.presets for s in config.seeds for g in config.gamma_sweep]
    for p, s, g in tqdm(sweep, desc="gamma sweep", disable=not progress or not sweep):
        n = config.gamma_sweep_n_target
        value = fetch(path(p, s, n, "gamma", g), lambda: evaluate(cell_of(p, s, n), "gtl", g, torch.Generator().manual_seed(s + 17))["metrics"],
                      SWEEP_CELL)
        if value is not None:
            out["gamma_sweep"].append({"preset": p, "n_target": n, "gamma": g, "seed": s, "transition_kl": value["transition_kl"]})
    overlap = [(o, s, "gtl-oracle-denoiser") for o in config.overlap_sweep for s in config.seeds]
    for o, s, m in tqdm(overlap, desc="overlap sweep", disable=not progress or not overlap):
        p, n = config.overlap_preset, config.overlap_n_target
        value = fetch(path(p, s, n, "overlap", o, m),
                      lambda: evaluate(cell_of(p, s, n, o), m, config.gamma, torch.Generator().manual_seed(s + 29))["metrics"],
                      SWEEP_CELL)
        if value is not None:
            out["overlap_sweep"].append({"preset": p, "overlap": o, "method": m, "seed": s, "transition_kl": value["transition_kl"]})
    return out


def _preset_tables(config: MarkovConfig) -> dict[str, Any]:
    out = {}
    for p in config.presets:
        pair = resolve_pair(p, seed=config.seeds[0])
        out[p] = {"name": pair.name, "vocab_size": pair.source.vocab_size, "source_transition": pair.source.transition.tolist(),
                  "target_transition": pair.target.transition.tolist()}
    return out


def _prefill(config: MarkovConfig, run_dir: Path, workers: int) -> None:
    """Compute every cell of the grid into ``run_dir`` on ``workers`` forked processes
    (:func:`gtl_verify.workers.run_tasks`), in two phases: the per-seed shared components (source
    denoiser; autoregressive source and its diffusion continuation) side by side, then per (preset,
    seed, n target) the methods with a learned ratio and the other methods as separate tasks, and the
    sweeps. Each task is the serial code on a sub-grid (a cell depends on its own seeds and the
    store's keys only), so the serial pass that follows reads the same values back."""
    store = ComponentStore(run_dir / "models")

    def shared(p, s, which):
        cell = Cell(config, p, s, config.n_targets[0], store, {})
        if which == "source":
            cell.source_net
        else:
            cell.denoiser("ar2diff")  # the autoregressive source, its diffusion continuation and one fine-tune

    needs_ar = "ar2diff" in config.methods
    run_tasks([lambda p=p, s=s, w=w: shared(p, s, w) for p in config.presets for s in config.seeds
               for w in ("source",) + (("ar",) if needs_ar else ())], workers)
    fetch = compute_fetch(run_dir)

    def part(sub: MarkovConfig, grid: bool) -> None:
        cache: dict = {}
        cells: dict = {}

        def cell_of(p, s, n, overlap=0.0):
            if (p, s, n, overlap) not in cells:
                cells[(p, s, n, overlap)] = Cell(config, p, s, n, store, cache, overlap)
            return cells[(p, s, n, overlap)]

        if grid:
            _grid_rows(sub, run_dir, cell_of, fetch, False)
        _sweep_rows(sub, run_dir, cell_of, fetch, False)

    learned = tuple(m for m in config.methods if METHODS[m].ratio not in (None, "oracle"))
    others = tuple(m for m in config.methods if m not in learned)
    tasks = []  # (sub-grid, whether its grid cells run); the ratio-training tasks first (the longest)
    for group in (learned, others):
        for p in config.presets:
            for s in config.seeds:
                for n in config.n_targets:
                    if group:
                        sweep = config.gamma_sweep if group is learned and n == config.gamma_sweep_n_target else ()
                        tasks.append((replace(config, presets=(p,), seeds=(s,), n_targets=(n,), methods=group,
                                              gamma_sweep=sweep, overlap_sweep=()), True))
    if config.gamma_sweep and not (learned and config.gamma_sweep_n_target in config.n_targets):
        tasks += [(replace(config, presets=(p,), seeds=(s,), overlap_sweep=()), False) for p in config.presets for s in config.seeds]
    tasks += [(replace(config, seeds=(s,), gamma_sweep=(), overlap_sweep=(o,)), False) for s in config.seeds for o in config.overlap_sweep]
    run_tasks([lambda sub=sub, grid=grid: part(sub, grid) for sub, grid in tasks], workers)


def run_benchmark(config: MarkovConfig, run_dir: Path | None, progress: bool = True,
                  device: torch.device = torch.device("cpu"), workers: int = 1) -> MarkovResults:
    """Run the whole grid; every finished cell is stored under ``run_dir`` and reused on re-runs.
    With a run folder, the results cover every finished cell of the folder (the union of the grids
    run into it), not only this call's grid. ``workers`` > 1 (CPU, with a run folder) first computes
    the cells on that many forked processes of one torch thread each (:func:`_prefill`; the same
    values as one process on one thread)."""
    if run_dir is not None:
        check_run_dir(run_dir, config.cell_hash())
    store = ComponentStore(None if run_dir is None else run_dir / "models")
    cache: dict = {}
    cells: dict[tuple, Cell] = {}

    def cell_of(p, s, n, overlap=0.0):
        key = (p, s, n, overlap)
        if key not in cells:
            cells[key] = Cell(config, p, s, n, store, cache, overlap, device)
        return cells[key]

    if workers > 1 and run_dir is not None and device.type == "cpu":
        _prefill(config, run_dir, workers)
    fetch = compute_fetch(run_dir)
    rows = {**_grid_rows(config, run_dir, cell_of, fetch, progress), **_sweep_rows(config, run_dir, cell_of, fetch, progress)}
    summary = config if run_dir is None else folder_grid(run_dir, config)
    if summary != config:
        rows = {**_grid_rows(summary, run_dir, cell_of, _stored_fetch, False), **_sweep_rows(summary, run_dir, cell_of, _stored_fetch, False)}
    return MarkovResults(config=summary.to_dict(), presets=_preset_tables(summary), methods=list(summary.methods),
                         cells=rows["cells"], gamma_sweep=rows["gamma_sweep"], overlap_sweep=rows["overlap_sweep"],
                         components=rows["components"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML file with MarkovConfig keys and per-component tables ([models.denoiser], [training.ratio] ...)")
    parser.add_argument("--preset", nargs="+", choices=PRESETS, help="presets to run (default: paper)")
    parser.add_argument("--chains", nargs="+", metavar="FILE",
                        help="your own source/target chain pairs from .toml or .npz files (markov/chain_file.py), run as presets")
    parser.add_argument("--n-target", nargs="+", type=int, help="numbers of target samples (default 1000 100 20)")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default 0)")
    parser.add_argument("--methods", nargs="+", choices=markov_methods(), help="methods (default: all but gtl-paper, which the committed grid configs run)")
    parser.add_argument("--samples", type=int, help="generated sequences per cell (default 500)")
    parser.add_argument("--out", help="run folder (default runs/markov-<config hash>); re-running resumes it")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--workers", default="auto", metavar="N|auto",
                        help="forked CPU processes computing independent cells, one torch thread each: a positive "
                             "integer or 'auto' (default: the usable CPU cores; 1 runs in this process with torch's "
                             "threads). Workers give the same numbers as one process on one thread")


def run_from_args(args: argparse.Namespace, device: torch.device = torch.device("cpu")) -> int:
    from reports.builder import build_report

    workers = parse_workers(args.workers)
    presets = (args.preset or []) + (args.chains or []) or None  # chain files run as presets
    config = load_config(args.config, presets=presets, n_targets=args.n_target, seeds=args.seeds,
                         methods=args.methods, samples=args.samples)
    run_dir = Path(args.out or Path("runs") / f"markov-{config.hash()}")
    with RunLock(run_dir), InvocationClock(run_dir) as clock:
        results = run_benchmark(config, run_dir, progress=not args.quiet, device=device, workers=workers)
        meta = provenance(results.config, list(results.config["seeds"]), clock.elapsed(), clock.parts())
        path = write_results(run_dir / "results.json", "markov-benchmark", results, meta)
    _print_summary(results)
    report = build_report(path, run_dir)
    print(f"results: {path}\nreport: {report}")
    return 0


def _print_summary(results: MarkovResults) -> None:
    from collections import defaultdict

    table: dict[tuple, list[float]] = defaultdict(list)
    for c in results.cells:
        table[(c["preset"], c["method"], c["n_target"])].append(c["metrics"]["transition_kl"])
    ns = sorted({c["n_target"] for c in results.cells}, reverse=True)
    for preset in results.presets:
        print(f"\n{results.presets[preset].get('name', preset)}: row-averaged transition KL (mean over seeds)")
        print(f"{'method':22s}" + "".join(f"{'n=' + str(n):>10s}" for n in ns))
        for m in results.methods:
            vals = [table.get((preset, m, n)) for n in ns]
            print(f"{m:22s}" + "".join(f"{(sum(v) / len(v)):10.4f}" if v else f"{'-':>10s}" for v in vals))
