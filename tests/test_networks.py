"""Backbones, heads and the protocol adapters of trained networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gtl_verify.learned import ClassifierRatio, NetworkDenoiser, NetworkPlanner, NetworkRatio
from gtl_verify.networks import (
    Backbone,
    BackboneConfig,
    DenoiserNet,
    PositionNet,
    SequenceNet,
    build_network,
    confidence_features,
    count_parameters,
    load_network,
    save_network,
)
from gtl_verify.objectives import classifier_log_ratio, subs_log_probs
from gtl_verify.protocols import Denoiser, Planner, SequenceRatio

K, L = 5, 7


def small(**kw) -> BackboneConfig:
    base = dict(vocab_size=K, num_embeddings=K + 1, max_length=L + 3, hidden=16, blocks=2, heads=2, cond=8)
    base.update(kw)
    return BackboneConfig(**base)


def tokens(b: int = 3, length: int = L, high: int = K + 1, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, high, (b, length), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ config
def test_config_roundtrip_and_defaults():
    cfg = BackboneConfig(vocab_size=K, num_embeddings=K + 1, max_length=L)
    assert (cfg.hidden, cfg.blocks, cfg.heads, cfg.cond, cfg.positions) == (128, 2, 4, 64, "rotary")
    assert not cfg.time_conditioning and not cfg.causal
    assert BackboneConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown BackboneConfig keys"):
        BackboneConfig.from_dict({**cfg.to_dict(), "width": 3})


@pytest.mark.parametrize(
    "field, value, word",
    [
        ("vocab_size", 0, "vocab_size"),
        ("num_embeddings", K - 1, "num_embeddings"),
        ("max_length", 0, "max_length"),
        ("hidden", 15, "hidden"),  # not divisible by heads=2
        ("heads", 0, "heads"),
        ("blocks", -1, "blocks"),
        ("cond", 1, "cond"),
        ("mlp_ratio", 0.0, "mlp_ratio"),
        ("dropout", 1.0, "dropout"),
        ("dropout", -0.1, "dropout"),
        ("positions", "sinusoidal", "positions"),
        ("time_conditioning", 1, "time_conditioning"),
        ("causal", "yes", "causal"),
    ],
)
def test_invalid_config_names_parameter(field, value, word):
    with pytest.raises(ValueError, match=word):
        small(**{field: value})


def test_rotary_needs_even_head_size():
    with pytest.raises(ValueError, match="even head size"):
        small(hidden=6, heads=2)
    small(hidden=6, heads=2, positions="learned")  # fine without rotary


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("positions", ["rotary", "learned"])
@pytest.mark.parametrize("time_conditioning", [False, True])
def test_head_shapes(positions, time_conditioning):
    torch.manual_seed(0)
    cfg = small(positions=positions, time_conditioning=time_conditioning)
    z, t = tokens(), torch.tensor([0.1, 0.5, 0.9])
    assert Backbone(cfg)(z, t).shape == (3, L, 16)
    assert DenoiserNet(cfg)(z, t).shape == (3, L, K)
    assert SequenceNet(cfg)(z, t).shape == (3, 1)
    assert SequenceNet(cfg, outputs=4)(z, t).shape == (3, 4)
    assert PositionNet(cfg)(z, t).shape == (3, L)
    # shorter sequences than max_length are accepted
    assert DenoiserNet(cfg)(z[:, :2], t).shape == (3, 2, K)


@settings(max_examples=20)
@given(
    hidden_heads=st.sampled_from([(8, 1), (8, 2), (12, 3), (16, 4)]),
    blocks=st.integers(0, 2),
    b=st.integers(1, 3),
    length=st.integers(1, 6),
    positions=st.sampled_from(["rotary", "learned"]),
    causal=st.booleans(),
)
def test_shapes_property(hidden_heads, blocks, b, length, positions, causal):
    hidden, heads = hidden_heads
    cfg = small(hidden=hidden, heads=heads, blocks=blocks, positions=positions, causal=causal, max_length=6)
    net = DenoiserNet(cfg)
    out = net(tokens(b, length))
    assert out.shape == (b, length, K) and torch.isfinite(out).all()


def test_count_parameters():
    net = DenoiserNet(small())
    total = sum(p.numel() for p in net.parameters())
    assert count_parameters(net) == total > 0
    net.head.weight.requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == total - net.head.weight.numel()
    assert count_parameters(net) == total


def test_same_seed_same_init():
    torch.manual_seed(3)
    a = DenoiserNet(small())
    torch.manual_seed(3)
    b = DenoiserNet(small())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ------------------------------------------------------------------ time conditioning
def test_time_changes_output():
    torch.manual_seed(0)
    net = DenoiserNet(small(time_conditioning=True))
    z = tokens(1).expand(4, -1)
    out = net(z, torch.tensor([0.0, 0.3, 0.6, 1.0]))
    for i in range(1, 4):
        assert (out[i] - out[0]).abs().max() > 1e-4
    # the same t gives the same output; a scalar t broadcasts
    assert torch.allclose(net(z, 0.3), net(z, torch.full((4,), 0.3)))
    seq = SequenceNet(small(time_conditioning=True))
    assert (seq(z[:2], torch.tensor([0.1, 0.9]))[0] - seq(z[:2], torch.tensor([0.1, 0.9]))[1]).abs().max() > 1e-5


def test_time_gradient_reaches_time_mlp():
    torch.manual_seed(0)
    net = DenoiserNet(small(time_conditioning=True))
    net(tokens(), torch.tensor([0.2, 0.4, 0.8])).square().sum().backward()
    grads = [p.grad for p in net.backbone.time_mlp.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_untimed_network_ignores_t():
    torch.manual_seed(0)
    net = DenoiserNet(small())
    z = tokens()
    assert torch.equal(net(z), net(z, torch.tensor([0.1, 0.5, 0.9])))
    assert net.backbone.time_mlp is None and net.backbone.constant_cond.requires_grad


def test_time_required_and_validated():
    net = DenoiserNet(small(time_conditioning=True))
    with pytest.raises(ValueError, match="t is required"):
        net(tokens())
    with pytest.raises(ValueError, match="t must"):
        net(tokens(), torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        net(tokens(), torch.tensor([0.1, 0.2, 1.5]))


# ------------------------------------------------------------------ inputs and mask row
def test_mask_row_exists():
    net = DenoiserNet(small())
    assert net.backbone.embedding.num_embeddings == K + 1
    z = torch.full((2, L), K)  # all masked: the mask id K has its own embedding row
    assert torch.isfinite(net(z)).all()


def test_token_outside_embedding_raises():
    net = DenoiserNet(small())
    with pytest.raises(ValueError, match="z has a token outside 0..5"):
        net(torch.full((1, L), K + 1))
    with pytest.raises(ValueError, match="z must be an integer tensor"):
        net(torch.zeros(1, L))
    # the reference defect: a classifier whose embedding has no row for the mask id
    no_mask_row = SequenceNet(small(num_embeddings=K, time_conditioning=True))
    with pytest.raises(ValueError, match="z has a token outside"):
        no_mask_row(torch.full((1, L), K), torch.tensor([0.5]))


def test_too_long_raises():
    net = DenoiserNet(small(max_length=4))
    with pytest.raises(ValueError, match="max_length=4"):
        net(tokens(length=5))


# ------------------------------------------------------------------ attention
def test_causal_attention_ignores_future_tokens():
    torch.manual_seed(0)
    z = tokens(1, seed=1)
    z2 = z.clone()
    z2[0, -1] = (z[0, -1] + 1) % K
    causal = DenoiserNet(small(causal=True))
    a, b = causal(z), causal(z2)
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-6)
    bidirectional = DenoiserNet(small())
    a, b = bidirectional(z), bidirectional(z2)
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-6


@pytest.mark.parametrize("positions", ["rotary", "learned"])
def test_positions_break_permutation_equivariance(positions):
    torch.manual_seed(0)
    net = DenoiserNet(small(positions=positions))
    z = tokens(1, seed=2)
    perm = torch.randperm(L, generator=torch.Generator().manual_seed(0))
    assert (net(z[:, perm]) - net(z)[:, perm]).abs().max() > 1e-5


def test_padding_does_not_change_pooled_output():
    torch.manual_seed(0)
    net = SequenceNet(small())
    z = tokens(2)
    keep = torch.ones(2, L, dtype=torch.bool)
    keep[:, 5:] = False
    z2 = z.clone()
    z2[:, 5:] = (z[:, 5:] + 1) % K
    assert torch.allclose(net(z, attention_mask=keep), net(z2, attention_mask=keep), atol=1e-6)
    assert torch.allclose(net(z, attention_mask=keep), net(z[:, :5]), atol=1e-5)


# ------------------------------------------------------------------ planner head
def test_position_net_features():
    torch.manual_seed(0)
    net = PositionNet(small(), log_prob_features=True)
    z = tokens()
    lp = subs_log_probs(torch.randn(3, L, K), z, K)
    feats = confidence_features(lp)
    assert feats.shape == (3, L, 3) and torch.isfinite(feats).all()
    unmasked = z != K
    assert torch.allclose(feats[..., 0][unmasked], torch.ones(())) and torch.allclose(feats[..., 1][unmasked], torch.zeros(()))
    assert net(z, None, lp).shape == (3, L)
    with pytest.raises(ValueError, match="log_probs is required"):
        net(z)


# ------------------------------------------------------------------ save / load
@pytest.mark.parametrize("kind", ["denoiser", "sequence", "position"])
def test_save_load_roundtrip(tmp_path, kind):
    torch.manual_seed(0)
    spec = {"kind": kind, "config": small(time_conditioning=True).to_dict(), "outputs": 2}
    net = build_network(spec)
    path = save_network(net, tmp_path / "net.pt", meta={"note": 1})
    loaded, meta = load_network(path)
    assert meta == {"note": 1} and not loaded.training
    z, t = tokens(), torch.tensor([0.2, 0.5, 0.7])
    net.eval()
    assert torch.equal(net(z, t), loaded(z, t))
    with pytest.raises(ValueError, match="network kind"):
        build_network({"kind": "nope", "config": small().to_dict()})


# ------------------------------------------------------------------ adapters
def test_network_denoiser_protocol():
    torch.manual_seed(0)
    net = DenoiserNet(small())
    den = NetworkDenoiser(net, mask_id=K, max_batch=2)
    assert isinstance(den, Denoiser) and den.vocab_size == K and den.mask_id == K
    z = tokens(5)
    out = den(z)
    assert out.dtype == torch.float32 and out.shape == (5, L, K)
    assert torch.allclose(torch.logsumexp(out, -1), torch.zeros(5, L), atol=1e-5)
    unmasked = z != K
    assert torch.equal(out.exp()[unmasked].argmax(-1), z[unmasked])
    # chunked evaluation equals one pass; training mode restored; no graph kept
    net.train()
    ref = subs_log_probs(net.eval()(z), z, K)
    net.train()
    out2 = den(z)
    assert net.training and not out2.requires_grad
    assert torch.allclose(out2, ref, atol=1e-6)


def test_network_denoiser_mask_inside_vocabulary():
    torch.manual_seed(0)
    net = DenoiserNet(small(num_embeddings=K))  # tokenizer-style: mask id 2 lies inside 0..K-1
    den = NetworkDenoiser(net, mask_id=2)
    z = tokens(4, high=K)
    out = den(z)
    masked = z == 2
    assert masked.any()
    assert torch.isinf(out[masked][:, 2]).all()  # no mass on the mask token
    with pytest.raises(ValueError, match="no embedding row"):
        NetworkDenoiser(net, mask_id=K)


def test_time_adapters_need_t():
    torch.manual_seed(0)
    net = DenoiserNet(small(time_conditioning=True))
    den = NetworkDenoiser(net, mask_id=K)
    assert den.uses_time
    with pytest.raises(ValueError, match="t is required"):
        den(tokens())
    assert den(tokens(), torch.tensor([0.1, 0.2, 0.3])).shape == (3, L, K)
    with pytest.raises(ValueError, match="time_conditioning=False"):
        NetworkDenoiser(DenoiserNet(small()), mask_id=K, uses_time=True)


def test_ratio_adapters():
    torch.manual_seed(0)
    net = SequenceNet(small())
    z = tokens(6)
    ratio = NetworkRatio(net, max_batch=4)
    assert isinstance(ratio, SequenceRatio)
    out = ratio(z)
    assert out.shape == (6,) and out.dtype == torch.float32
    with torch.no_grad():
        logit = net.eval()(z)[:, 0]
    assert torch.allclose(out, logit, atol=1e-6)
    clf = ClassifierRatio(net, n_source=1000, n_target=20, smoothing=0.1)
    expected = classifier_log_ratio(logit, 1000, 20, 0.1).float()
    assert torch.allclose(clf(z), expected, atol=1e-5)
    with pytest.raises(ValueError, match="smoothing"):
        ClassifierRatio(net, 10, 10, smoothing=0.5)
    timed = NetworkRatio(SequenceNet(small(time_conditioning=True)))
    with pytest.raises(ValueError, match="t is required"):
        timed(z)
    assert timed(z, torch.full((6,), 0.5)).shape == (6,)


def test_planner_adapter():
    torch.manual_seed(0)
    z = tokens()
    lp = subs_log_probs(torch.randn(3, L, K), z, K)
    plain = NetworkPlanner(PositionNet(small()))
    assert isinstance(plain, Planner)
    assert plain(z, lp).shape == (3, L)
    featured = NetworkPlanner(PositionNet(small(), log_prob_features=True))
    out = featured(z, lp)
    assert out.shape == (3, L) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="log_probs is required"):
        featured(z, None)


def _reference_block_forward(block, x, c, rotary, attn_mask):
    """The DiT block as first written (rotary on the permuted [B, heads, L, d] views of q and k, one
    at a time): the faster block must give the same bits, forward and backward."""
    from gtl_verify.networks import _modulate, apply_rotary

    b, length, h = x.shape
    shift1, scale1, gate1, shift2, scale2, gate2 = block.modulation(F.silu(c)).chunk(6, dim=-1)
    y = _modulate(block.norm1(x), shift1, scale1)
    q, k, v = block.qkv(y).reshape(b, length, 3, block.heads, h // block.heads).permute(2, 0, 3, 1, 4)
    if rotary is not None:
        cos, sin = rotary
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    if attn_mask is None:
        a = F.scaled_dot_product_attention(q, k, v, is_causal=block.causal)
    else:
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    a = a.transpose(1, 2).reshape(b, length, h)
    x = x + gate1[:, None, :] * block.drop(block.proj(a))
    y = _modulate(block.norm2(x), shift2, scale2)
    return x + gate2[:, None, :] * block.drop(block.mlp(y))


@pytest.mark.parametrize("positions,causal,padded", [("rotary", False, False), ("rotary", True, False),
                                                    ("rotary", False, True), ("learned", False, False)])
def test_block_bit_identical_to_reference(monkeypatch, positions, causal, padded):
    """Outputs and every parameter gradient equal (torch.equal) those of the reference block."""
    from gtl_verify.networks import DiTBlock

    torch.manual_seed(3)
    cfg = BackboneConfig(vocab_size=5, num_embeddings=6, max_length=12, hidden=32, blocks=2, heads=4, cond=16,
                         positions=positions, causal=causal)
    net = DenoiserNet(cfg)
    z = torch.randint(0, 6, (7, 12))
    mask = (torch.arange(12)[None, :] < torch.tensor([12, 9, 5, 12, 1, 7, 3])[:, None]) if padded else None

    def run():
        net.zero_grad()
        out = net(z, attention_mask=mask)
        out.pow(2).sum().backward()
        return out.detach(), [p.grad.clone() for p in net.parameters()]

    fast_out, fast_grads = run()
    monkeypatch.setattr(DiTBlock, "forward", _reference_block_forward)
    ref_out, ref_grads = run()
    assert torch.equal(fast_out, ref_out)
    assert all(torch.equal(a, b) for a, b in zip(fast_grads, ref_grads))
