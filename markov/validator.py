"""Validate a guidance rule against exact ground truth on Markov chains.

    gtl markov validate my_module:MyRule [--preset paper] [--ratio-drift D] [--out DIR]

The rule (a class, instantiated without arguments, or a function of a
:class:`gtl_verify.rules.StepInput`) is run with the exact source denoiser and the exact ratio
(optionally miscalibrated: log r + D x number of revealed tokens) next to built-in GTL (top-2
candidates), full guidance (all K) and the unguided sampler, and measured:

- enumerable setting (the preset's chains at a short length): the sampler's exact output law, by
  propagation, for the fixed left-to-right order, a confidence planner and ancestral sampling with
  T = L and 4L steps -> exact TV and KL to q;
- long setting (length L): samples with the fixed left-to-right order, the Monte-Carlo
  KL(sampler || q) from the exact sampler log-density, the target cross-entropy gap and the
  transition KL.

Results go to DIR/results.json and a Markdown report with a figure (DIR/results.md).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gtl_verify.density import fixed_order_log_density
from gtl_verify.exact_law import ancestral_law, planner_law
from gtl_verify.planners import ConfidencePlanner, LeftToRightPlanner
from gtl_verify.provenance import provenance, write_results
from gtl_verify.rules import GTL, Unguided, rule_name
from gtl_verify.samplers import SamplerConfig, planner_sample
from gtl_verify.schedules import LogLinearSchedule

from . import metrics
from .oracle import PairOracle
from .presets import PRESETS, make_pair


def load_rule(spec: str):
    """``module.path:Name`` -> a rule (classes are instantiated without arguments)."""
    if ":" not in spec:
        raise ValueError(f"rule must look like 'module:Name', got {spec!r}")
    module_name, attr = spec.split(":", 1)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r} of rule {spec!r}: {exc}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    rule = obj() if isinstance(obj, type) else obj
    if not callable(rule):
        raise ValueError(f"rule {spec!r} is not callable")
    return rule


class DriftedRatio:
    """log r(z) + drift * (number of unmasked tokens of z): a ratio whose level is miscalibrated."""

    def __init__(self, ratio: PairOracle, drift: float) -> None:
        self.ratio, self.drift = ratio, float(drift)

    def __call__(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        return self.ratio(z, t) + self.drift * (z != self.ratio.mask_id).sum(-1)

    def single_site(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        unmasked = (z != self.ratio.mask_id).sum(-1)
        return self.ratio.single_site(z, t) + self.drift * (unmasked + 1)[:, None, None]


def validate(rule, preset: str = "paper", *, exact_length: int = 4, length: int = 64, samples: int = 2000,
             ratio_drift: float = 0.0, seed: int = 0, progress: bool = True) -> dict:
    """Measure ``rule`` and the built-in rules against ground truth; returns the results dict."""
    pair = make_pair(preset, seed=seed)
    oracle = PairOracle(pair)
    ratio = oracle if ratio_drift == 0 else DriftedRatio(oracle, ratio_drift)
    denoiser = oracle.source_denoiser()
    schedule = LogLinearSchedule()
    k = pair.source.vocab_size
    if (k + 1) ** exact_length > 50_000:
        raise ValueError(f"exact_length={exact_length} gives (K+1)**L = {(k + 1) ** exact_length} states; choose a smaller one")
    rules = {rule_name(rule): rule, "gtl (top-2)": GTL(candidates=min(2, k)), "full guidance": GTL(), "unguided": Unguided()}
    q_table = pair.target.table(exact_length)
    rows = []
    settings = [
        ("exact: left-to-right", lambda r: planner_law(denoiser, ratio, LeftToRightPlanner(), schedule, SamplerConfig(1, exact_length, rule=r, temperature=0.0))),
        ("exact: confidence planner", lambda r: planner_law(denoiser, ratio, ConfidencePlanner(), schedule, SamplerConfig(1, exact_length, rule=r, temperature=0.5))),
        (f"exact: ancestral T={exact_length}", lambda r: ancestral_law(denoiser, ratio, schedule, SamplerConfig(1, exact_length, steps=exact_length, rule=r))),
        (f"exact: ancestral T={4 * exact_length}", lambda r: ancestral_law(denoiser, ratio, schedule, SamplerConfig(1, exact_length, steps=4 * exact_length, rule=r))),
    ]
    jobs = [(name, r, s) for name, r in rules.items() for s in settings]
    for name, r, (setting, run) in tqdm(jobs, desc="exact laws", disable=not progress):
        law = run(r)
        rows.append({"rule": name, "setting": setting, "exact_tv": law.tv(q_table), "exact_kl": law.kl(q_table),
                     "mc_kl": None, "cross_entropy_gap": None, "notes": f"leftover mask mass {law.leftover_mass:.3g}"})
    gen = torch.Generator().manual_seed(seed)
    for name, r in tqdm(list(rules.items()), desc=f"long chains (L={length})", disable=not progress):
        cfg = SamplerConfig(samples, length, rule=r, temperature=0.0)
        x = planner_sample(denoiser, ratio, LeftToRightPlanner(), schedule, cfg, gen).tokens
        log_s = fixed_order_log_density(denoiser, ratio, r, schedule, x)
        kl, se = metrics.mc_kl(log_s, pair.target.log_prob(x))
        rows.append({"rule": name, "setting": f"long: left-to-right L={length}", "exact_tv": None, "exact_kl": None,
                     "mc_kl": kl, "cross_entropy_gap": metrics.cross_entropy_gap(pair.target, x),
                     "notes": f"MC standard error {se:.2g}; transition KL {metrics.transition_kl(pair.target, x):.3g}"})
    return {"preset": preset, "rule": rule_name(rule), "ratio_drift": ratio_drift, "exact_length": exact_length,
            "length": length, "samples": samples, "rules": rows}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rule", help="the rule to check, as module:Name (a class or a function of StepInput)")
    parser.add_argument("--preset", default="paper", choices=PRESETS, help="source/target chain pair (default paper)")
    parser.add_argument("--exact-length", type=int, default=4, help="length of the enumerable setting (default 4)")
    parser.add_argument("--length", type=int, default=64, help="length of the long-chain setting (default 64)")
    parser.add_argument("--samples", type=int, default=2000, help="samples for the long-chain setting (default 2000)")
    parser.add_argument("--ratio-drift", type=float, default=0.0,
                        help="miscalibrate the exact ratio: log r + D x (number of revealed tokens) (default 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output folder (default runs/validate/<rule>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_from_args(args: argparse.Namespace) -> int:
    from reports.builder import build_report

    rule = load_rule(args.rule)
    start = time.perf_counter()
    results = validate(rule, args.preset, exact_length=args.exact_length, length=args.length, samples=args.samples,
                       ratio_drift=args.ratio_drift, seed=args.seed, progress=not args.quiet)
    out = Path(args.out or Path("runs") / "validate" / re.sub(r"[^A-Za-z0-9_.-]+", "-", rule_name(rule)))
    config = {k: v for k, v in vars(args).items() if k not in {"func", "traceback", "quiet"}}
    path = write_results(out / "results.json", "validation", results, provenance(config, [args.seed], time.perf_counter() - start))
    print(f"{'rule':22s} {'setting':34s} {'exact TV':>10s} {'exact KL':>10s} {'MC KL':>10s}")
    fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    for row in results["rules"]:
        print(f"{row['rule']:22s} {row['setting']:34s} {fmt(row['exact_tv']):>10s} {fmt(row['exact_kl']):>10s} {fmt(row['mc_kl']):>10s}")
    report = build_report(path, out)
    print(f"results: {path}\nreport: {report}")
    return 0
