"""Report of the arXiv CS -> Physics transfer (kind ``language``)."""

from __future__ import annotations

import math

from collections import defaultdict
from typing import Any

from gtl_verify.methods import METHODS
from gtl_verify.results import LanguageResults

from . import paper
from . import schema as S
from .context import Context, Rendered
from .figures import line_plot
from .markdown import figure_markdown, fmt, markdown_table
from .stats import INTERVAL_HEADER, Summary, summarize


def _ablation_extra(r: dict[str, Any], w: str) -> dict[str, Any]:
    return {"buckets": S.field(r, "buckets", w, required=False), "meaningful": S.field(r, "meaningful", w, required=False, default=True),
            "truncation": S.field(r, "truncation", w, required=False, default="-")}


def _parse(results: dict[str, Any]) -> dict[str, Any]:
    results = LanguageResults.from_dict(results).to_dict()  # the typed layout: every required key present
    rows = [r for table in ("mauve", "classifier", "distinct", "perplexity") for _, r in S.records(results, table, "results")]
    tagged = sum("replicate" in r for r in rows)
    if 0 < tagged < len(rows):
        raise S.ResultsError(f"results: {len(rows) - tagged} of {len(rows)} metric rows carry no replicate while the others "
                             "do; a row's replicate cannot be guessed")
    mauve = [{"method": S.text(r, "method", w), "fraction": S.number(r, "fraction", w), "replicate": _replicate(r, w),
              "seed": S.integer(r, "seed", w), "value": S.number(r, "mauve", w, nullable=True),
              "buckets": S.field(r, "buckets", w, required=False), "meaningful": S.field(r, "meaningful", w, required=False, default=True)}
             for w, r in S.records(results, "mauve", "results")]
    classifier = [{"method": S.text(r, "method", w), "fraction": S.number(r, "fraction", w), "replicate": _replicate(r, w),
                   "p_source": S.number(r, "p_source", w, nullable=True), "pct_target": S.number(r, "pct_target", w, nullable=True)}
                  for w, r in S.records(results, "classifier", "results")]
    distinct = [{"method": S.text(r, "method", w), "fraction": S.number(r, "fraction", w), "replicate": _replicate(r, w),
                 "n": S.integer(r, "n", w), "value": S.number(r, "value", w, nullable=True)}
                for w, r in S.records(results, "distinct", "results")]
    perplexity = [{"method": S.text(r, "method", w), "fraction": S.number(r, "fraction", w), "replicate": _replicate(r, w),
                   "value": S.number(r, "value", w, nullable=True),
                   "evaluator": str(S.field(r, "evaluator", w, required=False, default="-"))}
                  for w, r in S.records(results, "perplexity", "results")]
    ablations = S.mapping(results, "ablations", "results")
    gamma = [{"x": S.number(r, "gamma", w), "p_source": S.number(r, "p_source", w, nullable=True),
              "mauve": S.number(r, "mauve", w, nullable=True), **_ablation_extra(r, w)}
             for w, r in S.records(ablations, "gamma", "results.ablations")]
    candidates = [{"x": S.integer(r, "n", w), "p_source": S.number(r, "p_source", w, nullable=True),
                   "mauve": S.number(r, "mauve", w, nullable=True), **_ablation_extra(r, w)}
                  for w, r in S.records(ablations, "candidates", "results.ablations")]
    timing = [{"method": S.text(r, "method", w), "seconds": S.number(r, "seconds_per_sequence", w),
               "passes": S.number(r, "ratio_passes_per_sequence", w, nullable=True),
               "device": str(S.field(r, "device", w, required=False, default="-"))}
              for w, r in S.records(results, "timing", "results")]
    fractions = [r["fraction"] for rows in (mauve, classifier, distinct, perplexity) for r in rows]
    for f in fractions:
        if f < 0 or f > 100:
            raise S.ResultsError(f"results: target fraction {f!r} must lie in [0, 1] (share) or [0, 100] (percent)")
    as_fraction = all(f <= 1.0 for f in fractions)
    held_out = [S.mapping(results, key, "results") for key in ("reference_mauve", "floor_mauve")]
    return {"mauve": mauve, "classifier": classifier, "distinct": distinct, "perplexity": perplexity,
            "gamma": gamma, "candidates": candidates, "timing": timing, "as_fraction": as_fraction,
            "guard": S.mapping(results, "mauve_guard", "results"), "held_out": [h for h in held_out if h],
            "truncation": [r for _, r in S.records(results, "truncation", "results")],
            "replicates": sorted({r["replicate"] for rows in (mauve, classifier, distinct, perplexity) for r in rows})}


def _replicate(r: dict[str, Any], w: str) -> int:
    """The row's target-side replicate seed (0 for results written before replicates existed)."""
    return S.integer(r, "replicate", w) if "replicate" in r else 0


def _over_replicates(rows: list[dict[str, Any]], key, value: str = "value") -> dict[Any, dict[int, float]]:
    """Per ``key(row)``: replicate -> the mean of that replicate's rows (e.g. its MAUVE k-means
    seeds), in replicate order; None values are skipped."""
    groups: dict[Any, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r[value] is not None:
            groups[key(r)][r["replicate"]].append(r[value])
    return {k: {rep: sum(v) / len(v) for rep, v in sorted(reps.items())} for k, reps in groups.items()}


def _unit(d: dict[str, Any]) -> str:
    """What the intervals are over: the replicates, or the MAUVE k-means seeds of a one-replicate run."""
    n = len(d["replicates"])
    return f"{n} target-side replicates" if n > 1 else "the MAUVE k-means seeds of one replicate (other metrics: a single value)"


def _buckets(rows: list[dict[str, Any]]) -> str:
    """`` (k=6)`` for MAUVE rows of one cell, `` (k=2, NOT MEANINGFUL)`` below the size guard."""
    ks = sorted({r["buckets"] for r in rows if r["buckets"] is not None})
    flag = "" if all(r["meaningful"] for r in rows) else ", NOT MEANINGFUL"
    return f" (k={'/'.join(str(k) for k in ks)}{flag})" if ks else ""


def _guard_warning(guard: dict[str, Any]) -> str:
    """A loud block naming the MAUVE sample sets below the size guard, grouped by their counts ("" when none)."""
    flagged = guard.get("flagged") or []
    if not flagged:
        return ""
    head = (f"> **WARNING: MAUVE NOT MEANINGFUL for {len(flagged)} sample set(s).** MAUVE needs at least "
            f"{guard.get('min_buckets')} k-means buckets and {guard.get('samples_per_bucket')} samples per bucket in both "
            f"sets ({guard.get('min_samples')} samples); the values marked NOT MEANINGFUL below must not be used to "
            "order methods.")
    groups: dict[tuple, list[str]] = defaultdict(list)
    for r in guard.get("flagged_sets") or []:
        groups[(r.get("samples"), r.get("references"), r.get("buckets"))].append(str(r.get("name")))
    lines = ([f"> - {n} samples against {q} references, {k} buckets: {', '.join(names)}" for (n, q, k), names in groups.items()]
             or [f"> - {line}" for line in flagged])
    return "\n".join([head, ">"] + lines)


def _truncation(d: dict[str, Any]) -> str:
    """Which top-k truncation each compared method (and each candidates ablation point) sampled under."""
    rows = [[r.get("method", "-"), r.get("text", "-"), r.get("tokens_per_reveal", "-")] for r in d["truncation"]]
    equal = len({(r.get("top_k"), r.get("tokens_per_reveal")) for r in d["truncation"]}) == 1
    lead = ("Every compared method draws each revealed token from the same top-k of its own token law (GTL: of its "
            "guided law over the denoiser's top-n candidates)." if equal else
            "**WARNING: the compared methods sampled under different truncations**; their scores are not comparable.")
    return lead + "\n\n" + markdown_table(["method", "truncation", "tokens per reveal (at most)"], rows)


def _ratio_text(config: dict[str, Any]) -> str:
    """Which estimator of :mod:`gtl_verify.estimators` fitted the guided methods' ratio, with its budget
    and network size (from the run's recorded config; empty when the config does not say)."""
    estimator = (config.get("ratio") or {}).get("estimator")
    if not estimator:
        return ""
    budget, size = (config.get("training") or {}).get("ratio") or {}, (config.get("models") or {}).get("ratio") or {}
    text = (f"GTL and GTL-planner read the density ratio fitted by the `{estimator}` estimator "
            f"(`gtl_verify.estimators`) on the kept physics segments of each share and replicate")
    if budget:
        text += (f": {budget.get('steps')} AdamW steps of {budget.get('batch_size')} rows at rate {budget.get('lr')}"
                 f" ([training.ratio], also the TCSM correction's budget)")
    if size:
        text += f"; network hidden size {size.get('hidden')}, {size.get('blocks')} blocks ([models.ratio])"
    return text + "."


def _pct(f: float, as_fraction: bool) -> float:
    return paper.fraction_to_pct(f, as_fraction)


def _pct_text(pct: float) -> str:
    return f"{pct:g} %"


def _ablation(rows: list[dict[str, Any]], name: str, xlabel: str, ctx: Context, logx: bool) -> tuple[str, str]:
    vals: dict[Any, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        vals[r["x"]]["p_source"].append(r["p_source"])
        vals[r["x"]]["mauve"].append(r["mauve"])
        vals[r["x"]]["rows"].append(r)
    sums = {x: {k: summarize(v) for k, v in d.items() if k != "rows"} for x, d in sorted(vals.items())}
    table = markdown_table([xlabel.split(" (")[0], "runs", f"classifier P(source): {INTERVAL_HEADER}", f"MAUVE: {INTERVAL_HEADER}",
                            "truncation"],
                           [[x, max(d["p_source"].n, d["mauve"].n), d["p_source"].interval_text(),
                             d["mauve"].interval_text() + _buckets(vals[x]["rows"]),
                             "; ".join(dict.fromkeys(r["truncation"] for r in vals[x]["rows"]))]
                            for x, d in sums.items()])
    series = {label: [(x, d[key]) for x, d in sums.items() if d[key].n]
              for key, label in (("p_source", "classifier P(source) (lower = more target-like)"), ("mauve", "MAUVE (MiniLM features)"))}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return table, ""
    path, rel = ctx.figure_path(f"ablation-{name}")
    line_plot(path, f"Ablation: {xlabel.split(' (')[0]}", xlabel, "score (probability / MAUVE, 0 to 1)", series,
              logx=logx)
    return table, figure_markdown(rel, f"Classifier P(source) and MAUVE against {xlabel.split(' (')[0]}; error bars: 95% bootstrap percentile interval over runs.")


def _mauve_summaries(d: dict[str, Any]) -> tuple[dict[tuple[str, float], Summary], dict[tuple[str, float], list], list[str], list[float]]:
    """MAUVE summaries and raw rows by (method, target share %), the methods and the shares (largest
    first). With several replicates a replicate's value is the mean over its k-means seeds and the
    interval is over replicates; with one, over its k-means seeds."""
    af = d["as_fraction"]
    mrows: dict[tuple[str, float], list] = defaultdict(list)
    for r in d["mauve"]:
        mrows[(r["method"], _pct(r["fraction"], af))].append(r)
    if len(d["replicates"]) > 1:
        mvals = {k: list(v.values()) for k, v in _over_replicates(d["mauve"], lambda r: (r["method"], _pct(r["fraction"], af))).items()}
    else:
        mvals = {k: [r["value"] for r in rows] for k, rows in mrows.items()}
    msums = {k: summarize(v) for k, v in mvals.items()}
    methods = list(dict.fromkeys(r["method"] for r in d["mauve"]))
    pcts = sorted({p for _, p in msums}, reverse=True)
    return msums, mrows, methods, pcts


def _mauve_section(d: dict[str, Any], ctx: Context, warning: str | None) -> tuple[str, str]:
    """MAUVE by method x kept target share beside the held-out floor and ceiling, and the figure."""
    msums, mrows, methods, pcts = _mauve_summaries(d)
    held = [(h, summarize(h.get("mauve") or [])) for h in d["held_out"]]
    held_names = [f"{h.get('method')} ({'ceiling' if 'physics' in str(h.get('method')) else 'floor'})" for h, _ in held]
    held_cells = [s.interval_text() + f" (k={h.get('buckets', '-')}{'' if h.get('meaningful', True) else ', NOT MEANINGFUL'})"
                  for h, s in held]
    rows = [[_pct_text(p)] + [msums[(m, p)].interval_text() + _buckets(mrows[(m, p)]) if (m, p) in msums else "-"
                              for m in methods] + held_cells for p in pcts]
    body = ((warning + "\n\n" if warning else "")
            + f"MAUVE against held-out physics abstracts (higher is better): mean and 95% bootstrap percentile interval "
            f"over {_unit(d)}; k: k-means buckets of MAUVE's quantisation. Beside every share: held-out CS segments "
            "(the floor a method must beat) and held-out physics segments (the ceiling), the same number of segments as "
            "each method's samples, against the same reference (interval over MAUVE k-means seeds).\n\n"
            + markdown_table(["target data"] + methods + held_names, rows))
    series = {m: [(p, msums[(m, p)]) for p in pcts if (m, p) in msums] for m in methods}
    series.update({name: [(p, s) for p in pcts] for name, (_, s) in zip(held_names, held)})
    path, rel = ctx.figure_path("mauve-vs-fraction")
    line_plot(path, "MAUVE vs kept target data (ours, MiniLM features)", "target data kept (%, log scale)",
              "MAUVE (0 to 1)", series, logx=True)
    body += "\n\n" + figure_markdown(rel, "MAUVE against the share of physics data kept, with the held-out floor and "
                                          f"ceiling as flat lines; error bars: 95% bootstrap percentile interval over {_unit(d)}.")
    return "MAUVE", body


def _highest_mauve(d: dict[str, Any]) -> str:
    """One summary sentence: the method with the highest mean MAUVE at each share (or a tie)."""
    msums, _, methods, pcts = _mauve_summaries(d)

    def highest(p: float) -> str:
        values = [(msums[(m, p)].mean, m) for m in methods if (m, p) in msums]
        if paper.is_tie([v for v, _ in values]):
            return f"{_pct_text(p)} target data: all methods tie ({fmt(values[0][0], 3)})"
        v, m = max(values)
        return f"{_pct_text(p)} target data: {m} ({fmt(v, 3)})"

    return "Highest MAUVE: " + "; ".join(highest(p) for p in pcts) + "."


def _paper_ranks(comparisons: list) -> tuple[dict[tuple[str, float], int | str], dict[tuple[str, float], int]]:
    """Our rank (or "tie") and the paper's rank of each (method, share) by MAUVE."""
    ranks_ours: dict[tuple[str, float], int | str] = {}
    ranks_paper: dict[tuple[str, float], int] = {}
    for p in paper.LANGUAGE_FRACTIONS_PCT:
        group = [c for c in comparisons if c.key == p]
        ours_group = {c.method: c.ours for c in group}
        tied = paper.is_tie([v for v in ours_group.values() if v is not None])
        for i, m in enumerate(paper.ordering(ours_group, lower_is_better=False)):
            ranks_ours[(m, p)] = "tie" if tied else i + 1
        for i, m in enumerate(paper.ordering({c.method: c.paper for c in group}, lower_is_better=False)):
            ranks_paper[(m, p)] = i + 1
    return ranks_ours, ranks_paper


def _paper_section(d: dict[str, Any], ctx: Context, warning: str | None) -> tuple[tuple[str, str], str] | None:
    """The comparison of MAUVE orderings with the paper's (section and summary sentence), or None."""
    msums, _, _, _ = _mauve_summaries(d)
    ours_s = {(paper.canonical_method(m), paper.pct_key(p)): s for (m, p), s in msums.items()
              if paper.pct_key(p) is not None and s.n}
    comparisons = paper.language_comparisons({k: s.mean for k, s in ours_s.items()})
    if not any(c.ours is not None for c in comparisons):
        return None
    ranks_ours, ranks_paper = _paper_ranks(comparisons)
    rows = [[_pct_text(c.key), paper.DISPLAY_NAMES[c.method],
             ours_s[(c.method, c.key)].interval_text() if (c.method, c.key) in ours_s else "-",
             ranks_ours.get((c.method, c.key), "-"), fmt(c.paper, 3), ranks_paper[(c.method, c.key)]]
            for c in comparisons]
    sentences = paper.ordering_sentences(comparisons, lower_is_better=False)
    body = (("> **WARNING: some MAUVE sample sets are below the size guard (see MAUVE); ranks built on values "
             "marked NOT MEANINGFUL there are not meaningful either.**\n\n" if warning else "")
            + "**Only the orderings are comparable.** " + paper.LANGUAGE_FEATURES_NOTE + "\n\n"
            + markdown_table(["target data", "method", f"ours (MiniLM): {INTERVAL_HEADER}", "our rank",
                              "paper (GPT-2-large, 5 seeds)", "paper rank"], rows))
    if sentences:
        body += "\n\n" + "\n".join(f"- {s}" for s in sentences)
    path, rel = ctx.figure_path("paper-mauve")
    line_plot(path, "Published MAUVE (paper, GPT-2-large features)", "target data kept (%, log scale)", "MAUVE (0 to 1)",
              {paper.DISPLAY_NAMES[m]: [(p, summarize([v])) for p, v in paper.LANGUAGE_MAUVE[m].items()]
               for m in paper.LANGUAGE_METHODS}, logx=True)
    body += "\n\n" + figure_markdown(rel, "The paper's MAUVE values (read off its figure) for the same settings; "
                                          "compare the ordering of the lines with ours, not the values.")
    agree = sum("matches" in s for s in sentences)
    ranked = sum("the ranking" in s for s in sentences)
    summary = (f"The ranking of target-only, fine-tuned and GTL matches the paper at {agree} of {ranked} "
               "target shares where our values differ (MAUVE features differ from the paper's, so only "
               "orderings are compared).")
    return ("Comparison with the paper (orderings only)", body), summary


#: the paired comparison: metric -> (row list, value field, extra row filter, higher is better, label)
_PAIRED_METRICS = (
    ("mauve", "value", None, True, "MAUVE"),
    ("classifier", "p_source", None, False, "P(source)"),
    ("distinct", "value", 2, True, "distinct-2"),
    ("perplexity", "value", None, False, "perplexity (ratio)"),
)
# the report's order of the paired rows (others follow)
_BASELINES = ("target-only", "fine-tuned", "fine-tuned-planner", "tcsm", "ar2diff", "source-only")


def _paired(d: dict[str, Any]) -> dict[tuple[str, str, float, str], tuple[list[float], int]]:
    """GTL against every unguided method, paired by replicate: for (gtl method, baseline, share %,
    metric label) the per-replicate differences (GTL - baseline; for perplexity the ratio
    GTL / baseline) and how many replicates favour GTL."""
    af = d["as_fraction"]
    out = {}
    for table, field, n, higher, label in _PAIRED_METRICS:
        rows = [r for r in d[table] if n is None or r.get("n") == n]
        reps = _over_replicates(rows, lambda r: (r["method"], _pct(r["fraction"], af)), field)  # (method, pct) -> {replicate: value}
        methods = {m for m, _ in reps}
        guided = [m for m in methods if m in METHODS and METHODS[m].guided]
        for g in guided:
            for b in sorted(m for m in methods if m not in guided and not m.startswith("held-out")):
                for pct in sorted({p for m, p in reps if m == g}, reverse=True):
                    a, c = reps.get((g, pct), {}), reps.get((b, pct), {})
                    common = sorted(set(a) & set(c))
                    if not common:
                        continue
                    ga, bc = [a[k] for k in common], [c[k] for k in common]
                    ratio = label.startswith("perplexity")
                    if ratio:  # a ratio of perplexities needs positive finite values on both sides
                        keep = [(x, y) for x, y in zip(ga, bc) if 0 < x < math.inf and 0 < y < math.inf]
                        ga, bc = [x for x, _ in keep], [y for _, y in keep]
                        if not keep:
                            continue
                    diffs = [x / y if ratio else x - y for x, y in zip(ga, bc)]
                    wins = sum((x > y) == higher and x != y for x, y in zip(ga, bc))
                    out[(g, b, pct, label)] = (diffs, wins)
    return out


def _paired_section(d: dict[str, Any]) -> tuple[tuple[str, str], str] | None:
    """GTL against each baseline per share, paired by replicate, and the summary sentence."""
    pairs = _paired(d)
    if not pairs:
        return None
    labels = [m[4] for m in _PAIRED_METRICS]
    registry, order = list(METHODS), {m: i for i, m in enumerate(_BASELINES)}
    keys = sorted(dict.fromkeys((g, b, p) for g, b, p, _ in pairs),
                  key=lambda k: (-k[2], registry.index(k[0]) if k[0] in registry else 99, order.get(k[1], 99), k[1]))
    rows = []
    for g, b, p in keys:
        cells = []
        for label in labels:
            if (g, b, p, label) not in pairs:
                cells.append("-")
                continue
            diffs, wins = pairs[(g, b, p, label)]
            cells.append(f"{summarize(diffs).interval_text()} ({wins}/{len(diffs)})")
        rows.append([_pct_text(p), f"{g} vs {b}"] + cells)
    body = ("Each generated set is compared with the baseline's set of the same replicate (same share, same physics "
            "data, same sampling budget and truncation): GTL - baseline for MAUVE (higher is better), classifier "
            "P(source) (lower is better) and distinct-2 (higher is more diverse), GTL / baseline for the generative "
            f"perplexity (lower is better); mean and 95% bootstrap percentile interval over {_unit(d)}, and in brackets "
            f"the replicates in which GTL is better. With {len(d['replicates'])} replicate(s) an interval is a coarse summary; "
            "the counts say how consistent the sign is.\n\n"
            + markdown_table(["target data", "comparison"] + labels, rows))
    meaningful = {(r["method"], _pct(r["fraction"], d["as_fraction"])): r["meaningful"] for r in d["mauve"]}
    sentences = []
    for p in sorted({p for _, _, p in keys}):
        parts = []
        for b in ("fine-tuned", "target-only"):
            wins = []
            for label in labels:
                if ("gtl", b, p, label) not in pairs:
                    continue
                if label == "MAUVE" and not (meaningful.get(("gtl", p), True) and meaningful.get((b, p), True)):
                    wins.append("MAUVE not meaningful")
                    continue
                diffs, won = pairs[("gtl", b, p, label)]
                wins.append(f"{label.split(' (')[0]} {won}/{len(diffs)}")
            if wins:
                parts.append(f"{b} on " + ", ".join(wins))
        if parts:
            sentences.append(f"{_pct_text(p)} physics: " + "; ".join(parts))
    summary = ("Replicates in which GTL is better than the baseline: " + "; ".join(sentences) + ".") if sentences else ""
    return ("GTL against the baselines (paired by replicate)", body), summary


def _classifier_section(d: dict[str, Any]) -> tuple[str, str]:
    """P(source) and % classified as target of the generated samples, by method and share."""
    af = d["as_fraction"]
    cvals: dict[tuple[str, float], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in d["classifier"]:
        key = (r["method"], _pct(r["fraction"], af))
        cvals[key]["p_source"].append(r["p_source"])
        cvals[key]["pct_target"].append(r["pct_target"])
    rows = [[m, _pct_text(p), len(v["p_source"]), summarize(v["p_source"]).interval_text(), summarize(v["pct_target"]).interval_text()]
            for (m, p), v in cvals.items()]
    return ("Domain classifier", "Source/target classifier on generated samples: P(source) (lower is more "
                                 "target-like) and the percentage classified as target; mean and 95% bootstrap percentile "
                                 f"interval over {_unit(d)}.\n\n"
            + markdown_table(["method", "target data", "replicates", "P(source)", "% classified target"], rows))


def _distinct_section(d: dict[str, Any]) -> tuple[str, str]:
    """distinct-n of the generated tokens, by method and share."""
    af = d["as_fraction"]
    dvals: dict[tuple[str, float], dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for r in d["distinct"]:
        dvals[(r["method"], _pct(r["fraction"], af))][r["n"]].append(r["value"])
    ns = sorted({r["n"] for r in d["distinct"]})
    rows = [[m, _pct_text(p)] + [summarize(v[n]).interval_text() if n in v else "-" for n in ns] for (m, p), v in dvals.items()]
    return ("Diversity (distinct-n)", "Share of distinct n-grams among generated tokens (higher is more diverse): "
                                      f"mean and 95% bootstrap percentile interval over {_unit(d)}.\n\n"
            + markdown_table(["method", "target data"] + [f"distinct-{n}" for n in ns], rows))


def _perplexity_section(d: dict[str, Any]) -> tuple[str, str]:
    """Generative perplexity under each evaluator, by method and share."""
    af = d["as_fraction"]
    pvals: dict[tuple[str, float, str], list] = defaultdict(list)
    for r in d["perplexity"]:
        pvals[(r["method"], _pct(r["fraction"], af), r["evaluator"])].append(r["value"])
    rows = [[m, _pct_text(p), e, len(v), summarize(v).interval_text()] for (m, p, e), v in pvals.items()]
    return ("Generative perplexity", "Perplexity of generated samples under an evaluator model (lower is more "
                                     f"fluent under that evaluator): mean and 95% bootstrap percentile interval over {_unit(d)}.\n\n"
            + markdown_table(["method", "target data", "evaluator", "replicates", "perplexity"], rows))


def _ablation_section(d: dict[str, Any], ctx: Context) -> tuple[str, str] | None:
    """The gamma and candidate-count ablations beside the paper's figures, or None."""
    parts = []
    if d["gamma"]:
        table, fig = _ablation(d["gamma"], "gamma", "gamma (guidance exponent, dimensionless)", ctx, logx=False)
        parts.append("### Guidance strength gamma\n\n" + table + ("\n\n" + fig if fig else "")
                     + f"\n\nPaper: P(source) {paper.ABLATION_UNGUIDED_P_SOURCE} unguided, about "
                     f"{paper.ABLATION_GAMMA5_P_SOURCE[0]}-{paper.ABLATION_GAMMA5_P_SOURCE[1]} at gamma = 5.")
    if d["candidates"]:
        table, fig = _ablation(d["candidates"], "candidates", "candidates n (top-n of the denoiser, log scale)", ctx, logx=True)
        lo, hi = paper.ABLATION_CANDIDATES_P_SOURCE[8], paper.ABLATION_CANDIDATES_P_SOURCE[1024]
        parts.append("### Number of ratio candidates n\n\n" + table + ("\n\n" + fig if fig else "")
                     + f"\n\nPaper: P(source) about {lo[0]}-{lo[1]} at n = 8 and {hi[0]}-{hi[1]} at n = 1024.")
    return ("Ablations", "\n\n".join(parts)) if parts else None


def _timing_section(d: dict[str, Any]) -> tuple[str, str]:
    """Sampling seconds and ratio-network passes per sequence, relative to the unguided source-only
    sampler (the same denoiser without guidance; measured in the same run) and to the fastest method."""
    fastest = min((r["seconds"] for r in d["timing"] if r["seconds"] > 0), default=None)
    unguided = next((r["seconds"] for r in d["timing"] if r["method"] == "source-only" and r["seconds"] > 0), None)
    rows = [[r["method"], r["seconds"], "-" if unguided is None else f"{r['seconds'] / unguided:.2f}x",
             "-" if fastest is None else f"{r['seconds'] / fastest:.2f}x", r["passes"], r["device"]]
            for r in d["timing"]]
    return ("Sampling cost", "Wall seconds per generated sequence, every set drawn in this run on the same machine "
                             "(shared: ratios are what to read).\n\n"
            + markdown_table(["method", "seconds per sequence", "relative to source-only (unguided)", "relative to fastest",
                              "ratio-network passes per sequence", "device"], rows))


def render_language(results: dict[str, Any], meta: dict[str, Any], ctx: Context) -> Rendered:
    """MAUVE, classifier, distinct-n, perplexity and timing tables (mean and 95% bootstrap percentile interval over
    seeds), MAUVE against the kept target share, ablation figures and the ordering comparison with the paper."""
    d = _parse(results)
    sections: list[tuple[str, str]] = []
    summary_parts: list[str] = []
    warning = _guard_warning(d["guard"])
    if warning:
        summary_parts.append(f"WARNING: {len(d['guard']['flagged'])} MAUVE sample set(s) are below the size guard; "
                             "their MAUVE values are NOT MEANINGFUL.")
    if d["mauve"]:
        sections.append(_mauve_section(d, ctx, warning))
        summary_parts.append(_highest_mauve(d))
    paired = _paired_section(d)
    if paired is not None:
        sections.append(paired[0])
        if paired[1]:
            summary_parts.append(paired[1])
    if d["mauve"]:
        compared = _paper_section(d, ctx, warning)
        if compared is not None:
            sections.insert(0, compared[0])
            summary_parts.append(compared[1])
    for present, section in ((d["classifier"], _classifier_section), (d["distinct"], _distinct_section),
                             (d["perplexity"], _perplexity_section)):
        if present:
            sections.append(section(d))
    ablations = _ablation_section(d, ctx)
    if ablations is not None:
        sections.append(ablations)
    ratio = _ratio_text(meta.get("config") or {})
    if ratio:
        sections.append(("Density ratio", ratio))
    if d["truncation"]:
        sections.append(("Sampling truncation", _truncation(d)))
    if d["timing"]:
        sections.append(_timing_section(d))
    if not sections:
        sections.append(("Results", "The results file holds no MAUVE, classifier, diversity, perplexity, ablation or timing rows."))
    summary = " ".join(summary_parts) or "Language transfer results (no MAUVE rows recorded)."
    return Rendered("arXiv CS -> Physics transfer", summary, sections)
