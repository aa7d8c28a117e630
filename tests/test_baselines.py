import pytest
import torch

from gtl_verify.baselines import TCSMNet, ar_log_likelihood, ar_loss, diffusion_from_ar, zero_correction
from gtl_verify.forward import enumerate_sequences
from gtl_verify.networks import BackboneConfig, DenoiserNet
from markov.oracle import PairOracle
from markov.presets import make_pair


def _cfg(causal=False, k=3, length=4, hidden=16):
    return BackboneConfig(vocab_size=k, num_embeddings=k + 1, max_length=length, hidden=hidden, blocks=1, heads=2, cond=8, causal=causal)


@pytest.mark.parametrize("preset", ["paper", "dirichlet"])
def test_tcsm_parameterisation_is_exact_with_the_single_site_ratio(preset):
    """softmax(log p_ref(x^i|z) + log r(z^{i<-v})) = q(x^i|z): the exact correction exists (R4)."""
    pair = make_pair(preset, seed=2)
    oracle = PairOracle(pair)
    gen = torch.Generator().manual_seed(0)
    x = pair.source.sample(64, 12, gen)
    z = torch.where(torch.rand(x.shape, generator=gen) < 0.5, x, pair.source.vocab_size)
    logits = oracle.source(z) + oracle.single_site(z)
    logits = torch.where(oracle.source(z) > -torch.inf, logits, -torch.inf)
    masked = z == pair.source.vocab_size
    got = torch.softmax(logits, -1)[masked]
    assert torch.allclose(got, oracle.target(z).exp()[masked], atol=1e-10)


def test_tcsm_starts_at_the_reference_and_keeps_it_frozen():
    torch.manual_seed(0)
    ref, corr = DenoiserNet(_cfg()), zero_correction(_cfg(hidden=8))
    net = TCSMNet(ref, corr)
    z = torch.randint(0, 4, (5, 4))
    assert torch.allclose(net(z), ref(z))
    net(z).sum().backward()
    assert all(p.grad is None for p in ref.parameters())
    assert corr.head.weight.grad is not None
    with pytest.raises(ValueError, match="vocab_size"):
        TCSMNet(ref, DenoiserNet(_cfg(k=4)))


def test_autoregressive_likelihood_is_normalised_and_causal():
    torch.manual_seed(1)
    net = DenoiserNet(_cfg(causal=True, k=3, length=4))
    with torch.no_grad():
        seqs = enumerate_sequences(3, 4)
        total = ar_log_likelihood(net, seqs, start_id=3).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)  # a proper distribution over all 3^4 sequences
    assert ar_loss(net, seqs[:10], 3).item() > 0
    with pytest.raises(ValueError, match="causal"):
        ar_log_likelihood(DenoiserNet(_cfg()), seqs[:2], 3)


def test_diffusion_from_ar_copies_weights_and_attends_both_ways():
    torch.manual_seed(2)
    ar = DenoiserNet(_cfg(causal=True))
    diff = diffusion_from_ar(ar)
    assert not diff.config.causal
    assert all(torch.equal(a, b) for a, b in zip(ar.state_dict().values(), diff.state_dict().values()))
    z = torch.randint(0, 3, (1, 4))
    z2 = z.clone()
    z2[0, -1] = (z[0, -1] + 1) % 3
    assert not torch.allclose(diff(z)[0, 0], diff(z2)[0, 0])  # the first position sees the last
    assert torch.allclose(ar(z)[0, 0], ar(z2)[0, 0])  # the causal model does not
