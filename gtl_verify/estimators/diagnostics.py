"""Exact diagnostics of a ratio model on held-out noisy sequences of both domains, by masking level.

Given an exact oracle with the :class:`markov.oracle.PairOracle` interface (``oracle(z)`` -> log r(z)
[B], ``oracle.single_site(z)`` -> [B, L, K], exact denoisers ``oracle.source`` and ``oracle.target``),
each held-out clean set is masked at fixed times t (one masking level per group) and two errors are
measured per (domain, t):

- ``log_ratio_rmse`` (nats): RMS of log r_hat(z) - log r(z) after removing its best constant (the
  mean) over the group: the level of the ratio does not matter to the stabilised step
  (THEORY section 3);
- ``single_site_tv`` (headline, what the sampler consumes): mean over masked positions of the TV
  between softmax_v(log p(x^i = v | z) + log r_hat(z^{i<-v})) and the exact q(x^i = v | z), with the
  exact source p, so that only the ratio's error is measured.

A model without ``single_site`` is scored on every candidate z^{i<-v}
(:func:`gtl_verify.amortised.teacher_log_ratios`, M K passes for M masked positions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..amortised import teacher_log_ratios
from ..guidance import combine
from ..objectives import mask_tokens
from ..schedules import Schedule

DEFAULT_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)


def level_free_rmse(estimate: torch.Tensor, exact: torch.Tensor) -> float:
    """RMS (nats) of ``estimate - exact`` [B] after subtracting its mean (the best constant in squares),
    over the rows where the exact value is finite (NaN if none)."""
    est, ex = estimate.to(torch.float64).reshape(-1), exact.to(torch.float64).reshape(-1)
    ok = torch.isfinite(ex)
    if not bool(ok.any()):
        return float("nan")
    err = est[ok] - ex[ok]
    return float(((err - err.mean()) ** 2).mean().sqrt())


def guided_site_tv(log_probs: torch.Tensor, site_log_ratio: torch.Tensor, exact_target_log_probs: torch.Tensor,
                   masked: torch.Tensor) -> torch.Tensor:
    """TV [M] between softmax_v(log p(x^i = v | z) + log r_hat(z^{i<-v})) and q(x^i = v | z) at the M
    masked positions (inputs [B, L, K], ``masked`` [B, L]); float64. Raises ValueError on a NaN ratio."""
    lp = log_probs.to(torch.float64)[masked]
    guided = combine(lp, site_log_ratio.to(torch.float64)[masked], 1.0).exp()
    exact = exact_target_log_probs.to(torch.float64)[masked].exp()
    return 0.5 * (guided - exact).abs().sum(-1)


def model_single_site(model: Callable[..., torch.Tensor], z: torch.Tensor, vocab_size: int, mask_id: int) -> torch.Tensor:
    """log r_hat(z^{i<-v}) [B, L, K] from ``model.single_site`` or by scoring every candidate."""
    if hasattr(model, "single_site"):
        return torch.as_tensor(model.single_site(z)).to(torch.float64)
    return teacher_log_ratios(model, z, vocab_size, mask_id)[1]


@dataclass(frozen=True)
class LevelDiagnostics:
    """Errors of one (domain, t) group: ``masked_fraction`` (mean share of masked positions),
    ``log_ratio_rmse`` (nats, level-free), ``single_site_tv`` (mean over ``positions`` masked
    positions), ``rows`` sequences."""

    domain: str
    t: float
    masked_fraction: float
    log_ratio_rmse: float
    single_site_tv: float
    positions: int
    rows: int


@dataclass(frozen=True)
class RatioDiagnostics:
    """Per-level results and their means over levels and domains (``single_site_tv`` weighted by
    masked positions; ``log_ratio_rmse`` unweighted mean of the groups)."""

    levels: list[LevelDiagnostics] = field(default_factory=list)

    @property
    def single_site_tv(self) -> float:
        n = sum(g.positions for g in self.levels)
        return sum(g.single_site_tv * g.positions for g in self.levels if g.positions) / n if n else float("nan")

    def domain_tv(self, domain: str) -> float:
        """``single_site_tv`` over one domain's groups (weighted by masked positions)."""
        return RatioDiagnostics([g for g in self.levels if g.domain == domain]).single_site_tv

    @property
    def log_ratio_rmse(self) -> float:
        vals = [g.log_ratio_rmse for g in self.levels if g.rows]
        return sum(vals) / len(vals) if vals else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"single_site_tv": self.single_site_tv, "log_ratio_rmse": self.log_ratio_rmse,
                "single_site_tv_by_domain": {d: self.domain_tv(d) for d in dict.fromkeys(g.domain for g in self.levels)},
                "levels": [asdict(g) for g in self.levels]}


def level_diagnostics(model: Callable[..., torch.Tensor], oracle, z: torch.Tensor, domain: str, t: float) -> LevelDiagnostics:
    """Both errors of ``model`` against ``oracle`` on the noisy sequences z [B, L] of one group.

    Rows impossible under either domain (exact log r(z) = -inf or +inf: q(x^i | z) or p(x^i | z)
    undefined) are left out and counted in ``rows`` only if kept."""
    k, mask_id = oracle.vocab_size, oracle.mask_id
    exact = torch.as_tensor(oracle(z)).to(torch.float64)
    z, exact = z[torch.isfinite(exact)], exact[torch.isfinite(exact)]
    masked = z == mask_id
    if z.shape[0] == 0:
        return LevelDiagnostics(domain, float(t), float("nan"), float("nan"), float("nan"), 0, 0)
    rmse = level_free_rmse(torch.as_tensor(model(z)), exact)
    site = model_single_site(model, z, k, mask_id)
    tv = guided_site_tv(oracle.source(z), site, oracle.target(z), masked)
    return LevelDiagnostics(domain=domain, t=float(t), masked_fraction=float(masked.double().mean()), log_ratio_rmse=rmse,
                            single_site_tv=float(tv.mean()) if tv.numel() else float("nan"), positions=int(tv.numel()),
                            rows=int(z.shape[0]))


def ratio_diagnostics(model: Callable[..., torch.Tensor], oracle, heldout: dict[str, torch.Tensor], schedule: Schedule,
                      generator: torch.Generator, times: Sequence[float] = DEFAULT_TIMES) -> RatioDiagnostics:
    """:class:`RatioDiagnostics` of ``model`` on ``heldout`` clean sets {domain: [N, L]}, each masked
    at every t in ``times`` (draws from ``generator``). Raises ValueError on an empty set or a t outside [0, 1]."""
    if not heldout:
        raise ValueError("heldout must name at least one domain's held-out sequences, got none")
    levels = []
    for domain, x in heldout.items():
        if not torch.is_tensor(x) or x.dim() != 2 or x.shape[0] == 0:
            raise ValueError(f"heldout[{domain!r}] must be a non-empty [N, L] tensor, got {tuple(getattr(x, 'shape', ()))}")
        for t in times:
            if not 0.0 <= float(t) <= 1.0:
                raise ValueError(f"times must lie in [0, 1], got {t}")
            z = mask_tokens(x, float(t), schedule, oracle.mask_id, generator)
            levels.append(level_diagnostics(model, oracle, z, domain, float(t)))
    return RatioDiagnostics(levels)
