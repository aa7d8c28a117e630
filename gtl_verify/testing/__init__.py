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

import importlib

# public name -> submodule; imported on first use, so that the pytest plugin (loaded in every project
# that installs the package) costs nothing until a fixture is used, and hypothesis is needed only for
# the strategies
_EXPORTS = {
    **dict.fromkeys(("assert_denoiser_exact", "assert_ratio_calibrated", "assert_rule_matches_exact_step",
                     "assert_sampler_law_exact"), ".assertions"),
    **dict.fromkeys(("ExactComponents", "all_masked", "exact_components", "exact_guided_step", "exact_target_law",
                     "format_state", "make_step_input"), ".exact"),
    **dict.fromkeys(("ABSOLUTELY_CONTINUOUS_KINDS", "CHAIN_KINDS", "random_chain_pair"), ".random_chains"),
    **dict.fromkeys(("make_hmm_pair", "random_hmm_pair"), "markov.hmm"),
    **dict.fromkeys(("candidate_counts", "chain_pairs", "gammas", "hmm_pairs", "law_kinds", "law_pairs", "masked_states",
                     "oracles", "pairs", "schedule_names", "schedules", "seeds", "shapes", "times"), ".strategies"),
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gtl_verify.testing' has no attribute {name!r}")
    try:
        module = importlib.import_module(_EXPORTS[name], __name__)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"gtl_verify.testing.{name} needs {exc.name or 'a missing package'}: {exc}{_shadowing_hint()}") from None
    return getattr(module, name)


def _shadowing_hint() -> str:
    """A hint when a user's own ``markov`` module hides gtl-verify's ``markov`` package (same top-level name)."""
    import sys

    found = sys.modules.get("markov")
    if found is None or hasattr(found, "__path__"):
        return ""
    return (f"; a module 'markov' at {getattr(found, '__file__', '?')} shadows gtl-verify's markov package: "
            "rename that module or take its folder off sys.path")


def __dir__() -> list[str]:
    return sorted(_EXPORTS)


__all__ = sorted(_EXPORTS)
