"""The registry of checks and the runner behind ``gtl theory``.

Each check draws its own random problems from an explicit CPU generator, so a run is reproducible
from (seed, cases) on every device. A check marked ``torch_device`` computes on the device given to
:func:`run_checks` (its law tables are placed there and the oracle is built inside
``with torch.device(device)``); the others (exact rationals, the scipy ODE of the CTMC checks) run
on the CPU whatever the device. The reported residual is the worst case: the maximum for identities that must
hold, the minimum for separations that must fail.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from . import identities as ids
from .base import Check, CheckResult
from .ctmc import ctmc_theorem1_residual
from .problems import CPU, random_problem
from .rational import rational_case

Case = Callable[[torch.Generator, torch.device], "float | tuple[float, dict[str, float]]"]


def _theorem1(process: str) -> Case:
    def case(gen: torch.Generator, device: torch.device):
        pb = random_problem(gen, process, device=device)
        return max(ids.theorem1_residual(pb.oracle, pb.s, pb.t), ids.theorem1_ratio_form_residual(pb.oracle, pb.s, pb.t))

    return case


def _ctmc(process: str) -> Case:
    def case(gen: torch.Generator, device: torch.device):  # scipy ODE: CPU only
        pb = random_problem(gen, process, vocab_sizes=(2, 3), lengths=(1, 2), max_noisy_states=16)
        return ctmc_theorem1_residual(pb.oracle)

    return case


def _r1(process: str) -> Case:
    # the separation (uniform kernel) needs q != p: dense laws; the identity is tested on every kind
    kind = "dense" if process == "uniform" else None

    def case(gen: torch.Generator, device: torch.device):
        pb = random_problem(gen, process, allow_zero=False, law_kind=kind, device=device)
        return ids.r1_residual(pb.oracle, (pb.s, pb.t, 0.5 * (pb.s + pb.t)))

    return case


def _r2(gen: torch.Generator, device: torch.device):
    pb = random_problem(gen, "masked" if torch.rand(1, generator=gen, device=CPU) < 0.5 else "uniform", device=device)
    return ids.r2_residual(pb.oracle, pb.t)


def _r3(process: str) -> Case:
    kind = "dense" if process == "uniform" else None

    def case(gen: torch.Generator, device: torch.device):
        pb = random_problem(gen, process, allow_zero=False, law_kind=kind, device=device)
        return ids.r3_residual(pb.oracle, pb.s, pb.t)

    return case


def _r4(gen: torch.Generator, device: torch.device):
    pb = random_problem(gen, device=device)
    return ids.r4_residual(pb.oracle, pb.t)


def _stabiliser(gen: torch.Generator, device: torch.device):
    pb = random_problem(gen, device=device)
    return ids.stabiliser_residual(pb.oracle, pb.s, pb.t)


def _stabilised_guidance(gen: torch.Generator, device: torch.device):
    pb = random_problem(gen, device=device)
    return ids.stabilised_guidance_residual(pb.oracle, pb.s, pb.t)


def _top_n(gen: torch.Generator, device: torch.device):
    pb = random_problem(gen, device=device)
    n = int(torch.randint(1, pb.oracle.vocab_size + 1, (1,), generator=gen, device=CPU))
    gamma = float(3 * torch.rand(1, generator=gen, dtype=torch.float64, device=CPU))
    identity, at_k = ids.top_n_tv_residuals(pb.oracle, pb.t, n, gamma)
    return max(identity, at_k)


def _jensen(gen: torch.Generator, device: torch.device):
    pb = random_problem(gen, device=device)
    violation, mean_gap, max_gap = ids.jensen_gap(pb.oracle, pb.t)
    return violation, {"mean_gap_nats": mean_gap, "max_gap_nats": max_gap}


def _rational(process: str, which: int) -> Case:
    def case(gen: torch.Generator, device: torch.device):  # exact rationals: CPU only
        return float(rational_case(gen, process)[which])

    return case


CHECKS: tuple[Check, ...] = (
    Check("theorem1-masked", "q(z_s|z_t) = p(z_s|z_t) r_s(z_s)/r_t(z_t), absorbing kernel, arbitrary laws", _theorem1("masked")),
    Check("theorem1-uniform", "the same for the uniform kernel (r at time s, not t)", _theorem1("uniform")),
    Check("theorem1-ctmc-masked", "guided reverse rates Rrev^p r_t(x)/r_t(y) carry q_1 to q_0 (Kolmogorov ODE)", _ctmc("masked"), 1e-10, cases=4, torch_device=False),
    Check("theorem1-ctmc-uniform", "the same for the uniform rate matrix", _ctmc("uniform"), 1e-10, cases=4, torch_device=False),
    Check("r1-masked", "R1: r_t(z) = Q_obs(z)/P_obs(z) does not depend on t", _r1("masked")),
    Check("r1-uniform-fails", "R1 fails for the uniform kernel: min over cases of max_t |r_t - r_t'| > tol", _r1("uniform"), 1e-6, "fails"),
    Check("r2", "R2: r_t(z) = E_{p(x|z_t=z)}[r_0(x)] (masked and uniform)", _r2),
    Check("r3-masked", "R3: p(x|z_t = z) does not depend on t", _r3("masked")),
    Check("r3-uniform-fails", "R3 fails for the uniform kernel", _r3("uniform"), 1e-6, "fails"),
    Check("r4", "R4: sum_v p(x^i=v|z) r(z^{i<-v}) = r(z) at masked i", _r4),
    Check("stabiliser", "P(stay masked) = (1-a_s)/(1-a_t) under both exact reverse kernels", _stabiliser),
    Check("stabilised-guidance", "stabilised single-site step, exact ratio, gamma=1 = exact target marginal", _stabilised_guidance),
    Check("top-n-tv", "TV(top-n guided, full guided) = guided mass outside top-n; 0 at n=K", _top_n),
    Check("jensen", "E[log r_0|z] <= log r(z) (violation; gap in details)", _jensen),
    Check("rational-theorem1-masked", "Theorem 1 in exact rationals, absorbing kernel (K=2, L=2)", _rational("masked", 0), 0.0, torch_device=False),
    Check("rational-theorem1-uniform", "Theorem 1 in exact rationals, uniform kernel (K=2, L=2)", _rational("uniform", 0), 0.0, torch_device=False),
    Check("rational-r1-masked", "R1 in exact rationals (absorbing kernel)", _rational("masked", 1), 0.0, torch_device=False),
    Check("rational-r4", "R4 in exact rationals", _rational("masked", 2), 0.0, torch_device=False),
)


def run_check(check: Check, cases: int, seed: int, device: torch.device = CPU) -> CheckResult:
    """Worst residual of ``check`` over its random cases drawn from ``torch.Generator().manual_seed(seed)``,
    computed on ``device`` when the check is marked ``torch_device`` (else on the CPU)."""
    n = check.cases or cases
    gen = torch.Generator().manual_seed(seed)
    device = torch.device(device) if check.torch_device else CPU
    residuals: list[float] = []
    details: dict[str, float] = {}
    for _ in range(n):
        with device:  # the oracle's and the identities' own tables are made on the device of the laws
            out = check.case(gen, device)
        value, extra = out if isinstance(out, tuple) else (out, {})
        residuals.append(float(value))
        for key, v in extra.items():
            details[key] = max(details.get(key, float("-inf")), float(v))
    worst = max(residuals) if check.expect == "holds" else min(residuals)
    return CheckResult(check.name, check.description, worst, check.tolerance, check.expect, n, details)


def run_checks(cases: int = 20, seed: int = 0, only: Iterable[str] | None = None, progress: bool = True,
               device: torch.device = CPU) -> list[CheckResult]:
    """Run every check (or those named in ``only``) on ``cases`` random problems each, on ``device``
    where a check computes with torch (see the module docstring)."""
    selected = list(CHECKS)
    if only:
        names = {c.name for c in CHECKS}
        unknown = sorted(set(only) - names)
        if unknown:
            raise ValueError(f"unknown check name(s) {unknown}; choose from {sorted(names)}")
        selected = [c for c in CHECKS if c.name in set(only)]
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}")
    return [run_check(c, cases, seed, device) for c in tqdm(selected, desc="theory checks", disable=not progress)]
