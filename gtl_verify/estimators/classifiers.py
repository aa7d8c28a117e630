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

from .. import recipes
from ..learned import ClassifierRatio
from ..networks import SequenceNet
from ..training import build_seeded, config_hash, train
from .base import CheckedSequenceRatio, EstimatorBudget, FitInputs, RatioEstimator


def sequence_net(inputs: FitInputs, budget: EstimatorBudget, role: str, time_conditioning: bool = False) -> SequenceNet:
    """A one-output :class:`~gtl_verify.networks.SequenceNet` of the budget's size on the fit's
    device, its initial weights seeded by (``role``, seed, backbone)."""
    cfg = budget.backbone(inputs.vocab_size, inputs.length, time_conditioning=time_conditioning)
    digest = config_hash({"role": role, "seed": inputs.seed, "model": cfg.to_dict()})
    return build_seeded(lambda: SequenceNet(cfg), digest).to(inputs.device)


def fit_recipe(net: SequenceNet, recipe: recipes.Recipe, inputs: FitInputs, budget: EstimatorBudget,
               label: str) -> SequenceNet:
    """``net`` trained in place on a :class:`gtl_verify.recipes.Recipe` within ``budget``; returned in eval mode."""
    train(net, recipe.loss, recipe.data, budget.train_config(inputs.seed), progress=False, description=label)
    return net.eval()


def clean_classifier(inputs: FitInputs, budget: EstimatorBudget) -> SequenceNet:
    """Classifier of clean sequences (:func:`gtl_verify.recipes.clean_classifier`); -logit
    estimates log r_0(x) = log q(x)/p(x)."""
    net = sequence_net(inputs, budget, "clean")
    recipe = recipes.clean_classifier(net, inputs.source, inputs.target, budget.batch_size)
    return fit_recipe(net, recipe, inputs, budget, "clean classifier")


def noisy_classifier(inputs: FitInputs, budget: EstimatorBudget, *, time_conditioning: bool) -> SequenceNet:
    """Classifier of noisy z_t of both domains, t ~ U[0, 1] per row
    (:func:`gtl_verify.recipes.noisy_classifier`); -logit estimates log r(z)."""
    net = sequence_net(inputs, budget, "noisy-time" if time_conditioning else "noisy", time_conditioning)
    recipe = recipes.noisy_classifier(net, inputs.source, inputs.target, budget.batch_size, schedule=inputs.schedule,
                                      mask_id=inputs.mask_id, time_conditioned=time_conditioning)
    return fit_recipe(net, recipe, inputs, budget, "noisy classifier")


class NoisyClassifier(RatioEstimator):
    """``noisy-classifier``: a domain classifier on noisy sequences of both domains.

    Loss: E_{p_t} softplus(log r_hat(z)) + E_{q_t} softplus(-log r_hat(z)) (balanced BCE with logit
    -log r_hat; :func:`~gtl_verify.estimators.losses.noisy_classifier_loss`). Minimiser: log r_hat =
    log q_t(z)/p_t(z), the exact noisy ratio (THEORY section 5). In practice it saturates when the
    domains are far apart (the density chasm: Rhodes et al. 2020): the cross-entropy is near 0 long
    before the logit reaches log r. Source: the Markov benchmark's default until ``guided-likelihood``
    replaced it.
    """

    name = "noisy-classifier"
    part_names = ("classifier",)

    def _fit(self, inputs: FitInputs, budget: EstimatorBudget):
        return self.assemble({"classifier": noisy_classifier(inputs, budget, time_conditioning=False)})

    def _assemble(self, parts):
        return CheckedSequenceRatio(self.name, ClassifierRatio(parts["classifier"], n_source=1, n_target=1), parts)
