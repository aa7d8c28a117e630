"""Source/target chain pairs of the synthetic benchmark (paper section 4.1 and the reference code).

Matrices:
- diagonal(K, d):      S(u, u) = d, S(u, v) = (1 - d)/(K - 1) for v != u.
- anti-diagonal(K, d): S(u, K-1-u) = d, S(u, v) = (1 - d)/(K - 1) otherwise.
- dirichlet(K, alpha): rows drawn i.i.d. from Dirichlet(alpha, ..., alpha).

Presets (``make_pair``); the first token is uniform in all of them:
- ``paper``:         K = 5, source diagonal d = 0.1, target diagonal d = 0.8 (fixed).
- ``diagonal``:      source diagonal(K, source_d), target diagonal(K, target_d).
- ``anti-diagonal``: source anti-diagonal(K, source_d), target diagonal(K, target_d).
- ``dirichlet``:     source and target rows Dirichlet(alpha), drawn from ``seed``.
- ``no-overlap``:    K' = K + E tokens (E = ``extra_tokens``, 0 read as 1). The source lives on the
                     first K tokens (diagonal(K, source_d), zero mass on the extra ones; its rows for
                     the extra tokens are uniform over the shared ones); the target is
                     diagonal(K', target_d) and emits the extra tokens, so supp q is NOT within
                     supp p: the failure case of ratio guidance.
Except for ``paper`` (which refuses an overlap other than 0), ``overlap`` in [0, 1] mixes the source
towards the target: S_source <- (1 - overlap) S_source + overlap S_target (and the same for the
initial laws), so overlap = 1 makes the two chains identical; on ``no-overlap`` it is the share of
mass the source puts where only the target went (the benchmark's overlap sweep).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from gtl_verify.validation import check_int_range, check_real_range

from .chain import DTYPE, MarkovChain

PRESETS = ("paper", "diagonal", "anti-diagonal", "dirichlet", "no-overlap")


@dataclass
class ChainPair:
    """A source chain p, a target chain q on the same vocabulary, and the preset's name."""

    source: MarkovChain
    target: MarkovChain
    name: str

    def __post_init__(self) -> None:
        if self.source.vocab_size != self.target.vocab_size:
            raise ValueError(
                f"target must have the source's vocab_size {self.source.vocab_size}, got {self.target.vocab_size}"
            )

    @property
    def vocab_size(self) -> int:
        return self.source.vocab_size


def diagonal_matrix(vocab_size: int, d: float) -> torch.Tensor:
    """S(u, u) = d, S(u, v) = (1 - d)/(K - 1) off the diagonal; [K, K] float64."""
    k = check_int_range("vocab_size", vocab_size, 2)
    d = check_real_range("d", d, 0.0, 1.0)
    eye = torch.eye(k, dtype=DTYPE)
    return d * eye + (1.0 - d) / (k - 1) * (1.0 - eye)


def anti_diagonal_matrix(vocab_size: int, d: float) -> torch.Tensor:
    """S(u, K-1-u) = d, S(u, v) = (1 - d)/(K - 1) otherwise; [K, K] float64."""
    k = check_int_range("vocab_size", vocab_size, 2)
    d = check_real_range("d", d, 0.0, 1.0)
    flip = torch.eye(k, dtype=DTYPE).flip(1)
    return d * flip + (1.0 - d) / (k - 1) * (1.0 - flip)


def dirichlet_matrix(vocab_size: int, alpha: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """K rows drawn i.i.d. from Dirichlet(alpha * 1_K); [K, K] float64.

    The draws use a NumPy generator seeded from one 62-bit integer taken from ``generator``, so the
    result is a deterministic function of the torch generator's state.
    """
    k = check_int_range("vocab_size", vocab_size, 1)
    alpha = check_real_range("alpha", alpha, 0.0, open_low=True)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    rows = np.random.default_rng(seed).dirichlet(np.full(k, alpha), size=k)
    out = torch.as_tensor(rows, dtype=DTYPE)
    total = out.sum(-1, keepdim=True)
    # Dirichlet draws with a tiny alpha can underflow to an all-zero row: put its mass on one token
    bad = ~(total > 0)
    if bad.any():
        out[bad[:, 0]] = torch.nn.functional.one_hot(
            torch.randint(0, k, (int(bad.sum()),), generator=generator), k
        ).to(DTYPE)
        total = out.sum(-1, keepdim=True)
    return out / total


def _uniform(k: int) -> torch.Tensor:
    return torch.full((k,), 1.0 / k, dtype=DTYPE)


def make_pair(
    name: str,
    *,
    vocab_size: int = 5,
    source_d: float = 0.1,
    target_d: float = 0.8,
    alpha: float = 1.0,
    extra_tokens: int = 0,
    overlap: float = 0.0,
    seed: int = 0,
) -> ChainPair:
    """Build the source/target pair named ``name`` (one of :data:`PRESETS`); see the module docstring."""
    if name not in PRESETS:
        raise ValueError(f"name must be one of {list(PRESETS)}, got {name!r}")
    seed = check_int_range("seed", seed, 0)
    if name == "paper":
        if check_real_range("overlap", overlap, 0.0, 1.0) != 0:  # ignored silently, it swept nothing
            raise ValueError(f"overlap does not apply to the fixed paper preset, got {overlap}; use preset diagonal "
                             f"(the same chains at its defaults) or no-overlap (the support-overlap failure case)")
        return ChainPair(
            MarkovChain(_uniform(5), diagonal_matrix(5, 0.1)),
            MarkovChain(_uniform(5), diagonal_matrix(5, 0.8)),
            name,
        )
    k = check_int_range("vocab_size", vocab_size, 2)
    source_d = check_real_range("source_d", source_d, 0.0, 1.0)
    target_d = check_real_range("target_d", target_d, 0.0, 1.0)
    overlap = check_real_range("overlap", overlap, 0.0, 1.0)
    extra_tokens = check_int_range("extra_tokens", extra_tokens, 0)

    if name == "diagonal":
        src_pi, src_s = _uniform(k), diagonal_matrix(k, source_d)
        tgt_pi, tgt_s = _uniform(k), diagonal_matrix(k, target_d)
    elif name == "anti-diagonal":
        src_pi, src_s = _uniform(k), anti_diagonal_matrix(k, source_d)
        tgt_pi, tgt_s = _uniform(k), diagonal_matrix(k, target_d)
    elif name == "dirichlet":
        alpha = check_real_range("alpha", alpha, 0.0, open_low=True)
        g = torch.Generator().manual_seed(seed)
        src_pi, src_s = _uniform(k), dirichlet_matrix(k, alpha, g)
        tgt_pi, tgt_s = _uniform(k), dirichlet_matrix(k, alpha, g)
    else:  # no-overlap
        extra = max(extra_tokens, 1)
        full = k + extra
        src_s = torch.zeros(full, full, dtype=DTYPE)
        src_s[:k, :k] = diagonal_matrix(k, source_d)
        src_s[k:, :k] = 1.0 / k
        src_pi = torch.zeros(full, dtype=DTYPE)
        src_pi[:k] = 1.0 / k
        tgt_pi, tgt_s = _uniform(full), diagonal_matrix(full, target_d)

    src_pi = (1.0 - overlap) * src_pi + overlap * tgt_pi
    src_s = (1.0 - overlap) * src_s + overlap * tgt_s
    return ChainPair(MarkovChain(src_pi, src_s), MarkovChain(tgt_pi, tgt_s), name)


CHAIN_FILE_SUFFIXES = (".toml", ".npz")


def is_chain_file(name: str) -> bool:
    """True when ``name`` is a path to a chain file (.toml or .npz) rather than a preset name."""
    return str(name).endswith(CHAIN_FILE_SUFFIXES)


def resolve_pair(name: str, *, seed: int = 0, overlap: float = 0.0) -> ChainPair:
    """A preset by name (:func:`make_pair` with ``seed`` and ``overlap``) or a first-order chain pair read
    from a chain file (:func:`markov.chain_file.load_chain_pair`; ``seed`` does not apply, ``overlap``
    mixes the source towards the target as for the presets). Raises ValueError naming the file when it
    holds hidden Markov models (the benchmark's metrics need first-order chains)."""
    if not is_chain_file(name):
        return make_pair(name, seed=seed, overlap=overlap) if overlap else make_pair(name, seed=seed)
    from .chain_file import load_chain_pair

    pair = load_chain_pair(name)
    if not isinstance(pair, ChainPair):
        raise ValueError(f"{name}: holds hidden Markov models (emission matrices); gtl markov needs first-order "
                         "chains; use the file with gtl_verify.testing instead")
    overlap = check_real_range("overlap", overlap, 0.0, 1.0)
    if overlap == 0:
        return pair
    mix = lambda a, b: (1.0 - overlap) * a + overlap * b  # noqa: E731
    source = MarkovChain(mix(pair.source.initial, pair.target.initial), mix(pair.source.transition, pair.target.transition))
    return ChainPair(source, pair.target, pair.name)


def content_digest(pair) -> str:
    """SHA-256 (first 16 hex digits) of a pair's validated float64 laws: for the source then the target,
    each of ``initial``, ``transition`` and (hidden Markov models) ``emission`` with its shape. The
    display name is not part of it, so one content under any file name or path has one digest."""
    import hashlib

    digest = hashlib.sha256()
    for side in ("source", "target"):
        for field in ("initial", "transition", "emission"):
            value = getattr(getattr(pair, side), field, None)
            if value is None:
                continue
            array = np.ascontiguousarray(value.detach().cpu().to(torch.float64).numpy())
            digest.update(f"{side}.{field}{array.shape};".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def pair_identity(name: str) -> str:
    """What determines the pair called ``name`` (the key of every cache and store entry built on it):
    the preset name, or for a chain file the :func:`content_digest` of its validated laws. Neither the
    path as typed nor the file's name enters, so copies of one content share results and a changed
    matrix never reuses them. Raises ChainFileError for a bad file."""
    if not is_chain_file(name):
        return name
    from .chain_file import load_chain_pair

    return f"chain file sha256 {content_digest(load_chain_pair(name))}"


def pair_name(name: str) -> str:
    """The name to show for the pair called ``name``: the preset name, or for a chain file the file's
    ``name`` (default: its stem, see :mod:`markov.chain_file`). Raises ChainFileError for a bad file."""
    if not is_chain_file(name):
        return name
    from .chain_file import load_chain_pair

    return load_chain_pair(name).name


def slugify(text: str) -> str:
    """``text`` as a file or folder name: every run of characters other than letters, digits, ``.``,
    ``_`` and ``-`` becomes ``-`` (``"my pair / v2"`` -> ``"my-pair-v2"``); ``"pair"`` when nothing is left."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-.") or "pair"
