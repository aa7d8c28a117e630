"""The learned components of the language pipeline (source, target-only, fine-tuned, TCSM and
AR2Diff denoisers; the clean classifier; the density ratio of a core estimator; planner), each
trained once through the run's component store, and :class:`Components`, the pipeline's provider for the method registry."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gtl_verify.baselines import TCSMNet, diffusion_from_ar, zero_correction
from gtl_verify import recipes
from gtl_verify.estimators import EstimatorBudget, get_estimator, on_device
from gtl_verify.learned import NetworkPlanner
from gtl_verify.methods import METHODS, Method
from gtl_verify.networks import DenoiserNet, PositionNet, SequenceNet
from gtl_verify.store import ComponentId

from .ratio import estimator_denoiser, pipeline_ratio
from .run_folder import Run, backbone

#: the component roles (one instance each: writers and readers share them; ``.at(f)`` per target set)
SOURCE = ComponentId("source denoiser")
TARGET_ONLY = ComponentId("target-only denoiser")
FINE_TUNED = ComponentId("fine-tuned denoiser")
TCSM = ComponentId("tcsm correction")
CLEAN = ComponentId("clean classifier")
RATIO = ComponentId("ratio")
PLANNER = ComponentId("planner")
AR_SOURCE = ComponentId("autoregressive source")
AR2DIFF_SOURCE = ComponentId("ar2diff source denoiser")
AR2DIFF = ComponentId("ar2diff denoiser")


def _fit_denoiser(run: Run, net: nn.Module, data: torch.Tensor, budget, name: str, ckpt, digest, source_side: bool = False):
    recipe = recipes.denoiser(net, data, schedule=run.schedule, mask_id=run.data.vocab.mask_id, hooks=run.hooks)
    return run.fit(net, recipe.loss, recipe.data, budget, name, ckpt, digest, source_side=source_side)


def _base_key(run: Run, source_side: bool = False) -> dict[str, Any]:
    """Identity shared by every component key: data, vocabulary and seed (the config's seed for the
    source-side components, the replicate's for the target-side ones)."""
    return {"data": run.data.hash, "vocab": run.data.vocab.to_dict(),
            "seed": run.config.seed if source_side else run.target_seed}


def source_denoiser(run: Run) -> DenoiserNet:
    """MDLM denoiser trained on the source (CS) training segments."""
    cfg = run.config
    key = {**_base_key(run, source_side=True), "stage": "source-denoiser", "size": vars(cfg.models.denoiser),
           "budget": vars(cfg.training.source)}
    data = run.data

    def build():
        return DenoiserNet(backbone(cfg.models.denoiser, data.vocab, data.length))

    def fit(net, ckpt, digest):
        return _fit_denoiser(run, net, data.source_train, cfg.training.source, SOURCE.name, ckpt, digest, source_side=True)

    return run.component(SOURCE, key, build, fit)


def target_denoiser(run: Run, fraction: float) -> DenoiserNet:
    """Target-only denoiser: trained from scratch on the kept physics segments."""
    cfg = run.config
    key = {**_base_key(run), "stage": "target-denoiser", "fraction": fraction, "size": vars(cfg.models.denoiser),
           "budget": vars(cfg.training.target)}
    data = run.data
    cid = TARGET_ONLY.at(fraction)

    def build():
        return DenoiserNet(backbone(cfg.models.denoiser, data.vocab, data.length))

    def fit(net, ckpt, digest):
        return _fit_denoiser(run, net, data.target_train[fraction], cfg.training.target, cid.name, ckpt, digest)

    return run.component(cid, key, build, fit)


def _finetuned(run: Run, base: ComponentId, base_net: DenoiserNet, role: ComponentId, fraction: float, stage: str) -> DenoiserNet:
    """The denoiser ``base_net`` (component ``base``) fine-tuned on the kept physics segments with
    ``[training.finetune]``, stored as ``role.at(fraction)``."""
    cfg = run.config
    key = {**_base_key(run), "stage": stage, "fraction": fraction, "init": run.keys[base], "budget": vars(cfg.training.finetune)}
    data = run.data
    cid = role.at(fraction)

    def build():
        net = DenoiserNet(base_net.config)
        net.load_state_dict(base_net.state_dict())
        return net

    def fit(net, ckpt, digest):
        return _fit_denoiser(run, net, data.target_train[fraction], cfg.training.finetune, cid.name, ckpt, digest)

    return run.component(cid, key, build, fit)


def finetuned_denoiser(run: Run, fraction: float) -> DenoiserNet:
    """The source denoiser fine-tuned on the kept physics segments."""
    source = run.nets.get(SOURCE) or source_denoiser(run)
    return _finetuned(run, SOURCE, source, FINE_TUNED, fraction, "finetuned-denoiser")


def ar_source(run: Run) -> DenoiserNet:
    """Causal transformer of the denoiser's size ``[models.denoiser]`` trained by next-token
    prediction on the CS segments (start token = mask id) with ``[training.ar]``: the first stage
    of AR2Diff (Han et al. 2024, arXiv 2401.17181)."""
    cfg = run.config
    data = run.data
    key = {**_base_key(run, source_side=True), "stage": "ar-source", "size": vars(cfg.models.denoiser),
           "budget": vars(cfg.training.ar)}

    def build():
        return DenoiserNet(dataclasses.replace(backbone(cfg.models.denoiser, data.vocab, data.length), causal=True))

    def fit(net, ckpt, digest):
        recipe = recipes.autoregressive(net, data.source_train, start_id=data.vocab.mask_id, hooks=run.hooks)
        return run.fit(net, recipe.loss, recipe.data, cfg.training.ar, AR_SOURCE.name, ckpt, digest, source_side=True)

    return run.component(AR_SOURCE, key, build, fit)


def ar2diff_source(run: Run) -> DenoiserNet:
    """AR2Diff's source denoiser: the bidirectional network with the autoregressive model's weights
    (:func:`gtl_verify.baselines.diffusion_from_ar`), trained on the CS segments with the MDLM loss
    for ``[training.ar2diff]`` (so ``ar.steps + ar2diff.steps`` is its whole source budget)."""
    cfg = run.config
    data = run.data
    ar = run.nets.get(AR_SOURCE) or ar_source(run)
    key = {**_base_key(run, source_side=True), "stage": "ar2diff-source", "init": run.keys[AR_SOURCE],
           "budget": vars(cfg.training.ar2diff)}

    def fit(net, ckpt, digest):
        return _fit_denoiser(run, net, data.source_train, cfg.training.ar2diff, AR2DIFF_SOURCE.name, ckpt, digest, source_side=True)

    return run.component(AR2DIFF_SOURCE, key, lambda: diffusion_from_ar(ar), fit)


def ar2diff_denoiser(run: Run, fraction: float) -> DenoiserNet:
    """AR2Diff: :func:`ar2diff_source` fine-tuned on the kept physics segments like the plain
    fine-tune (``[training.finetune]``)."""
    base = run.nets.get(AR2DIFF_SOURCE) or ar2diff_source(run)
    return _finetuned(run, AR2DIFF_SOURCE, base, AR2DIFF, fraction, "ar2diff-denoiser")


def tcsm_denoiser(run: Run, fraction: float) -> TCSMNet:
    """TCSM-style post-training: logits = frozen source denoiser + correction(z), i.e.
    p(x^i|z) proportional to p_ref(x^i|z) exp(f(z)_{i,x}); the correction has the ratio's
    size ``[models.ratio]`` and budget ``[training.ratio]``, a zero-initialised head (training starts
    at the source model) and is fitted on the kept physics segments with the MDLM loss."""
    cfg = run.config
    source = run.nets.get(SOURCE) or source_denoiser(run)
    key = {**_base_key(run), "stage": "tcsm-correction", "fraction": fraction, "reference": run.keys[SOURCE],
           "size": vars(cfg.models.ratio), "budget": vars(cfg.training.ratio)}
    data = run.data
    cid = TCSM.at(fraction)

    def build():
        return zero_correction(backbone(cfg.models.ratio, data.vocab, data.length))

    def fit(correction, ckpt, digest):
        return _fit_denoiser(run, TCSMNet(source, correction), data.target_train[fraction], cfg.training.ratio, cid.name, ckpt, digest)

    return TCSMNet(source, run.component(cid, key, build, fit)).eval()


def clean_classifier(run: Run, fraction: float) -> SequenceNet:
    """P(source | x) on clean segments, balanced batches (so pi_s = pi_t in the ratio)."""
    cfg = run.config
    data = run.data
    budget = cfg.training.classifier
    key = {**_base_key(run), "stage": "clean-classifier", "fraction": fraction, "size": vars(cfg.models.classifier),
           "budget": vars(budget)}
    cid = CLEAN.at(fraction)

    def fit(net, ckpt, digest):
        recipe = recipes.clean_classifier(net, data.source_train, data.target_train[fraction], budget.batch_size,
                                          hooks=run.hooks)
        return run.fit(net, recipe.loss, recipe.data, budget, cid.name, ckpt, digest)

    return run.component(cid, key, lambda: SequenceNet(backbone(cfg.models.classifier, data.vocab, data.length)), fit)


def ratio_budget(run: Run) -> EstimatorBudget:
    """The estimators' budget of the ratio: ``[training.ratio]`` and ``[models.ratio]`` as they are
    (the TCSM correction trains with the same budget and size)."""
    return EstimatorBudget.from_parts(run.config.training.ratio, run.config.models.ratio)


def ratio_model(run: Run, fraction: float):
    """The density ratio GTL reads at ``fraction``: estimator ``[ratio] estimator`` of
    :mod:`gtl_verify.estimators` fitted on the CS training segments and the kept physics segments
    with :func:`ratio_budget`, the frozen source denoiser (estimators that need one) and the
    replicate's seed of this component; saved in ``<run>/models`` under a key of data, vocabulary,
    seed, fraction, estimator, budget, size and the source denoiser's key, and reloaded on resume
    (a damaged file is refitted: :func:`gtl_verify.estimators.fit_or_load`). Returns the fitted
    model on the run's device, read with the pipeline's mask id (:func:`language.ratio.pipeline_ratio`):
    ``model(z, t)`` -> log r(z) [B] and, where the estimator has it, ``single_site``.

    The runtime's bf16/compile hooks wrap networks, and a fitted model is not one: the ratio is
    called unwrapped (float32 weights; its outputs are float64, :func:`gtl_verify.estimators.checked`).
    Fitting runs without a progress bar (the estimators train quietly); the run's log names it."""
    cfg = run.config
    data = run.data
    name = cfg.ratio.estimator
    needs_denoiser = get_estimator(name).needs_denoiser
    source = (run.nets.get(SOURCE) or source_denoiser(run)) if needs_denoiser else None
    key = {**_base_key(run), "stage": "ratio", "fraction": fraction, "estimator": name, "size": vars(cfg.models.ratio),
           "budget": vars(cfg.training.ratio), "denoiser": run.keys[SOURCE] if needs_denoiser else None}
    cid = RATIO.at(fraction)

    def fit():
        model = run.store.fit_ratio(cid.name, key, name, data.source_train, data.target_train[fraction], ratio_budget(run),
                                    schedule=run.schedule, vocab_size=data.vocab.size, mask_id=data.vocab.size,
                                    denoiser=None if source is None else estimator_denoiser(source, data.vocab),
                                    seed=run.seed(cid.name))
        return pipeline_ratio(on_device(model, run.device), data.vocab)

    return run.memoised(run.ratios, cid, key, fit)


def planner(run: Run, hooks: recipes.Hooks = recipes.NO_HOOKS) -> NetworkPlanner:
    """PositionNet trained on masked source segments to predict where the frozen source
    denoiser's arg-max is the clean token (reveal those first); called through ``hooks``."""
    cfg = run.config
    data = run.data
    src = run.nets.get(SOURCE) or source_denoiser(run)
    features = cfg.sampling.planner_log_prob_features
    budget = cfg.training.planner
    key = {**_base_key(run, source_side=True), "stage": "planner", "size": vars(cfg.models.planner), "budget": vars(budget),
           "denoiser": run.keys[SOURCE], "features": features}
    def fit(net, ckpt, digest):
        recipe = recipes.planner(net, src, data.source_train, schedule=run.schedule, mask_id=data.vocab.mask_id,
                                 log_prob_features=features, hooks=run.hooks)
        return run.fit(net, recipe.loss, recipe.data, budget, PLANNER.name, ckpt, digest, source_side=True)

    net = run.component(PLANNER, key, lambda: PositionNet(backbone(cfg.models.planner, data.vocab, data.length),
                                                            log_prob_features=features), fit)
    return NetworkPlanner(hooks.sampling(net))


@dataclass
class Components:
    """The language pipeline's :class:`~gtl_verify.methods.ComponentProvider` at one target
    fraction (denoiser networks, the learned ratio, the planner; trained on demand and called
    through the runtime's bf16/compile hooks), with the ids of the components each method uses
    (their digests key the sample caches)."""

    run: Run
    fraction: float

    def denoiser(self, which: str) -> nn.Module:
        f = self.fraction
        net = {"source": lambda: self.run.nets.get(SOURCE) or source_denoiser(self.run),
               "target-only": lambda: target_denoiser(self.run, f), "fine-tuned": lambda: finetuned_denoiser(self.run, f),
               "tcsm": lambda: tcsm_denoiser(self.run, f), "ar2diff": lambda: ar2diff_denoiser(self.run, f)}[which]()
        return self.run.hooks.sampling(net)

    def ratio(self, which: str):
        if which != "learned":
            raise ValueError(f"the language pipeline has no {which!r} ratio")
        return ratio_model(self.run, self.fraction)

    def planner(self) -> NetworkPlanner:
        return planner(self.run, self.run.hooks)

    def component_ids(self, method: Method) -> list[ComponentId]:
        f = self.fraction
        denoiser = {"source": [SOURCE], "target-only": [TARGET_ONLY.at(f)], "fine-tuned": [FINE_TUNED.at(f)],
                    "tcsm": [SOURCE, TCSM.at(f)], "ar2diff": [AR2DIFF.at(f)]}
        return (denoiser[method.denoiser] + ([RATIO.at(f)] if method.guided else [])
                + ([PLANNER] if method.planner else []))


def train_components(run: Run) -> None:
    """Every network the configured methods and metrics need, in dependency order."""
    cfg = run.config
    methods = cfg.sampling.methods
    with run.stage("source denoiser"):
        source_denoiser(run)
    for f in cfg.data.fractions:
        with run.stage("target-only denoisers"):
            if "target-only" in methods or f == cfg.evaluator_fraction:
                target_denoiser(run, f)
        with run.stage("fine-tuned denoisers"):
            if "fine-tuned" in methods:
                finetuned_denoiser(run, f)
        with run.stage("tcsm corrections"):
            if "tcsm" in methods:
                tcsm_denoiser(run, f)
        with run.stage("ar2diff denoisers"):
            if "ar2diff" in methods:
                ar2diff_denoiser(run, f)
    for f in cfg.data.fractions:
        with run.stage("classifiers and ratio"):
            if f == cfg.evaluator_fraction:
                clean_classifier(run, f)
            if any(METHODS[m].guided for m in methods):
                ratio_model(run, f)
    if any(METHODS[m].planner for m in methods):
        with run.stage("planner"):
            planner(run)
