"""Ratio estimators held against the exact ratio on the Markov paper preset (CPU experiment).

For every estimator of :mod:`gtl_verify.estimators` and every n target, the estimator is fitted on
the source training set (10,000 sequences) and the first n target sequences (``markov.data``, seed
``--seed``), with the frozen source denoiser given by ``--denoiser``: ``exact`` (the source chain's
forward-backward oracle: isolates the ratio; the default) or ``learned`` (``markov.components.train_denoiser``
with the benchmark's default budget). Each fitted model is measured

- by :func:`gtl_verify.estimators.ratio_diagnostics` on held-out noisy sequences of both domains at
  masking levels t in ``--times``: single-site guidance TV to the exact q(x^i | z) (headline) and the
  level-free log-ratio RMSE;
- by the GTL it yields: ``planner_sample`` with ``LeftToRightPlanner`` (temperature 0), GTL with full
  candidates, gamma 1, ``--samples`` sequences, row-averaged transition KL to the target chain (the
  path of ``markov.benchmark.evaluate``).

An ``exact-ratio`` row (the PairOracle) is the reference. Each finished cell is written to
``--out/cells/`` at once, so a re-run resumes; results.json, ratio_estimators.md and two figures are
rewritten after every cell. results.json is {"experiment", "meta", "cells"} (not a ``gtl report``
envelope: it has no "kind", so report folders skip it).

    OMP_NUM_THREADS=1 python benchmarks/ratio_estimators.py --out runs/ratio-estimators --steps 800
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from gtl_verify.estimators import ESTIMATORS, EstimatorBudget, get_estimator, ratio_diagnostics
from gtl_verify.planners import LeftToRightPlanner
from gtl_verify.provenance import atomic_write_text
from gtl_verify.rules import GTL
from gtl_verify.samplers import SamplerConfig, planner_sample
from markov import metrics
from markov.data import make_data
from markov.oracle import PairOracle
from markov.presets import resolve_pair
from gtl_verify.schedules import LogLinearSchedule

SCHEDULE = LogLinearSchedule()
EXACT = "exact-ratio"


def gtl_transition_kl(denoiser, ratio, pair, samples: int, length: int, seed: int) -> float:
    cfg = SamplerConfig(samples, length, rule=GTL(candidates=None), gamma=1.0, temperature=0.0)
    res = planner_sample(denoiser, ratio, LeftToRightPlanner(), SCHEDULE, cfg, torch.Generator().manual_seed(seed))
    return metrics.transition_kl(pair.target, res.tokens)


def source_denoiser(kind: str, data, pair, seed: int, length: int):
    oracle = PairOracle(pair)
    if kind == "exact":
        return oracle.source
    from markov.components import ComponentStore, as_denoiser, train_denoiser
    from markov.config import ModelSizes, TrainingBudget

    b = TrainingBudget()
    key = {"preset": "paper", "seed": seed, "overlap": 0.0, "vocab_size": pair.vocab_size, "length": length, "n_source": len(data.source_train)}
    net = train_denoiser(ComponentStore(None, False), data.source_train, ModelSizes(), b, seed=seed, key=key,
                         steps=b.source_steps, lr=b.lr, label="source-denoiser")
    return as_denoiser(net, pair.vocab_size)


def run_cell(name: str, n: int, args, pair, data, denoiser) -> dict[str, Any]:
    oracle = PairOracle(pair)
    start = time.perf_counter()
    if name == EXACT:
        model = oracle
    else:
        budget = EstimatorBudget(steps=args.steps, batch_size=args.batch_size, lr=args.lr)
        model = get_estimator(name).fit(data.source_train, data.target_train[:n], budget, schedule=SCHEDULE,
                                        vocab_size=pair.vocab_size, denoiser=denoiser, seed=args.seed)
    fit_s = time.perf_counter() - start
    heldout = {"source": data.source_heldout[: args.heldout], "target": data.target_heldout[: args.heldout]}
    diag = ratio_diagnostics(model, oracle, heldout, SCHEDULE, torch.Generator().manual_seed(args.seed + 7), args.times)
    kl = gtl_transition_kl(denoiser, model, pair, args.samples, args.length, args.seed + 11)
    return {"estimator": name, "n_target": n, "seed": args.seed, "fit_s": fit_s, "transition_kl": kl, **diag.to_dict()}


def write_outputs(out: Path, cells: list[dict[str, Any]], args) -> None:
    meta = {"preset": "paper", "denoiser": args.denoiser, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
            "seed": args.seed, "samples": args.samples, "heldout": args.heldout, "times": list(args.times),
            "n_targets": list(args.n_target), "length": args.length}
    atomic_write_text(out / "results.json", json.dumps({"experiment": "ratio-estimators", "meta": meta, "cells": cells}, indent=2) + "\n")
    atomic_write_text(out / "ratio_estimators.md", markdown(cells, meta))
    figures(out, cells)


def domain_tv(cell: dict[str, Any], domain: str) -> float:
    """Single-site TV of one domain's groups, weighted by masked positions."""
    groups = [g for g in cell["levels"] if g["domain"] == domain and g["positions"]]
    n = sum(g["positions"] for g in groups)
    return sum(g["single_site_tv"] * g["positions"] for g in groups) / n if n else float("nan")


def markdown(cells: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# Ratio estimators on the Markov paper preset", "",
             f"Settings: {json.dumps(meta)}", "",
             "| estimator | n target | single-site TV (both) | TV on target z | TV on source z | "
             "level-free log-ratio RMSE (nats) | GTL transition KL | fit (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for c in sorted(cells, key=lambda c: (c["estimator"], -c["n_target"])):
        lines.append(f"| {c['estimator']} | {c['n_target']} | {c['single_site_tv']:.4f} | {domain_tv(c, 'target'):.4f} | "
                     f"{domain_tv(c, 'source'):.4f} | {c['log_ratio_rmse']:.3f} | {c['transition_kl']:.4f} | {c['fit_s']:.0f} |")
    lines += ["", "Single-site TV by masking level (mean of both domains):", "",
              "| estimator | n target | " + " | ".join(f"t={t}" for t in meta["times"]) + " |",
              "|---|---|" + "---|" * len(meta["times"])]
    for c in sorted(cells, key=lambda c: (c["estimator"], -c["n_target"])):
        by_t = [sum(g["single_site_tv"] * g["positions"] for g in c["levels"] if g["t"] == t) /
                max(sum(g["positions"] for g in c["levels"] if g["t"] == t), 1) for t in meta["times"]]
        lines.append(f"| {c['estimator']} | {c['n_target']} | " + " | ".join(f"{v:.4f}" for v in by_t) + " |")
    return "\n".join(lines) + "\n"


def figures(out: Path, cells: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for name in sorted({c["estimator"] for c in cells}):
        rows = sorted((c for c in cells if c["estimator"] == name), key=lambda c: c["n_target"])
        ns = [c["n_target"] for c in rows]
        for ax, key in zip(axes, ("single_site_tv", "log_ratio_rmse", "transition_kl")):
            ax.plot(ns, [c[key] for c in rows], marker="o", label=name)
    for ax, title in zip(axes, ("single-site guidance TV", "level-free log-ratio RMSE (nats)", "GTL transition KL")):
        ax.set_xscale("log"), ax.set_xlabel("n target"), ax.set_title(title)
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ratio_estimators.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ratio-estimators")
    parser.add_argument("--estimators", nargs="+", default=[EXACT, "guided-likelihood", "telescoping-nce", *[
        e for e in ESTIMATORS if e not in ("guided-likelihood", "telescoping-nce")]])
    parser.add_argument("--n-target", nargs="+", type=int, default=[20, 100, 1000])
    parser.add_argument("--denoiser", choices=("exact", "learned"), default="exact")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--heldout", type=int, default=100)
    parser.add_argument("--times", nargs="+", type=float, default=[0.2, 0.5, 0.8])
    parser.add_argument("--length", type=int, default=20)
    args = parser.parse_args(argv)
    for name in args.estimators:
        if name != EXACT:
            get_estimator(name)  # unknown names fail before any work
    out = Path(args.out)
    pair = resolve_pair("paper", seed=args.seed)
    data = make_data(pair, n_source=10_000, n_target=max(args.n_target), length=args.length, seed=args.seed)
    denoiser = source_denoiser(args.denoiser, data, pair, args.seed, args.length)
    cells = []
    for name in args.estimators:
        for n in (args.n_target if name != EXACT else [max(args.n_target)]):
            path = out / "cells" / f"{name}__{n}__{args.seed}__{args.denoiser}__{args.steps}.json"
            if path.is_file():
                cell = json.loads(path.read_text())
            else:
                cell = run_cell(name, n, args, pair, data, denoiser)
                atomic_write_text(path, json.dumps(cell))
            cells.append(cell)
            print(f"{name:18s} n={n:5d} tv={cell['single_site_tv']:.4f} rmse={cell['log_ratio_rmse']:.3f} "
                  f"kl={cell['transition_kl']:.4f} fit={cell['fit_s']:.0f}s", flush=True)
            write_outputs(out, cells, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
