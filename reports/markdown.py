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
    return " ".join(str(text).split("\n")).replace("|", "\\|")


def provenance_block(meta: dict[str, Any], regenerate: str | None = None) -> str:
    """The provenance of a run as a Markdown list.

    Command, commit, device, seeds, wall time, date, package versions, the configuration (as JSON)
    and, when ``regenerate`` is given, the command that rebuilds the report from its results file.
    """
    versions = meta.get("packages") or {}
    packages = ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) if isinstance(versions, dict) else str(versions)
    wall = meta.get("wall_time_s")
    seeds = meta.get("seeds") or []
    items = [
        ("Command", f"`{meta.get('command', '?')}`"),
        ("Commit", f"`{meta.get('git_commit', meta.get('commit', '?'))}`"),
        ("Device", meta.get("device", "?")),
        ("Seeds", (", ".join(map(str, seeds)) if isinstance(seeds, (list, tuple)) else str(seeds)) or "-"),
        ("Wall time", f"{wall:.1f} s" if isinstance(wall, (int, float)) and not isinstance(wall, bool) else "-"),
        ("Date (UTC)", meta.get("date_utc", "-")),
        ("Packages", packages or "-"),
    ]
    if regenerate:
        items.append(("Regenerate this report", f"`{regenerate}`"))
    text = "\n".join(f"- **{k}**: {v}" for k, v in items)
    config = meta.get("config")
    if config:
        text += "\n- **Config**:\n\n```json\n" + json.dumps(config, indent=2, sort_keys=True, default=str) + "\n```"
    else:
        text += "\n- **Config**: -"
    return text


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
                   summary: str | None = None, provenance_first: bool = False,
                   regenerate: str | None = None) -> str:
    """The Markdown text of a report: title, optional summary, sections and provenance.

    With ``provenance_first`` the provenance follows the summary instead of closing the report.
    """
    parts = [f"# {title}\n"]
    if summary:
        parts.append(summary.strip() + "\n")
    prov = None if meta is None else "## Provenance\n\n" + provenance_block(meta, regenerate) + "\n"
    if prov and provenance_first:
        parts.append(prov)
    parts += [f"## {heading}\n\n{body.strip()}\n" for heading, body in sections]
    if prov and not provenance_first:
        parts.append(prov)
    return "\n".join(parts)


def write_report(path: str | Path, title: str, sections: Sequence[tuple[str, str]], meta: dict[str, Any] | None = None,
                 summary: str | None = None, provenance_first: bool = False, regenerate: str | None = None) -> Path:
    """Write a Markdown report (see :func:`compose_report`) atomically."""
    return atomic_write_text(path, compose_report(title, sections, meta, summary, provenance_first, regenerate))
