"""The guidance validator and the fixed-order density it relies on."""

import argparse
import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

from gtl_verify.density import fixed_order_log_density
from gtl_verify.planners import LeftToRightPlanner
from gtl_verify.rules import GTL, StepInput, Unguided
from gtl_verify.samplers import SamplerConfig, planner_sample
from gtl_verify.schedules import LogLinearSchedule
from markov import metrics
from markov.oracle import PairOracle
from markov.presets import make_pair
from markov.validator import DriftedRatio, add_arguments, check_options, format_table, load_rule, run_from_args, validate


def test_fixed_order_density_is_exact_for_the_oracle_sampler():
    pair = make_pair("diagonal", vocab_size=3, source_d=0.3, target_d=0.7)
    oracle = PairOracle(pair)
    sched = LogLinearSchedule()
    x = planner_sample(oracle.source, oracle, LeftToRightPlanner(), sched, SamplerConfig(64, 40, temperature=0.0), torch.Generator().manual_seed(0)).tokens
    log_s = fixed_order_log_density(oracle.source, oracle, GTL(), sched, x)
    assert torch.allclose(log_s, pair.target.log_prob(x), atol=1e-10)
    log_src = fixed_order_log_density(oracle.source, None, Unguided(), sched, x)
    assert torch.allclose(log_src, pair.source.log_prob(x), atol=1e-10)


def test_metrics_are_zero_for_the_target_itself():
    pair = make_pair("paper")
    x = pair.target.sample(20_000, 20, torch.Generator().manual_seed(1))
    assert metrics.transition_kl(pair.target, x) < 2e-3
    # the cross-entropy gap has mean 0 under q; 20k samples give a standard error ~ 0.004 nats/token
    assert abs(metrics.cross_entropy_gap(pair.target, x)) < 0.02
    assert metrics.mc_kl(torch.zeros(3), torch.zeros(3)) == (0.0, 0.0)


def test_entropy_per_token_matches_enumeration():
    pair = make_pair("dirichlet", vocab_size=3, seed=4)
    table = pair.target.table(4)
    exact = float(-(table * table.log()).sum()) / 4
    assert metrics.entropy_per_token(pair.target, 4) == pytest.approx(exact, rel=1e-12)


def test_validator_separates_exact_and_broken_rules():
    res = validate(GTL(stabilise=False, name="mine"), "diagonal", exact_length=3, length=16, samples=200,
                   ratio_drift=-2.0, progress=False)
    rows = {(r["rule"], r["setting"]): r for r in res["rules"]}
    # full guidance with the exact level-drifting ratio is still exact one position at a time ...
    assert rows[("full guidance", "exact: left-to-right")]["exact_tv"] < 1e-10
    assert abs(rows[("full guidance", "long: left-to-right L=16")]["mc_kl"]) < 1e-8
    # ... the unstabilised rule is not, once several positions can be revealed per step
    assert rows[("mine", "exact: ancestral T=3")]["exact_tv"] > rows[("full guidance", "exact: ancestral T=3")]["exact_tv"] + 0.01
    assert rows[("unguided", "exact: left-to-right")]["exact_tv"] > 0.1


def test_drifted_ratio_single_site_matches_sequence_scoring():
    oracle = PairOracle(make_pair("diagonal", vocab_size=3))
    drifted = DriftedRatio(oracle, -0.7)
    z = torch.tensor([[3, 1, 3, 3]])
    single = drifted.single_site(z)
    cand = z.clone()
    cand[0, 2] = 2
    assert single[0, 2, 2] == pytest.approx(float(drifted(cand)[0]), abs=1e-12)


def test_cli_writes_results_and_report(tmp_path, monkeypatch):
    mod = tmp_path / "my_rules.py"
    mod.write_text("from gtl_verify.rules import GTL\n\ndef mine(step):\n    return GTL()(step)\n")
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["my_rules:mine", "--preset", "diagonal", "--exact-length", "2", "--length", "8",
                              "--samples", "50", "--out", str(tmp_path / "out"), "--quiet"])
    assert run_from_args(args) == 0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["kind"] == "validation" and data["results"]["rule"] == "mine"
    assert (tmp_path / "out" / "results.md").read_text().count("|") > 10


def test_load_rule_errors():
    with pytest.raises(ValueError, match="module:Name"):
        load_rule("nocolon")
    with pytest.raises(ValueError, match="cannot import module"):
        load_rule("no_such_module_xyz:Rule")
    with pytest.raises(ValueError, match="has no attribute"):
        load_rule("markov.examples:Nope")
    assert load_rule("markov.examples:Unstabilised").name == "unstabilised"


def test_learned_components_add_a_long_setting(tmp_path):
    from markov.config import MarkovConfig, ModelSizes, TrainingBudget
    from markov.validator import validate

    tiny = MarkovConfig(n_source=60, models=ModelSizes(denoiser_hidden=8, denoiser_blocks=1, ratio_hidden=8, ratio_blocks=1, heads=2),
                        training=TrainingBudget(source_steps=3, ratio_steps=3, batch_size=8))
    res = validate(GTL(), "diagonal", exact_length=2, length=6, samples=20, learned_n_target=10,
                   models_dir=tmp_path / "models", learned_config=tiny, progress=False)
    learned = [r for r in res["rules"] if r["setting"].startswith("long, learned (n target 10)")]
    assert len(learned) == 4 and all(r["mc_kl"] is not None and r["cross_entropy_gap"] is not None for r in learned)
    assert res["learned_n_target"] == 10 and any((tmp_path / "models").glob("*.pt"))


# --- the rule contract: every malformed output is one line naming the rule, setting and step ----------

BAD_RULES = '''
import torch
from gtl_verify.rules import GTL

def _shape(step):
    return step.positions.shape[0], step.vocab_size

def all_pos_inf(step):
    return torch.full((_shape(step)[0], _shape(step)[1] + 1), torch.inf, dtype=torch.float64)

def all_neg_inf(step):
    return torch.full((_shape(step)[0], _shape(step)[1] + 1), -torch.inf, dtype=torch.float64)

def tokens_neg_inf(step):
    w = GTL()(step).clone()
    w[:, :-1] = -torch.inf
    return w

def no_stay_slot(step):
    return GTL()(step)[:, :-1]

def extra_row(step):
    w = GTL()(step)
    return torch.cat([w, w[:1]])

def nothing(step):
    return None

def one_nan(step):
    w = GTL()(step).clone()
    w[-1, 1] = float("nan")
    return w

def integer(step):
    return torch.zeros(_shape(step)[0], _shape(step)[1] + 1, dtype=torch.long)

def raises(step):
    raise RuntimeError("half-written rule\\nsecond line")

def uniform(step):
    return torch.zeros(_shape(step)[0], _shape(step)[1] + 1, dtype=torch.float64)

class NeedsArgs:
    def __init__(self, n):
        self.n = n

    def __call__(self, step):
        return GTL()(step)
'''

EXPECTED_FAULTS = [
    ("all_pos_inf", "diagonal", "returned +inf at sequence 0, position 0, token 0 (log-weights must be finite or -inf)"),
    ("all_neg_inf", "diagonal", "all token weights are -inf at sequence 0, position 0: the step law is undefined (0/0)"),
    ("tokens_neg_inf", "diagonal", "all token weights are -inf at sequence 0, position 0"),
    ("no_stay_slot", "diagonal", "returned shape [2, 5], expected [M, K+1] = [2, 6]"),
    ("extra_row", "diagonal", "returned shape [3, 6], expected [M, K+1] = [2, 6]"),
    ("nothing", "diagonal", "returned NoneType, expected a floating-point tensor of log-weights [M, K+1] = [2, 6]"),
    ("one_nan", "diagonal", "returned NaN at sequence 0, position 1, token 1"),
    ("integer", "diagonal", "returned dtype torch.int64, expected a floating-point dtype"),
    ("raises", "diagonal", "raised RuntimeError: half-written rule second line"),
    # the no-overlap source never emits token 5 (K' = K + 1 = 6): the states reached are outside its support
    ("uniform", "no-overlap", "puts weight on token 5 at sequence 0, position 0, which the source denoiser forbids"),
]


@pytest.fixture
def bad_rules(tmp_path, monkeypatch):
    (tmp_path / "bad_rules.py").write_text(BAD_RULES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("rule, preset, fault", EXPECTED_FAULTS)
def test_malformed_rule_output_is_one_line_with_exit_2(bad_rules, capsys, rule, preset, fault):
    from gtl_verify.cli import main

    argv = ["markov", "validate", f"bad_rules:{rule}", "--preset", preset, "--exact-length", "2", "--length", "4",
            "--samples", "4", "--quiet", "--out", str(bad_rules / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"gtl markov: error: rule '{rule}', setting 'exact: left-to-right', step 1 (t=1 -> s=0.5): ")
    assert fault in err
    assert not (bad_rules / "out" / "results.json").exists()


def test_rule_class_needing_arguments_is_one_line(bad_rules, capsys):
    from gtl_verify.cli import main

    assert main(["markov", "validate", "bad_rules:NeedsArgs", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gtl markov: error: rule class 'bad_rules:NeedsArgs' cannot be built without arguments "
                          "(TypeError: ")
    assert len(err.splitlines()) == 1


def test_output_fault_is_none_for_the_built_in_rules_and_locates_a_corrupted_entry():
    from markov.rule_contract import output_fault

    pair = make_pair("dirichlet", vocab_size=4, seed=3)
    oracle = PairOracle(pair)
    seen = []

    def spy(step):
        out = GTL(candidates=2)(step)
        assert output_fault(out, step, reveal_only=True) is None
        assert output_fault(Unguided()(step), step, reveal_only=False) is None
        for row in range(out.shape[0]):
            for slot, value in ((0, float("nan")), (out.shape[1] - 1, float("inf"))):
                bad = out.clone()
                bad[row, slot] = value
                b, i = step.positions[row].tolist()
                assert f"sequence {b}, position {i}" in output_fault(bad, step, reveal_only=True)
        seen.append(step.positions.shape[0])
        return out

    planner_sample(oracle.source_denoiser(), oracle, LeftToRightPlanner(), LogLinearSchedule(),
                   SamplerConfig(3, 5, rule=spy, temperature=0.0), torch.Generator().manual_seed(0))
    assert seen == [3] * 5  # one masked position per sequence per left-to-right step


def test_ties_in_the_top_n_candidate_set_are_counted_exactly():
    from markov.rule_contract import tied_candidates

    lp = torch.log(torch.tensor([[0.4, 0.2, 0.2, 0.2],    # ranks 2 and 3 tie: decided by ties at n = 2 and 3
                                 [0.4, 0.3, 0.2, 0.1],    # no tie
                                 [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64))
    step = StepInput(z=torch.full((3, 1), 4), t=1.0, s=0.0, alpha_t=0.0, alpha_s=1.0, log_probs=lp[:, None, :],
                     positions=torch.tensor([[0, 0], [1, 0], [2, 0]]), gamma=1.0, mask_id=4, score=None,
                     sequence_log_ratio=None)
    assert [tied_candidates(step, n) for n in (1, 2, 3, 4)] == [1, 2, 2, 0]


def test_validator_reports_verdicts_and_ties_on_the_paper_preset():
    res = validate(GTL(name="mine"), "paper", exact_length=2, length=8, samples=50, progress=False)
    rows = {(r["rule"], r["setting"]): r for r in res["rules"]}
    exact = rows[("mine", "exact: left-to-right")]
    assert exact["verdict"].startswith("exact (TV") and exact["exact_tv"] < 1e-12
    assert rows[("unguided", "exact: left-to-right")]["verdict"].startswith("not exact (TV 0.")
    assert rows[("mine", "long: left-to-right L=8")]["verdict"].startswith("exact within sampling noise (MC KL")
    assert "from 50 samples" in rows[("unguided", "long: left-to-right L=8")]["verdict"]
    # paper preset, K = 5, L = 2: at the first step both masked positions have the uniform marginal
    # (2 ties); the top-2 rule reveals position 0 with 2 tokens, and at the second step each of those
    # 2 states has p(x^1 | x^0 = u) = 0.1 at u and 0.225 elsewhere (2 more ties): 4 of 4
    assert "ties decided the top-2 candidate set at 4 of 4 guided positions" in rows[("gtl (top-2)", "exact: left-to-right")]["notes"]
    assert "ties decided" not in exact["notes"]


def test_verdicts_use_the_sampling_noise_of_the_sample_count():
    from markov.rule_contract import exact_verdict, mc_verdict

    assert exact_verdict(3e-16).startswith("exact (TV 3e-16 <= 1e-09")
    assert exact_verdict(0.02) == "not exact (TV 0.02 > 1e-09)"
    assert mc_verdict(0.01, 0.004, 100).startswith("exact within sampling noise (MC KL 0.01, |KL| <= 3 SE = 0.012 from 100 samples")
    assert mc_verdict(0.02, 0.004, 100).startswith("not exact (MC KL 0.02, beyond 3 SE = 0.012 from 100 samples")
    assert mc_verdict(float("inf"), float("nan"), 10).startswith("not exact")


def test_a_law_that_does_not_sum_to_one_is_never_reported():
    from markov.rule_contract import RuleError, check_law_sums_to_one

    check_law_sums_to_one(torch.tensor([0.25, 0.75], dtype=torch.float64), "w")
    with pytest.raises(RuleError, match=r"^w: the sampler's exact law is not a distribution \(a total of 0.5\); TV and KL are not reported$"):
        check_law_sums_to_one(torch.tensor([0.25, 0.25], dtype=torch.float64), "w")
    with pytest.raises(RuleError, match=r"\(2 NaN entries\)"):
        check_law_sums_to_one(torch.tensor([float("nan")] * 2, dtype=torch.float64), "w")


# --- properties of the contract over random steps -------------------------------------------------------

def _random_step(seed: int, m: int, k: int, zero_frac: float, s: float) -> tuple[StepInput, torch.Tensor]:
    """A step with M = m masked positions (one per sequence) whose denoiser forbids about ``zero_frac``
    of the tokens (never all), and GTL-like log-weights that respect the contract."""
    gen = torch.Generator().manual_seed(seed)
    lp = torch.log_softmax(torch.randn(m, k, generator=gen, dtype=torch.float64), -1)
    forbid = torch.rand(m, k, generator=gen) < zero_frac
    forbid[torch.arange(m), torch.randint(0, k, (m,), generator=gen)] = False
    lp = torch.log_softmax(lp.masked_fill(forbid, -torch.inf), -1)
    weights = torch.cat([lp + torch.randn(m, k, generator=gen, dtype=torch.float64),
                         torch.randn(m, 1, generator=gen, dtype=torch.float64)], -1)
    if s == 0:  # the last step reveals every position: no weight on stay masked
        weights[:, -1] = -torch.inf
    step = StepInput(z=torch.full((m, 1), k), t=1.0, s=s, alpha_t=0.0, alpha_s=1.0 - s, log_probs=lp[:, None, :],
                     positions=torch.stack([torch.arange(m), torch.zeros(m, dtype=torch.long)], -1), gamma=1.0,
                     mask_id=k, score=None, sequence_log_ratio=None)
    return step, weights


@settings(deadline=None)
@given(seed=st.integers(0, 2**31 - 1), m=st.integers(1, 6), k=st.integers(2, 7), zero_frac=st.floats(0.0, 0.9),
       s=st.sampled_from([0.0, 0.3]), row=st.integers(0, 5), slot=st.integers(0, 7),
       bad=st.sampled_from(["nan", "+inf", "row -inf", "forbidden", "stay at end"]), reveal_only=st.booleans())
def test_contract_accepts_valid_outputs_and_locates_every_fault(seed, m, k, zero_frac, s, row, slot, bad, reveal_only):
    from markov.rule_contract import output_fault

    step, weights = _random_step(seed, m, k, zero_frac, s)
    assert output_fault(weights, step, reveal_only) is None
    row, slot = row % m, slot % (k + 1)
    broken = weights.clone()
    where = f"sequence {row}, position 0"
    if bad == "nan":
        broken[row, slot] = float("nan")
        expected = f"returned NaN at {where}"
    elif bad == "+inf":
        broken[row, slot] = float("inf")
        expected = f"returned +inf at {where}"
    elif bad == "row -inf":
        broken[row, : k if reveal_only else k + 1] = -torch.inf
        expected = f"-inf at {where}: the step law is undefined"
    elif bad == "stay at end":
        broken[row, k] = -0.5
        expected = None if s > 0 or reveal_only else f"keeps log-weight -0.5 on stay masked at {where} at the last step"
    else:
        forbidden = torch.isneginf(step.position_log_probs[row]).nonzero().flatten()
        if len(forbidden) == 0:
            return
        v = int(forbidden[slot % len(forbidden)])
        broken[row, v] = 0.0
        expected = None if s == 0 else f"puts weight on token {v} at {where}, which the source denoiser forbids"
    fault = output_fault(broken, step, reveal_only)
    if expected is None:  # weight on a forbidden token at the last step leads to no further denoiser call
        assert fault is None
    else:
        assert fault is not None and expected in fault


@settings(deadline=None)
@given(seed=st.integers(0, 2**31 - 1), m=st.integers(1, 6), k=st.integers(2, 6), n=st.integers(1, 6),
       levels=st.integers(1, 4))
def test_tie_count_matches_a_brute_force_count(seed, m, k, n, levels):
    from markov.rule_contract import tied_candidates

    gen = torch.Generator().manual_seed(seed)
    # few distinct values so that ties are common
    lp = torch.randint(0, levels, (m, k), generator=gen).to(torch.float64).log_softmax(-1)
    step = StepInput(z=torch.full((m, 1), k), t=1.0, s=0.5, alpha_t=0.0, alpha_s=0.5, log_probs=lp[:, None, :],
                     positions=torch.stack([torch.arange(m), torch.zeros(m, dtype=torch.long)], -1), gamma=1.0,
                     mask_id=k, score=None, sequence_log_ratio=None)
    expected = 0
    if n < k:
        for values in lp.tolist():
            ranked = sorted(values, reverse=True)
            expected += ranked[n - 1] == ranked[n]
    assert tied_candidates(step, n) == expected


def test_validate_refuses_to_report_a_law_that_is_not_a_distribution(monkeypatch):
    import markov.validator as validator
    from gtl_verify.exact_law import ExactLaw
    from markov.rule_contract import RuleError

    def half_law(*args, **kwargs):
        return ExactLaw(torch.full((5 ** 2,), 0.5 / 25, dtype=torch.float64), 0.0)

    monkeypatch.setattr(validator, "planner_law", half_law)
    with pytest.raises(RuleError, match=r"^rule 'mine', setting 'exact: left-to-right': the sampler's exact law is not "
                                        r"a distribution \(a total of 0.5\); TV and KL are not reported$"):
        validate(GTL(name="mine"), "paper", exact_length=2, length=4, samples=4, progress=False)


# --- output device, last-step stay weight, causes of impossible steps, gradients, probabilities --------

def _unguided_then(fn):
    from gtl_verify.rules import Unguided

    def rule(step):
        return fn(Unguided()(step), step)
    rule.__name__ = "mine"
    return rule


@pytest.mark.parametrize("device", ["meta"])
def test_rule_output_on_another_device_is_a_contract_fault(device):
    from markov.rule_contract import RuleError

    rule = _unguided_then(lambda w, step: w.to(device))
    with pytest.raises(RuleError, match=rf"^rule 'mine', setting 'exact: left-to-right', step 1 .*: returned a tensor on "
                                        rf"device {device}, expected the step's device cpu$"):
        validate(rule, "paper", exact_length=2, length=4, samples=4, progress=False)


@pytest.mark.parametrize("preset", ["no-overlap", "paper"])
def test_stay_weight_at_the_last_step_names_the_rule_and_setting(preset):
    from markov.rule_contract import RuleError

    def keep(w, step):
        w = w.clone()
        w[:, -1] = 0.0
        return w
    with pytest.raises(RuleError, match=r"^rule 'mine', setting 'exact: ancestral T=2', step \d+ \(t=0.5 -> s=0\): keeps "
                                        r"log-weight 0 on stay masked .* at the last step .* would leave masks behind$"):
        validate(_unguided_then(keep), preset, exact_length=2, length=4, samples=4, progress=False)


def test_impossible_step_causes_are_told_apart():
    from gtl_verify.guidance import ImpossibleStepError
    from gtl_verify.step import check_possible

    lp = torch.log_softmax(torch.zeros(2, 2, 3, dtype=torch.float64), -1)
    z = torch.tensor([[3, 3], [0, 3]])
    positions = torch.tensor([[0, 0], [1, 1]])
    for row, value, cause in [(0, float("nan"), "this is the all-mask start, which every run visits: the denoiser itself is faulty"),
                              (1, float("nan"), "0/0: the state has probability 0 under the source (unreachable), or the denoiser failed"),
                              (1, -math.inf, "the state has probability 0 under the source (independent reveals")]:
        bad = lp.clone()
        bad[row, row] = value
        kind = "NaN" if value != value else "all -inf"
        with pytest.raises(ImpossibleStepError, match=rf"^denoiser log-probs are {kind} at 1 masked position\(s\), "
                                                      rf"first row {row} position {row}: {re.escape(cause)}"):
            check_possible(bad, positions, z, mask_id=3)
    bad = lp.clone()
    bad[1, 1] = -math.inf
    with pytest.raises(ImpossibleStepError, match=r"\(a mask left after the last step, for the final arg-max\)"):
        check_possible(bad, positions, z, mask_id=3, final_fill=True)


def test_nan_denoiser_at_the_start_is_named_as_a_denoiser_fault():
    from gtl_verify.guidance import ImpossibleStepError
    from gtl_verify.rules import Unguided

    class NaNDenoiser:
        vocab_size, mask_id = 2, 2

        def __call__(self, z, t=None):
            return torch.full((*z.shape, 2), float("nan"))
    with pytest.raises(ImpossibleStepError, match="all-mask start"):
        planner_sample(NaNDenoiser(), None, LeftToRightPlanner(), LogLinearSchedule(),
                       SamplerConfig(2, 3, rule=Unguided(), gamma=0.0), torch.Generator().manual_seed(0))


def test_rule_outputs_that_require_grad_are_detached():
    from gtl_verify.exact_law import planner_law
    from gtl_verify.rules import Unguided

    param = torch.zeros((), dtype=torch.float64, requires_grad=True)
    oracle = PairOracle(make_pair("paper"))
    rule = _unguided_then(lambda w, step: w + param)
    law = planner_law(oracle.source_denoiser(), oracle, LeftToRightPlanner(), LogLinearSchedule(),
                      SamplerConfig(1, 2, rule=rule, temperature=0.0))
    assert not law.clean.requires_grad and law.clean.grad_fn is None
    res = validate(rule, "paper", exact_length=2, length=4, samples=4, progress=False)
    assert all(r["exact_tv"] is None or isinstance(r["exact_tv"], float) for r in res["rules"])


@given(st.integers(0, 2**31 - 1), st.integers(1, 5), st.integers(2, 6), st.booleans())
def test_probability_warning_flags_nonnegative_outputs(seed, m, k, reveal_only):
    from markov.rule_contract import probability_warning

    gen = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(m, k + 1, generator=gen, dtype=torch.float64), -1)
    assert "looks like probabilities, expected log-weights" in probability_warning(probs, reveal_only, k)
    assert "looks like probabilities" in probability_warning(torch.zeros(m, k + 1), reveal_only, k)
    assert probability_warning(probs.log(), reveal_only, k) is None
    assert probability_warning(torch.zeros(m, 2), reveal_only, 1) is None  # K = 1: log-weight 0 is a law


def test_validator_warns_about_a_rule_returning_probabilities(capsys):
    def probs(w, step):
        p = w.exp()
        if step.s == 0:
            p[:, -1] = -math.inf  # keep the last step legal so that the warning is what shows
        return p
    res = validate(_unguided_then(probs), "paper", exact_length=2, length=4, samples=4, progress=False)
    mine = [r for r in res["rules"] if r["rule"] == "mine"]
    assert mine and all("looks like probabilities" in r["notes"] for r in mine)
    assert "warning: rule 'mine': outputs are all >= 0" in format_table(res["rules"])


# --- validator numbers ----------------------------------------------------------------------------------

@given(st.floats(-1e-12, 1e-12) | st.floats(0, 10))
def test_exact_kl_round_off_is_clamped(kl):
    from markov.rule_contract import exact_kl

    assert exact_kl(kl, "w") == max(kl, 0.0)


@given(st.floats(-10, -1.01e-12))
def test_exact_kl_below_round_off_raises(kl):
    from markov.rule_contract import RuleError, exact_kl

    with pytest.raises(RuleError, match=r"^w: the exact KL is .* < 0 beyond float64 round-off"):
        exact_kl(kl, "w")


@given(st.integers(7, 10**12))
def test_exact_length_limit_is_written_as_a_power(length):
    with pytest.raises(ValueError, match=rf"^--exact-length = {length}: \(K\+1\)\^L = 6\^{length} states > the limit 50000"):
        check_options("paper", exact_length=length, length=8, samples=4, ratio_drift=0.0, seed=0,
                      learned_n_target=None, cli=True)


def test_non_discriminating_exact_length_is_noted():
    from markov.validator import discrimination_note

    pair = make_pair("paper")
    note = discrimination_note(pair, 1)  # the first token's law is uniform under both chains
    assert note and "TV(source, target) = 0 < 0.001: the enumerable setting cannot discriminate" in note
    assert discrimination_note(pair, 3) is None
    res = validate(GTL(name="mine"), "paper", exact_length=1, length=4, samples=4, progress=False)
    assert res["notes"] == [note]
    for r in res["rules"]:
        assert r["exact_kl"] is None or r["exact_kl"] >= 0


def test_ancestral_not_exact_verdicts_cite_the_discretisation_error():
    res = validate(GTL(stabilise=False, name="mine"), "diagonal", exact_length=2, length=4, samples=4,
                   ratio_drift=-2.0, progress=False)
    rows = {(r["rule"], r["setting"]): r for r in res["rules"]}
    for steps in (2, 8):
        setting = f"exact: ancestral T={steps}"
        reference = rows[("full guidance", setting)]["exact_tv"]
        verdict = rows[("mine", setting)]["verdict"]
        assert verdict.startswith("not exact")
        assert verdict.endswith(f"the sampler's own discretisation error here: full guidance TV {reference:.3g}")
    assert "discretisation" not in rows[("mine", "exact: left-to-right")]["verdict"]


def test_target_only_tokens_are_explained_with_the_best_achievable_tv(tmp_path):
    """The source never emits token 1; the target is uniform: at length 2 the target puts 3/4 on sequences
    the source cannot produce, so every rule's exact TV is >= 3/4 = the best achievable, and both are said."""
    from markov.validator import target_only_note

    path = tmp_path / "sonly.toml"
    path.write_text("[source]\ninitial = [1.0, 0.0]\ntransition = [[1.0, 0.0], [1.0, 0.0]]\n"
                    "[target]\ninitial = [0.5, 0.5]\ntransition = [[0.5, 0.5], [0.5, 0.5]]\n")
    res = validate(GTL(name="mine"), str(path), exact_length=2, length=4, samples=8, progress=False)
    note = next(n for n in res["notes"] if "cannot produce" in n)
    assert "mass 0.75 on sequences of length 2" in note and "best achievable exact TV is 0.75" in note
    exact = [r for r in res["rules"] if r["exact_tv"] is not None]
    assert exact and all(r["exact_tv"] >= 0.75 - 1e-12 for r in exact)
    assert all("best achievable TV 0.75" in r["verdict"] for r in exact if r["verdict"].startswith("not exact"))
    assert target_only_note(make_pair("paper"), 3) == (None, 0.0)
    from reports.builder import build_report
    from gtl_verify.provenance import provenance, write_results

    written = write_results(tmp_path / "results.json", "validation", res, provenance())
    assert "best achievable exact TV is 0.75" in build_report(written, tmp_path / "report").read_text()
