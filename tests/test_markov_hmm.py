"""Hidden Markov model oracles: equal to the chain oracles on identity emissions, to brute-force
enumeration on small cases, finite on long sequences; the regime preset's ratio is long-range."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gtl_verify.enumeration import EnumerationOracle, LawPair
from gtl_verify.forward import MaskedProcess
from gtl_verify.schedules import LogLinearSchedule
from gtl_verify.testing import (
    CHAIN_KINDS,
    assert_denoiser_exact,
    assert_ratio_calibrated,
    chain_pairs,
    hmm_pairs,
    masked_states,
)
from markov.chain import MarkovChain
from markov.hmm import (
    HiddenMarkovModel,
    HMMOracle,
    HMMPair,
    HMMPairOracle,
    best_first_order_chain,
    make_hmm_pair,
    random_hmm_pair,
)
from markov.oracle import PairOracle
from markov.presets import ChainPair

F64 = torch.float64


def same_logs(got: torch.Tensor, want: torch.Tensor, tol: float = 1e-10) -> bool:
    """Equal infinities with sign, NaN at the same places, finite entries within tol."""
    if not (torch.equal(torch.isnan(got), torch.isnan(want)) and torch.equal(torch.isposinf(got), torch.isposinf(want))
            and torch.equal(torch.isneginf(got), torch.isneginf(want))):
        return False
    fin = torch.isfinite(want)
    return bool(((got[fin] - want[fin]).abs() <= tol).all())


def random_masks(pair, n: int, length: int, seed: int) -> torch.Tensor:
    """Masked draws of both laws (some impossible under the other law), the first row fully masked."""
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([pair.source.sample(n, length, g), pair.target.sample(n, length, g)])
    z = torch.where(torch.rand(x.shape, generator=g, dtype=F64) < torch.rand(len(x), 1, generator=g, dtype=F64),
                    pair.vocab_size, x)
    z[0] = pair.vocab_size
    return z


@given(chain_pairs(kinds=CHAIN_KINDS), st.integers(1, 7), st.integers(0, 2**31))
def test_identity_emission_hmm_agrees_with_the_chain_oracle(pair, length, seed):
    chain, hmm = PairOracle(pair), HMMPairOracle(HMMPair.from_chains(pair))
    z = random_masks(pair, 6, length, seed)
    for which in ("source", "target"):
        want, got = getattr(chain, which).posterior(z), getattr(hmm, which).posterior(z)
        assert same_logs(got[0], want.log_marginals) and same_logs(got[1], want.log_obs)
    assert same_logs(hmm(z), chain(z))
    assert same_logs(hmm.single_site(z), chain.single_site(z))


def enumeration(pair, length: int) -> EnumerationOracle:
    laws = LawPair.from_tables(pair.source.table(length), pair.target.table(length), pair.vocab_size, length)
    return EnumerationOracle(laws, MaskedProcess(pair.vocab_size, LogLinearSchedule()))


@given(hmm_pairs(vocab=(2, 4), hidden=(1, 3)), st.integers(1, 4), st.data())
def test_hmm_oracles_agree_with_brute_force_enumeration(pair, length, data):
    z = data.draw(masked_states(pair, length))
    brute = enumeration(pair, length)
    oracle = HMMPairOracle(pair)
    assert_denoiser_exact(oracle.source, brute, z)
    assert_denoiser_exact(oracle.target, brute, z, which="target")
    assert_ratio_calibrated(oracle, brute, z, tol=1e-9)


def hidden_path_table(hmm: HiddenMarkovModel, length: int) -> torch.Tensor:
    """p(x) by explicit sums over every hidden path (independent of the recursions)."""
    k, h = hmm.vocab_size, hmm.num_hidden
    out = torch.zeros(k**length, dtype=F64)
    for i, x in enumerate(itertools.product(range(k), repeat=length)):
        for path in itertools.product(range(h), repeat=length):
            p = hmm.initial[path[0]] * hmm.emission[path[0], x[0]]
            for j in range(1, length):
                p = p * hmm.transition[path[j - 1], path[j]] * hmm.emission[path[j], x[j]]
            out[i] += p
    return out


@pytest.mark.parametrize("seed, sparse", [(0, False), (1, True), (2, True)])
def test_table_is_the_sum_over_hidden_paths(seed, sparse):
    pair = random_hmm_pair(seed, 3, 2, 3, sparse)
    for hmm in (pair.source, pair.target):
        torch.testing.assert_close(hmm.table(3), hidden_path_table(hmm, 3), rtol=0, atol=1e-14)
    assert not ((pair.source.table(3) == 0) & (pair.target.table(3) > 0)).any()
    assert (pair.target.table(3) == 0).any() == sparse  # sparse targets never emit some tokens


def test_long_sequences_stay_finite_and_normalised():
    pair = make_hmm_pair("regime", switch=1e-3)
    g = torch.Generator().manual_seed(0)
    x = pair.target.sample(4, 3000, g)
    z = torch.where(torch.rand(x.shape, generator=g) < 0.5, 4, x)
    log_marg, log_obs = HMMOracle(pair.target).posterior(z)
    assert torch.isfinite(log_obs).all() and log_obs.max() < -1000
    torch.testing.assert_close(log_marg.exp().sum(-1), torch.ones(4, 3000, dtype=F64), rtol=0, atol=1e-12)
    assert torch.isfinite(HMMPairOracle(pair)(z)).all()


def test_samples_follow_the_table():
    from scipy.stats import chisquare

    hmm = random_hmm_pair(5, 3, 2, 2, True).target
    x = hmm.sample(40_000, 2, torch.Generator().manual_seed(1))
    counts = torch.bincount(x[:, 0] * 3 + x[:, 1], minlength=9).to(F64)
    table = hmm.table(2)
    assert (counts[table == 0] == 0).all()
    live = table > 0
    assert chisquare(counts[live].numpy(), (table[live] * 40_000).numpy()).pvalue > 1e-3


def test_regime_ratio_depends_on_long_range_structure_a_chain_cannot_capture():
    """z1, z2 agree next to the masked position and differ only three or more positions away. The
    first-order chain with the target's exact bigram statistics gives both the same single-site ratio;
    the exact HMM ratio tells them apart (the far tokens reveal the hidden regime)."""
    pair = make_hmm_pair("regime", vocab_size=4, switch=0.02, emphasis=0.8)
    m = pair.vocab_size
    z1 = torch.tensor([[0, 1, 0, 0, m, 1, 1, 0, 1]])
    z2 = torch.tensor([[3, 2, 3, 0, m, 1, 2, 3, 2]])
    fitted = ChainPair(MarkovChain(pair.source.initial @ pair.source.emission,
                                   pair.source.emission.expand(pair.vocab_size, -1).contiguous()),
                       best_first_order_chain(pair.target), "fitted")
    exact, per_transition = HMMPairOracle(pair), PairOracle(fitted)
    site = lambda oracle, z: oracle.single_site(z)[0, 4] - oracle(z)[0]  # noqa: E731  log r(z^{4<-v}) - log r(z)
    torch.testing.assert_close(site(per_transition, z1), site(per_transition, z2), rtol=0, atol=1e-12)
    gap = (site(exact, z1) - site(exact, z2)).abs().max()
    assert gap > 1.0, gap  # a factor e in the ratio between the two contexts
    # yet the fitted chain has every two-token statistic of the HMM (whose first hidden law is stationary)
    torch.testing.assert_close(fitted.target.table(2), pair.target.table(2), rtol=0, atol=1e-12)


def test_hmm_validation_errors():
    eye = torch.eye(2, dtype=F64)
    with pytest.raises(ValueError, match="emission must sum to 1"):
        HiddenMarkovModel(torch.tensor([0.5, 0.5]), eye, torch.tensor([[0.5, 0.6], [0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"transition must have shape \(2, 2\)"):
        HiddenMarkovModel(torch.tensor([0.5, 0.5]), torch.eye(3, dtype=F64), eye)
    with pytest.raises(ValueError, match=r"emission must have shape \(2, K\)"):
        HiddenMarkovModel(torch.tensor([0.5, 0.5]), eye, torch.ones(3, 1, dtype=F64))
    with pytest.raises(ValueError, match="target must have the source's vocab_size 2, got 3"):
        one = torch.ones(1, 1, dtype=F64)
        HMMPair(HiddenMarkovModel(one[0], one, torch.full((1, 2), 1 / 2, dtype=F64)),
                HiddenMarkovModel(one[0], one, torch.full((1, 3), 1 / 3, dtype=F64)), "x")
    oracle = HMMOracle(make_hmm_pair("regime").target)
    with pytest.raises(ValueError, match="z has a token outside 0..4: min 0, max 5"):
        oracle(torch.tensor([[5, 0]]))
    with pytest.raises(ValueError, match="name must be one of"):
        make_hmm_pair("regimes")
    assert math.isclose(float(make_hmm_pair("regime").target.table(1).sum()), 1.0)


def test_self_normalisation_r4_on_long_hmm_sequences():
    """(R4) sum_v p(x^i = v | z) r(z^{i<-v}) = r(z), r(z^{i<-v}) from separate forward passes, L = 512."""
    pair = random_hmm_pair(4, 3, 2, 3, sparse=False)
    oracle = HMMPairOracle(pair)
    g = torch.Generator().manual_seed(2)
    x = pair.target.sample(2, 512, g)
    z = torch.where(torch.rand(x.shape, generator=g) < 0.5, 3, x)
    log_r, log_p, site = oracle(z), oracle.source(z), oracle.single_site(z)
    for b in range(2):
        chosen = (z[b] == 3).nonzero()[:5, 0]
        cand = z[b].repeat(len(chosen) * 3, 1)
        for j, i in enumerate(chosen.tolist()):
            cand[3 * j : 3 * (j + 1), i] = torch.arange(3)
        direct = oracle(cand).reshape(len(chosen), 3)
        assert same_logs(site[b, chosen], direct, tol=1e-8 * abs(float(log_r[b])))
        lhs = torch.logsumexp(log_p[b, chosen] + direct, dim=-1)
        assert ((lhs - log_r[b]).abs() <= 1e-9 * max(1.0, abs(float(log_r[b])))).all()


@given(hmm_pairs(vocab=(2, 4), hidden=(1, 3)), st.integers(1, 8), st.integers(0, 2**31))
def test_any_order_reveal_gives_the_hmm_likelihood(pair, length, seed):
    """prod over steps of q(x^i | revealed so far), in any order, is q(x)."""
    g = torch.Generator().manual_seed(seed)
    x = pair.target.sample(5, length, g)
    oracle = HMMOracle(pair.target)
    order = torch.stack([torch.randperm(length, generator=g) for _ in range(5)])
    z, rows, total = torch.full_like(x, pair.vocab_size), torch.arange(5), torch.zeros(5, dtype=F64)
    for step in range(length):
        pos = order[:, step]
        total += oracle(z)[rows, pos, x[rows, pos]]
        z[rows, pos] = x[rows, pos]
    assert same_logs(total, pair.target.log_prob(x), tol=1e-10)


def test_protocols_custom_mask_id_and_batches():
    from gtl_verify.protocols import Denoiser, SequenceRatio, SingleSiteRatio

    pair = make_hmm_pair("regime")
    ref, bert = HMMPairOracle(pair), HMMPairOracle(pair, mask_id=103)
    assert isinstance(ref.source, Denoiser) and isinstance(ref, SequenceRatio) and isinstance(ref, SingleSiteRatio)
    assert bert.mask_id == 103 and bert.target.mask_id == 103
    z = torch.tensor([[0, 4, 4, 3, 4], [4, 1, 2, 4, 4]])
    zb = torch.where(z == 4, 103, z)
    assert torch.equal(bert.single_site(zb), ref.single_site(z)) and torch.equal(bert.source(zb), ref.source(z))
    whole = ref.single_site(z)
    for b in range(2):
        torch.testing.assert_close(ref.single_site(z[b : b + 1])[0], whole[b], rtol=1e-13, atol=1e-13)
    empty = torch.zeros(0, 5, dtype=torch.long)
    assert ref.source(empty).shape == (0, 5, 4) and ref(empty).shape == (0,)
