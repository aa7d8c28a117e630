"""The ``gtl language`` pipeline: arXiv CS (source) -> Physics (target) transfer.

Stages, one module each (each a function of a :class:`Run`; every trained network is saved with
:func:`gtl_verify.networks.save_network` under ``<run>/models/<name>-<hash>.pt`` and reused when a
file with the same configuration hash exists, and training itself checkpoints to
``<run>/checkpoints`` through :func:`gtl_verify.training.train`, so a killed run resumes):

1. :func:`prepare_data` (``language.prepare``; model vocabularies in ``language.vocabulary``): abstracts per domain, seeded held-out split, nested target fractions,
   tokenisation and packing into fixed-length segments (cached in ``<run>/data``).
2.-6. ``language.components``: :func:`source_denoiser`: MDLM (SUBS, log-linear schedule, no time input) on the CS segments.
3. :func:`target_denoiser` / :func:`finetuned_denoiser`: per target fraction, a denoiser trained
   from scratch on the kept physics segments, and the source denoiser fine-tuned on them.
4. :func:`clean_classifier`: source-vs-target classifier on clean segments, balanced batches
   (the evaluator's P(source) score).
5. :func:`ratio_model`: the density ratio of a :mod:`gtl_verify.estimators` estimator (``[ratio]
   estimator``, e.g. ``guided-likelihood`` against the frozen source denoiser), saved in
   ``<run>/models`` through :func:`gtl_verify.estimators.fit_or_load`.
6. :func:`planner`: per-position probability that the frozen source denoiser's arg-max is right.
7. :func:`draw_samples` (``language.sampling``): source-only, target-only, fine-tuned, tcsm (:func:`tcsm_denoiser`: the
   frozen source denoiser times a learned exp-correction of the ratio network's size, trained on the
   kept physics segments with the MDLM loss; ancestral, unguided), gtl (ancestral GTL with top-n
   candidates) and gtl-planner (one planner-chosen position per step).
8. :func:`evaluate_samples` (``language.scoring``): MiniLM-feature MAUVE, classifier score, distinct-n, perplexity.
9. :func:`run_pipeline` (this module) runs the stages and assembles the ``language`` results
   (``language.assemble``); :func:`run` writes results.json and
   the Markdown report.

bf16 autocast and torch.compile are used only on CUDA (``[runtime]``); training is a plain
nn.Module loop, so wrapping the networks for data parallelism stays possible.
"""

from __future__ import annotations

from pathlib import Path
import torch
from tqdm.auto import tqdm

from gtl_verify.provenance import InvocationClock, provenance, write_results
from gtl_verify.results import LanguageResults
from gtl_verify.storage import RunLock

from .assemble import HELD_OUT, HELD_OUT_SOURCE, Replicate, _assemble, mauve_table
from .components import (
    Components,
    clean_classifier,
    finetuned_denoiser,
    planner,
    ratio_model,
    source_denoiser,
    target_denoiser,
    tcsm_denoiser,
    train_components,
)
from .config import LanguageConfig
from .prepare import prepare_data
from .run_folder import PreparedData, Run, backbone, config_history, record_config, resolve_device
from .sampling import SampleSet, check_sampling_budget, draw_samples, planned_sets
from .scoring import Evaluator, _diagnostics, evaluate_samples, make_evaluator
from .vocabulary import Vocabulary, observed_vocabulary


def run_pipeline(config: LanguageConfig, root: str | Path, progress: bool = True) -> LanguageResults:
    """Run (or resume) every stage in ``root`` for every replicate seed of ``config`` and return the
    ``language`` results (rows tagged with their replicate)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if config.runtime.threads:
        torch.set_num_threads(config.runtime.threads)
    run = Run(config, root, progress, resolve_device(config.runtime.device))
    with run.stage("data"):
        prepare_data(run)
    replicates: list[Replicate] = []
    evaluator: Evaluator | None = None
    ablations: dict[str, list] = {"gamma": [], "candidates": []}
    for i, seed in enumerate(config.replicate_seeds):
        run.replicate = seed
        run.log(f"replicate seed {seed} ({i + 1} of {len(config.replicate_seeds)})")
        train_components(run)
        if i == 0:  # the whole run's sampling time against runtime.sampling_budget_minutes
            check_sampling_budget(run)
        sets = _draw_method_samples(run)
        with run.stage("evaluation"):
            if evaluator is None:
                run.log("evaluation: loading the MiniLM feature model")
            evaluator = make_evaluator(run, evaluator)
            replicates.append(_evaluate_replicate(run, evaluator, sets))
        if i == 0:  # the gamma and candidates sweeps: diagnostics of the first replicate
            ablations = _ablations(run, evaluator)
    results = _assemble(run, replicates, ablations)
    run.log("done: " + ", ".join(f"{k} {v:.0f}s" for k, v in run.stage_seconds.items()))
    return results


def _draw_method_samples(run: Run) -> list[SampleSet]:
    """The replicate's sample sets of :func:`language.sampling.planned_sets` (every method at every
    target share, source-only once)."""
    with run.stage("sampling"):
        return [p.draw(run) for p in planned_sets(run.config)[0]]


def _evaluate_replicate(run: Run, e: Evaluator, sets: list[SampleSet]) -> Replicate:
    """Every metric of the replicate's sample sets, of the held-out physics ceiling and the held-out
    CS floor (the same rows in every replicate), and the components' held-out diagnostics."""
    cfg, data = run.config, run.data
    evaluated = [(s, evaluate_samples(e, s.tokens, tag=f"{s.method}-{s.fraction:g}-{s.tag}"))
                 for s in tqdm(sets, desc="evaluating", disable=not run.progress, leave=False)]
    held = evaluate_samples(e, data.held_out_rows, tag="held-out-physics")
    floor_rows = torch.randperm(data.source_val.shape[0], generator=torch.Generator().manual_seed(run.source_seed("floor")))
    held_src = evaluate_samples(e, data.source_val[floor_rows[:cfg.sampling.samples]], perplexity=False, tag="held-out-cs")
    return Replicate(run.target_seed, evaluated, held, held_src, _diagnostics(run, e))


def _ablations(run: Run, e: Evaluator) -> dict[str, list]:
    """GTL at the ablation share for every value of the gamma and candidates sweeps
    (:func:`language.sampling.planned_sets`)."""
    planned = planned_sets(run.config)[1]
    with run.stage("sampling"):
        drawn = [(p, p.draw(run)) for p in planned]
    with run.stage("evaluation"):
        out: dict[str, list] = {"gamma": [], "candidates": []}
        for p, s in drawn:
            scores = evaluate_samples(e, s.tokens, distinct=False, perplexity=False, tag=f"ablation-{s.tag}")
            out[p.sweep].append((p.gamma if p.sweep == "gamma" else p.candidates, s, scores))
        return out


def run(config: LanguageConfig, out: str | Path, progress: bool = True,
        allow_config_change: bool = False) -> tuple[LanguageResults, Path, Path]:
    """Run the pipeline in ``out`` and write ``out/results.json`` (kind ``language``) and the
    Markdown report ``out/results.md`` (figures under ``out/figures``); returns (results, results
    path, report path). A folder started with another config raises ValueError unless
    ``allow_config_change`` (:func:`language.run_folder.record_config`)."""
    from reports.builder import build_report

    with RunLock(out):
        record_config(out, config, resolve_device(config.runtime.device), allow_config_change)  # before the clock: a refused start is no invocation
        changes = config_history(out)  # read before the work: a damaged record stops the run here
        with InvocationClock(out) as clock:
            results = run_pipeline(config, out, progress)
            meta = {**provenance(config.to_dict(), list(config.replicate_seeds), clock.elapsed(), clock.parts()),
                    "config_changes": changes}
            path = write_results(Path(out) / "results.json", "language", results, meta)
            report = build_report(path, out)
    return results, path, report


__all__ = [
    "Components",
    "Evaluator",
    "HELD_OUT",
    "HELD_OUT_SOURCE",
    "PreparedData",
    "Run",
    "SampleSet",
    "Vocabulary",
    "backbone",
    "clean_classifier",
    "draw_samples",
    "evaluate_samples",
    "finetuned_denoiser",
    "make_evaluator",
    "mauve_table",
    "observed_vocabulary",
    "planner",
    "prepare_data",
    "ratio_model",
    "resolve_device",
    "run",
    "run_pipeline",
    "source_denoiser",
    "target_denoiser",
    "tcsm_denoiser",
    "train_components",
]
