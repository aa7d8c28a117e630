"""Component outputs checked where the sampler core receives them (gtl_verify.counting), the type
checks of real parameters and gamma, output paths and sample-count memory bounds."""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from gtl_verify import cli
from gtl_verify.checks.problems import random_law_pair
from gtl_verify.counting import ComponentOutputError, normalisation_tolerance
from gtl_verify.enumeration import EnumerationOracle
from gtl_verify.exact_law import ancestral_law, planner_law
from gtl_verify.forward import MaskedProcess
from gtl_verify.planners import LeftToRightPlanner
from gtl_verify.rules import GTL, Unguided
from gtl_verify.samplers import SamplerConfig, ancestral_sample, planner_sample
from gtl_verify.schedules import LogLinearSchedule
from gtl_verify.validation import (check_output_dir, check_output_file, check_real_range, check_sample_memory,
                                   check_times)

SCHED = LogLinearSchedule()


def oracle(k=3, length=2, seed=0):
    pair = random_law_pair(k, length, torch.Generator().manual_seed(seed), "dense")
    return EnumerationOracle(pair, MaskedProcess(k, SCHED))


class Mapped:
    """The exact denoiser with its output passed through ``fn`` (a faulty or low-precision network)."""

    def __init__(self, inner, fn):
        self.inner, self.fn = inner, fn
        self.vocab_size, self.mask_id = inner.vocab_size, inner.mask_id

    def __call__(self, z, t=None):
        return self.fn(self.inner(z, t))


@settings(max_examples=25, deadline=None)
@given(st.floats(0.01, 50.0) | st.floats(-50.0, -0.01), st.sampled_from([torch.float64, torch.float32, torch.bfloat16]))
def test_denoiser_logits_are_rejected_naming_the_denoiser(shift, dtype):
    """log-probs + c (logits) is not a law; GTL would renormalise it and the unguided rule would not,
    so the same faulty network would give the two methods different laws: both must refuse it."""
    o = oracle()
    tol = normalisation_tolerance(dtype, 3)
    assert tol >= 1e-9
    if abs(shift) <= 2 * tol:
        return
    den = Mapped(o.denoiser(), lambda x: (x + shift).to(dtype))
    for rule in (Unguided(), GTL()):
        with pytest.raises(ComponentOutputError, match=r"^denoiser must return normalised log-probs.*looks like logits"):
            ancestral_law(den, o.ratio_model(), SCHED, SamplerConfig(1, 2, steps=2, rule=rule))


def test_denoiser_probabilities_are_rejected():
    o = oracle()
    den = Mapped(o.denoiser(), lambda x: x.exp())
    with pytest.raises(ComponentOutputError, match="looks like probabilities"):
        planner_law(den, o.ratio_model(), LeftToRightPlanner(), SCHED, SamplerConfig(1, 2, rule=Unguided(), temperature=0.0))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([torch.float32, torch.bfloat16, torch.float16]), st.floats(0.1, 30.0))
def test_low_precision_log_softmax_is_accepted_and_renormalised(seed, dtype, scale):
    """A network's log_softmax computed in its own dtype passes the derived tolerance, and every rule
    receives exactly normalised float64 rows (the same law)."""
    gen = torch.Generator().manual_seed(seed)
    k = int(torch.randint(2, 64, (1,), generator=gen))
    logits = (torch.randn(4, 5, k, generator=gen) * scale).to(dtype)
    out = torch.log_softmax(logits, dim=-1)
    lse = torch.logsumexp(out.to(torch.float64), -1)
    assert lse.abs().max().item() <= normalisation_tolerance(dtype, k)

    class Net:
        vocab_size, mask_id = k, k

        def __call__(self, z, t=None):
            return out

    from gtl_verify.counting import CountingDenoiser
    rows = CountingDenoiser(Net())(torch.full((4, 5), k), None)
    assert rows.dtype == torch.float64
    assert torch.logsumexp(rows, -1).abs().max().item() < 1e-14


@pytest.mark.parametrize("fn, match", [
    (lambda x: x[..., :-1], r"^denoiser must return shape \(1, 2, 3\), got \(1, 2, 2\)"),
    (lambda x: x.tolist(), r"^denoiser must return a floating torch.Tensor.*got list"),
    (lambda x: x.long(), r"^denoiser must return a floating tensor, got dtype torch.int64"),
    (lambda x: x[None], r"^denoiser must return shape"),
])
def test_denoiser_shape_and_type_are_blamed_on_the_denoiser(fn, match):
    o = oracle()
    with pytest.raises(ComponentOutputError, match=match):
        ancestral_law(Mapped(o.denoiser(), fn), None, SCHED, SamplerConfig(1, 2, steps=2, rule=Unguided(), gamma=0.0))


class BadPlanner:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, z, log_probs):
        return self.fn(torch.zeros(z.shape, dtype=torch.float32))


@pytest.mark.parametrize("fn, match", [
    (lambda s: s[:, :-1], r"^planner must return shape \(3, 2\), got \(3, 1\)"),
    (lambda s: s.tolist(), r"^planner must return a floating torch.Tensor of shape \(3, 2\), got list"),
    (lambda s: s.long(), r"^planner must return a floating tensor"),
])
def test_planner_output_is_checked(fn, match):
    o = oracle()
    with pytest.raises(ComponentOutputError, match=match):
        planner_sample(o.denoiser(), o.ratio_model(), BadPlanner(fn), SCHED, SamplerConfig(3, 2, rule=Unguided(), gamma=0.0),
                       torch.Generator().manual_seed(0))


class BadRatio:
    def __init__(self, inner, fn, single_site=False):
        self.inner, self.fn = inner, fn
        if single_site:
            self.single_site = lambda z, t=None: fn(inner.single_site(z, t))

    def __call__(self, z, t=None):
        return self.fn(self.inner(z, t))


@pytest.mark.parametrize("fn, match", [
    (lambda r: r[:-1], r"^ratio must return shape \(\d+,\), got"),
    (lambda r: r.tolist(), r"^ratio must return a floating torch.Tensor"),
    (lambda r: r[:, None], r"^ratio must return shape"),
])
def test_sequence_ratio_output_is_checked(fn, match):
    o = oracle()
    with pytest.raises(ComponentOutputError, match=match):
        ancestral_sample(o.denoiser(), BadRatio(o.ratio_model(), fn), SCHED, SamplerConfig(2, 2, steps=2),
                         torch.Generator().manual_seed(0))


def test_single_site_ratio_output_is_checked():
    o = oracle()
    base = o.ratio_model()
    assert hasattr(base, "single_site")

    class SS:
        def __call__(self, z, t=None):
            return base(z, t)

        def single_site(self, z, t=None):
            return base.single_site(z, t)[..., :-1]

    with pytest.raises(ComponentOutputError, match=r"^ratio.single_site must return shape \(\d+, 2, 3\)"):
        ancestral_sample(o.denoiser(), SS(), SCHED, SamplerConfig(2, 2, steps=2), torch.Generator().manual_seed(0))


def test_checks_count_no_extra_calls():
    o = oracle()
    res = planner_sample(o.denoiser(), BadRatio(o.ratio_model(), lambda r: r), LeftToRightPlanner(), SCHED,
                         SamplerConfig(4, 2, rule=GTL(candidates=2)), torch.Generator().manual_seed(0))
    assert res.ratio_passes == 4 * 2 * 2  # L steps x n candidates per sequence (THEORY section 4)
    assert (res.denoiser_calls, res.planner_calls) == (2, 2)


# ------------------------------------------------------------------ types of real parameters and gamma
@pytest.mark.parametrize("value", ["1.0", True, False, b"1", torch.ones(2), None, [1.0]])
def test_check_real_range_rejects_non_numbers(value):
    with pytest.raises(ValueError, match=r"^temperature must be a real number"):
        check_real_range("temperature", value)


@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**6, 10**6))
def test_check_real_range_accepts_real_numbers(value):
    assert check_real_range("x", value) == float(value)


@pytest.mark.parametrize("gamma", ["1.0", [[0.5]], None, [1.0], torch.tensor(1.0), True, [[0.0, "1"]], [(0.0, 1.0, 2.0)]])
def test_sampler_config_gamma_forms(gamma):
    with pytest.raises(ValueError, match=r"^gamma"):
        SamplerConfig(2, 2, gamma=gamma)


@given(st.floats(-100.0, -1e-6) | st.just(math.inf) | st.just(math.nan), st.floats(0.0, 1.0))
def test_callable_gamma_error_names_t(bad, t):
    cfg = SamplerConfig(2, 2, gamma=lambda _t: bad)
    with pytest.raises(ValueError, match=rf"^gamma\(t={t:g}\) must be"):
        cfg.gamma_at(t)


def test_callable_gamma_error_names_t_inside_the_sampler():
    o = oracle()
    cfg = SamplerConfig(1, 2, steps=2, gamma=lambda t: -1.0)
    with pytest.raises(ValueError, match=r"^gamma\(t=1\) must be in \[0, inf\), got -1"):
        ancestral_law(o.denoiser(), o.ratio_model(), SCHED, cfg)


@pytest.mark.parametrize("s, t", [(False, True), (0.0, True), (0.0, "1")])
def test_times_reject_bools_and_strings(s, t):
    with pytest.raises(ValueError, match=r"^[st] must be a real number"):
        check_times(s, t)
    with pytest.raises(ValueError, match=r"^t must be a real number"):
        SCHED.alpha(t)


# ------------------------------------------------------------------ output paths and memory
def test_output_dir_checks(tmp_path):
    assert check_output_dir("--out", tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # the probe leaves nothing behind
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"^--out .*file exists and is not a folder"):
        check_output_dir("--out", tmp_path / "file")
    with pytest.raises(ValueError, match=r"^--out /proc/gtl-x is not a writable folder"):
        check_output_dir("--out", "/proc/gtl-x")
    with pytest.raises(ValueError, match=r"^--json /proc/x.json cannot be written"):
        check_output_file("--json", "/proc/x.json")
    with pytest.raises(ValueError, match=r"^--json .* is a folder"):
        check_output_file("--json", tmp_path)
    (tmp_path / "kept").mkdir()
    check_output_dir("--out", tmp_path / "kept")
    assert (tmp_path / "kept").is_dir() and not list((tmp_path / "kept").iterdir())


@given(st.integers(10**12, 10**30))
def test_sample_memory_bound(samples):
    with pytest.raises(ValueError, match=rf"^--samples = {samples} needs about .* GiB"):
        check_sample_memory("--samples", samples, 20, 5)


def test_sample_memory_bound_accepts_ordinary_counts():
    assert check_sample_memory("--samples", 2000, 64, 5) == 2000 * 64 * 6 * 8 * 4


@pytest.mark.parametrize("argv, match", [
    (["theory", "--json", "/proc/x.json"], "--json /proc/x.json cannot be written"),
    (["markov", "--out", "/proc/x"], "--out /proc/x is not a writable folder"),
    (["markov", "--samples", "99999999999999999999"], "--samples = 99999999999999999999 needs about"),
    (["markov", "validate", "markov.examples:Unstabilised", "--out", "/proc/x"], "--out /proc/x is not a writable folder"),
    (["markov", "validate", "markov.examples:Unstabilised", "--samples", "1000000000000"], "--samples = 1000000000000 needs"),
])
def test_cli_output_and_memory_errors_are_one_line_before_work(argv, match, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_allocation_failure_is_one_line(monkeypatch, capsys):
    from gtl_verify.checks import cli as theory_cli

    def boom(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
                           "to allocate 800000000000 bytes")

    monkeypatch.setattr(theory_cli, "run_from_args", boom)
    assert cli.main(["theory"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gtl theory: error: out of memory") and err.count("\n") == 1


@given(st.floats(-1e-10, 1e-10))
def test_float64_round_off_of_exact_oracles_is_accepted(offset):
    """Exact float64 tables normalised over near-impossible events carry round-off well beyond one
    log_softmax (3.6e-15 at K = 2 with 1e-12 transitions); within 1e-9 a row is a law."""
    from gtl_verify.counting import CountingDenoiser

    class Net:
        vocab_size, mask_id = 2, 2

        def __call__(self, z, t=None):
            return torch.log(torch.tensor([1e-12, 1 - 1e-12], dtype=torch.float64)).expand(*z.shape, 2) + offset

    rows = CountingDenoiser(Net())(torch.full((1, 3), 2), None)
    assert torch.logsumexp(rows, -1).abs().max().item() < 1e-15
