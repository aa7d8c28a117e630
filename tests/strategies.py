"""Hypothesis strategies shared by the test modules: random law pairs, schedules, times, problems."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from gtl_verify.checks.problems import LAW_KINDS, random_law, random_law_pair
from gtl_verify.enumeration import EnumerationOracle, LawPair
from gtl_verify.forward import make_process
from gtl_verify.schedules import make_schedule

schedule_names = st.sampled_from(["loglinear", "linear", "cosine", "geometric"])
law_kinds = st.sampled_from(LAW_KINDS)
seeds = st.integers(0, 2**31 - 1)


@st.composite
def shapes(draw, max_noisy_states: int = 400, vocab=(2, 5), lengths=(1, 4)):
    while True:
        k = draw(st.integers(*vocab))
        length = draw(st.integers(*lengths))
        if (k + 1) ** length <= max_noisy_states:
            return k, length


@st.composite
def times(draw, allow_zero: bool = True):
    t = draw(st.floats(0.02, 0.98))
    s = draw(st.floats(0.0, 0.99)) * t
    if not allow_zero and s == 0.0:
        s = 0.5 * t
    if allow_zero and draw(st.booleans()) and draw(st.booleans()):
        s = 0.0
    return s, t


@st.composite
def law_pairs(draw, vocab_size: int, length: int) -> LawPair:
    gen = torch.Generator().manual_seed(draw(seeds))
    kind_p, kind_q = draw(law_kinds), draw(law_kinds)
    size = vocab_size**length
    p = random_law(size, gen, kind_p)
    q = random_law(size, gen, kind_q, support=p > 0)
    return LawPair.from_tables(p, q, vocab_size, length)


@st.composite
def oracles(draw, process: str = "masked", max_noisy_states: int = 400) -> EnumerationOracle:
    k, length = draw(shapes(max_noisy_states))
    laws = draw(law_pairs(k, length))
    return EnumerationOracle(laws, make_process(process, k, make_schedule(draw(schedule_names))))


__all__ = ["law_pairs", "oracles", "random_law_pair", "schedule_names", "seeds", "shapes", "times"]
