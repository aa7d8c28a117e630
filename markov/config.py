"""Configuration of the Markov benchmark: the settings, their validation and hashing.

A config file is TOML with the top-level keys of :class:`MarkovConfig` and per-component tables,
as in the language configs: ``[models.denoiser]`` / ``[models.ratio]`` (``hidden``, ``blocks``,
``heads``), ``[training]`` (shared ``batch_size``, ``lr``, ``weight_decay``) and
``[training.source]``, ``.target``, ``.finetune``, ``.ratio``, ``.planner``, ``.tcsm``, ``.ar``,
``.ar2diff`` (``steps``; ``lr`` for finetune and ratio, ``batch_size`` for ratio). The older flat
keys (``[models] denoiser_hidden``, ``[training] ratio_steps`` ...) still load, with a deprecation
note. The file is read by the suite's one loader (:mod:`gtl_verify.config`): every value is type-
and range-checked before any work, and an error names the dotted key and its value.
"""

from __future__ import annotations

import warnings

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gtl_verify.config import Budget, ConfigError, NetSize, build, check_sequence, load, read_toml
from gtl_verify.estimators import ESTIMATORS
from gtl_verify.methods import methods_for
from gtl_verify.training import config_hash
from gtl_verify.validation import check_int_range, check_real_range

from .presets import PRESETS, is_chain_file, pair_identity, resolve_pair



def markov_methods() -> tuple[str, ...]:
    """Every method of the registry whose components the Markov benchmark provides (all of them:
    it has exact oracles), in registry order (read at call time: registered methods included)."""
    return methods_for({"source", "target-only", "fine-tuned", "tcsm", "ar2diff", "oracle"}, {"learned", "paper", "oracle"})


#: methods the default grid leaves out, with why: each is in the committed grid configs
OPT_IN_METHODS: dict[str, str] = {
    "gtl-paper": "the paper's estimator trains three ratio networks per cell (about a third of the default "
                 "run's CPU time); markov/paper_grid.toml, presets_grid.toml and transfer_grid.toml run it",
}


def default_methods() -> tuple[str, ...]:
    """The default grid's methods: :func:`markov_methods` without :data:`OPT_IN_METHODS`."""
    return tuple(m for m in markov_methods() if m not in OPT_IN_METHODS)


@dataclass(frozen=True)
class ModelSizes:
    """Backbone sizes (hidden, blocks, heads, cond) of the denoiser and of the small ratio/planner nets."""

    denoiser_hidden: int = 32
    denoiser_blocks: int = 2
    ratio_hidden: int = 32
    ratio_blocks: int = 2
    heads: int = 4

    def __post_init__(self) -> None:
        for role in ("denoiser", "ratio"):
            hidden, blocks = f"{role}_hidden", f"{role}_blocks"
            check_int_range(hidden, getattr(self, hidden), 2)
            check_int_range(blocks, getattr(self, blocks), 0)
        check_int_range("heads", self.heads, 1)
        for role in ("denoiser", "ratio"):
            hidden = getattr(self, f"{role}_hidden")
            if hidden % self.heads or (hidden // self.heads) % 2:
                raise ConfigError(f"{role}_hidden must be an even multiple of heads={self.heads} (rotary positions "
                                  f"need an even head size), got {role}_hidden={hidden}")

    def _size(self, hidden: int, blocks: int) -> NetSize:
        return NetSize(hidden=hidden, blocks=blocks, heads=self.heads, cond=max(hidden // 2, 2))

    @property
    def denoiser(self) -> NetSize:
        """Sizes of the denoisers and of the autoregressive source model (cond = hidden / 2)."""
        return self._size(self.denoiser_hidden, self.denoiser_blocks)

    @property
    def ratio(self) -> NetSize:
        """Sizes of the ratio networks, the classifiers, the planner and the TCSM correction."""
        return self._size(self.ratio_hidden, self.ratio_blocks)


@dataclass(frozen=True)
class TrainingBudget:
    """AdamW steps of every learned component (batch ``batch_size``, rate ``lr``), except the ratio
    model, which has its own batch and rate (``ratio_*``: each network its estimator trains gets them,
    :func:`markov.components.ratio_budget`): the sequence-level estimators meet log-ratios of tens of
    nats between the two domains and need larger batches and a larger rate to learn the differences
    between neighbouring sequences that guidance uses."""

    source_steps: int = 1500
    target_steps: int = 800
    finetune_steps: int = 400
    ratio_steps: int = 1000
    planner_steps: int = 200
    tcsm_steps: int = 400
    ar_steps: int = 1000
    ar2diff_continue_steps: int = 400
    batch_size: int = 64
    lr: float = 1e-3
    finetune_lr: float = 3e-4
    weight_decay: float = 0.01
    ratio_batch_size: int = 128
    ratio_lr: float = 3e-3

    def __post_init__(self) -> None:
        for name in ("source_steps", "target_steps", "finetune_steps", "ratio_steps", "planner_steps", "tcsm_steps",
                     "ar_steps", "ar2diff_continue_steps"):
            check_int_range(name, getattr(self, name), 0)
        for name in ("batch_size", "ratio_batch_size"):
            check_int_range(name, getattr(self, name), 2)
        for name in ("lr", "finetune_lr", "ratio_lr"):
            check_real_range(name, getattr(self, name), 0.0, open_low=True)
        check_real_range("weight_decay", self.weight_decay, 0.0)

    def budget(self, steps: int, lr: float | None = None, batch_size: int | None = None) -> Budget:
        """The shared :class:`~gtl_verify.config.Budget` of one component (this budget's weight decay;
        warm-up over a tenth of the steps, at most 100)."""
        return Budget(steps=steps, batch_size=batch_size or self.batch_size, lr=self.lr if lr is None else lr,
                      weight_decay=self.weight_decay, warmup=min(100, steps // 10))


@dataclass(frozen=True)
class MarkovConfig:
    """The grid and every setting of a ``gtl markov`` run (all recorded in the results).

    ``ratio_estimator``: the :mod:`gtl_verify.estimators` name of the ratio of ``gtl``,
    ``gtl-oracle-denoiser`` and ``gtl-planner`` (``gtl-paper`` always uses ``paper``).
    ``overlap_sweep``: overlaps in [0, 1] at which ``gtl-oracle-denoiser`` runs on ``overlap_preset``
    (default ``no-overlap``: the share of the source's mass where only the target goes; 0 is the
    failure case of ratio guidance) with ``overlap_n_target`` target samples."""

    presets: tuple[str, ...] = ("paper",)
    n_targets: tuple[int, ...] = (1000, 100, 20)
    seeds: tuple[int, ...] = (0,)
    methods: tuple[str, ...] = field(default_factory=default_methods)
    n_source: int = 10_000
    length: int = 20
    samples: int = 500
    gamma: float = 1.0
    candidates: int | None = None
    ratio_estimator: str = "guided-likelihood"
    planner_temperature: float = 0.5
    gamma_sweep: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    gamma_sweep_n_target: int = 100
    overlap_sweep: tuple[float, ...] = ()
    overlap_n_target: int = 100
    overlap_preset: str = "no-overlap"
    models: ModelSizes = field(default_factory=ModelSizes)
    training: TrainingBudget = field(default_factory=TrainingBudget)

    def __post_init__(self) -> None:
        for p in check_sequence("presets", self.presets):
            if isinstance(p, str) and is_chain_file(p):
                resolve_pair(p)  # read and checked before any work
            elif p not in PRESETS:
                raise ConfigError(f"presets must be chosen from {list(PRESETS)} or be .toml/.npz chain files, got {p!r}")
        for m in check_sequence("methods", self.methods):
            if m not in markov_methods():
                raise ConfigError(f"methods must be chosen from {list(markov_methods())}, got {m!r}")
        if self.ratio_estimator not in ESTIMATORS:
            raise ConfigError(f"ratio_estimator must be one of {list(ESTIMATORS)}, got {self.ratio_estimator!r}")
        for n in check_sequence("n_targets", self.n_targets):
            check_int_range("n_targets", n, 1)
        for s in check_sequence("seeds", self.seeds):
            check_int_range("seeds", s, 0)
        check_int_range("n_source", self.n_source, 1)
        check_int_range("length", self.length, 2)
        check_int_range("samples", self.samples, 2)
        check_real_range("gamma", self.gamma, 0.0)
        for g in check_sequence("gamma_sweep", self.gamma_sweep, allow_empty=True):
            check_real_range("gamma_sweep", g, 0.0)
        check_int_range("gamma_sweep_n_target", self.gamma_sweep_n_target, 1)
        for o in check_sequence("overlap_sweep", self.overlap_sweep, allow_empty=True):
            check_real_range("overlap_sweep", o, 0.0, 1.0)
        check_int_range("overlap_n_target", self.overlap_n_target, 1)
        if self.overlap_preset == "paper" or not (self.overlap_preset in PRESETS or is_chain_file(self.overlap_preset)):
            raise ConfigError(f"overlap_preset must be a preset the overlap mixes ({[p for p in PRESETS if p != 'paper']}) "
                              f"or a .toml/.npz chain file, got {self.overlap_preset!r}")
        if is_chain_file(self.overlap_preset):  # read and checked before any work, like the presets
            try:
                resolve_pair(self.overlap_preset)
            except ValueError as exc:
                raise ConfigError(f"overlap_preset {self.overlap_preset!r}: {exc}") from None
        if self.candidates is not None:
            check_int_range("candidates", self.candidates, 1)
            for p in self.presets:
                k = resolve_pair(p).vocab_size
                if self.candidates > k:
                    raise ConfigError(f"candidates must be at most the vocabulary size K={k} of preset {p!r}, got {self.candidates}")
        check_real_range("planner_temperature", self.planner_temperature, 0.0)
        if not isinstance(self.models, ModelSizes) or not isinstance(self.training, TrainingBudget):
            raise ConfigError(f"models and training must be tables, got {self.models!r} and {self.training!r}")

    @property
    def max_n_target(self) -> int:
        """The most target samples any cell uses (grid, gamma sweep and overlap sweep)."""
        return max(self.n_targets + (self.gamma_sweep_n_target, self.overlap_n_target))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self) -> str:
        return config_hash(self.to_dict())[:12]

    def cell_hash(self) -> str:
        """Hash of the settings that determine a cell's value (not the extent of the grid), so a run
        folder can be extended with more seeds or methods but never mixes incompatible cells."""
        grid = {"presets", "n_targets", "seeds", "methods", "gamma_sweep", "overlap_sweep", "overlap_preset"}
        cells = {k: v for k, v in self.to_dict().items() if k not in grid}
        files = [pair_identity(p) for p in self.presets if is_chain_file(p)]
        if files:  # a chain file's cells depend on its content, not only on its path
            cells["chain files"] = files
        return config_hash(cells)[:12]


#: per-component table -> {key in the table: field of ModelSizes / TrainingBudget}
MODEL_TABLES = {"denoiser": {"hidden": "denoiser_hidden", "blocks": "denoiser_blocks", "heads": "heads"},
                "ratio": {"hidden": "ratio_hidden", "blocks": "ratio_blocks", "heads": "heads"}}
TRAINING_TABLES = {"source": {"steps": "source_steps"}, "target": {"steps": "target_steps"},
                   "finetune": {"steps": "finetune_steps", "lr": "finetune_lr"},
                   "ratio": {"steps": "ratio_steps", "batch_size": "ratio_batch_size", "lr": "ratio_lr"},
                   "planner": {"steps": "planner_steps"}, "tcsm": {"steps": "tcsm_steps"}, "ar": {"steps": "ar_steps"},
                   "ar2diff": {"steps": "ar2diff_continue_steps"}}
SHARED_TRAINING = ("batch_size", "lr", "weight_decay")


def _from_tables(section: str, data: Any, tables: dict[str, dict[str, str]], shared: tuple[str, ...]) -> Any:
    """The flat fields of ``[section]`` from its per-component tables; flat keys pass through with
    a DeprecationWarning. Raises ConfigError naming an unknown key or two different heads."""
    if not isinstance(data, dict):
        return data
    flat: dict[str, Any] = {}
    fields = {f for table in tables.values() for f in table.values()}
    old = [k for k, v in data.items() if not isinstance(v, dict) and k in fields and k not in shared]
    if old:
        warnings.warn(f"flat keys {section}.{old[0]} ... are deprecated: use the per-component tables "
                      f"[{section}.<component>] (markov/config.py)", DeprecationWarning, stacklevel=4)
    for key, value in data.items():
        if not isinstance(value, dict):
            flat[key] = value
            continue
        if key not in tables:
            raise ConfigError(f"{section}.{key} is not a component table; choose from {list(tables)}")
        for name, v in value.items():
            if name not in tables[key]:
                raise ConfigError(f"{section}.{key}.{name} is not a setting; choose from {list(tables[key])}")
            field_name = tables[key][name]
            if field_name in flat and flat[field_name] != v:
                raise ConfigError(f"{section}.{key}.{name} must equal the other tables' {name} "
                                  f"(one setting for every network), got {v!r} and {flat[field_name]!r}")
            flat[field_name] = v
    return flat


def load_config(path: str | Path | None = None, **overrides: Any) -> MarkovConfig:
    """Defaults, updated by a TOML file (top-level keys as in :class:`MarkovConfig` and the
    per-component tables of the module docstring) and then by ``overrides`` (None values ignored);
    every value is checked before any work (:func:`gtl_verify.config.load`)."""
    data = None if path is None else read_toml(path)
    if data is not None:
        data = {**data, "models": _from_tables("models", data.get("models", {}), MODEL_TABLES, ()),
                "training": _from_tables("training", data.get("training", {}), TRAINING_TABLES, SHARED_TRAINING)}
        data = {k: v for k, v in data.items() if v != {} or k not in ("models", "training")}
    config = MarkovConfig() if data is None else build(MarkovConfig(), data)
    return load(config, None, **overrides)
