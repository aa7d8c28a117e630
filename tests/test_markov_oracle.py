"""Forward-backward oracles against brute-force enumeration, long chains, R4 and any-order exactness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gtl_verify.enumeration import EnumerationOracle, LawPair
from gtl_verify.forward import MaskedProcess
from gtl_verify.protocols import Denoiser, SequenceRatio, SingleSiteRatio
from gtl_verify.schedules import LogLinearSchedule
from markov.chain import MarkovChain, transition_chi_square
from markov.oracle import ChainOracle, PairOracle
from markov.presets import ChainPair, diagonal_matrix, make_pair

F64 = torch.float64
TOL = 1e-10
T = 0.5  # any time: for the masked process nothing depends on it


# ---------------------------------------------------------------------- random chains
def _rows(rng: np.random.Generator, n: int, k: int, zero: np.ndarray, kind: str) -> np.ndarray:
    """n probability rows of length k with exact zeros at ``zero`` ([n, k] bool, one False per row kept)."""
    if kind == "dirichlet":
        rows = rng.dirichlet(np.full(k, rng.choice([0.3, 1.0, 5.0])), size=n)
    else:  # near-degenerate: one dominant entry, the rest ~ 1e-9 .. 1e-13
        rows = np.full((n, k), 0.0)
        top = rng.integers(0, k, size=n)
        rows[:] = 10.0 ** rng.uniform(-13, -9, size=(n, k))
        rows[np.arange(n), top] = 1.0
    rows = np.where(zero, 0.0, rows)
    rows = np.maximum(rows, 0.0)
    return rows / rows.sum(-1, keepdims=True)


def _zeros(rng: np.random.Generator, n: int, k: int, density: float) -> np.ndarray:
    zero = rng.random((n, k)) < density
    zero[np.arange(n), rng.integers(0, k, size=n)] = False
    return zero


def random_pair(seed: int, k: int, sparse: bool, kind_p: str, kind_q: str) -> ChainPair:
    """Source p and target q with supp q within supp p (zeros of p are zeros of q)."""
    rng = np.random.default_rng(seed)
    density = 0.35 if sparse else 0.0
    zq_init, zq = _zeros(rng, 1, k, density), _zeros(rng, k, k, density)
    # p may only vanish where q does; keep a random subset of q's zeros
    zp_init = zq_init & (rng.random((1, k)) < 0.5)
    zp = zq & (rng.random((k, k)) < 0.5)
    q = MarkovChain(torch.tensor(_rows(rng, 1, k, zq_init, kind_q)[0]), torch.tensor(_rows(rng, k, k, zq, kind_q)))
    p = MarkovChain(torch.tensor(_rows(rng, 1, k, zp_init, kind_p)[0]), torch.tensor(_rows(rng, k, k, zp, kind_p)))
    return ChainPair(p, q, "random")


pair_settings = st.tuples(
    st.integers(0, 2**31),
    st.integers(2, 5),  # K
    st.integers(1, 5),  # L
    st.booleans(),  # sparse rows
    st.sampled_from(["dirichlet", "dirichlet", "degenerate"]),
    st.sampled_from(["dirichlet", "dirichlet", "degenerate"]),
).filter(lambda s: (s[1] + 1) ** s[2] <= 1296)


def masked_samples(chain: MarkovChain, n: int, length: int, g: torch.Generator) -> torch.Tensor:
    """Draws of the chain with random masks (rates 0..1; the first row fully masked, the second clean)."""
    x = chain.sample(n, length, g)
    rate = torch.rand(n, 1, generator=g, dtype=F64)
    rate[0], rate[1] = 1.0, 0.0
    mask = torch.rand(n, length, generator=g, dtype=F64) < rate
    return torch.where(mask, chain.vocab_size, x)


def assert_log_close(got: torch.Tensor, want: torch.Tensor, atol: float = TOL, rtol: float = 0.0) -> None:
    """Equal infinities (with sign) and NaNs at the same places; finite entries within tolerance."""
    assert got.shape == want.shape, (got.shape, want.shape)
    assert torch.equal(torch.isnan(got), torch.isnan(want)), (got, want)
    assert torch.equal(torch.isposinf(got), torch.isposinf(want)), (got, want)
    assert torch.equal(torch.isneginf(got), torch.isneginf(want)), (got, want)
    fin = torch.isfinite(want)
    err = (got[fin] - want[fin]).abs()
    bound = atol + rtol * want[fin].abs()
    assert (err <= bound).all(), float((err - bound).max())


def enumeration(pair: ChainPair, length: int) -> EnumerationOracle:
    k = pair.vocab_size
    laws = LawPair.from_tables(pair.source.table(length), pair.target.table(length), k, length)
    return EnumerationOracle(laws, MaskedProcess(k, LogLinearSchedule()))


# ---------------------------------------------------------------------- against enumeration
@given(pair_settings)
def test_forward_backward_matches_enumeration(settings):
    seed, k, length, sparse, kind_p, kind_q = settings
    pair = random_pair(seed, k, sparse, kind_p, kind_q)
    enum = enumeration(pair, length)
    oracle = PairOracle(pair)
    g = torch.Generator().manual_seed(seed)
    z = masked_samples(pair.source, 8, length, g)  # P_obs(z) > 0
    idx = enum.index(z)
    masked = z == k

    # denoiser marginals of both chains, on their own masked samples too
    for which, chain_oracle in (("p", oracle.source), ("q", oracle.target)):
        zz = z if which == "p" else torch.cat([z, masked_samples(pair.target, 4, length, g)])
        want = enum.denoiser_marginals(T, which)[enum.index(zz)]
        got = chain_oracle(zz)
        assert got.dtype == F64 and got.shape == (zz.shape[0], length, k)
        # NaN rows: z impossible under this law (p's samples seen by q)
        torch.testing.assert_close(got.exp(), want, rtol=0, atol=TOL, equal_nan=True)
        # relative accuracy of tiny marginals too: compare logs
        assert_log_close(got, want.log())

    # log P_obs(z) = log(p_t(z) / (alpha^u (1 - alpha)^(L - u)))
    alpha = LogLinearSchedule().alpha(T)
    u = (~masked).sum(-1).to(F64)
    factor = u * math.log(alpha) + (length - u) * math.log(1 - alpha)
    for which, chain_oracle in (("p", oracle.source), ("q", oracle.target)):
        want = enum.noisy_marginal(T, which)[idx].log() - factor
        assert_log_close(chain_oracle.log_obs(z), want)
        assert_log_close(chain_oracle.posterior(z).log_obs, want)

    # noisy ratio, single-site ratios and E[log r_0 | z]
    assert_log_close(oracle(z), enum.ratio(T)[idx].log())
    want_site = enum.ratio_model(T).single_site(z)  # NaN where z^{i<-v} is impossible under both
    want_site = torch.where(torch.isnan(want_site), -torch.inf, want_site)  # the oracle's 0/0 := 0
    got_site = oracle.single_site(z)
    assert_log_close(got_site[masked], want_site[masked])
    assert_log_close(got_site[~masked], oracle(z)[:, None].expand(-1, length)[~masked][:, None].expand(-1, k))
    assert_log_close(oracle.expected_log_clean_ratio(z), enum.expected_log_clean_ratio(T)[idx])


def test_enumeration_comparison_detects_a_slightly_wrong_chain():
    """Negative control: an oracle for a chain off by 1e-7 in one transition fails the 1e-10 check."""
    pair = random_pair(3, 3, False, "dirichlet", "dirichlet")
    s = pair.source.transition.clone()
    s[0, 0] += 1e-7
    s[0, 1] -= 1e-7
    wrong = ChainOracle(MarkovChain(pair.source.initial, s))
    enum = enumeration(pair, 4)
    z = masked_samples(pair.source, 8, 4, torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError):
        assert_log_close(wrong(z), enum.denoiser_marginals(T, "p")[enum.index(z)].log())
    with pytest.raises(AssertionError):
        assert_log_close(PairOracle(wrong.chain, pair.target)(z), enum.ratio(T)[enum.index(z)].log())


def test_enumeration_comparison_covers_infinities():
    """A pair where the target forbids what the source allows: -inf ratios must be matched too."""
    p = MarkovChain(torch.tensor([0.5, 0.5]), torch.tensor([[0.5, 0.5], [0.3, 0.7]]))
    q = MarkovChain(torch.tensor([0.5, 0.5]), torch.tensor([[1.0, 0.0], [0.3, 0.7]]))
    pair = ChainPair(p, q, "forbid")
    enum = enumeration(pair, 3)
    oracle = PairOracle(pair)
    z = torch.tensor([[0, 2, 2], [0, 1, 2], [2, 2, 2], [1, 2, 1]])
    idx = enum.index(z)
    r = oracle(z)
    assert r[1] == -math.inf and torch.isfinite(r[[0, 2, 3]]).all()
    assert_log_close(r, enum.ratio(T)[idx].log())
    e = oracle.expected_log_clean_ratio(z)
    assert e[0] == -math.inf and e[1] == -math.inf and e[2] == -math.inf
    assert_log_close(e, enum.expected_log_clean_ratio(T)[idx])
    site = oracle.single_site(z)
    assert site[0, 1, 1] == -math.inf and math.isfinite(site[0, 1, 0])


def test_impossible_observations():
    p = MarkovChain(torch.tensor([0.5, 0.5]), torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    q = MarkovChain(torch.tensor([0.5, 0.5]), torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    z = torch.tensor([[0, 2, 1], [0, 1, 2]])  # impossible under p, possible under q
    src = ChainOracle(p)
    assert (src.log_obs(z) == -math.inf).all()
    assert torch.isnan(src(z)).all()
    oracle = PairOracle(p, q)
    assert (oracle(z) == math.inf).all()
    assert torch.isnan(oracle.expected_log_clean_ratio(z)).all()
    site = oracle.single_site(z)
    assert site[0, 1].tolist() == [math.inf, math.inf]  # q(x^2 = v | z) > 0 for both v
    both = PairOracle(p, p)
    assert (both(z) == -math.inf).all()  # 0/0 read as 0
    assert (both.single_site(z) == -math.inf).all()


# ---------------------------------------------------------------------- long chains
def log_space_reference(chain: MarkovChain, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain log-space forward-backward with logsumexp (slow, independent of the scaled code)."""
    k = chain.vocab_size
    log_pi, log_s = chain.initial.log(), chain.transition.log()
    vocab = torch.arange(k)
    log_e = torch.where((z[..., None] == vocab) | (z[..., None] == k), 0.0, -math.inf).to(F64)
    b, length = z.shape
    la = torch.empty(b, length, k, dtype=F64)
    lb = torch.zeros(b, length, k, dtype=F64)
    la[:, 0] = log_pi + log_e[:, 0]
    for i in range(1, length):
        la[:, i] = torch.logsumexp(la[:, i - 1, :, None] + log_s, dim=1) + log_e[:, i]
    for i in range(length - 2, -1, -1):
        lb[:, i] = torch.logsumexp(log_s + (log_e[:, i + 1] + lb[:, i + 1])[:, None, :], dim=2)
    log_obs = torch.logsumexp(la[:, -1], -1)
    return la + lb - log_obs[:, None, None], log_obs


def test_scaled_recursion_matches_log_space_reference():
    pair = random_pair(11, 4, True, "dirichlet", "dirichlet")
    g = torch.Generator().manual_seed(0)
    z = masked_samples(pair.source, 6, 300, g)
    want_marg, want_obs = log_space_reference(pair.source, z)
    post = ChainOracle(pair.source).posterior(z)
    assert_log_close(post.log_obs, want_obs, atol=1e-9, rtol=1e-12)
    assert_log_close(post.log_marginals, want_marg, atol=1e-9)


def near_deterministic_pair(k: int = 4) -> ChainPair:
    uniform = torch.full((k,), 1.0 / k, dtype=F64)
    sticky = MarkovChain(uniform, diagonal_matrix(k, 1 - 1e-12))
    rng = np.random.default_rng(0)
    other = MarkovChain(uniform, torch.tensor(rng.dirichlet(np.ones(k), size=k)))
    return ChainPair(sticky, other, "sticky")


def test_long_near_deterministic_chains_stay_finite():
    pair = near_deterministic_pair()
    k, length = 4, 4096
    g = torch.Generator().manual_seed(1)
    # observations from a *different* chain: many near-impossible switches, P_obs ~ 1e-12^hundreds
    x = pair.target.sample(4, length, g)
    z = torch.where(torch.rand(4, length, generator=g, dtype=F64) < 0.5, k, x)
    for chain_oracle in (ChainOracle(pair.source), ChainOracle(pair.target)):
        post = chain_oracle.posterior(z)
        assert torch.isfinite(post.log_obs).all()
        marg = post.log_marginals.exp()
        torch.testing.assert_close(marg.sum(-1), torch.ones(4, length, dtype=F64), rtol=0, atol=1e-12)
        assert torch.isfinite(post.log_marginals[z == k]).all()
    assert float(ChainOracle(pair.source).log_obs(z).max()) < -1000  # far below float64's range
    oracle = PairOracle(pair)
    r = oracle(z)
    assert torch.isfinite(r).all()
    assert torch.isfinite(oracle.single_site(z)).all()
    jensen = oracle.expected_log_clean_ratio(z)
    assert torch.isfinite(jensen).all() and (jensen <= r + 1e-9 * r.abs()).all()
    # fully observed sequences: P_obs is the exact likelihood
    assert_log_close(ChainOracle(pair.source).log_obs(x), pair.source.log_prob(x), atol=1e-9, rtol=1e-12)


def test_self_normalisation_r4_on_long_sequences():
    """(R4) sum_v p(x^i = v | z) r(z^{i<-v}) = r(z), with r(z^{i<-v}) from separate forward passes."""
    k, length = 4, 1024
    pair = random_pair(5, k, False, "dirichlet", "dirichlet")
    oracle = PairOracle(pair)
    g = torch.Generator().manual_seed(2)
    z = masked_samples(pair.source, 3, length, g)[1:]  # skip the fully masked row (r = 1 exactly)
    z[0, torch.randperm(length, generator=g)[: length // 2]] = k
    log_r = oracle(z)
    log_p = oracle.source(z)
    site = oracle.single_site(z)
    for b in range(z.shape[0]):
        positions = (z[b] == k).nonzero()[:, 0]
        chosen = positions[torch.randperm(positions.numel(), generator=g)[:6]]
        cand = z[b].repeat(len(chosen) * k, 1)
        for j, i in enumerate(chosen.tolist()):
            cand[j * k : (j + 1) * k, i] = torch.arange(k)
        direct = oracle(cand).reshape(len(chosen), k)  # log r(z^{i<-v}) by its own passes
        assert_log_close(site[b, chosen], direct, atol=1e-8, rtol=1e-10)
        lhs = torch.logsumexp(log_p[b, chosen] + direct, dim=-1)
        scale = max(1.0, abs(float(log_r[b])))
        assert ((lhs - log_r[b]).abs() <= 1e-8 * scale).all(), (lhs, log_r[b])


# ---------------------------------------------------------------------- any-order exactness
def reveal_log_prob(oracle: ChainOracle, x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """sum over steps of log q(x^i | revealed so far), revealing position order[b, step] of row b."""
    b, length = x.shape
    z = torch.full_like(x, oracle.mask_id)
    rows = torch.arange(b)
    total = torch.zeros(b, dtype=F64)
    for step in range(length):
        pos = order[:, step]
        total += oracle(z)[rows, pos, x[rows, pos]]
        z[rows, pos] = x[rows, pos]
    return total


@given(seed=st.integers(0, 2**31), k=st.integers(2, 5), length=st.integers(1, 9), sparse=st.booleans(),
       kind=st.sampled_from(["dirichlet", "degenerate"]))
def test_any_order_reveal_gives_the_chain_likelihood(seed, k, length, sparse, kind):
    chain = random_pair(seed, k, sparse, kind, kind).target
    g = torch.Generator().manual_seed(seed)
    x = chain.sample(6, length, g)
    oracle = ChainOracle(chain)
    want = chain.log_prob(x)
    left_to_right = torch.arange(length).repeat(6, 1)
    assert_log_close(reveal_log_prob(oracle, x, left_to_right), want)
    random_order = torch.stack([torch.randperm(length, generator=g) for _ in range(6)])
    assert_log_close(reveal_log_prob(oracle, x, random_order), want)


def reveal_sample(oracle: ChainOracle, n: int, length: int, g: torch.Generator, random_order: bool) -> torch.Tensor:
    """Sample by revealing one position per step from the exact conditionals (float64 draws)."""
    z = torch.full((n, length), oracle.mask_id, dtype=torch.long)
    rows = torch.arange(n)
    if random_order:
        order = torch.rand(n, length, generator=g, dtype=F64).argsort(-1)
    else:
        order = torch.arange(length).repeat(n, 1)
    for step in range(length):
        pos = order[:, step]
        probs = oracle.marginals(z)[rows, pos]
        z[rows, pos] = torch.multinomial(probs, 1, generator=g)[:, 0]
    return z


@pytest.mark.parametrize("random_order", [False, True])
def test_reveal_sampling_reproduces_the_target_chain(random_order):
    pair = make_pair("dirichlet", vocab_size=3, alpha=3.0, seed=1)
    target = pair.target
    oracle = PairOracle(pair).target_denoiser()
    g = torch.Generator().manual_seed(99)
    x = reveal_sample(oracle, 4000, 16, g, random_order)
    assert int(x.max()) < 3
    test = transition_chi_square(x, target.transition, target.initial)
    assert test.pvalue > 1e-4, test
    # power: the same samples reject the source chain
    assert transition_chi_square(x, pair.source.transition).pvalue < 1e-8


# ---------------------------------------------------------------------- API, devices, validation
def test_protocols_and_accessors():
    pair = make_pair("paper")
    oracle = PairOracle(pair)
    assert isinstance(oracle.source, Denoiser) and isinstance(oracle.target_denoiser(), Denoiser)
    assert isinstance(oracle, SequenceRatio) and isinstance(oracle, SingleSiteRatio)
    assert oracle.source_denoiser() is oracle.source and oracle.target_denoiser() is oracle.target
    assert oracle.vocab_size == 5 and oracle.mask_id == 5 and oracle.source.mask_id == 5
    z = torch.tensor([[0, 5, 5, 3], [5, 5, 5, 5]])
    t = torch.full((2,), 0.3)
    assert torch.equal(oracle(z, t), oracle(z))
    assert torch.equal(oracle.source(z, t), oracle.source(z))
    assert PairOracle(pair.source, pair.target)(z).shape == (2,)


def test_custom_mask_id_gives_the_same_answers():
    pair = make_pair("diagonal", vocab_size=4, source_d=0.3, target_d=0.6)
    ref = PairOracle(pair)
    bert = PairOracle(pair, mask_id=103)
    assert bert.mask_id == 103 and bert.target.mask_id == 103
    z = torch.tensor([[0, 4, 4, 3, 4], [4, 1, 2, 4, 4]])
    zb = torch.where(z == 4, 103, z)
    torch.testing.assert_close(bert.source(zb), ref.source(z), rtol=0, atol=0)
    torch.testing.assert_close(bert.single_site(zb), ref.single_site(z), rtol=0, atol=0)
    torch.testing.assert_close(bert.expected_log_clean_ratio(zb), ref.expected_log_clean_ratio(z), rtol=0, atol=0)


def test_batch_rows_are_independent_and_batch_may_be_empty():
    pair = make_pair("dirichlet", vocab_size=4, seed=3)
    oracle = PairOracle(pair)
    g = torch.Generator().manual_seed(0)
    z = masked_samples(pair.source, 5, 7, g)
    whole = oracle.single_site(z)
    for b in range(5):
        torch.testing.assert_close(oracle.single_site(z[b : b + 1])[0], whole[b], rtol=1e-13, atol=1e-13)
    empty = torch.zeros(0, 7, dtype=torch.long)
    assert oracle.source(empty).shape == (0, 7, 4) and oracle(empty).shape == (0,)


def test_no_overlap_pair_reports_infinite_single_site_ratios():
    pair = make_pair("no-overlap", vocab_size=3, extra_tokens=1)
    oracle = PairOracle(pair)
    z = torch.tensor([[0, 4, 4, 1]])
    site = oracle.single_site(z)
    assert site[0, 1, 3] == math.inf  # the target-only token: p = 0 < q
    assert torch.isfinite(site[0, 1, :3]).all()


def test_oracle_validation_errors():
    chain = make_pair("paper").source
    oracle = ChainOracle(chain)
    with pytest.raises(ValueError, match="z"):
        oracle(torch.tensor([[0, 6]]))
    with pytest.raises(ValueError, match="z"):
        oracle(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="z"):
        oracle(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="z"):
        oracle(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="mask_id"):
        ChainOracle(chain, mask_id=2)
    with pytest.raises(ValueError, match="z"):
        ChainOracle(chain, mask_id=103)(torch.tensor([[0, 5]]))  # 5 is neither a token nor the mask
    with pytest.raises(ValueError, match="chain"):
        ChainOracle("not a chain")
    with pytest.raises(ValueError, match="target"):
        PairOracle(chain, make_pair("dirichlet", vocab_size=3).target)
    with pytest.raises(ValueError, match="target"):
        PairOracle(chain)
    with pytest.raises(ValueError, match="target"):
        PairOracle(make_pair("paper"), chain)
    with pytest.raises(ValueError, match="pair_or_source"):
        PairOracle(None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    pair = make_pair("dirichlet", vocab_size=6, seed=2)
    oracle = PairOracle(pair)
    z = masked_samples(pair.source, 16, 64, torch.Generator().manual_seed(0))
    zc = z.cuda()
    torch.testing.assert_close(oracle.source(zc).cpu(), oracle.source(z), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(oracle.single_site(zc).cpu(), oracle.single_site(z), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(oracle.expected_log_clean_ratio(zc).cpu(), oracle.expected_log_clean_ratio(z),
                               rtol=1e-12, atol=1e-12)
