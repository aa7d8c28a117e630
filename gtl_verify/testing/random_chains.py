"""Seeded random source/target chain pairs of the kinds real chains have (no hypothesis needed).

Kinds (:data:`CHAIN_KINDS`), each a :class:`markov.presets.ChainPair` on K tokens:

- ``random``: every row of both chains Dirichlet(a), a drawn from {0.3, 1, 5};
- ``sparse``: like ``random`` with about 35 % exact zeros; the source vanishes only where the target does;
- ``banded``: S(u, v) > 0 only for cyclic |u - v| <= w (exact zeros outside), the target's band
  inside the source's, first-token laws with zeros as well;
- ``near-deterministic``: one dominant entry per row, the others 1e-13 .. 1e-9;
- ``target-only``: the source never emits the last E >= 1 tokens (zero first-token mass and zero
  columns), the target emits every token: supp q is not within supp p, so the ratio is +inf there.

All but ``target-only`` satisfy supp q within supp p (:data:`ABSOLUTELY_CONTINUOUS_KINDS`), the
condition under which guidance with exact components reproduces the target exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from markov.chain import MarkovChain
from markov.presets import ChainPair

CHAIN_KINDS = ("random", "sparse", "banded", "near-deterministic", "target-only")
ABSOLUTELY_CONTINUOUS_KINDS = ("random", "sparse", "banded", "near-deterministic")


def _normalise(rows: np.ndarray) -> np.ndarray:
    return rows / rows.sum(-1, keepdims=True)


def _dirichlet(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.dirichlet(np.full(k, rng.choice([0.3, 1.0, 5.0])), size=n)


def _near_deterministic(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    rows = 10.0 ** rng.uniform(-13, -9, size=(n, k))
    rows[np.arange(n), rng.integers(0, k, size=n)] = 1.0
    return _normalise(rows)


def _zeros(rng: np.random.Generator, n: int, k: int, density: float) -> np.ndarray:
    """[n, k] bool with about ``density`` True, never a whole row."""
    zero = rng.random((n, k)) < density
    zero[np.arange(n), rng.integers(0, k, size=n)] = False
    return zero


def _chain(initial: np.ndarray, transition: np.ndarray) -> MarkovChain:
    return MarkovChain(torch.tensor(_normalise(initial)), torch.tensor(_normalise(transition)))


def _nested_zeros(rng: np.random.Generator, k: int, target_zero: tuple[np.ndarray, np.ndarray], kind_rows):
    """(source, target) chains whose source zeros are a random subset of the target's."""
    zq_init, zq = target_zero
    zp_init, zp = zq_init & (rng.random(zq_init.shape) < 0.5), zq & (rng.random(zq.shape) < 0.5)
    target = _chain(np.where(zq_init, 0.0, kind_rows(rng, 1, k))[0], np.where(zq, 0.0, kind_rows(rng, k, k)))
    source = _chain(np.where(zp_init, 0.0, kind_rows(rng, 1, k))[0], np.where(zp, 0.0, kind_rows(rng, k, k)))
    return source, target


def _band(k: int, width: int) -> np.ndarray:
    """[k, k] bool: True outside the cyclic band |u - v| <= width."""
    d = np.abs(np.arange(k)[:, None] - np.arange(k)[None, :])
    return np.minimum(d, k - d) > width


def random_chain_pair(seed: int, vocab_size: int, kind: str = "random") -> ChainPair:
    """A seeded random pair of ``kind`` (see :data:`CHAIN_KINDS`) on ``vocab_size`` >= 2 tokens; the
    same (seed, vocab_size, kind) always gives the same pair."""
    if kind not in CHAIN_KINDS:
        raise ValueError(f"kind must be one of {list(CHAIN_KINDS)}, got {kind!r}")
    k = int(vocab_size)
    if k < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    rng = np.random.default_rng(seed)
    if kind == "random":
        source, target = _nested_zeros(rng, k, (np.zeros((1, k), bool), np.zeros((k, k), bool)), _dirichlet)
    elif kind == "sparse":
        source, target = _nested_zeros(rng, k, (_zeros(rng, 1, k, 0.35), _zeros(rng, k, k, 0.35)), _dirichlet)
    elif kind == "banded":
        width = int(rng.integers(0, k // 2 + 1))
        zq = _band(k, width) | (_band(k, 0) & (rng.random((k, k)) < 0.3))  # the target may drop more
        source, target = _nested_zeros(rng, k, (_zeros(rng, 1, k, 0.5), zq), _dirichlet)
        source = _chain(source.initial.numpy(), np.where(_band(k, width), 0.0, source.transition.numpy()))
    elif kind == "near-deterministic":
        source, target = _nested_zeros(rng, k, (np.zeros((1, k), bool), np.zeros((k, k), bool)), _near_deterministic)
    else:  # target-only
        extra = int(rng.integers(1, k)) if k > 2 else 1
        shared = k - extra
        target = _chain(_dirichlet(rng, 1, k)[0], _dirichlet(rng, k, k))
        init, trans = _dirichlet(rng, 1, k)[0], _dirichlet(rng, k, k)
        init[shared:], trans[:, shared:] = 0.0, 0.0
        source = _chain(init, trans)
    return ChainPair(source, target, f"{kind} (seed {seed}, K={k})")
