"""Ratio-network cost of full guidance, top-n candidates, the planner schedule and the amortised head.

THEORY section 4: full single-site guidance scores r(z^{i<-v}) for every masked position and token,
so the ancestral sampler makes K x (masked positions) ratio passes per step; top-n makes n x
(masked positions); the planner schedule reveals one position per step and scores n candidates
there, n passes per step and L n per sequence. The amortised single-site head
(:mod:`gtl_verify.amortised`) answers every (i, v) of a row in one pass: 1 pass per step and row.

For every (K, L) of the grid this script builds small random-weight networks (a DenoiserNet, a
SequenceNet ratio through NetworkRatio, and a SingleSiteRatioNet of the ratio's size) and runs,
side by side in one process (repeats interleaved): the unguided ancestral sampler (T = L steps
unless --steps), full guidance GTL(candidates=None), top-n GTL(candidates=n), the unguided planner
sampler, the planner schedule planner_sample with GTL(candidates=n), and full guidance through the
amortised head (ancestral and planner). For each run it

- counts ratio passes per generated sequence (SampleResult.ratio_passes) and CHECKS them against
  the formulas (ancestral: K or n times the masked positions summed over the steps, recorded by a
  wrapper around the rule; planner: L n; amortised: 0 sequence passes and one single-site pass
  per row still holding a mask at each step); a mismatch raises, a match prints "ok";
- measures wall time per sequence (median over --repeats) and the guided/unguided wall-time ratio
  against the unguided run of the same sampler, timed in the same loop.

Runs whose ratio work (passes x L tokens x batch, from the expected-value formula: the ancestral
sampler with the log-linear schedule has L (T+1)/2 masked position-steps per sequence in
expectation) exceeds --max-token-passes, and every run of a cell whose denoiser work K L^2 exceeds
--max-denoiser-work, are not run; their pass count comes from the formula and their time reads
"not run (reason)".

A config section measures the same methods at the ACTUAL network sizes and sampler settings of the
benchmark configs, read through their loaders (markov.config.load_config: the defaults and
markov/paper_grid.toml; language.config.load_config: cpu and gpu): vocabulary K (Markov: the
preset's chain; language: the tokenizer's under ``full``, the committed run's observed vocabulary
under ``observed``, whose size depends on the data), length, denoiser/ratio/planner backbones,
steps, candidates, top_k, gamma and planner temperature. Markov samples with the planner sampler
in left-to-right order (gtl) and with a PositionNet planner (gtl-planner); language with the
ancestral sampler (gtl) and the PositionNet planner (gtl-planner). Configs with equal settings are
measured once. --markov-batch / --language-batch cap the sequences per call (the table gives both).
The GPU goals (planner GTL at n = 32 within 1.5x of unguided, the amortised head within 1.1x, at the
language gpu config) are listed as open. The load averages before and after go into the results:
on a shared machine only the guided/unguided ratios, measured in the same loop, are meaningful.

A second section (skip with --skip-validation) trains the amortised head on the exact PairOracle of
a Markov chain pair (preset ``diagonal``: K = 5, source d = 0.1, target d = 0.8) and measures it
as ``gtl markov validate`` measures a rule: accuracy on held-out noisy sequences, the exact TV/KL to
q of the sampler's output law (enumerable length) for the left-to-right order, a confidence
planner and ancestral sampling, and at a longer length the Monte-Carlo KL(sampler || q) from the
exact sampler density, next to the exact-ratio and unguided samplers.

Outputs (folder --out, default runs/perf): sampler_cost.json (a "benchmark" results file; render
with ``gtl report runs/perf/sampler_cost.json``) and the figures sampler_cost_passes.png and
sampler_cost_time.png.

    python benchmarks/sampler_cost.py --quick                  # K in {5,64,1024,30522}, L in {16,64,256}, configs
    python benchmarks/sampler_cost.py --K 5 64 --L 16 32 --n 1 4 --repeats 3 --skip-validation
    python benchmarks/sampler_cost.py --device cuda --max-token-passes 1e9
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from gtl_verify.amortised import AmortisedRatio, SingleSiteRatioNet, amortised_accuracy, train_amortised  # noqa: E402
from gtl_verify.density import fixed_order_log_density  # noqa: E402
from gtl_verify.exact_law import ancestral_law, planner_law  # noqa: E402
from gtl_verify.learned import NetworkDenoiser, NetworkPlanner, NetworkRatio  # noqa: E402
from gtl_verify.networks import BackboneConfig, DenoiserNet, PositionNet, SequenceNet, count_parameters  # noqa: E402
from gtl_verify.objectives import mask_tokens, sample_times  # noqa: E402
from gtl_verify.planners import ConfidencePlanner, LeftToRightPlanner, make_planner  # noqa: E402
from gtl_verify.protocols import Planner  # noqa: E402
from gtl_verify.provenance import provenance, write_results  # noqa: E402
from gtl_verify.rules import GTL, Unguided  # noqa: E402
from gtl_verify.samplers import SamplerConfig, SampleResult, ancestral_sample, planner_sample  # noqa: E402
from gtl_verify.schedules import LogLinearSchedule, Schedule  # noqa: E402
from gtl_verify.training import TrainConfig  # noqa: E402

QUICK_K = (5, 64, 1024, 30522)
QUICK_L = (16, 64, 256)
FULL_K = (5, 64, 1024, 8192, 30522)
FULL_L = (16, 64, 128, 256, 512)
DEFAULT_N = (1, 8, 64)
COST_TABLE = "Ratio-network passes and wall time per sequence"
SPEEDUP_TABLE = "Amortised single-site head against candidate scoring"
ACCURACY_TABLE = "Amortised head: accuracy against the exact teacher (held-out noisy sequences)"
VALIDATION_TABLE = "Amortised head against exact ground truth (Markov chains)"
COST_COLUMNS = ["K", "L", "sampler", "method", "n", "steps", "ratio_passes_per_seq", "formula", "formula_passes_per_seq",
                "check", "single_site_passes_per_seq", "wall_s_per_seq", "guided_over_unguided", "batch"]


# ------------------------------------------------------------------ formulas
def expected_masked_position_steps(schedule: Schedule, length: int, steps: int) -> float:
    """E[sum over the T steps of the masked positions] per sequence of the ancestral sampler on the
    grid t_j = j/T: a position is still masked at the start of the step from t_j with probability
    (1 - alpha(t_j)) / (1 - alpha(1)) (= t_j for the log-linear schedule, giving L (T+1)/2)."""
    top = 1.0 - float(schedule.alpha(1.0))
    return length * sum((1.0 - float(schedule.alpha(j / steps))) / top for j in range(steps, 0, -1))


@dataclass(frozen=True, eq=False)
class Method:
    """One sampler configuration of the grid."""

    sampler: str  # "ancestral", or the planner sampler's label ("planner", "left-to-right")
    name: str
    rule: Callable | None
    n: int | None  # candidates per position (K for full guidance), None when unguided
    amortised: bool = False

    @property
    def guided(self) -> bool:
        return self.n is not None

    @property
    def planned(self) -> bool:
        """True for the planner sampler (one position per step), False for the ancestral sampler."""
        return self.sampler != "ancestral"

    def formula(self) -> str:
        if not self.guided:
            return "0"
        if self.amortised:
            return "0 (one single-site pass per row and step)"
        top = self.name.startswith("top")
        if self.planned:
            return "L n" if top else "L K"
        return "sum over steps of n x masked positions" if top else "sum over steps of K x masked positions"

    def expected_passes(self, k: int, length: int, steps: int, schedule: Schedule) -> float:
        """Expected ratio-network (sequence) passes per sequence."""
        if not self.guided or self.amortised:
            return 0.0
        if self.planned:
            return float(length * self.n)
        return self.n * expected_masked_position_steps(schedule, length, steps)


def methods_for(k: int, ns: tuple[int, ...], samplers: tuple[str, ...] = ("ancestral", "planner"),
                amortised_top_n: bool = True) -> list[Method]:
    """Unguided, full guidance, top-n (n < K) and the amortised head for each sampler label
    ("ancestral", or a planner-sampler label); ``amortised_top_n=False`` keeps only the amortised
    head's full guidance (its cost does not depend on n)."""
    ns = tuple(sorted({n for n in ns if n < k}))
    out: list[Method] = []
    for sampler in samplers:
        out.append(Method(sampler, "unguided", Unguided(), None))
        if sampler == "ancestral":
            out.append(Method(sampler, "full", GTL(), k))
        out += [Method(sampler, f"top-{n}", GTL(candidates=n), n) for n in ns]
        if sampler != "ancestral":
            out.append(Method(sampler, "full", GTL(candidates=k), k))
            if amortised_top_n:
                out += [Method(sampler, f"amortised top-{n}", GTL(candidates=n), n, amortised=True) for n in ns]
        out.append(Method(sampler, "amortised full", GTL(), k, amortised=True))
    return out


class MaskRecorder:
    """Wraps a rule; records, per step, the masked positions of z and the rows holding one."""

    def __init__(self, rule: Callable, mask_id: int) -> None:
        self.rule, self.mask_id = rule, mask_id
        self.masked: list[int] = []
        self.rows: list[int] = []
        self.name = getattr(rule, "name", "rule")
        self.uses_ratio = getattr(rule, "uses_ratio", True)

    def __call__(self, step):
        masked = step.z == self.mask_id
        self.masked.append(int(masked.sum()))
        self.rows.append(int(masked.any(-1).sum()))
        return self.rule(step)


# ------------------------------------------------------------------ networks and run settings
@dataclass
class Nets:
    denoiser: NetworkDenoiser
    ratio: NetworkRatio
    amortised: AmortisedRatio
    parameters: dict[str, int]


def make_nets(denoiser: BackboneConfig, ratio: BackboneConfig, mask_id: int, max_batch: int, seed: int,
              device: torch.device) -> Nets:
    """Random-weight DenoiserNet, SequenceNet ratio and SingleSiteRatioNet (the ratio's size) in
    eval mode on ``device``; the amortised head's increments are random (0 when trained from scratch)."""
    torch.manual_seed(seed)
    den = DenoiserNet(denoiser).to(device).eval()
    seq = SequenceNet(ratio).to(device).eval()
    amo = SingleSiteRatioNet(ratio, mask_id=mask_id).to(device).eval()
    for p in amo.site.parameters():
        torch.nn.init.normal_(p, std=0.1)
    params = {"denoiser": count_parameters(den), "ratio": count_parameters(seq), "amortised": count_parameters(amo)}
    return Nets(NetworkDenoiser(den, mask_id, max_batch=max_batch), NetworkRatio(seq, max_batch=max_batch),
                AmortisedRatio(amo, max_batch=max_batch), params)


def build_nets(k: int, length: int, args: argparse.Namespace, device: torch.device) -> Nets:
    """The grid's networks of the --denoiser-*/--ratio-* sizes for vocabulary K (mask id K)."""
    def cfg(hidden: int, blocks: int) -> BackboneConfig:
        return BackboneConfig(vocab_size=k, num_embeddings=k + 1, max_length=length, hidden=hidden, blocks=blocks,
                              heads=args.heads, cond=max(hidden // 2, 2))

    return make_nets(cfg(args.denoiser_hidden, args.denoiser_blocks), cfg(args.ratio_hidden, args.ratio_blocks), k,
                     args.max_batch, args.seed, device)


@dataclass(frozen=True, eq=False)
class RunSetting:
    """Sampler settings shared by the methods of one measured cell.

    ``steps``: ancestral steps T (the planner sampler takes L). ``planners``: planner-sampler label
    -> (planner, temperature)."""

    k: int
    mask_id: int
    batch: int
    length: int
    steps: int
    planners: dict[str, tuple[Planner, float]]
    top_k: int | None = None
    gamma: float = 1.0

    def expected_work(self, method: Method) -> float:
        """Expected ratio work per run: passes per sequence x L tokens x batch."""
        return method.expected_passes(self.k, self.length, self.steps, SCHEDULE) * self.length * self.batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(method: Method, nets: Nets, setting: RunSetting, device: torch.device, seed: int) -> tuple[SampleResult, MaskRecorder, float]:
    recorder = MaskRecorder(method.rule, setting.mask_id)
    ratio = None if not method.guided else (nets.amortised if method.amortised else nets.ratio)
    gen = torch.Generator(device=device).manual_seed(seed)
    _sync(device)
    start = time.perf_counter()
    if not method.planned:
        cfg = SamplerConfig(setting.batch, setting.length, steps=setting.steps, rule=recorder, gamma=setting.gamma,
                            top_k=setting.top_k)
        res = ancestral_sample(nets.denoiser, ratio, SCHEDULE, cfg, gen)
    else:
        planner, temperature = setting.planners[method.sampler]
        cfg = SamplerConfig(setting.batch, setting.length, rule=recorder, gamma=setting.gamma, top_k=setting.top_k,
                            temperature=temperature)
        res = planner_sample(nets.denoiser, ratio, planner, SCHEDULE, cfg, gen)
    _sync(device)
    return res, recorder, time.perf_counter() - start


def check_counts(method: Method, res: SampleResult, rec: MaskRecorder, k: int, length: int, batch: int) -> tuple[int, str]:
    """The exact pass count the formula gives for this run (from the recorded masks); raises on mismatch."""
    if not method.guided:
        expected, single = 0, 0
    elif method.amortised:
        expected, single = 0, sum(rec.rows)
    elif method.planned:
        expected, single = batch * length * method.n, 0
    else:
        expected, single = method.n * sum(rec.masked), 0
    if res.ratio_passes != expected or res.single_site_passes != single:
        raise AssertionError(
            f"{method.sampler} {method.name} at K={k}, L={length}: counted {res.ratio_passes} ratio passes and "
            f"{res.single_site_passes} single-site passes, the formula {method.formula()} gives {expected} and {single}")
    if method.planned and method.guided and sum(rec.masked) != batch * length * (length + 1) // 2:
        raise AssertionError(f"planner at K={k}, L={length}: masked positions {sum(rec.masked)} != B L (L+1)/2")
    return expected, "ok"


SCHEDULE: Schedule = LogLinearSchedule()


# ------------------------------------------------------------------ measuring one cell
@dataclass
class Measurement:
    """Per-sequence wall times (one per timed round) and the last run of each measured method."""

    times: dict[Method, list[float]]
    last: dict[Method, tuple[SampleResult, MaskRecorder, int, str]]
    rounds: int

    def median(self, method: Method) -> float | None:
        return statistics.median(self.times[method]) if self.times.get(method) else None

    def baseline(self, method: Method) -> float | None:
        """Median wall time per sequence of the unguided run of the same sampler."""
        return next((self.median(m) for m in self.times if m.sampler == method.sampler and not m.guided), None)


def measure(methods: list[Method], nets: Nets, setting: RunSetting, device: torch.device, *, repeats: int, warmup: int,
            seed: int, budget_s: float = math.inf) -> Measurement:
    """Run every method ``warmup + repeats`` times, interleaved (guided and unguided runs share the
    machine state), checking the counted passes of every run; stops after the first timed round
    whose end leaves less than one round's time of ``budget_s``."""
    meas = Measurement({m: [] for m in methods}, {}, 0)
    start = time.perf_counter()
    for r in range(warmup + repeats):
        round_start = time.perf_counter()
        for m in methods:
            res, rec, wall = run_once(m, nets, setting, device, seed + r)
            exact, status = check_counts(m, res, rec, setting.k, setting.length, setting.batch)
            if r >= warmup:
                meas.times[m].append(wall / setting.batch)
            meas.last[m] = (res, rec, exact, status)
        meas.rounds += r >= warmup
        now = time.perf_counter()
        if meas.rounds and now - start + (now - round_start) > budget_s:
            break
    return meas


def cost_row(method: Method, meas: Measurement, setting: RunSetting, skipped: str | None) -> dict[str, Any]:
    """One table row: counted and formula passes per sequence, median wall time per sequence and
    its ratio to the unguided run of the same sampler (or the formula and ``skipped``)."""
    b = setting.batch
    expected = method.expected_passes(setting.k, setting.length, setting.steps, SCHEDULE)
    row = {"K": setting.k, "L": setting.length, "sampler": method.sampler, "method": method.name, "n": method.n,
           "steps": setting.length if method.planned else setting.steps, "formula": method.formula(), "batch": b,
           "expected_passes_per_seq": expected}
    wall = meas.median(method)
    if skipped is None and wall is not None:
        res, _, exact, status = meas.last[method]
        base = meas.baseline(method)
        row.update(ratio_passes_per_seq=res.ratio_passes / b, formula_passes_per_seq=exact / b, check=status,
                   single_site_passes_per_seq=res.single_site_passes / b, wall_s_per_seq=wall,
                   guided_over_unguided=wall / base if base else None, repeats=meas.rounds)
    else:
        row.update(ratio_passes_per_seq=None, formula_passes_per_seq=expected, check="formula only",
                   single_site_passes_per_seq=None, wall_s_per_seq=f"not run ({skipped})", guided_over_unguided=None,
                   repeats=0)
    return row


def print_row(prefix: str, row: dict[str, Any]) -> None:
    passes = row["ratio_passes_per_seq"] if row["ratio_passes_per_seq"] is not None else row["formula_passes_per_seq"]
    wall = row["wall_s_per_seq"]
    timing = f"{wall:9.4f} s/seq  x{row['guided_over_unguided']:.2f}" if isinstance(wall, float) else wall
    print(f"{prefix} {row['sampler']:13s} {row['method']:16s} passes/seq {passes:>12.4g}  {row['check']:12s} {timing}", flush=True)


def split_feasible(methods: list[Method], setting: RunSetting, max_token_passes: float) -> dict[Method, str | None]:
    """Method -> None (run it) or the reason it is not run (its expected ratio work over the limit)."""
    out: dict[Method, str | None] = {}
    for m in methods:
        work = setting.expected_work(m)
        out[m] = None if work <= max_token_passes else (
            f"{m.expected_passes(setting.k, setting.length, setting.steps, SCHEDULE):.3g} passes/seq: "
            f"{work:.3g} token-passes > --max-token-passes {max_token_passes:.3g}")
    return out


def skip_reasons(methods: list[Method], setting: RunSetting, args: argparse.Namespace) -> dict[Method, str | None]:
    """:func:`split_feasible`, and every method of a cell whose denoiser work K L^2 exceeds --max-denoiser-work."""
    work = setting.k * setting.length ** 2
    if work > args.max_denoiser_work:
        return {m: f"denoiser work K L^2 = {work:.3g} > --max-denoiser-work {args.max_denoiser_work:.3g}" for m in methods}
    return split_feasible(methods, setting, args.max_token_passes)


def speedups(methods: list[Method], meas: Measurement, setting: RunSetting) -> list[dict[str, Any]]:
    """The amortised run with the same candidates where there is one (else amortised full guidance)
    against candidate scoring, same sampler and same ratio-network size."""
    by_name = {(m.sampler, m.name): m for m in methods}
    out = []
    for m in methods:
        if not m.guided or m.amortised:
            continue
        amo = by_name.get((m.sampler, f"amortised {m.name}"), by_name[(m.sampler, "amortised full")])
        cand, a = meas.median(m), meas.median(amo)
        passes = meas.last[m][2] / setting.batch if m in meas.last else m.expected_passes(setting.k, setting.length, setting.steps, SCHEDULE)
        out.append({"K": setting.k, "L": setting.length, "sampler": m.sampler, "candidate_method": m.name,
                    "amortised_method": amo.name, "candidate_passes_per_seq": passes,
                    "candidate_s_per_seq": cand if cand is not None else "not run", "amortised_s_per_seq": a,
                    "speedup": (cand / a) if cand is not None and a else None})
    return out


def cost_grid(args: argparse.Namespace, device: torch.device) -> tuple[list[dict], list[dict], dict]:
    """The (K, L) grid at the --denoiser-*/--ratio-* sizes; a cell whose denoiser work K L^2 exceeds
    --max-denoiser-work is listed from the formulas only."""
    rows: list[dict[str, Any]] = []
    speed: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    planners = {"planner": (make_planner(args.planner), args.planner_temperature)}
    for k in args.K:
        for length in args.L:
            setting = RunSetting(k, k, args.batch, length, args.steps or length, planners)
            methods = methods_for(k, tuple(args.n))
            skipped = skip_reasons(methods, setting, args)
            run = [m for m in methods if skipped[m] is None]
            meas = Measurement({}, {}, 0)
            if run:
                nets = build_nets(k, length, args, device)
                params[f"K={k}"] = nets.parameters
                meas = measure(run, nets, setting, device, repeats=args.repeats, warmup=args.warmup, seed=args.seed)
            for m in methods:
                rows.append(cost_row(m, meas, setting, skipped[m]))
                print_row(f"K={k:>6} L={length:>4}", rows[-1])
            speed += speedups(methods, meas, setting)
    return rows, speed, params


# ------------------------------------------------------------------ the benchmark configs' own sizes
GOAL_N = 32  # candidates of the GPU goal: planner GTL at n = 32 within 1.5x of unguided (language gpu config)
CONFIG_TABLE = "Sampling cost at the benchmark configs' network sizes and sampler settings"
CONFIG_COLUMNS = ["config", "K", "L", "batch", "config_batch", "steps", "top_k", "sampler", "method", "n",
                  "ratio_passes_per_seq", "formula", "formula_passes_per_seq", "check", "single_site_passes_per_seq",
                  "wall_s_per_seq", "guided_over_unguided", "repeats"]
GOALS_TABLE = "GPU goals"


@dataclass(frozen=True)
class ConfigCase:
    """Network sizes and sampler settings of one benchmark config, read through its loader.

    ``samplers``: the sampler labels the config's methods use ("ancestral"; "left-to-right": the
    planner sampler in fixed order, temperature 0; "planner": a PositionNet of ``planner``'s size at
    ``planner_temperature``). ``candidates``: the config's top-n (empty: full guidance)."""

    name: str
    source: str
    vocabulary: str
    k: int
    mask_id: int
    length: int
    batch: int
    steps: int
    samplers: tuple[str, ...]
    candidates: tuple[int, ...]
    top_k: int | None
    gamma: float
    planner_temperature: float
    denoiser: BackboneConfig
    ratio: BackboneConfig
    planner: BackboneConfig
    planner_log_prob_features: bool

    def settings(self) -> tuple:
        """Everything but the name and source (two configs with equal settings are measured once)."""
        return tuple(v for k, v in vars(self).items() if k not in ("name", "source", "vocabulary"))


def markov_case(path: str | Path | None = None) -> ConfigCase:
    """The Markov benchmark's sizes (markov.config.load_config; None: the defaults): K of the first
    preset's chain pair, L = ``length``, a batch of ``samples`` sequences, the planner sampler in
    fixed left-to-right order (methods gtl, gtl-oracle-*) and with the learned planner (gtl-planner,
    a PositionNet of the ratio network's size, as markov.components.train_planner builds it)."""
    from markov.components import backbone
    from markov.config import load_config
    from markov.presets import make_pair

    cfg = load_config(path)
    preset, m, length = cfg.presets[0], cfg.models, cfg.length
    k = make_pair(preset).source.vocab_size
    ratio = backbone(k, length, m.ratio_hidden, m.ratio_blocks, m.heads)
    return ConfigCase(
        name=f"markov {'defaults' if path is None else Path(path).name}",
        source="markov/config.py (defaults)" if path is None else str(path), vocabulary=f"preset {preset}", k=k,
        mask_id=k, length=length, batch=cfg.samples, steps=length, samplers=("left-to-right", "planner"),
        candidates=() if cfg.candidates is None else (cfg.candidates,), top_k=None, gamma=cfg.gamma,
        planner_temperature=cfg.planner_temperature,
        denoiser=backbone(k, length, m.denoiser_hidden, m.denoiser_blocks, m.heads), ratio=ratio, planner=ratio,
        planner_log_prob_features=False)


def language_vocabulary(cfg: Any, results: Path | None) -> tuple[Any, str]:
    """The model vocabulary of a language config: the tokenizer's under ``full`` (a BPE tokenizer's
    configured size); under ``observed``
    its size depends on the data, so it is read from the committed run's results file
    (reports/runs/language-<name>.json unless ``results`` is given). Raises FileNotFoundError
    naming the file when it is missing."""
    from language.pipeline import Vocabulary
    from language.tokenizer import BPE_SPECIAL_TOKENS, load_bert_tokenizer, tokenizer_info

    data = cfg.data
    if data.vocabulary == "full" and data.tokenizer == "bpe":
        # the trained BPE reaches its configured size on the abstracts; [MASK] is its fourth special token
        mask = BPE_SPECIAL_TOKENS.index("[MASK]")
        return Vocabulary("full", data.bpe_vocab_size, mask), f"full byte-level BPE ({data.bpe_vocab_size} ids as configured)"
    if data.vocabulary == "full":
        info = tokenizer_info(load_bert_tokenizer())
        return Vocabulary("full", info.vocab_size, info.mask_id), f"full {info.name}"
    path = results or ROOT / "reports" / "runs" / f"language-{cfg.name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"config {cfg.name!r} uses vocabulary = 'observed', whose size comes from a run; "
                                f"results file not found: {path}")
    v = json.loads(path.read_text())["results"]["vocabulary"]
    vocab = Vocabulary("observed", v["tokenizer_size"], v["tokenizer_mask_id"], torch.arange(v["size"]))
    return vocab, f"observed ({v['size']} ids, from {path.name})"


def language_case(name_or_file: str | Path, vocab_results: Path | None = None) -> ConfigCase:
    """The language pipeline's sizes (language.config.load_config): vocabulary, segment length,
    denoiser/ratio/planner backbones as language.pipeline.backbone builds them, ``sampling``
    batch, steps, candidates, top_k, gamma and planner temperature; gtl samples with the ancestral
    sampler, gtl-planner with the PositionNet planner."""
    from language.config import load_config, resolve_config_path
    from language.pipeline import backbone

    cfg = load_config(name_or_file)
    vocab, note = language_vocabulary(cfg, vocab_results)
    s, length = cfg.sampling, cfg.data.segment_length
    return ConfigCase(
        name=f"language {cfg.name}", source=str(resolve_config_path(name_or_file)), vocabulary=note, k=vocab.size,
        mask_id=vocab.mask_id, length=length, batch=s.batch, steps=s.steps, samplers=("ancestral", "planner"),
        candidates=(min(s.candidates, vocab.size),), top_k=s.top_k or None, gamma=s.gamma,
        planner_temperature=s.planner_temperature, denoiser=backbone(cfg.models.denoiser, vocab, length),
        ratio=backbone(cfg.models.ratio, vocab, length), planner=backbone(cfg.models.planner, vocab, length),
        planner_log_prob_features=s.planner_log_prob_features)


def config_cases(args: argparse.Namespace) -> list[ConfigCase]:
    return [markov_case(None if p == "defaults" else p) for p in args.markov_configs] + \
        [language_case(c) for c in args.language_configs]


def case_setting(case: ConfigCase, batch: int, device: torch.device, seed: int) -> RunSetting:
    torch.manual_seed(seed)
    planner = NetworkPlanner(PositionNet(case.planner, log_prob_features=case.planner_log_prob_features).to(device).eval())
    planners = {"left-to-right": (LeftToRightPlanner(), 0.0), "planner": (planner, case.planner_temperature)}
    return RunSetting(case.k, case.mask_id, batch, case.length, case.steps, planners, case.top_k, case.gamma)


def case_methods(case: ConfigCase, ns: tuple[int, ...]) -> list[Method]:
    """The config's top-n (the --n values below K when the config uses full guidance), full
    guidance and the amortised head with full guidance (its cost does not depend on n)."""
    return methods_for(case.k, case.candidates or ns, case.samplers, amortised_top_n=False)


def config_rows(args: argparse.Namespace, device: torch.device) -> tuple[list[dict], dict]:
    """Measure every config case (equal settings once) at its own sizes, at most --markov-batch /
    --language-batch sequences per call when set; a case with nothing feasible is listed from the formulas."""
    rows, params = [], {}
    groups: dict[tuple, list[ConfigCase]] = {}
    for case in config_cases(args):
        groups.setdefault(case.settings(), []).append(case)
    for cases in groups.values():
        case, name = cases[0], " = ".join(c.name for c in cases)
        cap = args.markov_batch if case.name.startswith("markov") else args.language_batch
        batch = min(case.batch, cap or case.batch)
        setting = case_setting(case, batch, device, args.seed)
        methods = case_methods(case, tuple(args.n))
        skipped = skip_reasons(methods, setting, args)
        nets = make_nets(case.denoiser, case.ratio, case.mask_id, args.max_batch, args.seed, device)
        params[name] = {**nets.parameters, "sources": [c.source for c in cases], "vocabulary": case.vocabulary}
        print(f"\n{name}: K={case.k} L={case.length} batch {batch} (config {case.batch}) steps {case.steps} "
              f"top_k {case.top_k} parameters {nets.parameters}", flush=True)
        run = [m for m in methods if skipped[m] is None]
        meas = measure(run, nets, setting, device, repeats=args.config_repeats, warmup=0, seed=args.seed,
                       budget_s=args.config_budget_s) if run else Measurement({}, {}, 0)
        for m in methods:
            row = {"config": name, "config_batch": case.batch, "top_k": case.top_k, **cost_row(m, meas, setting, skipped[m])}
            rows.append(row)
            print_row(f"{name[:24]:24s}", row)
    return rows, params


def goal_rows(config: list[dict]) -> list[dict[str, Any]]:
    """The GPU goals at the language gpu config, open until measured on a GPU, with their pass counts
    from the formulas (planner top-n: L n ratio passes; amortised: L single-site passes) and the CPU
    ratio of the same row when this run measured it."""
    rows = [r for r in config if r["config"] == "language gpu" and r["sampler"] == "planner"]
    length = rows[0]["L"] if rows else None

    def cpu(method: str) -> Any:
        """The CPU ratio of the row, its not-run reason, or the unguided row's when this run has no such row."""
        row = next((r for r in rows if r["method"] == method), None) or next((r for r in rows if r["n"] is None), None)
        return None if row is None else (row["guided_over_unguided"] if row["method"] == method else None) or row["wall_s_per_seq"]

    return [{"goal": f"planner GTL at n = {GOAL_N} / unguided wall time, language gpu config", "bar": 1.5,
             "status": "open: needs a GPU", "ratio_passes_per_seq": None if length is None else GOAL_N * length,
             "single_site_passes_per_seq": 0, "cpu_this_run": cpu(f"top-{GOAL_N}")},
            {"goal": "amortised head (planner, full guidance) / unguided wall time, language gpu config", "bar": 1.1,
             "status": "open: needs a GPU", "ratio_passes_per_seq": 0, "single_site_passes_per_seq": length,
             "cpu_this_run": cpu("amortised full")}]


# ------------------------------------------------------------------ amortised head against ground truth
def validation(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    from markov import metrics
    from markov.oracle import PairOracle
    from markov.presets import make_pair

    k = args.val_vocab
    pair = make_pair("diagonal", vocab_size=k)
    teacher = PairOracle(pair)
    source_denoiser = teacher.source
    accuracy_rows, rows = [], []
    nets = {}
    for length in (args.val_exact_length, args.val_length):
        if length in nets:
            continue
        torch.manual_seed(args.seed)
        g = torch.Generator().manual_seed(args.seed)
        src, tgt = pair.source.sample(8192, length, g), pair.target.sample(512, length, g)
        cfg = BackboneConfig(vocab_size=k, num_embeddings=k + 1, max_length=length, hidden=args.val_hidden,
                             blocks=args.val_blocks, heads=2, cond=max(args.val_hidden // 2, 2))
        net = SingleSiteRatioNet(cfg)
        start = time.perf_counter()
        res = train_amortised(net, teacher, src, TrainConfig(steps=args.val_steps, batch_size=128, lr=3e-3, warmup=20,
                                                             ema=0.98, seed=args.seed), target=tgt, progress=False)
        train_s = time.perf_counter() - start
        ratio = AmortisedRatio(net)
        nets[length] = ratio
        gh = torch.Generator().manual_seed(args.seed + 1000)
        x = torch.cat([pair.source.sample(1000, length, gh), pair.target.sample(1000, length, gh)])
        z = mask_tokens(x, sample_times(len(x), gh, 0.0, False), SCHEDULE, k, gh)
        acc = amortised_accuracy(ratio, teacher, z, source_denoiser(z))
        lt, st = (teacher(z).double(), teacher.single_site(z).double())
        mask = (z == k)[..., None].expand_as(st)
        zero_mae = float((st - lt[:, None, None])[mask].abs().mean())
        row = {"K": k, "L": length, "train_steps": args.val_steps, "train_s": train_s, "final_loss": res.final_loss,
               "parameters": count_parameters(net), "delta_mae": acc.delta_mae, "site_mae": acc.site_mae,
               "level_mae": acc.level_mae, "guided_tv": acc.guided_tv, "zero_increment_mae": zero_mae,
               "masked_positions": acc.positions}
        accuracy_rows.append(row)
        print(f"amortised head K={k} L={length}: trained {args.val_steps} steps in {train_s:.1f} s; increment MAE "
              f"{acc.delta_mae:.4f} (zero increment {zero_mae:.3f}), site MAE {acc.site_mae:.4f}, level MAE "
              f"{acc.level_mae:.4f}, guided-law TV {acc.guided_tv:.4f}", flush=True)

    ratios = {"exact ratio": teacher, "amortised head": None, "unguided": None}
    le = args.val_exact_length
    q_table = pair.target.table(le)
    settings = [
        ("exact: left-to-right", lambda r, rule: planner_law(source_denoiser, r, LeftToRightPlanner(), SCHEDULE,
                                                             SamplerConfig(1, le, rule=rule, temperature=0.0))),
        ("exact: confidence planner", lambda r, rule: planner_law(source_denoiser, r, ConfidencePlanner(), SCHEDULE,
                                                                  SamplerConfig(1, le, rule=rule, temperature=0.5))),
        (f"exact: ancestral T={le}", lambda r, rule: ancestral_law(source_denoiser, r, SCHEDULE,
                                                                   SamplerConfig(1, le, steps=le, rule=rule))),
        (f"exact: ancestral T={4 * le}", lambda r, rule: ancestral_law(source_denoiser, r, SCHEDULE,
                                                                       SamplerConfig(1, le, steps=4 * le, rule=rule))),
    ]
    for name in ratios:
        r = teacher if name == "exact ratio" else (nets[le] if name == "amortised head" else None)
        rule = Unguided() if name == "unguided" else GTL()
        for setting, run in settings:
            law = run(r, rule)
            rows.append({"ratio": name, "setting": setting, "exact_tv": law.tv(q_table), "exact_kl": law.kl(q_table),
                         "mc_kl": None, "mc_kl_se": None, "cross_entropy_gap": None, "transition_kl": None})
    ll = args.val_length
    for name in ratios:
        r = teacher if name == "exact ratio" else (nets[ll] if name == "amortised head" else None)
        rule = Unguided() if name == "unguided" else GTL()
        gen = torch.Generator().manual_seed(args.seed + 7)
        x = planner_sample(source_denoiser, r, LeftToRightPlanner(), SCHEDULE,
                           SamplerConfig(args.val_samples, ll, rule=rule, temperature=0.0), gen).tokens
        log_s = fixed_order_log_density(source_denoiser, r, rule, SCHEDULE, x)
        kl, se = metrics.mc_kl(log_s, pair.target.log_prob(x))
        rows.append({"ratio": name, "setting": f"long: left-to-right L={ll}", "exact_tv": None, "exact_kl": None,
                     "mc_kl": kl, "mc_kl_se": se, "cross_entropy_gap": metrics.cross_entropy_gap(pair.target, x),
                     "transition_kl": metrics.transition_kl(pair.target, x)})
    fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
    print(f"\n{'ratio':16s} {'setting':30s} {'exact TV':>10s} {'exact KL':>10s} {'MC KL':>10s} {'+-':>8s} {'trans KL':>9s}")
    for row in rows:
        print(f"{row['ratio']:16s} {row['setting']:30s} {fmt(row['exact_tv']):>10s} {fmt(row['exact_kl']):>10s} "
              f"{fmt(row['mc_kl']):>10s} {fmt(row['mc_kl_se']):>8s} {fmt(row['transition_kl']):>9s}")
    return accuracy_rows, rows


# ------------------------------------------------------------------ figures and results
def _figures(rows: list[dict]) -> list[dict]:
    figs = []
    lmax = max(r["L"] for r in rows)
    kmax = max(r["K"] for r in rows)
    guided = [r for r in rows if r["n"] is not None and not r["method"].startswith("amortised")]

    def label(r: dict) -> str:
        return f"{r['sampler']} {r['method']}"

    pass_rows = [{"K": r["K"], "L": r["L"], "series": label(r), "passes": r["formula_passes_per_seq"]} for r in guided]
    figs.append({"title": f"Ratio passes per sequence against K (L = {lmax})", "x": "K", "y": "passes", "series": "series",
                 "xlabel": "vocabulary size K", "ylabel": "ratio-network passes per sequence", "logx": True, "logy": True,
                 "rows": [r for r in pass_rows if r["L"] == lmax]})
    figs.append({"title": f"Ratio passes per sequence against L (K = {kmax})", "x": "L", "y": "passes", "series": "series",
                 "xlabel": "sequence length L", "ylabel": "ratio-network passes per sequence", "logx": True, "logy": True,
                 "rows": [r for r in pass_rows if r["K"] == kmax]})
    timed = [{"K": r["K"], "L": r["L"], "series": f"{r['sampler']} {r['method']}", "wall": r["wall_s_per_seq"]}
             for r in rows if isinstance(r["wall_s_per_seq"], float) and r["sampler"] == "planner"]
    figs.append({"title": f"Planner sampler: wall time per sequence against L (K = {kmax})", "x": "L", "y": "wall",
                 "series": "series", "xlabel": "sequence length L", "ylabel": "wall time per sequence (s)", "logx": True,
                 "logy": True, "rows": [r for r in timed if r["K"] == kmax]})
    return figs


def save_pngs(figures: list[dict], out: Path) -> list[Path]:
    from reports.figures import line_plot
    from reports.stats import summarize

    paths = []
    names = ["sampler_cost_passes.png", "sampler_cost_passes_vs_L.png", "sampler_cost_time.png"]
    for fig, name in zip(figures, names):
        series: dict[str, list] = {}
        for row in fig["rows"]:
            if row[fig["y"]] is None:
                continue
            series.setdefault(row[fig["series"]], []).append((row[fig["x"]], summarize([row[fig["y"]]])))
        if series:
            paths.append(line_plot(out / name, fig["title"], fig["xlabel"], fig["ylabel"], series, logx=fig["logx"],
                                   logy=fig["logy"], figsize=(7.5, 4.5)))
    return paths


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--K", type=int, nargs="+", help=f"vocabulary sizes (default {FULL_K}; --quick {QUICK_K})")
    p.add_argument("--L", type=int, nargs="+", help=f"sequence lengths (default {FULL_L}; --quick {QUICK_L})")
    p.add_argument("--n", type=int, nargs="+", default=list(DEFAULT_N), help=f"top-n candidates (default {DEFAULT_N}; n >= K is dropped)")
    p.add_argument("--quick", action="store_true", help="small grid, one timed repeat, short amortised training")
    p.add_argument("--batch", type=int, default=1, help="sequences per sampler run (default 1)")
    p.add_argument("--steps", type=int, default=None, help="ancestral steps T (default T = L)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per run (default 3; --quick 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed repeats first (default 1; --quick 0)")
    p.add_argument("--max-token-passes", type=float, default=None,
                   help="skip runs with more expected ratio work (passes x L x batch) than this (default 2e7; --quick 3e6)")
    p.add_argument("--max-denoiser-work", type=float, default=None,
                   help="list grid cells with K L^2 above this from the formulas only (default no limit; --quick 3e8); also applies to the config rows")
    p.add_argument("--skip-configs", action="store_true", help="skip the rows at the benchmark configs' own sizes")
    p.add_argument("--markov-configs", nargs="*", default=["defaults", "markov/paper_grid.toml"],
                   help="Markov configs measured at their sizes ('defaults' = markov/config.py; default: defaults and paper_grid)")
    p.add_argument("--language-configs", nargs="*", default=["cpu", "gpu"],
                   help="language configs (names or TOML files) measured at their sizes (default: cpu gpu)")
    p.add_argument("--language-batch", type=int, default=None,
                   help="sequences per sampler call for the language configs (default: the config's batch; --quick 1)")
    p.add_argument("--markov-batch", type=int, default=None,
                   help="sequences per sampler call for the Markov configs (default: the config's samples; --quick 100)")
    p.add_argument("--config-repeats", type=int, default=3, help="timed interleaved repeats of the config rows (default 3)")
    p.add_argument("--config-budget-s", type=float, default=None,
                   help="stop a config's repeats after the round that leaves less than a round of this (default 600; --quick 200)")
    p.add_argument("--planner", default="confidence", help="rule-based planner of the planner sampler (default confidence)")
    p.add_argument("--planner-temperature", type=float, default=0.5)
    p.add_argument("--denoiser-hidden", type=int, default=32)
    p.add_argument("--denoiser-blocks", type=int, default=1)
    p.add_argument("--ratio-hidden", type=int, default=32)
    p.add_argument("--ratio-blocks", type=int, default=1)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=512, help="rows per network call (default 512)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-validation", action="store_true", help="skip the amortised-head accuracy/ground-truth section")
    p.add_argument("--skip-cost", action="store_true", help="skip the cost grid")
    p.add_argument("--val-vocab", type=int, default=5, help="K of the Markov validation (default 5)")
    p.add_argument("--val-exact-length", type=int, default=5, help="enumerable length of the validation (default 5; ancestral laws cost (K+1)^(2L) per step)")
    p.add_argument("--val-length", type=int, default=32, help="long length of the validation (default 32)")
    p.add_argument("--val-steps", type=int, default=None, help="training steps of the amortised head (default 2000; --quick 800)")
    p.add_argument("--val-hidden", type=int, default=32)
    p.add_argument("--val-blocks", type=int, default=2)
    p.add_argument("--val-samples", type=int, default=2000, help="samples of the long validation setting (default 2000)")
    p.add_argument("--out", default="runs/perf", help="output folder (default runs/perf)")
    args = p.parse_args(argv)
    args.K = args.K or list(QUICK_K if args.quick else FULL_K)
    args.L = args.L or list(QUICK_L if args.quick else FULL_L)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    args.max_token_passes = args.max_token_passes if args.max_token_passes is not None else (3e6 if args.quick else 2e7)
    args.val_steps = args.val_steps if args.val_steps is not None else (800 if args.quick else 2000)
    args.max_denoiser_work = args.max_denoiser_work if args.max_denoiser_work is not None else (3e8 if args.quick else math.inf)
    args.language_batch = args.language_batch if args.language_batch is not None else (1 if args.quick else None)
    args.markov_batch = args.markov_batch if args.markov_batch is not None else (100 if args.quick else None)
    args.config_budget_s = args.config_budget_s if args.config_budget_s is not None else (200.0 if args.quick else 600.0)
    args.markov_configs = [p if p == "defaults" or Path(p).is_file() else str(ROOT / p) for p in args.markov_configs]
    for name in ("language_batch", "markov_batch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("batch", "repeats", "config_repeats", "denoiser_hidden", "ratio_hidden", "heads", "max_batch", "val_vocab",
                 "val_exact_length", "val_length", "val_steps", "val_samples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("K", "L", "n"):
        if any(v < 1 for v in getattr(args, name)) or (name == "K" and min(args.K) < 2):
            p.error(f"--{name} values must be >= {2 if name == 'K' else 1}, got {getattr(args, name)}")
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda requested but CUDA is not available")
    make_planner(args.planner)  # validates the name
    return args


LOAD_TABLE = "Machine and load (ratios only: the machine is shared)"


def machine_row(before: tuple[float, ...], after: tuple[float, ...], device: torch.device) -> dict[str, Any]:
    """The load averages (1, 5, 15 min) before and after the run, next to the cores and threads."""
    return {"device": str(device), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_before_1_5_15": " / ".join(f"{v:.2f}" for v in before),
            "load_after_1_5_15": " / ".join(f"{v:.2f}" for v in after),
            "note": "shared machine: absolute times are indicative only; compare the guided/unguided ratios, "
                    "measured side by side (repeats interleaved, medians)"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = Path(args.out)
    load_before = os.getloadavg()
    start = time.perf_counter()
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", flush=True)
    tables: dict[str, list[dict]] = {}
    columns: dict[str, list[str]] = {}
    figures: list[dict] = []
    params: dict[str, Any] = {}
    if not args.skip_cost:
        rows, speed, params = cost_grid(args, device)
        tables[COST_TABLE], columns[COST_TABLE] = rows, COST_COLUMNS
        tables[SPEEDUP_TABLE] = speed
        columns[SPEEDUP_TABLE] = ["K", "L", "sampler", "candidate_method", "amortised_method", "candidate_passes_per_seq",
                                  "candidate_s_per_seq", "amortised_s_per_seq", "speedup"]
        figures = _figures(rows)
        print(f"\n{'K':>6} {'L':>4} {'sampler':9s} {'candidates':10s} {'passes/seq':>11s} {'cand s/seq':>11s} {'amortised':16s} {'s/seq':>8s} {'speed-up':>9s}")
        for s in speed:
            c, a, up = s["candidate_s_per_seq"], s["amortised_s_per_seq"], s["speedup"]
            c_text = f"{c:.4f}" if isinstance(c, float) else str(c)
            a_text = f"{a:.4f}" if isinstance(a, float) else "-"
            up_text = f"{up:.1f}x" if up else "-"
            print(f"{s['K']:>6} {s['L']:>4} {s['sampler']:9s} {s['candidate_method']:10s} {s['candidate_passes_per_seq']:>11.4g} "
                  f"{c_text:>11s} {s['amortised_method']:16s} {a_text:>8s} {up_text:>9s}")
    if not args.skip_configs:
        config, config_params = config_rows(args, device)
        tables[CONFIG_TABLE], columns[CONFIG_TABLE] = config, CONFIG_COLUMNS
        tables[GOALS_TABLE] = goal_rows(config)
        columns[GOALS_TABLE] = ["goal", "bar", "status", "ratio_passes_per_seq", "single_site_passes_per_seq", "cpu_this_run"]
        params.update(config_params)
    if not args.skip_validation:
        acc, val = validation(args)
        tables[ACCURACY_TABLE], tables[VALIDATION_TABLE] = acc, val
        columns[ACCURACY_TABLE] = ["K", "L", "train_steps", "train_s", "delta_mae", "zero_increment_mae", "site_mae",
                                   "level_mae", "guided_tv", "masked_positions", "parameters", "final_loss"]
        columns[VALIDATION_TABLE] = ["ratio", "setting", "exact_tv", "exact_kl", "mc_kl", "mc_kl_se", "cross_entropy_gap",
                                     "transition_kl"]
    load_after = os.getloadavg()
    tables[LOAD_TABLE] = [machine_row(load_before, load_after, device)]
    columns[LOAD_TABLE] = ["device", "cpu_cores", "torch_threads", "load_before_1_5_15", "load_after_1_5_15", "note"]
    results = {"title": "Sampler cost: full guidance, top-n, planner schedule and the amortised single-site head",
               "tables": tables, "figures": figures, "columns": columns,
               "load_average": {"before": list(load_before), "after": list(load_after)}, "parameters": params}
    config = {k: v for k, v in vars(args).items()}
    path = write_results(out / "sampler_cost.json", "benchmark", results, provenance(config, [args.seed], time.perf_counter() - start))
    pngs = save_pngs(figures, out) if figures else []
    print(f"\nload average after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print(f"results: {path}")
    for p in pngs:
        print(f"figure: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
