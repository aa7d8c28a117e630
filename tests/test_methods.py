"""The method registry: one list of methods, served by each application's component provider."""

from __future__ import annotations

import pytest

from gtl_verify import methods as M
from gtl_verify.rules import GTL, Unguided


class FakeProvider:
    """Components as labelled strings, recording what was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def denoiser(self, which):
        self.asked.append(f"denoiser:{which}")
        return f"D[{which}]"

    def ratio(self, which):
        self.asked.append(f"ratio:{which}")
        return f"R[{which}]"

    def planner(self):
        self.asked.append("planner")
        return "P"


@pytest.mark.parametrize("name", list(M.METHODS))
def test_method_parts_follow_the_registry(name):
    method, provider = M.METHODS[name], FakeProvider()
    parts = M.method_parts(name, provider, candidates=3)
    assert parts.denoiser == f"D[{method.denoiser}]"
    assert parts.ratio == (f"R[{method.ratio}]" if method.guided else None)
    assert parts.planner == ("P" if method.planner else None)
    if method.rule == "gtl":
        assert isinstance(parts.rule, GTL) and parts.rule.candidates == 3
    else:
        assert isinstance(parts.rule, Unguided)
    assert provider.asked[0] == f"denoiser:{method.denoiser}"  # nothing beyond what the method needs
    assert len(provider.asked) == 1 + method.guided + method.planner


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="method must be one of .* got 'magic'"):
        M.method_parts("magic", FakeProvider())


def test_both_pipelines_read_their_methods_from_the_registry():
    from language.config import METHODS as LANGUAGE
    from markov.config import METHODS as MARKOV

    assert MARKOV == tuple(M.METHODS)  # the Markov benchmark has every component, exact ones included
    assert LANGUAGE == ("source-only", "target-only", "fine-tuned", "gtl", "gtl-planner", "tcsm")
    # Markov cell seeds use the method's index: the registry order is the committed order
    assert MARKOV.index("gtl") == 3 and MARKOV.index("ar2diff") == 8


def test_a_new_method_appears_wherever_its_components_exist(monkeypatch):
    new = M.Method("gtl-greedy", "source", "learned", rule="gtl", description="example")
    monkeypatch.setitem(M.METHODS, new.name, new)
    assert "gtl-greedy" in M.methods_for({"source", "target-only", "fine-tuned", "tcsm"}, {"learned"})
    assert "gtl-greedy" in M.methods_for({"source", "oracle"}, {"learned", "oracle"})
    assert "gtl-greedy" not in M.methods_for({"source"}, set())
    assert M.ablations() == ("gtl-oracle-ratio", "gtl-oracle-denoiser")


def test_language_run_takes_a_seed():
    from gtl_verify.cli import build_parser
    from language.config import load_config, with_seed

    args = build_parser().parse_args(["language", "run", "--config", "cpu-tiny", "--seed", "5"])
    assert args.seed == 5
    assert with_seed(load_config("cpu-tiny"), 5).seed == 5
    with pytest.raises(ValueError, match=r"seed must be in \[0, inf\), got -1"):
        with_seed(load_config("cpu-tiny"), -1)
