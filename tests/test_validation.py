import math

import pytest
import torch

from gtl_verify import validation as v


def test_stochastic_matrix_errors_name_the_parameter():
    with pytest.raises(ValueError, match="transition must be a square"):
        v.check_stochastic_matrix("transition", torch.ones(2, 3) / 3)
    with pytest.raises(ValueError, match="transition must sum to 1"):
        v.check_stochastic_matrix("transition", torch.ones(2, 2))
    with pytest.raises(ValueError, match="transition has a negative entry"):
        v.check_stochastic_matrix("transition", torch.tensor([[1.5, -0.5], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="transition has a non-finite"):
        v.check_stochastic_matrix("transition", torch.tensor([[math.nan, 1.0], [0.5, 0.5]]))
    v.check_stochastic_matrix("transition", torch.eye(3, dtype=torch.float64))


def test_ranges_and_tokens():
    assert v.check_int_range("n", 3, 1, 5) == 3
    for bad in (0, 6, 2.5, True, "3"):
        with pytest.raises(ValueError, match="n must"):
            v.check_int_range("n", bad, 1, 5)
    with pytest.raises(ValueError, match="gamma must be in"):
        v.check_real_range("gamma", -0.1, 0.0)
    with pytest.raises(ValueError, match="gamma must be in"):
        v.check_real_range("gamma", math.nan, 0.0)
    with pytest.raises(ValueError, match="s must be smaller than t"):
        v.check_times(0.5, 0.2)
    with pytest.raises(ValueError, match="z has a token outside"):
        v.check_tokens("z", torch.tensor([[0, 7]]), 6)
    with pytest.raises(ValueError, match="z must be an integer tensor"):
        v.check_tokens("z", torch.zeros(2, 2), 6)
    with pytest.raises(ValueError, match="z must have shape"):
        v.check_tokens("z", torch.zeros(4, dtype=torch.long), 6)
    with pytest.raises(ValueError, match="mask_id must lie outside"):
        v.check_mask_id(2, 5)
    with pytest.raises(ValueError, match="x must have shape"):
        v.check_shape("x", torch.zeros(2, 3), (2, None, 1))
