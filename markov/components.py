"""Training of the learned components on Markov data, with the shared gtl_verify objectives.

- denoiser: DiT backbone + MDLM masked-diffusion loss (SUBS, schedule weight), no time input (R3);
- ratio: any estimator of :mod:`gtl_verify.estimators` by name (``guided-likelihood``, ``paper``,
  ...), fitted with the budget of ``[training.ratio]`` and the size of ``[models.ratio]``
  (:func:`ratio_budget`) and, for the estimators that need it, the frozen source denoiser;
- planner: per-position probability that the frozen denoiser's arg-max is right.
Every component is saved with its configuration hash and reloaded when a run is resumed (a ratio
model through :mod:`gtl_verify.estimators.persistence`, keyed by estimator, budget and denoiser).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Callable

import torch

from gtl_verify import recipes
from gtl_verify.baselines import TCSMNet, diffusion_from_ar, zero_correction
from gtl_verify.estimators import EstimatorBudget, get_estimator
from gtl_verify.learned import NetworkDenoiser, NetworkPlanner
from gtl_verify.networks import BackboneConfig, DenoiserNet, PositionNet
from gtl_verify.schedules import Schedule
from gtl_verify.store import ComponentStore, Fit
from gtl_verify.training import TrainConfig, train

from .config import ModelSizes, TrainingBudget


def backbone(vocab_size: int, length: int, hidden: int, blocks: int, heads: int) -> BackboneConfig:
    """Bidirectional DiT backbone over tokens 0..K (K = mask id), no time input."""
    return BackboneConfig(vocab_size=vocab_size, num_embeddings=vocab_size + 1, max_length=length,
                          hidden=hidden, blocks=blocks, heads=heads, cond=max(hidden // 2, 2))


def fitted(fit: Callable[[torch.nn.Module], None]) -> Fit:
    """A ``fit(net)`` as the store's ``fit(net, checkpoint, digest)`` (Markov training is short: no checkpoints)."""
    def run(net: torch.nn.Module, checkpoint: Path | None, digest: str) -> None:
        fit(net)

    return run


def _train(net, recipe: recipes.Recipe, steps, lr, batch, seed, weight_decay, progress, label) -> None:
    if steps > 0:
        cfg = TrainConfig(steps=steps, batch_size=batch, lr=lr, weight_decay=weight_decay, seed=seed, warmup=min(100, steps // 10))
        train(net, recipe.loss, recipe.data, cfg, progress=progress, description=label)


def _denoiser_sizes(sizes: ModelSizes) -> dict:
    """The sizes a denoiser's weights depend on (not the ratio network's)."""
    return {"hidden": sizes.denoiser_hidden, "blocks": sizes.denoiser_blocks, "heads": sizes.heads}


def train_denoiser(store: ComponentStore, x: torch.Tensor, sizes: ModelSizes, budget: TrainingBudget, *, seed: int,
                   key: dict, steps: int, lr: float, init: DenoiserNet | None = None, label: str = "denoiser", schedule: Schedule) -> DenoiserNet:
    cfg = backbone(key["vocab_size"], x.shape[1], sizes.denoiser_hidden, sizes.denoiser_blocks, sizes.heads)
    mask_id = key["vocab_size"]

    def build():
        return copy.deepcopy(init).train() if init is not None else DenoiserNet(cfg)

    def fit(net):
        _train(net, recipes.denoiser(net, x, schedule=schedule, mask_id=mask_id), steps, lr, budget.batch_size, seed,
               budget.weight_decay, store.progress, label)

    return store.get(label, {**key, "steps": steps, "lr": lr, "seed": seed, "sizes": _denoiser_sizes(sizes)}, build, fitted(fit))


def ratio_budget(sizes: ModelSizes, budget: TrainingBudget) -> EstimatorBudget:
    """The estimators' budget of a Markov config: ``[training.ratio]`` steps, batch size and rate
    (shared weight decay, warm-up min(100, steps // 10)) and the ``[models.ratio]`` network size."""
    return EstimatorBudget.from_parts(budget.budget(budget.ratio_steps, budget.ratio_lr, budget.ratio_batch_size), sizes.ratio)


def train_ratio(store: ComponentStore, source: torch.Tensor, target: torch.Tensor, estimator: str, sizes: ModelSizes,
                budget: TrainingBudget, *, seed: int, key: dict, schedule: Schedule,
                denoiser: Callable[..., torch.Tensor] | None = None, denoiser_key: dict | None = None):
    """The ratio model of ``estimator`` (a name of :data:`gtl_verify.estimators.ESTIMATORS`) fitted on
    ``source`` [N_s, L] and ``target`` [N_t, L] with :func:`ratio_budget`; ``denoiser`` (z, t ->
    log p(x^i = v | z) [B, L, K]) is the frozen source denoiser of the estimators that need one, and
    ``denoiser_key`` what its weights depend on (part of the store key). Loaded from the store when
    a fit with the same key was saved. Raises ValueError (one line) for an unknown estimator or bad
    samples, before any training."""
    fitter = get_estimator(estimator)
    if fitter.needs_denoiser and denoiser_key is None:
        raise ValueError(f"estimator {estimator!r} fits against the source denoiser: denoiser_key (what its weights "
                         f"depend on, part of the store key) is required, got None")
    ratio_b = ratio_budget(sizes, budget)
    full_key = {**key, "estimator": estimator, "budget": ratio_b.to_dict(), "seed": seed, "n_target": len(target),
                "denoiser": denoiser_key if fitter.needs_denoiser else None}
    return store.fit_ratio(f"ratio-{estimator}", full_key, estimator, source, target, ratio_b, schedule=schedule,
                           vocab_size=key["vocab_size"], denoiser=denoiser, seed=seed)


def train_planner(store: ComponentStore, denoiser: DenoiserNet, x: torch.Tensor, sizes: ModelSizes, budget: TrainingBudget,
                  *, seed: int, key: dict, schedule: Schedule) -> NetworkPlanner:
    """Planner: P(denoiser arg-max correct at i | z), trained on masked source samples."""
    k = key["vocab_size"]
    cfg = backbone(k, x.shape[1], sizes.ratio_hidden, sizes.ratio_blocks, sizes.heads)

    def fit(net):
        _train(net, recipes.planner(net, denoiser, x, schedule=schedule, mask_id=k), budget.planner_steps, budget.lr,
               budget.batch_size, seed, budget.weight_decay, store.progress, "planner")

    net = store.get("planner", {**key, "steps": budget.planner_steps, "seed": seed, "sizes": vars(sizes)}, lambda: PositionNet(cfg), fitted(fit))
    return NetworkPlanner(net)


def train_tcsm(store: ComponentStore, reference: DenoiserNet, target: torch.Tensor, sizes: ModelSizes, budget: TrainingBudget,
               *, seed: int, key: dict, schedule: Schedule) -> TCSMNet:
    """TCSM-style post-training: frozen source denoiser + a correction net of the ratio network's
    size (zero-initialised head: training starts exactly at the reference), trained on the target
    samples with the MDLM loss."""
    k = key["vocab_size"]
    cfg = backbone(k, target.shape[1], sizes.ratio_hidden, sizes.ratio_blocks, sizes.heads)

    def fit(correction):
        model = TCSMNet(copy.deepcopy(reference), correction)
        _train(model, recipes.denoiser(model, target, schedule=schedule, mask_id=k), budget.tcsm_steps, budget.lr, budget.batch_size, seed, budget.weight_decay, store.progress, "tcsm")

    full_key = {**key, "steps": budget.tcsm_steps, "seed": seed, "sizes": vars(sizes), "n_target": len(target)}
    correction = store.get("tcsm-correction", full_key, lambda: zero_correction(cfg), fitted(fit))
    return TCSMNet(copy.deepcopy(reference), correction).eval()


def train_ar_source(store: ComponentStore, x: torch.Tensor, sizes: ModelSizes, budget: TrainingBudget, *, seed: int, key: dict) -> DenoiserNet:
    """Causal transformer trained by next-token prediction on the source (start token = mask id)."""
    k = key["vocab_size"]
    cfg = dataclasses.replace(backbone(k, x.shape[1], sizes.denoiser_hidden, sizes.denoiser_blocks, sizes.heads), causal=True)

    def fit(net):
        _train(net, recipes.autoregressive(net, x, start_id=k), budget.ar_steps, budget.lr, budget.batch_size, seed,
               budget.weight_decay, store.progress, "autoregressive source")

    return store.get("ar-source", {**key, "steps": budget.ar_steps, "seed": seed, "sizes": _denoiser_sizes(sizes)}, lambda: DenoiserNet(cfg), fitted(fit))


def train_ar2diff(store: ComponentStore, ar_net: DenoiserNet, source: torch.Tensor, target: torch.Tensor, sizes: ModelSizes,
                  budget: TrainingBudget, *, seed: int, key: dict, schedule: Schedule) -> DenoiserNet:
    """AR2Diff: bidirectional denoiser initialised from the AR weights, MDLM on the source, then
    fine-tuned on the target like the plain fine-tune."""
    k = key["vocab_size"]

    def fit_source(net):
        _train(net, recipes.denoiser(net, source, schedule=schedule, mask_id=k), budget.ar2diff_continue_steps, budget.lr,
               budget.batch_size, seed, budget.weight_decay, store.progress, "ar2diff source")

    base = store.get("ar2diff-source", {**key, "steps": budget.ar2diff_continue_steps, "ar_steps": budget.ar_steps, "seed": seed,
                                        "sizes": _denoiser_sizes(sizes)}, lambda: diffusion_from_ar(ar_net), fitted(fit_source))
    return train_denoiser(store, target, sizes, budget, seed=seed, key={**key, "n_target": len(target), "init": "ar2diff"},
                          steps=budget.finetune_steps, lr=budget.finetune_lr, init=base, label="ar2diff-fine-tuned", schedule=schedule)


def as_denoiser(net: DenoiserNet, vocab_size: int) -> NetworkDenoiser:
    """The sampler adapter of a denoiser network (mask id = ``vocab_size``)."""
    return NetworkDenoiser(net, vocab_size)


__all__ = ["ComponentStore", "as_denoiser", "backbone", "train_ar2diff", "train_ar_source", "train_denoiser",
           "ratio_budget", "train_planner", "train_ratio", "train_tcsm"]
