"""Saving, reloading and moving a fitted ratio model: its trained parts and the estimator that assembles them.

A fitted model (what :meth:`RatioEstimator.fit` returns) keeps its trained networks in ``parts``
{part name: network}. :func:`save_fitted` writes, atomically, one torch file

    {"estimator": name, "parts": {part: {"spec": {...}, "state_dict": {...}}}, "meta": {...}}

with a spec per network (``sequence``: a :class:`~gtl_verify.networks.SequenceNet`; ``single-site``:
a :class:`~gtl_verify.amortised.SingleSiteRatioNet`), and :func:`load_fitted` rebuilds the networks,
loads their weights and hands them to the estimator's :meth:`~RatioEstimator.assemble`. A file that
cannot be read, or whose parts do not build, is named in a :class:`~gtl_verify.storage.DamagedCacheWarning`, removed and reported
as missing (None), so the caller refits; a readable file of another estimator or key raises ValueError.
:func:`fit_or_load` is the one load-or-fit-and-save path of the applications (the Markov
benchmark and the language pipeline): a saved fit is reloaded, a missing or damaged one is fitted
and saved. :func:`on_device` reassembles a fitted model from copies of its parts on another device.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ..amortised import SingleSiteRatioNet
from ..networks import BackboneConfig, SequenceNet
from ..schedules import Schedule
from ..storage import atomic_torch_save, discard_damaged, load_torch_cache
from ..validation import check_device, check_output_file
from .base import DenoiserFn, EstimatorBudget
from .registry import get_estimator


def _spec(net: nn.Module) -> dict[str, Any]:
    if type(net) is SequenceNet:
        return {"kind": "sequence", "config": net.config.to_dict(), "outputs": net.outputs}
    if type(net) is SingleSiteRatioNet:
        return {"kind": "single-site", "config": net.config.to_dict(), "mask_id": net.mask_id,
                "level_head": net.level is not None}
    raise ValueError(f"a ratio model part must be a SequenceNet or a SingleSiteRatioNet, got {type(net).__name__}")


def _build(spec: dict[str, Any]) -> nn.Module:
    config = BackboneConfig.from_dict(spec["config"])
    if spec.get("kind") == "sequence":
        return SequenceNet(config, outputs=spec["outputs"])
    if spec.get("kind") == "single-site":
        return SingleSiteRatioNet(config, mask_id=spec["mask_id"], level_head=spec["level_head"])
    raise ValueError(f"part kind must be 'sequence' or 'single-site', got {spec.get('kind')!r}")


def save_fitted(model: Any, name: str, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write the parts of ``model`` (fitted by estimator ``name``) and ``meta`` to ``path`` atomically."""
    parts = getattr(model, "parts", None)
    if not isinstance(parts, dict) or not parts:
        raise ValueError(f"model must carry its trained parts (a non-empty dict 'parts'), got {type(model).__name__}")
    payload = {"estimator": name, "meta": meta or {},
               "parts": {k: {"spec": _spec(net), "state_dict": {n: v.detach().cpu() for n, v in net.state_dict().items()}}
                         for k, net in parts.items()}}
    return atomic_torch_save(payload, path)


def load_fitted(path: str | Path, name: str, meta: dict[str, Any] | None = None) -> Any | None:
    """The model saved in ``path`` by estimator ``name``, assembled by that estimator; None when the
    file is absent or damaged (warned and removed): unreadable, or parts that do not build (a missing
    or misshapen weight, a missing spec, an unexpected part). Raises ValueError when the file was written by
    another estimator or, if ``meta`` is given, with metadata that lacks or differs in one of its
    items (another key; a file may record more items than asked for)."""
    payload = load_torch_cache(path)
    if payload is None:
        return None
    if not isinstance(payload, dict) or not {"estimator", "parts"} <= payload.keys():
        raise ValueError(f"ratio model file {path} must hold 'estimator' and 'parts'; delete it or choose another run folder")
    if payload.get("estimator") != name or (meta is not None and not _holds(payload.get("meta"), meta)):
        raise ValueError(f"ratio model file {path} was written for another estimator or key (estimator "
                         f"{payload.get('estimator')!r}, meta {payload.get('meta')!r}; asked for {name!r}, meta {meta!r}); "
                         f"delete it or choose another run folder")
    try:
        parts = {}
        for k, saved in payload["parts"].items():
            net = _build(saved["spec"])
            net.load_state_dict(saved["state_dict"])
            parts[k] = net
        return get_estimator(name).assemble(parts)
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as exc:  # parts that do not build
        discard_damaged(Path(path), f"its parts do not build: {type(exc).__name__}: {exc}")
        return None


def _holds(saved: Any, meta: dict[str, Any]) -> bool:
    """Whether a saved file's ``saved`` meta holds every item of ``meta`` with an equal value of the
    same type (a tensor or other odd value written by hand compares unequal instead of raising)."""
    if not isinstance(saved, dict):
        return False
    for k, v in meta.items():
        if k not in saved or type(saved[k]) is not type(v):
            return False
        try:
            if not bool(saved[k] == v):
                return False
        except (RuntimeError, TypeError, ValueError):
            return False
    return True


def _check_meta(meta: Any, where: str = "meta") -> None:
    """Raise ValueError unless ``meta`` is plain data that a saved file gives back equal: dicts with
    str keys, lists, tuples, str, int, bool, None and finite floats (a Path or numpy scalar fails the
    tensors-only reload, so the file would be refitted on every run; NaN never equals itself, so the
    key would never match)."""
    if isinstance(meta, dict):
        for k, v in meta.items():
            if not isinstance(k, str):
                raise ValueError(f"{where} keys must be str, got {k!r}")
            _check_meta(v, f"{where}[{k!r}]")
    elif isinstance(meta, (list, tuple)):
        for j, v in enumerate(meta):
            _check_meta(v, f"{where}[{j}]")
    elif isinstance(meta, float):
        if not math.isfinite(meta):
            raise ValueError(f"{where} must be a finite float (a saved key must equal itself), got {meta!r}")
    elif meta is not None and type(meta) not in (str, int, bool):
        raise ValueError(f"{where} must be plain data (dict, list, tuple, str, int, float, bool, None), "
                         f"got {type(meta).__name__} {meta!r}")


class FitOrLoad(NamedTuple):
    """What :func:`fit_or_load` returns: the ratio ``model`` and whether it was ``trained`` now
    (False: reloaded from its file)."""

    model: Any
    trained: bool


def fit_or_load(name: str, path: str | Path | None, meta: dict[str, Any], source: torch.Tensor, target: torch.Tensor,
                budget: EstimatorBudget, *, schedule: Schedule, vocab_size: int, mask_id: int | None = None,
                denoiser: DenoiserFn | None = None, seed: int = 0, device: torch.device | str = "cpu") -> FitOrLoad:
    """The ratio model of estimator ``name`` saved in ``path`` with ``meta`` (the caller's key),
    else fitted by ``get_estimator(name).fit(source [N_s, L], target [N_t, L], budget, ...)`` and
    saved there (``path`` None: fitted, nothing read or written). ``denoiser`` (z, t -> log p(x^i =
    v | z) [B, L, K]) is handed only to an estimator that needs it; a fit trains on ``device`` (a
    reloaded model is on the CPU: :func:`on_device` moves it). A damaged file is warned about,
    removed and refitted (:func:`load_fitted`). Raises ValueError (one line) for an unknown
    estimator, bad samples, a missing denoiser, ``meta`` that is not plain data (dicts with str keys,
    lists, tuples, str, int, bool, None, finite floats: what a saved file gives back equal) or a
    ``path`` where no file can be saved (a folder, or under a file), before any training, and for a
    file written under another estimator or ``meta``."""
    fitter = get_estimator(name)
    check_device("device", device)  # whether or not a saved fit is there
    if not isinstance(meta, dict) or not meta:
        raise ValueError(f"meta must be a non-empty dict (the caller's key: an empty one would match any saved "
                         f"file), got {meta!r}" if isinstance(meta, dict) else
                         f"meta must be a dict (the caller's key), got {type(meta).__name__}")
    _check_meta(meta)
    model = None if path is None else load_fitted(path, name, meta)
    if model is not None:
        return FitOrLoad(model, False)
    if path is not None:
        check_output_file("path", path)  # before training: a fit that cannot be saved is lost
    model = fitter.fit(source, target, budget, schedule=schedule, vocab_size=vocab_size, mask_id=mask_id,
                       denoiser=denoiser if fitter.needs_denoiser else None, seed=seed, device=device)
    if path is not None:
        save_fitted(model, name, path, meta)
    return FitOrLoad(model, True)


def on_device(model: Any, device: torch.device | str) -> Any:
    """``model`` (fitted by a registered estimator: it has ``name`` and ``parts``) with copies of its
    parts on ``device``, assembled by its estimator; ``model`` itself when its parts are there already
    (the original stays where it is) or when it is no fitted model (an exact oracle, None); a
    ``device`` this machine lacks raises ValueError as in :meth:`RatioEstimator.fit`. A
    wrapper of a fitted model that has its own ``on_device(device)`` method (the language
    pipeline's mask mapping) moves itself: reassembling its parts would drop the wrapper."""
    device = check_device("device", device)
    move = getattr(type(model), "on_device", None)
    if callable(move):
        return move(model, device)
    parts = getattr(model, "parts", None)
    if not isinstance(parts, dict):
        return model
    if all(p.device == torch.device(device) for net in parts.values() for p in net.parameters()):
        return model
    return get_estimator(model.name).assemble({k: copy.deepcopy(net).to(device) for k, net in parts.items()})


__all__ = ["FitOrLoad", "fit_or_load", "load_fitted", "on_device", "save_fitted"]
