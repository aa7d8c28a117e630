"""Small building blocks for Markdown reports: tables, provenance, figures, atomic writing."""

from __future__ import annotations

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
    lines += ["| " + " | ".join(fmt(c, digits) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def provenance_block(meta: dict[str, Any]) -> str:
    """The provenance of a run as a Markdown list (command, commit, device, seeds, time, versions)."""
    packages = ", ".join(f"{k} {v}" for k, v in sorted(meta.get("packages", {}).items()))
    wall = meta.get("wall_time_s")
    items = [
        ("Command", f"`{meta.get('command', '?')}`"),
        ("Commit", f"`{meta.get('git_commit', '?')}`"),
        ("Device", meta.get("device", "?")),
        ("Seeds", ", ".join(map(str, meta.get("seeds", []))) or "-"),
        ("Wall time", f"{wall:.1f} s" if isinstance(wall, (int, float)) else "-"),
        ("Date (UTC)", meta.get("date_utc", "-")),
        ("Packages", packages or "-"),
    ]
    return "\n".join(f"- **{k}**: {v}" for k, v in items)


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


def write_report(path: str | Path, title: str, sections: Sequence[tuple[str, str]], meta: dict[str, Any] | None = None) -> Path:
    """Write a Markdown report: a title, the sections (heading, body) and the provenance."""
    parts = [f"# {title}\n"]
    parts += [f"## {heading}\n\n{body.strip()}\n" for heading, body in sections]
    if meta is not None:
        parts.append("## Provenance\n\n" + provenance_block(meta) + "\n")
    return atomic_write_text(path, "\n".join(parts))
