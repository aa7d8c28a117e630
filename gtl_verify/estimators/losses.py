"""The estimators' losses as pure, optionally weighted functions of tensors.

The sequence-level losses are the per-row terms of :mod:`gtl_verify.objectives` that the training
recipes (:mod:`gtl_verify.recipes`) minimise (``classifier_loss``, ``ratio_regression_loss``),
reduced by a weighted mean: one definition serves the training and the population checks.

Weights make the population losses computable exactly: enumerate the noisy states (and clean
sequences), weight each row by its probability, and the weighted sum is the expectation the
stochastic training loss estimates (``weight`` None = plain mean over rows). Conventions: log r
values in nats; ``log_probs`` are the frozen source denoiser's log p(x^i = v | z) [B, L, K];
``token_probs`` [B, L, K] are the labels at masked positions (one-hot of the clean token in
training, the exact q(x^i = v | z) in a population check); ``masked`` [B, L] is z == mask id.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..objectives import classifier_loss, ratio_regression_loss


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return values.mean()
    weight = weight.to(values.dtype).reshape(values.shape)
    return (values * weight).sum() / weight.sum()


def noisy_classifier_loss(log_ratio: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of a domain classifier with logit -log r(z) (label 1 = source z ~ p_t,
    0 = target z ~ q_t), in balanced batches:

        E_{p_t} softplus(log r(z)) + E_{q_t} softplus(-log r(z)),

    minimised pointwise at log r(z) = log q_t(z) / p_t(z) (the logit identity of THEORY section 5)."""
    return _weighted_mean(classifier_loss(-log_ratio, label, reduction="none"), weight)


def ratio_space_loss(log_ratio: torch.Tensor, clean_log_ratio: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """E_{x ~ p, z ~ k(z | x)} (r_hat(z) - r_0(x))^2 on masked source samples; minimiser
    E[r_0(x) | z] = r(z) (R2; THEORY section 5)."""
    return _weighted_mean(ratio_regression_loss(log_ratio, clean_log_ratio, "ratio", reduction="none"), weight)


def log_space_loss(log_ratio: torch.Tensor, clean_log_ratio: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """E_{x ~ p, z ~ k(z | x)} (log r_hat(z) - log r_0(x))^2; minimiser E[log r_0(x) | z] <= log r(z) (Jensen-biased)."""
    return _weighted_mean(ratio_regression_loss(log_ratio, clean_log_ratio, "log", reduction="none"), weight)


def paper_loss(log_ratio_source: torch.Tensor, clean_log_ratio: torch.Tensor, log_ratio_target: torch.Tensor,
               time_classifier_log_ratio: torch.Tensor, *, cycle_weight: float = 0.1,
               source_weight: torch.Tensor | None = None, target_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Reference pipeline: log-space regression on masked source z plus ``cycle_weight`` x log-space
    regression on masked target z against a time-dependent classifier's log-ratio c(z):

        E_{p_t}(f(z) - E[log r_0 | z])^2-part + w E_{q_t}(f(z) - c(z))^2.

    Pointwise minimiser f*(z) = (p_t(z) E_p[log r_0 | z] + w q_t(z) c(z)) / (p_t(z) + w q_t(z)): the
    exact log r only where the Jensen gap vanishes (not in general)."""
    main = log_space_loss(log_ratio_source, clean_log_ratio, source_weight)
    cycle = log_space_loss(log_ratio_target, time_classifier_log_ratio.detach(), target_weight)
    return main + cycle_weight * cycle


def guided_cross_entropy(log_probs: torch.Tensor, site_log_ratio: torch.Tensor, token_probs: torch.Tensor,
                         masked: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the masked target tokens under the guided single-site posterior

        g(v | z, i) = softmax_v( log p(x^i = v | z) + log r_hat(z^{i<-v}) ),

    summed over masked positions, averaged over rows (weighted). Its minimiser over the guided law
    is g = q(x^i = v | z) (a proper scoring rule), reached by the exact ratio (THEORY section 3:
    p(v|z) r(z^{i<-v}) / r(z) = q(v|z), R4); any per-position constant in log r_hat cancels."""
    guided = torch.log_softmax(log_probs + site_log_ratio, dim=-1)
    guided = torch.where(token_probs > 0, guided, torch.zeros((), dtype=guided.dtype))  # 0 x -inf = 0
    per_site = -(token_probs * guided).sum(-1)
    per_row = torch.where(masked, per_site, torch.zeros((), dtype=per_site.dtype)).sum(-1)
    return _weighted_mean(per_row, weight)


def site_nce_loss(log_probs: torch.Tensor, increment: torch.Tensor, token_probs: torch.Tensor, masked: torch.Tensor,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Noise-contrastive loss of one telescoping factor: at a masked position i of z ~ q_t, the
    revealed target token (positive, label ``token_probs``) against the source denoiser's token
    law p(x^i = . | z) (noise, integrated exactly over the K tokens):

        sum_v [ q(v | z) softplus(-d(z, i, v)) + p(v | z) softplus(d(z, i, v)) ],

    minimised pointwise at d = log q(v | z) / p(v | z) = log r(z^{i<-v}) - log r(z), the increment
    of the telescoping sum log r(z) = sum over reveals of such factors (Gutmann & Hyvarinen 2010;
    Rhodes et al. 2020). Tokens with p = 0 and no label carry no loss."""
    p = log_probs.exp()
    per = token_probs * F.softplus(-increment) + torch.where(p > 0, p * F.softplus(increment), torch.zeros((), dtype=p.dtype))
    per_row = torch.where(masked, per.sum(-1), torch.zeros((), dtype=per.dtype)).sum(-1)
    return _weighted_mean(per_row, weight)


__all__ = ["guided_cross_entropy", "log_space_loss", "noisy_classifier_loss", "paper_loss", "ratio_space_loss",
           "site_nce_loss"]
