"""Baselines from related work, built from the same backbones and objectives.

TCSM-style density-ratio post-training (Target Concrete Score Matching, arXiv 2504.16431): keep a
frozen reference denoiser p_ref and learn a small correction f so that

    p_theta(x^i = v | z)  proportional to  p_ref(x^i = v | z) * exp(f(z)_{i, v}),

i.e. logits_theta = logits_ref + f(z), trained on target data with the masked-diffusion loss. With
f(z)_{i, v} = log r(z^{i<-v}) (up to a per-position constant) this is exactly q(x^i | z) by R4, so
the parameterisation can represent the target posteriors.

AR2Diff (arXiv 2401.17181): train a causal (autoregressive) transformer on the source,
initialise the diffusion denoiser from its weights with bidirectional attention, continue with the
masked-diffusion loss, then fine-tune on the target. The AR model's exact likelihood is
log p(x) = sum_i log p(x^i | x^{<i}), with a start token (the mask id) before x^1.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .networks import BackboneConfig, DenoiserNet


class TCSMNet(nn.Module):
    """logits = reference(z, t) (frozen) + correction(z, t): an implicit density-ratio model."""

    def __init__(self, reference: DenoiserNet, correction: DenoiserNet) -> None:
        super().__init__()
        if reference.config.vocab_size != correction.config.vocab_size:
            raise ValueError(
                f"correction.config.vocab_size must equal the reference's {reference.config.vocab_size}, got {correction.config.vocab_size}"
            )
        self.reference, self.correction = reference, correction
        self.config = correction.config
        for p in self.reference.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "TCSMNet":
        super().train(mode)
        self.reference.eval()  # frozen: no dropout
        return self

    def forward(self, z: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        with torch.no_grad():
            ref = self.reference(z, t)
        return ref + self.correction(z, t)


def zero_correction(config: BackboneConfig) -> DenoiserNet:
    """A TCSM correction network f with a zero output head: TCSMNet(reference, f) starts exactly at
    the reference model (f(z) = 0)."""
    correction = DenoiserNet(config)
    nn.init.zeros_(correction.head.weight)
    nn.init.zeros_(correction.head.bias)
    return correction


def ar_inputs(x: torch.Tensor, start_id: int) -> torch.Tensor:
    """Teacher-forcing inputs: [start, x^1, ..., x^{L-1}]."""
    return torch.cat([torch.full_like(x[:, :1], start_id), x[:, :-1]], dim=1)


def ar_log_likelihood(net: DenoiserNet, x: torch.Tensor, start_id: int) -> torch.Tensor:
    """log p(x) = sum_i log p(x^i | x^{<i}) under a causal network, [B]."""
    if not net.config.causal:
        raise ValueError("net must be causal (BackboneConfig.causal=True) for an autoregressive likelihood")
    log_probs = F.log_softmax(net(ar_inputs(x, start_id)).float(), dim=-1)
    return log_probs.gather(-1, x[..., None]).squeeze(-1).sum(-1)


def ar_loss(net: DenoiserNet, x: torch.Tensor, start_id: int) -> torch.Tensor:
    """Next-token cross-entropy per token: -log p(x) / L, mean over the batch."""
    return -ar_log_likelihood(net, x, start_id).mean() / x.shape[1]


def diffusion_from_ar(ar_net: DenoiserNet) -> DenoiserNet:
    """A bidirectional denoiser with the AR model's weights (same sizes, causal=False)."""
    config = dataclasses.replace(ar_net.config, causal=False)
    net = DenoiserNet(config)
    net.load_state_dict(ar_net.state_dict())
    return net
