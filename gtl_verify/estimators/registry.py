"""Name registry of the ratio estimators."""

from __future__ import annotations

from .base import RatioEstimator
from .classifiers import NoisyClassifier
from .regression import Paper, RegressionRatio
from .site_estimators import GuidedLikelihood, TelescopingNCE

_REGISTRY: dict[str, type[RatioEstimator]] = {
    cls.name: cls for cls in (Paper, RegressionRatio, NoisyClassifier, GuidedLikelihood, TelescopingNCE)
}
ESTIMATORS: tuple[str, ...] = tuple(_REGISTRY)


def get_estimator(name: str) -> RatioEstimator:
    """A fresh estimator by name; raises ValueError naming an unknown one and listing the choices."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown ratio estimator {name!r}; choose from {list(ESTIMATORS)}")
    return _REGISTRY[name]()
