"""Seeded random problems for the checks: law pairs (not only Markov), schedules and times.

Law kinds: ``dense`` (Dirichlet(1)-like), ``peaked`` (log-normal weights with a large scale),
``sparse`` (a random subset of sequences has probability 0) and ``near-degenerate`` (one
sequence carries all but 1e-9 of the mass). The target always satisfies supp q within supp p.

Every draw comes from the caller's CPU generator (so a seed gives the same problems on every
device); the law tables are then placed on the requested ``device``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..enumeration import EnumerationOracle, LawPair
from ..forward import DTYPE, ForwardProcess, make_process
from ..schedules import SCHEDULES, Schedule, make_schedule

LAW_KINDS = ("dense", "peaked", "sparse", "near-degenerate")


CPU = torch.device("cpu")  # where every random draw is made (the generator's device)


def _uniform(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=gen, dtype=DTYPE, device=CPU)


def _randint(gen: torch.Generator, low: int, high: int) -> int:
    """An integer uniform on [low, high)."""
    return int(torch.randint(low, high, (1,), generator=gen, device=CPU))


def _choice(gen: torch.Generator, options: tuple | list):
    return options[_randint(gen, 0, len(options))]


def random_law(size: int, gen: torch.Generator, kind: str = "dense", support: torch.Tensor | None = None) -> torch.Tensor:
    """A random probability table over ``size`` states (optionally inside a boolean ``support``)."""
    if kind == "dense":
        w = -torch.log(_uniform(gen, size))
    elif kind == "peaked":
        w = torch.exp(3.0 * torch.randn(size, generator=gen, dtype=DTYPE, device=CPU))
    elif kind == "sparse":
        w = -torch.log(_uniform(gen, size)) * (_uniform(gen, size) < 0.5)
    elif kind == "near-degenerate":
        w = 1e-9 * _uniform(gen, size) / size
        w[_randint(gen, 0, size)] = 1.0
    else:
        raise ValueError(f"kind must be one of {LAW_KINDS}, got {kind!r}")
    if support is not None:
        w = w * support
    if w.sum() <= 0:  # a sparse draw may miss the support entirely
        w = support.to(DTYPE) if support is not None else torch.ones(size, dtype=DTYPE, device=CPU)
    return w / w.sum()


def random_law_pair(vocab_size: int, length: int, gen: torch.Generator, kind: str | None = None,
                    device: torch.device = CPU) -> LawPair:
    """Source p and target q on {0..K-1}^L with supp q within supp p, tables [K^L] on ``device``."""
    size = vocab_size**length
    kind_p = kind or _choice(gen, LAW_KINDS)
    kind_q = kind or _choice(gen, LAW_KINDS)
    p = random_law(size, gen, kind_p)
    q = random_law(size, gen, kind_q, support=p > 0)
    return LawPair.from_tables(p.to(device), q.to(device), vocab_size, length)


def random_schedule(gen: torch.Generator) -> Schedule:
    return make_schedule(_choice(gen, sorted(SCHEDULES)))


def random_times(gen: torch.Generator, allow_zero: bool = True) -> tuple[float, float]:
    """0 <= s < t < 1 with t in [0.05, 0.95]; s = 0 in a quarter of the draws when allowed."""
    t = 0.05 + 0.9 * float(_uniform(gen, 1))
    s = 0.0 if allow_zero and float(_uniform(gen, 1)) < 0.25 else t * float(0.05 + 0.9 * _uniform(gen, 1))
    return s, t


@dataclass(frozen=True)
class Problem:
    """A random instance: laws, forward process and a reverse step s < t."""

    oracle: EnumerationOracle
    s: float
    t: float

    @property
    def process(self) -> ForwardProcess:
        return self.oracle.process


def random_problem(
    gen: torch.Generator,
    process: str = "masked",
    vocab_sizes: tuple[int, int] = (2, 5),
    lengths: tuple[int, int] = (1, 4),
    max_noisy_states: int = 1300,
    allow_zero: bool = True,
    law_kind: str | None = None,
    device: torch.device = CPU,
) -> Problem:
    """Random K, L (with (K+1)^L <= max_noisy_states), law pair (of ``law_kind``, default a random
    kind per law) on ``device``, schedule and times. Off the CPU, build and use the problem inside
    ``with torch.device(device)`` so that the oracle's own tables are made there too."""
    while True:
        k = _randint(gen, vocab_sizes[0], vocab_sizes[1] + 1)
        length = _randint(gen, lengths[0], lengths[1] + 1)
        if (k + 1) ** length <= max_noisy_states:
            break
    laws = random_law_pair(k, length, gen, law_kind, device)
    proc = make_process(process, k, random_schedule(gen))
    s, t = random_times(gen, allow_zero)
    return Problem(EnumerationOracle(laws, proc), s, t)
