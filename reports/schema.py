"""Reading and checking results envelopes before any report is written.

A results file is ``{"kind": str, "meta": {...}, "results": {...}}`` (see
:func:`gtl_verify.provenance.write_results`). Every field a report uses is checked here, so that a
malformed file ends with one clear line naming the file and the field, e.g.

    results file runs/a.json: results.cells[3].metrics.transition_kl must be a number, got 'abc'
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gtl_verify.provenance import read_results


class ResultsError(ValueError):
    """A results file that cannot be rendered; the message names the file and the field."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_envelope(path: str | Path) -> dict[str, Any]:
    """Read a results envelope and check its three top-level fields.

    Raises FileNotFoundError for a missing file and :class:`ResultsError` (a ValueError) naming the
    file for invalid JSON, a missing key, or a field of the wrong type.
    """
    path = Path(path)
    try:
        data = read_results(path)
    except UnicodeDecodeError as exc:  # a ValueError too, but its message does not name the file
        raise ResultsError(f"results file {path} is not UTF-8 text: {exc.reason}") from None
    except ValueError as exc:
        raise ResultsError(" ".join(str(exc).split())) from None
    if not isinstance(data["kind"], str) or not data["kind"]:
        raise ResultsError(f"results file {path}: 'kind' must be a non-empty string, got {_show(data['kind'])}")
    if not isinstance(data["meta"], dict):
        raise ResultsError(f"results file {path}: 'meta' must be an object, got {_show(data['meta'])}")
    if not isinstance(data["results"], dict):
        raise ResultsError(f"results file {path}: 'results' must be an object, got {_show(data['results'])}")
    return data


# --- field accessors; ``where`` is the dotted path of the object inside the envelope -------------


def field(obj: dict[str, Any], key: str, where: str, *, required: bool = True, default: Any = None) -> Any:
    """``obj[key]``; a missing required key raises ResultsError naming ``where.key``."""
    if not isinstance(obj, dict):
        raise ResultsError(f"{where} must be an object, got {_show(obj)}")
    if key not in obj:
        if required:
            raise ResultsError(f"{where} is missing key '{key}'")
        return default
    return obj[key]


def number(obj: dict[str, Any], key: str, where: str, *, nullable: bool = False) -> float | None:
    """A real number (int or float, not bool; NaN allowed); missing or null gives None only when ``nullable``."""
    value = field(obj, key, where, required=not nullable, default=None)
    if value is None:
        if nullable:
            return None
        raise ResultsError(f"{where}.{key} must be a number, got null")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResultsError(f"{where}.{key} must be a number, got {_show(value)}")
    return float(value)


def integer(obj: dict[str, Any], key: str, where: str) -> int:
    """An integer (an integral float such as 100.0 is accepted)."""
    value = field(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not (math.isfinite(value) and value.is_integer())):
        raise ResultsError(f"{where}.{key} must be an integer, got {_show(value)}")
    return int(value)


def text(obj: dict[str, Any], key: str, where: str, *, required: bool = True, default: str = "") -> str:
    """A string."""
    value = field(obj, key, where, required=required, default=default)
    if not isinstance(value, str):
        raise ResultsError(f"{where}.{key} must be a string, got {_show(value)}")
    return value


def label(obj: dict[str, Any], key: str, where: str) -> str | int | float:
    """A category value: a string or a number (settings, series names, x values)."""
    value = field(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ResultsError(f"{where}.{key} must be a string or a number, got {_show(value)}")
    return value


def boolean(obj: dict[str, Any], key: str, where: str) -> bool:
    value = field(obj, key, where)
    if not isinstance(value, bool):
        raise ResultsError(f"{where}.{key} must be true or false, got {_show(value)}")
    return value


def records(obj: dict[str, Any], key: str, where: str, *, required: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """A list of objects (missing or null -> empty when not required) as ``(where[i], item)`` pairs."""
    value = field(obj, key, where, required=required, default=None)
    if value is None:
        if required:
            raise ResultsError(f"{where}.{key} must be a list, got null")
        return []
    if not isinstance(value, list):
        raise ResultsError(f"{where}.{key} must be a list, got {_show(value)}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ResultsError(f"{where}.{key}[{i}] must be an object, got {_show(item)}")
        out.append((f"{where}.{key}[{i}]", item))
    return out


def mapping(obj: dict[str, Any], key: str, where: str, *, required: bool = False) -> dict[str, Any]:
    """An object (missing or null -> empty when not required)."""
    value = field(obj, key, where, required=required, default=None)
    if value is None:
        if required:
            raise ResultsError(f"{where}.{key} must be an object, got null")
        return {}
    if not isinstance(value, dict):
        raise ResultsError(f"{where}.{key} must be an object, got {_show(value)}")
    return value


def matrix(obj: dict[str, Any], key: str, where: str, *, nullable: bool = False, size: int | None = None) -> list[list[float]] | None:
    """A square matrix of numbers given as a list of rows; ``size`` fixes the side when given."""
    value = field(obj, key, where, required=not nullable, default=None)
    if value is None:
        if nullable:
            return None
        raise ResultsError(f"{where}.{key} must be a matrix, got null")
    bad = ResultsError(f"{where}.{key} must be a square matrix (list of equal-length rows of numbers), got {_show(value)}")
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise bad
    side = len(value)
    if any(len(row) != side for row in value):
        raise bad
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) for row in value for x in row):
        raise bad
    if size is not None and side != size:
        raise ResultsError(f"{where}.{key} must be {size} x {size}, got {side} x {side}")
    return [[float(x) for x in row] for row in value]
