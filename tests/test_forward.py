import pytest
import torch
from hypothesis import given, strategies as st
from scipy.linalg import expm

from gtl_verify.forward import MaskedProcess, UniformProcess, enumerate_sequences, make_process, sequence_index
from gtl_verify.schedules import make_schedule

from gtl_verify.testing import schedule_names, times

processes = st.sampled_from(["masked", "uniform"])


@given(processes, schedule_names, st.integers(1, 6), times(allow_zero=True))
def test_transition_is_stochastic_and_composes(name, sched, k, st_):
    s, t = st_
    proc = make_process(name, k, make_schedule(sched))
    q_st = proc.transition(s, t)
    assert torch.allclose(q_st.sum(1), torch.ones(proc.num_states, dtype=torch.float64), atol=1e-14)
    assert (q_st >= 0).all()
    # Chapman-Kolmogorov: Q_{t|0} = Q_{s|0} Q_{t|s}
    assert torch.allclose(proc.marginal(s) @ q_st, proc.marginal(t), atol=1e-13)


@given(processes, schedule_names, st.integers(1, 4), st.floats(0.05, 0.9))
def test_rate_generates_transition(name, sched, k, t):
    """dQ_{t|s}/dt = Q_{t|s} R_t, checked by finite differences; rows of R sum to 0."""
    proc = make_process(name, k, make_schedule(sched))
    r = proc.rate(t)
    assert torch.allclose(r.sum(1), torch.zeros(proc.num_states, dtype=torch.float64), atol=1e-12)
    h = 1e-6
    dq = (proc.transition(0.0, t + h) - proc.transition(0.0, t - h)) / (2 * h)
    assert torch.allclose(dq, proc.marginal(t) @ r, rtol=1e-4, atol=1e-6)


def test_rate_is_constant_generator_for_constant_hazard():
    """Linear schedule: -alpha'/alpha = sigma_max, so Q_{t|s} = expm((t - s) R)."""
    proc = UniformProcess(3, make_schedule("linear", sigma_max=2.0))
    r = proc.rate(0.3).numpy()
    assert torch.allclose(proc.transition(0.2, 0.7), torch.as_tensor(expm(0.5 * r)), atol=1e-12)


def test_sequence_kernels_are_kronecker_products():
    proc = MaskedProcess(2, make_schedule("loglinear"))
    big = proc.sequence_transition(0.2, 0.6, 2)
    q = proc.transition(0.2, 0.6)
    states = enumerate_sequences(3, 2)
    for a in range(9):
        for b in range(9):
            za, zb = states[a], states[b]
            assert big[a, b] == pytest.approx(float(q[za[0], zb[0]] * q[za[1], zb[1]]), abs=1e-15)
    rate = proc.sequence_rate(0.4, 2)
    assert torch.allclose(rate.sum(1), torch.zeros(9, dtype=torch.float64), atol=1e-12)


@given(st.integers(1, 5), st.integers(1, 4))
def test_sequence_index_inverts_enumeration(states, length):
    seqs = enumerate_sequences(states, length)
    assert torch.equal(sequence_index(seqs, states), torch.arange(states**length))


def test_masked_sampling_frequency():
    """Fraction of masked tokens ~ 1 - alpha_t within 5 standard errors (n = 200k draws)."""
    proc = MaskedProcess(4, make_schedule("loglinear"))
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(4, (2000, 100), generator=gen)
    z = proc.sample(x, 0.3, gen)
    frac = (z == proc.mask_id).double().mean().item()
    expected = 1 - proc.schedule.alpha(0.3)
    se = (expected * (1 - expected) / x.numel()) ** 0.5
    assert abs(frac - expected) < 5 * se
    kept = z != proc.mask_id
    assert torch.equal(z[kept], x[kept])


def test_reverse_rate_preserves_marginal_flow():
    """p Rrev = -p R: the reverse chain runs the forward marginals backwards."""
    proc = MaskedProcess(2, make_schedule("cosine"))
    rate = proc.sequence_rate(0.5, 2)
    gen = torch.Generator().manual_seed(1)
    p = torch.rand(9, generator=gen, dtype=torch.float64)
    p /= p.sum()
    rev = proc.reverse_rate(rate, p)
    assert torch.allclose(p @ rev, -(p @ rate), atol=1e-14)


def test_bad_inputs():
    proc = MaskedProcess(3, make_schedule("loglinear"))
    with pytest.raises(ValueError, match="s must be smaller than t"):
        proc.transition(0.5, 0.5)
    with pytest.raises(ValueError, match="x has a token outside"):
        proc.sample(torch.tensor([[0, 3]]), 0.5)
    with pytest.raises(ValueError, match="process must be one of"):
        make_process("gaussian", 3, make_schedule("loglinear"))
    with pytest.raises(ValueError, match="vocab_size"):
        MaskedProcess(0, make_schedule("loglinear"))
