"""Theorem 1, R1 and R4 in exact rational arithmetic (``fractions.Fraction``) on tiny cases.

An implementation independent of the float64 code: per-token kernels as lists of Fractions,
sequences enumerated with itertools. Every residual is an exact rational number and must be 0.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Sequence

import torch

Kernel = list[list[Fraction]]


def masked_kernel(vocab_size: int, keep: Fraction) -> Kernel:
    """Per-token absorbing kernel: keep with probability ``keep``, else go to the mask state K."""
    k = vocab_size
    rows = [[Fraction(0)] * (k + 1) for _ in range(k + 1)]
    for a in range(k):
        rows[a][a] = keep
        rows[a][k] = 1 - keep
    rows[k][k] = Fraction(1)
    return rows


def uniform_kernel(vocab_size: int, keep: Fraction) -> Kernel:
    """Per-token uniform kernel keep * I + (1 - keep) J / K."""
    k = vocab_size
    return [[keep * (a == b) + (1 - keep) / k for b in range(k)] for a in range(k)]


def random_rational_law(size: int, gen: torch.Generator, denominator: int = 97) -> list[Fraction]:
    """A strictly positive rational law with integer weights in 1..denominator."""
    w = [int(v) + 1 for v in torch.randint(denominator, (size,), generator=gen)]
    total = sum(w)
    return [Fraction(v, total) for v in w]


def _seq_kernel(kernel: Kernel, a: Sequence[int], b: Sequence[int]) -> Fraction:
    out = Fraction(1)
    for u, v in zip(a, b):
        out *= kernel[u][v]
        if out == 0:
            break
    return out


class RationalOracle:
    """Exact marginals, ratios and reverse kernels for laws p, q given as Fractions over K^L."""

    def __init__(self, p: list[Fraction], q: list[Fraction], vocab_size: int, length: int, num_states: int) -> None:
        if sum(p) != 1 or sum(q) != 1:
            raise ValueError("p and q must sum to exactly 1")
        self.k, self.length, self.states = vocab_size, length, num_states
        self.clean = list(itertools.product(range(vocab_size), repeat=length))
        self.noisy = list(itertools.product(range(num_states), repeat=length))
        self.p = dict(zip(self.clean, p))
        self.q = dict(zip(self.clean, q))

    def marginal(self, law: dict, kernel_0t: Kernel | None) -> dict:
        """law_t(z) = sum_x law(x) Q_{t|0}(x, z) (kernel None: time 0)."""
        if kernel_0t is None:
            return {z: law.get(z, Fraction(0)) for z in self.noisy}
        return {z: sum((law[x] * _seq_kernel(kernel_0t, x, z) for x in self.clean), Fraction(0)) for z in self.noisy}

    def theorem1_residual(self, kernel_0s: Kernel | None, kernel_0t: Kernel, kernel_st: Kernel) -> Fraction:
        """max |q(z_s|z_t) - p(z_s|z_t) r_s(z_s) / sum_{z'} p(z'|z_t) r_s(z')| over z_t with q_t > 0, where
        law(z_s|z_t) = law_s(z_s) Q_{t|s}(z_s, z_t) / law_t(z_t) (Bayes with the shared kernel).
        Exactly 0 by Theorem 1 when Q_{t|0} = Q_{s|0} Q_{t|s}; the normaliser is then r_t(z_t)."""
        ps, qs = self.marginal(self.p, kernel_0s), self.marginal(self.q, kernel_0s)
        pt, qt = self.marginal(self.p, kernel_0t), self.marginal(self.q, kernel_0t)
        worst = Fraction(0)
        for zt in self.noisy:
            if qt[zt] == 0:
                continue
            kst = {zs: _seq_kernel(kernel_st, zs, zt) for zs in self.noisy}
            weights = {zs: ps[zs] * kst[zs] / pt[zt] * (qs[zs] / ps[zs]) for zs in self.noisy if ps[zs]}
            norm = sum(weights.values(), Fraction(0))
            for zs in self.noisy:
                exact = qs[zs] * kst[zs] / qt[zt]
                worst = max(worst, abs(exact - weights.get(zs, Fraction(0)) / norm))
        return worst

    def r1_residual(self, kernel_a: Kernel, kernel_b: Kernel) -> Fraction:
        """max |r_a(z) - r_b(z)| over z with positive source mass at both times (0 for masking)."""
        pa, qa = self.marginal(self.p, kernel_a), self.marginal(self.q, kernel_a)
        pb, qb = self.marginal(self.p, kernel_b), self.marginal(self.q, kernel_b)
        return max(abs(qa[z] / pa[z] - qb[z] / pb[z]) for z in self.noisy if pa[z] and pb[z])

    def r4_residual(self, kernel_0t: Kernel) -> Fraction:
        """max |sum_v p(x^i=v|z) r(z^{i<-v}) - r(z)| over masked i (masked process only)."""
        mask = self.k
        pt, qt = self.marginal(self.p, kernel_0t), self.marginal(self.q, kernel_0t)
        worst = Fraction(0)
        for z in self.noisy:
            if not pt[z]:
                continue
            # P_obs(z) and p(x^i = v | z) from the clean law directly
            agree = [x for x in self.clean if all(zi == mask or zi == xi for zi, xi in zip(z, x))]
            p_obs = sum(self.p[x] for x in agree)
            for i in (j for j, zi in enumerate(z) if zi == mask):
                total = Fraction(0)
                for v in range(self.k):
                    zv = z[:i] + (v,) + z[i + 1 :]
                    pv = sum(self.p[x] for x in agree if x[i] == v) / p_obs
                    if pv:
                        total += pv * qt[zv] / pt[zv]
                worst = max(worst, abs(total - qt[z] / pt[z]))
        return worst


def rational_case(gen: torch.Generator, process: str) -> tuple[Fraction, Fraction, Fraction]:
    """Theorem-1, R1 (masked: 0; uniform: > 0) and R4 residuals on a random K = 2, L = 2 problem
    with rational schedule values alpha_s > alpha_t drawn from multiples of 1/12."""
    k, length = 2, 2
    cuts = sorted(int(v) for v in torch.randperm(11, generator=gen)[:2] + 1)
    alpha_t, alpha_s = Fraction(cuts[0], 12), Fraction(cuts[1], 12)
    p = random_rational_law(k**length, gen)
    q = random_rational_law(k**length, gen)
    make = masked_kernel if process == "masked" else uniform_kernel
    states = k + 1 if process == "masked" else k
    oracle = RationalOracle(p, q, k, length, states)
    k0s, k0t, kst = make(k, alpha_s), make(k, alpha_t), make(k, alpha_t / alpha_s)
    theorem = oracle.theorem1_residual(k0s, k0t, kst)
    r1 = oracle.r1_residual(k0s, k0t)
    r4 = oracle.r4_residual(k0t) if process == "masked" else Fraction(0)
    return theorem, r1, r4
