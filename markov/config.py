"""Configuration of the Markov benchmark: defaults, TOML loading, validation and hashing."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gtl_verify.training import config_hash
from gtl_verify.validation import check_int_range, check_real_range

from .presets import PRESETS, is_chain_file, pair_identity, resolve_pair

METHODS = ("source-only", "target-only", "fine-tuned", "gtl", "gtl-oracle-ratio", "gtl-oracle-denoiser", "gtl-planner",
           "tcsm", "ar2diff")
RATIO_ESTIMATORS = ("noisy-classifier", "regression-ratio", "regression-log")


@dataclass(frozen=True)
class ModelSizes:
    """Backbone sizes (hidden, blocks, heads, cond) of the denoiser and of the small ratio/planner nets."""

    denoiser_hidden: int = 32
    denoiser_blocks: int = 2
    ratio_hidden: int = 32
    ratio_blocks: int = 2
    heads: int = 4


@dataclass(frozen=True)
class TrainingBudget:
    """AdamW steps of every learned component (batch ``batch_size``, rate ``lr``), except the ratio
    model, which has its own batch and rate: its log-ratio spans tens of nats between the two domains,
    so the cross-entropy saturates on most pairs and it needs larger batches and a larger rate to
    learn the differences between neighbouring sequences that guidance uses."""

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


@dataclass(frozen=True)
class MarkovConfig:
    """The grid and every setting of a ``gtl markov`` run (all recorded in the results)."""

    presets: tuple[str, ...] = ("paper",)
    n_targets: tuple[int, ...] = (1000, 100, 20)
    seeds: tuple[int, ...] = (0,)
    methods: tuple[str, ...] = METHODS
    n_source: int = 10_000
    length: int = 20
    samples: int = 500
    gamma: float = 1.0
    candidates: int | None = None
    ratio_estimator: str = "noisy-classifier"
    planner_temperature: float = 0.5
    gamma_sweep: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    gamma_sweep_n_target: int = 100
    overlap_sweep: tuple[float, ...] = ()
    overlap_n_target: int = 100
    models: ModelSizes = field(default_factory=ModelSizes)
    training: TrainingBudget = field(default_factory=TrainingBudget)

    def __post_init__(self) -> None:
        for p in self.presets:
            if is_chain_file(p):
                resolve_pair(p)  # read and checked before any work
            elif p not in PRESETS:
                raise ValueError(f"presets must be chosen from {list(PRESETS)} or be .toml/.npz chain files, got {p!r}")
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"methods must be chosen from {list(METHODS)}, got {m!r}")
        if self.ratio_estimator not in RATIO_ESTIMATORS:
            raise ValueError(f"ratio_estimator must be one of {list(RATIO_ESTIMATORS)}, got {self.ratio_estimator!r}")
        if not self.n_targets or not self.seeds or not self.presets or not self.methods:
            raise ValueError("presets, n_targets, seeds and methods must each hold at least one value")
        for n in self.n_targets:
            check_int_range("n_targets", n, 1)
        for s in self.seeds:
            check_int_range("seeds", s, 0)
        check_int_range("n_source", self.n_source, 1)
        check_int_range("length", self.length, 2)
        check_int_range("samples", self.samples, 2)
        check_real_range("gamma", self.gamma, 0.0)
        for g in self.gamma_sweep:
            check_real_range("gamma_sweep", g, 0.0)
        for o in self.overlap_sweep:
            check_real_range("overlap_sweep", o, 0.0, 1.0)
        if self.candidates is not None:
            check_int_range("candidates", self.candidates, 1)
        check_real_range("planner_temperature", self.planner_temperature, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self) -> str:
        return config_hash(self.to_dict())[:12]

    def cell_hash(self) -> str:
        """Hash of the settings that determine a cell's value (not the extent of the grid), so a run
        folder can be extended with more seeds or methods but never mixes incompatible cells."""
        grid = {"presets", "n_targets", "seeds", "methods", "gamma_sweep", "overlap_sweep"}
        cells = {k: v for k, v in self.to_dict().items() if k not in grid}
        files = [pair_identity(p) for p in self.presets if is_chain_file(p)]
        if files:  # a chain file's cells depend on its content, not only on its path
            cells["chain files"] = files
        return config_hash(cells)[:12]


def _coerce(cls, data: dict[str, Any], where: str):
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(names)}")
    out = {}
    for key, value in data.items():
        if key == "models":
            value = _coerce(ModelSizes, value, f"{where}.models")
        elif key == "training":
            value = _coerce(TrainingBudget, value, f"{where}.training")
        elif isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return cls(**out)


def load_config(path: str | Path | None = None, **overrides: Any) -> MarkovConfig:
    """Defaults, updated by a TOML file (top-level keys as in :class:`MarkovConfig`, tables
    [models] and [training]) and then by ``overrides`` (None values ignored)."""
    config = MarkovConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {path} is not valid TOML: {exc}") from None
        config = _coerce(MarkovConfig, data, str(path))
    overrides = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items() if v is not None}
    return replace(config, **overrides) if overrides else config
