"""pytest plugin of gtl-verify: fixtures with exact ground truth for any project's tests.

Registered by the ``pytest11`` entry point ``gtl_verify`` (installed with the package), so these
fixtures need no import:

- ``gtl_chain_pair``: each first-order preset pair whose target is absolutely continuous w.r.t. the
  source (paper, diagonal, anti-diagonal, dirichlet), one test per pair (parametrised);
- ``gtl_hmm_pair``: the hidden-regime HMM pair and the paper pair as identity-emission HMMs;
- ``gtl_pair``: all of the above;
- ``gtl_exact``: the factory :func:`gtl_verify.testing.exact_components` (pair -> exact denoisers,
  ratio and clean laws);
- ``gtl_schedule``: the log-linear schedule alpha_t = 1 - t.
"""

from __future__ import annotations

import pytest

CHAIN_PRESETS = ("paper", "diagonal", "anti-diagonal", "dirichlet")
HMM_CASES = ("regime", "paper as HMM")


def _chain_pair(name: str):
    from markov.presets import make_pair

    return make_pair(name)


def _hmm_pair(name: str):
    from markov.hmm import HMMPair, make_hmm_pair

    return HMMPair.from_chains(_chain_pair("paper")) if name == "paper as HMM" else make_hmm_pair(name)


@pytest.fixture(params=CHAIN_PRESETS)
def gtl_chain_pair(request):
    """A first-order ChainPair preset (parametrised over CHAIN_PRESETS)."""
    return _chain_pair(request.param)


@pytest.fixture(params=HMM_CASES)
def gtl_hmm_pair(request):
    """An HMMPair (parametrised over HMM_CASES)."""
    return _hmm_pair(request.param)


@pytest.fixture(params=[("chain", n) for n in CHAIN_PRESETS] + [("hmm", n) for n in HMM_CASES],
                ids=lambda p: f"{p[0]}-{p[1]}")
def gtl_pair(request):
    """Every chain and HMM pair of the two fixtures above."""
    family, name = request.param
    return _chain_pair(name) if family == "chain" else _hmm_pair(name)


@pytest.fixture
def gtl_exact():
    """pair -> :class:`gtl_verify.testing.ExactComponents` (exact denoisers, ratio, clean laws)."""
    from gtl_verify.testing import exact_components

    return exact_components


@pytest.fixture
def gtl_schedule():
    """The log-linear schedule (alpha_t = 1 - t)."""
    from gtl_verify.schedules import LogLinearSchedule

    return LogLinearSchedule()
