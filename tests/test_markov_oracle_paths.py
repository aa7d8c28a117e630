"""The gap-formula oracle's two power paths (matmul, log space) against log-space brute force and each other."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from markov.chain import MarkovChain
from markov.gaps import CHUNK_POSITIONS, TransitionPowers
from markov.oracle import ChainOracle, PairOracle

F64 = torch.float64
KINDS = ("dirichlet", "sparse", "near-deterministic", "tiny")


def random_chain(seed: int, k: int, kind: str) -> MarkovChain:
    """A chain of one kind: Dirichlet rows; with exact zeros; one dominant entry per row and the rest
    1e-13..1e-9 (near-deterministic); or the rest 1e-250..1e-150 with exact zeros (tiny: powers underflow)."""
    rng = np.random.default_rng(seed)
    rows = rng.dirichlet(np.ones(k), size=k + 1)
    if kind in ("near-deterministic", "tiny"):
        low, high = (-13, -9) if kind == "near-deterministic" else (-250, -150)
        rows = 10.0 ** rng.uniform(low, high, size=(k + 1, k))
        rows[np.arange(k + 1), rng.integers(0, k, size=k + 1)] = 1.0
    if kind in ("sparse", "tiny"):
        zero = rng.random((k + 1, k)) < 0.4
        zero[np.arange(k + 1), rows.argmax(-1)] = False
        rows = np.where(zero, 0.0, rows)
    rows = rows / rows.sum(-1, keepdims=True)
    return MarkovChain(torch.tensor(rows[0]), torch.tensor(rows[1:]))


def brute_force(chain: MarkovChain, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x^i = v | z) [B, L, K] (NaN rows where impossible) and log P_obs(z) [B], by enumerating
    every x in log space (exact for probabilities far below float64's range)."""
    k = chain.vocab_size
    b, length = z.shape
    xs = torch.tensor(list(itertools.product(range(k), repeat=length)))  # [K^L, L]
    log_pi, log_s = chain.initial.log(), chain.transition.log()
    log_px = log_pi[xs[:, 0]] + log_s[xs[:, :-1], xs[:, 1:]].sum(-1)
    agree = ((xs[None] == z[:, None]) | (z[:, None] == k)).all(-1)  # [B, K^L]
    joint = torch.where(agree, log_px[None], -math.inf)
    log_obs = torch.logsumexp(joint, -1)
    onehot = xs[:, :, None] == torch.arange(k)  # [K^L, L, K]
    per_site = torch.where(onehot[None], joint[:, :, None, None], -math.inf)
    log_marg = torch.logsumexp(per_site, 1) - log_obs[:, None, None]
    log_marg[torch.isneginf(log_obs)] = math.nan
    return log_marg, log_obs


def assert_log_close(got: torch.Tensor, want: torch.Tensor, atol: float = 1e-10, rtol: float = 1e-12) -> None:
    """Same NaN and infinity pattern; finite entries within atol + rtol |want|."""
    assert got.shape == want.shape, (got.shape, want.shape)
    for same in (torch.isnan, torch.isposinf, torch.isneginf):
        assert torch.equal(same(got), same(want)), (same.__name__, got, want)
    fin = torch.isfinite(want)
    err = (got[fin] - want[fin]).abs()
    assert (err <= atol + rtol * want[fin].abs()).all(), float(err.max())


def masked_draws(chain: MarkovChain, n: int, length: int, g: torch.Generator) -> torch.Tensor:
    """n draws of the chain plus n uniform token strings (often impossible), with random mask rates."""
    k = chain.vocab_size
    x = torch.cat([chain.sample(n, length, g), torch.randint(0, k, (n, length), generator=g)])
    rate = torch.rand(2 * n, 1, generator=g, dtype=F64)
    rate[0], rate[1] = 1.0, 0.0
    return torch.where(torch.rand(2 * n, length, generator=g, dtype=F64) < rate, k, x)


chains = st.tuples(st.integers(0, 2**31), st.integers(2, 4), st.integers(1, 5), st.sampled_from(KINDS))


@given(chains)
def test_both_paths_match_log_space_enumeration(settings):
    seed, k, length, kind = settings
    chain = random_chain(seed, k, kind)
    z = masked_draws(chain, 6, length, torch.Generator().manual_seed(seed))
    want_marg, want_obs = brute_force(chain, z)
    paths = (None, True) if kind == "tiny" else (None, True, False)  # tiny: matmul powers may underflow
    for log_space in paths:
        oracle = ChainOracle(chain, log_space=log_space)
        assert_log_close(oracle.log_obs(z), want_obs)
        post = oracle.posterior(z)
        assert_log_close(post.log_obs, want_obs)
        assert_log_close(post.log_marginals, want_marg)
        torch.testing.assert_close(oracle.marginals(z), want_marg.exp(), rtol=0, atol=1e-12, equal_nan=True)
    entries = torch.cat([chain.initial, chain.transition.flatten()])
    if bool(((entries > 0) & (entries < 1e-20)).any()):
        assert ChainOracle(chain).log_space  # the automatic choice took the log-space path


@given(chains, st.sampled_from(KINDS))
def test_single_site_ratios_of_both_paths_match_enumeration(settings, target_kind):
    seed, k, length, kind = settings
    p, q = random_chain(seed, k, kind), random_chain(seed + 1, k, target_kind)
    z = masked_draws(p, 4, length, torch.Generator().manual_seed(seed))
    _, log_p = brute_force(p, z)
    _, log_q = brute_force(q, z)
    log_r = torch.where(torch.isneginf(log_q), -math.inf, log_q - log_p)  # 0/0 read as 0
    # z^{i<-v} for every masked i and token v, scored directly
    b, length = z.shape
    cand = z[:, None, None, :].repeat(1, length, k, 1)
    for i in range(length):
        cand[:, i, :, i] = torch.where(z[:, i, None] == k, torch.arange(k), z[:, i, None])
    _, cand_p = brute_force(p, cand.reshape(-1, length))
    _, cand_q = brute_force(q, cand.reshape(-1, length))
    want = torch.where(torch.isneginf(cand_q), -math.inf, cand_q - cand_p).reshape(b, length, k)
    masked = z == k
    tiny = "tiny" in (kind, target_kind)
    for log_space in (None, True) if tiny else (None, True, False):
        oracle = PairOracle(p, q, log_space=log_space)
        assert_log_close(oracle(z), log_r)
        site = oracle.single_site(z)
        assert_log_close(site[masked], want[masked])
        assert_log_close(site[~masked], log_r[:, None].expand(b, length)[~masked][:, None].expand(-1, k))


@given(st.integers(0, 2**31), st.integers(2, 6), st.integers(2, 80), st.sampled_from(KINDS[:3]))
def test_paths_agree_with_each_other_and_with_the_scaled_recursion(seed, k, length, kind):
    """On longer chains (beyond enumeration): matmul powers, log-space powers and the explicit
    scaled forward-backward recursion give the same marginals and log P_obs."""
    chain = random_chain(seed, k, kind)
    z = masked_draws(chain, 5, length, torch.Generator().manual_seed(seed))
    fast, logs = ChainOracle(chain, log_space=False), ChainOracle(chain, log_space=True)
    fb = fast.forward_backward(z)
    a, b = fast.posterior(z), logs.posterior(z)
    assert_log_close(a.log_obs, b.log_obs, atol=1e-9)
    assert_log_close(a.log_obs, fb.log_obs, atol=1e-9)
    assert_log_close(a.log_marginals, b.log_marginals, atol=1e-9)
    torch.testing.assert_close(fast.marginals(z), fb.marginals(), rtol=0, atol=1e-10, equal_nan=True)
    torch.testing.assert_close(logs.marginals(z), fb.marginals(), rtol=0, atol=1e-10, equal_nan=True)


def line_chain(eps: float = 1e-200) -> MarkovChain:
    """0 -> 1 -> 2 -> 0, each step with probability eps (else stay), no other moves: S^2(0, 2) = eps^2."""
    s = torch.tensor([[1 - eps, eps, 0.0], [0.0, 1 - eps, eps], [eps, 0.0, 1 - eps]], dtype=F64)
    return MarkovChain(torch.tensor([1.0, 0.0, 0.0], dtype=F64), s)


def test_automatic_path_switches_to_log_space_where_powers_underflow():
    chain = line_chain()
    z = torch.tensor([[0, 3, 2], [0, 3, 3], [0, 2, 3]])
    want_marg, want_obs = brute_force(chain, z)
    auto = ChainOracle(chain)
    assert auto.log_space
    assert_log_close(auto.log_obs(z), want_obs)
    assert math.isclose(float(auto.log_obs(z)[0]), 2 * math.log(1e-200), rel_tol=1e-12)
    assert_log_close(auto(z), want_marg)
    # negative control: forced matmul powers lose S^2(0, 2) = 1e-400 and call the first row impossible
    forced = ChainOracle(chain, log_space=False)
    assert forced.log_obs(z)[0] == -math.inf
    with pytest.raises(AssertionError):
        assert_log_close(forced.log_obs(z), want_obs)


def test_matmul_powers_fall_back_to_log_space_once_an_entry_gets_tiny():
    """Every transition is >= 1e-15, yet on a 25-state line S^d(0, d) = 1e-15^d falls below 1e-280
    at d = 19 and underflows at d = 21: the automatic path notices while growing the table and
    recomputes it in log space, where the forced matmul path reports an impossible sequence."""
    k, eps = 25, 1e-15
    s = torch.diag(torch.full((k,), 1 - eps, dtype=F64)) + torch.diag(torch.full((k - 1,), eps, dtype=F64), 1)
    s[-1, 0] = eps
    chain = MarkovChain(torch.nn.functional.one_hot(torch.tensor(0), k).to(F64), s)
    powers = TransitionPowers(chain.initial, chain.transition)
    assert not powers.log_space
    powers.tables(8)
    assert not powers.log_space
    powers.tables(k)
    assert powers.log_space
    z = torch.full((1, k), k)
    z[0, 0], z[0, -1] = 0, k - 1
    want = (k - 1) * math.log(eps)  # the only path: k - 1 steps of probability eps
    assert math.isclose(float(ChainOracle(chain).log_obs(z)), want, rel_tol=1e-12)
    assert float(ChainOracle(chain, log_space=False).log_obs(z)) == -math.inf
    # the switch in the middle of a call: early chunks need short distances only, the last one d = k - 1
    rows = CHUNK_POSITIONS // k + 5
    batch = chain.sample(rows, k, torch.Generator().manual_seed(0))
    batch[:, 1::3] = k
    batch[-1] = z[0]
    oracle, reference = ChainOracle(chain), ChainOracle(chain, log_space=True)
    probs = oracle.marginals(batch)
    assert oracle.log_space
    torch.testing.assert_close(probs, reference.posterior(batch).log_marginals.exp(), rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(probs[-1, 1:-1].argmax(-1), torch.arange(1, k - 1))  # the only path


def test_table_growth_and_batch_chunks_leave_results_unchanged():
    chain = random_chain(4, 5, "sparse")
    g = torch.Generator().manual_seed(0)
    length = 300
    batch = 2 * CHUNK_POSITIONS // length + 3  # three chunks
    z = masked_draws(chain, batch // 2 + 1, length, g)
    oracle = ChainOracle(chain)
    short = oracle(z[:, :3])  # small table first, then grown
    whole = oracle(z)
    fresh = ChainOracle(chain)
    torch.testing.assert_close(fresh(z[:, :3]), short, rtol=0, atol=0, equal_nan=True)
    for b in (0, 1, batch // 2, z.shape[0] - 1):
        torch.testing.assert_close(fresh(z[b : b + 1])[0], whole[b], rtol=0, atol=1e-12, equal_nan=True)
    torch.testing.assert_close(oracle(z[:, :3]), short, rtol=0, atol=0, equal_nan=True)


def test_log_space_argument_is_checked():
    with pytest.raises(ValueError, match="log_space"):
        ChainOracle(line_chain(), log_space="yes")
