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
    from language.config import language_methods
    from markov.config import markov_methods

    LANGUAGE, MARKOV = language_methods(), markov_methods()

    assert MARKOV == tuple(M.METHODS)  # the Markov benchmark has every component, exact ones included
    assert LANGUAGE == ("source-only", "target-only", "fine-tuned", "gtl", "gtl-planner", "tcsm", "ar2diff",
                        "fine-tuned-planner")
    # Markov cell seeds use the method's index: the registry order is the committed order
    assert MARKOV.index("gtl") == 3 and MARKOV.index("ar2diff") == 8 and MARKOV.index("gtl-paper") == 9
    assert MARKOV[-1] == "fine-tuned-planner"
    assert "gtl-paper" not in LANGUAGE  # its ratio ("paper") is one the language pipeline does not provide


@pytest.fixture
def registered():
    """The README's "Extending" example: GTL with another rule, and an exact-ratio ablation of it,
    registered in one place (the registry; restored after the test)."""
    from gtl_verify.rules import GTL

    methods, rules = dict(M.METHODS), dict(M.RULES)
    M.register(M.Method("gtl-top2", "source", "learned", rule="gtl-top2", description="GTL over 2 candidates"),
               rule=lambda candidates: GTL(candidates=2))
    M.register(M.Method("gtl-top2-oracle-ratio", "source", "oracle", rule="gtl-top2", ablation=True,
                        description="gtl-top2 guided by the exact ratio"))
    yield ("gtl-top2", "gtl-top2-oracle-ratio")
    for registry, saved in ((M.METHODS, methods), (M.RULES, rules)):
        registry.clear()
        registry.update(saved)


def test_a_registered_method_appears_in_both_pipelines_and_the_reports(registered):
    from language.config import SamplingConfig, language_methods
    import argparse

    from markov.benchmark import add_arguments
    from markov.config import MarkovConfig, markov_methods
    from reports import render_markov

    new, ablation = registered
    assert markov_methods()[-2:] == registered and MarkovConfig().methods[-2:] == registered
    assert markov_methods().index("ar2diff") == 8  # appended: the committed cells keep their seeds
    assert new in language_methods() and ablation not in language_methods()  # no exact ratio there
    assert new in SamplingConfig().methods and MarkovConfig(methods=(new,)).methods == (new,)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert new in parser.parse_args(["--methods", new]).methods
    assert render_markov.ablations()[-1] == ablation
    parts = M.method_parts(new, FakeProvider(), candidates=8)
    assert parts.rule.candidates == 2


def test_register_rejects_taken_names_and_unknown_rules(registered):
    with pytest.raises(ValueError, match="method name 'gtl' is taken"):
        M.register(M.Method("gtl", "source", "learned", rule="gtl"))
    with pytest.raises(ValueError, match="method.rule must be one of .* got 'nope'"):
        M.register(M.Method("other", "source", "learned", rule="nope"))
    with pytest.raises(ValueError, match="rule name 'gtl' is taken"):
        M.register(M.Method("other", "source", "learned", rule="gtl"), rule=lambda c: None)


def test_language_run_takes_a_seed():
    from gtl_verify.cli import build_parser
    from language.config import load_config, with_seed

    args = build_parser().parse_args(["language", "run", "--config", "cpu-tiny", "--seed", "5"])
    assert args.seed == 5
    assert with_seed(load_config("cpu-tiny"), 5).seed == 5
    with pytest.raises(ValueError, match=r"seed must be in \[0, inf\), got -1"):
        with_seed(load_config("cpu-tiny"), -1)


def test_the_default_markov_grid_leaves_out_only_the_opt_in_methods():
    from markov.config import OPT_IN_METHODS, MarkovConfig, default_methods, markov_methods

    assert set(OPT_IN_METHODS) == {"gtl-paper"} and set(OPT_IN_METHODS) <= set(markov_methods())
    assert MarkovConfig().methods == default_methods() == tuple(m for m in markov_methods() if m != "gtl-paper")
    assert MarkovConfig(methods=("gtl-paper",)).methods == ("gtl-paper",)  # still selectable
