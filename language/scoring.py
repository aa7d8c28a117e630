"""Scores of sample sets: MiniLM-feature MAUVE against held-out physics, classifier score,
distinct-n, generative perplexity (cached per sample set under ``<run>/metrics``), and the
held-out ELBO diagnostics of the denoisers."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from gtl_verify.objectives import (
    mdlm_elbo_nats_per_token,
)
from gtl_verify.storage import atomic_write_text, read_json_cache
from gtl_verify.store import slug
from gtl_verify.training import config_hash

from . import evaluate as ev
from .segments import decode
from .components import AR2DIFF, CLEAN, FINE_TUNED, SOURCE, TARGET_ONLY, clean_classifier, target_denoiser
from .run_folder import Run, _jsonable


@dataclass
class Evaluator:
    """The fixed yardsticks: feature model, reference features, classifier and perplexity evaluator."""

    run: Run
    classifier: nn.Module
    evaluator: nn.Module
    reference: np.ndarray
    model: Any = None
    cache: dict[str, Any] = field(default_factory=dict)

    def texts(self, tokens: torch.Tensor) -> list[str]:
        """Text of model-id rows [N, L]: the one path of samples, reference, ceiling and floor."""
        return list(decode(self.run.data.vocab.decode(tokens), self.run.data.tokenizer))

    def features(self, texts: list[str]) -> np.ndarray:
        return ev.sentence_features(texts, self.model, self.run.config.evaluation.feature_batch, str(self.run.device))


def make_evaluator(run: Run, previous: Evaluator | None = None) -> Evaluator:
    """The yardsticks of the current replicate: its clean classifier and target-only perplexity
    evaluator at the evaluator fraction; the feature model and the reference features (the same
    for every replicate) are taken from ``previous`` when given."""
    cfg = run.config
    f_eval = cfg.evaluator_fraction
    classifier = clean_classifier(run, f_eval)
    evaluator = target_denoiser(run, f_eval)
    if previous is not None:
        return Evaluator(run, classifier, evaluator, previous.reference, previous.model)
    model = ev.load_feature_model(str(run.device) if run.on_cuda else "cpu", progress=run.progress)
    e = Evaluator(run, classifier, evaluator, np.empty((0, 0)), model)
    e.reference = e.features(e.texts(run.data.reference_rows))
    return e


def evaluate_samples(e: Evaluator, tokens: torch.Tensor, *, distinct: bool = True,
                     perplexity: bool = True, classifier: bool = True, seeds=None, tag: str = "") -> dict[str, Any]:
    """Every metric of one set of model-id rows (samples or held-out segments); cached per tag."""
    cfg = e.run.config.evaluation
    seeds = list(cfg.mauve_seeds if seeds is None else seeds)
    digest = config_hash({"tokens": tokens.tolist(), "seeds": seeds, "eval": vars(cfg),
                          "ref": e.run.data.hash, "cls": e.run.keys.get(CLEAN.at(e.run.config.evaluator_fraction)),
                          "ev": e.run.keys.get(TARGET_ONLY.at(e.run.config.evaluator_fraction))})[:16]
    path = e.run.root / "metrics" / f"{slug(tag)}-{digest}.json"
    cached = read_json_cache(path)
    if isinstance(cached, dict):
        return cached
    texts = e.texts(tokens)
    feats = e.features(texts)
    m = ev.mauve_seeds(feats, e.reference, seeds, cfg.mauve_scaling)
    out: dict[str, Any] = {"mauve": m.values, "seeds": m.seeds, "mauve_guard": m.guard.to_dict(), "example": texts[0][:300]}
    if classifier:
        out["classifier"] = ev.classifier_scores(e.classifier, tokens)
    if distinct:
        out["distinct"] = {n: ev.distinct_n(tokens, n) for n in range(1, cfg.distinct_max_n + 1)}
    if perplexity:
        gen = torch.Generator(device=e.run.device).manual_seed(e.run.seed("perplexity"))
        out["perplexity"] = ev.generative_perplexity(e.evaluator, tokens, e.run.schedule, e.run.data.vocab.mask_id, gen,
                                                     cfg.perplexity_draws)
    atomic_write_text(path, json.dumps(out, indent=1, default=float))
    return out


def _diagnostics(run: Run, e: Evaluator) -> dict[str, Any]:
    """Held-out checks of the components: validation ELBO perplexities and classifier accuracy."""
    data, cfg = run.data, run.config
    n = min(128, data.source_val.shape[0], max(data.target_val.shape[0], 1))
    gen = lambda: torch.Generator(device=run.device).manual_seed(run.seed("diagnostics"))  # noqa: E731
    out: dict[str, Any] = {}
    mask_id = data.vocab.mask_id

    def elbo(net, rows):
        if rows.shape[0] == 0:
            return None
        nats = mdlm_elbo_nats_per_token(net, rows[:n].to(run.device), run.schedule, mask_id, gen(), samples=1, batch_size=64)
        return {"nats_per_token": nats, "perplexity": math.exp(min(nats, 700.0))}

    out["source_denoiser_on_source_val"] = elbo(run.nets[SOURCE], data.source_val)
    out["source_denoiser_on_target_val"] = elbo(run.nets[SOURCE], data.target_val)
    for f in cfg.data.fractions:
        for cid in (TARGET_ONLY.at(f), FINE_TUNED.at(f), AR2DIFF.at(f)):
            if cid in run.nets:
                out[f"{cid.name} on target_val"] = elbo(run.nets[cid], data.target_val)
    if data.target_val.shape[0] and data.source_val.shape[0]:
        ps = ev.classifier_scores(e.classifier, data.source_val[:n])
        pt = ev.classifier_scores(e.classifier, data.target_val[:n])
        out["classifier_heldout_accuracy"] = 0.5 * ((100 - ps["pct_target"]) + pt["pct_target"]) / 100
    return _jsonable(out)
