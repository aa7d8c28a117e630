"""Small building blocks for Markdown reports: tables, provenance, figures, atomic writing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gtl_verify.provenance import atomic_write_text  # noqa: E402

#: One label per sequence-level metric, shared by every report that shows it (the results key in brackets).
MC_KL_LABEL = "MC KL (nats)"  # [exact_kl] in markov-benchmark cells, [mc_kl] in validation rows
EXACT_KL_LABEL = "exact KL (nats)"  # [exact_kl] in validation rows: from an exact law, enumerable settings only
CROSS_ENTROPY_GAP_LABEL = "cross-entropy gap (nats/token)"

#: What each label measures, and its sign: the reports' metric notes.
METRIC_NOTES = {
    MC_KL_LABEL: f"**{MC_KL_LABEL}**: Monte-Carlo estimate of KL(sampler || q) = E_x~sampler[log s(x) - log q(x)] over the "
    "drawn samples, with the sampler's exact log-density s(x) under its fixed left-to-right reveal order "
    "(markov/metrics.py `mc_kl`); exact up to Monte-Carlo error, not an enumeration; `-` for a sampler "
    "without a fixed order (a learned planner), whose density is not computed.",
    EXACT_KL_LABEL: f"**{EXACT_KL_LABEL}**: KL(sampler law || q) from the sampler's exact output law (enumerable lengths only).",
    CROSS_ENTROPY_GAP_LABEL: f"**{CROSS_ENTROPY_GAP_LABEL}**: mean -log q(x)/L over the samples minus the exact per-token entropy "
    "H_L(q)/L of the target; 0 in expectation for exact samples. A negative gap means the samples sit on "
    "sequences more likely under q than q's typical ones: mode-seeking, low diversity (it is not better than 0).",
    "sampling_s": "**sampling_s**: wall seconds of the cell's sampling, measured in the invocation that computed the "
    "cell, under that invocation's load and worker count (a run folder resumed or filled by several invocations "
    "mixes them); compare costs by the counted passes beside it, and seconds only within one invocation.",
    "ratio_passes_per_sequence": "**ratio_passes_per_sequence**: counted passes of a sequence-level ratio network per "
    "generated sequence (one per candidate sequence scored).",
    "single_site_passes_per_sequence": "**single_site_passes_per_sequence**: counted passes of a single-site ratio "
    "model per generated sequence (one per step and row still holding a mask: L for L reveals).",
}


def metric_notes(labels: Iterable[str]) -> str:
    """The notes of the metrics ``labels`` (keys of :data:`METRIC_NOTES`; others skipped) as a Markdown list."""
    return "\n".join(f"- {METRIC_NOTES[label]}" for label in labels if label in METRIC_NOTES)



def fmt(value: Any, digits: int = 4) -> str:
    """Format a table cell: floats with ``digits`` significant digits, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.{max(digits - 1, 1)}e}"
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 4) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(escape_cell(fmt(c, digits)) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def escape_cell(text: str) -> str:
    """A table cell on one line with its pipes escaped."""
    return " ".join(str(text).splitlines()).replace("|", "\\|")  # every line break: \n, \r, \r\n, \v, \u2028 ...


#: A configuration longer than this many lines of JSON is collapsed in a <details> block.
CONFIG_INLINE_LINES = 15


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def wall_time_item(meta: dict[str, Any]) -> tuple[str, str]:
    """The wall-time line of the provenance as (label, text).

    ``meta["wall_time_parts_s"]`` (seconds per invocation, oldest first, when the run recorded them)
    gives the total, and says the run was resumed when there is more than one part. Otherwise
    ``meta["wall_time_s"]`` is all there is, and it covers only the invocation that wrote the results
    file, so it is labelled as such.
    """
    parts = meta.get("wall_time_parts_s")
    if isinstance(parts, list) and parts and all(_number(p) for p in parts):
        total = math.fsum(parts)
        if len(parts) == 1:
            return "Wall time", f"{total:.1f} s (one invocation)"
        each = ", ".join(f"{p:.1f} s" for p in parts)
        return "Wall time", f"{total:.1f} s in total over {len(parts)} invocations (the run was resumed; per invocation: {each})"
    wall = meta.get("wall_time_s")
    return "Wall time of the last invocation", f"{wall:.1f} s" if _number(wall) else "-"


def config_changes_text(changes: list[Any]) -> str:
    """The config changes a run folder accepted (``--allow-config-change``), oldest first, as one
    line: components computed before a change were reused only where their settings were unchanged,
    so a reader learns that the results were not all computed under the config shown below."""
    def one(change: Any) -> str:
        if not isinstance(change, dict):
            return escape_cell(str(change))
        changed = change.get("changed")
        keys = ", ".join(map(str, changed)) if isinstance(changed, (list, tuple)) else str(changed or "")
        return escape_cell(f"{change.get('from', '?')} -> {change.get('to', '?')}: {keys or '-'}")
    return (f"{len(changes)} time(s), accepted with --allow-config-change (components whose settings did not "
            f"change were reused; the config below is the last): " + "; ".join(one(c) for c in changes))


def provenance_block(meta: dict[str, Any], regenerate: str | None = None) -> str:
    """The provenance of a run as a Markdown list.

    Command, commit, device, seeds, wall time (:func:`wall_time_item`), date, package versions, the
    configuration (as JSON, collapsed in a <details> block beyond CONFIG_INLINE_LINES lines), the
    config changes the run folder accepted (``meta["config_changes"]``, :func:`config_changes_text`), the
    notes added to the results file by whoever ran it (``meta["notes"]``: a list of sentences, e.g. that
    cells were copied in from another run folder, which the wall time cannot know) and,
    when ``regenerate`` is given, the command that rebuilds the report from its results file.
    """
    versions = meta.get("packages") or {}
    packages = ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) if isinstance(versions, dict) else str(versions)
    seeds = meta.get("seeds") or []
    items = [
        ("Command", f"`{escape_cell(meta.get('command', '?'))}`"),
        ("Commit", f"`{meta.get('git_commit', meta.get('commit', '?'))}`"),
        ("Device", meta.get("device", "?")),
        ("Seeds", (", ".join(map(str, seeds)) if isinstance(seeds, (list, tuple)) else str(seeds)) or "-"),
        wall_time_item(meta),
        ("Date (UTC)", meta.get("date_utc", "-")),
        ("Packages", packages or "-"),
    ]
    notes = meta.get("notes")
    notes = [notes] if isinstance(notes, str) else notes
    if isinstance(notes, list) and notes:
        items.append(("Notes", " ".join(escape_cell(str(n)) for n in notes if n is not None)))
    changes = meta.get("config_changes")
    if isinstance(changes, list) and changes:
        items.append(("Config changed during the run", config_changes_text(changes)))
    if regenerate:
        items.append(("Regenerate this report", f"`{regenerate}`"))
    text = "\n".join(f"- **{k}**: {v}" for k, v in items)
    config = meta.get("config")
    if not config:
        return text + "\n- **Config**: -"
    dump = json.dumps(config, indent=2, sort_keys=True, default=str)
    block = "```json\n" + dump + "\n```"
    lines = dump.count("\n") + 1
    if lines <= CONFIG_INLINE_LINES:
        return text + "\n- **Config**:\n\n" + block
    return (text + f"\n- **Config**: {lines} lines of JSON, collapsed below.\n\n<details>\n<summary>Configuration of the run "
            f"(JSON, {lines} lines)</summary>\n\n" + block + "\n\n</details>")


def fmt_sci(value: Any, digits: int = 2) -> str:
    """Scientific notation (``1.23e-11``) for residuals; None as a dash."""
    if value is None:
        return "-"
    value = float(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}e}"


def figure_markdown(relative_path: str | Path, caption: str) -> str:
    """A Markdown image with its caption in italics below it."""
    return f"![{caption}]({Path(relative_path).as_posix()})\n\n*{caption}*"


def save_figure(fig: "plt.Figure", path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG (creating folders) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    if path.stat().st_size == 0:
        raise OSError(f"figure {path} was written empty")
    return path


def compose_report(title: str, sections: Sequence[tuple[str, str]], meta: dict[str, Any] | None = None,
                   summary: str | None = None, regenerate: str | None = None) -> str:
    """The Markdown text of a report: title, optional summary, the sections (results: tables and
    figures) and, last, the provenance of the run."""
    parts = [f"# {title}\n"]
    if summary:
        parts.append(summary.strip() + "\n")
    parts += [f"## {heading}\n\n{body.strip()}\n" for heading, body in sections]
    if meta is not None:
        parts.append("## Provenance\n\n" + provenance_block(meta, regenerate) + "\n")
    return "\n".join(parts)


def write_report(path: str | Path, title: str, sections: Sequence[tuple[str, str]], meta: dict[str, Any] | None = None,
                 summary: str | None = None, regenerate: str | None = None) -> Path:
    """Write a Markdown report (see :func:`compose_report`) atomically."""
    return atomic_write_text(path, compose_report(title, sections, meta, summary, regenerate))
