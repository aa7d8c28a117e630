"""The published numbers of the GTL paper (arXiv 2512.10877) and comparisons with ours.

Values were read off the paper's figures (see docs/REFERENCE.md), so they carry about two digits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

#: Markov-chain benchmark (section 4.1): row-averaged KL(true || estimated) of the transition matrix,
#: K = 5, diagonal source d = 0.1, diagonal target d = 0.8; lower is better.
MARKOV_N_TARGET: tuple[int, ...] = (1000, 100, 20)
MARKOV_METHODS: tuple[str, ...] = ("target-only", "fine-tuned", "gtl")
MARKOV_TRANSITION_KL: dict[str, dict[int, float]] = {
    "target-only": {1000: 0.045, 100: 0.188, 20: 0.614},
    "fine-tuned": {1000: 0.072, 100: 0.206, 20: 0.481},
    "gtl": {1000: 0.052, 100: 0.100, 20: 0.244},
}
MARKOV_PRESET = "paper"

#: arXiv CS -> Physics (section 4.2): MAUVE against held-out physics with GPT-2-large features,
#: 5 seeds; higher is better. Keys are the percentage of target data kept.
LANGUAGE_FRACTIONS_PCT: tuple[float, ...] = (100.0, 30.0, 5.0, 1.0)
LANGUAGE_METHODS: tuple[str, ...] = ("target-only", "fine-tuned", "gtl")
LANGUAGE_MAUVE: dict[str, dict[float, float]] = {
    "target-only": {100.0: 0.579, 30.0: 0.545, 5.0: 0.505, 1.0: 0.466},
    "fine-tuned": {100.0: 0.591, 30.0: 0.563, 5.0: 0.519, 1.0: 0.495},
    "gtl": {100.0: 0.719, 30.0: 0.689, 5.0: 0.695, 1.0: 0.657},
}
LANGUAGE_FEATURES_NOTE = (
    "Our MAUVE uses sentence-embedding features (all-MiniLM-L6-v2); the paper used GPT-2-large features. "
    "MAUVE values depend strongly on the feature space, so only the ordering of the methods is comparable, "
    "not the values themselves."
)

#: Ablation of the paper (classifier P(source) of samples; lower is more target-like).
ABLATION_UNGUIDED_P_SOURCE = 0.96
ABLATION_GAMMA5_P_SOURCE = (0.23, 0.34)
ABLATION_CANDIDATES_P_SOURCE = {8: (0.69, 0.88), 1024: (0.16, 0.19)}
ABLATION_NO_OVERLAP_MAUVE = {5.0: 0.83, 10.0: 0.04}

#: Relative difference beyond which a comparison sentence is written.
RELATIVE_THRESHOLD = 0.10

DISPLAY_NAMES = {"target-only": "target-only", "fine-tuned": "fine-tuned", "gtl": "GTL"}


def canonical_method(name: str) -> str:
    """Method names compared case-insensitively, with ``_`` and spaces read as ``-`` (``GTL`` -> ``gtl``)."""
    return "-".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())


def fraction_to_pct(value: float, as_fraction: bool) -> float:
    """A kept target share in percent (``0.3`` -> 30 when the run records fractions)."""
    return float(value) * 100.0 if as_fraction else float(value)


def pct_key(pct: float) -> float | None:
    """The published percentage equal to ``pct`` (to 1e-6 relative), or None."""
    for p in LANGUAGE_FRACTIONS_PCT:
        if math.isclose(pct, p, rel_tol=1e-6):
            return p
    return None


@dataclass(frozen=True)
class Comparison:
    """Our value beside the published one. ``lower_is_better`` fixes the meaning of better / worse."""

    setting: str
    method: str
    ours: float | None
    paper: float
    lower_is_better: bool = True
    key: float | int | None = None

    @property
    def difference(self) -> float | None:
        """ours - paper."""
        return None if self.ours is None or math.isnan(self.ours) else self.ours - self.paper

    @property
    def relative(self) -> float | None:
        """(ours - paper) / paper."""
        d = self.difference
        return None if d is None else d / self.paper

    @property
    def verdict(self) -> str:
        """``worse``, ``better`` (by more than RELATIVE_THRESHOLD), ``close`` or ``missing``."""
        rel = self.relative
        if rel is None:
            return "missing"
        if abs(rel) <= RELATIVE_THRESHOLD:
            return "close"
        higher = rel > 0
        return "worse" if higher == self.lower_is_better else "better"

    def sentence(self, metric: str) -> str | None:
        """A sentence when ours differs from the paper by more than RELATIVE_THRESHOLD, else None.

        The relative change is stated as a change ("20 % lower than the published value"), never as a
        share of it, with the signed absolute difference after it."""
        if self.verdict not in ("worse", "better"):
            return None
        rel = abs(self.relative)  # type: ignore[arg-type]
        direction = "higher" if self.difference > 0 else "lower"  # type: ignore[operator]
        return (f"At {self.setting}, our {DISPLAY_NAMES.get(self.method, self.method)} {metric} "
                f"({self.ours:.3f}) is {self.verdict} than the paper's ({self.paper:.3f}): "
                f"{100 * rel:.0f} % {direction} than the published value "
                f"(difference {self.difference:+.3f}).")  # type: ignore[arg-type]


def markov_comparisons(ours: Mapping[tuple[str, int], float]) -> list[Comparison]:
    """Comparisons for every published (method, n target); ``ours`` maps (canonical method, n) -> mean KL."""
    return [Comparison(f"n target = {n}", m, ours.get((m, n)), MARKOV_TRANSITION_KL[m][n], lower_is_better=True, key=n)
            for n in MARKOV_N_TARGET for m in MARKOV_METHODS]


def language_comparisons(ours: Mapping[tuple[str, float], float]) -> list[Comparison]:
    """Comparisons for every published (method, percentage); ``ours`` maps (canonical method, pct) -> mean MAUVE."""
    return [Comparison(f"{p:g} % target data", m, ours.get((m, p)), LANGUAGE_MAUVE[m][p], lower_is_better=False, key=p)
            for p in LANGUAGE_FRACTIONS_PCT for m in LANGUAGE_METHODS]


def ordering(values: Mapping[str, float | None], lower_is_better: bool) -> list[str]:
    """Methods from best to worst (missing values dropped)."""
    present = {m: v for m, v in values.items() if v is not None and not math.isnan(v)}
    return sorted(present, key=lambda m: present[m] if lower_is_better else -present[m])


TIE_RTOL = 1e-3


def is_tie(values: list[float]) -> bool:
    """True when the values agree to a relative 1e-3 (max - min <= TIE_RTOL max|v|): no ranking."""
    return len(values) > 1 and max(values) - min(values) <= TIE_RTOL * max(abs(v) for v in values)


def ordering_sentences(comparisons: list[Comparison], lower_is_better: bool) -> list[str]:
    """For each setting, whether our ranking of the methods matches the paper's; settings where
    our values tie (``is_tie``) get a sentence saying there is no ranking to compare."""
    out = []
    for setting in dict.fromkeys(c.setting for c in comparisons):
        group = [c for c in comparisons if c.setting == setting]
        ours = ordering({c.method: c.ours for c in group}, lower_is_better)
        if len(ours) < 2:
            continue
        values = [c.ours for c in group if c.method in ours]
        if is_tie(values):
            out.append(f"At {setting} our methods tie (all {values[0]:.3g}): no ranking to compare.")
            continue
        paper = [m for m in ordering({c.method: c.paper for c in group}, lower_is_better) if m in ours]
        show = lambda ms: " > ".join(DISPLAY_NAMES.get(m, m) for m in ms)  # noqa: E731
        if ours == paper:
            out.append(f"At {setting} the ranking (best first) matches the paper: {show(ours)}.")
        else:
            out.append(f"At {setting} the ranking differs: ours {show(ours)}, paper {show(paper)} (best first).")
    return out
