"""Build Markdown reports (with PNG figures) from results files.

    build_report("runs/markov/results.json", "reports/")   # -> reports/results.md, reports/figures/results-*.png

Each report starts with a title and a short summary, then the kind's tables and figures, and ends
with the provenance of the run (command, commit, device, config, seeds, wall time, package versions,
and the command that regenerates the report).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from .context import Context, Rendered
from .markdown import write_report
from .render_basic import render_benchmark, render_theory, render_validation
from .render_language import render_language
from .render_markov import render_markov
from .render_ratios import render_ratios
from .schema import ResultsError, load_envelope

Renderer = Callable[[dict[str, Any], dict[str, Any], Context], Rendered]

#: kind -> renderer(results, meta, context) -> Rendered
RENDERERS: dict[str, Renderer] = {
    "theory": render_theory,
    "markov-benchmark": render_markov,
    "ratios": render_ratios,
    "validation": render_validation,
    "language": render_language,
    "benchmark": render_benchmark,
}


def _check_kind(path: Path, data: dict[str, Any]) -> Renderer:
    kind = data["kind"]
    if kind not in RENDERERS:
        raise ResultsError(f"results file {path}: unknown kind {kind!r} (known kinds: {', '.join(sorted(RENDERERS))})")
    return RENDERERS[kind]


def build_report(results_path: str | Path, out_dir: str | Path, *, name: str | None = None) -> Path:
    """Render one results file to ``out_dir/<name>.md`` (``name`` defaults to the file's stem).

    Figures go to ``out_dir/figures/<name>-*.png``. Raises ResultsError (a ValueError) naming the file
    for a malformed file, a missing or mistyped field, or an unknown kind; FileNotFoundError when the
    file does not exist. Nothing is written when the file does not validate.
    """
    path = Path(results_path)
    out_dir = Path(out_dir)
    data = load_envelope(path)
    renderer = _check_kind(path, data)
    ctx = Context(results_path=path, out_dir=out_dir, name=name or path.stem)
    try:
        rendered = renderer(data["results"], data["meta"], ctx)
    except ResultsError as exc:
        for fig in ctx.figures:  # a renderer validates before drawing; remove anything drawn regardless
            fig.unlink(missing_ok=True)
        raise ResultsError(f"results file {path}: {exc}") from None
    regenerate = f"gtl report {path.as_posix()} --out {out_dir.as_posix()}"
    summary = rendered.summary.strip() + f"\n\nResults file: `{path.as_posix()}` (kind `{data['kind']}`)."
    return write_report(out_dir / f"{ctx.name}.md", rendered.title, rendered.sections, data["meta"],
                        summary=summary, regenerate=regenerate)


def _is_envelope_candidate(path: Path) -> bool:
    """True for a JSON file that claims to be a results envelope (an object with a ``kind`` key) or
    that cannot be parsed (so that its error is reported); other JSON files in a folder are skipped."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return True
    return isinstance(data, dict) and "kind" in data


def find_results(paths: Iterable[str | Path], *, log: Callable[[str], None] | None = None) -> list[Path]:
    """Expand folders into the results files they hold (``*.json``, recursively, hidden entries skipped).

    Files given explicitly are always kept (and validated later); JSON files found in folders that are
    not results envelopes are skipped with a note. A path that does not exist raises FileNotFoundError,
    a folder without results files raises ValueError.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = []
            for f in sorted(p.rglob("*.json")):
                if any(part.startswith(".") for part in f.relative_to(p).parts) or not f.is_file():
                    continue
                if _is_envelope_candidate(f):
                    found.append(f)
                else:
                    log(f"skipping {f}: not a results file (no 'kind')")
            if not found:
                raise ValueError(f"no results files (*.json with a 'kind') found in folder {p}")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"results file not found: {p}")
    unique: dict[Path, Path] = {}
    for p in out:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def report_names(paths: list[Path]) -> list[str]:
    """Report names: the file stem, prefixed by parent folders when stems collide (``run1-results``)."""
    names = [p.stem for p in paths]
    depth = 0
    while len(set(names)) < len(names) and depth < 8:
        depth += 1
        names = ["-".join([*p.resolve().parent.parts[-depth:], p.stem]).lstrip("/-") for p in paths]
    if len(set(names)) < len(names):
        names = [f"{n}-{i}" for i, n in enumerate(names)]
    return names


def build_reports(paths: Iterable[str | Path], out_dir: str | Path) -> list[Path]:
    """Render several results files (folders are searched for ``*.json`` results) into ``out_dir``.

    Every file is read and its kind checked before any report is written.
    """
    files = find_results(paths)
    for f in files:
        _check_kind(f, load_envelope(f))
    return [build_report(f, out_dir, name=n) for f, n in zip(files, report_names(files))]
