"""The ``gtl language`` pipeline: arXiv CS (source) -> Physics (target) transfer.

Stages (each a function of a :class:`Run`; every trained network is saved with
:func:`gtl_verify.networks.save_network` under ``<run>/models/<name>-<hash>.pt`` and reused when a
file with the same configuration hash exists, and training itself checkpoints to
``<run>/checkpoints`` through :func:`gtl_verify.training.train`, so a killed run resumes):

1. :func:`prepare_data`: abstracts per domain, seeded held-out split, nested target fractions,
   tokenisation and packing into fixed-length segments (cached in ``<run>/data``).
2. :func:`source_denoiser`: MDLM (SUBS, log-linear schedule, no time input) on the CS segments.
3. :func:`target_denoiser` / :func:`finetuned_denoiser`: per target fraction, a denoiser trained
   from scratch on the kept physics segments, and the source denoiser fine-tuned on them.
4. :func:`clean_classifier` / :func:`noisy_classifier`: source-vs-target classifiers on clean
   segments and on masked segments z_t (time-conditioned by default), balanced batches.
5. :func:`ratio_model`: the reference pipeline (clean classifier pseudo log-ratio of the source
   segments, regression of the ratio network on masked source segments in ratio or log space,
   optional cycle term against the noisy classifier on masked target segments) or the noisy
   classifier itself as the ratio.
6. :func:`planner`: per-position probability that the frozen source denoiser's arg-max is right.
7. :func:`draw_samples`: source-only, target-only, fine-tuned, tcsm (:func:`tcsm_denoiser`: the
   frozen source denoiser times a learned exp-correction of the ratio network's size, trained on the
   kept physics segments with the MDLM loss; ancestral, unguided), gtl (ancestral GTL with top-n
   candidates) and gtl-planner (one planner-chosen position per step).
8. :func:`evaluate_samples`: MiniLM-feature MAUVE, classifier score, distinct-n, perplexity.
9. :func:`run_pipeline` assembles the ``language`` results; :func:`run` writes results.json and
   the Markdown report.

bf16 autocast and torch.compile are used only on CUDA (``[runtime]``); training is a plain
nn.Module loop, so wrapping the networks for data parallelism stays possible.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gtl_verify.baselines import TCSMNet, zero_correction
from gtl_verify.learned import ClassifierRatio, NetworkDenoiser, NetworkPlanner, NetworkRatio
from gtl_verify.networks import BackboneConfig, DenoiserNet, PositionNet, SequenceNet, count_parameters, load_network, save_network
from gtl_verify.objectives import (
    classifier_log_ratio,
    classifier_loss,
    cycle_loss,
    mask_tokens,
    mdlm_elbo_nats_per_token,
    mdlm_loss,
    noisy_classifier_batch,
    planner_loss,
    planner_targets,
    ratio_regression_loss,
    sample_times,
    subs_log_probs,
)
from gtl_verify.provenance import atomic_write_text, device_name, provenance, write_results
from gtl_verify.rules import GTL, Unguided
from gtl_verify.samplers import SamplerConfig, ancestral_sample, planner_sample
from gtl_verify.schedules import LogLinearSchedule, Schedule
from gtl_verify.training import TrainConfig, build_seeded, config_hash, train

from . import data as data_mod
from . import evaluate as ev
from .config import GUIDED_METHODS, Budget, LanguageConfig, NetSize, parameter_share
from .segments import decode, pack_segments
from .tokenizer import load_bert_tokenizer, tokenizer_info, train_bpe_tokenizer

SCHEDULE: Schedule = LogLinearSchedule()
HELD_OUT = "held-out physics"
HELD_OUT_SOURCE = "held-out CS"


# ------------------------------------------------------------------ vocabulary
@dataclass
class Vocabulary:
    """Model ids <-> tokenizer ids.

    ``full``: model ids are the tokenizer's ids (K = tokenizer vocabulary, mask = its [MASK], inside
    0..K-1, so ``num_embeddings = K``). ``observed``: the ``token_ids`` kept from the training
    segments renumbered 0..V-1 (sorted), mask id V, ``num_embeddings = V + 1``; a tokenizer id
    outside them reads as [UNK] when ``unk_id`` (a tokenizer id among ``token_ids``) is set."""

    kind: str
    tokenizer_size: int
    tokenizer_mask_id: int
    token_ids: torch.Tensor | None = None  # [V] tokenizer id of each model id (observed)
    unk_id: int | None = None
    min_count: int = 1
    coverage: float = 1.0  # share of training tokens inside the kept ids

    @property
    def size(self) -> int:
        return self.tokenizer_size if self.token_ids is None else int(self.token_ids.numel())

    @property
    def mask_id(self) -> int:
        return self.tokenizer_mask_id if self.token_ids is None else self.size

    @property
    def num_embeddings(self) -> int:
        return self.size if self.mask_id < self.size else self.mask_id + 1

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(model ids, rows kept): ids outside the vocabulary read as [UNK] when it is set;
        otherwise rows holding one are dropped."""
        if self.token_ids is None:
            return tokens.clone(), torch.ones(tokens.shape[0], dtype=torch.bool)
        fill = -1
        if self.unk_id is not None:
            fill = int((self.token_ids == self.unk_id).nonzero()[0, 0])
        lookup = torch.full((self.tokenizer_size,), fill, dtype=torch.long)
        lookup[self.token_ids] = torch.arange(self.size)
        mapped = lookup[tokens]
        keep = (mapped >= 0).all(dim=1)
        return mapped[keep], keep

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokenizer ids of model ids (a leftover mask becomes the tokenizer's [MASK])."""
        tokens = tokens.detach().cpu().long()
        if self.token_ids is None:
            return tokens
        table = torch.cat([self.token_ids, torch.tensor([self.tokenizer_mask_id])])
        return table[tokens.clamp(0, self.size)]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": self.size, "mask_id": self.mask_id, "num_embeddings": self.num_embeddings,
                "tokenizer_size": self.tokenizer_size, "tokenizer_mask_id": self.tokenizer_mask_id,
                "min_count": self.min_count, "unk_id": self.unk_id, "coverage": self.coverage}


def observed_vocabulary(train_rows: list[torch.Tensor], tokenizer_size: int, mask_id: int, unk_id: int | None,
                        min_count: int = 1) -> Vocabulary:
    """The ids seen at least ``min_count`` times in ``train_rows`` (the mask excluded; [UNK] always
    kept when the tokenizer has one and ``min_count`` > 1)."""
    counts = torch.zeros(tokenizer_size, dtype=torch.long)
    for rows in train_rows:
        counts += torch.bincount(rows.flatten(), minlength=tokenizer_size)
    keep = counts >= min_count
    keep[mask_id] = False
    if min_count > 1:
        if unk_id is None:
            raise ValueError("data.min_count > 1 needs a tokenizer with an [UNK] token")
        keep[unk_id] = True
    ids = keep.nonzero().flatten()
    coverage = float(counts[keep].sum() / counts.sum().clamp_min(1))
    use_unk = unk_id if (unk_id is not None and bool(keep[unk_id])) else None
    return Vocabulary("observed", tokenizer_size, mask_id, ids, use_unk, min_count, coverage)


@dataclass
class PreparedData:
    """Segments in model ids (``*_val`` rows with an unseen token dropped under ``observed``),
    MAUVE reference / held-out rows (also model ids, drawn from ``target_val``), and a summary."""

    vocab: Vocabulary
    tokenizer: Any
    source_train: torch.Tensor
    source_val: torch.Tensor
    target_train: dict[float, torch.Tensor]
    target_val: torch.Tensor
    reference_rows: torch.Tensor
    held_out_rows: torch.Tensor
    summary: dict[str, Any]
    hash: str

    @property
    def length(self) -> int:
        return int(self.source_train.shape[1])


# ------------------------------------------------------------------ the run
@dataclass
class Run:
    """A run folder with its config, device and the components trained or loaded so far."""

    config: LanguageConfig
    root: Path
    progress: bool = True
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    data: PreparedData | None = None
    nets: dict[str, nn.Module] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def log(self, message: str) -> None:
        if self.progress:
            tqdm.write(f"[language {time.perf_counter() - self.started:7.1f}s] {message}", file=sys.stderr)

    @contextlib.contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + time.perf_counter() - start

    # ---------------------------------------------------------- runtime helpers
    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        if self.on_cuda and self.config.runtime.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def compiled(self, net: nn.Module) -> Callable[..., torch.Tensor]:
        """torch.compile(net) on CUDA when asked (it shares the parameters of ``net``), else ``net``."""
        if self.on_cuda and self.config.runtime.compile:
            return torch.compile(net)
        return net

    def seed(self, name: str) -> int:
        return (self.config.seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1)

    # ---------------------------------------------------------- component store
    def component(self, name: str, key: dict[str, Any], build: Callable[[], nn.Module],
                  fit: Callable[[nn.Module, Path, str], Any]) -> nn.Module:
        """Load ``<run>/models/<name>-<hash>.pt`` when present (hash of ``key``), else build, fit
        (resumable through ``<run>/checkpoints/<name>-<hash>.ckpt``), save and return the network."""
        digest = config_hash(key)[:16]
        if name in self.nets and self.keys.get(name) == digest:
            return self.nets[name]
        self.keys[name] = digest
        path = self.root / "models" / f"{_slug(name)}-{digest}.pt"
        if path.is_file():
            net, meta = load_network(path, map_location=self.device)
            if meta.get("config_hash") != digest:
                raise ValueError(f"model file {path} was written by a different config (hash {meta.get('config_hash')!r})")
            self.log(f"{name}: loaded {path.name}")
            info = dict(meta.get("info", {}))
        else:
            net = build_seeded(build, digest).to(self.device)
            ckpt = self.root / "checkpoints" / f"{_slug(name)}-{digest}.ckpt"
            self.log(f"{name}: training ({count_parameters(net):,} parameters)")
            result = fit(net, ckpt, digest)
            net.eval()
            info = {"parameters": count_parameters(net)}
            if result is not None:
                losses = result.losses
                tail = losses[-max(1, len(losses) // 10):] if losses else []
                info.update({"steps": result.steps, "final_loss": float(np.mean(tail)) if tail else None,
                             "first_loss": float(losses[0]) if losses else None, "train_seconds": result.wall_time_s})
            save_network(net, path, {"config_hash": digest, "key": _jsonable(key), "info": info})
            ckpt.unlink(missing_ok=True)
            self.trained.append(name)
            losses = "" if info.get("final_loss") is None else f", loss {info['first_loss']:.4f} -> {info['final_loss']:.4f}"
            self.log(f"{name}: saved ({info.get('steps', 0)} steps{losses})")
        info["parameters"] = count_parameters(net)
        self.components[name] = info
        self.nets[name] = net
        return net

    def fit(self, net: nn.Module, loss_fn, data, budget: Budget, name: str, ckpt: Path, digest: str):
        """Train ``net`` with :func:`gtl_verify.training.train` (checkpointed, resumable)."""
        if budget.steps == 0:
            return None
        cfg = TrainConfig(steps=budget.steps, batch_size=budget.batch_size, lr=budget.lr, weight_decay=budget.weight_decay,
                          warmup=budget.warmup, grad_clip=budget.grad_clip, ema=budget.ema,
                          checkpoint_every=self.config.runtime.checkpoint_every, seed=self.seed(name))
        return train(net, loss_fn, data, cfg, checkpoint_path=ckpt, progress=self.progress, config_hash=digest, description=name)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in name)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU raises."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("runtime.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def backbone(size: NetSize, vocab: Vocabulary, length: int, time_conditioning: bool = False) -> BackboneConfig:
    return BackboneConfig(vocab_size=vocab.size, num_embeddings=vocab.num_embeddings, max_length=length, hidden=size.hidden,
                          blocks=size.blocks, heads=size.heads, cond=size.cond, mlp_ratio=size.mlp_ratio,
                          dropout=size.dropout, positions=size.positions, time_conditioning=time_conditioning)


def _fraction_key(f: float) -> str:
    return f"{f:g}"


# ------------------------------------------------------------------ 1. data
def _load_tokenizer(run: Run, train_texts: list[str], digest: str):
    cfg = run.config.data
    if cfg.tokenizer == "bert":
        return load_bert_tokenizer()
    from tokenizers import Tokenizer

    path = run.root / "data" / f"tokenizer-bpe-{digest}.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    tok = train_bpe_tokenizer(train_texts, cfg.bpe_vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, tok.to_str())
    return Tokenizer.from_file(str(path))


def prepare_data(run: Run) -> PreparedData:
    """Abstracts -> seeded splits -> tokenised, packed segments (cached under ``<run>/data``)."""
    cfg, seed = run.config.data, run.config.seed
    data_dir = data_mod.resolve_data_dir(cfg.path)
    key = {"data": {k: v for k, v in vars(cfg).items() if k != "path"}, "seed": seed, "files": [
        (p.name, p.stat().st_size) for p in data_mod.data_files(data_dir)]}
    digest = config_hash(key)[:16]
    cache = run.root / "data" / f"segments-{digest}.pt"
    texts = None
    if cache.is_file():
        payload = torch.load(cache, map_location="cpu", weights_only=True)
        run.log(f"data: loaded {cache.name}")
    else:
        run.log(f"data: reading {data_dir}")
        domains = data_mod.load_domains(data_dir, scheme=cfg.scheme, max_per_domain=cfg.max_per_domain or None, seed=seed)
        src_train, src_val = data_mod.split(domains.source, cfg.val_fraction, seed)
        tgt_train, tgt_val = data_mod.split(domains.target, cfg.val_fraction, seed)
        if cfg.overlap > 0:
            src_train, tgt_train = data_mod.move_target_into_source(src_train, tgt_train, cfg.overlap, seed)
        fractions = data_mod.target_fractions(tgt_train, cfg.fractions, seed)
        texts = {"source_train": src_train, "source_val": src_val, "target_val": tgt_val,
                 **{f"target_{_fraction_key(f)}": t for f, t in fractions.items()}}
        payload = {"texts": texts, "summary": data_mod.summary(domains), "segments": None}
    texts = payload["texts"]
    tok = _load_tokenizer(run, texts["source_train"] + texts[f"target_{_fraction_key(max(cfg.fractions))}"], digest)
    if payload["segments"] is None:
        length = cfg.segment_length

        def pack(name: str) -> torch.Tensor:
            try:
                return pack_segments(texts[name], tok, length, progress=False)
            except ValueError as exc:
                raise ValueError(f"data split {name!r} ({len(texts[name])} abstracts): {exc}") from None

        payload["segments"] = {name: pack(name) for name in texts}
        payload["counts"] = {name: len(t) for name, t in texts.items()}
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save(payload, tmp)
        tmp.replace(cache)
    seg = payload["segments"]
    info = tokenizer_info(tok)
    if cfg.vocabulary == "observed":
        # source and the largest target share (every smaller share lies inside it)
        rows = [seg["source_train"], seg[f"target_{_fraction_key(max(cfg.fractions))}"]]
        vocab = observed_vocabulary(rows, info.vocab_size, info.mask_id, tok.token_to_id("[UNK]"), cfg.min_count)
    else:
        vocab = Vocabulary("full", info.vocab_size, info.mask_id)
    # evaluation rows in model ids, like the samples: one text path (model vocabulary -> text) for all
    target_val, source_val = vocab.encode(seg["target_val"])[0], vocab.encode(seg["source_val"])[0]
    n_held, n_ref = run.config.sampling.samples, run.config.evaluation.reference_texts
    ev.check_held_out("physics", target_val.shape[0], payload["counts"]["target_val"],
                      {"MAUVE reference (evaluation.reference_texts)": n_ref, "ceiling (sampling.samples)": n_held})
    ev.check_held_out("CS", source_val.shape[0], payload["counts"]["source_val"], {"floor (sampling.samples)": n_held})
    perm = torch.randperm(target_val.shape[0], generator=torch.Generator().manual_seed(run.seed("reference")))
    summary = dict(payload["summary"])
    summary.update({"abstracts": payload["counts"], "segments": {k: int(v.shape[0]) for k, v in seg.items()},
                    "segment_length": cfg.segment_length, "tokenizer": info.name, "vocabulary": vocab.to_dict(),
                    "reference_segments": n_ref, "held_out_segments": n_held, "data_dir": str(data_dir)})
    data = PreparedData(
        vocab=vocab, tokenizer=tok,
        source_train=vocab.encode(seg["source_train"])[0], source_val=source_val,
        target_train={float(f): vocab.encode(seg[f"target_{_fraction_key(f)}"])[0] for f in cfg.fractions},
        target_val=target_val,
        reference_rows=target_val[perm[:n_ref]], held_out_rows=target_val[perm[n_ref : n_ref + n_held]],
        summary=summary, hash=digest,
    )
    for name, rows in (("source_train", data.source_train), *((f"target fraction {f:g}", r) for f, r in data.target_train.items())):
        if rows.shape[0] < 1:
            raise ValueError(f"data split {name} holds no segment")
    run.data = data
    run.log(f"data: {data.source_train.shape[0]} source / "
            + ", ".join(f"{r.shape[0]} target ({f:g})" for f, r in data.target_train.items())
            + f" segments of {data.length} tokens, vocabulary {vocab.size} ({vocab.kind}), mask id {vocab.mask_id}")
    return data


# ------------------------------------------------------------------ 2-3. denoisers
def _denoiser_loss(run: Run, net: nn.Module):
    fn = run.compiled(net)
    mask_id = run.data.vocab.mask_id

    def loss(model, batch, gen):
        with run.autocast():
            return mdlm_loss(fn, batch, SCHEDULE, mask_id, gen)

    return loss


def _base_key(run: Run) -> dict[str, Any]:
    return {"data": run.data.hash, "vocab": run.data.vocab.to_dict(), "seed": run.config.seed}


def source_denoiser(run: Run) -> DenoiserNet:
    """MDLM denoiser trained on the source (CS) training segments."""
    cfg = run.config
    key = {**_base_key(run), "stage": "source-denoiser", "size": vars(cfg.models.denoiser), "budget": vars(cfg.training.source)}
    data = run.data

    def build():
        return DenoiserNet(backbone(cfg.models.denoiser, data.vocab, data.length))

    def fit(net, ckpt, digest):
        return run.fit(net, _denoiser_loss(run, net), data.source_train, cfg.training.source, "source denoiser", ckpt, digest)

    return run.component("source denoiser", key, build, fit)


def target_denoiser(run: Run, fraction: float) -> DenoiserNet:
    """Target-only denoiser: trained from scratch on the kept physics segments."""
    cfg = run.config
    key = {**_base_key(run), "stage": "target-denoiser", "fraction": fraction, "size": vars(cfg.models.denoiser),
           "budget": vars(cfg.training.target)}
    data = run.data
    name = f"target-only denoiser {fraction:g}"

    def build():
        return DenoiserNet(backbone(cfg.models.denoiser, data.vocab, data.length))

    def fit(net, ckpt, digest):
        return run.fit(net, _denoiser_loss(run, net), data.target_train[fraction], cfg.training.target, name, ckpt, digest)

    return run.component(name, key, build, fit)


def finetuned_denoiser(run: Run, fraction: float) -> DenoiserNet:
    """The source denoiser fine-tuned on the kept physics segments."""
    cfg = run.config
    source = source_denoiser(run) if "source denoiser" not in run.nets else run.nets["source denoiser"]
    key = {**_base_key(run), "stage": "finetuned-denoiser", "fraction": fraction, "init": run.keys["source denoiser"],
           "budget": vars(cfg.training.finetune)}
    data = run.data
    name = f"fine-tuned denoiser {fraction:g}"

    def build():
        net = DenoiserNet(source.config)
        net.load_state_dict(source.state_dict())
        return net

    def fit(net, ckpt, digest):
        return run.fit(net, _denoiser_loss(run, net), data.target_train[fraction], cfg.training.finetune, name, ckpt, digest)

    return run.component(name, key, build, fit)


def tcsm_denoiser(run: Run, fraction: float) -> TCSMNet:
    """TCSM-style post-training: logits = frozen source denoiser + correction(z), i.e.
    p(x^i|z) proportional to p_ref(x^i|z) exp(f(z)_{i,x}); the correction has the ratio network's
    size ``[models.ratio]`` and budget ``[training.ratio]``, a zero-initialised head (training starts
    at the source model) and is fitted on the kept physics segments with the MDLM loss."""
    cfg = run.config
    source = source_denoiser(run) if "source denoiser" not in run.nets else run.nets["source denoiser"]
    key = {**_base_key(run), "stage": "tcsm-correction", "fraction": fraction, "reference": run.keys["source denoiser"],
           "size": vars(cfg.models.ratio), "budget": vars(cfg.training.ratio)}
    data = run.data
    name = f"tcsm correction {fraction:g}"

    def build():
        return zero_correction(backbone(cfg.models.ratio, data.vocab, data.length))

    def fit(correction, ckpt, digest):
        model = TCSMNet(source, correction)
        return run.fit(model, _denoiser_loss(run, model), data.target_train[fraction], cfg.training.ratio, name, ckpt, digest)

    return TCSMNet(source, run.component(name, key, build, fit)).eval()


# ------------------------------------------------------------------ 4. classifiers
def _balanced(source: torch.Tensor, target: torch.Tensor, batch: int):
    half = max(batch // 2, 1)

    def draw(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        xs = source[torch.randint(len(source), (half,), generator=gen)]
        xt = target[torch.randint(len(target), (half,), generator=gen)]
        return xs, xt

    return draw


def clean_classifier(run: Run, fraction: float) -> SequenceNet:
    """P(source | x) on clean segments, balanced batches (so pi_s = pi_t in the ratio)."""
    cfg = run.config
    data = run.data
    budget = cfg.training.classifier
    key = {**_base_key(run), "stage": "clean-classifier", "fraction": fraction, "size": vars(cfg.models.classifier),
           "budget": vars(budget)}
    name = f"clean classifier {fraction:g}"
    draw = _balanced(data.source_train, data.target_train[fraction], budget.batch_size)

    def batch(gen):
        xs, xt = draw(gen)
        return torch.cat([xs, xt]), torch.cat([torch.ones(len(xs)), torch.zeros(len(xt))])

    def fit(net, ckpt, digest):
        fn = run.compiled(net)

        def loss(model, b, gen):
            with run.autocast():
                return classifier_loss(fn(b[0])[:, 0].float(), b[1])

        return run.fit(net, loss, batch, budget, name, ckpt, digest)

    return run.component(name, key, lambda: SequenceNet(backbone(cfg.models.classifier, data.vocab, data.length)), fit)


def noisy_classifier(run: Run, fraction: float) -> SequenceNet:
    """P(source | z_t[, t]) on masked segments of both domains (t ~ U[0, 1] per row)."""
    cfg = run.config
    data = run.data
    budget = cfg.training.noisy_classifier
    timed = cfg.ratio.time_conditioned_classifier
    # when it is the ratio itself, the noisy classifier has the ratio network's size
    size = cfg.models.ratio if cfg.ratio.estimator == "noisy-classifier" else cfg.models.classifier
    key = {**_base_key(run), "stage": "noisy-classifier", "fraction": fraction, "size": vars(size),
           "budget": vars(budget), "time": timed}
    name = f"noisy classifier {fraction:g}"
    draw = _balanced(data.source_train, data.target_train[fraction], budget.batch_size)
    mask_id = data.vocab.mask_id

    def fit(net, ckpt, digest):
        fn = run.compiled(net)

        def loss(model, b, gen):
            z, t, labels = noisy_classifier_batch(b[0], b[1], SCHEDULE, gen, mask_id=mask_id)
            with run.autocast():
                return classifier_loss(fn(z, t.float() if timed else None)[:, 0].float(), labels)

        return run.fit(net, loss, draw, budget, name, ckpt, digest)

    return run.component(name, key, lambda: SequenceNet(backbone(size, data.vocab, data.length, timed)), fit)


# ------------------------------------------------------------------ 5. ratio
def ratio_model(run: Run, fraction: float):
    """The ratio used by GTL at ``fraction`` (a SequenceRatio: z [, t] -> log r(z))."""
    cfg = run.config
    rc = cfg.ratio
    data = run.data
    noisy = noisy_classifier(run, fraction) if (rc.estimator == "noisy-classifier" or rc.cycle_weight > 0) else None
    if rc.estimator == "noisy-classifier":
        return ClassifierRatio(noisy, n_source=1, n_target=1)  # balanced batches: pi_s = pi_t
    clean = clean_classifier(run, fraction)
    budget = cfg.training.ratio
    key = {**_base_key(run), "stage": "ratio", "fraction": fraction, "size": vars(cfg.models.ratio), "budget": vars(budget),
           "space": rc.space, "cycle": rc.cycle_weight, "max_log_ratio": rc.max_log_ratio,
           "clean": run.keys[f"clean classifier {fraction:g}"],
           "noisy": run.keys.get(f"noisy classifier {fraction:g}") if noisy is not None else None}
    name = f"ratio network {fraction:g}"
    mask_id = data.vocab.mask_id
    source, target = data.source_train, data.target_train[fraction]

    def fit(net, ckpt, digest):
        # pseudo labels log r_0(x) of the clean source segments (prior-corrected, balanced training)
        labels = ClassifierRatio(clean, n_source=1, n_target=1)(source).float().cpu()
        tdc = ClassifierRatio(noisy, n_source=1, n_target=1) if (noisy is not None and rc.cycle_weight > 0) else None
        fn = run.compiled(net)
        half = max(budget.batch_size // 2, 1)

        def batch(gen):
            idx = torch.randint(len(source), (budget.batch_size,), generator=gen)
            xt = target[torch.randint(len(target), (half,), generator=gen)]
            return source[idx], labels[idx], xt

        def loss(model, b, gen):
            x, lab, xt = b
            t = sample_times(len(x), gen, 0.0, False, x.device)
            z = mask_tokens(x, t, SCHEDULE, mask_id, gen)
            with run.autocast():
                out = ratio_regression_loss(fn(z)[:, 0].float(), lab, rc.space, max_log_ratio=rc.max_log_ratio)
                if tdc is not None:
                    tt = sample_times(len(xt), gen, 0.0, False, xt.device)
                    zt = mask_tokens(xt, tt, SCHEDULE, mask_id, gen)
                    ref = tdc(zt, tt.float()).clamp(-rc.max_log_ratio, rc.max_log_ratio)
                    out = out + cycle_loss(fn(zt)[:, 0].float(), ref, rc.cycle_weight, rc.space)
            return out

        return run.fit(net, loss, batch, budget, name, ckpt, digest)

    net = run.component(name, key, lambda: SequenceNet(backbone(cfg.models.ratio, data.vocab, data.length)), fit)
    return NetworkRatio(net)


def ratio_network_name(run: Run, fraction: float) -> str:
    if run.config.ratio.estimator == "noisy-classifier":
        return f"noisy classifier {fraction:g}"
    return f"ratio network {fraction:g}"


# ------------------------------------------------------------------ 6. planner
def planner(run: Run) -> NetworkPlanner:
    """PositionNet trained on masked source segments to predict where the frozen source
    denoiser's arg-max is the clean token (reveal those first)."""
    cfg = run.config
    data = run.data
    src = run.nets.get("source denoiser") or source_denoiser(run)
    features = cfg.sampling.planner_log_prob_features
    budget = cfg.training.planner
    key = {**_base_key(run), "stage": "planner", "size": vars(cfg.models.planner), "budget": vars(budget),
           "denoiser": run.keys["source denoiser"], "features": features}
    mask_id = data.vocab.mask_id

    def fit(net, ckpt, digest):
        fn = run.compiled(net)
        src_fn = run.compiled(src)
        src.eval()

        def loss(model, x, gen):
            t = sample_times(len(x), gen, 1e-3, True, x.device)
            z = mask_tokens(x, t, SCHEDULE, mask_id, gen)
            with torch.no_grad(), run.autocast():
                lp = subs_log_probs(src_fn(z).float(), z, mask_id)
            targets = planner_targets(lp, x, z, mask_id)
            with run.autocast():
                scores = fn(z, None, lp) if features else fn(z)
            return planner_loss(scores.float(), targets, z == mask_id)

        return run.fit(net, loss, data.source_train, budget, "planner", ckpt, digest)

    net = run.component("planner", key, lambda: PositionNet(backbone(cfg.models.planner, data.vocab, data.length),
                                                            log_prob_features=features), fit)
    return NetworkPlanner(net)


# ------------------------------------------------------------------ 7. sampling
@dataclass
class SampleSet:
    method: str
    fraction: float
    tag: str
    tokens: torch.Tensor  # [N, L] model ids, on CPU
    cost: dict[str, float]


def _method_parts(run: Run, method: str, fraction: float):
    """(denoiser net, ratio or None, planner or None) of a method at a fraction."""
    if method == "source-only":
        return run.nets["source denoiser"], None, None
    if method == "target-only":
        return target_denoiser(run, fraction), None, None
    if method == "fine-tuned":
        return finetuned_denoiser(run, fraction), None, None
    if method == "tcsm":
        return tcsm_denoiser(run, fraction), None, None
    if method == "gtl":
        return run.nets["source denoiser"], ratio_model(run, fraction), None
    if method == "gtl-planner":
        return run.nets["source denoiser"], ratio_model(run, fraction), planner(run)
    raise ValueError(f"unknown method {method!r}")


def draw_samples(run: Run, method: str, fraction: float, *, samples: int | None = None, gamma: float | None = None,
                 candidates: int | None = None, tag: str = "main") -> SampleSet:
    """``samples`` sequences of ``method`` at ``fraction`` (cached under ``<run>/samples``)."""
    cfg = run.config.sampling
    data = run.data
    samples = samples or cfg.samples
    gamma = cfg.gamma if gamma is None else gamma
    candidates = min(cfg.candidates if candidates is None else candidates, data.vocab.size)
    net, ratio, plan = _method_parts(run, method, fraction)
    names = {"source-only": ["source denoiser"], "target-only": [f"target-only denoiser {fraction:g}"],
             "fine-tuned": [f"fine-tuned denoiser {fraction:g}"],
             "tcsm": ["source denoiser", f"tcsm correction {fraction:g}"],
             "gtl": ["source denoiser", ratio_network_name(run, fraction)],
             "gtl-planner": ["source denoiser", ratio_network_name(run, fraction), "planner"]}[method]
    guided = method in ("gtl", "gtl-planner")
    key = {"method": method, "fraction": fraction if method != "source-only" else None, "samples": samples,
           "components": [run.keys[n] for n in names], "steps": cfg.steps, "top_k": cfg.top_k, "batch": cfg.batch,
           "temperature": cfg.planner_temperature if method == "gtl-planner" else None,
           "gamma": gamma if guided else None, "candidates": candidates if guided else None, "seed": run.config.seed}
    digest = config_hash(key)[:16]
    path = run.root / "samples" / f"{_slug(method)}-{fraction:g}-{tag}-{digest}.pt"
    if path.is_file():
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return SampleSet(method, fraction, tag, payload["tokens"], dict(payload["cost"]))
    denoiser = NetworkDenoiser(net, data.vocab.mask_id)
    rule = GTL(candidates=candidates) if guided else Unguided()
    gen = torch.Generator(device=run.device).manual_seed(run.seed(f"samples/{method}/{fraction:g}/{tag}"))
    outs, totals = [], {}
    bar = tqdm(total=samples, desc=f"sampling {method} {fraction:g}", disable=not run.progress, leave=False)
    done = 0
    while done < samples:
        n = min(cfg.batch, samples - done)
        sc = SamplerConfig(num_samples=n, length=data.length, steps=cfg.steps, gamma=gamma if guided else 0.0, rule=rule,
                           top_k=cfg.top_k or None, temperature=cfg.planner_temperature, final_argmax=True)
        with run.autocast():
            res = (planner_sample(denoiser, ratio, plan, SCHEDULE, sc, gen) if method == "gtl-planner"
                   else ancestral_sample(denoiser, ratio if guided else None, SCHEDULE, sc, gen))
        outs.append(res.tokens.cpu())
        for k, v in res.cost().items():
            totals[k] = totals.get(k, 0) + v
        done += n
        bar.update(n)
    bar.close()
    tokens = torch.cat(outs)
    totals["samples"] = samples
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"tokens": tokens, "cost": totals, "key": _jsonable(key)}, tmp)
    tmp.replace(path)
    run.log(f"samples {method} {fraction:g} [{tag}]: {samples} in {totals['wall_time_s']:.1f}s")
    return SampleSet(method, fraction, tag, tokens, totals)


# ------------------------------------------------------------------ 8. evaluation
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


def make_evaluator(run: Run) -> Evaluator:
    cfg = run.config
    f_eval = cfg.evaluator_fraction
    classifier = clean_classifier(run, f_eval)
    evaluator = target_denoiser(run, f_eval)
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
                          "ref": e.run.data.hash, "cls": e.run.keys.get(f"clean classifier {e.run.config.evaluator_fraction:g}"),
                          "ev": e.run.keys.get(f"target-only denoiser {e.run.config.evaluator_fraction:g}")})[:16]
    path = e.run.root / "metrics" / f"{_slug(tag)}-{digest}.json"
    if path.is_file():
        return json.loads(path.read_text())
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
        out["perplexity"] = ev.generative_perplexity(e.evaluator, tokens, SCHEDULE, e.run.data.vocab.mask_id, gen,
                                                     cfg.perplexity_draws)
    atomic_write_text(path, json.dumps(out, indent=1, default=float))
    return out


# ------------------------------------------------------------------ 9. the whole pipeline
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
    for f in cfg.data.fractions:
        with run.stage("classifiers and ratio"):
            if f == cfg.evaluator_fraction:
                clean_classifier(run, f)
            if "gtl" in methods or "gtl-planner" in methods:
                ratio_model(run, f)
    if "gtl-planner" in methods:
        with run.stage("planner"):
            planner(run)


def run_pipeline(config: LanguageConfig, root: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every stage in ``root`` and return the ``language`` results dict."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if config.runtime.threads:
        torch.set_num_threads(config.runtime.threads)
    run = Run(config, root, progress, resolve_device(config.runtime.device))
    cfg = config
    with run.stage("data"):
        prepare_data(run)
    train_components(run)
    data = run.data

    # samples of every method
    sets: list[SampleSet] = []
    with run.stage("sampling"):
        for method in cfg.sampling.methods:
            for f in ([cfg.data.fractions[0]] if method == "source-only" else cfg.data.fractions):
                sets.append(draw_samples(run, method, f))
        abl: dict[str, list[tuple[Any, SampleSet]]] = {"gamma": [], "candidates": []}
        fa, na = cfg.sampling.ablation_fraction, cfg.sampling.ablation_samples
        for g in cfg.sampling.gamma_sweep:
            abl["gamma"].append((g, draw_samples(run, "gtl", fa, samples=na, gamma=g, tag=f"gamma-{g:g}")))
        for n in cfg.sampling.candidates_sweep:
            abl["candidates"].append((n, draw_samples(run, "gtl", fa, samples=na, candidates=n, tag=f"n-{n}")))

    with run.stage("evaluation"):
        run.log("evaluation: loading the MiniLM feature model")
        e = make_evaluator(run)
        evaluated = [(s, evaluate_samples(e, s.tokens, tag=f"{s.method}-{s.fraction:g}-{s.tag}"))
                     for s in tqdm(sets, desc="evaluating", disable=not progress, leave=False)]
        held = evaluate_samples(e, data.held_out_rows, tag="held-out-physics")
        floor_rows = torch.randperm(data.source_val.shape[0], generator=torch.Generator().manual_seed(run.seed("floor")))
        held_src = evaluate_samples(e, data.source_val[floor_rows[:cfg.sampling.samples]], perplexity=False, tag="held-out-cs")
        abl_rows = {k: [(x, s, evaluate_samples(e, s.tokens, distinct=False, perplexity=False,
                                                 tag=f"ablation-{s.tag}")) for x, s in v] for k, v in abl.items()}
        diagnostics = _diagnostics(run, e)

    results = _assemble(run, evaluated, held, held_src, abl_rows, diagnostics)
    run.log("done: " + ", ".join(f"{k} {v:.0f}s" for k, v in run.stage_seconds.items()))
    return results


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
        nats = mdlm_elbo_nats_per_token(net, rows[:n].to(run.device), SCHEDULE, mask_id, gen(), samples=1, batch_size=64)
        return {"nats_per_token": nats, "perplexity": math.exp(min(nats, 700.0))}

    out["source_denoiser_on_source_val"] = elbo(run.nets["source denoiser"], data.source_val)
    out["source_denoiser_on_target_val"] = elbo(run.nets["source denoiser"], data.target_val)
    for f in cfg.data.fractions:
        for name in (f"target-only denoiser {f:g}", f"fine-tuned denoiser {f:g}"):
            if name in run.nets:
                out[f"{name} on target_val"] = elbo(run.nets[name], data.target_val)
    if data.target_val.shape[0] and data.source_val.shape[0]:
        ps = ev.classifier_scores(e.classifier, data.source_val[:n])
        pt = ev.classifier_scores(e.classifier, data.target_val[:n])
        out["classifier_heldout_accuracy"] = 0.5 * ((100 - ps["pct_target"]) + pt["pct_target"]) / 100
    return _jsonable(out)


def _assemble(run: Run, evaluated, held, held_src, abl_rows, diagnostics) -> dict[str, Any]:
    cfg, data = run.config, run.data
    fractions = list(cfg.data.fractions)
    f_eval = cfg.evaluator_fraction
    evaluator = f"target-only denoiser ({f_eval * 100:g} % physics), MDLM ELBO perplexity"
    mauve, classifier, distinct, perplexity = [], [], [], []

    def add(method: str, frac: float, r: dict[str, Any], ranked: bool = True) -> None:
        for s, v in zip(r["seeds"], r["mauve"] if ranked else []):
            mauve.append({"method": method, "fraction": frac, "seed": s, "mauve": v, "buckets": r["mauve_guard"]["buckets"],
                          "meaningful": r["mauve_guard"]["meaningful"]})
        if "classifier" in r:
            classifier.append({"method": method, "fraction": frac, **r["classifier"]})
        for n, v in (r.get("distinct") or {}).items():
            distinct.append({"method": method, "fraction": frac, "n": int(n), "value": v})
        if "perplexity" in r:
            perplexity.append({"method": method, "fraction": frac, "value": r["perplexity"]["perplexity"],
                               "nats_per_token": r["perplexity"]["nats_per_token"], "evaluator": evaluator})

    examples = {}
    for s, r in evaluated:
        # source-only does not depend on the target share: one sample set, listed at every share
        for frac in (fractions if s.method == "source-only" else [s.fraction]):
            add(s.method, frac, r)
        examples[f"{s.method} {s.fraction:g}" if s.method != "source-only" else s.method] = r["example"]

    def held_out(name: str, r: dict[str, Any]) -> dict[str, Any]:
        # held-out segments against the reference at the methods' sample size: physics is the
        # ceiling, CS the floor (kept out of the MAUVE rows so that they are not ranked as methods)
        add(name, f_eval, r, ranked=False)
        examples[name] = r["example"]
        return {"method": name, "samples": r["mauve_guard"]["samples"], "seeds": r["seeds"], "mauve": r["mauve"],
                "mauve_mean": float(np.mean(r["mauve"])), "mauve_std": float(np.std(r["mauve"])),
                "buckets": r["mauve_guard"]["buckets"], "meaningful": r["mauve_guard"]["meaningful"]}

    reference, floor = held_out(HELD_OUT, held), held_out(HELD_OUT_SOURCE, held_src)

    timing: dict[str, dict[str, float]] = {}
    for s, _ in evaluated:
        t = timing.setdefault(s.method, {"seconds": 0.0, "samples": 0, "passes": 0})
        t["seconds"] += s.cost["wall_time_s"]
        t["samples"] += s.cost["samples"]
        t["passes"] += s.cost.get("ratio_passes", 0) + s.cost.get("single_site_passes", 0)
    dev = device_name()
    timing_rows = [{"method": m, "seconds_per_sequence": t["seconds"] / t["samples"],
                    "ratio_passes_per_sequence": t["passes"] / t["samples"], "device": dev} for m, t in timing.items()]

    def mean_mauve(r):
        return float(np.mean(r["mauve"]))

    def truncation(method: str, candidates: int | None) -> dict[str, Any]:
        return ev.method_truncation(method, cfg.sampling.top_k, candidates, data.vocab.size)

    ablations = {
        "fraction": cfg.sampling.ablation_fraction,
        "gamma": [{"gamma": float(x), "p_source": r.get("classifier", {}).get("p_source"), "mauve": mean_mauve(r),
                   "buckets": r["mauve_guard"]["buckets"], "meaningful": r["mauve_guard"]["meaningful"],
                   "truncation": truncation("gtl", cfg.sampling.candidates)["text"]} for x, _, r in abl_rows["gamma"]],
        "candidates": [{"n": int(x), "p_source": r.get("classifier", {}).get("p_source"), "mauve": mean_mauve(r),
                        "buckets": r["mauve_guard"]["buckets"], "meaningful": r["mauve_guard"]["meaningful"],
                        "truncation": truncation("gtl", int(x))["text"]} for x, _, r in abl_rows["candidates"]],
    }
    guards = [(f"{s.method} {s.fraction:g} [{s.tag}]", r) for s, r in evaluated]
    guards += [(f"ablation {s.tag}", r) for rows in abl_rows.values() for _, s, r in rows]
    guards += [(HELD_OUT, held), (HELD_OUT_SOURCE, held_src)]
    den = run.components.get("source denoiser", {}).get("parameters")
    ratio_name = ratio_network_name(run, f_eval)
    rat = run.components.get(ratio_name, {}).get("parameters")
    return _jsonable({
        "config": cfg.to_dict(),
        "data": data.summary,
        "vocabulary": data.vocab.to_dict(),
        "mauve_features": ev.MAUVE_DESCRIPTION,
        "mauve_note": "seeds are MAUVE k-means seeds on one sample set per method and target share",
        "perplexity_evaluator": (f"{evaluator}: exp of the negative ELBO (nats/token) of the samples under the denoiser "
                                 f"trained here on {f_eval * 100:g} % of the physics segments (an upper bound on its "
                                 "perplexity); the target-only samples at that share are scored by their own generator"),
        "classifier_evaluator": f"clean classifier trained here on CS vs {f_eval * 100:g} % of the physics segments "
                                "(balanced batches); P(source) < 1/2 counts as target",
        "reference_mauve": reference,
        "floor_mauve": floor,
        "mauve_guard": ev.guard_report([(name, r["mauve_guard"]) for name, r in guards]),
        "truncation": [truncation(m, cfg.sampling.candidates if m in GUIDED_METHODS else None) for m in cfg.sampling.methods],
        "mauve": mauve, "classifier": classifier, "distinct": distinct, "perplexity": perplexity,
        "ablations": ablations, "timing": timing_rows,
        "components": run.components,
        "parameters": {"denoiser": den, "ratio": rat, "ratio_network": ratio_name,
                       "ratio_share_of_denoiser": parameter_share(rat, den) if rat and den else None,
                       "paper_ratio_share": 4.1 / 59.8},
        "diagnostics": diagnostics,
        "examples": examples,
        "stage_seconds": run.stage_seconds,
        "trained_this_run": run.trained,
    })


def run(config: LanguageConfig, out: str | Path, progress: bool = True) -> tuple[Path, Path]:
    """Run the pipeline in ``out`` and write ``out/results.json`` (kind ``language``) and the
    Markdown report ``out/results.md`` (figures under ``out/figures``)."""
    from reports.builder import build_report

    start = time.perf_counter()
    results = run_pipeline(config, out, progress)
    meta = provenance(config.to_dict(), [config.seed], time.perf_counter() - start)
    path = write_results(Path(out) / "results.json", "language", results, meta)
    report = build_report(path, out)
    return path, report


def mauve_table(results: dict[str, Any]) -> str:
    """Plain-text MAUVE table (mean ± std over seeds, k-means buckets k) of a results dict, methods x target share."""
    from collections import defaultdict

    vals: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for r in results["mauve"]:
        vals[(r["method"], r["fraction"])].append(r)
    methods = list(dict.fromkeys(r["method"] for r in results["mauve"]))
    fractions = sorted({r["fraction"] for r in results["mauve"]}, reverse=True)
    width = 40 if not results["mauve_guard"]["all_meaningful"] else 24
    lines = [f"{'target data':>12s}" + "".join(f"{m:>{width}s}" for m in methods)]
    for f in fractions:
        cells = []
        for m in methods:
            rows = vals.get((m, f))
            v = [r["mauve"] for r in rows or []]
            cells.append(ev.mauve_text(np.mean(v), np.std(v), rows[0]["buckets"], rows[0]["meaningful"]).rjust(width)
                         if rows else f"{'-':>{width}s}")
        lines.append(f"{f * 100:>10g} %" + "".join(cells))
    return "\n".join(lines)


__all__ = [
    "HELD_OUT",
    "PreparedData",
    "Run",
    "SCHEDULE",
    "SampleSet",
    "Vocabulary",
    "clean_classifier",
    "draw_samples",
    "evaluate_samples",
    "finetuned_denoiser",
    "make_evaluator",
    "mauve_table",
    "noisy_classifier",
    "planner",
    "prepare_data",
    "ratio_model",
    "resolve_device",
    "run",
    "run_pipeline",
    "source_denoiser",
    "target_denoiser",
    "train_components",
]
