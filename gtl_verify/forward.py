"""Forward (noising) processes on tokens, in the spirit of SEDD's ``Graph``.

A process acts independently on each position with a per-token kernel over ``num_states`` states.
Discrete time: ``transition(s, t)`` is the row-stochastic matrix Q_{t|s}(a, b) = P(z_t = b | z_s = a).
Continuous time: ``rate(t)`` is the generator R_t (rows sum to 0) with d/dt Q_{t|s} = Q_{t|s} R_t.
Sequence-level kernels over all ``num_states ** L`` sequences (for enumeration) are Kronecker
products (discrete time) and Kronecker sums (rates) of the per-token ones.

Sequences are indexed in row-major order: index(z) = sum_i z^i * S^(L-1-i), the order of
``itertools.product``; see :func:`enumerate_sequences`.

- Masked (absorbing): Q_{t|s} keeps a token with probability alpha_t/alpha_s, else sends it to
  the mask state m = K; m is absorbing. R_t(v, m) = -alpha'_t/alpha_t.
- Uniform: Q_{t|s} = beta I + (1 - beta) J/K with beta = alpha_t/alpha_s (J the all-ones matrix);
  R_t = (-alpha'_t/alpha_t) (J/K - I).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import reduce

import torch

from .schedules import Schedule
from .validation import check_int_range, check_times, check_tokens

DTYPE = torch.float64


def enumerate_sequences(num_states: int, length: int) -> torch.Tensor:
    """All ``num_states ** length`` sequences as a LongTensor [N, length], row-major order."""
    check_int_range("num_states", num_states, 1)
    check_int_range("length", length, 1)
    grids = torch.meshgrid(*[torch.arange(num_states)] * length, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=-1)


def sequence_index(z: torch.Tensor, num_states: int) -> torch.Tensor:
    """Row-major index of each sequence of ``z`` [B, L] (inverse of :func:`enumerate_sequences`)."""
    length = z.shape[-1]
    powers = num_states ** torch.arange(length - 1, -1, -1, device=z.device)
    return (z.long() * powers).sum(-1)


class ForwardProcess(ABC):
    """A per-position noising kernel over ``num_states`` states with a schedule alpha_t."""

    def __init__(self, vocab_size: int, schedule: Schedule) -> None:
        self.vocab_size = check_int_range("vocab_size", vocab_size, 1)
        self.schedule = schedule

    @property
    @abstractmethod
    def num_states(self) -> int:
        """Number of noisy states per position (K + 1 with a mask, K without)."""

    @property
    def mask_id(self) -> int | None:
        """Id of the absorbing mask state, or None."""
        return None

    def keep_prob(self, s: float, t: float) -> float:
        """beta = alpha_t / alpha_s, the probability that a token is untouched between s and t."""
        s, t = (0.0, t) if s == 0 == t else check_times(s, t)
        return float(self.schedule.alpha(t)) / float(self.schedule.alpha(s))

    @abstractmethod
    def transition(self, s: float, t: float) -> torch.Tensor:
        """Per-token kernel Q_{t|s} [S, S] (float64, rows sum to 1), for 0 <= s < t <= 1."""

    @abstractmethod
    def rate(self, t: float) -> torch.Tensor:
        """Per-token generator R_t [S, S] (float64, rows sum to 0)."""

    @abstractmethod
    def sample(self, x: torch.Tensor, t: torch.Tensor | float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw z_t ~ Q_{t|0}(x, .) for clean tokens ``x`` [B, L]; ``t`` a float or a [B] tensor."""

    def marginal(self, t: float) -> torch.Tensor:
        """Q_{t|0}, the kernel from clean tokens at time 0 (rows 0..K-1 are the clean states)."""
        if t == 0:
            return torch.eye(self.num_states, dtype=DTYPE)
        return self.transition(0.0, t)

    def sequence_transition(self, s: float, t: float, length: int) -> torch.Tensor:
        """Q_{t|s} on whole sequences: the Kronecker power [S^L, S^L]."""
        q = self.transition(s, t)
        return reduce(torch.kron, [q] * check_int_range("length", length, 1))

    def sequence_marginal(self, t: float, length: int) -> torch.Tensor:
        """Q_{t|0} on whole sequences [S^L, S^L]."""
        q = self.marginal(t)
        return reduce(torch.kron, [q] * check_int_range("length", length, 1))

    def sequence_rate(self, t: float, length: int) -> torch.Tensor:
        """Generator on whole sequences: sum_i I x .. x R_t (position i) x .. x I [S^L, S^L]."""
        length = check_int_range("length", length, 1)
        r, eye = self.rate(t), torch.eye(self.num_states, dtype=DTYPE)
        return sum(
            reduce(torch.kron, [r if j == i else eye for j in range(length)]) for i in range(length)
        )

    @staticmethod
    def reverse_rate(rate: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
        """Time-reversed generator Rrev(y, x) = R(x, y) p(x) / p(y) for y != x, diagonal = -row sum.

        ``rate`` [N, N] is a forward generator and ``marginal`` [N] the law p_t it acts on; rows
        of states with p(y) = 0 are set to 0 (they are never visited by the reverse chain).
        """
        p = marginal.to(DTYPE)
        alive = p > 0
        ratio = torch.where(alive[None, :], p[:, None] / torch.where(alive, p, 1.0)[None, :], 0.0)
        rev = (rate * ratio).T.clone()
        rev.fill_diagonal_(0.0)
        rev[~alive] = 0.0
        rev -= torch.diag(rev.sum(dim=1))
        return rev

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, schedule={self.schedule!r})"


class MaskedProcess(ForwardProcess):
    """Absorbing process: keep with probability alpha_t/alpha_s, else jump to the mask state K."""

    @property
    def num_states(self) -> int:
        return self.vocab_size + 1

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    def transition(self, s: float, t: float) -> torch.Tensor:
        beta = self.keep_prob(s, t)
        k = self.vocab_size
        q = torch.zeros(k + 1, k + 1, dtype=DTYPE)
        q[:k, :k] = beta * torch.eye(k, dtype=DTYPE)
        q[:k, k] = 1 - beta
        q[k, k] = 1.0
        return q

    def rate(self, t: float) -> torch.Tensor:
        k = self.vocab_size
        jump = -float(self.schedule.dalpha(t)) / float(self.schedule.alpha(t))
        r = torch.zeros(k + 1, k + 1, dtype=DTYPE)
        r[:k, k] = jump
        r[:k, :k] = -jump * torch.eye(k, dtype=DTYPE)
        return r

    def sample(self, x, t, generator=None):
        check_tokens("x", x, self.vocab_size)
        alpha = self.schedule.alpha(torch.as_tensor(t, dtype=DTYPE, device=x.device))
        alpha = alpha.reshape(-1, 1) if alpha.dim() else alpha
        u = torch.rand(x.shape, generator=generator, dtype=DTYPE, device=x.device)
        return torch.where(u < alpha, x, torch.full_like(x, self.mask_id))


class UniformProcess(ForwardProcess):
    """Uniform process: with probability 1 - alpha_t/alpha_s resample the token uniformly."""

    @property
    def num_states(self) -> int:
        return self.vocab_size

    def transition(self, s: float, t: float) -> torch.Tensor:
        beta = self.keep_prob(s, t)
        k = self.vocab_size
        return beta * torch.eye(k, dtype=DTYPE) + (1 - beta) / k * torch.ones(k, k, dtype=DTYPE)

    def rate(self, t: float) -> torch.Tensor:
        k = self.vocab_size
        jump = -float(self.schedule.dalpha(t)) / float(self.schedule.alpha(t))
        return jump * (torch.ones(k, k, dtype=DTYPE) / k - torch.eye(k, dtype=DTYPE))

    def sample(self, x, t, generator=None):
        check_tokens("x", x, self.vocab_size)
        alpha = self.schedule.alpha(torch.as_tensor(t, dtype=DTYPE, device=x.device))
        alpha = alpha.reshape(-1, 1) if alpha.dim() else alpha
        u = torch.rand(x.shape, generator=generator, dtype=DTYPE, device=x.device)
        noise = torch.randint(0, self.vocab_size, x.shape, generator=generator, device=x.device)
        return torch.where(u < alpha, x, noise)


PROCESSES: dict[str, type[ForwardProcess]] = {"masked": MaskedProcess, "uniform": UniformProcess}


def make_process(name: str, vocab_size: int, schedule: Schedule) -> ForwardProcess:
    """Build a forward process by name: ``masked`` or ``uniform``."""
    try:
        return PROCESSES[name](vocab_size, schedule)
    except KeyError:
        raise ValueError(f"process must be one of {sorted(PROCESSES)}, got {name!r}") from None
