"""``gtl markov ratios``: ratio estimators held against the exact ratio, by n target, masking level and steps.

For every preset, seed, estimator (:mod:`gtl_verify.estimators`), n target and step count of the
grid (a TOML file, :class:`RatiosConfig`), the estimator is fitted on the source training set and the
first n target sequences (:func:`markov.data.make_data`) with the frozen source denoiser ``denoiser``:
``exact`` (the source chain's forward-backward oracle: the ratio's error alone) or ``learned`` (the
benchmark's source denoiser, :func:`markov.components.train_denoiser`). A step count is a separate fit
from scratch (the simplest honest curve: each point is what that budget gives). Each fitted model is
measured

- by :func:`gtl_verify.estimators.ratio_diagnostics` on ``heldout`` held-out sequences of each
  domain masked at every level t of ``times``: the single-site guidance TV to the exact
  q(x^i = v | z) (headline; overall, per domain and per level) and the level-free log-ratio RMSE (nats);
- by the GTL it yields: :func:`markov.benchmark.score_parts` (the evaluation of ``gtl markov``),
  left to right, GTL over every candidate, gamma 1, ``samples`` sequences: row-averaged transition KL
  and the other benchmark metrics.

One ``exact-ratio`` reference cell per (preset, seed) (the exact ratio with the same denoiser) gives
the sampler's floor. Every finished cell is one JSON file under ``<out>/cells/`` written atomically,
so a re-run resumes and a damaged file is named and recomputed; ``results.json`` (kind ``ratios``)
and the Markdown report (:mod:`reports.render_ratios`) are written at the end.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from gtl_verify.config import ConfigError, build, check_choice, check_sequence, read_toml
from gtl_verify.estimators import ESTIMATORS, EstimatorBudget, get_estimator, ratio_diagnostics
from gtl_verify.methods import MethodParts
from gtl_verify.provenance import InvocationClock, provenance, write_results
from gtl_verify.results import RatiosResults
from gtl_verify.rules import GTL
from gtl_verify.schedules import LogLinearSchedule
from gtl_verify.storage import RunLock
from gtl_verify.store import ComponentStore
from gtl_verify.training import config_hash
from gtl_verify.validation import check_int_range, check_real_range, check_sample_memory

from .benchmark import cell_path, check_run_dir, compute_fetch, score_parts
from .components import as_denoiser, train_denoiser
from .config import ModelSizes, TrainingBudget
from .data import MarkovData, make_data
from .oracle import PairOracle
from .presets import PRESETS, pair_identity, resolve_pair

EXACT = "exact-ratio"
DENOISERS = ("exact", "learned")
SCHEDULE = LogLinearSchedule()


@dataclass(frozen=True)
class RatiosConfig:
    """The grid and settings of ``gtl markov ratios`` (all recorded in the results).

    Grid: ``presets``, ``estimators`` (registry names), ``n_targets`` (target training sequences),
    ``seeds``, ``steps`` (AdamW steps of each network an estimator trains; one fit per value): the
    largest at every n target, the others (the steps curve) at ``steps_n_targets`` only (None: at
    every n target).
    Fit: ``batch_size``, ``lr``, ``weight_decay`` and the ratio networks' ``hidden``, ``blocks``,
    ``heads`` (:class:`gtl_verify.estimators.EstimatorBudget`); ``denoiser`` ``exact`` or ``learned``
    (then trained for ``denoiser_steps`` with the benchmark's other defaults); ``n_source`` source
    training sequences of ``length``. Measurement: ``times`` masking levels of the diagnostics on
    ``heldout`` sequences per domain; ``samples`` GTL sequences for the transition KL."""

    presets: tuple[str, ...] = ("paper",)
    estimators: tuple[str, ...] = ESTIMATORS
    n_targets: tuple[int, ...] = (1000, 100, 20)
    seeds: tuple[int, ...] = (0,)
    steps: tuple[int, ...] = (600,)
    steps_n_targets: tuple[int, ...] | None = None
    times: tuple[float, ...] = (0.2, 0.5, 0.8)
    denoiser: str = "exact"
    denoiser_steps: int = 1500
    n_source: int = 10_000
    length: int = 20
    samples: int = 500
    heldout: int = 100
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.01
    hidden: int = 32
    blocks: int = 2
    heads: int = 4

    def __post_init__(self) -> None:
        for p in check_sequence("presets", self.presets):
            if p not in PRESETS:
                raise ConfigError(f"presets must be chosen from {list(PRESETS)}, got {p!r}")
        for e in check_sequence("estimators", self.estimators):
            if e not in ESTIMATORS:
                raise ConfigError(f"estimators must be chosen from {list(ESTIMATORS)}, got {e!r}")
        for n in check_sequence("n_targets", self.n_targets):
            check_int_range("n_targets", n, 1)
        for s in check_sequence("seeds", self.seeds):
            check_int_range("seeds", s, 0)
        for s in check_sequence("steps", self.steps):
            check_int_range("steps", s, 1)
        for n in check_sequence("steps_n_targets", self.steps_n_targets or (), allow_empty=True):
            if n not in self.n_targets:
                raise ConfigError(f"steps_n_targets must be chosen from n_targets {list(self.n_targets)}, got {n!r}")
        for t in check_sequence("times", self.times):
            check_real_range("times", t, 0.0, 1.0, open_low=True)  # t = 0 masks nothing: no masked position to score
        check_choice("denoiser", self.denoiser, DENOISERS)
        check_int_range("denoiser_steps", self.denoiser_steps, 1)
        check_int_range("n_source", self.n_source, 1)
        check_int_range("length", self.length, 2)
        check_int_range("samples", self.samples, 2)
        check_int_range("heldout", self.heldout, 1)
        for name in ("presets", "estimators", "n_targets", "seeds", "steps", "times"):
            values = list(getattr(self, name))
            if len(set(values)) != len(values):
                raise ConfigError(f"{name} must not repeat a value, got {values}")
        self.budget(self.steps[0])  # batch size, rate, weight decay and sizes checked by the budget
        vocab = max(resolve_pair(p, seed=0).vocab_size for p in self.presets)
        check_sample_memory("samples", self.samples, self.length, vocab)
        check_sample_memory("n_targets (with n_source)", max(self.n_targets) + self.n_source, self.length, 0, copies=1)

    def budget(self, steps: int) -> EstimatorBudget:
        """The estimators' budget of a fit of ``steps`` steps."""
        return EstimatorBudget(steps=steps, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                               hidden=self.hidden, blocks=self.blocks, heads=self.heads)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self) -> str:
        return config_hash(self.to_dict())[:12]

    def cell_hash(self) -> str:
        """Hash of the settings that determine a cell's value (not the grid's extent)."""
        grid = {"presets", "estimators", "n_targets", "seeds", "steps", "steps_n_targets"}
        return config_hash({k: v for k, v in self.to_dict().items() if k not in grid})[:12]


def load_ratios_config(path: str | Path | None = None) -> RatiosConfig:
    """Defaults updated by the TOML file ``path`` (top-level keys of :class:`RatiosConfig`); every
    value checked before any work (ConfigError naming the key and value)."""
    return RatiosConfig() if path is None else build(RatiosConfig(), read_toml(path))


def target_subset(data: MarkovData, n: int) -> torch.Tensor:
    """The first ``n`` target training sequences; ValueError naming n when the data hold fewer."""
    if n > len(data.target_train):
        raise ValueError(f"n_target must be at most the {len(data.target_train)} target training sequences drawn, got {n}")
    return data.target_train[:n]


@dataclass
class Setting:
    """What the cells of one (preset, seed) share: the pair, its oracle, the data and the frozen denoiser."""

    preset: str
    seed: int
    pair: Any
    oracle: PairOracle
    data: MarkovData
    denoiser: Callable[..., torch.Tensor]


def make_setting(config: RatiosConfig, preset: str, seed: int, store: ComponentStore) -> Setting:
    pair = resolve_pair(preset, seed=seed)
    data = make_data(pair, n_source=config.n_source, n_target=max(config.n_targets), length=config.length, seed=seed,
                     n_heldout=config.heldout)
    oracle = PairOracle(pair)
    if config.denoiser == "exact":
        denoiser = oracle.source
    else:
        sizes, budget = ModelSizes(), TrainingBudget(source_steps=config.denoiser_steps)
        key = {"preset": pair_identity(preset), "seed": seed, "overlap": 0.0, "vocab_size": pair.vocab_size,
               "length": config.length, "n_source": config.n_source}
        net = train_denoiser(store, data.source_train, sizes, budget, seed=seed, key=key, steps=budget.source_steps,
                             lr=budget.lr, label="source-denoiser", schedule=SCHEDULE)
        denoiser = as_denoiser(net, pair.vocab_size)
    return Setting(preset, seed, pair, oracle, data, denoiser)


def measure(config: RatiosConfig, setting: Setting, model: Any, seed: int) -> dict[str, Any]:
    """Diagnostics (single-site TV, level-free RMSE, by level) and the GTL metrics of ``model``."""
    heldout = {"source": setting.data.source_heldout, "target": setting.data.target_heldout}
    diag = ratio_diagnostics(model, setting.oracle, heldout, SCHEDULE, torch.Generator().manual_seed(seed + 7), config.times)
    parts = MethodParts(setting.denoiser, model, None, GTL(candidates=None))
    scored = score_parts(parts, setting.pair, SCHEDULE, samples=config.samples, length=config.length, gamma=1.0,
                         planner_temperature=0.0, generator=torch.Generator().manual_seed(seed + 11))
    return {**diag.to_dict(), "metrics": scored["metrics"]}


def run_cell(config: RatiosConfig, setting: Setting, estimator: str, n: int, steps: int) -> dict[str, Any]:
    """Fit ``estimator`` on n target sequences with ``steps`` steps and measure it (one cell's record)."""
    target = target_subset(setting.data, n)
    start = time.perf_counter()
    fitter = get_estimator(estimator)
    model = fitter.fit(setting.data.source_train, target, config.budget(steps), schedule=SCHEDULE,
                       vocab_size=setting.pair.vocab_size, denoiser=setting.denoiser if fitter.needs_denoiser else None,
                       seed=setting.seed)
    fit_s = time.perf_counter() - start
    return {"preset": setting.preset, "seed": setting.seed, "estimator": estimator, "n_target": n, "steps": steps,
            "fit_s": fit_s, **measure(config, setting, model, setting.seed)}


def reference_cell(config: RatiosConfig, setting: Setting) -> dict[str, Any]:
    """The exact ratio with the same denoiser: the floor of every metric (TV and RMSE 0, the sampler's KL)."""
    return {"preset": setting.preset, "seed": setting.seed, "estimator": EXACT,
            **measure(config, setting, setting.oracle, setting.seed)}


def _jobs(config: RatiosConfig) -> list[tuple[str, int, str, int, int]]:
    """(preset, seed, estimator, n target, steps) of every cell: the largest step count at every n
    target, the others at ``steps_n_targets``."""
    final, curve = max(config.steps), config.steps_n_targets

    def fitted(n: int, k: int) -> bool:
        return k == final or curve is None or n in curve

    return [(p, s, e, n, k) for p in config.presets for s in config.seeds for e in config.estimators
            for n in config.n_targets for k in config.steps if fitted(n, k)]


def _cell_shape(value: Any) -> bool:
    """What a cell file must hold: an object with its GTL ``metrics`` object and, for a fitted cell,
    a finite single-site TV and the per-level records."""
    if not (isinstance(value, dict) and isinstance(value.get("metrics"), dict)):
        return False
    tv = value.get("single_site_tv", 0.0)
    return "single_site_tv" not in value or (isinstance(tv, (int, float)) and math.isfinite(tv) and isinstance(value.get("levels"), list))


def run_ratios(config: RatiosConfig, run_dir: Path, progress: bool = True) -> RatiosResults:
    """Run the grid into ``run_dir`` (finished cells are read, not recomputed) and return the results."""
    check_run_dir(run_dir, config.cell_hash())
    store = ComponentStore(run_dir / "models")
    settings: dict[tuple[str, int], Setting] = {}

    def setting(p: str, s: int) -> Setting:
        if (p, s) not in settings:
            settings[(p, s)] = make_setting(config, p, s, store)
        return settings[(p, s)]

    fetch = compute_fetch(run_dir)  # a damaged or malformed cell file is named, removed and recomputed
    cells, reference = [], []
    bar = tqdm(_jobs(config), desc="ratio estimators", disable=not progress)
    for p, s, e, n, k in bar:
        bar.set_postfix_str(f"{p} seed={s} {e} n={n} steps={k}")
        cells.append(fetch(cell_path(run_dir, p, s, e, n, k), lambda: run_cell(config, setting(p, s), e, n, k), _cell_shape))
    for p in config.presets:
        for s in config.seeds:
            reference.append(fetch(cell_path(run_dir, p, s, EXACT), lambda: reference_cell(config, setting(p, s)), _cell_shape))
    return RatiosResults(config=config.to_dict(), cells=cells, reference=reference)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML grid (markov/ratios.toml; keys of markov.ratios.RatiosConfig)")
    parser.add_argument("--out", help="run folder (default runs/ratios-<config hash>); re-running resumes it")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_from_args(args: argparse.Namespace) -> int:
    from gtl_verify.validation import check_output_dir
    from reports.builder import build_report

    config = load_ratios_config(args.config)
    run_dir = check_output_dir("--out", Path(args.out or Path("runs") / f"ratios-{config.hash()}"))
    with RunLock(run_dir), InvocationClock(run_dir) as clock:
        results = run_ratios(config, run_dir, progress=not args.quiet)
        meta = provenance(results.config, list(config.seeds), clock.elapsed(), clock.parts())
        path = write_results(run_dir / "results.json", RatiosResults.KIND, results, meta)
    report = build_report(path, run_dir)
    print(f"results: {path}\nreport: {report}")
    return 0


__all__ = ["EXACT", "RatiosConfig", "Setting", "add_arguments", "load_ratios_config", "make_setting", "measure",
           "reference_cell", "run_cell", "run_from_args", "run_ratios", "target_subset"]
