"""The public reverse step (gtl_verify.step) and what it guarantees to every sampler: exact stay mass
under top-k, continuity in gamma, impossible states, and laws that sum to 1 or raise."""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from gtl_verify import guidance
from gtl_verify.checks.problems import random_law, random_law_pair
from gtl_verify.density import fixed_order_log_density
from gtl_verify.enumeration import EnumerationOracle, LawPair, TableRatio
from gtl_verify.exact_law import ancestral_law, planner_law
from gtl_verify.forward import MaskedProcess
from gtl_verify.guidance import ImpossibleStepError
from gtl_verify.planners import PLANNERS, make_planner
from gtl_verify.protocols import SingleSiteRatio
from gtl_verify.rules import GTL, Unguided
from gtl_verify.samplers import SamplerConfig, ancestral_sample, planner_sample
from gtl_verify.schedules import LogLinearSchedule
from gtl_verify.step import StepContext, reverse_step

SCHED = LogLinearSchedule()
seeds = st.integers(0, 2**31 - 1)


class ZipfDenoiser:
    """p(x^i = v | z) proportional to 1 / (v + 1) at every position, K tokens."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size, self.mask_id = vocab_size, vocab_size
        p = 1 / torch.arange(1, vocab_size + 1, dtype=torch.float64)
        self.log_p = torch.log(p / p.sum())

    def __call__(self, z, t=None):
        return self.log_p.expand(*z.shape, -1)


class SequenceOnly:
    """The exact ratio without its single-site table (scored on candidate sequences)."""

    def __init__(self, ratio):
        self.ratio = ratio

    def __call__(self, z, t=None):
        return self.ratio(z, t)


def _oracle(seed=0, k=3, length=3, kind="dense"):
    laws = random_law_pair(k, length, torch.Generator().manual_seed(seed), kind)
    return laws, EnumerationOracle(laws, MaskedProcess(k, SCHED))


# ------------------------------------------------------------------ top-k acts on the token law
def test_top_k_keeps_the_exact_stay_mass_in_the_sampler_step():
    """K = 1000 Zipf denoiser, top_k = 8, t = 0.5, T = 16: P(stay) = (1-a_s)/(1-a_t) = 0.875 (not 0.951)."""
    den = ZipfDenoiser(1000)
    ctx = StepContext.build(den, None, SCHED, Unguided(), gamma=0.0, top_k=8)
    z = torch.full((2, 64), den.mask_id)
    positions = (z == den.mask_id).nonzero()
    law = reverse_step(ctx, z, 0.5, 0.5 - 1 / 16, positions).exp()
    assert torch.allclose(law[:, -1], torch.full((128,), 0.875, dtype=torch.float64), atol=1e-12)
    assert ((law[:, :-1] > 0).sum(-1) == 8).all()
    # over the whole run the expected number of masks left for the last step is L/T = 4
    ctx = SamplerConfig(30, 64, steps=16, rule=Unguided(), gamma=0.0, top_k=8).context(den, None, SCHED)
    z = torch.full((30, 64), den.mask_id)
    gen = torch.Generator().manual_seed(0)
    grid = torch.linspace(1.0, 0.0, 17, dtype=torch.float64).tolist()
    for t, s in zip(grid[:-2], grid[1:-1]):  # every step but the last
        positions = (z == den.mask_id).nonzero()
        outcome = guidance.sample_categorical(reverse_step(ctx, z, t, s, positions), gen)
        z[positions[:, 0], positions[:, 1]] = guidance.outcome_to_tokens(outcome, 1000, den.mask_id)
    left = (z == den.mask_id).sum(-1).double()
    assert abs(left.mean().item() - 4.0) < 5 * left.std().item() / 10  # 21 with the old truncation


# ------------------------------------------------------------------ gamma = 0 is the limit gamma -> 0+
@pytest.mark.parametrize("law_of", ["ancestral", "planner"])
@pytest.mark.parametrize("stabilise", [True, False])
def test_exact_law_is_continuous_at_gamma_zero(law_of, stabilise):
    laws, oracle = _oracle(seed=3)
    rule = GTL(candidates=2, stabilise=stabilise)

    def law(gamma, ratio):
        cfg = SamplerConfig(1, 3, steps=3, gamma=gamma, rule=rule)
        if law_of == "ancestral":
            return ancestral_law(oracle.denoiser(), ratio, SCHED, cfg).clean
        return planner_law(oracle.denoiser(), ratio, make_planner("confidence"), SCHED, cfg).clean

    at_zero, near_zero = law(0.0, None), law(1e-9, oracle.ratio_model())
    assert 0.5 * (at_zero - near_zero).abs().sum() < 1e-6
    assert 0.5 * (law(0.0, oracle.ratio_model()) - at_zero).abs().sum() == 0
    assert 0.5 * (at_zero - laws.p).abs().sum() > 1e-3  # two candidates of three: not the source law


@pytest.mark.parametrize("law_of", ["ancestral", "planner"])
def test_gamma_zero_with_n_candidates_is_the_top_n_truncated_source_law(law_of):
    """An independent route: the unguided rule with top-k = n truncation of the token law."""
    _, oracle = _oracle(seed=5, k=4, length=3)
    gtl = SamplerConfig(1, 3, steps=2, gamma=0.0, rule=GTL(candidates=2))
    truncated = SamplerConfig(1, 3, steps=2, gamma=0.0, rule=Unguided(), top_k=2)
    if law_of == "ancestral":
        a, b = (ancestral_law(oracle.denoiser(), None, SCHED, c).clean for c in (gtl, truncated))
    else:
        a, b = (planner_law(oracle.denoiser(), None, make_planner("random"), SCHED, c).clean for c in (gtl, truncated))
    assert torch.allclose(a, b, atol=1e-14)


def test_gamma_zero_makes_no_ratio_call():
    _, oracle = _oracle()
    res = planner_sample(oracle.denoiser(), SequenceOnly(oracle.ratio_model()), make_planner("random"), SCHED,
                         SamplerConfig(4, 3, gamma=0.0, rule=GTL(candidates=2)), torch.Generator().manual_seed(0))
    assert res.ratio_calls == 0 and res.ratio_passes == 0


# ------------------------------------------------------------------ impossible states
def _cycle_oracle():
    """Two-token deterministic cycle x^{j+1} = 1 - x^j, L = 3, as source and target."""
    p = torch.zeros(8, dtype=torch.float64)
    p[0b010] = p[0b101] = 0.5
    return p, EnumerationOracle(LawPair.from_tables(p, p, 2, 3), MaskedProcess(2, SCHED))


def test_ancestral_sampling_of_a_deterministic_cycle_raises_naming_the_cause():
    p, oracle = _cycle_oracle()
    cfg = SamplerConfig(200, 3, steps=2, rule=Unguided(), gamma=0.0)
    with pytest.raises(ImpossibleStepError, match="probability 0 under the source"):
        ancestral_law(oracle.denoiser(), None, SCHED, cfg)
    with pytest.raises(ImpossibleStepError, match="probability 0 under the source"):
        ancestral_sample(oracle.denoiser(), None, SCHED, cfg, torch.Generator().manual_seed(0))
    # one position per step never leaves the source's support
    law = planner_law(oracle.denoiser(), None, make_planner("random"), SCHED, cfg)
    assert law.clean.sum().item() == pytest.approx(1.0, abs=1e-14) and law.tv(p) < 1e-14
    # one step reveals everything at once: no continuation is needed, the law sums to 1
    one = ancestral_law(oracle.denoiser(), None, SCHED, SamplerConfig(1, 3, steps=1, rule=Unguided(), gamma=0.0))
    assert one.clean.sum().item() == pytest.approx(1.0, abs=1e-14)


class Smoothed:
    """A denoiser that gives every token some mass (an imperfect learned denoiser): where the
    exact one says p = 0 it proposes tokens whose exact ratio is +inf, -inf or NaN."""

    def __init__(self, denoiser, eps):
        self.inner, self.eps = denoiser, eps
        self.vocab_size, self.mask_id = denoiser.vocab_size, denoiser.mask_id

    def __call__(self, z, t=None):
        p = torch.nan_to_num(self.inner(z, t).exp(), nan=0.0)
        total = p.sum(-1, keepdim=True)
        # a network's rows are normalised everywhere: uniform where the exact row is undefined (0/0)
        p = torch.where(total > 0, p / total.clamp_min(1e-300), torch.full_like(p, 1.0 / self.vocab_size))
        return torch.log((1 - self.eps) * p + self.eps / self.vocab_size)


def ieee_ratio(oracle, t=0.5):
    """Exact log r_t = log q_t - log p_t in IEEE arithmetic: +inf where only the target has mass
    (target-only sequences), -inf where only the source has, NaN (0/0) where neither has."""
    return TableRatio(oracle, torch.log(oracle.noisy_marginal(t, "q")) - torch.log(oracle.noisy_marginal(t, "p")))


@st.composite
def edge_problems(draw):
    k, length = draw(st.sampled_from([(2, 2), (2, 3), (3, 2), (3, 3)]))
    gen = torch.Generator().manual_seed(draw(seeds))
    p = random_law(k**length, gen, draw(st.sampled_from(["sparse", "near-degenerate", "dense"])))
    # the target may put mass where the source has none (target-only sequences: infinite ratios)
    q = random_law(k**length, gen, draw(st.sampled_from(["sparse", "dense", "peaked"])))
    oracle = EnumerationOracle(LawPair.from_tables(p, q, k, length), MaskedProcess(k, SCHED))
    eps = draw(st.sampled_from([0.0, 0.0, 1e-3, 0.2]))
    denoiser = oracle.denoiser() if eps == 0 else Smoothed(oracle.denoiser(), eps)
    rule = draw(st.sampled_from([Unguided(), GTL(), GTL(candidates=1), GTL(candidates=2), GTL(stabilise=False)]))
    top_k = draw(st.sampled_from([None, 1, 2]))
    gamma = draw(st.sampled_from([0.0, 0.5, 1.0, 3.0]))
    return oracle, denoiser, rule, top_k, gamma, length


@settings(max_examples=60, deadline=None)
@given(edge_problems(), st.integers(1, 4), st.sampled_from(sorted(PLANNERS)), st.sampled_from([0.0, 0.7]))
def test_exact_law_of_every_sampler_sums_to_one_or_raises(problem, steps, planner, temperature):
    oracle, denoiser, rule, top_k, gamma, length = problem
    cfg = SamplerConfig(1, length, steps=steps, gamma=gamma, rule=rule, top_k=top_k, temperature=temperature)
    ratio = ieee_ratio(oracle)
    exact_source = not isinstance(denoiser, Smoothed)
    for name, exact in (("ancestral", lambda: ancestral_law(denoiser, ratio, SCHED, cfg)),
                        ("planner", lambda: planner_law(denoiser, ratio, make_planner(planner), SCHED, cfg))):
        try:
            law = exact()
        except ImpossibleStepError:
            continue
        assert torch.isfinite(law.clean).all() and (law.clean >= 0).all()
        assert law.clean.sum().item() == pytest.approx(1.0, abs=1e-12)
        if name == "planner" and exact_source:  # one reveal at a time never leaves supp p
            assert (law.clean[oracle.laws.p == 0] == 0).all()


def test_infinite_ratio_on_target_only_tokens_is_sampled_not_nan():
    """A denoiser that allows a token whose ratio is +inf: the planner sampler takes it."""
    p = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64)  # K = 2, L = 2: only 00 and 01
    q = torch.tensor([0.0, 0.0, 0.5, 0.5], dtype=torch.float64)  # target-only 10 and 11
    oracle = EnumerationOracle(LawPair.from_tables(p, q, 2, 2), MaskedProcess(2, SCHED))
    den = Smoothed(oracle.denoiser(), 0.2)
    cfg = SamplerConfig(64, 2, rule=GTL(), gamma=1.0, temperature=0.0)
    ratio = ieee_ratio(oracle)
    assert torch.isposinf(ratio(torch.tensor([[1, 2]]))).all()
    law = planner_law(den, ratio, make_planner("left-to-right"), SCHED, cfg)
    assert law.clean.sum().item() == pytest.approx(1.0) and law.clean[2:].sum().item() == pytest.approx(1.0)
    res = planner_sample(den, ratio, make_planner("left-to-right"), SCHED, cfg, torch.Generator().manual_seed(0))
    assert (res.tokens[:, 0] == 1).all()


# ------------------------------------------------------------------ the step itself
def test_reverse_step_is_the_rule_law_and_reveal_only_conditions_on_a_reveal():
    _, oracle = _oracle(seed=1)
    den = oracle.denoiser()
    ctx = StepContext.build(den, None, SCHED, Unguided(), gamma=0.0)
    z = torch.tensor([[3, 0, 3], [1, 3, 3]])
    positions = (z == 3).nonzero()
    full = reverse_step(ctx, z, 0.6, 0.2, positions)
    expected = guidance.mdlm_posterior(den(z)[positions[:, 0], positions[:, 1]], SCHED.alpha(0.2), SCHED.alpha(0.6))
    assert torch.allclose(full, expected, atol=1e-14)
    reveal = reverse_step(ctx, z, 0.6, 0.2, positions, reveal_only=True).exp()
    assert (reveal[:, -1] == 0).all()
    assert torch.allclose(reveal[:, :-1], expected.exp()[:, :-1] / expected.exp()[:, :-1].sum(-1, keepdim=True), atol=1e-14)
    assert ctx.denoiser.count.calls == 1  # cached while z is unchanged


def test_reverse_step_rejects_a_missing_ratio_and_a_malformed_rule():
    _, oracle = _oracle()
    z = torch.full((2, 3), 3)
    positions = (z == 3).nonzero()
    with pytest.raises(ValueError, match="ratio is None"):
        reverse_step(StepContext.build(oracle.denoiser(), None, SCHED, GTL(), gamma=1.0), z, 1.0, 0.5, positions)

    def short(step):
        return step.position_log_probs  # [M, K] instead of [M, K + 1]

    with pytest.raises(ValueError, match=r"rule 'short' must return log-weights of shape \(6, 4\)"):
        reverse_step(StepContext.build(oracle.denoiser(), None, SCHED, short, gamma=0.0), z, 1.0, 0.5, positions)
    with pytest.raises(ValueError, match="gamma"):
        SamplerConfig(1, 3, gamma=math.inf)


def test_single_site_support_is_the_protocol():
    _, oracle = _oracle()
    assert isinstance(oracle.ratio_model(), SingleSiteRatio)
    assert not isinstance(SequenceOnly(oracle.ratio_model()), SingleSiteRatio)
    ctx = StepContext.build(oracle.denoiser(), oracle.ratio_model(), SCHED, GTL())
    assert isinstance(ctx.ratio, SingleSiteRatio)  # the counting wrapper keeps the capability


def test_density_uses_the_same_step_as_the_planner_law():
    laws, oracle = _oracle(seed=2)
    cfg = SamplerConfig(1, 3, rule=GTL(candidates=2), gamma=0.7, top_k=2, temperature=0.0)
    law = planner_law(oracle.denoiser(), oracle.ratio_model(), make_planner("left-to-right"), SCHED, cfg)
    x = torch.cartesian_prod(*[torch.arange(3)] * 3)
    dens = fixed_order_log_density(oracle.denoiser(), oracle.ratio_model(), cfg.rule, SCHED, x, gamma=0.7, top_k=2).exp()
    assert torch.allclose(dens, law.clean, atol=1e-14)
