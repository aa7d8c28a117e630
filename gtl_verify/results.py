"""The suite's results files: a versioned envelope and the typed results of each kind.

A results file is the JSON object

    {"kind": str, "schema_version": int, "meta": {...provenance...}, "results": {...}}

Schema versions: 1 is the layout written before versions were recorded (no ``schema_version``
key); 2 adds the key and nothing else, so :func:`migrate` from 1 only records the version.
Each kind lists the results keys a report needs (:data:`REQUIRED_KEYS`); :func:`check_envelope`
refuses an unknown version or a file whose results lack a key of its kind (a Markov file
relabelled ``language``), with one line naming the file and the key.

:class:`MarkovResults`, :class:`LanguageResults` and :class:`RatiosResults` are what the pipelines
(``gtl markov``, ``gtl language run``, ``gtl markov ratios``) return and write;
``to_dict``/``from_dict`` convert to and from the JSON layout, keeping keys they do not know in
``extra`` so that a newer writer's additions survive a round trip.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

SCHEMA_VERSION = 2
LEGACY_VERSION = 1  # files without a "schema_version" key

#: kind -> results keys every file of that kind must hold (the typed kinds add theirs below)
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "validation": ("rules",),
    "benchmark": ("tables",),
}


class ResultsSchemaError(ValueError):
    """A results file whose version or fields do not match its kind; the message names file and key."""


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """An envelope of any known version as the current version (1 -> 2: the version is recorded)."""
    version = data.get("schema_version", LEGACY_VERSION)
    if version == LEGACY_VERSION:
        data = {**data, "schema_version": SCHEMA_VERSION}
    return data


def check_envelope(data: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """``data`` (an envelope with kind, meta, results) migrated to the current version and checked:
    a known schema version and, for a known kind, every required results key. Raises
    :class:`ResultsSchemaError` naming ``source`` and the key."""
    version = data.get("schema_version", LEGACY_VERSION)
    if isinstance(version, bool) or version not in (LEGACY_VERSION, SCHEMA_VERSION):
        raise ResultsSchemaError(f"results file {source}: schema_version must be one of "
                                 f"{[LEGACY_VERSION, SCHEMA_VERSION]}, got {version!r}")
    data = migrate(data)
    kind, results = data.get("kind"), data.get("results")
    if kind in REQUIRED_KEYS and isinstance(results, dict):
        missing = [k for k in REQUIRED_KEYS[kind] if k not in results]
        if missing:
            raise ResultsSchemaError(f"results file {source}: kind {kind!r} needs results key '{missing[0]}' "
                                     f"(missing: {missing}); is the kind right?")
    return data


R = TypeVar("R", bound="_Results")


@dataclass
class _Results:
    """Typed top-level results of one kind (``KIND``); unknown keys are kept in ``extra``."""

    KIND = ""

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**self.extra, **out}

    @classmethod
    def required(cls) -> tuple[str, ...]:
        """The keys without a default: every file of this kind holds them."""
        return tuple(f.name for f in fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any], source: str | Path = "results") -> R:
        if not isinstance(data, dict):
            raise ResultsSchemaError(f"{source}: results must be an object, got {type(data).__name__}")
        names = [f.name for f in fields(cls) if f.name != "extra"]
        missing = [k for k in cls.required() if k not in data]
        if missing:
            raise ResultsSchemaError(f"{source}: {cls.KIND} results need key '{missing[0]}' (missing: {missing})")
        return cls(**{k: data[k] for k in names if k in data}, extra={k: v for k, v in data.items() if k not in names})


@dataclass
class MarkovResults(_Results):
    """Results of ``gtl markov`` (kind ``markov-benchmark``): the recorded ``config``; per preset its
    vocabulary size and transition matrices; the method names; one row per (preset, n_target,
    method, seed) cell with its metrics and estimated transition matrix; the gamma and overlap
    sweep rows; and the component-error rows."""

    KIND = "markov-benchmark"
    presets: dict[str, Any]
    cells: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)
    methods: list[str] = field(default_factory=list)
    gamma_sweep: list[dict[str, Any]] = field(default_factory=list)
    overlap_sweep: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LanguageResults(_Results):
    """Results of ``gtl language run`` (kind ``language``): MAUVE rows (method, fraction, replicate,
    k-means seed, mauve), classifier, distinct-n and perplexity rows, the gamma/candidates ablations, per-method
    timing, the held-out physics ceiling ``reference_mauve`` and CS floor ``floor_mauve``, the MAUVE
    size guard ``mauve_guard``, each method's ``truncation``, and the run's provenance details
    (data summary, vocabulary, components, parameters, diagnostics, examples, stage seconds)."""

    KIND = "language"
    mauve: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)
    replicates: list[int] = field(default_factory=list)
    classifier: list[dict[str, Any]] = field(default_factory=list)
    distinct: list[dict[str, Any]] = field(default_factory=list)
    perplexity: list[dict[str, Any]] = field(default_factory=list)
    ablations: dict[str, Any] = field(default_factory=dict)
    timing: list[dict[str, Any]] = field(default_factory=list)
    reference_mauve: dict[str, Any] | None = None
    floor_mauve: dict[str, Any] | None = None
    mauve_guard: dict[str, Any] = field(default_factory=dict)
    truncation: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    vocabulary: dict[str, Any] = field(default_factory=dict)
    components: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    examples: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    trained_this_run: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RatiosResults(_Results):
    """Results of ``gtl markov ratios`` (kind ``ratios``): the recorded ``config``; one row per
    (preset, seed, estimator, n_target, steps) cell with ``fit_s``, the diagnostics
    (``single_site_tv``, ``log_ratio_rmse``, ``single_site_tv_by_domain``, ``levels``: one record per
    (domain, t)) and the GTL ``metrics``; and the ``reference`` rows of the exact ratio per (preset, seed)."""

    KIND = "ratios"
    cells: list[dict[str, Any]]
    config: dict[str, Any]
    reference: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


RESULT_TYPES: dict[str, type[_Results]] = {cls.KIND: cls for cls in (MarkovResults, LanguageResults, RatiosResults)}
REQUIRED_KEYS.update({kind: cls.required() for kind, cls in RESULT_TYPES.items()})


def results_dict(results: Any) -> dict[str, Any]:
    """The JSON layout of typed results (``to_dict``) or of a plain dict."""
    return results.to_dict() if hasattr(results, "to_dict") else results


__all__ = ["LEGACY_VERSION", "LanguageResults", "MarkovResults", "REQUIRED_KEYS", "RESULT_TYPES", "RatiosResults", "ResultsSchemaError",
           "SCHEMA_VERSION", "check_envelope", "migrate", "results_dict"]
