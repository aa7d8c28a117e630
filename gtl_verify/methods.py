"""The registry of compared methods, shared by every application.

A :class:`Method` names which denoiser it samples with, whether it is guided by a density ratio
(learned, or an exact ``oracle`` where the application has one), whether a learned planner picks
the positions to reveal, and which guidance rule it uses. An application supplies a
:class:`ComponentProvider` (its trained or exact components); :func:`method_parts` turns a method
and a provider into the (denoiser, ratio, planner, rule) a sampler needs, and
:func:`methods_for` lists the methods an application's provider can serve, in registry order.
Adding a method here makes it appear in every application that can provide its components and
in their reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .rules import GTL, Unguided

#: rule name -> factory(candidates) of the guidance rule (candidates None = every token)
RULES: dict[str, Callable[[int | None], Any]] = {
    "unguided": lambda candidates: Unguided(),
    "gtl": lambda candidates: GTL(candidates=candidates),
}


@dataclass(frozen=True)
class Method:
    """One compared method.

    ``denoiser``: which denoiser the provider supplies (``source``, ``target-only``,
    ``fine-tuned``, ``tcsm``, ``ar2diff``, or ``oracle`` for the exact source denoiser).
    ``ratio``: None (unguided), ``learned`` (the application's configured estimator), ``paper``
    (the reference pipeline's estimator, :class:`gtl_verify.estimators.regression.Paper`) or
    ``oracle`` (the exact ratio). ``planner``: a learned
    planner chooses the reveal order. ``rule``: a key of :data:`RULES`. ``ablation``: the method
    isolates one component's error (an exact component in place of a learned one)."""

    name: str
    denoiser: str
    ratio: str | None = None
    planner: bool = False
    rule: str = "unguided"
    ablation: bool = False
    description: str = ""

    @property
    def guided(self) -> bool:
        return self.ratio is not None


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("source-only", "source", description="unguided source denoiser"),
    Method("target-only", "target-only", description="denoiser trained on the target samples only"),
    Method("fine-tuned", "fine-tuned", description="source denoiser fine-tuned on the target samples"),
    Method("gtl", "source", "learned", rule="gtl", description="source denoiser guided by the learned ratio"),
    Method("gtl-oracle-ratio", "source", "oracle", rule="gtl", ablation=True,
           description="source denoiser guided by the exact ratio (isolates the ratio error)"),
    Method("gtl-oracle-denoiser", "oracle", "learned", rule="gtl", ablation=True,
           description="exact source denoiser guided by the learned ratio (isolates the denoiser error)"),
    Method("gtl-planner", "source", "learned", planner=True, rule="gtl",
           description="GTL revealing the positions a learned planner chooses"),
    Method("tcsm", "tcsm", description="frozen source denoiser times a learned correction trained on the target"),
    Method("ar2diff", "ar2diff", description="denoiser initialised from an autoregressive source model, fine-tuned"),
    # last: a Markov cell seed uses its method's registry index, so earlier methods keep theirs
    Method("gtl-paper", "source", "paper", rule="gtl",
           description="source denoiser guided by the ratio of the paper's estimator (the reference pipeline)"),
    Method("fine-tuned-planner", "fine-tuned", planner=True,
           description="fine-tuned denoiser revealing the positions the learned planner chooses (gtl-planner's sampler)"),
)}


class ComponentProvider(Protocol):
    """An application's components: ``denoiser(which)``, ``ratio(which)`` and ``planner()``."""

    def denoiser(self, which: str) -> Any: ...

    def ratio(self, which: str) -> Any: ...

    def planner(self) -> Any: ...


@dataclass(frozen=True)
class MethodParts:
    """What a sampler needs for one method: denoiser, ratio (None if unguided), planner (None:
    the sampler's default order) and the guidance rule."""

    denoiser: Any
    ratio: Any
    planner: Any
    rule: Any


def make_rule(method: Method, candidates: int | None) -> Any:
    """The method's guidance rule with ``candidates`` top-n ratio candidates (GTL rules only)."""
    return RULES[method.rule](candidates)


def method_parts(name: str, provider: ComponentProvider, candidates: int | None = None) -> MethodParts:
    """The components of method ``name`` from ``provider`` (trained on demand by the provider).
    Raises ValueError for a name not in :data:`METHODS`."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {name!r}")
    m = METHODS[name]
    return MethodParts(provider.denoiser(m.denoiser), provider.ratio(m.ratio) if m.guided else None,
                       provider.planner() if m.planner else None, make_rule(m, candidates))


def methods_for(denoisers: set[str], ratios: set[str], planner: bool = True) -> tuple[str, ...]:
    """Names of the methods whose components an application provides (registry order)."""
    return tuple(m.name for m in METHODS.values()
                 if m.denoiser in denoisers and (m.ratio is None or m.ratio in ratios) and (planner or not m.planner))


def register(method: Method, rule: Callable[[int | None], Any] | None = None) -> Method:
    """Add ``method`` to the registry (and ``rule``, a factory ``candidates -> rule``, under
    ``method.rule`` when given): every application whose provider serves its components lists it,
    samples it and reports it. Raises ValueError for a taken name or an unknown rule."""
    if not isinstance(method, Method):
        raise ValueError(f"method must be a Method, got {type(method).__name__}")
    if method.name in METHODS:
        raise ValueError(f"method name {method.name!r} is taken; choose another")
    if rule is not None:
        if method.rule in RULES:
            raise ValueError(f"rule name {method.rule!r} is taken; choose another")
        RULES[method.rule] = rule
    if method.rule not in RULES:
        raise ValueError(f"method.rule must be one of {list(RULES)} or come with its rule, got {method.rule!r}")
    METHODS[method.name] = method
    return method


def ablations() -> tuple[str, ...]:
    """Names of the ablation methods (an exact component in place of a learned one)."""
    return tuple(m.name for m in METHODS.values() if m.ablation)


__all__ = ["ComponentProvider", "METHODS", "Method", "MethodParts", "RULES", "ablations", "make_rule", "method_parts",
           "methods_for", "register"]
