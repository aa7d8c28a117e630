"""Property-test a guidance rule against exact ground truth, written as a user of the package would."""
import math

import torch
from hypothesis import given, strategies as st

from gtl_verify.testing import assert_rule_matches_exact_step, assert_sampler_law_exact, gammas, masked_states, pairs, times


class MyGuidance:
    """Tokens in proportion to p(x^i = v | z) r(z^{i<-v})^gamma; stay-masked mass (1 - a_s)/(1 - a_t)."""

    name = "my guidance"

    def __call__(self, step):
        lp = step.position_log_probs  # [M, K] source denoiser log-probs at the masked positions
        log_r = step.score(torch.arange(lp.shape[-1]).expand_as(lp)) if step.gamma else torch.zeros_like(lp)
        tokens = torch.log_softmax(torch.where(lp > -math.inf, lp + step.gamma * log_r, lp), dim=-1)
        reveal = (step.alpha_s - step.alpha_t) / (1 - step.alpha_t)
        return torch.cat([tokens + math.log(reveal), torch.full_like(lp[:, :1], 1 - reveal).log()], dim=-1)


@given(pairs(), st.integers(1, 4), gammas(), times(), st.data())
def test_my_guidance_is_the_exact_guided_step(pair, length, gamma, s_t, data):
    s, t = s_t
    assert_rule_matches_exact_step(MyGuidance(), pair, data.draw(masked_states(pair, length)), s=s, t=t, gamma=gamma)


def test_my_guidance_samples_the_target_law(gtl_pair):  # gtl_pair: a fixture of the gtl-verify pytest plugin
    assert_sampler_law_exact(MyGuidance(), gtl_pair, length=3)
