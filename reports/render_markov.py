"""Report of the Markov-chain transfer benchmark (kind ``markov-benchmark``)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from gtl_verify.methods import ablations
from gtl_verify.results import MarkovResults
from markov.presets import PRESETS

from . import paper
from . import schema as S
from .context import Context, Rendered
from .figures import heatmaps, line_plot
from .markdown import CROSS_ENTROPY_GAP_LABEL, MC_KL_LABEL, figure_markdown, fmt, markdown_table, metric_notes
from .stats import INTERVAL_HEADER, INTERVAL_NAME, Summary, summarize

#: Known metrics in display order with their labels; other numeric metrics follow, sorted.
METRICS = {
    "transition_kl": "row-averaged KL",
    "cross_entropy_gap": CROSS_ENTROPY_GAP_LABEL,
    "exact_kl": MC_KL_LABEL,  # the benchmark's key: Monte-Carlo KL from the exact sampler density
    "exact_tv": "exact TV",
}


def _parse(results: dict[str, Any]) -> dict[str, Any]:
    results = MarkovResults.from_dict(results).to_dict()  # the typed layout: every top-level key present
    presets = {}
    for name, spec in S.mapping(results, "presets", "results").items():
        where = f"results.presets.{name}"
        if not isinstance(spec, dict):
            raise S.ResultsError(f"{where} must be an object, got {spec!r}")
        presets[name] = {
            "name": S.text(spec, "name", where, required=False, default=name),  # a chain file's name; absent before
            "vocab_size": S.integer(spec, "vocab_size", where),
            "source": S.matrix(spec, "source_transition", where),
            "target": S.matrix(spec, "target_transition", where),
        }
    cells: list[dict[str, Any]] = []
    seen: dict[tuple, int] = {}
    for where, c in S.records(results, "cells", "results"):
        metrics_obj = S.mapping(c, "metrics", where, required=True)
        mwhere = f"{where}.metrics"
        metrics = {"transition_kl": S.number(metrics_obj, "transition_kl", mwhere)}
        for key in ("cross_entropy_gap", "exact_kl", "exact_tv"):
            metrics[key] = S.number(metrics_obj, key, mwhere, nullable=True)
        for key, value in metrics_obj.items():  # extra numeric metrics are shown too; others ignored
            if key not in metrics and isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[key] = float(value)
        cell = {
            "preset": S.text(c, "preset", where), "n_target": S.integer(c, "n_target", where),
            "method": S.text(c, "method", where), "seed": S.integer(c, "seed", where), "metrics": metrics,
            "estimated": S.matrix(c, "estimated_transition", where, nullable=True),
        }
        ident = (cell["preset"], cell["method"], cell["n_target"], cell["seed"])
        if ident in seen:  # one run per (preset, method, n target, seed): a copy would weigh twice in the mean
            raise S.ResultsError(f"{where} repeats results.cells[{seen[ident]}] (preset {ident[0]!r}, method "
                                 f"{ident[1]!r}, n target {ident[2]}, seed {ident[3]})")
        seen[ident] = len(cells)
        cells.append(cell)
    gamma = [{"preset": S.text(r, "preset", w), "n_target": S.integer(r, "n_target", w), "gamma": S.number(r, "gamma", w),
              "seed": S.integer(r, "seed", w), "kl": S.number(r, "transition_kl", w, nullable=True)}
             for w, r in S.records(results, "gamma_sweep", "results")]
    overlap = [{"preset": S.text(r, "preset", w, required=False, default="?"),  # absent in files of before the overlap preset
                "overlap": S.label(r, "overlap", w), "method": S.text(r, "method", w), "seed": S.integer(r, "seed", w),
                "kl": S.number(r, "transition_kl", w, nullable=True)}
               for w, r in S.records(results, "overlap_sweep", "results")]
    components = [{"preset": S.text(r, "preset", w), "n_target": S.integer(r, "n_target", w), "seed": S.integer(r, "seed", w),
                   "component": str(S.label(r, "component", w)), "metric": S.text(r, "metric", w),
                   "value": S.number(r, "value", w, nullable=True)}
                  for w, r in S.records(results, "components", "results")]
    keys = list(dict.fromkeys([r["preset"] for r in cells + gamma + components] + list(presets)))
    shown = display_names(keys, presets)
    for row in cells + gamma + components:
        row["preset"] = shown[row["preset"]]
    presets = {shown[k]: v for k, v in presets.items()}
    return {"presets": presets, "cells": cells, "gamma": gamma, "overlap": overlap, "components": components}


def display_names(keys: list[str], presets: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Preset key (a preset name or a chain file's path) -> the name to show: the pair's recorded name
    (a chain file's ``name``); the key itself when none is recorded, when two pairs share a name or when
    a chain file is named like a built-in preset (whose name stays the preset's)."""
    names = {k: presets.get(k, {}).get("name", k) for k in keys}
    shared = {n for n in names.values() if list(names.values()).count(n) > 1} | (set(names.values()) - set(keys)) & set(PRESETS)
    return {k: (k if n in shared else n) for k, n in names.items()}


def _grouped(cells: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Summary]]:
    """(preset, method, n_target) -> metric -> Summary over seeds."""
    values: dict[tuple[str, str, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for c in cells:
        for key, v in c["metrics"].items():
            values[(c["preset"], c["method"], c["n_target"])][key].append(v)
    return {k: {m: summarize(vs) for m, vs in d.items()} for k, d in values.items()}


def paper_comparison(cells: list[dict[str, Any]]) -> tuple[str, list[str], list[paper.Comparison]]:
    """The paper-comparison table for preset ``paper``, the sentences where we differ by > 10% and the comparisons."""
    means: dict[tuple[str, int], list[float]] = defaultdict(list)
    for c in cells:
        if c["preset"] == paper.MARKOV_PRESET:
            means[(paper.canonical_method(c["method"]), c["n_target"])].append(c["metrics"]["transition_kl"])
    summaries = {k: summarize(v) for k, v in means.items()}
    ours = {k: s.mean for k, s in summaries.items() if s.n}
    comparisons = paper.markov_comparisons(ours)
    rows = []
    for cmp in comparisons:
        s = summaries.get((cmp.method, cmp.key))
        rel = cmp.relative
        rows.append([cmp.key, paper.DISPLAY_NAMES[cmp.method],
                     s.interval_text() if s and s.n else "-", s.n if s else 0, fmt(cmp.paper, 3),
                     "-" if cmp.difference is None else f"{cmp.difference:+.3f}",
                     "-" if rel is None else f"{100 * rel:+.0f} %", cmp.verdict])
    table = markdown_table(["n target", "method", f"ours: {INTERVAL_HEADER}", "seeds", "paper", "ours - paper", "relative change", "verdict"], rows)
    sentences = [s for s in (c.sentence("row-averaged KL") for c in comparisons) if s]
    sentences += paper.ordering_sentences(comparisons, lower_is_better=True)
    return table, sentences, comparisons


#: The benchmark's targets on preset ``paper``: GTL's row-averaged KL below target-only and fine-tuning
#: at n target <= BAR_N_MAX (for GTL under the planner sampler also below fine-tuning under the same
#: sampler, the like-for-like rival), at or below the paper's GTL figure and the goals of
#: LEARNED_RATIO_GOALS, and the exact-ratio ablation below ORACLE_RATIO_BAR.
BAR_N_MAX = 100
ORACLE_RATIO_BAR = 0.01

#: Row-averaged KL goals for GTL with a learned ratio by n target (the ratio-estimation work's goals,
#: about 0.7x / 0.7x / 0.6x the paper's GTL at n target 1000 / 100 / 20).
LEARNED_RATIO_GOALS = {1000: 0.04, 100: 0.07, 20: 0.15}

#: The learned-ratio GTL methods with bars, their display names and their like-for-like rivals.
BAR_METHODS = {"gtl": ("GTL", ("target-only", "fine-tuned")),
               "gtl-planner": ("GTL (planner sampler)", ("target-only", "fine-tuned", "fine-tuned-planner"))}


def _attribution(g: dict[str, Summary | None]) -> str:
    """Which learned component is responsible for GTL's excess KL, from the two oracle ablations:
    swapping in the exact ratio removes the ratio's error, the exact denoiser the denoiser's.
    Without both ablations the answer says so plainly: nothing can be attributed."""
    gtl, exact_ratio, exact_den = g.get("gtl"), g.get("gtl-oracle-ratio"), g.get("gtl-oracle-denoiser")
    if gtl is None or exact_ratio is None or exact_den is None:
        missing = [m for m, s in (("gtl-oracle-ratio", exact_ratio), ("gtl-oracle-denoiser", exact_den)) if s is None]
        text = f"ablations not run ({', '.join(missing)}); cannot attribute the excess KL to the ratio network or the denoiser"
        ran = [(label, s) for label, s in (("ratio", exact_ratio), ("denoiser", exact_den)) if s is not None]
        if gtl is not None and ran:  # one ablation still says how much its component removes
            label, s = ran[0]
            text += f" (the exact {label} alone takes the KL from {fmt(gtl.mean, 3)} to {fmt(s.mean, 3)})"
        return text
    gain_ratio = gtl.mean - exact_ratio.mean  # error removed by an exact ratio
    gain_den = gtl.mean - exact_den.mean  # error removed by an exact denoiser
    if max(gain_ratio, gain_den) <= 0:
        return "neither ablation lowers the KL: the remaining error is sampling noise"
    culprit = "ratio network" if gain_ratio >= gain_den else "denoiser"
    return (f"the {culprit} is responsible: the exact ratio takes the KL to {fmt(exact_ratio.mean, 3)}, "
            f"the exact denoiser to {fmt(exact_den.mean, 3)}")


def _paired_wins(cells: list[dict[str, Any]], method: str, rival: str, n: int, preset: str = paper.MARKOV_PRESET) -> str:
    """``k of m seeds`` where ``method``'s row-averaged KL is below ``rival``'s on the same seed (``preset``,
    n target ``n``; m: the seeds where both have a finite KL); ``-`` when they share none."""
    by = defaultdict(dict)
    for c in cells:
        kl = c["metrics"]["transition_kl"]
        if c["preset"] == preset and c["n_target"] == n and c["method"] in (method, rival) and math.isfinite(kl):
            by[c["method"]][c["seed"]] = kl  # a NaN run counts in neither the mean nor the pairing
    seeds = sorted(set(by[method]) & set(by[rival]))
    return f"{sum(by[method][s] < by[rival][s] for s in seeds)} of {len(seeds)}" if seeds else "-"


def bar_checks(grouped: dict[tuple[str, str, int], dict[str, Summary]],
               cells: list[dict[str, Any]] | None = None, preset: str = paper.MARKOV_PRESET) -> tuple[str, list[str]]:
    """Table of the benchmark's bars on ``preset`` (met or missed by the means, by how much, and, for a
    bar against a rival method, on how many seeds the method is below the rival on that seed, from
    ``cells``; the paper's published GTL figure is a bar on preset ``paper`` only) and, for every missed
    GTL bar, the component the oracle ablations hold responsible."""
    kl = {(m, n): g["transition_kl"] for (p, m, n), g in grouped.items() if p == preset and "transition_kl" in g}
    ns = sorted({n for _, n in kl}, reverse=True)
    rows, notes = [], []

    def row(bar: str, n: int, ours: Summary, target: float, method: str | None = None, rival: str | None = None) -> None:
        met = ours.mean <= target
        paired = "-" if cells is None or rival is None or method is None else _paired_wins(cells, method, rival, n, preset)
        rows.append([bar, n, ours.interval_text(), fmt(target, 3), "met" if met else f"missed by {fmt(abs(ours.mean - target), 3)}",
                     paired])
        if not met and method == "gtl":  # the ablations swap a component of left-to-right GTL
            notes.append(f"n target = {n}, {bar}: " + _attribution({m: kl.get((m, n)) for m in ("gtl", *ablations())}) + ".")

    for n in ns:
        for method, (label, rivals) in BAR_METHODS.items():
            ours = kl.get((method, n))
            if ours is None or not ours.n:  # no finite run: nothing to hold to a bar
                continue
            if n <= BAR_N_MAX:
                for rival in rivals:
                    if (rival, n) in kl and kl[(rival, n)].n:  # a rival with no finite run sets no bar
                        row(f"{label} below {rival}", n, ours, kl[(rival, n)].mean, method, rival)
            if n in LEARNED_RATIO_GOALS:
                row(f"{label} <= the learned-ratio goal", n, ours, LEARNED_RATIO_GOALS[n], method)
            if method == "gtl" and preset == paper.MARKOV_PRESET and n in paper.MARKOV_TRANSITION_KL["gtl"]:
                row("GTL at or below the paper's GTL", n, ours, paper.MARKOV_TRANSITION_KL["gtl"][n], method)
        if ("gtl-oracle-ratio", n) in kl:
            row(f"exact-ratio GTL <= {ORACLE_RATIO_BAR}", n, kl[("gtl-oracle-ratio", n)], ORACLE_RATIO_BAR)
    if not rows:
        return "", []
    table = markdown_table(["bar", "n target", f"ours: {INTERVAL_HEADER}", "target", "verdict", "seeds below the rival (paired)"], rows)
    return table, list(dict.fromkeys(notes))


def _paper_sections(cells: list[dict[str, Any]], grouped: dict) -> tuple[list[tuple[str, str]], str]:
    """The comparison with the published figure and the bars (the headline sections), with a summary sentence."""
    if not any(c["preset"] == paper.MARKOV_PRESET for c in cells):
        return [], ""
    sections: list[tuple[str, str]] = []
    table, sentences, comparisons = paper_comparison(cells)
    verdicts = [c.verdict for c in comparisons]
    summary = ("Against the paper's figure (n target 1000/100/20): "
               + ", ".join(f"{verdicts.count(v)} {v}" for v in ("close", "better", "worse", "missing") if v in verdicts)
               + f" (a value within {100 * paper.RELATIVE_THRESHOLD:.0f} % of the paper's is close; beyond, better or worse).")
    body = ("Mean row-averaged KL(true || estimated) of the transition matrix on preset `paper` "
            "(K = 5, diagonal source d = 0.1, target d = 0.8) beside the values read off the paper's figure; "
            "lower is better. A verdict is given when the two differ by more than "
            f"{100 * paper.RELATIVE_THRESHOLD:.0f} %.\n\n" + table)
    if sentences:
        body += "\n\n" + "\n".join(f"- {s}" for s in sentences)
    sections.append(("Comparison with the paper", body))
    sections += _bars_section(grouped, cells, paper.MARKOV_PRESET)
    return sections, summary


def _bars_section(grouped: dict, cells: list[dict[str, Any]], preset: str) -> list[tuple[str, str]]:
    """The bars of ``preset`` as a report section (none when it has no GTL cells)."""
    bars, notes = bar_checks(grouped, cells, preset)
    if not bars:
        return []
    missed = sum("missed" in line for line in bars.splitlines())
    body = (f"The benchmark's bars on preset `{preset}` (row-averaged KL, mean over seeds; the target column is "
            "the rival's mean or the fixed figure; the verdict compares means, and the last column counts the "
            "seeds on which the method is below the rival on that same seed; GTL and the methods without a "
            "planner reveal left to right, one position per step, and GTL (planner sampler) where the learned "
            "planner points). " + (f"{missed} missed." if missed else "All met.") + "\n\n" + bars)
    if notes:
        body += ("\n\nWhere a GTL bar is missed, the oracle ablations say which learned component is "
                 "responsible (GTL with the exact ratio keeps the learned denoiser; GTL with the exact "
                 "denoiser keeps the learned ratio; both sample left to right like `gtl`, so they explain "
                 "no bar of GTL under the planner sampler):\n\n" + "\n".join(f"- {n}" for n in notes))
    return [("Bars" if preset == paper.MARKOV_PRESET else f"Bars on preset {preset}", body)]


def target_only_note(source, target) -> str | None:
    """A one-line note naming the tokens the target's transitions lead to and the source's never do
    (a zero column of the source matrix, a positive one of the target's): the target's mass on them is
    unreachable by any guidance of the source (density ratio +inf, docs/conventions.md section 1)."""
    src, tgt = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    tokens = [v for v in range(src.shape[1]) if src[:, v].max() <= 0 < tgt[:, v].max()]
    if not tokens:
        return None
    return (f"Note: target-only token(s) {', '.join(map(str, tokens))}: the target's transitions lead to them and the "
            "source's never do, so no guidance of this source reaches that mass (density ratio +inf; "
            "docs/conventions.md section 1) and every method's KL keeps a floor from it.")


def _preset_section(preset: str, data: dict[str, Any], grouped: dict, metric_keys: list[str], ctx: Context
                    ) -> tuple[tuple[str, str] | None, str | None]:
    """One preset's metric table, KL-vs-n figure and transition heatmaps, with its headline sentence."""
    cells = data["cells"]
    headline = None
    pcells = [c for c in cells if c["preset"] == preset]
    methods = list(dict.fromkeys(c["method"] for c in pcells))
    ns = sorted({c["n_target"] for c in pcells}, reverse=True)
    seeds = sorted({c["seed"] for c in pcells})
    present = [k for k in metric_keys if any(c["metrics"].get(k) is not None for c in pcells)]
    parts = []
    if pcells:
        rows = []
        for m in methods:
            for n in ns:
                g = grouped.get((preset, m, n))
                if g is None:
                    continue
                rows.append([m, n, g["transition_kl"].n] + [g[k].interval_text() if k in g else "-" for k in present])
        parts.append(f"Mean and {INTERVAL_NAME} ({len(seeds)} seed(s): {', '.join(map(str, seeds))}).\n\n"
                     + markdown_table(["method", "n target", "seeds"] + [METRICS.get(k, k) for k in present], rows))
        series = {m: [(n, grouped[(preset, m, n)]["transition_kl"]) for n in ns if (preset, m, n) in grouped] for m in methods}
        path, rel = ctx.figure_path(f"{preset}-kl-vs-n")
        line_plot(path, f"Row-averaged KL vs n target (preset {preset})", "n target (sequences, log scale)",
                  "row-averaged KL(true || estimated) (nats)", series, logx=True, logy=True)
        parts.append(figure_markdown(rel, f"Row-averaged KL of the estimated transition matrix against the number of "
                                          f"target sequences, preset {preset}; error bars: " + INTERVAL_NAME + "."))
        n_min = ns[-1]
        learned = [m for m in methods if m not in ablations()] or methods  # an oracle ablation is no contender
        at_min = [(grouped[(preset, m, n_min)]["transition_kl"].mean, m) for m in learned if (preset, m, n_min) in grouped]
        finite = [b for b in at_min if not math.isnan(b[0])]
        if finite:
            best = min(finite)
            headline = (f"preset `{preset}`: best at n target = {n_min} is {best[1]} (KL {fmt(best[0], 3)}"
                        + (", oracle ablations aside)" if len(learned) < len(methods) else ")"))
    spec = data["presets"].get(preset)
    if spec is not None and (note := target_only_note(spec["source"], spec["target"])):
        parts.insert(0, note)
    if spec is not None:
        panels = [("true source", spec["source"]), ("true target", spec["target"])]
        if pcells:
            n_min = min(c["n_target"] for c in pcells)
            at_min = [c for c in pcells if c["n_target"] == n_min and c["estimated"] is not None]
            seed = 0 if any(c["seed"] == 0 for c in at_min) else min((c["seed"] for c in at_min), default=None)
            for m in methods:
                est = next((c["estimated"] for c in at_min if c["method"] == m and c["seed"] == seed), None)
                if est is not None:
                    panels.append((f"{m}\n(n={n_min}, seed {seed})", est))
        path, rel = ctx.figure_path(f"{preset}-transitions")
        heatmaps(path, f"Transition matrices, preset {preset} (row: current token, column: next token)", panels)
        parts.append(figure_markdown(rel, f"True source and target transition matrices and the matrices estimated from "
                                          f"each method's samples at the smallest n target (preset {preset}, "
                                          f"K = {spec['vocab_size']})."))
    section = (f"Preset {preset}", "\n\n".join(parts)) if parts else None
    return section, headline


def _gamma_section(data: dict[str, Any], ctx: Context) -> tuple[str, str]:
    """The GTL gamma sweep: table and figure."""
    vals: dict[tuple[str, int, float], list] = defaultdict(list)
    for r in data["gamma"]:
        vals[(r["preset"], r["n_target"], r["gamma"])].append(r["kl"])
    sums = {k: summarize(v) for k, v in vals.items()}
    rows = [[p, n, g, s.n, s.interval_text()] for (p, n, g), s in sorted(sums.items())]
    series: dict[str, list] = defaultdict(list)
    for (p, n, g), s in sorted(sums.items()):
        series[f"{p}, n={n}"].append((g, s))
    path, rel = ctx.figure_path("gamma-sweep")
    line_plot(path, "Guidance strength sweep", "gamma (guidance exponent, dimensionless)",
              "row-averaged KL (nats)", series, logy=True)
    return ("Guidance strength (gamma) sweep",
            markdown_table(["preset", "n target", "gamma", "seeds", f"row-averaged KL: {INTERVAL_HEADER}"], rows)
            + "\n\n" + figure_markdown(rel, "Row-averaged KL of GTL samples against gamma; error bars: " + INTERVAL_NAME + "."))


def _overlap_section(data: dict[str, Any], ctx: Context) -> tuple[str, str]:
    """The support-overlap sweep: table and figure, by preset and method."""
    vals2: dict[tuple[str, str, Any], list] = defaultdict(list)
    for r in data["overlap"]:
        vals2[(r["preset"], r["method"], r["overlap"])].append(r["kl"])
    sums2 = {k: summarize(v) for k, v in vals2.items()}
    order = {pm: i for i, pm in enumerate(dict.fromkeys((p, m) for p, m, _ in sums2))}
    numeric = all(isinstance(o, (int, float)) for _, _, o in sums2)
    rows = [[p, m, o, s.n, s.interval_text()] for (p, m, o), s in
            sorted(sums2.items(), key=lambda kv: (order[kv[0][:2]], kv[0][2] if numeric else 0))]
    series2: dict[str, list] = defaultdict(list)
    for (p, m, o), s in sums2.items():
        series2[m if len(order) == 1 else f"{m} ({p})"].append((o, s))
    path, rel = ctx.figure_path("overlap-sweep")
    line_plot(path, "Source/target support overlap sweep", "overlap (share of the source's mass where only the target goes)",
              "row-averaged KL (nats)", series2, logy=True)
    presets = {p for p, _, _ in sums2}
    intro = ("GTL with the exact source denoiser and the learned ratio, the source chain mixed towards the target "
             "by the overlap (overlap 1: the same chains)."
             + (" On `no-overlap` the target emits tokens the source never does: at overlap 0 they lie outside the "
                "source's support, where no ratio can guide (the stated failure mode of ratio guidance)."
                if "no-overlap" in presets else "")
             + (" Rows of preset `?` come from a results file written before the sweep named its pair: it then ran "
                "on the grid's first preset, and on `paper` the overlap was ignored (one pair, fitted per value)."
                if "?" in presets else ""))
    return ("Support overlap sweep",
            intro + "\n\n"
            + markdown_table(["preset", "method", "overlap", "seeds", f"row-averaged KL: {INTERVAL_HEADER}"], rows)
            + "\n\n" + figure_markdown(rel, "Row-averaged KL against the source/target overlap; error bars: "
                                       + INTERVAL_NAME + "."))


def _components_section(data: dict[str, Any]) -> tuple[str, str]:
    """Diagnostics of the trained components against their oracles, over seeds."""
    vals3: dict[tuple[str, int, str, str], list] = defaultdict(list)
    for r in data["components"]:
        vals3[(r["preset"], r["n_target"], r["component"], r["metric"])].append(r["value"])
    rows = [[p, n, comp, met, s.n, s.interval_text()] for (p, n, comp, met), s in
            ((k, summarize(v)) for k, v in vals3.items())]
    return ("Components", "Diagnostics of the trained components (denoiser, ratio network, planner) "
                                   "over seeds.\n\n" + markdown_table(["preset", "n target", "component", "metric", "seeds",
                                                                      INTERVAL_HEADER], rows))


def _ratio_note(config: dict[str, Any], methods: list[str]) -> str:
    """Which estimator gave the learned ratio of the guided methods, and at what budget ("" if unknown)."""
    estimator = config.get("ratio_estimator")
    if not estimator or not any(m.startswith("gtl") for m in methods):
        return ""
    steps = (config.get("training") or {}).get("ratio_steps")
    budget = f" ({steps} AdamW steps per network)" if steps else ""
    paper_row = "; gtl-paper: the paper's estimator at the same budget" if "gtl-paper" in methods else ""
    return f" Learned ratio of gtl and its variants: the {estimator} estimator{budget}{paper_row}."


def render_markov(results: dict[str, Any], meta: dict[str, Any], ctx: Context) -> Rendered:
    """Per-preset tables (mean and 95% bootstrap percentile interval over seeds), KL-vs-n figures, transition heatmaps,
    gamma and overlap sweeps, component table and the comparison with the published figure."""
    data = _parse(results)
    cells = data["cells"]
    grouped = _grouped(cells)
    preset_names = list(dict.fromkeys([c["preset"] for c in cells] + list(data["presets"])))
    sections, paper_summary = _paper_sections(cells, grouped)  # the headline comes first
    metric_keys = list(METRICS) + sorted({k for c in cells for k in c["metrics"]} - set(METRICS))
    headline = []
    for preset in preset_names:
        section, line = _preset_section(preset, data, grouped, metric_keys, ctx)
        sections += [section] if section is not None else []
        if preset != paper.MARKOV_PRESET:  # the paper preset's bars head the report
            sections += _bars_section(grouped, cells, preset)
        headline += [line] if line is not None else []
    if data["gamma"]:
        sections.append(_gamma_section(data, ctx))
    if data["overlap"]:
        sections.append(_overlap_section(data, ctx))
    if data["components"]:
        sections.append(_components_section(data))
    methods_all = list(dict.fromkeys(c["method"] for c in cells))
    summary = (f"{len(cells)} runs (one per preset, method, n target and seed) over {len(preset_names)} preset(s) and {len(methods_all)} method(s)"
               + (f" ({', '.join(methods_all)})" if methods_all else "") + ". ")
    if headline:
        summary += "Lowest row-averaged KL: " + "; ".join(headline) + "."
    summary += (" " + paper_summary) if paper_summary else ""
    summary += _ratio_note(results.get("config") or meta.get("config") or {}, methods_all)
    if not sections:
        sections.append(("Results", "The results file holds no cells, sweeps or presets."))
    elif cells:
        sections.append(("Metric notes", metric_notes([MC_KL_LABEL, CROSS_ENTROPY_GAP_LABEL, *metric_keys])))
    return Rendered("Markov-chain transfer benchmark", summary, sections)
