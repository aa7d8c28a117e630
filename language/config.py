"""Configuration of the arXiv CS -> Physics pipeline: dataclasses, TOML loading and validation.

A config file is TOML with top-level ``seed`` (and optionally ``seeds``) and the tables ``[data]``, ``[models.<net>]``
(``denoiser``, ``ratio``, ``classifier``, ``planner``), ``[training.<component>]`` (``source``,
``target``, ``finetune``, ``classifier``, ``ratio``, ``planner``, ``ar``, ``ar2diff``),
``[ratio]``, ``[sampling]``, ``[evaluation]`` and ``[runtime]``. Every key missing from the file
takes the default below; an unknown key raises ValueError naming it and the valid keys.

Named configs live in ``language/configs/<name>.toml`` (``cpu-tiny``, ``cpu``, ``gpu``, ``paper``).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from gtl_verify.config import Budget, ConfigError, NetSize, build, check_sequence, read_toml
from gtl_verify.methods import METHODS as METHOD_REGISTRY
from gtl_verify.methods import methods_for
from gtl_verify.estimators import ESTIMATORS
from gtl_verify.training import config_hash
from gtl_verify.validation import check_int_range, check_real_range

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TOKENIZERS = ("bert", "bpe")
VOCABULARIES = ("full", "observed")
SCHEMES = ("paper", "physics-broad")
DEVICES = ("auto", "cpu", "cuda")


def language_methods() -> tuple[str, ...]:
    """The registry's methods whose components this pipeline trains (no exact oracles), in registry
    order (read at call time: registered methods included)."""
    return methods_for({"source", "target-only", "fine-tuned", "tcsm", "ar2diff"}, {"learned"})


def guided_methods() -> tuple[str, ...]:
    return tuple(m for m in language_methods() if METHOD_REGISTRY[m].guided)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class DataConfig:
    """Which abstracts, how they are split, tokenised and packed.

    ``path``: folder (or single file) of arXiv JSON lines; None = language.data's default search
    (``../shared/data/arxiv``). ``scheme``: domain rule of :func:`language.data.domain_of`.
    ``max_per_domain``: seeded sample of that many abstracts per domain (0 = all).
    ``val_fraction``: held-out share of each domain (never trained on). ``segment_length``: tokens
    per packed segment. ``tokenizer``: ``bert`` (bert-base-uncased WordPiece) or ``bpe`` (trained
    on the training texts, ``bpe_vocab_size``). ``vocabulary``: ``full`` (the tokenizer's ids; the
    mask is the tokenizer's [MASK]) or ``observed`` (the ids seen in the training segments,
    renumbered 0..V-1, mask id V: same texts, a smaller output layer); with ``min_count`` > 1 only
    ids seen at least that often are kept and the others read as the tokenizer's [UNK] (bert only).
    ``fractions``: nested shares
    of the target training abstracts kept. ``overlap``: share of target training abstracts moved
    into the source (0 = disjoint domains)."""

    path: str | None = None
    scheme: str = "paper"
    max_per_domain: int = 3000
    val_fraction: float = 0.1
    segment_length: int = 64
    tokenizer: str = "bert"
    bpe_vocab_size: int = 4096
    vocabulary: str = "observed"
    min_count: int = 1
    fractions: tuple[float, ...] = (1.0, 0.3, 0.05, 0.01)
    overlap: float = 0.0

    def __post_init__(self) -> None:
        if self.path is not None and (not isinstance(self.path, str) or not self.path):
            raise ValueError(f"data.path must be a non-empty string or absent, got {self.path!r}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"data.scheme must be one of {list(SCHEMES)}, got {self.scheme!r}")
        if self.max_per_domain != 0:
            check_int_range("data.max_per_domain", self.max_per_domain, 2)
        vf = check_real_range("data.val_fraction", self.val_fraction, 0.0, 1.0, open_low=True)
        if vf >= 0.5:
            raise ValueError(f"data.val_fraction must be below 0.5, got {self.val_fraction}")
        check_int_range("data.segment_length", self.segment_length, 4)
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"data.tokenizer must be one of {list(TOKENIZERS)}, got {self.tokenizer!r}")
        check_int_range("data.bpe_vocab_size", self.bpe_vocab_size, 260)
        if self.vocabulary not in VOCABULARIES:
            raise ValueError(f"data.vocabulary must be one of {list(VOCABULARIES)}, got {self.vocabulary!r}")
        check_int_range("data.min_count", self.min_count, 1)
        if self.min_count > 1 and (self.vocabulary != "observed" or self.tokenizer != "bert"):
            raise ValueError(f"data.min_count > 1 needs vocabulary = 'observed' and tokenizer = 'bert' (an [UNK] token), "
                             f"got min_count={self.min_count}, vocabulary={self.vocabulary!r}, tokenizer={self.tokenizer!r}")
        fr = check_sequence("data.fractions", self.fractions)
        for f in fr:
            check_real_range("data.fractions", f, 0.0, 1.0, open_low=True)
        if len(set(fr)) != len(fr):
            raise ValueError(f"data.fractions must not repeat a value, got {list(fr)}")
        ov = check_real_range("data.overlap", self.overlap, 0.0, 1.0)
        if ov >= 1.0:
            raise ValueError(f"data.overlap must be below 1, got {self.overlap}")


@dataclass(frozen=True)
class Models:
    """Sizes of the denoisers, the ratio (every network its estimator trains), the clean classifier
    and the planner.

    The paper uses a 512-hidden, 8-block denoiser and a ratio network of the same block design at
    hidden 96 / cond 48 (about 7 % of the denoiser's parameters); the share reached by a config is
    recorded in the results."""

    denoiser: NetSize = field(default_factory=lambda: NetSize(hidden=128, blocks=2, heads=4, cond=64))
    ratio: NetSize = field(default_factory=lambda: NetSize(hidden=24, blocks=2, heads=4, cond=12))
    classifier: NetSize = field(default_factory=lambda: NetSize(hidden=48, blocks=2, heads=4, cond=24))
    planner: NetSize = field(default_factory=lambda: NetSize(hidden=32, blocks=2, heads=4, cond=16))


@dataclass(frozen=True)
class Training:
    """Budgets: source denoiser (MDLM on CS), target-only denoisers, fine-tuning of the source
    denoiser, clean classifier (the evaluator's P(source) score), the ratio estimator (every network
    it trains) and planner. The TCSM correction network (method ``tcsm``) is trained with the
    ratio's budget. AR2Diff
    (method ``ar2diff``): ``ar`` trains the autoregressive source model, ``ar2diff`` continues its
    weights as an MDLM denoiser on CS (so ``ar.steps + ar2diff.steps`` is its source budget, beside
    the source denoiser's ``source.steps``), then ``finetune`` on the physics share."""

    source: Budget = field(default_factory=lambda: Budget(steps=400, lr=1e-3, warmup=40))
    target: Budget = field(default_factory=lambda: Budget(steps=200, lr=1e-3, warmup=20))
    finetune: Budget = field(default_factory=lambda: Budget(steps=100, lr=3e-4))
    classifier: Budget = field(default_factory=lambda: Budget(steps=200, lr=1e-3))
    ratio: Budget = field(default_factory=lambda: Budget(steps=200, lr=1e-3))
    planner: Budget = field(default_factory=lambda: Budget(steps=100, lr=1e-3))
    ar: Budget = field(default_factory=lambda: Budget(steps=200, lr=1e-3, warmup=20))
    ar2diff: Budget = field(default_factory=lambda: Budget(steps=200, lr=1e-3, warmup=20))


@dataclass(frozen=True)
class RatioConfig:
    """How the density ratio GTL reads is estimated.

    ``estimator``: a name of the core registry :data:`gtl_verify.estimators.ESTIMATORS`
    (``guided-likelihood``, ``paper``, ``regression-ratio``, ``noisy-classifier``,
    ``telescoping-nce``; THEORY section 5), fitted on the CS and the kept physics segments with
    ``[training.ratio]`` and ``[models.ratio]`` (and the frozen source denoiser where the
    estimator needs it)."""

    estimator: str = "guided-likelihood"

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            typed = str(self.estimator).strip().lower().replace("_", "-")
            close = difflib.get_close_matches(typed, ESTIMATORS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"ratio.estimator must be one of {list(ESTIMATORS)}, got {self.estimator!r}{hint}")


@dataclass(frozen=True)
class SamplingConfig:
    """Generation settings of every method.

    ``samples`` sequences per (method, fraction), drawn ``batch`` at a time. Ancestral samplers
    (source-only, target-only, fine-tuned, gtl) use ``steps`` reverse steps; gtl-planner reveals
    one planner-chosen position per step (``segment_length`` steps) at ``planner_temperature``.
    GTL: ``candidates`` n ratio candidates (top-n of the denoiser), guidance exponent ``gamma``,
    ``top_k`` sampling on each method's token law (0 = off; the same for every method, so GTL needs
    ``1 <= top_k <= candidates``). Ablations at
    ``ablation_fraction`` with ``ablation_samples`` samples: ``gamma_sweep`` and
    ``candidates_sweep`` (empty = skipped). ``planner_log_prob_features``: the planner reads the
    source denoiser's confidence features."""

    methods: tuple[str, ...] = field(default_factory=language_methods)
    samples: int = 64
    batch: int = 32
    steps: int = 32
    candidates: int = 8
    top_k: int = 8
    gamma: float = 1.0
    planner_temperature: float = 0.5
    planner_log_prob_features: bool = True
    gamma_sweep: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0)
    candidates_sweep: tuple[int, ...] = (2, 8, 32)
    ablation_fraction: float = 0.05
    ablation_samples: int = 64

    def __post_init__(self) -> None:
        methods = check_sequence("sampling.methods", self.methods)
        for m in methods:
            if m not in language_methods():
                raise ValueError(f"sampling.methods must be chosen from {list(language_methods())}, got {m!r}")
        check_int_range("sampling.samples", self.samples, 2)
        check_int_range("sampling.batch", self.batch, 1)
        check_int_range("sampling.steps", self.steps, 1)
        check_int_range("sampling.candidates", self.candidates, 1)
        check_int_range("sampling.top_k", self.top_k, 0)
        check_real_range("sampling.gamma", self.gamma, 0.0)
        check_real_range("sampling.planner_temperature", self.planner_temperature, 0.0)
        _check_bool("sampling.planner_log_prob_features", self.planner_log_prob_features)
        for g in check_sequence("sampling.gamma_sweep", self.gamma_sweep, allow_empty=True):
            check_real_range("sampling.gamma_sweep", g, 0.0)
        for n in check_sequence("sampling.candidates_sweep", self.candidates_sweep, allow_empty=True):
            check_int_range("sampling.candidates_sweep", n, 1)
        check_real_range("sampling.ablation_fraction", self.ablation_fraction, 0.0, 1.0, open_low=True)
        check_int_range("sampling.ablation_samples", self.ablation_samples, 2)


@dataclass(frozen=True)
class EvaluationConfig:
    """Metrics: MiniLM-feature MAUVE against ``reference_texts`` held-out physics segments with
    ``mauve_seeds`` k-means seeds (``mauve_scaling`` is MAUVE's scaling factor); distinct-n for
    n = 1..``distinct_max_n``; generative perplexity under the target-only (largest fraction)
    denoiser's MDLM ELBO with ``perplexity_draws`` Monte-Carlo draws per sample; features are
    computed ``feature_batch`` texts at a time. A MAUVE sample set below the size guard of
    :class:`language.evaluate.MauveGuard` is refused when the config loads, unless
    ``allow_small_mauve`` (smoke tests): then its values are flagged NOT MEANINGFUL."""

    mauve_seeds: tuple[int, ...] = (0, 1, 2)
    reference_texts: int = 500
    mauve_scaling: float = 5.0
    distinct_max_n: int = 4
    perplexity_draws: int = 4
    feature_batch: int = 64
    allow_small_mauve: bool = False

    def __post_init__(self) -> None:
        for s in check_sequence("evaluation.mauve_seeds", self.mauve_seeds):
            check_int_range("evaluation.mauve_seeds", s, 0)
        check_int_range("evaluation.reference_texts", self.reference_texts, 2)
        check_real_range("evaluation.mauve_scaling", self.mauve_scaling, 0.0, open_low=True)
        check_int_range("evaluation.distinct_max_n", self.distinct_max_n, 1)
        check_int_range("evaluation.perplexity_draws", self.perplexity_draws, 1)
        check_int_range("evaluation.feature_batch", self.feature_batch, 1)
        _check_bool("evaluation.allow_small_mauve", self.allow_small_mauve)


@dataclass(frozen=True)
class RuntimeConfig:
    """``device``: auto (cuda when available), cpu or cuda. ``compile``/``bf16``: torch.compile and
    bfloat16 autocast, used only on CUDA. ``checkpoint_every``: training checkpoint period (0 =
    only at the end). ``threads``: torch CPU threads (0 = leave torch's default).
    ``sampling_budget_minutes``: the run's sampling time is estimated from a pilot before the first
    sample set, and a run whose estimate exceeds twice this budget stops (0 = no check;
    :func:`language.sampling.check_sampling_budget`)."""

    device: str = "auto"
    compile: bool = True
    bf16: bool = True
    checkpoint_every: int = 100
    threads: int = 0
    sampling_budget_minutes: float = 0.0

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"runtime.device must be one of {list(DEVICES)}, got {self.device!r}")
        _check_bool("runtime.compile", self.compile)
        _check_bool("runtime.bf16", self.bf16)
        check_int_range("runtime.checkpoint_every", self.checkpoint_every, 0)
        check_int_range("runtime.threads", self.threads, 0)
        check_real_range("runtime.sampling_budget_minutes", self.sampling_budget_minutes, 0.0)


@dataclass(frozen=True)
class LanguageConfig:
    """Every setting of a ``gtl language run`` (recorded in full in the results).

    ``seed`` fixes the source side, shared by every replicate: the data split, tokenizer, target
    shares, MAUVE reference rows, the source denoiser and the planner. ``seeds`` (empty, the default:
    one replicate seeded with ``seed``, the run of a config without replicates) are the target-side
    replicates: for each, every component trained on the physics share
    (target-only, fine-tuned, TCSM, clean classifier, ratio, AR2Diff fine-tune), every sample set and
    evaluation draw is seeded anew; the reported intervals are over these replicates."""

    name: str = "custom"
    seed: int = 0
    seeds: tuple[int, ...] = ()
    data: DataConfig = field(default_factory=DataConfig)
    models: Models = field(default_factory=Models)
    training: Training = field(default_factory=Training)
    ratio: RatioConfig = field(default_factory=RatioConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        check_int_range("seed", self.seed, 0)
        for s in check_sequence("seeds", self.seeds, allow_empty=True):
            check_int_range("seeds", s, 0)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must not repeat, got {list(self.seeds)}")
        if self.sampling.ablation_fraction not in self.data.fractions and (
            self.sampling.gamma_sweep or self.sampling.candidates_sweep
        ):
            raise ValueError(
                f"sampling.ablation_fraction={self.sampling.ablation_fraction} must be one of "
                f"data.fractions={list(self.data.fractions)} when an ablation sweep is set"
            )
        _check_evaluation(self.sampling, self.evaluation)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self) -> str:
        return config_hash(self.to_dict())[:12]

    @property
    def replicate_seeds(self) -> tuple[int, ...]:
        """Seeds of the target-side replicates (``seeds``, or ``(seed,)`` when empty)."""
        return self.seeds or (self.seed,)

    @property
    def evaluator_fraction(self) -> float:
        """Fraction whose target-only denoiser is the perplexity evaluator (the largest)."""
        return max(self.data.fractions)


def _check_evaluation(sampling: SamplingConfig, evaluation: EvaluationConfig) -> None:
    """One truncation for every method; MAUVE sets large enough (or explicitly allowed small)."""
    from .evaluate import check_equal_truncation, check_mauve_sizes

    check_equal_truncation(sampling.methods, sampling.top_k, sampling.candidates, guided_methods())
    sets = {"every method (sampling.samples)": sampling.samples}
    if sampling.gamma_sweep or sampling.candidates_sweep:
        sets["the ablations (sampling.ablation_samples)"] = sampling.ablation_samples
    small = check_mauve_sizes(sets, evaluation.reference_texts)
    if small and not evaluation.allow_small_mauve:
        raise ValueError(f"{small[0]}; raise it, or set evaluation.allow_small_mauve = true to flag such values")


# ------------------------------------------------------------------ loading
def config_from_dict(data: dict[str, Any], name: str | None = None) -> LanguageConfig:
    """A :class:`LanguageConfig` from a nested dict (as read from TOML)."""
    data = dict(data)
    if name is not None and "name" not in data:
        data["name"] = name
    return build(LanguageConfig(), data)


def resolve_config_path(name_or_file: str | Path) -> Path:
    """A config name (``cpu`` -> ``language/configs/cpu.toml``) or a TOML file path."""
    text = str(name_or_file)
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        return path
    candidate = CONFIG_DIR / f"{text}.toml"
    if not candidate.is_file():
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
        raise ValueError(f"unknown config {text!r}: not a file and not one of the named configs {names}")
    return candidate


def load_config(name_or_file: str | Path = "cpu", **data_overrides: Any) -> LanguageConfig:
    """Load a named config or TOML file; ``data_overrides`` (None values ignored) replace keys of
    ``[data]`` (e.g. ``path``)."""
    path = resolve_config_path(name_or_file)
    config = config_from_dict(read_toml(path), name=path.stem)
    overrides = {k: v for k, v in data_overrides.items() if v is not None}
    if overrides:
        config = replace(config, data=build(config.data, overrides, "data"))
    return config


def with_seed(config: LanguageConfig, seed: int) -> LanguageConfig:
    """``config`` with its top-level ``seed`` replaced (checked like the file's value)."""
    return build(config, {"seed": seed})


def parameter_share(ratio_params: int, denoiser_params: int) -> float:
    """Ratio-network parameters as a share of the denoiser's (the paper: 4.1M / 59.8M ~ 0.07)."""
    if denoiser_params <= 0:
        return math.nan
    return ratio_params / denoiser_params


__all__ = [
    "Budget",
    "DataConfig",
    "EvaluationConfig",
    "LanguageConfig",
    "guided_methods",
    "language_methods",
    "Models",
    "NetSize",
    "RatioConfig",
    "RuntimeConfig",
    "SamplingConfig",
    "Training",
    "config_from_dict",
    "load_config",
    "parameter_share",
    "resolve_config_path",
    "with_seed",
]
