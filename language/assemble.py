"""The ``language`` results of a run: MAUVE, classifier, distinct-n and perplexity rows, ablations,
timing and provenance details, and the plain-text MAUVE table the CLI prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gtl_verify.methods import METHODS
from gtl_verify.provenance import device_name
from gtl_verify.results import LanguageResults

from . import evaluate as ev
from .components import RATIO, SOURCE
from .config import parameter_share
from .run_folder import Run, _jsonable


HELD_OUT = "held-out physics"
HELD_OUT_SOURCE = "held-out CS"


@dataclass
class Replicate:
    """The scores of one target-side replicate (``seed``): (sample set, metrics) per method and
    share, the held-out physics ceiling and CS floor, and the components' held-out diagnostics."""

    seed: int
    evaluated: list[tuple[Any, dict[str, Any]]]
    held: dict[str, Any]
    held_src: dict[str, Any]
    diagnostics: dict[str, Any]


def _timing_rows(evaluated) -> list[dict[str, Any]]:
    """Per method: wall seconds and ratio-network passes per generated sequence, and the device."""
    timing: dict[str, dict[str, float]] = {}
    for s, _ in evaluated:
        t = timing.setdefault(s.method, {"seconds": 0.0, "samples": 0, "passes": 0})
        t["seconds"] += s.cost["wall_time_s"]
        t["samples"] += s.cost["samples"]
        t["passes"] += s.cost.get("ratio_passes", 0) + s.cost.get("single_site_passes", 0)
    dev = device_name()
    return [{"method": m, "seconds_per_sequence": t["seconds"] / t["samples"],
             "ratio_passes_per_sequence": t["passes"] / t["samples"], "device": dev} for m, t in timing.items()]


def _truncation(cfg, vocab_size: int, method: str, candidates: int | None) -> dict[str, Any]:
    return ev.method_truncation(method, cfg.sampling.top_k, candidates, vocab_size)


def _ablation_rows(cfg, vocab_size: int, abl_rows) -> dict[str, Any]:
    """The gamma and candidates sweeps of GTL at the ablation fraction: P(source), mean MAUVE (with
    its size guard) and the truncation of each value."""
    def row(r: dict[str, Any], candidates: int) -> dict[str, Any]:
        return {"p_source": r.get("classifier", {}).get("p_source"), "mauve": float(np.mean(r["mauve"])),
                "buckets": r["mauve_guard"]["buckets"], "meaningful": r["mauve_guard"]["meaningful"],
                "truncation": _truncation(cfg, vocab_size, "gtl", candidates)["text"]}

    return {
        "fraction": cfg.sampling.ablation_fraction,
        "gamma": [{"gamma": float(x), **row(r, cfg.sampling.candidates)} for x, _, r in abl_rows["gamma"]],
        "candidates": [{"n": int(x), **row(r, int(x))} for x, _, r in abl_rows["candidates"]],
    }


def _assemble(run: Run, replicates: list[Replicate], abl_rows) -> LanguageResults:
    """The ``language`` results: every metric row tagged with its ``replicate`` seed; the ceiling and
    floor MAUVE of the first replicate (their rows and the reference are the same in every one)."""
    cfg, data = run.config, run.data
    fractions = list(cfg.data.fractions)
    f_eval = cfg.evaluator_fraction
    evaluator = f"target-only denoiser ({f_eval * 100:g} % physics), MDLM ELBO perplexity"
    mauve, classifier, distinct, perplexity = [], [], [], []

    def add(method: str, frac: float, r: dict[str, Any], replicate: int, ranked: bool = True) -> None:
        tag = {"method": method, "fraction": frac, "replicate": replicate}
        for s, v in zip(r["seeds"], r["mauve"] if ranked else []):
            mauve.append({**tag, "seed": s, "mauve": v, "buckets": r["mauve_guard"]["buckets"],
                          "meaningful": r["mauve_guard"]["meaningful"]})
        if "classifier" in r:
            classifier.append({**tag, **r["classifier"]})
        for n, v in (r.get("distinct") or {}).items():
            distinct.append({**tag, "n": int(n), "value": v})
        if "perplexity" in r:
            perplexity.append({**tag, "value": r["perplexity"]["perplexity"],
                               "nats_per_token": r["perplexity"]["nats_per_token"], "evaluator": evaluator})

    examples = {}
    for rep in replicates:
        for s, r in rep.evaluated:
            # source-only does not depend on the target share: one sample set, listed at every share
            for frac in (fractions if s.method == "source-only" else [s.fraction]):
                add(s.method, frac, r, rep.seed)
            examples.setdefault(f"{s.method} {s.fraction:g}" if s.method != "source-only" else s.method, r["example"])

    def held_out(name: str, key: str) -> dict[str, Any]:
        # held-out segments against the reference at the methods' sample size: physics is the
        # ceiling, CS the floor (kept out of the MAUVE rows so that they are not ranked as methods)
        for rep in replicates:
            add(name, f_eval, getattr(rep, key), rep.seed, ranked=False)
        r = getattr(replicates[0], key)
        examples[name] = r["example"]
        return {"method": name, "samples": r["mauve_guard"]["samples"], "seeds": r["seeds"], "mauve": r["mauve"],
                "mauve_mean": float(np.mean(r["mauve"])), "mauve_std": float(np.std(r["mauve"])),
                "buckets": r["mauve_guard"]["buckets"], "meaningful": r["mauve_guard"]["meaningful"]}

    reference, floor = held_out(HELD_OUT, "held"), held_out(HELD_OUT_SOURCE, "held_src")
    evaluated = [pair for rep in replicates for pair in rep.evaluated]
    held, held_src = replicates[0].held, replicates[0].held_src
    diagnostics = {str(rep.seed): rep.diagnostics for rep in replicates}

    timing_rows = _timing_rows(evaluated)
    ablations = _ablation_rows(cfg, data.vocab.size, abl_rows)
    guards = [(f"{s.method} {s.fraction:g} [{s.tag}]", r) for s, r in evaluated]
    guards += [(f"ablation {s.tag}", r) for rows in abl_rows.values() for _, s, r in rows]
    guards += [(HELD_OUT, held), (HELD_OUT_SOURCE, held_src)]
    den = run.components.get(SOURCE.name, {}).get("parameters")
    rat = run.components.get(RATIO.at(f_eval).name, {}).get("parameters")
    return LanguageResults.from_dict(_jsonable({
        "config": cfg.to_dict(),
        "data": data.summary,
        "vocabulary": data.vocab.to_dict(),
        "mauve_features": ev.MAUVE_DESCRIPTION,
        "mauve_note": ("replicate: the seed of the target-side replicate (components trained on the physics share, "
                       "samples, evaluation draws); seed: the MAUVE k-means seed on that replicate's sample set"),
        "replicates": [rep.seed for rep in replicates],
        "perplexity_evaluator": (f"{evaluator}: exp of the negative ELBO (nats/token) of the samples under the denoiser "
                                 f"trained here on {f_eval * 100:g} % of the physics segments (an upper bound on its "
                                 "perplexity); the target-only samples at that share are scored by their own generator"),
        "classifier_evaluator": f"clean classifier trained here on CS vs {f_eval * 100:g} % of the physics segments "
                                "(balanced batches); P(source) < 1/2 counts as target",
        "reference_mauve": reference,
        "floor_mauve": floor,
        "mauve_guard": ev.guard_report([(name, r["mauve_guard"]) for name, r in guards]),
        "truncation": [_truncation(cfg, data.vocab.size, m, cfg.sampling.candidates if METHODS[m].guided else None)
                       for m in cfg.sampling.methods],
        "mauve": mauve, "classifier": classifier, "distinct": distinct, "perplexity": perplexity,
        "ablations": ablations, "timing": timing_rows,
        "components": run.components,
        "parameters": {"denoiser": den, "ratio": rat, "ratio_network": RATIO.at(f_eval).name,
                       "ratio_share_of_denoiser": parameter_share(rat, den) if rat and den else None,
                       "paper_ratio_share": 4.1 / 59.8},
        "diagnostics": diagnostics,
        "examples": examples,
        "stage_seconds": run.stage_seconds,
        "trained_this_run": run.trained,
    }))


def mauve_table(results: LanguageResults | dict[str, Any]) -> str:
    """Plain-text MAUVE table (mean ± std over seeds, k-means buckets k) of the results (typed or as
    read from results.json), methods x target share."""
    from collections import defaultdict

    if isinstance(results, dict):
        results = LanguageResults.from_dict(results)

    vals: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for r in results.mauve:
        vals[(r["method"], r["fraction"])].append(r)
    methods = list(dict.fromkeys(r["method"] for r in results.mauve))
    fractions = sorted({r["fraction"] for r in results.mauve}, reverse=True)
    width = 40 if not results.mauve_guard["all_meaningful"] else 24
    lines = [f"{'target data':>12s}" + "".join(f"{m:>{width}s}" for m in methods)]
    for f in fractions:
        cells = []
        for m in methods:
            rows = vals.get((m, f))
            v = [r["mauve"] for r in rows or []]
            cells.append(ev.mauve_text(np.mean(v), np.std(v), rows[0]["buckets"], rows[0]["meaningful"]).rjust(width)
                         if rows else f"{'-':>{width}s}")
        lines.append(f"{f * 100:>10g} %" + "".join(cells))
    return "\n".join(lines)
