"""Network outputs are cast up before guidance: under bf16 autocast (the GPU configs) the output
heads run in float32, so the guided law moves only by what the bf16 backbone itself changes."""

from __future__ import annotations

import math

import pytest
import torch

from gtl_verify import guidance
from gtl_verify.amortised import SingleSiteRatioNet
from gtl_verify.learned import NetworkRatio
from gtl_verify.networks import BackboneConfig, DenoiserNet, PositionNet, SequenceNet

K, L = 6, 10
SILU_MAX_SLOPE = 1.0998  # max_x d/dx [x sigmoid(x)], attained at x ~ 2.4


def _config() -> BackboneConfig:
    return BackboneConfig(vocab_size=K, num_embeddings=K + 1, max_length=L, hidden=64, blocks=2, heads=4, cond=32)


def _ratio_net(level: float) -> SequenceNet:
    torch.manual_seed(0)
    net = SequenceNet(_config()).eval()
    with torch.no_grad():
        net.head[-1].bias.fill_(level)  # log-ratios around `level` nats, where bf16's spacing is level / 128
    return net


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _head_lipschitz(net: SequenceNet) -> float:
    """Lipschitz constant of the head Linear -> SiLU -> Linear in the 2-norm of its input."""
    first, last = net.head[0], net.head[2]
    with torch.no_grad():
        return float(torch.linalg.matrix_norm(last.weight, 2) * SILU_MAX_SLOPE * torch.linalg.matrix_norm(first.weight, 2))


@pytest.mark.parametrize("level", [3.0, 30.0])
def test_ratio_and_guided_law_under_bf16_autocast_stay_within_the_backbone_bound(level):
    """Tolerance: with the head in float32, |delta log r| <= Lip(head) * ||delta pooled||_2 (the
    head is a fixed float32 function of the pooled hidden state, which is the only bf16 input),
    plus float32 rounding; a token law q ∝ p r^gamma then moves by TV <= (exp(2 gamma delta) - 1) / 2."""
    net = _ratio_net(level)
    ratio = NetworkRatio(net)
    gen = torch.Generator().manual_seed(1)
    z = torch.randint(0, K + 1, (8, L), generator=gen)
    z[:, ::2] = K  # half the positions masked
    positions = (z == K).nonzero()
    lp = torch.log_softmax(torch.randn(len(positions), K, generator=gen, dtype=torch.float64), -1)
    values, ids = guidance.top_n(lp, 4)

    with torch.no_grad():
        log_r32 = guidance.score_candidates(ratio, z, positions, ids)
        cand = guidance.substitute(z, positions, ids).reshape(-1, L)
        pooled32 = net.backbone(cand).mean(1)
        with _bf16():
            log_r16 = guidance.score_candidates(ratio, z, positions, ids)
            pooled16 = net.backbone(cand).float().mean(1)
    assert log_r16.dtype == torch.float64
    bound = (_head_lipschitz(net) * (pooled16 - pooled32).norm(dim=-1)).reshape(ids.shape).double()
    slack = 1e-5 * (1 + log_r32.abs())
    assert ((log_r16 - log_r32).abs() <= bound + slack).all()
    # the bound is tight enough to catch the fault it guards against: rounding the outputs to bf16
    if level >= 30:
        rounded = log_r32.to(torch.bfloat16).double()
        assert ((rounded - log_r32).abs() > bound + slack).any()

    for gamma in (1.0, 2.0):
        q32 = guidance.combine(values, log_r32, gamma).exp()
        q16 = guidance.combine(values, log_r16, gamma).exp()
        tv = 0.5 * (q16 - q32).abs().sum(-1)
        delta = (bound + slack).amax(-1)
        assert (tv <= 0.5 * torch.expm1(2 * gamma * delta) + 1e-12).all()


def test_every_output_head_is_float32_under_autocast():
    cfg = _config()
    z = torch.randint(0, K + 1, (3, L), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    nets = [DenoiserNet(cfg), SequenceNet(cfg), PositionNet(cfg), SingleSiteRatioNet(cfg)]
    with torch.no_grad(), _bf16():
        outs = [nets[0](z), nets[1](z), nets[2](z), *nets[3](z)]
    assert all(o.dtype == torch.float32 for o in outs)


def test_sampler_inputs_are_float64_whatever_the_network_dtype():
    net = _ratio_net(5.0)
    z = torch.full((2, L), K)
    positions = (z == K).nonzero()
    ids = torch.arange(K).expand(len(positions), K)

    def half_ratio(zz, t=None):  # a ratio that answers in bfloat16
        return NetworkRatio(net)(zz, t).to(torch.bfloat16)

    out = guidance.score_candidates(half_ratio, z, positions, ids)
    assert out.dtype == torch.float64 and math.isfinite(float(out.abs().max()))
