"""Training of the learned components on Markov data, with the shared gtl_verify objectives.

- denoiser: DiT backbone + MDLM masked-diffusion loss (SUBS, schedule weight), no time input (R3);
- ratio, ``noisy-classifier``: a source-vs-target classifier on noisy sequences z_t of both
  domains in balanced batches; its optimum logit is log(P_obs(z)/Q_obs(z)) at every t (R1), so
  log r(z) = -logit with no prior term;
- ratio, ``regression-ratio`` / ``regression-log`` (the reference pipeline): a clean classifier
  gives pseudo labels log r_0(x) on source samples (class-prior corrected); a ratio network is
  regressed on masked source samples in ratio space (unbiased, minimiser E[r_0|z] = r(z)) or in
  log space (minimiser E[log r_0|z], Jensen-biased);
- planner: per-position probability that the frozen denoiser's arg-max is right.
Every component is saved with its configuration hash and reloaded when a run is resumed.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Callable

import torch

from gtl_verify.baselines import TCSMNet, ar_loss, diffusion_from_ar, zero_correction
from gtl_verify.learned import ClassifierRatio, NetworkDenoiser, NetworkPlanner, NetworkRatio
from gtl_verify.networks import BackboneConfig, DenoiserNet, PositionNet, SequenceNet
from gtl_verify.objectives import (
    classifier_log_ratio,
    classifier_loss,
    mask_tokens,
    mdlm_loss,
    noisy_classifier_batch,
    planner_loss,
    planner_targets,
    ratio_regression_loss,
    sample_times,
)
from gtl_verify.schedules import Schedule
from gtl_verify.store import ComponentStore, Fit
from gtl_verify.training import TrainConfig, balanced_batches, train

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


def _train(net, loss_fn, data, steps, lr, batch, seed, weight_decay, progress, label) -> None:
    if steps > 0:
        cfg = TrainConfig(steps=steps, batch_size=batch, lr=lr, weight_decay=weight_decay, seed=seed, warmup=min(100, steps // 10))
        train(net, loss_fn, data, cfg, progress=progress, description=label)


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
        _train(net, lambda m, b, g: mdlm_loss(m, b, schedule, mask_id, g), x, steps, lr, budget.batch_size, seed,
               budget.weight_decay, store.progress, label)

    return store.get(label, {**key, "steps": steps, "lr": lr, "seed": seed, "sizes": _denoiser_sizes(sizes)}, build, fitted(fit))


def train_ratio(store: ComponentStore, source: torch.Tensor, target: torch.Tensor, estimator: str, sizes: ModelSizes,
                budget: TrainingBudget, *, seed: int, key: dict, schedule: Schedule):
    """A ratio model (SequenceRatio) from source and target samples with the chosen estimator."""
    k, length = key["vocab_size"], source.shape[1]
    cfg = backbone(k, length, sizes.ratio_hidden, sizes.ratio_blocks, sizes.heads)
    batch, lr = budget.ratio_batch_size, budget.ratio_lr
    draw = balanced_batches(source, target, batch)
    full_key = {**key, "estimator": estimator, "steps": budget.ratio_steps, "lr": lr, "batch": batch, "seed": seed,
                "sizes": vars(sizes), "n_target": len(target)}

    if estimator == "noisy-classifier":
        def noisy_batch(gen):
            xs, xt = draw(gen)
            z, _, labels = noisy_classifier_batch(xs, xt, schedule, gen, mask_id=k)
            return z, labels

        def fit(net):
            _train(net, lambda m, b, g: classifier_loss(m(b[0])[:, 0], b[1]), noisy_batch, budget.ratio_steps, lr,
                   batch, seed, budget.weight_decay, store.progress, "noisy classifier")

        net = store.get("noisy-classifier", full_key, lambda: SequenceNet(cfg), fitted(fit))
        return ClassifierRatio(net, n_source=1, n_target=1)  # balanced batches: pi_s = pi_t

    # reference pipeline: clean classifier -> pseudo log r_0 on source -> regression on masked source
    def clean_batch(gen):
        xs, xt = draw(gen)
        return torch.cat([xs, xt]), torch.cat([torch.ones(len(xs)), torch.zeros(len(xt))])

    def fit_clean(net):
        _train(net, lambda m, b, g: classifier_loss(m(b[0])[:, 0], b[1]), clean_batch, budget.ratio_steps, lr,
               batch, seed, budget.weight_decay, store.progress, "clean classifier")

    clean = store.get("clean-classifier", {**full_key, "estimator": "clean"}, lambda: SequenceNet(cfg), fitted(fit_clean))
    with torch.no_grad():
        labels = classifier_log_ratio(clean(source)[:, 0], 1, 1).float()
    space = "ratio" if estimator == "regression-ratio" else "log"

    def regression_batch(gen):
        idx = torch.randint(len(source), (batch,), generator=gen)
        x = source[idx]
        t = sample_times(len(x), gen, 0.0, False, x.device)
        return mask_tokens(x, t, schedule, k, gen), labels[idx]

    def fit_reg(net):
        _train(net, lambda m, b, g: ratio_regression_loss(m(b[0])[:, 0], b[1], space), regression_batch, budget.ratio_steps,
               lr, batch, seed, budget.weight_decay, store.progress, f"ratio net ({space})")

    net = store.get(f"ratio-{space}", full_key, lambda: SequenceNet(cfg), fitted(fit_reg))
    return NetworkRatio(net)


def train_planner(store: ComponentStore, denoiser: DenoiserNet, x: torch.Tensor, sizes: ModelSizes, budget: TrainingBudget,
                  *, seed: int, key: dict, schedule: Schedule) -> NetworkPlanner:
    """Planner: P(denoiser arg-max correct at i | z), trained on masked source samples."""
    k = key["vocab_size"]
    cfg = backbone(k, x.shape[1], sizes.ratio_hidden, sizes.ratio_blocks, sizes.heads)
    frozen = NetworkDenoiser(denoiser, k)

    def batch(gen):
        xb = x[torch.randint(len(x), (budget.batch_size,), generator=gen)]
        t = sample_times(len(xb), gen, 1e-3, True, xb.device)
        z = mask_tokens(xb, t, schedule, k, gen)
        targets = planner_targets(frozen(z).float(), xb, z, k)
        return z, targets

    def fit(net):
        _train(net, lambda m, b, g: planner_loss(m(b[0]), b[1], b[0] == k), batch, budget.planner_steps, budget.lr,
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
        _train(TCSMNet(copy.deepcopy(reference), correction), lambda m, b, g: mdlm_loss(m, b, schedule, k, g), target,
               budget.tcsm_steps, budget.lr, budget.batch_size, seed, budget.weight_decay, store.progress, "tcsm")

    full_key = {**key, "steps": budget.tcsm_steps, "seed": seed, "sizes": vars(sizes), "n_target": len(target)}
    correction = store.get("tcsm-correction", full_key, lambda: zero_correction(cfg), fitted(fit))
    return TCSMNet(copy.deepcopy(reference), correction).eval()


def train_ar_source(store: ComponentStore, x: torch.Tensor, sizes: ModelSizes, budget: TrainingBudget, *, seed: int, key: dict) -> DenoiserNet:
    """Causal transformer trained by next-token prediction on the source (start token = mask id)."""
    k = key["vocab_size"]
    cfg = dataclasses.replace(backbone(k, x.shape[1], sizes.denoiser_hidden, sizes.denoiser_blocks, sizes.heads), causal=True)

    def fit(net):
        _train(net, lambda m, b, g: ar_loss(m, b, k), x, budget.ar_steps, budget.lr, budget.batch_size, seed,
               budget.weight_decay, store.progress, "autoregressive source")

    return store.get("ar-source", {**key, "steps": budget.ar_steps, "seed": seed, "sizes": _denoiser_sizes(sizes)}, lambda: DenoiserNet(cfg), fitted(fit))


def train_ar2diff(store: ComponentStore, ar_net: DenoiserNet, source: torch.Tensor, target: torch.Tensor, sizes: ModelSizes,
                  budget: TrainingBudget, *, seed: int, key: dict, schedule: Schedule) -> DenoiserNet:
    """AR2Diff: bidirectional denoiser initialised from the AR weights, MDLM on the source, then
    fine-tuned on the target like the plain fine-tune."""
    k = key["vocab_size"]

    def fit_source(net):
        _train(net, lambda m, b, g: mdlm_loss(m, b, schedule, k, g), source, budget.ar2diff_continue_steps, budget.lr,
               budget.batch_size, seed, budget.weight_decay, store.progress, "ar2diff source")

    base = store.get("ar2diff-source", {**key, "steps": budget.ar2diff_continue_steps, "ar_steps": budget.ar_steps, "seed": seed,
                                        "sizes": _denoiser_sizes(sizes)}, lambda: diffusion_from_ar(ar_net), fitted(fit_source))
    return train_denoiser(store, target, sizes, budget, seed=seed, key={**key, "n_target": len(target), "init": "ar2diff"},
                          steps=budget.finetune_steps, lr=budget.finetune_lr, init=base, label="ar2diff-fine-tuned", schedule=schedule)


def as_denoiser(net: DenoiserNet, vocab_size: int) -> NetworkDenoiser:
    return NetworkDenoiser(net, vocab_size)


__all__ = ["ComponentStore", "as_denoiser", "backbone", "train_ar2diff", "train_ar_source", "train_denoiser",
           "train_planner", "train_ratio", "train_tcsm"]
