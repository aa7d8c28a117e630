"""Estimators of the single-site increments that use the frozen source denoiser: ``guided-likelihood``
and ``telescoping-nce``.

Both train a :class:`~gtl_verify.amortised.SingleSiteRatioNet` (no level head) on masked target
rows z ~ q_t (each row masked at its own t ~ U[0, 1]) with labels = the clean target tokens at the
masked positions; both use the source denoiser's log p(x^i = v | z). Neither compares whole
sequences of the two domains, so neither meets the density chasm: each term is a one-token
question, and the loss does not saturate however far apart the domains are. The level log r(z)
is recovered by telescoping (:class:`~gtl_verify.estimators.site_model.SiteRatioModel`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..amortised import SingleSiteRatioNet
from ..training import build_seeded, config_hash, train
from . import batches
from .base import EstimatorBudget, FitInputs, RatioEstimator
from .losses import guided_cross_entropy, site_nce_loss
from .site_model import SiteRatioModel


def _fit_increments(inputs: FitInputs, budget: EstimatorBudget, name: str, loss_fn) -> SingleSiteRatioNet:
    cfg = budget.backbone(inputs.vocab_size, inputs.length)
    net = build_seeded(lambda: SingleSiteRatioNet(cfg, mask_id=inputs.mask_id, level_head=False),
                       config_hash({"role": name, "seed": inputs.seed, "model": cfg.to_dict()})).to(inputs.device)
    denoiser = inputs.denoiser

    def draw(gen: torch.Generator):
        x = batches.rows(inputs.target, budget.batch_size, gen)
        z, t = batches.masked(x, inputs.schedule, inputs.mask_id, gen)
        with torch.no_grad():
            log_probs = torch.as_tensor(denoiser(z, t.float())).float()
        return z, log_probs, F.one_hot(x, inputs.vocab_size).float()

    def loss(model, batch, gen):
        z, log_probs, labels = batch
        return loss_fn(log_probs, model(z).delta, labels, z == inputs.mask_id) / inputs.length

    train(net, loss, draw, budget.train_config(inputs.seed), progress=False, description=name)
    return net.eval()


class _SiteEstimator(RatioEstimator):
    """An estimator whose one part is an increment network (``increments``), telescoped by
    :class:`~gtl_verify.estimators.site_model.SiteRatioModel`."""

    needs_denoiser = True
    part_names = ("increments",)

    def _assemble(self, parts):
        return SiteRatioModel(self.name, parts["increments"])


class GuidedLikelihood(_SiteEstimator):
    """``guided-likelihood``: maximum likelihood of the masked target tokens under the guided
    single-site posterior softmax_v(log p_theta(x^i = v | z) + log r_phi(z^{i<-v})), p_theta frozen.

    Loss: E_{x ~ q, z ~ k(.|x)} sum_{i masked} -log softmax_v(log p(v|z) + d_phi(z)[i, v])[x^i]
    (:func:`~gtl_verify.estimators.losses.guided_cross_entropy`). Minimiser: any d with
    softmax_v(log p + d) = q(x^i = . | z), i.e. d = log r(z^{i<-v}) - log r(z) + c(z, i); the exact
    ratio is one (Theorem 1 / R4), and the per-position constant c cancels in the stabilised step.
    A proper scoring rule: the residual form of fine-tuning (TCSM, arXiv 2504.16431, with a
    frozen reference), written as the GTL ratio.
    """

    name = "guided-likelihood"

    def _fit(self, inputs: FitInputs, budget: EstimatorBudget):
        return self.assemble({"increments": _fit_increments(inputs, budget, self.name, guided_cross_entropy)})


class TelescopingNCE(_SiteEstimator):
    """``telescoping-nce``: telescoping ratio estimation over masking levels (Rhodes et al. 2020,
    TRE) with one reveal per factor, each factor fitted by noise-contrastive estimation (Gutmann &
    Hyvarinen 2010) against the source denoiser's token law.

    Loss: E_{z ~ q_t} sum_{i masked} sum_v [q(v|z) softplus(-d(z)[i, v]) + p(v|z) softplus(d(z)[i, v])]
    with q(v|z) realised by the revealed target token (:func:`~gtl_verify.estimators.losses.site_nce_loss`).
    Minimiser: d = log q(v|z)/p(v|z) = log r(z^{i<-v}) - log r(z) exactly (no free constant), so the
    telescoped level log r(z) is consistent too. The waymarks are the masking levels themselves:
    adjacent ones differ by one token, so no factor faces a density chasm.
    """

    name = "telescoping-nce"

    def _fit(self, inputs: FitInputs, budget: EstimatorBudget):
        return self.assemble({"increments": _fit_increments(inputs, budget, self.name, site_nce_loss)})
