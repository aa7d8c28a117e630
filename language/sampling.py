"""Sample sets of every method (cached under ``<run>/samples``): the registry's method parts from
the pipeline's components, drawn in batches with the configured sampler settings; and the run's
sampling time estimated from a short pilot (:func:`estimate_sampling_seconds`), checked against
``runtime.sampling_budget_minutes`` before the first sample set (:func:`check_sampling_budget`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gtl_verify.learned import NetworkDenoiser
from gtl_verify.storage import atomic_torch_save, load_torch_cache
from gtl_verify.methods import METHODS, MethodParts, method_parts
from gtl_verify.samplers import SampleResult, SamplerConfig, ancestral_sample, planner_sample
from gtl_verify.store import slug
from gtl_verify.training import config_hash

from .components import Components
from .config import LanguageConfig
from .run_folder import Run, _jsonable, _payload


@dataclass
class SampleSet:
    method: str
    fraction: float
    tag: str
    tokens: torch.Tensor  # [N, L] model ids, on CPU
    cost: dict[str, float]


def draw_samples(run: Run, method: str, fraction: float, *, samples: int | None = None, gamma: float | None = None,
                 candidates: int | None = None, tag: str = "main") -> SampleSet:
    """``samples`` sequences of ``method`` at ``fraction`` (cached under ``<run>/samples``)."""
    cfg = run.config.sampling
    samples = samples or cfg.samples
    gamma = cfg.gamma if gamma is None else gamma
    candidates = min(cfg.candidates if candidates is None else candidates, run.data.vocab.size)
    provider = Components(run, fraction)
    parts = method_parts(method, provider, candidates)
    key, path = _sample_key(run, method, fraction, samples, gamma, candidates, tag)
    payload = load_torch_cache(path, lambda p: _payload(p, ("tokens", "cost")))
    if payload is not None:
        return SampleSet(method, fraction, tag, payload["tokens"], dict(payload["cost"]))
    guided = METHODS[method].guided
    gen = torch.Generator(device=run.device).manual_seed(run.seed(f"samples/{method}/{fraction:g}/{tag}"))
    outs, totals = [], {}
    bar = tqdm(total=samples, desc=f"sampling {method} {fraction:g}", disable=not run.progress, leave=False)
    done = 0
    while done < samples:
        n = min(cfg.batch, samples - done)
        res = _sample_batch(run, parts, n, gamma if guided else 0.0, gen)
        outs.append(res.tokens.cpu())
        for k, v in res.cost().items():
            totals[k] = totals.get(k, 0) + v
        done += n
        bar.update(n)
    bar.close()
    tokens = torch.cat(outs)
    totals["samples"] = samples
    atomic_torch_save({"tokens": tokens, "cost": totals, "key": _jsonable(key)}, path)
    run.log(f"samples {method} {fraction:g} [{tag}]: {samples} in {totals['wall_time_s']:.1f}s")
    return SampleSet(method, fraction, tag, tokens, totals)


def _sample_key(run: Run, method: str, fraction: float, samples: int, gamma: float, candidates: int,
                tag: str) -> tuple[dict[str, Any], Path]:
    """The cache key of a sample set (its components' digests, sampler settings, seed) and its file."""
    cfg = run.config.sampling
    ids = Components(run, fraction).component_ids(METHODS[method])
    guided = METHODS[method].guided
    key = {"method": method, "fraction": fraction if method != "source-only" else None, "samples": samples,
           "components": [run.keys[c] for c in ids], "steps": cfg.steps, "top_k": cfg.top_k, "batch": cfg.batch,
           "temperature": cfg.planner_temperature if METHODS[method].planner else None,
           "gamma": gamma if guided else None, "candidates": candidates if guided else None, "seed": run.target_seed}
    digest = config_hash(key)[:16]
    return key, run.root / "samples" / f"{slug(method)}-{fraction:g}-{tag}-{digest}.pt"


def _sample_batch(run: Run, parts: MethodParts, n: int, gamma: float, gen: torch.Generator, steps: int | None = None) -> SampleResult:
    """``n`` sequences of one method with the configured sampler settings (``steps`` reverse
    steps of the ancestral sampler; default ``sampling.steps``); the networks are called through
    run.hooks (bf16 autocast / compile), guidance stays in float64."""
    cfg = run.config.sampling
    sc = SamplerConfig(num_samples=n, length=run.data.length, steps=steps or cfg.steps, gamma=gamma, rule=parts.rule,
                       top_k=cfg.top_k or None, temperature=cfg.planner_temperature, final_argmax=True)
    denoiser = NetworkDenoiser(parts.denoiser, run.data.vocab.mask_id)
    return (planner_sample(denoiser, parts.ratio, parts.planner, run.schedule, sc, gen) if parts.planner is not None
            else ancestral_sample(denoiser, parts.ratio, run.schedule, sc, gen))


# ------------------------------------------------------------------ sampling time
@dataclass(frozen=True)
class PlannedSet:
    """One sample set the pipeline draws (``tag`` names it within its method and share; an
    ablation point names its ``sweep``, ``gamma`` or ``candidates``)."""

    method: str
    fraction: float
    samples: int
    gamma: float
    candidates: int
    tag: str
    sweep: str = ""

    def draw(self, run: Run) -> "SampleSet":
        """The set, drawn (or read from the run's cache) by :func:`draw_samples`."""
        return draw_samples(run, self.method, self.fraction, samples=self.samples, gamma=self.gamma,
                            candidates=self.candidates, tag=self.tag)


def planned_sets(config: LanguageConfig) -> tuple[list[PlannedSet], list[PlannedSet]]:
    """The sample sets of one replicate (every method at every share, source-only at the first)
    and of the ablations (GTL at ``ablation_fraction`` per gamma and per candidates value, drawn
    in the first replicate only), as ``language.pipeline`` draws them."""
    s, fractions = config.sampling, config.data.fractions
    main = [PlannedSet(m, f, s.samples, s.gamma, s.candidates, "main")
            for m in s.methods for f in ([fractions[0]] if m == "source-only" else fractions)]
    fa, na = s.ablation_fraction, s.ablation_samples
    ablations = ([PlannedSet("gtl", fa, na, g, s.candidates, f"gamma-{g:g}", "gamma") for g in s.gamma_sweep]
                 + [PlannedSet("gtl", fa, na, s.gamma, n, f"n-{n}", "candidates") for n in s.candidates_sweep])
    return main, ablations


@dataclass(frozen=True)
class StepCost:
    """Seconds of one reverse step at the full sampling batch: ``fixed`` (the denoiser call) plus
    ``masked`` x the share of positions still masked (each masked position's step law, and its
    ratio passes under guidance). A planner step reveals one position: ``masked`` is 0."""

    fixed: float
    masked: float

    def at(self, share: float) -> float:
        return self.fixed + self.masked * share


@dataclass(frozen=True)
class SamplingEstimate:
    """The run's sampling time predicted from a pilot.

    ``method_seconds``: seconds per method over every replicate (``gtl ablations`` apart);
    ``step_costs``: the pilot per kind (``gtl n=32``: a guided method with 32 candidates; ``gtl
    gamma=0``: without its ratio calls), steps at the full batch ``batch``; ``sets``: sample sets
    counted (those of the current replicate already cached are not)."""

    method_seconds: dict[str, float]
    step_costs: dict[str, StepCost]
    sets: int
    batch: int

    @property
    def seconds(self) -> float:
        return math.fsum(self.method_seconds.values())

    def pilot_text(self) -> str:
        """Seconds of one step from the all-mask state, per kind."""
        return f"batch {self.batch}: " + ", ".join(f"{k} {c.at(1.0):.3g} s/step" for k, c in self.step_costs.items())

    def text(self) -> str:
        per = ", ".join(f"{k} {v / 60:.1f}" for k, v in self.method_seconds.items())
        return (f"sampling estimate: about {self.seconds / 60:.1f} min for {self.sets} sample set(s) ({per} min; "
                f"pilot at {self.pilot_text()})")


def estimate_sampling_seconds(run: Run, pilot_fraction: float | None = None) -> SamplingEstimate:
    """Seconds the run's remaining sampling would take: every replicate's sample sets and the
    ablations (:func:`planned_sets`), less the current replicate's cached sets.

    Pilot (:func:`_pilot_step`): for each kind used (method; guided: its number of candidates, and
    gamma = 0 apart, which makes no ratio call), reverse steps at the full batch ``sampling.batch``
    with the trained networks at ``pilot_fraction`` (default the first share), timed warm, on
    their own generator, so the seeded streams of the real sample sets are untouched. A batch of
    a planner method takes ``segment_length`` steps; an ancestral batch takes
    sum_j cost(m_j) over the grid t_j = j / T (T = ``sampling.steps``), m_j = (1 - alpha(t_j)) /
    (1 - alpha(1)) the expected share of positions still masked (:class:`StepCost`). A set of N
    samples takes ceil(N / batch) batches (the last, smaller one counted as full)."""
    cfg = run.config
    s, length = cfg.sampling, run.data.length
    fraction = cfg.data.fractions[0] if pilot_fraction is None else pilot_fraction
    main, ablations = planned_sets(cfg)
    later = len(cfg.replicate_seeds) - 1  # replicates after the current (first) one draw the main sets anew
    todo = [(p, (not _cached(run, p)) + (later if p in main else 0)) for p in main + ablations]
    shares = [_masked_share(run, j / s.steps) for j in range(1, s.steps + 1)]
    costs: dict[str, StepCost] = {}
    seconds: dict[str, float] = {}
    for p, copies in todo:
        if copies == 0:
            continue
        method = METHODS[p.method]
        candidates = min(p.candidates, run.data.vocab.size)
        gamma = p.gamma if method.guided else 0.0
        kind = p.method if not method.guided else f"{p.method} gamma=0" if gamma == 0 else f"{p.method} n={candidates}"
        if kind not in costs:
            costs[kind] = _pilot_step(run, p.method, fraction, candidates, gamma)
        cost = costs[kind]
        batch_s = length * cost.fixed if method.planner else math.fsum(cost.at(m) for m in shares)
        name = p.method if p.tag == "main" else f"{p.method} ablations"
        seconds[name] = seconds.get(name, 0.0) + copies * math.ceil(p.samples / s.batch) * batch_s
    return SamplingEstimate(seconds, costs, sum(c for _, c in todo), s.batch)


def _masked_share(run: Run, t: float) -> float:
    """Expected share of positions still masked at time t of a draw from the all-mask state at t = 1."""
    return (1 - run.schedule.alpha(t)) / (1 - run.schedule.alpha(1.0))


def check_sampling_budget(run: Run) -> SamplingEstimate | None:
    """With ``runtime.sampling_budget_minutes`` > 0: estimate the run's sampling time, write it to
    the run log, and raise ValueError when it exceeds twice the budget (None when unchecked)."""
    budget = run.config.runtime.sampling_budget_minutes
    if not budget:
        return None
    est = estimate_sampling_seconds(run)
    run.log(f"{est.text()}; runtime.sampling_budget_minutes = {budget:g}")
    if est.seconds > 2 * budget * 60:
        raise ValueError(f"sampling would take about {est.seconds / 60:.1f} min (pilot at {est.pilot_text()}), more than "
                         f"twice runtime.sampling_budget_minutes = {budget:g}; lower "
                         f"sampling.samples, sampling.steps or sampling.candidates, or raise the budget")
    return est


def _cached(run: Run, p: PlannedSet) -> bool:
    """Whether the current replicate's set ``p`` is on disk (False while a component it reads is untrained)."""
    candidates = min(p.candidates, run.data.vocab.size)
    try:
        return _sample_key(run, p.method, p.fraction, p.samples, p.gamma, candidates, p.tag)[1].is_file()
    except KeyError:
        return False


class _PilotDone(Exception):
    """Ends a pilot planner draw once its step is timed."""


class _StepClock:
    """A planner that times the sampler's steps: the time between its second and third calls is
    one whole planner step (denoiser, planner, guided token law, reveal); the third call ends the draw."""

    def __init__(self, planner: Any, device: torch.device) -> None:
        self.planner, self.device, self.times = planner, device, []

    def __call__(self, z: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
        _synchronize(self.device)
        self.times.append(time.perf_counter())
        if len(self.times) == 3:
            raise _PilotDone
        return self.planner(z, log_probs)


def _pilot_step(run: Run, method: str, fraction: float, candidates: int, gamma: float) -> StepCost:
    """The step cost of ``method`` at the full sampling batch (own generator, nothing stored).

    Planner: the time of one whole step (:class:`_StepClock`). Ancestral: after a warm-up call
    (compiles on CUDA), c1 = the 1-step draw (one step from the all-mask state) and c2 = the 2-step
    draw (each the faster of two calls) (from all masked, then from a share m = (1 - alpha(1/2)) / (1 - alpha(1)) masked), so
    masked = (2 c1 - c2) / (1 - m) and fixed = c1 - masked (both clipped at 0: a loaded machine
    makes the difference noisy)."""
    parts = method_parts(method, Components(run, fraction), candidates)
    gen = torch.Generator(device=run.device).manual_seed(0)
    n = run.config.sampling.batch
    if parts.planner is not None:
        clock = _StepClock(parts.planner, run.device)
        try:
            _sample_batch(run, MethodParts(parts.denoiser, parts.ratio, clock, parts.rule), n, gamma, gen)
        except _PilotDone:
            pass
        return StepCost(clock.times[2] - clock.times[1], 0.0)

    def timed(steps: int) -> float:
        start = time.perf_counter()
        _sample_batch(run, parts, n, gamma, gen, steps=steps)
        _synchronize(run.device)
        return time.perf_counter() - start

    timed(1)  # warm-up
    c1, c2 = min(timed(1), timed(1)), min(timed(2), timed(2))  # the faster of two: less of a loaded machine's noise
    masked = min(max(2 * c1 - c2, 0.0) / (1 - _masked_share(run, 0.5)), c1)
    return StepCost(c1 - masked, masked)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
