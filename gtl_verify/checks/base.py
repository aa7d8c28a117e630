"""Check records: a residual per random case, aggregated to the worst case."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class Check:
    """One identity: ``case(generator, device)`` draws a random problem from the CPU ``generator``,
    computes on ``device`` and returns its residual (optionally with a dict of details).

    ``expect = "holds"``: passed when the worst residual is <= ``tolerance``.
    ``expect = "fails"``: a separation check (an identity that must NOT hold, e.g. R1 for the
    uniform kernel): passed when the smallest residual over the cases exceeds ``tolerance``.
    """

    name: str
    description: str
    case: Callable[[torch.Generator, torch.device], Any]
    tolerance: float = 1e-10
    expect: str = "holds"
    cases: int | None = None  # fixed number of cases (slow checks); None: the suite's default
    torch_device: bool = True  # computes with torch on the requested device; False: CPU only (rationals, scipy)


@dataclass
class CheckResult:
    """Outcome of a check over ``cases`` random problems."""

    name: str
    description: str
    residual: float
    tolerance: float
    expect: str
    cases: int
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        if math.isnan(self.residual):
            return False
        if self.expect == "holds":
            return self.residual <= self.tolerance
        return self.residual > self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}
