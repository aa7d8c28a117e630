"""The ``language`` results of a run: MAUVE, classifier, distinct-n and perplexity rows, ablations,
timing and provenance details, and the plain-text MAUVE table the CLI prints."""

from __future__ import annotations

from typing import Any

import numpy as np

from gtl_verify.provenance import device_name
from gtl_verify.results import LanguageResults

from . import evaluate as ev
from .config import parameter_share
from .components import ratio_network_name
from .run_folder import Run, _jsonable


HELD_OUT = "held-out physics"
HELD_OUT_SOURCE = "held-out CS"


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


def _ablation_rows(fraction: float, abl_rows) -> dict[str, Any]:
    """The gamma and candidates sweeps of GTL at ``fraction``: P(source) and mean MAUVE per value."""
    def mean_mauve(r):
        return float(np.mean(r["mauve"]))

    return {
        "fraction": fraction,
        "gamma": [{"gamma": float(x), "p_source": r.get("classifier", {}).get("p_source"), "mauve": mean_mauve(r)}
                  for x, _, r in abl_rows["gamma"]],
        "candidates": [{"n": int(x), "p_source": r.get("classifier", {}).get("p_source"), "mauve": mean_mauve(r)}
                       for x, _, r in abl_rows["candidates"]],
    }


def _assemble(run: Run, evaluated, held, held_src, abl_rows, diagnostics) -> LanguageResults:
    cfg, data = run.config, run.data
    fractions = list(cfg.data.fractions)
    f_eval = cfg.evaluator_fraction
    evaluator = f"target-only denoiser ({f_eval * 100:g} % physics), MDLM ELBO perplexity"
    mauve, classifier, distinct, perplexity = [], [], [], []

    def add(method: str, frac: float, r: dict[str, Any]) -> None:
        for s, v in zip(r["seeds"], r["mauve"]):
            mauve.append({"method": method, "fraction": frac, "seed": s, "mauve": v})
        if "classifier" in r:
            classifier.append({"method": method, "fraction": frac, **r["classifier"]})
        for n, v in (r.get("distinct") or {}).items():
            distinct.append({"method": method, "fraction": frac, "n": int(n), "value": v})
        if "perplexity" in r:
            perplexity.append({"method": method, "fraction": frac, "value": r["perplexity"]["perplexity"],
                               "nats_per_token": r["perplexity"]["nats_per_token"], "evaluator": evaluator})

    examples = {}
    for s, r in evaluated:
        # source-only does not depend on the target share: one sample set, listed at every share
        for frac in (fractions if s.method == "source-only" else [s.fraction]):
            add(s.method, frac, r)
        examples[f"{s.method} {s.fraction:g}" if s.method != "source-only" else s.method] = r["example"]
    reference = None
    if held is not None:
        # held-out physics segments against the reference: the ceiling of the metrics at this sample
        # size (kept out of the MAUVE rows so that it is not ranked as a method)
        reference = {"method": HELD_OUT, "samples": int(data.held_out_rows.shape[0]), "seeds": held["seeds"],
                     "mauve": held["mauve"], "mauve_mean": float(np.mean(held["mauve"])), "mauve_std": float(np.std(held["mauve"]))}
        if "classifier" in held:
            classifier.append({"method": HELD_OUT, "fraction": f_eval, **held["classifier"]})
        for n, v in (held.get("distinct") or {}).items():
            distinct.append({"method": HELD_OUT, "fraction": f_eval, "n": int(n), "value": v})
        if "perplexity" in held:
            perplexity.append({"method": HELD_OUT, "fraction": f_eval, "value": held["perplexity"]["perplexity"],
                               "nats_per_token": held["perplexity"]["nats_per_token"], "evaluator": evaluator})
        examples[HELD_OUT] = held["example"]
    if held_src is not None:
        classifier.append({"method": HELD_OUT_SOURCE, "fraction": f_eval, **held_src})

    timing_rows = _timing_rows(evaluated)
    ablations = _ablation_rows(cfg.sampling.ablation_fraction, abl_rows)
    den = run.components.get("source denoiser", {}).get("parameters")
    ratio_name = ratio_network_name(run, f_eval)
    rat = run.components.get(ratio_name, {}).get("parameters")
    return LanguageResults.from_dict(_jsonable({
        "config": cfg.to_dict(),
        "data": data.summary,
        "vocabulary": data.vocab.to_dict(),
        "mauve_features": ev.MAUVE_DESCRIPTION,
        "mauve_note": "seeds are MAUVE k-means seeds on one sample set per method and target share",
        "perplexity_evaluator": (f"{evaluator}: exp of the negative ELBO (nats/token) of the samples under the denoiser "
                                 f"trained here on {f_eval * 100:g} % of the physics segments (an upper bound on its "
                                 "perplexity); the target-only samples at that share are scored by their own generator"),
        "classifier_evaluator": f"clean classifier trained here on CS vs {f_eval * 100:g} % of the physics segments "
                                "(balanced batches); P(source) < 1/2 counts as target",
        "reference_mauve": reference,
        "mauve": mauve, "classifier": classifier, "distinct": distinct, "perplexity": perplexity,
        "ablations": ablations, "timing": timing_rows,
        "components": run.components,
        "parameters": {"denoiser": den, "ratio": rat, "ratio_network": ratio_name,
                       "ratio_share_of_denoiser": parameter_share(rat, den) if rat and den else None,
                       "paper_ratio_share": 4.1 / 59.8},
        "diagnostics": diagnostics,
        "examples": examples,
        "stage_seconds": run.stage_seconds,
        "trained_this_run": run.trained,
    }))


def mauve_table(results: LanguageResults) -> str:
    """Plain-text MAUVE table (mean ± std over seeds) of the results, methods x target share."""
    from collections import defaultdict

    vals: dict[tuple[str, float], list[float]] = defaultdict(list)
    for r in results.mauve:
        vals[(r["method"], r["fraction"])].append(r["mauve"])
    methods = list(dict.fromkeys(r["method"] for r in results.mauve))
    fractions = sorted({r["fraction"] for r in results.mauve}, reverse=True)
    lines = [f"{'target data':>12s}" + "".join(f"{m:>20s}" for m in methods)]
    for f in fractions:
        cells = []
        for m in methods:
            v = vals.get((m, f))
            cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}".rjust(20) if v else f"{'-':>20s}")
        lines.append(f"{f * 100:>10g} %" + "".join(cells))
    return "\n".join(lines)
