"""Validate a guidance rule against exact ground truth on Markov chains.

    gtl markov validate my_module:MyRule [--preset paper | --chains FILE] [--ratio-drift D] [--learned N] [--out DIR] [--device D]

The rule (a class, instantiated without arguments, or a function of a
:class:`gtl_verify.rules.StepInput`) is run with the exact source denoiser and the exact ratio
(optionally miscalibrated: log r + D x number of revealed tokens) next to built-in GTL (top-2
candidates), full guidance (all K) and the unguided sampler, and measured:

- enumerable setting (the preset's chains at a short length): the sampler's exact output law, by
  propagation, for the fixed left-to-right order, a confidence planner and ancestral sampling with
  T = L and 4L steps -> exact TV and KL to q;
- long setting (length L): samples with the fixed left-to-right order, the Monte-Carlo
  KL(sampler || q) from the exact sampler log-density, the target cross-entropy gap and the
  transition KL;
- with ``--learned N`` also the long setting with *learned* components: the source denoiser and the
  ratio network of the Markov benchmark (its default sizes and budgets, N target sequences, the
  same preset and seed), trained once and cached in DIR/models; the sampler's log-density is still
  exact (it is computed from the same learned networks), so the Monte-Carlo KL to q measures the
  rule together with the learned components' errors.

Every output of every rule is checked against the rule contract (markov.rule_contract: shape
[M, K+1], floating dtype, no NaN or +inf, no row of only -inf, no weight on tokens the source
forbids before the last step) and every exact law must sum to 1 before its TV and KL are reported;
a fault ends the run with one line naming the rule, the setting and the step. Each figure comes with
a verdict: exact (exact laws: TV within float64 round-off; Monte-Carlo KL: within 3 standard errors
of 0, the standard error from the sample count) or not exact, with the figure it was judged on.
When ties between equally likely tokens decided a top-n candidate set, the row's notes say so.

Results go to DIR/results.json and a Markdown report with a figure (DIR/results.md); DIR defaults to
runs/validate/<rule>/<pair> (the rule's name and the preset or the chain file's ``name``, slugified).
A DIR already holding the results of a different setting (rule, pair or options other than the
device) is refused with one line before any work, so no result is silently replaced; the same
setting is re-run in place.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from gtl_verify.density import fixed_order_log_density
from gtl_verify.exact_law import ancestral_law, planner_law
from gtl_verify.planners import ConfidencePlanner, LeftToRightPlanner
from gtl_verify.provenance import provenance, read_results, write_results
from gtl_verify.rules import GTL, Unguided, rule_name
from gtl_verify.samplers import SamplerConfig, planner_sample
from gtl_verify.schedules import LogLinearSchedule
from gtl_verify.validation import check_device, check_int_range, check_output_dir, check_real_range, check_sample_memory

from . import metrics
from .config import MarkovConfig
from .oracle import PairOracle
from .presets import PRESETS, is_chain_file, pair_identity, pair_name, resolve_pair, slugify
from gtl_verify.enumeration import total_variation
from gtl_verify.guidance import ImpossibleStepError

from .rule_contract import CheckedRule, RuleError, check_law_sums_to_one, exact_kl, exact_verdict, mc_verdict


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
    if isinstance(obj, type):
        try:
            rule = obj()
        except Exception as exc:  # user code: any constructor failure is one line
            raise ValueError(f"rule class {spec!r} cannot be built without arguments ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}); give it defaults for every constructor argument, "
                             f"or pass a module-level instance or function") from exc
    else:
        rule = obj
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


def learned_components(preset: str, seed: int, n_target: int, length: int, models_dir: Path | None, progress: bool,
                       base: MarkovConfig | None = None):
    """(denoiser, ratio) learned as in the Markov benchmark's ``gtl`` method, with the sizes and budgets
    of ``base`` (default: the benchmark's defaults)."""
    from .benchmark import Cell
    from .components import ComponentStore

    config = dataclasses.replace(base or MarkovConfig(), presets=(preset,), n_targets=(n_target,), seeds=(seed,),
                                 length=length, overlap_n_target=n_target)
    cell = Cell(config, preset, seed, n_target, ComponentStore(models_dir, progress=progress), {})
    return cell.denoiser("source"), cell.ratio()


def _long_rows(rules: dict, denoiser, ratio, pair, schedule, length: int, samples: int, seed: int, label: str,
               progress: bool, device: torch.device) -> list[dict]:
    """Left-to-right samples of every rule (drawn on ``device``) and their Monte-Carlo KL to q from
    the exact sampler density."""
    rows = []
    gen = torch.Generator(device=device).manual_seed(seed)
    setting = f"{label}: left-to-right L={length}"
    for name, r in tqdm(list(rules.items()), desc=f"{label} (L={length})", disable=not progress):
        checked = CheckedRule(r, name, setting, reveal_only=True)
        cfg = SamplerConfig(samples, length, rule=checked, temperature=0.0)
        x = run_checked(lambda c: planner_sample(denoiser, ratio, LeftToRightPlanner(), schedule, cfg, gen).tokens, checked)
        density_rule = CheckedRule(r, name, f"{setting}, sampler density", reveal_only=True)
        log_s = run_checked(lambda c: fixed_order_log_density(denoiser, ratio, c, schedule, x), density_rule).cpu()
        x = x.cpu()
        log_q = pair.target.log_prob(x)
        _check_log_density(log_s, checked.where())
        impossible = int(torch.isneginf(log_q).sum())
        kl, se = metrics.mc_kl(log_s, log_q)
        if impossible:
            verdict = f"not exact (q gives probability 0 to {impossible} of {samples} samples: KL = inf)"
        else:
            verdict = mc_verdict(kl, se, samples)
        notes = [verdict, f"MC standard error {se:.2g}", f"transition KL {metrics.transition_kl(pair.target, x):.3g}",
                 checked.ties_note(), _warning(checked)]
        rows.append({"rule": name, "setting": setting, "exact_tv": None, "exact_kl": None, "mc_kl": kl,
                     "cross_entropy_gap": metrics.cross_entropy_gap(pair.target, x), "verdict": verdict,
                     "notes": "; ".join(n for n in notes if n)})
    return rows


def _check_log_density(log_s: torch.Tensor, where: str) -> None:
    """Raise RuleError unless the sampler's log-density [N] of its own samples is finite."""
    bad = torch.isnan(log_s) | torch.isposinf(log_s)
    if bad.any():
        raise RuleError(f"{where}: the sampler's log-density is NaN or +inf at {int(bad.sum())} of {len(log_s)} "
                        f"samples; the Monte-Carlo KL is undefined")
    if torch.isneginf(log_s).any():
        raise RuleError(f"{where}: the sampler drew {int(torch.isneginf(log_s).sum())} sequence(s) to which its own "
                        f"log-density gives probability 0; the Monte-Carlo KL is undefined")


MAX_EXACT_STATES = 50_000


def check_options(preset: str, *, exact_length: int, length: int, samples: int, ratio_drift: float, seed: int,
                  learned_n_target: int | None, cli: bool = False) -> None:
    """Raise ValueError naming the option (``--exact-length`` with ``cli``, else ``exact_length``)
    unless every option is in range; called before any work."""
    name = (lambda n: "--" + n.replace("_", "-")) if cli else (lambda n: n)  # noqa: E731
    check_int_range(name("seed"), seed, 0)
    if preset not in PRESETS and not is_chain_file(preset):
        raise ValueError(f"{name('preset')} must be one of {', '.join(PRESETS)} or a .toml/.npz chain file, got {preset!r}")
    vocab_size = resolve_pair(preset, seed=seed).vocab_size  # a chain file is read and checked here
    check_int_range(name("exact_length"), exact_length, 1)
    if exact_length > 64 or (vocab_size + 1) ** exact_length > MAX_EXACT_STATES:  # K + 1 >= 2: 2^64 is over
        raise ValueError(f"{name('exact_length')} = {exact_length}: (K+1)^L = {vocab_size + 1}^{exact_length} states "
                         f"> the limit {MAX_EXACT_STATES} (K = {vocab_size}); choose a smaller one")
    check_int_range(name("length"), length, 1)
    check_int_range(name("samples"), samples, 2)  # the Monte-Carlo standard error needs two samples
    check_sample_memory(name("samples"), samples, length, vocab_size)
    check_real_range(name("ratio_drift"), ratio_drift)
    if learned_n_target is not None:
        check_int_range("--learned" if cli else "learned_n_target", learned_n_target, 1)


def _exact_settings(denoiser, ratio, schedule, length: int) -> list[tuple[str, bool, Callable]]:
    """(setting, reveal_only, rule -> ExactLaw) for the enumerable setting of length ``length``."""
    def planner(p, temperature):
        return lambda r: planner_law(denoiser, ratio, p, schedule, SamplerConfig(1, length, rule=r, temperature=temperature))

    def ancestral(steps):
        return lambda r: ancestral_law(denoiser, ratio, schedule, SamplerConfig(1, length, steps=steps, rule=r))

    return [("exact: left-to-right", True, planner(LeftToRightPlanner(), 0.0)),
            ("exact: confidence planner", True, planner(ConfidencePlanner(), 0.5)),
            (f"exact: ancestral T={length}", False, ancestral(length)),
            (f"exact: ancestral T={4 * length}", False, ancestral(4 * length))]


def run_checked(run: Callable, checked: CheckedRule):
    """``run(checked)``, an impossible step (guidance.ImpossibleStepError) re-raised as a RuleError
    naming the rule and the setting."""
    try:
        return run(checked)
    except ImpossibleStepError as exc:
        raise RuleError(f"{checked.where()}: the sampler reached an impossible step after {checked.steps} rule "
                        f"call(s): {' '.join(str(exc).split())}") from exc


def _exact_rows(rules: dict, denoiser, ratio, schedule, length: int, q_table: torch.Tensor, progress: bool) -> list[dict]:
    """Exact TV and KL to q of every rule in every enumerable setting (each law checked to be a distribution)."""
    rows = []
    jobs = [(name, r, s) for name, r in rules.items() for s in _exact_settings(denoiser, ratio, schedule, length)]
    for name, r, (setting, reveal_only, run) in tqdm(jobs, desc="exact laws", disable=not progress):
        checked = CheckedRule(r, name, setting, reveal_only)
        law = run_checked(run, checked)
        check_law_sums_to_one(law.clean, checked.where())
        tv = law.tv(q_table)
        verdict = exact_verdict(tv)
        notes = [verdict, f"leftover mask mass {law.leftover_mass:.3g}", checked.ties_note(), _warning(checked)]
        rows.append({"rule": name, "setting": setting, "exact_tv": tv, "exact_kl": exact_kl(law.kl(q_table), checked.where()),
                     "mc_kl": None, "cross_entropy_gap": None, "verdict": verdict, "notes": "; ".join(n for n in notes if n)})
    return _with_discretisation_reference(rows)


def _warning(checked: CheckedRule) -> str | None:
    return None if checked.warning is None else f"warning: {checked.warning}"


REFERENCE_RULE = "full guidance"


def _with_discretisation_reference(rows: list[dict]) -> list[dict]:
    """Beside each "not exact" verdict of an ancestral setting, the sampler's own discretisation
    error at the same T: the exact TV of full guidance with the exact components (its row)."""
    reference = {r["setting"]: r["exact_tv"] for r in rows if r["rule"] == REFERENCE_RULE and "ancestral" in r["setting"]}
    for row in rows:
        tv = reference.get(row["setting"])
        if tv is not None and row["verdict"].startswith("not exact"):
            row["verdict"] += f"; the sampler's own discretisation error here: {REFERENCE_RULE} TV {tv:.3g}"
    return rows


DISCRIMINATION_TV = 1e-3


def discrimination_note(pair, length: int) -> str | None:
    """A note when source and target laws at ``length`` are within TV ``DISCRIMINATION_TV``: a rule
    that ignores the ratio is then (nearly) exact too, so the enumerable setting cannot tell rules apart."""
    tv = total_variation(pair.source.table(length), pair.target.table(length))
    if tv >= DISCRIMINATION_TV:
        return None
    return (f"note: at exact length {length} TV(source, target) = {tv:.2g} < {DISCRIMINATION_TV:g}: the enumerable "
            f"setting cannot discriminate (the unguided sampler is as close to q); choose a longer --exact-length")


def target_only_note(pair, length: int) -> tuple[str | None, float]:
    """(note, mass): the target's mass on sequences of ``length`` the source cannot produce, and a note
    when it is positive. The ratio is +inf there and no guidance of this source can reach them
    (docs/conventions.md section 1), so every sampler's TV to q is at least that mass; the target
    restricted to the source's support (renormalised) attains it: the best achievable TV."""
    mass = float(pair.target.table(length)[pair.source.table(length) == 0].sum())
    if mass <= 0:
        return None, 0.0
    return (f"note: the target puts mass {mass:.3g} on sequences of length {length} the source cannot produce "
            "(density ratio +inf; no guidance of this source can reach them, docs/conventions.md section 1): "
            f"the best achievable exact TV is {mass:.3g}"), mass


def _with_best_achievable(rows: list[dict], best_tv: float) -> list[dict]:
    """Beside each "not exact" verdict of an enumerable setting, the best TV any guidance of the source
    can reach when the target has mass the source cannot produce (:func:`target_only_note`)."""
    if best_tv > 0:
        for row in rows:
            if row["exact_tv"] is not None and row["verdict"].startswith("not exact"):
                row["verdict"] += f"; best achievable TV {best_tv:.3g} (target mass the source cannot produce)"
    return rows


def validate(rule, preset: str = "paper", *, exact_length: int = 4, length: int = 64, samples: int = 2000,
             ratio_drift: float = 0.0, seed: int = 0, learned_n_target: int | None = None,
             models_dir: Path | None = None, learned_config: MarkovConfig | None = None, progress: bool = True,
             device: torch.device = torch.device("cpu")) -> dict:
    """Measure ``rule`` and the built-in rules against ground truth; returns the results dict.

    ``device`` is where the long setting with the exact oracles samples; the enumerable setting and
    the learned components (trained as in the benchmark) run on the CPU.

    Raises ValueError for an option out of range and RuleError (a ValueError, one line) when a
    rule's output breaks the contract of :mod:`markov.rule_contract` or a law is not a distribution."""
    check_options(preset, exact_length=exact_length, length=length, samples=samples, ratio_drift=ratio_drift, seed=seed,
                  learned_n_target=learned_n_target)
    pair = resolve_pair(preset, seed=seed)
    k = pair.source.vocab_size
    oracle = PairOracle(pair)
    ratio = oracle if ratio_drift == 0 else DriftedRatio(oracle, ratio_drift)
    denoiser = oracle.source_denoiser()
    schedule = LogLinearSchedule()
    rules = {rule_name(rule): rule, "gtl (top-2)": GTL(candidates=min(2, k)), "full guidance": GTL(), "unguided": Unguided()}
    target_only, best_tv = target_only_note(pair, exact_length)
    rows = _with_best_achievable(_exact_rows(rules, denoiser, ratio, schedule, exact_length,
                                             pair.target.table(exact_length), progress), best_tv)
    rows += _long_rows(rules, denoiser, ratio, pair, schedule, length, samples, seed, "long", progress, device)
    if learned_n_target is not None:
        learned_denoiser, learned_ratio = learned_components(preset, seed, learned_n_target, length, models_dir,
                                                             progress, learned_config)
        rows += _long_rows(rules, learned_denoiser, learned_ratio, pair, schedule, length, samples, seed,
                           f"long, learned (n target {learned_n_target})", progress, torch.device("cpu"))
    record = setting_record(rule, preset, exact_length=exact_length, length=length, samples=samples,
                            ratio_drift=ratio_drift, seed=seed, learned_n_target=learned_n_target)
    notes = [n for n in [discrimination_note(pair, exact_length), target_only] if n]
    return {"preset": pair.name, **record, "rules": rows, "notes": notes}


def setting_record(rule, preset: str, *, exact_length: int, length: int, samples: int, ratio_drift: float, seed: int,
                   learned_n_target: int | None) -> dict:
    """What determines a validation's results (stored in them): the rule's name, the pair's identity
    (a preset name, or a chain file's content hash, :func:`markov.presets.pair_identity`) and every
    option but the device."""
    identity = pair_identity(preset)
    return {"rule": rule_name(rule), "pair": identity, "exact_length": exact_length, "length": length,
            "samples": samples, "ratio_drift": ratio_drift, "seed": seed, "learned_n_target": learned_n_target}


def default_out(rule, preset: str) -> Path:
    """runs/validate/<rule>/<pair>: the rule's name and the pair's name (a preset, or a chain file's
    ``name``), each slugified, so that validating one rule on two pairs keeps both results."""
    return Path("runs") / "validate" / slugify(rule_name(rule)) / slugify(pair_name(preset))


def check_out_setting(option: str, out: Path, record: dict) -> None:
    """Raise ValueError (one line naming ``option`` and the folder) when ``out`` already holds the results
    of a different setting (rule, pair or options differ from ``record``); the same setting is re-run
    in place (its cached models reused). Nothing is written here."""
    path = out / "results.json"
    if not path.exists():
        return
    old = read_results(path)
    if old["kind"] != "validation":
        raise ValueError(f"{option} {out} holds results of kind {old['kind']!r}, not a validation; choose another folder")
    stored = old["results"]
    differ = [k for k in record if stored.get(k) != record[k]]
    if differ:
        what = ", ".join(f"{k} {stored.get(k)!r} (now {record[k]!r})" for k in differ)
        raise ValueError(f"{option} {out} already holds the results of a different validation ({what}); "
                         f"choose another {option} folder or remove that one")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rule", help="the rule to check, as module:Name (a class or a function of StepInput)")
    parser.add_argument("--preset", default="paper", choices=PRESETS, help="source/target chain pair (default paper)")
    parser.add_argument("--chains", metavar="FILE", default=None,
                        help="your own source/target chains from a .toml or .npz file (markov/chain_file.py); replaces --preset")
    parser.add_argument("--exact-length", type=int, default=4, help="length of the enumerable setting (default 4)")
    parser.add_argument("--length", type=int, default=64, help="length of the long-chain setting (default 64)")
    parser.add_argument("--samples", type=int, default=2000, help="samples for the long-chain setting (default 2000)")
    parser.add_argument("--ratio-drift", type=float, default=0.0,
                        help="miscalibrate the exact ratio: log r + D x (number of revealed tokens) (default 0)")
    parser.add_argument("--learned", type=int, default=None, metavar="N_TARGET",
                        help="also run the long setting with the benchmark's learned source denoiser and ratio network "
                             "trained on N_TARGET target sequences (cached in OUT/models)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda or cuda:N: where the long setting with the exact oracles samples (default cpu)")
    parser.add_argument("--out", default=None,
                        help="output folder (default runs/validate/<rule>/<pair>, the pair being the preset or the chain "
                             "file's name); a folder holding the results of a different rule, pair or options is refused")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_from_args(args: argparse.Namespace) -> int:
    from reports.builder import build_report

    preset = args.chains or args.preset
    check_options(preset, exact_length=args.exact_length, length=args.length, samples=args.samples,
                  ratio_drift=args.ratio_drift, seed=args.seed, learned_n_target=args.learned, cli=True)
    device = check_device("--device", args.device)
    rule = load_rule(args.rule)
    start = time.perf_counter()
    record = setting_record(rule, preset, exact_length=args.exact_length, length=args.length, samples=args.samples,
                            ratio_drift=args.ratio_drift, seed=args.seed, learned_n_target=args.learned)
    option = "--out" if args.out else "the default output folder"
    out = check_output_dir(option, args.out or default_out(rule, preset))
    check_out_setting(option, out, record)
    results = validate(rule, preset, exact_length=args.exact_length, length=args.length, samples=args.samples,
                       ratio_drift=args.ratio_drift, seed=args.seed, learned_n_target=args.learned,
                       models_dir=out / "models", progress=not args.quiet, device=device)
    config = {k: v for k, v in vars(args).items() if k not in {"func", "traceback", "quiet"}}
    path = write_results(out / "results.json", "validation", results, provenance(config, [args.seed], time.perf_counter() - start))
    print(format_table(results["rules"]))
    for note in results["notes"]:
        print(note)
    report = build_report(path, out)
    print(f"results: {path}\nreport: {report}")
    return 0


def format_table(rows: list[dict]) -> str:
    """The printed table: figures and the verdict beside them, then a line on ties when they mattered."""
    fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    lines = [f"{'rule':22s} {'setting':34s} {'exact TV':>10s} {'exact KL':>10s} {'MC KL':>10s}  verdict"]
    for row in rows:
        lines.append(f"{row['rule']:22s} {row['setting']:34s} {fmt(row['exact_tv']):>10s} {fmt(row['exact_kl']):>10s} "
                     f"{fmt(row['mc_kl']):>10s}  {row['verdict']}")
    warned = sorted({r["rule"] for r in rows if "warning: " in r["notes"]})
    for name in warned:
        text = next(r["notes"] for r in rows if r["rule"] == name and "warning: " in r["notes"])
        lines.append(f"warning: rule {name!r}: {text.split('warning: ', 1)[1].split('; ')[0]}")
    tied = [f"{r['rule']} / {r['setting']}" for r in rows if "ties decided" in r["notes"]]
    if tied:
        lines.append(f"note: ties between equally likely tokens decided the top-n candidate set in {len(tied)} "
                     f"row(s) ({'; '.join(tied[:3])}{'; ...' if len(tied) > 3 else ''}); see the notes in the report")
    return "\n".join(lines)
