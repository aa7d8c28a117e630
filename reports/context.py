"""What a renderer receives (where to put figures) and what it returns (title, summary, sections)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Context:
    """Where one report goes: ``out_dir/<name>.md`` with figures ``out_dir/figures/<name>-<figure>.png``."""

    results_path: Path
    out_dir: Path
    name: str
    figures: list[Path] = field(default_factory=list)

    def figure_path(self, figure: str) -> tuple[Path, str]:
        """(absolute path to write, path relative to the Markdown file) for a figure called ``figure``."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", figure).strip("-") or "figure"
        rel = f"figures/{self.name}-{slug}.png"
        path = self.out_dir / rel
        if path in self.figures:
            raise ValueError(f"figure name {figure!r} used twice in report {self.name}")
        self.figures.append(path)
        return path, rel


@dataclass
class Rendered:
    """A rendered report before writing: title, a short summary and the (heading, body) sections."""

    title: str
    summary: str
    sections: list[tuple[str, str]]
