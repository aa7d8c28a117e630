"""Hypothesis strategies for property tests of guidance: pairs, masked states, schedules, times, gamma, n.

Every strategy draws small seeds and sizes and builds its object deterministically from them, so
hypothesis shrinks towards small vocabularies, short sequences and seed 0.

- :func:`chain_pairs`: first-order ChainPairs of the kinds in :data:`~gtl_verify.testing.random_chains.CHAIN_KINDS`
  (default: the absolutely continuous ones);
- :func:`hmm_pairs`: HMMPairs (random hidden Markov models, exact zeros included);
- :func:`pairs`: chain pairs or HMM pairs;
- :func:`masked_states`: partly masked states [B, L] possible under both laws of a pair (row 0 fully masked);
- :func:`schedules`, :data:`schedule_names`, :func:`times` (0 <= s < t < 1), :func:`gammas`,
  :func:`candidate_counts` (top-n sizes), :data:`seeds`;
- :func:`shapes`, :func:`law_pairs`, :func:`oracles`: small enumerable sequence laws (arbitrary joint
  laws, not only Markov) and their :class:`~gtl_verify.enumeration.EnumerationOracle`.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ..checks.problems import LAW_KINDS, random_law
from ..enumeration import EnumerationOracle, LawPair
from ..forward import make_process
from ..schedules import SCHEDULES, Schedule, make_schedule
from .random_chains import ABSOLUTELY_CONTINUOUS_KINDS, random_chain_pair

schedule_names = st.sampled_from(["loglinear", *sorted(set(SCHEDULES) - {"loglinear"})])  # shrinks to loglinear
law_kinds = st.sampled_from(LAW_KINDS)
seeds = st.integers(0, 2**31 - 1)


def schedules() -> st.SearchStrategy[Schedule]:
    """Noise schedules alpha_t by name (loglinear, linear, cosine, geometric)."""
    return schedule_names.map(make_schedule)


@st.composite
def times(draw, allow_zero: bool = True) -> tuple[float, float]:
    """A reverse step (s, t) with 0 <= s < t, t in [0.02, 0.98]; s = 0 in about a quarter of the draws
    when ``allow_zero``."""
    t = draw(st.floats(0.02, 0.98))
    s = draw(st.floats(0.0, 0.99)) * t
    if not allow_zero and s == 0.0:
        s = 0.5 * t
    if allow_zero and draw(st.booleans()) and draw(st.booleans()):
        s = 0.0
    return s, t


def gammas(max_value: float = 4.0, allow_zero: bool = True) -> st.SearchStrategy[float]:
    """Guidance strengths: 0, 1 and values in (0, max_value]."""
    special = [0.0, 1.0] if allow_zero else [1.0]
    return st.one_of(st.sampled_from(special), st.floats(0.0 if allow_zero else 1e-3, max_value))


def candidate_counts(vocab_size: int) -> st.SearchStrategy[int | None]:
    """Top-n candidate counts n in 1..K, or None (all K tokens)."""
    return st.one_of(st.none(), st.integers(1, vocab_size))


@st.composite
def chain_pairs(draw, vocab=(2, 5), kinds=ABSOLUTELY_CONTINUOUS_KINDS):
    """A :class:`markov.presets.ChainPair` with K in ``vocab`` (inclusive) of one of ``kinds``."""
    return random_chain_pair(draw(seeds), draw(st.integers(*vocab)), draw(st.sampled_from(list(kinds))))


@st.composite
def hmm_pairs(draw, vocab=(2, 4), hidden=(1, 3), sparse: bool | None = None):
    """An :class:`markov.hmm.HMMPair`: source and target HMMs on K tokens with H hidden states each
    (H in ``hidden``, drawn per model), exact zeros when ``sparse`` (None: either), supp q within supp p."""
    from markov.hmm import random_hmm_pair

    sparse = draw(st.booleans()) if sparse is None else sparse
    return random_hmm_pair(draw(seeds), draw(st.integers(*vocab)), draw(st.integers(*hidden)),
                           draw(st.integers(*hidden)), sparse)


def pairs(vocab=(2, 4)) -> st.SearchStrategy:
    """Chain pairs or HMM pairs (both families of exact ground truth)."""
    return st.one_of(chain_pairs(vocab), hmm_pairs(vocab))


@st.composite
def masked_states(draw, pair, length: int, batch=(1, 6)) -> torch.Tensor:
    """States z [B, L] (mask id K) possible under both laws of ``pair`` (anything
    :func:`~gtl_verify.testing.exact.exact_components` takes: chain or HMM pairs, enumeration oracles):
    target draws, masked at a random rate per row, kept where the source allows them; row 0 is the
    all-mask state. Raises ValueError for a length the pair does not answer for."""
    from ..enumeration import enumerate_sequences
    from .exact import exact_components

    comp = exact_components(pair)
    comp.check_length(length)
    gen = torch.Generator().manual_seed(draw(seeds))
    n = draw(st.integers(*batch))
    if hasattr(pair, "target") and hasattr(pair.target, "sample"):
        x = pair.target.sample(n, length, gen)
        z = _mask_rows(x, comp.mask_id, gen)
        return z[torch.isfinite(comp.source.log_obs(z))]
    # an exact table only (enumeration oracle): draw from the target's table, keep what the source allows
    sequences = enumerate_sequences(comp.vocab_size, length)
    x = sequences[torch.multinomial(comp.target_table(length).to(torch.float64), n, replacement=True, generator=gen)]
    z = _mask_rows(x, comp.mask_id, gen)
    consistent = ((z[:, None, :] == comp.mask_id) | (z[:, None, :] == sequences[None])).all(-1)
    return z[consistent.to(torch.float64) @ comp.source_table(length).to(torch.float64) > 0]


def _mask_rows(x: torch.Tensor, mask_id: int, gen: torch.Generator) -> torch.Tensor:
    """x [B, L] with each row masked at its own uniform rate; row 0 fully masked."""
    n, length = x.shape
    rate = torch.rand(n, 1, generator=gen, dtype=torch.float64)
    z = torch.where(torch.rand(n, length, generator=gen, dtype=torch.float64) < rate, mask_id, x)
    z[0] = mask_id
    return z


@st.composite
def shapes(draw, max_noisy_states: int = 400, vocab=(2, 5), lengths=(1, 4)) -> tuple[int, int]:
    """(K, L) with (K + 1)^L <= ``max_noisy_states`` (enumerable)."""
    while True:
        k = draw(st.integers(*vocab))
        length = draw(st.integers(*lengths))
        if (k + 1) ** length <= max_noisy_states:
            return k, length


@st.composite
def law_pairs(draw, vocab_size: int, length: int) -> LawPair:
    """Arbitrary joint source/target laws on {0..K-1}^L (dense, peaked, sparse or near-degenerate),
    supp q within supp p."""
    gen = torch.Generator().manual_seed(draw(seeds))
    kind_p, kind_q = draw(law_kinds), draw(law_kinds)
    size = vocab_size**length
    p = random_law(size, gen, kind_p)
    q = random_law(size, gen, kind_q, support=p > 0)
    return LawPair.from_tables(p, q, vocab_size, length)


@st.composite
def oracles(draw, process: str = "masked", max_noisy_states: int = 400) -> EnumerationOracle:
    """An enumeration oracle of a random law pair under the ``process`` ("masked" or "uniform")."""
    k, length = draw(shapes(max_noisy_states))
    laws = draw(law_pairs(k, length))
    return EnumerationOracle(laws, make_process(process, k, make_schedule(draw(schedule_names))))
