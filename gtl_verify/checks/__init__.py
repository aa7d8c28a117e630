"""Exact checks of every identity in THEORY.md, each returning a residual.

``run_checks`` evaluates all of them on a seeded batch of random problems; ``gtl theory`` prints
the table. Each check is a plain function of an explicit ``torch.Generator``.
"""

from .base import Check, CheckResult
from .suite import CHECKS, run_checks

__all__ = ["CHECKS", "Check", "CheckResult", "run_checks"]
