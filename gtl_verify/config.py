"""Settings files of the suite: one TOML loader and the setting types shared by every application.

A settings file is TOML whose tables map onto frozen dataclasses. :func:`build` checks a table
against its dataclass before anything runs: unknown keys, the type of every value (read from the
field annotations: ``int``, ``float``, ``str``, ``bool``, ``X | None``, ``tuple[X, ...]`` and
nested dataclasses, which read as tables) and the ranges checked by each dataclass's
``__post_init__``. Every error is a one-line :class:`ConfigError` naming the dotted key
(``training.source.steps``) and its value. Values keep their TOML type (an integer written for a
real stays an integer), so a configuration's hash does not change with the loader.

Shared settings: :class:`NetSize` (backbone sizes of one network) and :class:`Budget` (AdamW
budget of one learned component).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from .training import TrainConfig
from .validation import check_int_range, check_real_range

T = TypeVar("T")
POSITIONS = ("rotary", "learned")


class ConfigError(ValueError):
    """A settings value or file that cannot be used; the message names the dotted key and value."""


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_type(name: str, value: Any, annotation: Any) -> Any:
    """``value`` checked against a field annotation (lists become tuples); ConfigError otherwise."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return check_type(name, value, inner[0]) if len(inner) == 1 else value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {_short(value)}")
        item = args[0] if args else Any
        return tuple(check_type(f"{name}[{i}]", v, item) for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {_short(value)}")
    elif annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {_short(value)}")
    elif annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a real number, got {_short(value)}")
    elif annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {_short(value)}")
    return value


def check_sequence(name: str, value: Any, allow_empty: bool = False) -> tuple:
    """``value`` as a tuple; ConfigError unless it is a list or tuple (non-empty unless ``allow_empty``)."""
    if not isinstance(value, (tuple, list)):
        raise ConfigError(f"{name} must be a list, got {_short(value)}")
    if not value and not allow_empty:
        raise ConfigError(f"{name} must hold at least one value, got []")
    return tuple(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` unless it is not one of ``choices``; ConfigError naming both otherwise."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {_short(value)}")
    return value


def _dotted(where: str, message: str, names: set[str]) -> str:
    """A nested dataclass's error message with its key made dotted (``steps ...`` ->
    ``training.source.steps ...``)."""
    if where == "config" or message.startswith(where):
        return message
    head = message.split(" ", 1)[0].split("[", 1)[0]
    return f"{where}.{message}" if head in names else f"{where}: {message}"


def build(base: T, data: Any, where: str = "config") -> T:
    """``base`` (a dataclass instance) with the keys of the table ``data`` replaced, every value
    type-checked, nested tables building nested dataclasses, then range-checked by the
    dataclasses' ``__post_init__``. Raises ConfigError naming the dotted key and its value."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table, got {_short(data)}")
    hints = typing.get_type_hints(type(base))
    known = {f.name for f in fields(base)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(known)}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key if where == "config" else f"{where}.{key}"
        current = getattr(base, key)
        out[key] = build(current, value, name) if is_dataclass(current) else check_type(name, value, hints[key])
    try:
        return replace(base, **out)
    except (ValueError, TypeError) as exc:
        raise ConfigError(_dotted(where, str(exc), known)) from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """The table of a TOML file; FileNotFoundError / ConfigError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text: {exc}") from None


def load(base: T, path: str | Path | None = None, **overrides: Any) -> T:
    """``base`` updated by the TOML file ``path`` (if given) and then by the top-level
    ``overrides`` (None values ignored), all checked by :func:`build`."""
    config = base if path is None else build(base, read_toml(path))
    given = {k: v for k, v in overrides.items() if v is not None}
    return build(config, given) if given else config


def as_dict(config: Any) -> dict[str, Any]:
    """A (nested) settings dataclass as a plain dict, as recorded in results and hashed."""
    return dataclasses.asdict(config)


@dataclass(frozen=True)
class NetSize:
    """Backbone sizes of one network (see :class:`gtl_verify.networks.BackboneConfig`): width
    ``hidden``, ``blocks`` transformer blocks of ``heads`` heads, conditioning size ``cond``, MLP
    width ratio, dropout and position encoding (``rotary`` or ``learned``)."""

    hidden: int = 64
    blocks: int = 2
    heads: int = 4
    cond: int = 32
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    positions: str = "rotary"

    def __post_init__(self) -> None:
        check_int_range("hidden", self.hidden, 2)
        check_int_range("blocks", self.blocks, 0)
        check_int_range("heads", self.heads, 1)
        check_int_range("cond", self.cond, 2)
        check_real_range("mlp_ratio", self.mlp_ratio, 0.0, open_low=True)
        d = check_real_range("dropout", self.dropout, 0.0, 1.0)
        if d >= 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden must be divisible by heads={self.heads}, got hidden={self.hidden}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {list(POSITIONS)}, got {self.positions!r}")
        if self.positions == "rotary" and (self.hidden // self.heads) % 2:
            raise ValueError(f"hidden: rotary positions need an even head size hidden/heads, "
                             f"got hidden={self.hidden}, heads={self.heads}")


@dataclass(frozen=True)
class Budget:
    """AdamW budget of one learned component: ``steps`` of ``batch_size`` rows at learning rate
    ``lr`` (linear warm-up over ``warmup`` steps, then constant or cosine decay to ``lr_floor`` of
    the peak: ``lr_schedule``, :func:`gtl_verify.training.lr_factor`; gradient norm clipped to
    ``grad_clip``, weight EMA ``ema``; 0 = none)."""

    steps: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 0
    grad_clip: float = 1.0
    ema: float = 0.0
    lr_schedule: str = "constant"
    lr_floor: float = 0.1

    def __post_init__(self) -> None:
        check_int_range("batch_size", self.batch_size, 2)  # a budget needs 2+ rows (TrainConfig: 1+)
        self.train_config(seed=0)  # TrainConfig checks the other fields

    def train_config(self, seed: int) -> TrainConfig:
        """The :class:`gtl_verify.training.TrainConfig` of this budget with seed ``seed``."""
        return TrainConfig(seed=seed, **dataclasses.asdict(self))


__all__ = ["Budget", "ConfigError", "NetSize", "as_dict", "build", "check_choice", "check_sequence", "check_type", "load",
           "read_toml"]
