"""Report of the ratio-estimation benchmark (kind ``ratios``, written by ``gtl markov ratios``).

Per preset: a table per estimator x n target (at the grid's largest step count) of the single-site
guidance TV (headline), its target-context part, the level-free log-ratio RMSE and the GTL
transition KL, each a mean over seeds with its bootstrap percentile interval (:mod:`reports.stats`);
whether each estimator's TV falls monotonically with n; the TV by masking level; and figures of TV
and KL against n, TV against the masking level and TV and KL against training steps.
"""

from __future__ import annotations

import math

from collections import defaultdict
from typing import Any

from gtl_verify.results import RatiosResults

from . import schema as S
from .context import Context, Rendered
from .figures import line_plot
from .markdown import figure_markdown, fmt, markdown_table
from .stats import INTERVAL_HEADER, INTERVAL_NAME, Summary, summarize

EXACT = "exact-ratio"


def _levels(c: dict[str, Any], where: str) -> list[dict[str, Any]]:
    return [{"domain": S.text(g, "domain", w), "t": S.number(g, "t", w), "tv": S.number(g, "single_site_tv", w, nullable=True),
             "positions": S.integer(g, "positions", w)} for w, g in S.records(c, "levels", where, required=True)]


def _row(c: dict[str, Any], where: str) -> dict[str, Any]:
    metrics = S.mapping(c, "metrics", where, required=True)
    by_domain = S.mapping(c, "single_site_tv_by_domain", where, required=True)
    return {"preset": S.text(c, "preset", where), "seed": S.integer(c, "seed", where), "estimator": S.text(c, "estimator", where),
            "tv": S.number(c, "single_site_tv", where, nullable=True), "rmse": S.number(c, "log_ratio_rmse", where, nullable=True),
            "tv_target": S.number(by_domain, "target", f"{where}.single_site_tv_by_domain", nullable=True),
            "kl": S.number(metrics, "transition_kl", f"{where}.metrics"), "levels": _levels(c, where)}


def _parse(results: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    results = RatiosResults.from_dict(results).to_dict()
    cells = []
    for where, c in S.records(results, "cells", "results", required=True):
        row = _row(c, where)
        row.update(n=S.integer(c, "n_target", where), steps=S.integer(c, "steps", where), fit_s=S.number(c, "fit_s", where))
        cells.append(row)
    reference = [_row(c, w) for w, c in S.records(results, "reference", "results")]
    return cells, reference


def level_tv(levels: list[dict[str, Any]], t: float) -> float | None:
    """Single-site TV at masking level ``t``, both domains, weighted by masked positions."""
    groups = [g for g in levels if g["t"] == t and g["positions"] and g["tv"] is not None]
    n = sum(g["positions"] for g in groups)
    return sum(g["tv"] * g["positions"] for g in groups) / n if n else None


def _summaries(cells: list[dict[str, Any]], key: Any) -> dict[Any, dict[str, Summary]]:
    values: dict[Any, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for c in cells:
        for metric in ("tv", "tv_target", "rmse", "kl", "fit_s"):
            values[key(c)][metric].append(c.get(metric))
    return {k: {m: summarize(v) for m, v in d.items()} for k, d in values.items()}


def monotone(points: list[tuple[int, Summary]]) -> bool:
    """Whether the mean falls strictly as n grows."""
    means = [s.mean for _, s in sorted(points)]
    return all(b < a for a, b in zip(means, means[1:]))


def overlapping(a: Summary, b: Summary) -> bool:
    """Whether two intervals share a point (True when either has none: no separation is shown)."""
    if not (math.isfinite(a.lo) and math.isfinite(b.lo)):
        return True
    return a.lo <= b.hi and b.lo <= a.hi


def rises(points: list[tuple[int, Summary]]) -> list[tuple[int, int, bool]]:
    """Consecutive steps n1 -> n2 (n1 < n2) where the mean does not fall, each with whether the two
    intervals are separated (a rise beyond the seeds' spread)."""
    pts = sorted(points)
    return [(n1, n2, not overlapping(a, b)) for (n1, a), (n2, b) in zip(pts, pts[1:]) if b.mean >= a.mean]


def trend_text(points: list[tuple[int, Summary]]) -> str:
    """The monotonicity verdict of a TV-against-n curve: falls strictly; or rises only within
    overlapping intervals (no rise the seeds resolve); or rises beyond its intervals."""
    up = rises(points)
    if not up:
        return "falls monotonically with n"
    steps = ", ".join(f"{a} -> {b}" for a, b, _ in up)
    if not any(sep for _, _, sep in up):
        return f"does not fall strictly: its mean rises at n = {steps} within overlapping intervals (no rise the seeds resolve)"
    return f"RISES with n beyond its intervals at n = {', '.join(f'{a} -> {b}' for a, b, sep in up if sep)}"


def _separation(points: list[tuple[int, Summary]]) -> str:
    """Which consecutive steps of n have overlapping intervals ("" when every step is separated)."""
    pts = sorted(points)
    tied = [f"{n1} -> {n2}" for (n1, a), (n2, b) in zip(pts, pts[1:]) if overlapping(a, b)]
    return f"; the intervals overlap at n = {', '.join(tied)}" if tied else "; every step separated by its interval"


def _preset_sections(preset: str, cells: list[dict[str, Any]], reference: list[dict[str, Any]],
                     ctx: Context) -> tuple[list[tuple[str, str]], list[str]]:
    steps = max(c["steps"] for c in cells)
    final = [c for c in cells if c["steps"] == steps]
    estimators = list(dict.fromkeys(c["estimator"] for c in cells))
    ns = sorted({c["n"] for c in final}, reverse=True)
    by = _summaries(final, lambda c: (c["estimator"], c["n"]))
    rows = [[e, n, g["tv"].n, g["tv"].interval_text(), g["tv_target"].interval_text(), g["rmse"].interval_text(),
             g["kl"].interval_text(4), fmt(g["fit_s"].mean, 3)]
            for e in estimators for n in ns if (g := by.get((e, n)))]
    ref = summarize(c["kl"] for c in reference)
    body = (f"Estimators fitted for {steps} steps; every cell a mean over seeds with its {INTERVAL_NAME} "
            f"(one seed: the value alone). Lower is better everywhere. The exact ratio with the same denoiser gives "
            f"transition KL {ref.interval_text(4)} (the sampler's floor).\n\n"
            + markdown_table(["estimator", "n target", "seeds", f"single-site TV: {INTERVAL_HEADER}", "TV on target z",
                              "level-free log-ratio RMSE (nats)", "GTL transition KL", "fit (s)"], rows))
    sections = [(f"{preset}: estimators by n target", body)]
    notes = []
    for e in estimators:
        points = [(n, by[(e, n)]["tv"]) for n in ns if (e, n) in by]
        if len(points) > 1:
            notes.append(f"`{e}` on `{preset}`: mean single-site TV "
                         f"{' -> '.join(fmt(s.mean, 3) for _, s in sorted(points))} for n = "
                         f"{' -> '.join(str(n) for n, _ in sorted(points))}: {trend_text(points)}{_separation(points)}.")
    times = sorted({g["t"] for c in final for g in c["levels"]})
    level_rows, level_series = [], {}
    for e in estimators:
        for n in ns:
            group = [c for c in final if c["estimator"] == e and c["n"] == n]
            if group:
                sums = [summarize(level_tv(c["levels"], t) for c in group) for t in times]
                level_rows.append([e, n, *[s.interval_text() for s in sums]])
                if n == ns[0]:
                    level_series[e] = list(zip(times, sums))
    sections.append((f"{preset}: single-site TV by masking level",
                     f"Mean over both domains, weighted by masked positions ({steps} steps).\n\n"
                     + markdown_table(["estimator", "n target", *[f"t = {t:g}" for t in times]], level_rows)))
    figures = []
    for metric, label in (("tv", "single-site guidance TV"), ("kl", "GTL transition KL")):
        path, rel = ctx.figure_path(f"{preset}-{metric}-vs-n")
        series = {e: [(n, by[(e, n)][metric]) for n in ns if (e, n) in by] for e in estimators}
        line_plot(path, f"{preset}: {label} ({steps} steps)", "n target", label, series, logx=True, logy=metric == "kl")
        figures.append(figure_markdown(rel, f"{label} against n target; error bars: {INTERVAL_NAME}."))
    path, rel = ctx.figure_path(f"{preset}-tv-vs-level")
    line_plot(path, f"{preset}: single-site TV by masking level (n = {ns[0]})", "masking level t", "single-site TV", level_series)
    figures.append(figure_markdown(rel, f"Single-site TV against the masking level at n target = {ns[0]}."))
    all_steps = sorted({c["steps"] for c in cells})
    curve_ns = sorted(n for n in ns if {c["steps"] for c in cells if c["n"] == n} == set(all_steps))
    if len(all_steps) > 1 and curve_ns:
        n_mid = curve_ns[len(curve_ns) // 2]
        by_steps = _summaries([c for c in cells if c["n"] == n_mid], lambda c: (c["estimator"], c["steps"]))
        for metric, label in (("tv", "single-site guidance TV"), ("kl", "GTL transition KL")):
            path, rel = ctx.figure_path(f"{preset}-{metric}-vs-steps")
            series = {e: [(k, by_steps[(e, k)][metric]) for k in all_steps if (e, k) in by_steps] for e in estimators}
            line_plot(path, f"{preset}: {label} against steps (n = {n_mid})", "training steps", label, series,
                      logx=True, logy=metric == "kl")
            figures.append(figure_markdown(rel, f"{label} against training steps at n target = {n_mid}."))
    sections.append((f"{preset}: figures", "\n\n".join(figures)))
    return sections, notes


def _best(cells: list[dict[str, Any]], preset: str) -> str:
    """Which estimator has the lowest mean single-site TV and which the lowest GTL KL on ``preset`` at
    its largest n target and step count."""
    mine = [c for c in cells if c["preset"] == preset]
    n, steps = max(c["n"] for c in mine), max(c["steps"] for c in mine)
    by = _summaries([c for c in mine if c["n"] == n and c["steps"] == steps], lambda c: c["estimator"])

    def lowest(metric: str) -> str:
        ranked = sorted(by.items(), key=lambda kv: kv[1][metric].mean)
        name, best = ranked[0][0], ranked[0][1][metric]
        tie = [e for e, g in ranked[1:] if overlapping(best, g[metric])]
        return f"`{name}` ({fmt(best.mean, 3)}" + (f"; its interval overlaps {', '.join(f'`{e}`' for e in tie)})" if tie else ")")

    return (f"`{preset}`, n target = {n}, {steps} steps: lowest mean single-site TV {lowest('tv')}, "
            f"lowest mean GTL transition KL {lowest('kl')}.")


def render_ratios(results: dict[str, Any], meta: dict[str, Any], ctx: Context) -> Rendered:
    """Tables and figures of every preset in the results (see the module docstring)."""
    cells, reference = _parse(results)
    if not cells:
        raise S.ResultsError("results.cells must hold at least one cell, got []")
    sections: list[tuple[str, str]] = []
    notes: list[str] = []
    for preset in dict.fromkeys(c["preset"] for c in cells):
        s, n = _preset_sections(preset, [c for c in cells if c["preset"] == preset],
                                [r for r in reference if r["preset"] == preset], ctx)
        sections += s
        notes += n
    config = results.get("config", {})
    sections.insert(0, ("Setting", (
        "Metrics (held-out sequences of both domains, masked at fixed levels t; exact laws from the forward-backward "
        "oracle): **single-site TV** (headline): mean over masked positions of TV(softmax_v(log p(x^i=v|z) + "
        "log r_hat(z^{i<-v})), exact q(x^i=v|z)), what the sampler consumes; **level-free log-ratio RMSE**: RMS of "
        "log r_hat(z) - log r(z) after removing its mean per (domain, t); **GTL transition KL**: row-averaged "
        "KL(true || estimated) of GTL samples (left to right, every candidate, gamma 1; the evaluation of "
        f"`gtl markov`). Frozen source denoiser: `{config.get('denoiser', '?')}`. Each step count is a separate fit.")))
    if notes:
        sections.insert(1, ("Monotonicity in n", "\n".join(f"- {n}" for n in notes)))
    n_est, n_seeds = len({c['estimator'] for c in cells}), len({c['seed'] for c in cells})
    summary = (f"{len(cells)} fitted cells ({n_est} estimator{'s' if n_est != 1 else ''}, "
               f"{n_seeds} seed{'s' if n_seeds != 1 else ''}). " + " ".join(_best(cells, p) for p in dict.fromkeys(c["preset"] for c in cells)))
    return Rendered(title="Ratio estimators held against the exact ratio", summary=summary, sections=sections)


__all__ = ["level_tv", "monotone", "render_ratios", "rises", "trend_text"]
