from fractions import Fraction

import pytest
import torch

from gtl_verify.checks.rational import RationalOracle, masked_kernel, random_rational_law, rational_case, uniform_kernel


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("process", ["masked", "uniform"])
def test_theorem1_exactly_zero(seed, process):
    theorem, r1, r4 = rational_case(torch.Generator().manual_seed(seed), process)
    assert theorem == 0 and isinstance(theorem, Fraction)
    if process == "masked":
        assert r1 == 0 and r4 == 0
    else:
        assert r1 > 0  # R1 fails for the uniform kernel, exactly


def test_rational_check_detects_wrong_kernel():
    """Negative test: a forward kernel from s to t that does not compose with Q_{s|0} breaks the identity."""
    gen = torch.Generator().manual_seed(0)
    oracle = RationalOracle(random_rational_law(4, gen), random_rational_law(4, gen), 2, 2, 2)
    a_s, a_t = Fraction(3, 4), Fraction(1, 3)
    wrong = oracle.theorem1_residual(uniform_kernel(2, a_s), uniform_kernel(2, a_t), uniform_kernel(2, a_t))
    assert wrong > 0


def test_rational_laws_must_be_normalised():
    with pytest.raises(ValueError, match="sum to exactly 1"):
        RationalOracle([Fraction(1, 2)] * 3 + [Fraction(1, 4)], [Fraction(1, 4)] * 4, 2, 2, 3)
    assert sum(masked_kernel(3, Fraction(1, 3))[0]) == 1
