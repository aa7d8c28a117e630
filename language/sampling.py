"""Sample sets of every method (cached under ``<run>/samples``): the registry's method parts from
the pipeline's components, drawn in batches with the configured sampler settings."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from gtl_verify.learned import NetworkDenoiser
from gtl_verify.storage import atomic_torch_save, load_torch_cache
from gtl_verify.methods import METHODS, method_parts
from gtl_verify.samplers import SamplerConfig, ancestral_sample, planner_sample
from gtl_verify.store import slug
from gtl_verify.training import config_hash

from .components import Components
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
    data = run.data
    samples = samples or cfg.samples
    gamma = cfg.gamma if gamma is None else gamma
    candidates = min(cfg.candidates if candidates is None else candidates, data.vocab.size)
    provider = Components(run, fraction)
    parts = method_parts(method, provider, candidates)
    ids = provider.component_ids(METHODS[method])
    guided = METHODS[method].guided
    key = {"method": method, "fraction": fraction if method != "source-only" else None, "samples": samples,
           "components": [run.keys[c] for c in ids], "steps": cfg.steps, "top_k": cfg.top_k, "batch": cfg.batch,
           "temperature": cfg.planner_temperature if method == "gtl-planner" else None,
           "gamma": gamma if guided else None, "candidates": candidates if guided else None, "seed": run.target_seed}
    digest = config_hash(key)[:16]
    path = run.root / "samples" / f"{slug(method)}-{fraction:g}-{tag}-{digest}.pt"
    payload = load_torch_cache(path, lambda p: _payload(p, ("tokens", "cost")))
    if payload is not None:
        return SampleSet(method, fraction, tag, payload["tokens"], dict(payload["cost"]))
    denoiser = NetworkDenoiser(parts.denoiser, data.vocab.mask_id)
    rule, ratio = parts.rule, parts.ratio
    gen = torch.Generator(device=run.device).manual_seed(run.seed(f"samples/{method}/{fraction:g}/{tag}"))
    outs, totals = [], {}
    bar = tqdm(total=samples, desc=f"sampling {method} {fraction:g}", disable=not run.progress, leave=False)
    done = 0
    while done < samples:
        n = min(cfg.batch, samples - done)
        sc = SamplerConfig(num_samples=n, length=data.length, steps=cfg.steps, gamma=gamma if guided else 0.0, rule=rule,
                           top_k=cfg.top_k or None, temperature=cfg.planner_temperature, final_argmax=True)
        # the networks are called through run.hooks (bf16 autocast / compile); guidance stays in float64
        res = (planner_sample(denoiser, ratio, parts.planner, run.schedule, sc, gen) if parts.planner is not None
               else ancestral_sample(denoiser, ratio, run.schedule, sc, gen))
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
