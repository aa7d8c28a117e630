"""arXiv metadata reader, CS/Physics domain rules and seeded splits.

The data are JSON lines in the field layout of the public arXiv metadata snapshot: one object
per paper with ``id``, ``title``, ``abstract``, ``categories`` (space-separated, primary category
first) and ``update_date``. Files may be plain (``.jsonl``/``.json``) or compressed
(``.xz``, ``.gz``, ``.bz2``).

Domains are decided by the primary (first) category:

* scheme ``"paper"``: source = primary ``cs.*``, target = primary ``physics.*``;
* scheme ``"physics-broad"``: source = primary ``cs.*``, target = primary in the physics archive
  family (``physics.*``, ``astro-ph*``, ``cond-mat*``, ``gr-qc``, ``hep-*``, ``math-ph``,
  ``nlin*``, ``nucl-*``, ``quant-ph`` and the legacy archives later merged into them, such as
  ``chao-dyn``, ``solv-int``, ``mtrl-th``, ``atom-ph``).

Every random choice draws from a NumPy generator seeded by ``SeedSequence([seed, stream])``, so a
given seed gives the same split on every platform, and different uses of one seed are independent.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Mapping, Sequence

import numpy as np

from gtl_verify.validation import check_int_range, check_real_range

SCHEMES = ("paper", "physics-broad")
DOMAINS = ("source", "target")
DATA_SUFFIXES = (".jsonl", ".json", ".jsonl.xz", ".json.xz", ".jsonl.gz", ".json.gz", ".jsonl.bz2", ".json.bz2")
DEFAULT_FRACTIONS = (1.0, 0.3, 0.05, 0.01)

# Archives of the physics family (the part of a category before the first dot).
PHYSICS_ARCHIVES = frozenset(
    {
        "physics", "astro-ph", "cond-mat", "gr-qc", "hep-ex", "hep-lat", "hep-ph", "hep-th",
        "math-ph", "nlin", "nucl-ex", "nucl-th", "quant-ph",
        # legacy archives, merged by arXiv into nlin, cond-mat and physics
        "chao-dyn", "solv-int", "patt-sol", "adap-org", "comp-gas",
        "mtrl-th", "supr-con",
        "chem-ph", "atom-ph", "acc-phys", "plasm-ph", "ao-sci", "bayes-an",
    }
)
PHYSICS_ARCHIVE_PREFIXES = ("astro-ph", "cond-mat", "hep-", "nlin", "nucl-", "physics")

# Random streams: independent uses of one seed.
_STREAM_SUBSAMPLE_SOURCE = 0
_STREAM_SUBSAMPLE_TARGET = 1
_STREAM_SPLIT = 2
_STREAM_FRACTIONS = 3
_STREAM_MOVE = 4


# ---------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class ArxivRecord:
    """One paper. ``categories`` keeps arXiv's order: the first entry is the primary category."""

    id: str
    title: str
    abstract: str
    categories: tuple[str, ...]
    update_date: str

    @property
    def primary_category(self) -> str:
        return self.categories[0]


@dataclass
class ReadStats:
    """Counts filled in while :func:`iter_records` runs (pass one in to read them afterwards).

    ``skipped_lines`` keeps ``(file, line number, reason)`` for the first ``keep`` skipped lines.
    """

    read: int = 0
    skipped: int = 0
    skipped_lines: list[tuple[str, int, str]] = field(default_factory=list)
    keep: int = 20

    def note_skip(self, path: Path, lineno: int, reason: str) -> None:
        self.skipped += 1
        if len(self.skipped_lines) < self.keep:
            self.skipped_lines.append((str(path), lineno, reason))


def clean_text(text: str) -> str:
    """Collapse every run of whitespace (newlines included) to one space and strip the ends."""
    return " ".join(text.split())


def _open_binary(path: Path) -> IO[bytes]:
    name = path.name.lower()
    if name.endswith(".xz") or name.endswith(".lzma"):
        return lzma.open(path, "rb")
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def _required_string(obj: dict, key: str) -> str:
    if key not in obj:
        raise ValueError(f"missing field {key!r}")
    value = obj[key]
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def _optional_string(obj: dict, key: str) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def parse_record(line: bytes | str) -> ArxivRecord:
    """Parse one JSON line; raise ValueError saying what is wrong with it.

    ``id``, ``abstract`` and ``categories`` are required strings (``categories`` non-empty);
    ``title`` and ``update_date`` may be absent.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    record_id = _required_string(obj, "id")
    abstract = _required_string(obj, "abstract")
    categories = tuple(_required_string(obj, "categories").split())
    if not categories:
        raise ValueError("field 'categories' is empty")
    return ArxivRecord(
        id=record_id.strip(),
        title=_optional_string(obj, "title"),
        abstract=abstract,
        categories=categories,
        update_date=_optional_string(obj, "update_date"),
    )


def iter_records(
    path: str | Path, on_error: str = "fail", stats: ReadStats | None = None
) -> Iterator[ArxivRecord]:
    """Yield the records of one JSON-lines file (plain, ``.xz``, ``.gz`` or ``.bz2``).

    Blank lines are ignored. A malformed line raises ``ValueError`` naming the file and the
    1-based line number (``on_error="fail"``), or is skipped and counted in ``stats``
    (``on_error="skip"``).
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"arXiv data file not found: {path}")
    stats = stats if stats is not None else ReadStats()
    with _open_binary(path) as handle:
        try:
            for lineno, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    record = parse_record(raw)
                except ValueError as exc:
                    if on_error == "fail":
                        raise ValueError(f"{path}: line {lineno}: {exc}") from None
                    stats.note_skip(path, lineno, str(exc))
                    continue
                stats.read += 1
                yield record
        except (lzma.LZMAError, EOFError, OSError) as exc:
            raise ValueError(f"{path}: cannot decompress or read the file: {exc}") from None


# ---------------------------------------------------------------------------------------------
# locating the data


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def data_dir_candidates() -> list[Path]:
    """Places searched for the arXiv files, in order: ``../shared/data/arxiv`` relative to the
    current directory and to the repository root, then ``shared/data/arxiv`` inside each."""
    cwd, root = Path.cwd(), _repo_root()
    candidates = [
        cwd.parent / "shared" / "data" / "arxiv",
        root.parent / "shared" / "data" / "arxiv",
        cwd / "shared" / "data" / "arxiv",
        root / "shared" / "data" / "arxiv",
    ]
    unique: list[Path] = []
    for path in candidates:
        path = path.resolve()
        if path not in unique:
            unique.append(path)
    return unique


def data_files(data_dir: str | Path) -> list[Path]:
    """The JSON-lines files of a data directory (sorted by name), or ``[data_dir]`` for a file."""
    data_dir = Path(data_dir)
    if data_dir.is_file():
        return [data_dir]
    if not data_dir.is_dir():
        raise FileNotFoundError(f"arXiv data path not found: {data_dir}")
    return sorted(p for p in data_dir.iterdir() if p.is_file() and p.name.lower().endswith(DATA_SUFFIXES))


def default_data_dir() -> Path | None:
    """The first existing candidate of :func:`data_dir_candidates` that holds data files, else None."""
    for path in data_dir_candidates():
        if path.is_dir() and data_files(path):
            return path
    return None


#: Environment variable naming the arXiv data folder (or file) when ``--data`` is not given.
DATA_ENV = "GTL_ARXIV_DATA"


def resolve_data_dir(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """``path`` when given (it must exist), else the folder named by ``$GTL_ARXIV_DATA`` in ``environ``
    (default ``os.environ``), else :func:`default_data_dir`; FileNotFoundError (naming ``--data`` and
    ``GTL_ARXIV_DATA``) when none is found, ValueError when the folder holds no data files."""
    environ = os.environ if environ is None else environ
    source = "--data (data.path)"
    if path is None and environ.get(DATA_ENV):
        path, source = environ[DATA_ENV], DATA_ENV
    if path is None:
        found = default_data_dir()
        if found is None:
            looked = ", ".join(str(p) for p in data_dir_candidates())
            raise FileNotFoundError(
                f"no arXiv data directory found (looked in {looked}); pass the directory holding "
                f"arxiv_cs.jsonl.xz and arxiv_physics.jsonl.xz with --data PATH or set {DATA_ENV}=PATH"
            )
        return found
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{source} does not exist: {path}")
    if not data_files(path):
        raise ValueError(f"{source} holds no JSON-lines files ({', '.join(DATA_SUFFIXES)}): {path}")
    return path


# ---------------------------------------------------------------------------------------------
# domains


def _check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    return scheme


def is_physics_category(category: str) -> bool:
    """True when ``category``'s archive belongs to the physics family (legacy archives included)."""
    archive = category.split(".", 1)[0]
    return archive in PHYSICS_ARCHIVES or archive.startswith(PHYSICS_ARCHIVE_PREFIXES)


def domain_of(categories: str | Sequence[str], scheme: str = "paper") -> str | None:
    """``"cs"``, ``"physics"`` or ``None`` for a paper, from its primary (first) category.

    ``categories`` is arXiv's space-separated string or a sequence of categories.
    """
    _check_scheme(scheme)
    cats = categories.split() if isinstance(categories, str) else list(categories)
    if not cats:
        return None
    primary = cats[0].strip()
    if primary.startswith("cs."):
        return "cs"
    if scheme == "paper":
        return "physics" if primary.startswith("physics.") else None
    return "physics" if is_physics_category(primary) else None


@dataclass
class DomainTexts:
    """Cleaned abstracts of the source (CS) and target (Physics) domains.

    ``available`` gives the number of distinct papers of each domain found before any
    ``max_per_domain`` subsampling; ``other`` counts papers in neither domain, ``duplicates``
    repeated ids (later copies dropped), ``skipped`` malformed lines (``on_error="skip"``).
    """

    source: list[str]
    target: list[str]
    scheme: str = "paper"
    available: dict[str, int] = field(default_factory=dict)
    other: int = 0
    duplicates: int = 0
    skipped: int = 0
    files: list[str] = field(default_factory=list)


def _generator(seed: int, stream: int) -> np.random.Generator:
    seed = check_int_range("seed", seed, 0)
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


class _Reservoir:
    """Uniform sample of at most ``capacity`` items from a stream (Algorithm R), seeded."""

    def __init__(self, capacity: int | None, rng: np.random.Generator):
        self.capacity = capacity
        self.rng = rng
        self.items: list[str] = []
        self.seen = 0

    def offer(self, item: str) -> None:
        self.seen += 1
        if self.capacity is None or len(self.items) < self.capacity:
            self.items.append(item)
            return
        j = int(self.rng.integers(0, self.seen))
        if j < self.capacity:
            self.items[j] = item


def load_domains(
    data_dir: str | Path,
    scheme: str = "paper",
    max_per_domain: int | None = None,
    seed: int = 0,
    on_error: str = "fail",
    min_chars: int = 1,
) -> DomainTexts:
    """Read every JSON-lines file of ``data_dir`` (or the single file ``data_dir``) and return the
    cleaned abstracts of each domain under ``scheme``.

    Papers are deduplicated by id across files (a combined file next to the split files is read
    once). Abstracts shorter than ``min_chars`` after cleaning are dropped. With
    ``max_per_domain`` each domain keeps a seeded uniform sample of that many papers (reservoir
    sampling, in sample order); without it, file order. An empty domain raises ValueError naming it.
    """
    _check_scheme(scheme)
    if max_per_domain is not None:
        max_per_domain = check_int_range("max_per_domain", max_per_domain, 1)
    seed = check_int_range("seed", seed, 0)
    min_chars = check_int_range("min_chars", min_chars, 1)
    files = data_files(data_dir)
    if not files:
        raise ValueError(f"data_dir holds no JSON-lines files ({', '.join(DATA_SUFFIXES)}): {data_dir}")
    reservoirs = {
        "cs": _Reservoir(max_per_domain, _generator(seed, _STREAM_SUBSAMPLE_SOURCE)),
        "physics": _Reservoir(max_per_domain, _generator(seed, _STREAM_SUBSAMPLE_TARGET)),
    }
    seen_ids: set[str] = set()
    stats = ReadStats()
    other = duplicates = 0
    for path in files:
        for record in iter_records(path, on_error=on_error, stats=stats):
            if record.id in seen_ids:
                duplicates += 1
                continue
            seen_ids.add(record.id)
            domain = domain_of(record.categories, scheme)
            if domain is None:
                other += 1
                continue
            text = clean_text(record.abstract)
            if len(text) < min_chars:
                other += 1
                continue
            reservoirs[domain].offer(text)
    for domain, name in (("cs", "source (cs.*)"), ("physics", "target (physics)")):
        if not reservoirs[domain].items:
            raise ValueError(
                f"the {name} domain is empty under scheme {scheme!r} in {data_dir} "
                f"(files: {', '.join(p.name for p in files)})"
            )
    return DomainTexts(
        source=reservoirs["cs"].items,
        target=reservoirs["physics"].items,
        scheme=scheme,
        available={"source": reservoirs["cs"].seen, "target": reservoirs["physics"].seen},
        other=other,
        duplicates=duplicates,
        skipped=stats.skipped,
        files=[str(p) for p in files],
    )


def count_domains(data_dir: str | Path, on_error: str = "fail") -> dict[str, dict[str, int]]:
    """Papers per domain under every scheme, in one pass: ``{scheme: {"source", "target", "other"}}``."""
    counts = {scheme: {"source": 0, "target": 0, "other": 0} for scheme in SCHEMES}
    seen: set[str] = set()
    names = {"cs": "source", "physics": "target", None: "other"}
    for path in data_files(data_dir):
        for record in iter_records(path, on_error=on_error):
            if record.id in seen:
                continue
            seen.add(record.id)
            for scheme in SCHEMES:
                counts[scheme][names[domain_of(record.categories, scheme)]] += 1
    return counts


# ---------------------------------------------------------------------------------------------
# splits


def _check_texts(name: str, texts: Sequence[str]) -> list[str]:
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{name}[{i}] must be a string, got {type(text).__name__}")
    return texts


def split(texts: Sequence[str], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """Seeded train/validation split: ``n_val = round(val_fraction * n)`` texts drawn without
    replacement go to validation, the rest (in their original order) to training.

    Both parts must be non-empty.
    """
    texts = _check_texts("texts", texts)
    val_fraction = check_real_range("val_fraction", val_fraction, 0.0, 1.0, open_low=True)
    n = len(texts)
    n_val = int(round(val_fraction * n))
    if n_val < 1 or n_val >= n:
        raise ValueError(
            f"val_fraction={val_fraction} of {n} texts gives {n_val} validation and {n - n_val} "
            "training texts; both must be at least 1"
        )
    perm = _generator(seed, _STREAM_SPLIT).permutation(n)
    val_idx = np.sort(perm[:n_val])
    train_idx = np.sort(perm[n_val:])
    return [texts[i] for i in train_idx], [texts[i] for i in val_idx]


def fraction_size(fraction: float, n: int) -> int:
    """Number of texts kept for ``fraction`` of ``n``: ``max(1, round(fraction * n))``."""
    return max(1, min(n, int(round(fraction * n))))


def target_fractions(
    train: Sequence[str], fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
) -> dict[float, list[str]]:
    """Nested seeded subsets of ``train``: every subset is a prefix of one seeded permutation,
    so the subset of a smaller fraction lies inside that of every larger one.

    Each subset keeps ``fraction_size(f, n)`` texts, listed in their original order.
    """
    train = _check_texts("train", train)
    if not train:
        raise ValueError("train must hold at least one text, got 0")
    fractions = list(fractions)
    if not fractions:
        raise ValueError("fractions must not be empty")
    for f in fractions:
        check_real_range("fraction", f, 0.0, 1.0, open_low=True)
    perm = _generator(seed, _STREAM_FRACTIONS).permutation(len(train))
    out: dict[float, list[str]] = {}
    for f in fractions:
        idx = np.sort(perm[: fraction_size(float(f), len(train))])
        out[float(f)] = [train[i] for i in idx]
    return out


def move_target_into_source(
    source: Sequence[str], target: Sequence[str], fraction: float, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Overlap ablation: move ``round(fraction * len(target))`` seeded target texts into the source.

    Returns ``(source + moved, target - moved)``; the moved texts are appended to the source in
    their target order and removed from the target, which keeps its order and must stay non-empty.
    ``fraction = 0`` returns copies of both lists.
    """
    source = _check_texts("source", source)
    target = _check_texts("target", target)
    fraction = check_real_range("fraction", fraction, 0.0, 1.0)
    n_move = int(round(fraction * len(target)))
    if n_move >= len(target):
        raise ValueError(
            f"fraction={fraction} would move all {len(target)} target texts into the source; "
            "at least one must stay in the target"
        )
    if n_move == 0:
        return list(source), list(target)
    perm = _generator(seed, _STREAM_MOVE).permutation(len(target))
    moved = np.zeros(len(target), dtype=bool)
    moved[perm[:n_move]] = True
    return (
        list(source) + [t for t, m in zip(target, moved) if m],
        [t for t, m in zip(target, moved) if not m],
    )


def summary(domains: DomainTexts) -> dict[str, object]:
    """Sizes and mean character lengths of a :class:`DomainTexts`, for logs and result files."""

    def mean_chars(texts: list[str]) -> float:
        return float(np.mean([len(t) for t in texts])) if texts else math.nan

    return {
        "scheme": domains.scheme,
        "source": len(domains.source),
        "target": len(domains.target),
        "available": dict(domains.available),
        "other": domains.other,
        "duplicates": domains.duplicates,
        "skipped": domains.skipped,
        "source_mean_chars": mean_chars(domains.source),
        "target_mean_chars": mean_chars(domains.target),
    }
