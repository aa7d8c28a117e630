"""Property-test your own guidance against exact ground truth: the public testing toolkit.

Exact ground truth comes from pairs whose noisy marginals are computable exactly: first-order
Markov chains and hidden Markov models (forward-backward, any length) and arbitrary joint laws on
small spaces (enumeration). A typical test::

    from hypothesis import given
    from gtl_verify.testing import assert_rule_matches_exact_step, chain_pairs, gammas, times

    @given(chain_pairs(), gammas(), times(allow_zero=False))
    def test_my_rule(pair, gamma, st_):
        s, t = st_
        assert_rule_matches_exact_step(MyRule(), pair, length=3, s=s, t=t, gamma=gamma)

Public names:

- exact references (:mod:`.exact`): :class:`ExactComponents`, :func:`exact_components`,
  :func:`exact_guided_step`, :func:`exact_target_law`, :func:`make_step_input`, :func:`all_masked`,
  :func:`format_state`;
- assertions (:mod:`.assertions`): :func:`assert_rule_matches_exact_step`, :func:`assert_sampler_law_exact`,
  :func:`assert_ratio_calibrated`, :func:`assert_denoiser_exact`;
- seeded pairs (:mod:`.random_chains`): :func:`random_chain_pair`, :data:`CHAIN_KINDS`,
  :data:`ABSOLUTELY_CONTINUOUS_KINDS`; HMMs: :func:`random_hmm_pair`, :func:`make_hmm_pair`;
- hypothesis strategies (:mod:`.strategies`, needs ``hypothesis``): chain_pairs, hmm_pairs, pairs,
  masked_states, schedules, schedule_names, times, gammas, candidate_counts, seeds, shapes,
  law_pairs, law_kinds, oracles;
- a pytest plugin (:mod:`.plugin`, registered by the ``pytest11`` entry point) with the fixtures
  ``gtl_chain_pair``, ``gtl_hmm_pair``, ``gtl_pair``, ``gtl_exact`` and ``gtl_schedule``.
"""

from __future__ import annotations

from markov.hmm import make_hmm_pair, random_hmm_pair

from .assertions import (
    assert_denoiser_exact,
    assert_ratio_calibrated,
    assert_rule_matches_exact_step,
    assert_sampler_law_exact,
)
from .exact import (
    ExactComponents,
    all_masked,
    exact_components,
    exact_guided_step,
    exact_target_law,
    format_state,
    make_step_input,
)
from .random_chains import ABSOLUTELY_CONTINUOUS_KINDS, CHAIN_KINDS, random_chain_pair

STRATEGIES = (
    "candidate_counts", "chain_pairs", "gammas", "hmm_pairs", "law_kinds", "law_pairs", "masked_states", "oracles",
    "pairs", "schedule_names", "schedules", "seeds", "shapes", "times",
)


def __getattr__(name: str):
    """The hypothesis strategies, imported on first use (hypothesis is only needed for them)."""
    if name in STRATEGIES:
        try:
            from . import strategies
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(f"gtl_verify.testing.{name} needs hypothesis: pip install hypothesis ({exc})") from None
        return getattr(strategies, name)
    raise AttributeError(f"module 'gtl_verify.testing' has no attribute {name!r}")


__all__ = [
    "ABSOLUTELY_CONTINUOUS_KINDS", "CHAIN_KINDS", "ExactComponents", "all_masked", "assert_denoiser_exact",
    "assert_ratio_calibrated", "assert_rule_matches_exact_step", "assert_sampler_law_exact", "exact_components",
    "exact_guided_step", "exact_target_law", "format_state", "make_hmm_pair", "make_step_input",
    "random_chain_pair", "random_hmm_pair", *STRATEGIES,
]
