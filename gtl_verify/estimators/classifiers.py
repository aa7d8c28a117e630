"""Domain classifiers (clean and noisy) and the ``noisy-classifier`` estimator.

A classifier is a :class:`~gtl_verify.networks.SequenceNet` with one logit of P(source | z),
trained with binary cross-entropy on balanced batches (pi_s = pi_t, so no prior term):

- clean classifier on clean x: optimum logit log p(x)/q(x), so log r_0(x) = -logit (the pseudo
  labels of the reference pipeline);
- noisy (time-dependent when ``time_conditioning``) classifier on z_t of both domains: optimum
  logit log p_t(z)/q_t(z) at every t, so log r(z) = -logit (R1: the masked-process ratio does not
  depend on t).
"""

from __future__ import annotations

import torch

from ..learned import ClassifierRatio
from ..networks import SequenceNet
from ..training import build_seeded, config_hash, train
from . import batches
from .base import CheckedSequenceRatio, EstimatorBudget, FitInputs, RatioEstimator
from .losses import noisy_classifier_loss


def _net(inputs: FitInputs, budget: EstimatorBudget, role: str, time_conditioning: bool = False) -> SequenceNet:
    cfg = budget.backbone(inputs.vocab_size, inputs.length, time_conditioning=time_conditioning)
    digest = config_hash({"role": role, "seed": inputs.seed, "model": cfg.to_dict()})
    return build_seeded(lambda: SequenceNet(cfg), digest)


def _fit_classifier(net: SequenceNet, inputs: FitInputs, budget: EstimatorBudget, *, noisy: bool, label: str) -> SequenceNet:
    uses_time = net.config.time_conditioning

    def draw(gen: torch.Generator):
        xs, xt = batches.balanced(inputs.source, inputs.target, budget.batch_size, gen)
        x = torch.cat([xs, xt])
        y = torch.cat([torch.ones(len(xs)), torch.zeros(len(xt))])
        if not noisy:
            return x, torch.zeros(len(x)), y
        z, t = batches.masked(x, inputs.schedule, inputs.mask_id, gen)
        return z, t.float(), y

    def loss(model, batch, gen):
        z, t, y = batch
        return noisy_classifier_loss(-model(z, t if uses_time else None)[:, 0], y)

    train(net, loss, draw, budget.train_config(inputs.seed), progress=False, description=label)
    return net.eval()


def clean_classifier(inputs: FitInputs, budget: EstimatorBudget) -> SequenceNet:
    """Classifier of clean sequences; -logit estimates log r_0(x) = log q(x)/p(x)."""
    return _fit_classifier(_net(inputs, budget, "clean"), inputs, budget, noisy=False, label="clean classifier")


def noisy_classifier(inputs: FitInputs, budget: EstimatorBudget, *, time_conditioning: bool) -> SequenceNet:
    """Classifier of noisy z_t of both domains (t ~ U[0, 1] per row); -logit estimates log r(z)."""
    net = _net(inputs, budget, "noisy-time" if time_conditioning else "noisy", time_conditioning)
    return _fit_classifier(net, inputs, budget, noisy=True, label="noisy classifier")


class NoisyClassifier(RatioEstimator):
    """``noisy-classifier``: a domain classifier on noisy sequences of both domains.

    Loss: E_{p_t} softplus(log r_hat(z)) + E_{q_t} softplus(-log r_hat(z)) (balanced BCE with logit
    -log r_hat; :func:`~gtl_verify.estimators.losses.noisy_classifier_loss`). Minimiser: log r_hat =
    log q_t(z)/p_t(z), the exact noisy ratio (THEORY section 5). In practice it saturates when the
    domains are far apart (the density chasm: Rhodes et al. 2020): the cross-entropy is near 0 long
    before the logit reaches log r. Source: the suite's default since the first Markov benchmark.
    """

    name = "noisy-classifier"

    def _fit(self, inputs: FitInputs, budget: EstimatorBudget):
        net = noisy_classifier(inputs, budget, time_conditioning=False)
        return CheckedSequenceRatio(self.name, ClassifierRatio(net, n_source=1, n_target=1), {"classifier": net})
