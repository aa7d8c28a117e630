"""Markov chains, presets and data: validation, exact likelihoods, sampling and estimation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gtl_verify.forward import enumerate_sequences
from markov.chain import (
    MarkovChain,
    estimate_transition,
    row_averaged_kl,
    row_kl,
    transition_chi_square,
    transition_counts,
)
from markov.data import MarkovData, make_data
from markov.presets import (
    PRESETS,
    ChainPair,
    anti_diagonal_matrix,
    diagonal_matrix,
    dirichlet_matrix,
    make_pair,
)

F64 = torch.float64


def random_chain(seed: int, k: int, alpha: float = 1.0, sparse: bool = False) -> MarkovChain:
    """Dirichlet rows; with ``sparse`` some entries are zeroed (at least one kept per row)."""
    rng = np.random.default_rng(seed)
    init = rng.dirichlet(np.full(k, alpha))
    trans = rng.dirichlet(np.full(k, alpha), size=k)
    if sparse:
        zero = rng.random((k, k)) < 0.3
        zero[np.arange(k), rng.integers(0, k, size=k)] = False
        trans = np.where(zero, 0.0, trans)
        trans /= trans.sum(-1, keepdims=True)
    return MarkovChain(torch.tensor(init), torch.tensor(trans))


# ---------------------------------------------------------------------- validation
def test_valid_chain_is_float64_and_sized():
    chain = MarkovChain(torch.tensor([0.5, 0.5]), torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    assert chain.initial.dtype == F64 and chain.transition.dtype == F64
    assert chain.vocab_size == 2


@pytest.mark.parametrize(
    "initial, transition, name",
    [
        ([0.5, 0.5], [[0.9, 0.2], [0.2, 0.8]], "transition"),  # row sums to 1.1
        ([0.5, 0.5], [[1.1, -0.1], [0.2, 0.8]], "transition"),  # negative entry
        ([0.5, 0.5], [[math.nan, 1.0], [0.2, 0.8]], "transition"),  # NaN
        ([0.5, 0.5], [[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]], "transition"),  # not square
        ([0.5, 0.5], [[1.0, 0.0, 0.0], [0, 1.0, 0], [0, 0, 1.0]], "transition"),  # K mismatch
        ([0.6, 0.6], [[0.9, 0.1], [0.2, 0.8]], "initial"),  # not normalised
        ([1.5, -0.5], [[0.9, 0.1], [0.2, 0.8]], "initial"),  # negative
        ([math.nan, 1.0], [[0.9, 0.1], [0.2, 0.8]], "initial"),  # NaN
        ([[0.5, 0.5]], [[0.9, 0.1], [0.2, 0.8]], "initial"),  # wrong shape
        ([], [[0.9, 0.1], [0.2, 0.8]], "initial"),  # empty
    ],
)
def test_invalid_chain_names_parameter(initial, transition, name):
    with pytest.raises(ValueError, match=name):
        MarkovChain(torch.tensor(initial, dtype=F64), torch.tensor(transition, dtype=F64))


def test_non_numeric_and_float32_input():
    with pytest.raises(ValueError, match="initial"):
        MarkovChain("uniform", torch.eye(2, dtype=F64))
    # float32 input: accepted at float32 tolerance, renormalised exactly in float64
    chain = MarkovChain(torch.tensor([0.3, 0.7]), torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    assert (chain.transition.sum(-1) - 1).abs().max() <= 1e-15
    with pytest.raises(ValueError, match="transition"):
        MarkovChain(torch.tensor([0.3, 0.7]), torch.tensor([[0.9, 0.11], [0.2, 0.8]]))


def test_rows_within_tolerance_are_accepted():
    eps = 1e-11
    MarkovChain(torch.tensor([0.5, 0.5 + eps]), torch.tensor([[0.9, 0.1 - eps], [0.2, 0.8]]))


def test_bad_tokens_rejected():
    chain = random_chain(0, 3)
    with pytest.raises(ValueError, match="x"):
        chain.log_prob(torch.tensor([[0, 3]]))
    with pytest.raises(ValueError, match="x"):
        chain.log_prob(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="length"):
        chain.sample(3, 0)
    with pytest.raises(ValueError, match="length"):
        chain.table(0)


# ---------------------------------------------------------------------- exact likelihood
@given(seed=st.integers(0, 2**31), k=st.integers(2, 6), length=st.integers(1, 12), sparse=st.booleans())
def test_log_prob_is_sum_of_transition_logs(seed, k, length, sparse):
    chain = random_chain(seed, k, sparse=sparse)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, k, (7, length), generator=g)
    got = chain.log_prob(x)
    for b in range(x.shape[0]):
        want = math.log(chain.initial[x[b, 0]]) if chain.initial[x[b, 0]] > 0 else -math.inf
        for i in range(1, length):
            s = float(chain.transition[x[b, i - 1], x[b, i]])
            want += math.log(s) if s > 0 else -math.inf
        if math.isinf(want):
            assert got[b] == want
        else:
            assert abs(float(got[b]) - want) <= 1e-10


@given(seed=st.integers(0, 2**31), k=st.integers(1, 4), length=st.integers(1, 5), sparse=st.booleans())
def test_table_matches_log_prob_in_enumeration_order(seed, k, length, sparse):
    chain = random_chain(seed, k, sparse=sparse and k > 1)
    table = chain.table(length)
    assert table.shape == (k**length,)
    assert abs(float(table.sum()) - 1.0) <= 1e-12
    torch.testing.assert_close(table, chain.log_prob(enumerate_sequences(k, length)).exp(), rtol=1e-12, atol=1e-15)


def test_table_refuses_huge_state_space():
    with pytest.raises(ValueError, match="length"):
        random_chain(0, 10).table(10)


# ---------------------------------------------------------------------- stationary quantities
@given(seed=st.integers(0, 2**31), k=st.integers(2, 7))
def test_stationary_is_invariant(seed, k):
    chain = random_chain(seed, k, alpha=2.0)
    mu = chain.stationary()
    assert abs(float(mu.sum()) - 1) <= 1e-12 and (mu >= 0).all()
    torch.testing.assert_close(mu @ chain.transition, mu, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k, d", [(2, 0.3), (5, 0.1), (5, 0.8), (7, 1.0)])
def test_entropy_rate_of_diagonal_chain(k, d):
    chain = MarkovChain(torch.full((k,), 1.0 / k, dtype=F64), diagonal_matrix(k, d))
    off = (1 - d) / (k - 1)
    want = -(d * math.log(d) if d > 0 else 0.0) - ((k - 1) * off * math.log(off) if off > 0 else 0.0)
    assert abs(chain.entropy_rate() - want) <= 1e-12
    assert abs(chain.cross_entropy_rate(chain) - want) <= 1e-12


@given(seed=st.integers(0, 2**31), k=st.integers(2, 5))
def test_cross_entropy_rate_exceeds_entropy_rate(seed, k):
    a, b = random_chain(seed, k), random_chain(seed + 1, k)
    gap = a.cross_entropy_rate(b) - a.entropy_rate()
    assert gap >= -1e-12
    # the gap is the stationary-weighted row KL
    assert abs(gap - float(a.stationary() @ row_kl(a.transition, b.transition))) <= 1e-10


def test_cross_entropy_rate_infinite_when_other_forbids_a_transition():
    a = MarkovChain(torch.tensor([0.5, 0.5]), torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    b = MarkovChain(torch.tensor([0.5, 0.5]), torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    assert a.cross_entropy_rate(b) == math.inf
    with pytest.raises(ValueError, match="other"):
        a.cross_entropy_rate(random_chain(0, 3))


# ---------------------------------------------------------------------- estimation and metric
def test_transition_counts_by_hand():
    x = torch.tensor([[0, 1, 1, 2], [2, 2, 0, 1]])
    want = torch.zeros(3, 3, dtype=F64)
    for u, v in [(0, 1), (1, 1), (1, 2), (2, 2), (2, 0), (0, 1)]:
        want[u, v] += 1
    torch.testing.assert_close(transition_counts(x, 3), want)
    torch.testing.assert_close(transition_counts(x), want)  # K inferred as max + 1
    assert transition_counts(x, 5).shape == (5, 5)
    with pytest.raises(ValueError, match="x"):
        transition_counts(x, 2)


def test_estimate_transition_normalises_and_fills_unvisited_rows():
    x = torch.tensor([[0, 1, 1, 1, 0, 0]])
    est = estimate_transition(x, vocab_size=3)
    torch.testing.assert_close(est[0], torch.tensor([0.5, 0.5, 0.0], dtype=F64))
    torch.testing.assert_close(est[1], torch.tensor([1 / 3, 2 / 3, 0.0], dtype=F64))
    torch.testing.assert_close(est[2], torch.full((3,), 1 / 3, dtype=F64))  # never left token 2
    smooth = estimate_transition(x, 1.0, vocab_size=3)
    torch.testing.assert_close(smooth[0], torch.tensor([2 / 5, 2 / 5, 1 / 5], dtype=F64))
    torch.testing.assert_close(smooth.sum(-1), torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="smoothing"):
        estimate_transition(x, -0.1)


def test_row_averaged_kl_values_and_errors():
    true = diagonal_matrix(3, 0.8)
    assert row_averaged_kl(true, true) == 0.0
    est = diagonal_matrix(3, 0.6)
    per_row = 0.8 * math.log(0.8 / 0.6) + 2 * 0.1 * math.log(0.1 / 0.2)
    assert abs(row_averaged_kl(true, est) - per_row) <= 1e-14
    bad = torch.tensor([[1.0, 0.0, 0.0], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]], dtype=F64)
    assert row_kl(true, bad)[0] == math.inf and math.isfinite(float(row_kl(true, bad)[1]))
    assert row_averaged_kl(true, bad) == math.inf
    assert row_averaged_kl(bad, true) < math.inf  # zeros of the true row cost nothing
    with pytest.raises(ValueError, match="estimated"):
        row_averaged_kl(true, torch.ones(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="estimated"):
        row_averaged_kl(true, diagonal_matrix(4, 0.5))
    with pytest.raises(ValueError, match="true"):
        row_averaged_kl(torch.ones(3, 3, dtype=F64), true)


# ---------------------------------------------------------------------- sampling
# Power of the chi-square check: a shift of DELTA probability between two cells of one row
# with entries near P adds about N_u * 2 DELTA^2 / P to the statistic (N_u the visits of row u).
# We want that >= 100 (far beyond the 1e-4 quantile of chi2 with <= 30 dof), hence N_u below.
DELTA, P_CELL = 0.02, 0.5
ROW_VISITS = math.ceil(100 * P_CELL / (2 * DELTA**2))  # 62,500


def test_sampled_transitions_match_the_matrix():
    chain = random_chain(3, 4, alpha=3.0)
    length = 51
    n = math.ceil(ROW_VISITS * chain.vocab_size / (length - 1) / float(chain.stationary().min()) / 0.9)
    g = torch.Generator().manual_seed(1234)
    x = chain.sample(n, length, g)
    assert x.shape == (n, length) and x.dtype == torch.long
    assert transition_counts(x, 4).sum(-1).min() >= ROW_VISITS * 0.8
    test = transition_chi_square(x, chain.transition, chain.initial)
    assert test.dof == 4 * 3 + 3
    assert test.pvalue > 1e-4, test
    # the same test rejects a matrix that moves DELTA of one row's mass
    wrong = chain.transition.clone()
    wrong[0, 0] += DELTA
    wrong[0, 1] -= DELTA
    assert transition_chi_square(x, wrong).pvalue < 1e-8
    # and the metric is small for the estimate
    assert row_averaged_kl(chain.transition, estimate_transition(x, vocab_size=4)) < 1e-3


def test_sampling_is_reproducible_and_respects_zeros():
    chain = random_chain(5, 5, sparse=True)
    a = chain.sample(500, 20, torch.Generator().manual_seed(7))
    b = chain.sample(500, 20, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert torch.isfinite(chain.log_prob(a)).all()  # never takes a zero-probability transition
    assert chain.sample(0, 3).shape == (0, 3)


def test_sampling_a_deterministic_chain():
    perm = torch.tensor([2, 0, 1])
    chain = MarkovChain(torch.tensor([1.0, 0.0, 0.0]), torch.eye(3, dtype=F64)[perm])
    x = chain.sample(4, 7, torch.Generator().manual_seed(0))
    want = [0]
    for _ in range(6):
        want.append(int(perm[want[-1]]))
    assert (x == torch.tensor(want)).all()


# ---------------------------------------------------------------------- presets
def test_matrix_builders():
    d = diagonal_matrix(4, 0.7)
    assert torch.allclose(d.diagonal(), torch.full((4,), 0.7, dtype=F64))
    assert abs(float(d[0, 1]) - 0.1) <= 1e-15
    a = anti_diagonal_matrix(4, 0.7)
    assert torch.allclose(a.flip(1).diagonal(), torch.full((4,), 0.7, dtype=F64))
    assert abs(float(a[0, 0]) - 0.1) <= 1e-15
    for m in (d, a):
        torch.testing.assert_close(m.sum(-1), torch.ones(4, dtype=F64))
    r1 = dirichlet_matrix(6, 0.5, torch.Generator().manual_seed(3))
    r2 = dirichlet_matrix(6, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(r1, r2) and (r1 >= 0).all()
    torch.testing.assert_close(r1.sum(-1), torch.ones(6, dtype=F64), rtol=0, atol=1e-12)
    tiny = dirichlet_matrix(8, 1e-3, torch.Generator().manual_seed(0))  # rows nearly one-hot
    MarkovChain(torch.full((8,), 1 / 8, dtype=F64), tiny)
    with pytest.raises(ValueError, match="d"):
        diagonal_matrix(3, 1.5)
    with pytest.raises(ValueError, match="vocab_size"):
        diagonal_matrix(1, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_matrix(3, 0.0)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("vocab_size", [2, 5, 8])
def test_presets_build_valid_pairs(name, vocab_size):
    pair = make_pair(name, vocab_size=vocab_size, extra_tokens=2, seed=4)
    assert isinstance(pair, ChainPair) and pair.name == name
    k = pair.source.vocab_size
    assert pair.target.vocab_size == k == pair.vocab_size
    if name == "paper":
        assert k == 5
    elif name == "no-overlap":
        assert k == vocab_size + 2
    else:
        assert k == vocab_size
    for chain in (pair.source, pair.target):
        torch.testing.assert_close(chain.transition.sum(-1), torch.ones(k, dtype=F64))


def test_paper_preset_matches_the_reference_setting():
    pair = make_pair("paper", vocab_size=9, source_d=0.5, seed=3)  # kwargs ignored: the fixed setting
    torch.testing.assert_close(pair.source.transition, diagonal_matrix(5, 0.1))
    torch.testing.assert_close(pair.target.transition, diagonal_matrix(5, 0.8))
    torch.testing.assert_close(pair.source.initial, torch.full((5,), 0.2, dtype=F64))
    torch.testing.assert_close(pair.target.initial, torch.full((5,), 0.2, dtype=F64))


@pytest.mark.parametrize("overlap", [1.0, 0.5, 1e-9])
def test_the_paper_preset_refuses_an_overlap_it_cannot_apply(overlap):
    """It ignored the overlap: the committed overlap sweep on the paper preset compared one pair with itself."""
    with pytest.raises(ValueError, match=f"^overlap does not apply to the fixed paper preset, got {overlap}; use preset diagonal"):
        make_pair("paper", overlap=overlap)
    assert make_pair("paper", overlap=0.0).source.transition.equal(make_pair("paper").source.transition)


@pytest.mark.parametrize("name", [n for n in PRESETS if n != "paper"])
def test_full_overlap_makes_identical_chains(name):
    pair = make_pair(name, vocab_size=4, overlap=1.0, extra_tokens=1, seed=2)
    torch.testing.assert_close(pair.source.transition, pair.target.transition, rtol=0, atol=1e-15)
    torch.testing.assert_close(pair.source.initial, pair.target.initial, rtol=0, atol=1e-15)
    half = make_pair(name, vocab_size=4, overlap=0.5, extra_tokens=1, seed=2)
    none = make_pair(name, vocab_size=4, overlap=0.0, extra_tokens=1, seed=2)
    torch.testing.assert_close(half.source.transition, 0.5 * (none.source.transition + none.target.transition))


def test_named_presets_structure():
    anti = make_pair("anti-diagonal", vocab_size=4, source_d=0.9, target_d=0.7)
    torch.testing.assert_close(anti.source.transition, anti_diagonal_matrix(4, 0.9))
    torch.testing.assert_close(anti.target.transition, diagonal_matrix(4, 0.7))
    d1 = make_pair("dirichlet", vocab_size=4, alpha=0.5, seed=1)
    d2 = make_pair("dirichlet", vocab_size=4, alpha=0.5, seed=1)
    d3 = make_pair("dirichlet", vocab_size=4, alpha=0.5, seed=2)
    assert torch.equal(d1.source.transition, d2.source.transition)
    assert not torch.equal(d1.source.transition, d3.source.transition)
    assert not torch.equal(d1.source.transition, d1.target.transition)


def test_no_overlap_target_leaves_the_source_support():
    pair = make_pair("no-overlap", vocab_size=4, extra_tokens=2)
    src, tgt = pair.source, pair.target
    assert (src.transition[:, 4:] == 0).all() and (src.initial[4:] == 0).all()
    assert (tgt.transition[:, 4:] > 0).all() and (tgt.initial[4:] > 0).all()
    torch.testing.assert_close(src.transition[4:, :4], torch.full((2, 4), 0.25, dtype=F64))
    x = src.sample(200, 30, torch.Generator().manual_seed(0))
    assert int(x.max()) < 4  # the source never emits the extra tokens
    assert make_pair("no-overlap", vocab_size=4).vocab_size == 5  # extra_tokens 0 read as 1


def test_preset_errors():
    with pytest.raises(ValueError, match="paper") as info:
        make_pair("bogus")
    for name in PRESETS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="overlap"):
        make_pair("diagonal", overlap=1.5)
    with pytest.raises(ValueError, match="vocab_size"):
        make_pair("diagonal", vocab_size=1)
    with pytest.raises(ValueError, match="source_d"):
        make_pair("diagonal", source_d=-0.1)
    with pytest.raises(ValueError, match="extra_tokens"):
        make_pair("no-overlap", extra_tokens=-1)
    with pytest.raises(ValueError, match="alpha"):
        make_pair("dirichlet", alpha=0.0)
    with pytest.raises(ValueError, match="vocab_size"):
        ChainPair(random_chain(0, 3), random_chain(0, 4), "mixed")


# ---------------------------------------------------------------------- data
def test_make_data_shapes_seeds_and_streams():
    pair = make_pair("paper")
    data = make_data(pair, n_source=50, n_target=7, length=12, seed=3, n_heldout=20)
    assert isinstance(data, MarkovData)
    assert data.source_train.shape == (50, 12) and data.target_train.shape == (7, 12)
    assert data.source_heldout.shape == (20, 12) and data.target_heldout.shape == (20, 12)
    for x in (data.source_train, data.target_train, data.source_heldout, data.target_heldout):
        assert x.dtype == torch.long and 0 <= int(x.min()) and int(x.max()) < 5
    again = make_data(pair, n_source=50, n_target=7, length=12, seed=3, n_heldout=20)
    assert torch.equal(data.target_train, again.target_train)
    # each split has its own stream: other sizes leave it unchanged, splits differ
    other = make_data(pair, n_source=80, n_target=7, length=12, seed=3, n_heldout=5)
    assert torch.equal(data.target_train, other.target_train)
    assert torch.equal(data.source_train, other.source_train[:50])
    assert not torch.equal(data.source_heldout, data.source_train[:20])
    assert not torch.equal(make_data(pair, n_source=50, n_target=7, length=12, seed=4).target_train, data.target_train)


@pytest.mark.parametrize("field", ["n_source", "n_target", "length", "n_heldout"])
def test_make_data_validates_sizes(field):
    kwargs = dict(n_source=5, n_target=5, length=5, seed=0, n_heldout=5)
    kwargs[field] = 0
    with pytest.raises(ValueError, match=field):
        make_data(make_pair("paper"), **kwargs)
