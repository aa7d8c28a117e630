"""Single-site ratio model: increments from one network pass, the level by telescoping them.

A :class:`~gtl_verify.amortised.SingleSiteRatioNet` without a level head predicts, in one pass over
z, the increments d(z)[i, v] ~ log r(z^{i<-v}) - log r(z) at every masked i (0 elsewhere). The
sequence log-ratio follows from the chain rule over reveals (a telescoping sum, R1: r of the
all-mask state is 1):

    log r(z) = sum_{k=1..M} d(z_{k-1})[i_k, z^{i_k}],

where z_0 is all-mask and z_k reveals the observed positions i_1 < ... < i_k of z left to right
(M observed positions: L network passes for a batch). With the exact increments this is exact
(THEORY section 6: r(z^{i<-v}) = r(z) q(x^i = v | z) / p(x^i = v | z)).
"""

from __future__ import annotations

import torch

from ..amortised import AmortisedRatio, SingleSiteRatioNet
from ..counting import CallCount
from ..validation import check_tokens
from .base import checked


class SiteRatioModel:
    """Sampler model of an increment network: ``__call__(z, t)`` -> telescoped log r(z) [B];
    ``single_site(z, t)`` -> log r(z) + d(z) [B, L, K]; ``increment(z, t)`` -> d(z) [B, L, K]
    (float64, 0 at unmasked positions). NaN in any output raises ValueError naming ``name``, and so
    does a token of z outside 0..K (K the mask id), before any pass.

    Cost in network passes per row: ``increment`` 1; ``__call__`` one per observed position (up to
    L, the telescoping); ``single_site`` both. The stabilised guided step reads ``increment`` only
    (:class:`~gtl_verify.protocols.SingleSiteIncrement`: one pass per step), the unstabilised rule
    needs the level too. ``passes`` counts every network pass (rows), whatever asked for it."""

    def __init__(self, name: str, net: SingleSiteRatioNet) -> None:
        if not isinstance(net, SingleSiteRatioNet):
            raise ValueError(f"net must be a SingleSiteRatioNet, got {type(net).__name__}")
        self.name, self.net = name, net.eval()
        self.mask_id, self.vocab_size = net.mask_id, net.vocab_size
        self.parts = {"increments": net}
        self._amortised = AmortisedRatio(net, base_ratio=self._telescoped)
        self.passes = CallCount()

    def increment(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        self.passes.add(z.shape[0])
        return checked(self.name, "the single-site increments", self._amortised.increment(z, t))

    def _telescoped(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        current = torch.full_like(z, self.mask_id)
        total = torch.zeros(z.shape[0], dtype=torch.float64, device=z.device)
        observed = z != self.mask_id
        for i in range(z.shape[1]):
            rows = observed[:, i]
            if not bool(rows.any()):
                continue
            d = self.increment(current[rows], t if t is None or not torch.is_tensor(t) or t.dim() == 0 else t[rows])
            total[rows] += d[:, i].gather(-1, z[rows, i, None]).squeeze(-1)
            current[rows, i] = z[rows, i]
        return total

    def __call__(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        # the telescoping gathers increments at z's tokens before any network pass sees z itself
        check_tokens("z", z, max(self.vocab_size, self.mask_id + 1))
        return checked(self.name, "log r(z)", self._amortised(z, t))

    def single_site(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        self.passes.add(z.shape[0])  # the increments' pass; the telescoped level counts its own
        return checked(self.name, "log r(z^{i<-v})", self._amortised.single_site(z, t))
