"""The figures of the reports: line plots with error bars over seeds, heatmaps, grouped bars.

Every function draws one small PNG (matplotlib Agg, dpi 110) with a title, labelled axes and a
legend, writes it through :func:`reports.markdown.save_figure` and returns its path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .markdown import plt, save_figure
from .stats import Summary

DPI = 110
MARKERS = "osD^v<>ph*"
#: Line colours: matplotlib's ten, then five more of distinct hue (a twelfth series must not repeat the first).
COLOURS = (*plt.get_cmap("tab10").colors, "black", "darkgoldenrod", "navy", "lime", "magenta")
#: Lines a :func:`line_plot` legend may hold inside the axes; more go beside them (a wider figure).
LEGEND_INSIDE_MAX = 6


def _is_numeric(values: Sequence[object]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def line_plot(path: str | Path, title: str, xlabel: str, ylabel: str,
              series: Mapping[str, Sequence[tuple[object, Summary]]], *, logx: bool = False, logy: bool = False,
              reference: Mapping[str, Sequence[tuple[object, float]]] | None = None,
              figsize: tuple[float, float] = (6.0, 4.0)) -> Path:
    """One line per series of means with asymmetric error bars from each Summary's interval [lo, hi]
    (see :mod:`reports.stats`: they stay inside the metric's range, so a log axis never meets a
    negative end).

    ``reference`` draws extra dashed lines without error bars (published values). Non-numeric x
    values become categories in order of first appearance; log axes then apply to y only.
    """
    many = len(series) + len(reference or {}) > LEGEND_INSIDE_MAX
    fig, ax = plt.subplots(figsize=(figsize[0] + 2.2, figsize[1]) if many else figsize)
    all_x = [x for pts in series.values() for x, _ in pts] + [x for pts in (reference or {}).values() for x, _ in pts]
    numeric = _is_numeric(all_x)
    categories = list(dict.fromkeys(map(str, all_x))) if not numeric else []

    def pos(x: object) -> float:
        return float(x) if numeric else float(categories.index(str(x)))

    for i, (name, pts) in enumerate(series.items()):
        pts = sorted(pts, key=lambda p: pos(p[0]))
        xs = np.array([pos(x) for x, _ in pts])
        ys = np.array([s.mean for _, s in pts])
        yerr = np.array([s.error_bar() for _, s in pts], dtype=float).reshape(-1, 2).T
        ax.errorbar(xs, ys, yerr=yerr, marker=MARKERS[i % len(MARKERS)], color=COLOURS[i % len(COLOURS)], capsize=3,
                    label=str(name))
    for name, pts in (reference or {}).items():
        pts = sorted(pts, key=lambda p: pos(p[0]))
        ax.plot([pos(x) for x, _ in pts], [y for _, y in pts], linestyle="--", marker="x", alpha=0.8, label=str(name))
    if numeric and logx and all(pos(x) > 0 for x in all_x):
        ax.set_xscale("log")
        ticks = sorted({pos(x) for x in all_x})
        if len(ticks) <= 8:
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
            ax.minorticks_off()
    if not numeric:
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels(categories, rotation=30 if max(map(len, categories), default=0) > 6 else 0, ha="right" if max(map(len, categories), default=0) > 6 else "center")
    means = [s.mean for pts in series.values() for _, s in pts if not math.isnan(s.mean)]
    means += [y for pts in (reference or {}).values() for _, y in pts]
    if logy and means and min(means) > 0:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    if series or reference:  # beside the axes when it would cover the lines
        ax.legend(fontsize=8, **({"loc": "center left", "bbox_to_anchor": (1.01, 0.5)} if many else {}))
    return save_figure(fig, path, dpi=DPI)


def heatmaps(path: str | Path, title: str, panels: Sequence[tuple[str, Sequence[Sequence[float]]]],
             *, xlabel: str = "next token", ylabel: str = "current token", annotate: bool | None = None) -> Path:
    """Matrices side by side on one colour scale [0, max], each cell annotated with its value (two decimals).

    ``annotate`` defaults to True up to 12 x 12.
    """
    if not panels:
        raise ValueError("heatmaps needs at least one panel")
    mats = [np.asarray(m, dtype=float) for _, m in panels]
    side = max(m.shape[0] for m in mats)
    annotate = side <= 12 if annotate is None else annotate
    finite = [float(np.max(m[np.isfinite(m)])) for m in mats if np.isfinite(m).any()]
    vmax = max(finite) if finite and max(finite) > 0 else 1.0
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(min(2.6 * n + 0.8, 18), 2.9), squeeze=False)
    image = None
    for i, (ax, (name, _), m) in enumerate(zip(axes[0], panels, mats)):
        image = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=vmax)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        if i == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        ax.set_xticks(range(m.shape[1]))
        ax.set_yticks(range(m.shape[0]))
        ax.tick_params(labelsize=7)
        if annotate:
            for (r, c), v in np.ndenumerate(m):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if v < 0.6 * vmax else "black")
    fig.suptitle(title, fontsize=10)
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="probability")
    fig.set_layout_engine("none")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    if path.stat().st_size == 0:
        raise OSError(f"figure {path} was written empty")
    return path


def grouped_bars(path: str | Path, title: str, groups: Sequence[str], bars: Mapping[str, Sequence[float | None]],
                 *, xlabel: str, ylabel: str, logy: bool | None = None) -> Path:
    """Bars grouped by ``groups`` (x), one colour per key of ``bars``; None leaves a gap.

    ``logy`` defaults to a log axis when the positive values span more than two decades; zeros are
    then drawn at a floor one decade below the smallest positive value (stated in the title).
    """
    values = [v for vs in bars.values() for v in vs if v is not None and math.isfinite(v)]
    positive = [v for v in values if v > 0]
    if logy is None:
        logy = bool(positive) and max(positive) / min(positive) > 100
    floor = min(positive) / 10 if positive else 1e-16
    fig, ax = plt.subplots(figsize=(max(5.5, 0.5 * len(groups) * max(len(bars), 1) + 2), 4))
    width = 0.8 / max(len(bars), 1)
    x = np.arange(len(groups))
    floored = False
    for i, (name, vs) in enumerate(bars.items()):
        ys = []
        for v in vs:
            if v is None or not math.isfinite(v):
                ys.append(np.nan)
            elif logy and v <= 0:
                ys.append(floor)
                floored = True
            else:
                ys.append(v)
        ax.bar(x + (i - (len(bars) - 1) / 2) * width, ys, width, label=str(name))
    ax.set_xticks(x)
    longest = max(map(len, groups), default=0)
    ax.set_xticklabels(groups, rotation=30 if longest > 8 else 0, ha="right" if longest > 8 else "center", fontsize=8)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title + (f"\n(zeros drawn at {floor:.0e})" if floored else ""), fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    if bars:
        ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=DPI)


#: Bar colours of :func:`residual_bars`, with their legend labels.
RESIDUAL_COLOURS = {
    "holds": ("tab:green", "identity holds (residual within tolerance)"),
    "fails-as-predicted": ("tab:blue", "fails as the theory predicts (residual above tolerance)"),
    "unexpected": ("tab:red", "unexpected: an identity off, or a predicted failure not seen"),
}


def residual_outcome(residual: float, tolerance: float, expect: str) -> str:
    """The key of RESIDUAL_COLOURS for one check: ``expect`` is ``"holds"`` (the residual must be at
    most the tolerance) or ``"fails"`` (a separation: the residual must exceed it); NaN is unexpected."""
    if expect not in ("holds", "fails"):
        raise ValueError(f"expect must be 'holds' or 'fails', got {expect!r}")
    if math.isnan(residual):
        return "unexpected"
    within = abs(residual) <= tolerance
    if expect == "holds":
        return "holds" if within else "unexpected"
    return "unexpected" if within else "fails-as-predicted"


def residual_bars(path: str | Path, title: str, names: Sequence[str], residuals: Sequence[float],
                  tolerances: Sequence[float], expects: Sequence[str] | None = None, *, floor: float = -20.0) -> Path:
    """log10 residual per check (bars) with log10 tolerance as black ticks.

    Bar colour by :func:`residual_outcome` (``expects`` defaults to ``"holds"`` for every check):
    green an identity that holds, blue a separation that fails as the theory predicts (its residual
    must exceed the tolerance), red anything unexpected. A zero residual is drawn at ``floor``
    (log10 units), a NaN residual as a red bar at 0.
    """
    expects = list(expects) if expects is not None else ["holds"] * len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 4.6))
    x = np.arange(len(names))
    outcomes = [residual_outcome(r, t, e) for r, t, e in zip(residuals, tolerances, expects)]
    logs = [0.0 if math.isnan(r) else (max(math.log10(abs(r)), floor) if r != 0 else floor) for r in residuals]
    bottom = floor - 1  # a zero residual shows as a one-decade stub above the axis
    for key, (colour, label) in RESIDUAL_COLOURS.items():
        idx = [i for i, o in enumerate(outcomes) if o == key]
        if idx:
            ax.bar(x[idx], [logs[i] - bottom for i in idx], bottom=bottom, color=colour, label=label)
    tol_logs = [math.log10(t) if t > 0 else floor for t in tolerances]
    ax.set_ylim(bottom, max(logs + tol_logs, default=0.0) + 0.45 * (max(logs + tol_logs, default=0.0) - bottom))  # room for the legend
    ax.scatter(x, tol_logs, marker="_", s=400, color="black", linewidths=2, label="log10 tolerance", zorder=3)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("log10 residual (dimensionless)")
    ax.set_xlabel("check")
    ax.set_title(title + f"\n(zero residual drawn at 1e{int(floor)})", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return save_figure(fig, path, dpi=DPI)
