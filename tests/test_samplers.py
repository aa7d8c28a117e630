"""Samplers against exact laws on enumerable spaces, cost formulas and caching."""

import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.stats import chisquare

from gtl_verify.checks.problems import random_law_pair
from gtl_verify.enumeration import EnumerationOracle
from gtl_verify.exact_law import ancestral_law, planner_law
from gtl_verify.forward import MaskedProcess, sequence_index
from gtl_verify.planners import PLANNERS, make_planner
from gtl_verify.rules import GTL, Unguided
from gtl_verify.samplers import SamplerConfig, ancestral_sample, planner_sample
from gtl_verify.schedules import LogLinearSchedule, make_schedule

from gtl_verify.testing import law_pairs, schedule_names, shapes

SCHED = LogLinearSchedule()


def _setup(k=3, length=3, seed=0, kind="dense"):
    laws = random_law_pair(k, length, torch.Generator().manual_seed(seed), kind)
    oracle = EnumerationOracle(laws, MaskedProcess(k, SCHED))
    return laws, oracle.denoiser(), oracle.ratio_model()


class SequenceOnly:
    """A ratio without single_site: candidates are scored as whole sequences. ``drift`` adds
    drift * (number of unmasked tokens) to log r: a level error that grows as tokens are revealed."""

    def __init__(self, ratio, drift=0.0):
        self.ratio, self.drift = ratio, drift

    def __call__(self, z, t=None):
        return self.ratio(z, t) + self.drift * (z != 3).sum(-1)


@settings(max_examples=40)
@given(shapes(max_noisy_states=300, vocab=(2, 4), lengths=(1, 4)).flatmap(lambda kl: st.tuples(st.just(kl), law_pairs(*kl))),
       st.sampled_from(sorted(PLANNERS)), st.floats(0.0, 2.0), schedule_names)
def test_planner_sampler_is_exact_for_every_planner(shape_laws, planner_name, temperature, schedule):
    """Exact source denoiser + exact ratio + gamma = 1 + stabiliser: the output law is q."""
    (k, length), laws = shape_laws
    sched = make_schedule(schedule)
    oracle = EnumerationOracle(laws, MaskedProcess(k, sched))
    cfg = SamplerConfig(1, length, temperature=temperature)
    law = planner_law(oracle.denoiser(), oracle.ratio_model(), make_planner(planner_name), sched, cfg)
    assert law.tv(laws.q) <= 1e-10 and law.leftover_mass == 0


def test_planner_sampler_gamma_zero_gives_source_law():
    laws, den, rat = _setup()
    law = planner_law(den, rat, make_planner("confidence"), SCHED, SamplerConfig(1, 3, gamma=0.0))
    assert law.tv(laws.p) <= 1e-12


def test_ancestral_tv_decreases_with_steps_and_gamma0_matches_source():
    laws, den, rat = _setup(3, 4, seed=2)
    guided, unguided = [], []
    for steps in (1, 2, 4, 16, 64):
        guided.append(ancestral_law(den, rat, SCHED, SamplerConfig(1, 4, steps=steps)).tv(laws.q))
        g0 = ancestral_law(den, rat, SCHED, SamplerConfig(1, 4, steps=steps, gamma=0.0))
        un = ancestral_law(den, None, SCHED, SamplerConfig(1, 4, steps=steps, rule=Unguided()))
        assert g0.tv(un.clean) <= 1e-14  # gamma = 0 is the unguided sampler
        unguided.append(un.tv(laws.p))
    assert all(a > b for a, b in zip(guided, guided[1:])), guided
    assert all(a > b for a, b in zip(unguided, unguided[1:])), unguided
    assert guided[-1] < 0.05 * guided[0]
    # one position per step in the limit: a single position (L = 1) is exact at any T
    laws1, den1, rat1 = _setup(4, 1, seed=3)
    assert ancestral_law(den1, rat1, SCHED, SamplerConfig(1, 1, steps=1)).tv(laws1.q) <= 1e-12


def test_stabiliser_prevents_collapse_under_a_miscalibrated_ratio():
    laws, den, rat = _setup(3, 3, seed=4)
    low = SequenceOnly(rat, drift=-4.0)  # each revealed token lowers the ratio's level by e^4
    cfg = dict(num_samples=1, length=3, steps=8, final_argmax=False)
    stable = ancestral_law(den, low, SCHED, SamplerConfig(**cfg, rule=GTL(stabilise=True)))
    exact = ancestral_law(den, rat, SCHED, SamplerConfig(**cfg))
    assert stable.tv(exact.clean) <= 1e-12 and stable.leftover_mass == 0
    unstable = ancestral_law(den, low, SCHED, SamplerConfig(**cfg, rule=GTL(stabilise=False)))
    # positions stay masked too long and are all forced out at the last step (s = 0): a timing error
    assert unstable.tv(exact.clean) > 0.01
    # the unstabilised rule with the calibrated ratio is exact per position, like the stabilised one
    calibrated = ancestral_law(den, SequenceOnly(rat), SCHED, SamplerConfig(**cfg, rule=GTL(stabilise=False)))
    assert calibrated.tv(exact.clean) <= 1e-12


@pytest.mark.parametrize("n", [1, 2, 3])
def test_ratio_cost_formulas(n):
    laws, den, rat = _setup(3, 3, seed=5)
    b, length, steps = 7, 3, 5
    ratio = SequenceOnly(rat)
    res = ancestral_sample(den, ratio, SCHED, SamplerConfig(b, length, steps=steps, rule=GTL(candidates=n)), torch.Generator().manual_seed(0))
    # replay the masks to count masked positions per step: passes = sum_steps masked * n
    gen = torch.Generator().manual_seed(0)
    masked_total, z = 0, None
    from gtl_verify.counting import CountingRatio

    counter = CountingRatio(ratio)
    res2 = ancestral_sample(den, counter, SCHED, SamplerConfig(b, length, steps=steps, rule=GTL(candidates=n)), gen)
    assert torch.equal(res.tokens, res2.tokens)
    assert res.ratio_passes == counter.count.sequences
    assert res.ratio_passes % n == 0 and res.ratio_passes // n <= b * length * steps
    planned = planner_sample(den, ratio, make_planner("margin"), SCHED, SamplerConfig(b, length, rule=GTL(candidates=n)), torch.Generator().manual_seed(1))
    assert planned.ratio_passes == b * length * n  # n per step, L steps
    assert planned.planner_calls == length and planned.denoiser_calls == length


def test_full_guidance_cost_is_masked_positions_times_k():
    laws, den, rat = _setup(3, 3, seed=6)
    res = ancestral_sample(den, SequenceOnly(rat), SCHED, SamplerConfig(4, 3, steps=1), torch.Generator().manual_seed(0))
    assert res.ratio_passes == 4 * 3 * 3  # one step from all-mask: B * L masked positions x K tokens


def test_denoiser_call_is_reused_when_nothing_changed():
    laws, den, rat = _setup(3, 2, seed=7)
    res = ancestral_sample(den, rat, SCHED, SamplerConfig(1, 2, steps=200), torch.Generator().manual_seed(0))
    assert res.denoiser_calls <= 2  # z changes at most twice (L = 2) before the last reveal
    assert res.steps <= 200


def test_n_equal_k_is_full_guidance_and_gamma0_is_unguided():
    laws, den, rat = _setup(3, 3, seed=8)
    cfg = dict(num_samples=50, length=3, steps=6)
    a = ancestral_sample(den, rat, SCHED, SamplerConfig(**cfg, rule=GTL(candidates=3)), torch.Generator().manual_seed(0))
    b = ancestral_sample(den, rat, SCHED, SamplerConfig(**cfg, rule=GTL()), torch.Generator().manual_seed(0))
    assert torch.equal(a.tokens, b.tokens)
    c = ancestral_sample(den, rat, SCHED, SamplerConfig(**cfg, gamma=0.0), torch.Generator().manual_seed(0))
    d = ancestral_sample(den, None, SCHED, SamplerConfig(**cfg, rule=Unguided()), torch.Generator().manual_seed(0))
    assert torch.equal(c.tokens, d.tokens)


@pytest.mark.parametrize("mode", ["ancestral", "planner"])
def test_samples_follow_the_exact_law(mode):
    """Chi-square of 20k samples against the propagated law (27 cells) at a fixed seed."""
    laws, den, rat = _setup(3, 3, seed=9)
    n = 20_000
    gen = torch.Generator().manual_seed(0)
    if mode == "ancestral":
        cfg = SamplerConfig(n, 3, steps=3, rule=GTL(candidates=2))
        res, law = ancestral_sample(den, rat, SCHED, cfg, gen), ancestral_law(den, rat, SCHED, cfg)
    else:
        cfg = SamplerConfig(n, 3, rule=GTL(candidates=2), temperature=1.0)
        res = planner_sample(den, rat, make_planner("entropy"), SCHED, cfg, gen)
        law = planner_law(den, rat, make_planner("entropy"), SCHED, cfg)
    counts = torch.bincount(sequence_index(res.tokens, 3), minlength=27).double()
    expected = law.clean * n
    keep = expected > 5
    assert counts[~keep].sum() <= 5 * max(1.0, float(expected[~keep].sum()))
    stat = chisquare(counts[keep].numpy(), expected[keep].numpy() * counts[keep].sum().item() / expected[keep].sum().item())
    assert stat.pvalue > 1e-4


def test_determinism_and_bad_input():
    laws, den, rat = _setup(3, 3, seed=10)
    a = ancestral_sample(den, rat, SCHED, SamplerConfig(20, 3, steps=4), torch.Generator().manual_seed(3))
    b = ancestral_sample(den, rat, SCHED, SamplerConfig(20, 3, steps=4), torch.Generator().manual_seed(3))
    assert torch.equal(a.tokens, b.tokens)
    with pytest.raises(ValueError, match="ratio is None"):
        ancestral_sample(den, None, SCHED, SamplerConfig(2, 3))
    with pytest.raises(ValueError, match="num_samples"):
        SamplerConfig(0, 3)
    with pytest.raises(ValueError, match="gamma"):
        SamplerConfig(2, 3, gamma=-1.0)
    with pytest.raises(ValueError, match="candidates"):
        ancestral_sample(den, rat, SCHED, SamplerConfig(2, 3, rule=GTL(candidates=9)))
    with pytest.raises(ValueError, match="planner must be one of"):
        make_planner("psychic")


@pytest.mark.parametrize("candidates,gamma", [(None, 1.0), (2, 0.7), (None, 0.0)])
def test_fixed_order_token_log_prob_is_the_density_bit_for_bit(candidates, gamma):
    """Left-to-right at temperature 0: the sampler's own token log-probabilities are
    fixed_order_log_density of its output, bit for bit (networks, whole-sequence ratio scoring)."""
    from gtl_verify.density import fixed_order_log_density
    from gtl_verify.learned import NetworkDenoiser, NetworkRatio
    from gtl_verify.networks import BackboneConfig, DenoiserNet, SequenceNet
    from gtl_verify.planners import LeftToRightPlanner

    torch.manual_seed(5)
    cfg = BackboneConfig(vocab_size=4, num_embeddings=5, max_length=6, hidden=16, blocks=1, heads=2, cond=8)
    den, rat = NetworkDenoiser(DenoiserNet(cfg).eval(), 4), NetworkRatio(SequenceNet(cfg).eval())
    rule = GTL(candidates=candidates)
    res = planner_sample(den, rat, LeftToRightPlanner(), SCHED, SamplerConfig(37, 6, rule=rule, gamma=gamma, temperature=0.0),
                         torch.Generator().manual_seed(1))
    density = fixed_order_log_density(den, rat, rule, SCHED, res.tokens, gamma)
    assert res.token_log_prob.dtype == torch.float64 and torch.equal(res.token_log_prob, density)


def test_token_log_prob_at_temperature_zero_is_the_exact_log_density():
    """Any planner at temperature 0 (the order is a function of the output): exp(token_log_prob) is
    the exact law of planner_law at the drawn sequences; the ancestral sampler leaves it None."""
    laws, den, rat = _setup(3, 3, seed=4)
    cfg = SamplerConfig(50, 3, temperature=0.0)
    law = planner_law(den, rat, make_planner("confidence"), SCHED, cfg)
    res = planner_sample(den, rat, make_planner("confidence"), SCHED, cfg, torch.Generator().manual_seed(2))
    exact = law.clean[sequence_index(res.tokens, 3)]
    assert torch.allclose(res.token_log_prob.exp(), exact, rtol=1e-10, atol=0)
    assert ancestral_sample(den, rat, SCHED, SamplerConfig(5, 3, steps=2), torch.Generator().manual_seed(0)).token_log_prob is None
