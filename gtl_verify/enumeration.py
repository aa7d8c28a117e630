"""Exact enumeration oracle for a pair of joint laws p (source) and q (target) on {0..K-1}^L.

Everything is computed in float64 by brute force over all sequences, so it is the ground truth
that the faster oracles (forward-backward) and the samplers are checked against.

Clean laws are tables of shape [K^L] (row-major, see :func:`gtl_verify.forward.enumerate_sequences`)
or [K] * L. With the sequence kernel Q_{t|0} of a forward process (states S = K+1 masked, K uniform):

    p_t(z)         = sum_x p(x) Q_{t|0}(x, z)
    p(x | z_t)     = p(x) Q_{t|0}(x, z) / p_t(z)
    p(z_s | z_t)   = p_s(z_s) Q_{t|s}(z_s, z_t) / p_t(z_t)
    r_t(z)         = q_t(z) / p_t(z)
    E[r_0 | z_t]   = sum_x p(x | z_t) q(x)/p(x)

States z with p_t(z) = 0 get NaN in conditional quantities (they are never visited).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

from .forward import DTYPE, ForwardProcess, enumerate_sequences, sequence_index
from .validation import check_int_range, check_probability

MAX_STATES = 2_000_000


def _as_table(name: str, law: torch.Tensor, vocab_size: int, length: int) -> torch.Tensor:
    law = torch.as_tensor(law, dtype=DTYPE)
    if law.dim() != 1:
        if tuple(law.shape) != (vocab_size,) * length:
            raise ValueError(f"{name} must have shape ({vocab_size}**{length},) or {(vocab_size,) * length}, got {tuple(law.shape)}")
        law = law.reshape(-1)
    if law.numel() != vocab_size**length:
        raise ValueError(f"{name} must have {vocab_size}**{length} = {vocab_size**length} entries, got {law.numel()}")
    check_probability(name, law)
    return law


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den with NaN where den == 0 (broadcasting)."""
    return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), torch.nan)


@dataclass(frozen=True)
class LawPair:
    """Source and target clean laws as flat float64 tables over K^L sequences."""

    p: torch.Tensor
    q: torch.Tensor
    vocab_size: int
    length: int

    @staticmethod
    def from_tables(p, q, vocab_size: int, length: int) -> "LawPair":
        check_int_range("vocab_size", vocab_size, 1)
        check_int_range("length", length, 1)
        if vocab_size**length > MAX_STATES:
            raise ValueError(f"vocab_size**length must be <= {MAX_STATES} for enumeration, got {vocab_size}**{length}")
        return LawPair(_as_table("p", p, vocab_size, length), _as_table("q", q, vocab_size, length), vocab_size, length)

    @property
    def clean_ratio(self) -> torch.Tensor:
        """r_0(x) = q(x)/p(x); NaN where p(x) = 0. Requires supp q within supp p."""
        if ((self.p == 0) & (self.q > 0)).any():
            raise ValueError("q must be absolutely continuous w.r.t. p (supp q within supp p)")
        return _safe_div(self.q, self.p)


class EnumerationOracle:
    """Exact noisy marginals, posteriors, reverse kernels and ratios by enumeration.

    Sequence state spaces: clean [K^L], noisy [S^L] with S = ``process.num_states``.
    ``which`` selects the law: ``"p"`` (source) or ``"q"`` (target).
    """

    def __init__(self, laws: LawPair, process: ForwardProcess) -> None:
        if process.vocab_size != laws.vocab_size:
            raise ValueError(
                f"process.vocab_size ({process.vocab_size}) must equal the laws' vocab_size ({laws.vocab_size})"
            )
        n_noisy = process.num_states**laws.length
        if n_noisy > 20_000:
            raise ValueError(f"num_states**length = {n_noisy} is too large for dense enumeration (max 20000)")
        self.laws, self.process = laws, process
        self.vocab_size, self.length, self.num_states = laws.vocab_size, laws.length, process.num_states
        self.clean = enumerate_sequences(self.vocab_size, self.length)
        self.noisy = enumerate_sequences(self.num_states, self.length)
        # clean sequence -> its index among the noisy states (identical tokens)
        self.clean_in_noisy = sequence_index(self.clean, self.num_states)

    def law(self, which: str) -> torch.Tensor:
        if which == "p":
            return self.laws.p
        if which == "q":
            return self.laws.q
        raise ValueError(f"which must be 'p' or 'q', got {which!r}")

    def _kernel_from_clean(self, t: float) -> torch.Tensor:
        """Q_{t|0}(x, z) for clean x [K^L] and noisy z [S^L]."""
        return self.process.sequence_marginal(t, self.length)[self.clean_in_noisy]

    def noisy_marginal(self, t: float, which: str = "p") -> torch.Tensor:
        """p_t(z) over the noisy states [S^L]."""
        return self.law(which) @ self._kernel_from_clean(t)

    def clean_posterior(self, t: float, which: str = "p") -> torch.Tensor:
        """p(x | z_t = z) as [S^L, K^L] (rows: z; NaN rows where p_t(z) = 0)."""
        joint = self.law(which)[:, None] * self._kernel_from_clean(t)  # [K^L, S^L]
        return _safe_div(joint, joint.sum(0, keepdim=True)).T

    def denoiser_marginals(self, t: float, which: str = "p") -> torch.Tensor:
        """p(x^i = v | z_t = z) as [S^L, L, K]."""
        post = self.clean_posterior(t, which)
        onehot = torch.nn.functional.one_hot(self.clean, self.vocab_size).to(DTYPE)  # [K^L, L, K]
        return torch.einsum("zx,xlk->zlk", post, onehot)

    def reverse_kernel(self, s: float, t: float, which: str = "p") -> torch.Tensor:
        """p(z_s | z_t) as [S^L (z_t), S^L (z_s)]; NaN rows where p_t(z_t) = 0."""
        ps = self.noisy_marginal(s, which) if s > 0 else self._clean_as_noisy(which)
        pt = self.noisy_marginal(t, which)
        kernel = self.process.sequence_transition(s, t, self.length)  # [z_s, z_t]
        return _safe_div(ps[:, None] * kernel, pt[None, :]).T

    def _clean_as_noisy(self, which: str) -> torch.Tensor:
        out = torch.zeros(self.num_states**self.length, dtype=DTYPE)
        out[self.clean_in_noisy] = self.law(which)
        return out

    def ratio(self, t: float) -> torch.Tensor:
        """r_t(z) = q_t(z) / p_t(z) over noisy states; NaN where p_t(z) = 0."""
        return _safe_div(self.noisy_marginal(t, "q"), self.noisy_marginal(t, "p"))

    def expected_clean_ratio(self, t: float) -> torch.Tensor:
        """E_{p(x | z_t = z)}[r_0(x)] over noisy states (equals r_t(z) by R2)."""
        post = self.clean_posterior(t, "p")
        r0 = torch.nan_to_num(self.laws.clean_ratio, nan=0.0)
        return post @ r0

    def expected_log_clean_ratio(self, t: float) -> torch.Tensor:
        """E_{p(x | z_t = z)}[log r_0(x)]; -inf where some x with p(x|z) > 0 has q(x) = 0."""
        post = self.clean_posterior(t, "p")
        r0 = self.laws.clean_ratio
        log_r0 = torch.where(self.laws.p > 0, torch.log(torch.nan_to_num(r0, nan=1.0)), 0.0)
        terms = torch.where(post > 0, post * log_r0[None, :], 0.0)
        return terms.sum(-1)

    def index(self, z: torch.Tensor) -> torch.Tensor:
        """Noisy-state index of each sequence of z [B, L]."""
        return sequence_index(z, self.num_states)

    # ---------------------------------------------------------------- protocol adapters
    def denoiser(self, which: str = "p", t: float = 0.5) -> "TableDenoiser":
        """A :class:`~gtl_verify.protocols.Denoiser` returning exact log p(x^i|z_t) at time t.

        For the masked process the result does not depend on t (R3)."""
        return TableDenoiser(self, torch.log(self.denoiser_marginals(t, which)))

    def ratio_model(self, t: float = 0.5) -> "TableRatio":
        """A :class:`~gtl_verify.protocols.SequenceRatio` and ``SingleSiteRatio`` giving exact log r_t."""
        return TableRatio(self, torch.log(self.ratio(t)))


class TableDenoiser:
    """Denoiser that looks up a precomputed table [S^L, L, K] of log-probabilities."""

    def __init__(self, oracle: EnumerationOracle, table: torch.Tensor) -> None:
        self.oracle, self.table = oracle, table
        self.vocab_size = oracle.vocab_size
        self.mask_id = oracle.process.mask_id if oracle.process.mask_id is not None else oracle.vocab_size

    def __call__(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        return self.table[self.oracle.index(z)]


class TableRatio:
    """Exact log r(z) by table lookup; ``single_site`` gives log r(z^{i<-v}) for all i, v."""

    def __init__(self, oracle: EnumerationOracle, log_ratio: torch.Tensor) -> None:
        self.oracle, self.log_ratio = oracle, log_ratio

    def __call__(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        return self.log_ratio[self.oracle.index(z)]

    def single_site(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        b, length = z.shape
        k = self.oracle.vocab_size
        cand = z[:, None, None, :].expand(b, length, k, length).clone()
        for i in range(length):
            cand[:, i, :, i] = torch.arange(k)
        return self(cand.reshape(-1, length)).reshape(b, length, k)


def total_variation(a: torch.Tensor, b: torch.Tensor) -> float:
    """TV(a, b) = 1/2 sum |a - b| of two tables over the same states."""
    return 0.5 * float((a - b).abs().sum())


def kl_divergence(a: torch.Tensor, b: torch.Tensor) -> float:
    """KL(a || b) = sum a log(a/b) (inf if a puts mass where b has none)."""
    mask = a > 0
    if (b[mask] == 0).any():
        return math.inf
    return float((a[mask] * (a[mask].log() - b[mask].log())).sum())
