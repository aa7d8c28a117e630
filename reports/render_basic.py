"""Reports of the kinds ``theory``, ``validation`` and ``benchmark``."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

from . import schema as S
from .context import Context, Rendered
from .figures import grouped_bars, line_plot, residual_bars, residual_outcome
from .markdown import (CROSS_ENTROPY_GAP_LABEL, EXACT_KL_LABEL, MC_KL_LABEL, figure_markdown, fmt, fmt_sci, markdown_table,
                       metric_notes)
from .stats import INTERVAL_NAME, summarize


# --- theory -----------------------------------------------------------------------------------------


def render_theory(results: dict[str, Any], meta: dict[str, Any], ctx: Context) -> Rendered:
    """Table of the exact checks (residual in scientific notation) and log10 residual vs tolerance bars.

    results: {"checks": [{"name", "description", "residual", "tolerance", "passed", "cases"}]}
    """
    checks = []
    for where, c in S.records(results, "checks", "results", required=True):
        checks.append({
            "name": S.text(c, "name", where),
            "description": S.text(c, "description", where, required=False),
            "residual": S.number(c, "residual", where),
            "tolerance": S.number(c, "tolerance", where),
            "passed": S.boolean(c, "passed", where),
            "cases": S.integer(c, "cases", where),
            "expect": c.get("expect", "holds"),
        })
        if checks[-1]["expect"] not in ("holds", "fails"):
            raise S.ResultsError(f"{where}.expect must be 'holds' or 'fails', got {checks[-1]['expect']!r}")
    for c in checks:
        c["outcome"] = residual_outcome(c["residual"], c["tolerance"], c["expect"])
    n_pass = sum(c["passed"] for c in checks)
    failed = [c["name"] for c in checks if not c["passed"]]
    separations = [c["name"] for c in checks if c["expect"] == "fails"]
    # separation checks ("expect": "fails") must exceed their tolerance: they are not residuals
    ratios = [(c["residual"] / c["tolerance"], c["name"]) for c in checks
              if c["expect"] == "holds" and c["tolerance"] > 0 and not math.isnan(c["residual"])]
    summary = f"{n_pass} of {len(checks)} exact checks passed"
    summary += "." if not failed else f"; failed: {', '.join(failed)}."
    if separations:
        summary += (f" {len(separations)} of them ({', '.join(separations)}) are separations that must fail: the "
                    "theory predicts the identity breaks there, and they pass when the residual exceeds the tolerance.")
    if ratios:
        worst, name = max(ratios)
        summary += f" Worst residual of an identity relative to its tolerance: {worst:.2e} ({name})."
    inconsistent = [c["name"] for c in checks if c["passed"] != (c["outcome"] != "unexpected")]

    rows = [[c["name"], c["description"], c["expect"], fmt_sci(c["residual"]), fmt_sci(c["tolerance"]), c["cases"],
             "yes" if c["passed"] else "**NO**"] for c in checks]
    body = ("Expected `holds`: the residual must be at most the tolerance. Expected `fails`: the theory predicts "
            "the identity does not hold, and the check passes when the residual exceeds the tolerance. "
            "The identities are stated in docs/THEORY.md.\n\n"
            + markdown_table(["Check", "Description", "Expected", "Residual", "Tolerance", "Cases", "Passed"], rows))
    if inconsistent:
        body += ("\n\nThe recorded pass flag disagrees with the residual and tolerance for: "
                 + ", ".join(inconsistent) + " (the check may use a relative or per-case criterion).")
    sections = [("Checks", body)]
    if checks:
        path, rel = ctx.figure_path("residuals")
        residual_bars(path, "Theory checks: worst residual per check", [c["name"] for c in checks],
                      [c["residual"] for c in checks], [c["tolerance"] for c in checks], [c["expect"] for c in checks])
        sections.append(("Residuals against tolerances",
                         figure_markdown(rel, "log10 of the worst residual of each check (bars) and its tolerance (black ticks); "
                                              "green: an identity that holds, blue: a separation that fails as the "
                                              "theory predicts, red: unexpected.")))
    return Rendered("Theory checks", summary, sections)


# --- validation -------------------------------------------------------------------------------------

VALIDATION_METRICS = (("exact_tv", "exact TV"), ("exact_kl", EXACT_KL_LABEL), ("mc_kl", MC_KL_LABEL),
                      ("cross_entropy_gap", CROSS_ENTROPY_GAP_LABEL))


def render_validation(results: dict[str, Any], meta: dict[str, Any], ctx: Context) -> Rendered:
    """Table of guidance rules against exact ground truth and a grouped bar chart of exact TV.

    results: {"preset", "rules": [{"rule", "setting", "exact_tv", "exact_kl", "mc_kl",
    "cross_entropy_gap", "notes"}]} (metrics may be null).
    """
    preset = S.text(results, "preset", "results", required=False, default="?")
    rules = []
    for where, r in S.records(results, "rules", "results", required=True):
        row = {"rule": str(S.label(r, "rule", where)), "setting": str(S.label(r, "setting", where)),
               "notes": S.text(r, "notes", where, required=False)}
        for key, _ in VALIDATION_METRICS:
            row[key] = S.number(r, key, where, nullable=True)
        rules.append(row)
    rule_names = list(dict.fromkeys(r["rule"] for r in rules))
    settings = list(dict.fromkeys(r["setting"] for r in rules))

    headers = ["Rule", "Setting"] + [label for _, label in VALIDATION_METRICS] + ["Notes"]
    table = markdown_table(headers, [[r["rule"], r["setting"]] + [r[k] for k, _ in VALIDATION_METRICS] + [r["notes"] or "-"]
                                     for r in rules])
    sections = [("Rules against exact ground truth", table)]
    notes = S.field(results, "notes", "results", required=False, default=[])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise S.ResultsError(f"results.notes must be a list of strings, got {notes!r}")
    if notes:
        sections.append(("Notes on the pair", "\n".join(f"- {n.removeprefix('note: ')}" for n in notes)))

    tv: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rules:
        if r["exact_tv"] is not None:
            tv[(r["rule"], r["setting"])].append(r["exact_tv"])
    mean_tv = {k: sum(v) / len(v) for k, v in tv.items()}
    summary = f"{len(rule_names)} guidance rule(s) checked on preset `{preset}` in {len(settings)} setting(s)."
    for s in settings:
        ranked = sorted(((mean_tv[(r, s)], r) for r in rule_names if (r, s) in mean_tv))
        if ranked:
            summary += f" Setting {s}: smallest exact TV {ranked[0][1]} ({fmt(ranked[0][0], 3)})"
            summary += f", largest {ranked[-1][1]} ({fmt(ranked[-1][0], 3)})." if len(ranked) > 1 else "."
    if mean_tv:
        path, rel = ctx.figure_path("exact-tv")
        grouped_bars(path, f"Exact TV to ground truth per rule (preset {preset})", settings,
                     {r: [mean_tv.get((r, s)) for s in settings] for r in rule_names},
                     xlabel="setting", ylabel="total variation (dimensionless)")
        sections.append(("Exact total variation per rule", figure_markdown(
            rel, "Exact total variation between the law sampled by each rule and the true target law; lower is better.")))
    sections.append(("Metric notes", metric_notes(label for _, label in VALIDATION_METRICS)))
    return Rendered(f"Guidance-rule validation (preset {preset})", summary, sections)


# --- benchmark (generic) ------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def render_benchmark(results: dict[str, Any], meta: dict[str, Any], ctx: Context) -> Rendered:
    """Generic tables and line plots.

    results: {"title", "tables": {title: [flat rows]}, "figures": [{"title", "x", "y", "series",
    "xlabel", "ylabel", "logx", "logy", "rows": [...]}]}, optionally "columns": {title: [keys]} to fix
    the column order (results files are written with sorted keys). Rows sharing (series, x) are
    averaged, with error bars from the 95% bootstrap percentile interval (reports.stats).
    """
    title = S.text(results, "title", "results", required=False, default="Benchmark")
    tables = S.mapping(results, "tables", "results")
    parsed_tables = []
    columns = S.mapping(results, "columns", "results")
    for name in tables:
        items = S.records(tables, name, "results.tables", required=True)
        order = S.field(columns, name, "results.columns", required=False, default=[])
        if not isinstance(order, list) or not all(isinstance(k, str) for k in order):
            raise S.ResultsError(f"results.columns.{name} must be a list of column names, got {order!r}")
        headers = list(dict.fromkeys([*order, *(k for _, row in items for k in row)]))
        parsed_tables.append((str(name), headers, [[_cell(row.get(h)) for h in headers] for _, row in items]))
    figures = []
    for where, f in S.records(results, "figures", "results"):
        x, y = S.text(f, "x", where), S.text(f, "y", where)
        series_key = S.field(f, "series", where, required=False)
        if series_key is not None and not isinstance(series_key, str):
            raise S.ResultsError(f"{where}.series must be a string or null, got {series_key!r}")
        fig = {"title": S.text(f, "title", where), "x": x, "y": y, "series": series_key,
               "xlabel": S.text(f, "xlabel", where, required=False, default=x),
               "ylabel": S.text(f, "ylabel", where, required=False, default=y),
               "logx": bool(S.field(f, "logx", where, required=False, default=False)),
               "logy": bool(S.field(f, "logy", where, required=False, default=False)), "points": defaultdict(list)}
        for rwhere, row in S.records(f, "rows", where):
            xv = S.label(row, x, rwhere)
            yv = S.number(row, y, rwhere, nullable=True)
            sv = str(S.label(row, series_key, rwhere)) if series_key else y
            fig["points"][(sv, xv)].append(yv)
        figures.append(fig)

    sections = []
    for name, headers, rows in parsed_tables:
        sections.append((name, markdown_table(headers, rows) if headers else "(empty table)"))
    for i, fig in enumerate(figures):
        series: dict[str, list] = defaultdict(list)
        for (sv, xv), ys in fig["points"].items():
            series[sv].append((xv, summarize(ys)))
        if not series:
            sections.append((fig["title"], "(no rows)"))
            continue
        path, rel = ctx.figure_path(f"{i}-{fig['title']}")
        line_plot(path, fig["title"], fig["xlabel"], fig["ylabel"], series, logx=fig["logx"], logy=fig["logy"])
        repeated = any(len(ys) > 1 for ys in fig["points"].values())
        caption = fig["title"] + (f" (mean over repeated rows; error bars: {INTERVAL_NAME})" if repeated else "")
        sections.append((fig["title"], figure_markdown(rel, caption)))
    summary = f"{len(parsed_tables)} table(s) and {len(figures)} figure(s)."
    return Rendered(title, summary, sections)
