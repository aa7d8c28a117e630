"""First-order Markov chains on tokens 0..K-1 with exact likelihoods.

A chain (pi, S) has initial law pi [K] and row-stochastic transition matrix S [K, K]:

    p(x) = pi(x^1) * prod_{i=2..L} S(x^{i-1}, x^i).

Everything is float64. Module-level functions estimate a transition matrix from sequences and
score it with the paper's metric, the row-averaged KL(true row || estimated row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gtl_verify.enumeration import MAX_STATES
from gtl_verify.validation import (
    check_int_range,
    check_probability,
    check_real_range,
    check_shape,
    check_stochastic_matrix,
    check_tokens,
)

DTYPE = torch.float64


def _xlogy_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise a * log b with the convention 0 * log(anything) = 0."""
    return torch.where(a > 0, a * torch.log(torch.where(a > 0, b, 1.0)), torch.zeros((), dtype=a.dtype, device=a.device))


def _as_law(name: str, value, device: torch.device | None) -> torch.Tensor:
    """Float64 copy of a law (vector or row-stochastic matrix), validated.

    Float64 input (and Python/NumPy numbers) must sum to 1 within 1e-9. A lower-precision float
    tensor (float32, say) is checked at a tolerance of 8 K eps(dtype) and renormalised in float64.
    """
    low = torch.is_tensor(value) and value.is_floating_point() and value.dtype != DTYPE
    try:
        tensor = torch.as_tensor(value, dtype=DTYPE, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a tensor of probabilities, got {type(value).__name__}") from None
    if tensor.dim() == 2 and tensor.shape[0] != tensor.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {tuple(tensor.shape)}")
    if not low:
        check_probability(name, tensor)
        return tensor
    atol = max(8 * max(tensor.shape[-1:] or (1,)) * torch.finfo(value.dtype).eps, 1e-9)
    check_probability(name, tensor, atol=atol)
    return tensor / tensor.sum(-1, keepdim=True)


@dataclass(frozen=True)
class MarkovChain:
    """A first-order chain: ``initial`` pi [K] and ``transition`` S [K, K], both float64.

    Validated on construction: pi and every row of S are finite, non-negative and sum to 1
    (tolerance 1e-9); otherwise ``ValueError`` naming ``initial`` or ``transition``. Float32
    input is accepted at float32 tolerance and renormalised in float64.
    """

    initial: torch.Tensor
    transition: torch.Tensor

    def __post_init__(self) -> None:
        initial = _as_law("initial", self.initial, None)
        transition = _as_law("transition", self.transition, initial.device)
        check_shape("initial", initial, (None,))
        if initial.numel() < 1:
            raise ValueError("initial must have at least one entry, got shape (0,)")
        k = initial.numel()
        check_shape("transition", transition, (k, k))
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "transition", transition)

    # ------------------------------------------------------------------ basic properties
    @property
    def vocab_size(self) -> int:
        """K, the number of tokens."""
        return int(self.initial.numel())

    def to(self, device: torch.device | str) -> "MarkovChain":
        """The same chain with its tensors on ``device``."""
        return MarkovChain(self.initial.to(device), self.transition.to(device))

    # ------------------------------------------------------------------ sampling and likelihood
    def sample(self, n: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` sequences of ``length`` tokens, LongTensor [n, length].

        Inverse-CDF sampling with float64 uniforms from ``generator``: x^1 ~ pi, then
        x^i ~ S(x^{i-1}, .). Vectorised over the n sequences, a loop over positions only. The
        first m sequences of a draw of n > m equal a draw of m from the same generator state.
        """
        n = check_int_range("n", n, 0)
        length = check_int_range("length", length, 1)
        device = self.initial.device
        if generator is not None and generator.device.type != torch.device(device).type:
            raise ValueError(f"generator is on {generator.device}, the chain on {device}")
        init_cdf = _cdf(self.initial)[None, :]
        trans_cdf = _cdf(self.transition)
        k = self.vocab_size
        # drawn row by row, so the first m of n sequences do not depend on n
        u = torch.rand(n, length, generator=generator, dtype=DTYPE, device=device).T.contiguous()[..., None]
        out = torch.empty(length, n, dtype=torch.long, device=device)
        x = torch.searchsorted(init_cdf.expand(n, k).contiguous(), u[0], right=True)[:, 0]
        out[0] = x
        for i in range(1, length):
            x = torch.searchsorted(trans_cdf[x], u[i], right=True)[:, 0]
            out[i] = x
        return out.clamp_(max=k - 1).T.contiguous()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log pi(x^1) + sum_i log S(x^{i-1}, x^i) for x [B, L]; float64 [B] (-inf if p(x) = 0)."""
        check_tokens("x", x, self.vocab_size)
        if x.shape[1] < 1:
            raise ValueError(f"x must have at least one position, got shape {tuple(x.shape)}")
        x = x.long().to(self.initial.device)
        log_pi, log_s = torch.log(self.initial), torch.log(self.transition)
        out = log_pi[x[:, 0]]
        if x.shape[1] > 1:
            out = out + log_s[x[:, :-1], x[:, 1:]].sum(-1)
        return out

    # ------------------------------------------------------------------ stationary quantities
    def stationary(self) -> torch.Tensor:
        """A stationary law mu [K]: mu S = mu, sum mu = 1 (the unique one if S is irreducible).

        Solved as the least-squares system [S^T - I; 1^T] mu = [0; 1]; tiny negative round-off
        is clipped and the result renormalised.
        """
        k = self.vocab_size
        s = self.transition.cpu()
        a = torch.cat([s.T - torch.eye(k, dtype=DTYPE), torch.ones(1, k, dtype=DTYPE)], dim=0)
        b = torch.zeros(k + 1, 1, dtype=DTYPE)
        b[-1] = 1.0
        mu = torch.linalg.lstsq(a, b, driver="gelsd").solution[:, 0].clamp_min(0.0)
        return (mu / mu.sum()).to(self.initial.device)

    def entropy_rate(self) -> float:
        """H = -sum_u mu(u) sum_v S(u, v) log S(u, v) in nats, mu the stationary law."""
        return self.cross_entropy_rate(self)

    def cross_entropy_rate(self, other: "MarkovChain") -> float:
        """-sum_u mu(u) sum_v S(u, v) log S'(u, v), mu the stationary law of this chain, S' of ``other``.

        The per-token cross-entropy of long samples of this chain under ``other`` (+inf when
        ``other`` forbids a transition this chain takes).
        """
        if other.vocab_size != self.vocab_size:
            raise ValueError(f"other must have vocab_size {self.vocab_size}, got {other.vocab_size}")
        mu = self.stationary()
        s, s_other = self.transition, other.transition.to(self.transition.device)
        return float(-(mu[:, None] * _xlogy_rows(s, s_other)).sum())

    # ------------------------------------------------------------------ enumeration
    def table(self, length: int) -> torch.Tensor:
        """The law of x^{1..length} as a flat table [K**length], row-major (last position fastest).

        Matches :func:`gtl_verify.forward.enumerate_sequences` and ``LawPair.from_tables``.
        """
        length = check_int_range("length", length, 1)
        k = self.vocab_size
        if k**length > MAX_STATES:
            raise ValueError(f"length gives K**length = {k}**{length} states, more than {MAX_STATES}")
        law = self.initial.clone()
        for _ in range(1, length):
            rows = self.transition.repeat(law.numel() // k, 1)  # row j is S(j mod K, .)
            law = (law[:, None] * rows).reshape(-1)
        return law

    def __repr__(self) -> str:
        return f"MarkovChain(vocab_size={self.vocab_size})"


def _cdf(p: torch.Tensor) -> torch.Tensor:
    """Cumulative sums along the last dim, divided by the total so that the last entry is exactly 1."""
    c = torch.cumsum(p, dim=-1)
    return (c / c[..., -1:]).contiguous()


# ---------------------------------------------------------------------- estimation and metric
def transition_counts(x: torch.Tensor, vocab_size: int | None = None) -> torch.Tensor:
    """N(u, v) = number of positions i >= 2 with (x^{i-1}, x^i) = (u, v), over all rows of x [B, L].

    ``vocab_size`` K fixes the shape [K, K]; None takes K = max(x) + 1.
    """
    if vocab_size is None:
        if not torch.is_tensor(x) or x.numel() == 0:
            raise ValueError("vocab_size must be given when x is empty or not a tensor")
        vocab_size = int(x.max()) + 1
    k = check_int_range("vocab_size", vocab_size, 1)
    check_tokens("x", x, k)
    x = x.long()
    pair = (x[:, :-1] * k + x[:, 1:]).reshape(-1)
    return torch.bincount(pair, minlength=k * k).reshape(k, k).to(DTYPE)


def estimate_transition(x: torch.Tensor, smoothing: float = 0.0, *, vocab_size: int | None = None) -> torch.Tensor:
    """Row-normalised transition counts: S_hat(u, v) = (N(u, v) + a) / sum_w (N(u, w) + a).

    ``a`` = ``smoothing`` >= 0; a row with zero total (no visits to u and a = 0) becomes uniform 1/K.
    """
    smoothing = check_real_range("smoothing", smoothing, 0.0)
    counts = transition_counts(x, vocab_size) + smoothing
    total = counts.sum(-1, keepdim=True)
    k = counts.shape[0]
    return torch.where(total > 0, counts / torch.where(total > 0, total, 1.0), torch.full_like(counts, 1.0 / k))


def row_kl(true: torch.Tensor, estimated: torch.Tensor) -> torch.Tensor:
    """KL(true row u || estimated row u) for every row, [K] (+inf where estimated misses true's support)."""
    check_stochastic_matrix("true", true)
    check_stochastic_matrix("estimated", estimated)
    if true.shape != estimated.shape:
        raise ValueError(f"estimated must have shape {tuple(true.shape)}, got {tuple(estimated.shape)}")
    true, estimated = true.to(DTYPE), estimated.to(DTYPE).to(true.device)
    missing = ((true > 0) & (estimated == 0)).any(-1)
    kl = (_xlogy_rows(true, true) - _xlogy_rows(true, estimated)).sum(-1)
    return torch.where(missing, torch.full_like(kl, math.inf), kl)


def row_averaged_kl(true: torch.Tensor, estimated: torch.Tensor) -> float:
    """(1/K) sum_u KL(true(u, .) || estimated(u, .)), the metric of the paper's Markov figure."""
    return float(row_kl(true, estimated).mean())


@dataclass(frozen=True)
class ChiSquare:
    """Pearson goodness-of-fit result: statistic, degrees of freedom and upper-tail p-value."""

    statistic: float
    dof: int
    pvalue: float


def _pearson(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    """Pearson statistic of count rows [R, K] against probability rows [R, K], and its dof.

    Rows with no counts are skipped; cells with probability 0 are excluded from the dof and make
    the statistic infinite if they hold a count.
    """
    n = counts.sum(-1, keepdim=True)
    visited = n[:, 0] > 0
    counts, probs, n = counts[visited], probs[visited], n[visited]
    if ((probs == 0) & (counts > 0)).any():
        return math.inf, int(((probs > 0).sum(-1) - 1).sum())
    expected = n * probs
    live = probs > 0
    stat = torch.where(live, (counts - expected) ** 2 / torch.where(live, expected, 1.0), 0.0).sum()
    return float(stat), int((live.sum(-1) - 1).sum())


def transition_chi_square(x: torch.Tensor, transition: torch.Tensor, initial: torch.Tensor | None = None) -> ChiSquare:
    """Pearson chi-square test that sequences x [B, L] follow transition matrix S (and first-token law pi).

    statistic = sum_u sum_{v: S(u,v)>0} (N(u,v) - N(u) S(u,v))^2 / (N(u) S(u,v)) over visited rows u,
    plus the same for the first tokens against ``initial`` if given; dof = sum over the rows of
    (number of cells with positive probability - 1). Asymptotic: keep expected counts >= 5.
    """
    from scipy.stats import chi2

    transition = torch.as_tensor(transition, dtype=DTYPE)
    check_stochastic_matrix("transition", transition)
    k = transition.shape[0]
    counts = transition_counts(x, k)
    stat, dof = _pearson(counts, transition.to(counts.device))
    if initial is not None:
        initial = torch.as_tensor(initial, dtype=DTYPE)
        check_probability("initial", initial)
        check_shape("initial", initial, (k,))
        first = torch.bincount(x[:, 0].long().reshape(-1), minlength=k).to(DTYPE)[None, :]
        s0, d0 = _pearson(first, initial[None, :].to(first.device))
        stat, dof = stat + s0, dof + d0
    pvalue = 0.0 if math.isinf(stat) else (1.0 if dof == 0 else float(chi2.sf(stat, dof)))
    return ChiSquare(stat, dof, pvalue)
