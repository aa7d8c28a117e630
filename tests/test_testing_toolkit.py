"""The public testing toolkit: its references are exact, its assertions pass on exact components and fail,
readably, on wrong ones; its strategies and fixtures produce what they promise."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gtl_verify.rules import GTL, Unguided
from gtl_verify.planners import PLANNERS, make_planner
from gtl_verify.testing import (
    CHAIN_KINDS,
    assert_denoiser_exact,
    assert_ratio_calibrated,
    assert_rule_matches_exact_step,
    assert_sampler_law_exact,
    candidate_counts,
    chain_pairs,
    exact_components,
    exact_guided_step,
    exact_target_law,
    format_state,
    gammas,
    hmm_pairs,
    law_pairs,
    masked_states,
    oracles,
    pairs,
    random_chain_pair,
    schedules,
    shapes,
    times,
)
from markov.hmm import HMMPair, make_hmm_pair
from markov.presets import make_pair

pytest_plugins = ["pytester"]
F64 = torch.float64


class DoubledGamma:
    """A wrong rule: GTL with twice the guidance strength."""

    name = "doubled gamma"

    def __call__(self, step):
        return GTL()(dataclasses.replace(step, gamma=2 * step.gamma))


def pair_and_states(pair_strategy, lengths=(1, 4)):
    return st.tuples(pair_strategy, st.integers(*lengths)).flatmap(
        lambda pl: st.tuples(st.just(pl[0]), masked_states(pl[0], pl[1])))


# ---------------------------------------------------------------------- the exact step reference
@given(oracles("masked"), times(allow_zero=False))
def test_exact_step_at_gamma_one_is_the_target_reverse_marginal(oracle, st_):
    """Theorem 1 per position: at gamma = 1 the reference is q(z_s^i | z_t), from the target's exact
    reverse kernel marginalised to each masked position (an independent computation)."""
    s, t = st_
    comp = exact_components(oracle)
    k, length = oracle.vocab_size, oracle.length
    live = oracle.noisy_marginal(t, "q") > 0
    z = oracle.noisy[live & (oracle.noisy_marginal(t, "p") > 0) & (oracle.noisy == k).any(-1)]
    if len(z) == 0:
        return
    want = exact_guided_step(comp, z, s, t, 1.0, oracle.process.schedule)
    kernel = oracle.reverse_kernel(s, t, "q")[oracle.index(z)]  # [B, S^L]
    onehot = torch.nn.functional.one_hot(oracle.noisy, k + 1).to(F64)  # [S^L, L, S]
    per_position = torch.einsum("bz,zls->bls", kernel, onehot)
    positions = (z == k).nonzero()
    got = per_position[positions[:, 0], positions[:, 1]]
    assert (want - got).abs().max() <= 1e-10


@given(chain_pairs(kinds=CHAIN_KINDS), st.integers(1, 4), gammas(), times(allow_zero=False), st.data())
def test_gtl_matches_the_exact_step_on_random_chains(pair, length, gamma, st_, data):
    s, t = st_
    z = data.draw(masked_states(pair, length))
    n = data.draw(candidate_counts(pair.vocab_size))
    try:  # top-n may keep only tokens the target forbids: the guided law is 0/0 there
        exact_guided_step(exact_components(pair), z, s, t, gamma, candidates=n)
    except ValueError:
        assume(False)
    assert_rule_matches_exact_step(GTL(candidates=n), pair, z, s=s, t=t, gamma=gamma, candidates=n)


@given(hmm_pairs(), st.integers(1, 4), gammas(), times(allow_zero=False), schedules(), st.data())
def test_gtl_matches_the_exact_step_on_random_hmms(pair, length, gamma, st_, schedule, data):
    s, t = st_
    z = data.draw(masked_states(pair, length))
    assert_rule_matches_exact_step(GTL(), pair, z, s=s, t=t, gamma=gamma, schedule=schedule)


@given(oracles("masked", max_noisy_states=300), times(allow_zero=False))
def test_unguided_matches_the_exact_step_at_gamma_zero_on_enumerable_laws(oracle, st_):
    s, t = st_
    comp = exact_components(oracle)
    z = oracle.noisy[(oracle.noisy_marginal(t, "p") > 0) & (oracle.noisy_marginal(t, "q") > 0)
                     & (oracle.noisy == oracle.vocab_size).any(-1)]
    if len(z):
        assert_rule_matches_exact_step(Unguided(), comp, z, s=s, t=t, gamma=0.0, schedule=oracle.process.schedule)


def test_a_wrong_rule_fails_with_a_readable_message():
    pair = make_pair("paper")
    with pytest.raises(AssertionError) as info:
        assert_rule_matches_exact_step(DoubledGamma(), pair, torch.tensor([[5, 5, 5], [0, 5, 5]]), s=0.3, t=0.7)
    message = str(info.value)
    assert "rule 'doubled gamma' does not reproduce the exact guided step at the step t=0.7 -> s=0.3 (gamma=1)" in message
    # the paper's chains are symmetric: on [M, M, M] every marginal is uniform and guidance does nothing
    assert "first differing state: z = [0, M, M] (row 1), masked position 1" in message
    assert re.search(r"token 0\s+0\.\d+\s+0\.\d+", message) and "stay masked" in message
    assert re.search(r"TV = [0-9.e-]+ > tolerance 1e-09; 2 of 5 masked positions differ", message)


def test_malformed_rule_outputs_are_named():
    pair = make_pair("paper")
    cases = {
        "shape": (lambda step: torch.zeros(step.positions.shape[0], 5), r"returned shape \(3, 5\).*\[M, K \+ 1\] = \(3, 6\)"),
        "none": (lambda step: None, "returned NoneType"),
        "nan": (lambda step: torch.full((step.positions.shape[0], 6), float("nan")), "NaN, \\+inf or all -inf"),
        "all -inf": (lambda step: torch.full((step.positions.shape[0], 6), -float("inf")), "NaN, \\+inf or all -inf"),
    }
    for name, (rule, pattern) in cases.items():
        with pytest.raises(AssertionError, match=pattern):
            assert_rule_matches_exact_step(rule, pair, length=3)


def test_top_n_reference_breaks_ties_towards_the_lowest_token():
    comp = exact_components(make_pair("paper"))  # uniform first token: every token ties
    step = exact_guided_step(comp, torch.full((1, 1), 5), 0.0, 0.5, 1.0, candidates=2)
    assert step[0, :2].gt(0).all() and step[0, 2:5].eq(0).all()


def test_exact_step_refuses_impossible_states():
    pair = random_chain_pair(0, 3, "target-only")  # the source never emits token 2
    comp = exact_components(pair)
    with pytest.raises(ValueError, match=r"z = \[2, M\] has probability 0 under the source"):
        exact_guided_step(comp, torch.tensor([[2, 3]]), 0.2, 0.6, 1.0)
    with pytest.raises(ValueError, match="gamma must be finite"):
        exact_guided_step(comp, torch.tensor([[3, 3]]), 0.2, 0.6, float("inf"))


# ---------------------------------------------------------------------- sampler laws
@settings(max_examples=30)
@given(pairs(vocab=(2, 3)), st.integers(1, 3), st.sampled_from(sorted(PLANNERS)), st.sampled_from([0.0, 0.7]))
def test_gtl_sampler_law_is_the_target_on_chains_and_hmms(pair, length, planner, temperature):
    law = assert_sampler_law_exact(GTL(), pair, length, planner=make_planner(planner), temperature=temperature)
    assert abs(float(law.clean.sum()) - 1) <= 1e-12


def test_sampler_law_failure_lists_sequences_and_tv():
    with pytest.raises(AssertionError) as info:
        assert_sampler_law_exact(Unguided(), make_pair("paper"), 2)
    message = str(info.value)
    assert "rule 'unguided' with exact components at gamma=1 does not sample the target law" in message
    assert re.search(r"first differing sequence: \[0, 0\]: expected 0\.16, observed 0\.02", message)
    assert "TV = " in message and "the observed law sums to 1" in message


def test_target_only_mass_is_reported_as_the_documented_failure_mode():
    pair = make_pair("no-overlap", vocab_size=2)
    q = exact_target_law(pair, 2)
    lost = float(q[pair.source.table(2) == 0].sum())
    with pytest.raises(AssertionError, match=rf"target puts mass {lost:.6g} on sequences the source never emits"):
        assert_sampler_law_exact(GTL(), pair, 2)


# ---------------------------------------------------------------------- ratio and denoiser
class SequenceOnly:
    """The exact ratio without single_site, optionally with a level drift per revealed token."""

    def __init__(self, ratio, drift=0.0):
        self.ratio, self.drift = ratio, drift

    def __call__(self, z, t=None):
        return self.ratio(z, t) + self.drift * (z != self.ratio.mask_id).sum(-1)


@given(pair_and_states(pairs()))
def test_exact_ratios_are_calibrated(pair_z):
    pair, z = pair_z
    comp = exact_components(pair)
    assert_ratio_calibrated(comp.ratio, pair, z)
    assert_ratio_calibrated(SequenceOnly(comp.ratio), pair, z)
    assert_denoiser_exact(comp.source, pair, z)
    assert_denoiser_exact(comp.target, pair, z, which="target")


def test_miscalibrated_ratio_and_wrong_denoiser_fail_readably():
    pair = make_pair("paper")
    comp = exact_components(pair)
    z = torch.tensor([[5, 5, 5], [1, 5, 2]])
    with pytest.raises(AssertionError, match=r"not calibrated: at z = \[1, M, 2\] \(row 1\) it gives log r = "):
        assert_ratio_calibrated(SequenceOnly(comp.ratio, drift=0.1), pair, z)
    with pytest.raises(AssertionError, match=r"differs from the exact source posterior .* z = \[1, M, 2\] \(row 1\), "
                                             r"masked position 1"):
        assert_denoiser_exact(comp.target, pair, z)


def test_references_name_bad_inputs():
    oracle_pair = make_pair("paper")
    with pytest.raises(ValueError, match="pair must be a ChainPair, HMMPair or EnumerationOracle, got str"):
        exact_components("paper")
    with pytest.raises(ValueError, match=r"z must have shape \(batch, length\)"):
        assert_ratio_calibrated(exact_components(oracle_pair).ratio, oracle_pair, torch.tensor([5, 5]))
    assert format_state(torch.tensor([2, 5, 0]), 5) == "[2, M, 0]"


# ---------------------------------------------------------------------- strategies and fixtures
@given(chain_pairs(vocab=(2, 4), kinds=CHAIN_KINDS), st.integers(1, 4), st.data())
def test_masked_states_are_possible_under_both_laws(pair, length, data):
    z = data.draw(masked_states(pair, length))
    comp = exact_components(pair)
    assert (z[0] == pair.vocab_size).all()
    assert torch.isfinite(comp.source.log_obs(z)).all() and torch.isfinite(comp.target.log_obs(z)).all()


def test_chain_kinds_have_their_structure():
    for seed in range(20):
        banded = random_chain_pair(seed, 5, "banded")
        assert (banded.source.transition == 0).any() or banded.name  # zeros unless the band is full
        assert ((banded.source.transition == 0) <= (banded.target.transition == 0)).all()
        only = random_chain_pair(seed, 4, "target-only")
        never = (only.source.transition == 0).all(0) & (only.source.initial == 0)
        assert never.any() and (only.target.initial[never] > 0).all()
        near = random_chain_pair(seed, 3, "near-deterministic")
        assert (near.target.transition.amax(-1) > 1 - 1e-8).all()
    with pytest.raises(ValueError, match="kind must be one of"):
        random_chain_pair(0, 3, "dense")


@given(shapes(max_noisy_states=100), st.data())
def test_law_pairs_are_absolutely_continuous(shape, data):
    laws = data.draw(law_pairs(*shape))
    assert not ((laws.p == 0) & (laws.q > 0)).any()


def test_fixtures_give_exact_ground_truth(gtl_pair, gtl_exact, gtl_schedule):
    comp = gtl_exact(gtl_pair)
    assert abs(float(comp.target_table(3).sum()) - 1) <= 1e-12
    assert_rule_matches_exact_step(GTL(), gtl_pair, length=3, schedule=gtl_schedule)


def test_hmm_fixture_and_chain_fixture_types(gtl_chain_pair, gtl_hmm_pair):
    assert isinstance(gtl_hmm_pair, HMMPair)
    assert gtl_chain_pair.vocab_size >= 2 and gtl_hmm_pair.vocab_size >= 2
    assert make_hmm_pair("regime").vocab_size == 4


def test_plugin_gives_an_outside_project_its_fixtures(pytester):
    """The user example's fixture test, in a bare folder (no conftest), passes with only the plugin loaded,
    and the pyproject's pytest11 entry point names that plugin (so installing the package loads it)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    entry = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    assert entry == {"gtl_verify.testing.plugin": "gtl_verify.testing.plugin"}
    pytester.makepyfile(test_mine=(root / "tests" / "test_user_guidance_example.py").read_text())
    run = pytester.runpytest_inprocess("-p", "no:gtl_verify", "-p", "gtl_verify.testing.plugin", "-k", "target_law")
    run.assert_outcomes(passed=6, deselected=1)


@pytest.mark.parametrize("route", ["-p", "pytest_plugins"])
def test_installed_entry_point_and_the_readme_routes_register_one_plugin(tmp_path, route):
    """With the package installed (its pytest11 entry point, as pyproject.toml names it) AND the README's
    ``-p gtl_verify.testing.plugin`` or ``pytest_plugins = [...]``, pytest starts and the fixtures work:
    both routes register the plugin under one name. The install is a dist-info made from pyproject.toml;
    the checkout's own installed entry point is blocked by its name for this run."""
    import subprocess
    import sys
    import tomllib
    from importlib.metadata import entry_points
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    entry = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    site = tmp_path / "site"
    info = site / "gtl_verify_probe-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gtl-verify-probe\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in entry.items()))
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_mine.py").write_text("def test_fixture(gtl_chain_pair):\n    assert gtl_chain_pair.vocab_size >= 2\n")
    args = ["-p", "gtl_verify.testing.plugin"] if route == "-p" else []
    if route == "pytest_plugins":
        (project / "conftest.py").write_text('pytest_plugins = ["gtl_verify.testing.plugin"]\n')
    blocked = [f"-p no:{e.name}" for e in entry_points(group="pytest11")
               if e.value == "gtl_verify.testing.plugin" and e.name not in entry]
    env = {**__import__("os").environ, "PYTHONPATH": f"{site}:{root}"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *" ".join(blocked).split(), *args, str(project)],
                         cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "error" not in run.stdout.lower()


def test_a_users_markov_module_shadowing_the_package_is_named(monkeypatch, tmp_path):
    """A user's own markov.py hides gtl-verify's markov package: the import error says so and where."""
    import importlib
    import sys
    import types

    import gtl_verify.testing as testing

    fake = types.ModuleType("markov")
    fake.__file__ = str(tmp_path / "markov.py")
    for name in [m for m in sys.modules if m == "markov" or m.startswith("markov.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "markov", fake)
    with pytest.raises(ImportError, match="shadows gtl-verify's markov package"):
        testing.random_hmm_pair  # noqa: B018 - the lazy import is the behaviour under test
    importlib.invalidate_caches()


@pytest.mark.parametrize("kwargs, message", [
    ({"s": 0.8, "t": 0.2}, r"s must be smaller than t, got s=0.8, t=0.2"),
    ({"s": 0.5, "t": 0.5}, r"s must be smaller than t"),
    ({"s": -0.1}, r"^s must be in \[0, 1\], got -0.1"),
    ({"t": 1.5}, r"^t must be in \[0, 1\], got 1.5"),
    ({"tol": -1e-9}, r"^tol must be in \[0, inf\), got -1e-09"),
    ({"tol": float("nan")}, r"^tol must be in \[0, inf\), got nan"),
    ({"z": torch.tensor([5, 5, 5])}, r"^z must have shape \(batch, length\), got \(3,\)"),
    ({"z": torch.tensor([[5.0, 0.7, 5.0]])}, r"^z must be an integer tensor, got torch.float32"),
    ({"z": torch.tensor([[6, 5, 5]])}, r"^z has a token outside 0..5"),
])
def test_step_assertion_refuses_a_wrong_setup_before_work(kwargs, message):
    with pytest.raises(ValueError, match=message):
        assert_rule_matches_exact_step(GTL(), make_pair("paper"), **kwargs)


@pytest.mark.parametrize("tol", [-1.0, float("nan"), float("inf")])
def test_every_assertion_refuses_a_tolerance_that_is_not_a_finite_real_at_least_zero(tol):
    pair, z = make_pair("paper"), torch.tensor([[5, 5, 5]])
    comp = exact_components(pair)
    for check in (lambda: assert_sampler_law_exact(GTL(), pair, 2, tol=tol),
                  lambda: assert_ratio_calibrated(comp.ratio, pair, z, tol=tol),
                  lambda: assert_denoiser_exact(comp.source, pair, z, tol=tol)):
        with pytest.raises(ValueError, match="^tol must be in"):
            check()


def test_sampler_law_assertion_names_a_setup_it_cannot_check():
    pair = make_pair("paper")
    with pytest.raises(ValueError, match=r"^length 8 is too large for the exact law: \(K\+1\)\*\*L = 1679616"):
        assert_sampler_law_exact(GTL(), pair, 8)
    with pytest.raises(ValueError, match=r"^gamma must be 1 in assert_sampler_law_exact .* got 2"):
        assert_sampler_law_exact(GTL(), pair, 2, gamma=2)


def test_a_ratio_model_with_the_wrong_number_of_values_fails_the_assertion():
    pair, z = make_pair("paper"), torch.tensor([[5, 5, 5], [0, 5, 5]])
    comp = exact_components(pair)
    with pytest.raises(AssertionError, match=r"ratio model returned shape \(3,\) \(3 values\), expected \(2,\)"):
        assert_ratio_calibrated(lambda z, t: torch.zeros(3), pair, z)
    assert_ratio_calibrated(lambda z, t: comp.ratio(z, t)[:, None], pair, z)  # [B, 1] is the same values


@settings(max_examples=15)
@given(oracles("masked", max_noisy_states=300), st.data())
def test_masked_states_draws_from_an_enumeration_oracle(oracle, data):
    comp = exact_components(oracle)
    length = comp.fixed_length
    z = data.draw(masked_states(oracle, length))
    assert z.shape[1] == length and (z == comp.mask_id).all(-1)[0]
    post = comp.source(z, torch.full((len(z),), 0.5)).exp()  # NaN rows: a state the source cannot produce
    assert not torch.isnan(post[z == comp.mask_id]).any()
    with pytest.raises(ValueError, match=f"length must be {length}"):
        data.draw(masked_states(oracle, length + 1))


def test_a_float32_output_failing_the_default_tolerance_names_its_dtype():
    pair, z = make_pair("paper"), torch.tensor([[5, 5, 5], [0, 5, 5]])
    comp = exact_components(pair)
    with pytest.raises(AssertionError, match=r"note: the output is torch.float32 \(round-off 1.2e-07 > tolerance 1e-09\)"):
        assert_denoiser_exact(lambda z, t: comp.source(z, t).float() + 1e-4, pair, z, tol=1e-9)
    with pytest.raises(AssertionError, match=r"the output is torch.float32"):
        assert_ratio_calibrated(lambda z, t: comp.ratio(z, t).float() + 1e-4, pair, z, tol=1e-9)
    with pytest.raises(AssertionError) as info:
        assert_denoiser_exact(lambda z, t: comp.source(z, t) + 1e-4, pair, z, tol=1e-9)  # float64: no note
    assert "the output is" not in str(info.value)
