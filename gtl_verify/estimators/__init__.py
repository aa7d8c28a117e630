"""Density-ratio estimators for GTL: one interface, a name registry and exact diagnostics.

``get_estimator(name).fit(source, target, budget, schedule=..., vocab_size=K, denoiser=...)``
returns a ratio model for the samplers (``log r(z)`` [B]; ``single_site`` where natural).
Estimators: ``paper`` (reference pipeline), ``regression-ratio``, ``noisy-classifier``,
``guided-likelihood`` and ``telescoping-nce`` (THEORY section 5). Their losses, as weighted pure
functions, are in :mod:`.losses`; :mod:`.diagnostics` holds them against an exact oracle;
:mod:`.persistence` saves a fitted model and reloads it (:func:`fit_or_load`: reload or fit and save).
"""

from .base import EstimatorBudget, FitInputs, RatioEstimator, check_fit_inputs, checked
from .diagnostics import LevelDiagnostics, RatioDiagnostics, guided_site_tv, level_free_rmse, ratio_diagnostics
from .persistence import FitOrLoad, fit_or_load, load_fitted, on_device, save_fitted
from .registry import ESTIMATORS, get_estimator
from .site_model import SiteRatioModel

__all__ = ["ESTIMATORS", "EstimatorBudget", "FitInputs", "FitOrLoad", "LevelDiagnostics", "RatioDiagnostics", "RatioEstimator",
           "SiteRatioModel", "check_fit_inputs", "checked", "fit_or_load", "get_estimator", "guided_site_tv", "level_free_rmse",
           "load_fitted", "on_device", "ratio_diagnostics", "save_fitted"]
