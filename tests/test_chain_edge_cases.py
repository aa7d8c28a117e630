"""Edge cases real chains have: exact zeros, target-only tokens (log-ratio +inf, never NaN), source-only
tokens (ratio 0) and L = 1, through the oracles, the exact references and the toolkit's assertions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gtl_verify.exact_law import planner_law
from gtl_verify.planners import LeftToRightPlanner
from gtl_verify.rules import GTL, Unguided
from gtl_verify.samplers import SamplerConfig
from gtl_verify.schedules import LogLinearSchedule
from gtl_verify.testing import (
    all_masked,
    assert_rule_matches_exact_step,
    assert_sampler_law_exact,
    chain_pairs,
    exact_components,
    exact_guided_step,
    exact_target_law,
)
from markov.chain import MarkovChain
from markov.hmm import HMMPair, HMMPairOracle
from markov.oracle import PairOracle
from markov.presets import ChainPair, make_pair

F64 = torch.float64
INF = math.inf


def chain(initial, transition) -> MarkovChain:
    return MarkovChain(torch.tensor(initial, dtype=F64), torch.tensor(transition, dtype=F64))


def both_oracles(pair: ChainPair):
    return PairOracle(pair), HMMPairOracle(HMMPair.from_chains(pair))


# ---------------------------------------------------------------------- exact zeros
def test_deterministic_cycle_is_sampled_exactly_by_one_position_per_step():
    """Source and target a deterministic two-token cycle: every state the planner sampler visits is
    possible, and its exact law is the target's (two sequences, 1/2 each)."""
    cycle = chain([0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]])
    pair = ChainPair(cycle, cycle, "cycle")
    for length in (1, 2, 3):
        law = assert_sampler_law_exact(GTL(), pair, length)
        assert sorted(law.clean[law.clean > 0].tolist()) == [0.5, 0.5]


@given(chain_pairs(vocab=(2, 4), kinds=("sparse", "banded")), st.integers(1, 3))
def test_sparse_and_banded_pairs_are_sampled_exactly(pair, length):
    assert_sampler_law_exact(GTL(), pair, length)


# ---------------------------------------------------------------------- target-only tokens
def test_target_only_tokens_give_infinite_not_nan_ratios():
    """no-overlap with K = 2 shared tokens: token 2 is emitted by the target only."""
    pair = make_pair("no-overlap", vocab_size=2)
    m = pair.vocab_size
    z = torch.tensor([[m, m], [2, m], [0, m], [2, 2], [0, 1]])
    for oracle in both_oracles(pair):
        log_r = oracle(z)
        assert not torch.isnan(log_r).any()
        assert torch.isposinf(log_r[[1, 3]]).all() and torch.isfinite(log_r[[0, 2, 4]]).all()
        site = oracle.single_site(z)
        assert not torch.isnan(site).any()
        assert torch.isposinf(site[[0, 2], 1, 2]).all()  # revealing token 2 next to possible tokens: +inf
        assert torch.isposinf(site[1, 1]).all()  # the source cannot explain z at all: +inf for every token
        assert torch.isfinite(site[[0, 2], 1, :2]).all()


def test_guided_step_gives_target_only_tokens_zero_mass_and_says_why_the_law_falls_short():
    """The source denoiser excludes a target-only token, so guidance cannot reveal it (whatever the
    +inf ratio says): the step is exact on the shared tokens and the sampler misses the target's extra mass."""
    pair = make_pair("no-overlap", vocab_size=2)
    comp = exact_components(pair)
    z = torch.tensor([[3, 3], [0, 3]])
    step = exact_guided_step(comp, z, 0.3, 0.7, 1.0)
    assert not torch.isnan(step).any() and (step[:, 2] == 0).all()
    assert_rule_matches_exact_step(GTL(), pair, z, s=0.3, t=0.7, gamma=1.0)
    with pytest.raises(AssertionError, match=r"source never emits \(log-ratio \+inf there\).*documented failure mode"):
        assert_sampler_law_exact(GTL(), pair, 2)
    # what it samples instead: the target conditioned on the source's support
    q, shared = exact_target_law(pair, 2), pair.source.table(2) > 0
    law = planner_law(comp.source, comp.ratio, LeftToRightPlanner(), LogLinearSchedule(), SamplerConfig(1, 2, temperature=0))
    torch.testing.assert_close(law.clean, torch.where(shared, q, 0.0) / q[shared].sum(), rtol=0, atol=1e-12)


@given(chain_pairs(vocab=(2, 5), kinds=("target-only",)), st.integers(1, 5), st.integers(0, 2**31))
def test_no_nan_ratio_on_any_state_the_target_can_reach(pair, length, seed):
    g = torch.Generator().manual_seed(seed)
    x = pair.target.sample(16, length, g)
    z = torch.where(torch.rand(x.shape, generator=g) < 0.5, pair.vocab_size, x)
    for oracle in both_oracles(pair):
        assert not torch.isnan(oracle(z)).any()
        site = oracle.single_site(z)
        assert not torch.isnan(site).any()
        source_never = (pair.source.transition == 0).all(0) & (pair.source.initial == 0)
        masked = z == pair.vocab_size
        assert torch.isposinf(site[masked][:, source_never]).all()


# ---------------------------------------------------------------------- source-only tokens
def test_tokens_the_target_never_emits_have_ratio_zero():
    source = chain([0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]])
    target = chain([1.0, 0.0], [[1.0, 0.0], [1.0, 0.0]])  # only token 0
    pair = ChainPair(source, target, "source-only token")
    z = torch.tensor([[2, 2], [1, 2], [0, 2]])
    for oracle in both_oracles(pair):
        log_r = oracle(z)
        torch.testing.assert_close(log_r[[0, 2]], torch.tensor([0.0, math.log(2)], dtype=F64))
        assert torch.isneginf(log_r[1])
        site = oracle.single_site(z)
        assert torch.isneginf(site[:, 1, 1]).all() and torch.isneginf(site[1]).all()
        torch.testing.assert_close(site[2, 1, 0], torch.tensor(math.log(4), dtype=F64))
    comp = exact_components(pair)
    guided = exact_guided_step(comp, torch.tensor([[0, 2]]), 0.3, 0.7, 1.0)
    unguided = exact_guided_step(comp, torch.tensor([[0, 2]]), 0.3, 0.7, 0.0)
    assert guided[0, 1] == 0 and unguided[0, 1] > 0
    assert_sampler_law_exact(GTL(), pair, 3)
    assert_rule_matches_exact_step(Unguided(), pair, torch.tensor([[0, 2]]), gamma=0.0)


# ---------------------------------------------------------------------- L = 1
def test_length_one_gives_the_first_token_ratio():
    pair = ChainPair(chain([0.2, 0.8], [[0.5, 0.5], [0.5, 0.5]]), chain([0.6, 0.4], [[0.1, 0.9], [0.9, 0.1]]), "L1")
    z = torch.tensor([[2], [0], [1]])
    want = torch.tensor([0.0, math.log(3.0), math.log(0.5)], dtype=F64)
    for oracle in both_oracles(pair):
        torch.testing.assert_close(oracle(z), want)
        torch.testing.assert_close(oracle.single_site(z[:1])[0, 0], want[1:])
    law = assert_sampler_law_exact(GTL(), pair, 1)
    torch.testing.assert_close(law.clean, torch.tensor([0.6, 0.4], dtype=F64), rtol=0, atol=1e-15)
    step = exact_guided_step(exact_components(pair), all_masked(1, 2), 0.0, 0.5, 1.0)
    torch.testing.assert_close(step[0], torch.tensor([0.6, 0.4, 0.0], dtype=F64))


def test_length_zero_is_a_clear_error():
    pair = make_pair("paper")
    with pytest.raises(ValueError, match="length must be >= 1, got 0"):
        exact_target_law(pair, 0)
    with pytest.raises(ValueError, match="z must have at least one position"):
        PairOracle(pair)(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="z must have at least one position"):
        HMMPairOracle(HMMPair.from_chains(pair))(torch.zeros(1, 0, dtype=torch.long))
