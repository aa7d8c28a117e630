import math

import pytest
import torch
from hypothesis import given

from gtl_verify.enumeration import EnumerationOracle, LawPair, kl_divergence, total_variation
from gtl_verify.forward import MaskedProcess
from gtl_verify.schedules import make_schedule

from gtl_verify.testing import oracles, times


@given(oracles("masked"), times())
def test_noisy_marginal_formula(oracle, st_):
    """p_t(z) = alpha^u (1-alpha)^(L-u) P_obs(z) for the absorbing process."""
    _, t = st_
    alpha = oracle.process.schedule.alpha(t)
    mask = oracle.noisy == oracle.process.mask_id
    u = (~mask).sum(1).double()
    agree = ((oracle.noisy[:, None, :] == oracle.clean[None, :, :]) | mask[:, None, :]).all(-1).double()
    p_obs = agree @ oracle.laws.p
    expected = alpha**u * (1 - alpha) ** (oracle.length - u) * p_obs
    assert torch.allclose(oracle.noisy_marginal(t), expected, rtol=1e-12, atol=1e-300)


@given(oracles("masked"), times())
def test_reverse_kernel_rows_are_distributions(oracle, st_):
    s, t = st_
    kernel = oracle.reverse_kernel(s, t, "p")
    alive = oracle.noisy_marginal(t) > 0
    assert torch.allclose(kernel[alive].sum(1), torch.ones(int(alive.sum()), dtype=torch.float64), atol=1e-12)
    # marginalising the reverse kernel over p_t gives p_s
    ps = oracle.noisy_marginal(s) if s > 0 else None
    if ps is not None:
        assert torch.allclose(oracle.noisy_marginal(t) @ torch.nan_to_num(kernel), ps, atol=1e-13)


@given(oracles("masked"), times())
def test_denoiser_marginals_normalised(oracle, st_):
    _, t = st_
    marg = oracle.denoiser_marginals(t)
    alive = oracle.noisy_marginal(t) > 0
    assert torch.allclose(marg[alive].sum(-1), torch.ones_like(marg[alive][..., 0]), atol=1e-12)


def test_table_adapters_follow_protocols():
    from gtl_verify.protocols import Denoiser, SequenceRatio, SingleSiteRatio

    gen = torch.Generator().manual_seed(0)
    p = torch.rand(9, generator=gen, dtype=torch.float64)
    q = torch.rand(9, generator=gen, dtype=torch.float64)
    oracle = EnumerationOracle(LawPair.from_tables(p / p.sum(), q / q.sum(), 3, 2), MaskedProcess(3, make_schedule("loglinear")))
    den, ratio = oracle.denoiser(), oracle.ratio_model()
    assert isinstance(den, Denoiser) and isinstance(ratio, SequenceRatio) and isinstance(ratio, SingleSiteRatio)
    z = torch.tensor([[3, 3], [0, 3]])
    assert den(z).shape == (2, 2, 3)
    single = ratio.single_site(z)
    assert single[1, 1, 2] == pytest.approx(float(ratio(torch.tensor([[0, 2]]))[0]))


def test_divergences():
    a = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    b = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
    assert total_variation(a, b) == pytest.approx(0.5)
    assert kl_divergence(a, b) == pytest.approx(math.log(2))
    assert kl_divergence(b, a) == math.inf


def test_bad_laws_are_rejected_with_the_argument_name():
    good = torch.full((4,), 0.25, dtype=torch.float64)
    with pytest.raises(ValueError, match="p must sum to 1"):
        LawPair.from_tables(good * 2, good, 2, 2)
    with pytest.raises(ValueError, match="q has a negative entry"):
        LawPair.from_tables(good, torch.tensor([0.5, 0.75, -0.25, 0.0], dtype=torch.float64), 2, 2)
    with pytest.raises(ValueError, match="p has a non-finite"):
        LawPair.from_tables(torch.tensor([math.nan, 0.5, 0.25, 0.25], dtype=torch.float64), good, 2, 2)
    with pytest.raises(ValueError, match="must have 2\\*\\*2"):
        LawPair.from_tables(torch.full((3,), 1 / 3, dtype=torch.float64), good, 2, 2)
    with pytest.raises(ValueError, match="vocab_size must be in"):
        LawPair.from_tables(good, good, 0, 2)
    with pytest.raises(ValueError, match="length must be in"):
        LawPair.from_tables(good, good, 2, 0)
    with pytest.raises(ValueError, match="absolutely continuous"):
        LawPair.from_tables(torch.tensor([1.0, 0, 0, 0], dtype=torch.float64), good, 2, 2).clean_ratio
    with pytest.raises(ValueError, match="vocab_size"):
        EnumerationOracle(LawPair.from_tables(good, good, 2, 2), MaskedProcess(3, make_schedule("loglinear")))
