"""User-defined source/target pairs from a file: first-order chains or hidden Markov models, no code.

TOML (``.toml``)::

    name = "my pair"        # optional (default: the file name)
    tolerance = 1e-6        # optional: how far from 1 a row may sum (default 1e-6)

    [source]
    initial = [0.5, 0.5]                    # first-token law pi [K]
    transition = [[0.9, 0.1], [0.2, 0.8]]   # S [K, K], row u = law of the next token after u

    [target]
    initial = [0.5, 0.5]
    transition = [[0.5, 0.5], [0.5, 0.5]]

With ``emission = [[...]]`` [H, K] in a table, that model is a hidden Markov model whose ``initial``
[H] and ``transition`` [H, H] act on H hidden states (a side without emissions is the chain with
identity emissions). NumPy (``.npz``): arrays ``source_initial``, ``source_transition``,
``target_initial``, ``target_transition`` and optionally ``source_emission``, ``target_emission``,
``tolerance`` (a scalar) and ``name``.

TOML files are UTF-8 (a leading BOM is allowed); ``name`` must be a string and every entry an integer
or float (booleans, strings such as ``'0.9'`` and complex numbers are refused). Every law is checked
before use: finite, non-negative, each row summing to 1 within ``tolerance``
(then renormalised in float64), square transitions matching the initial law, the same vocabulary
for source and target. A violation raises ``ValueError`` with one line naming the file, the matrix,
the row and the value, e.g. ``pair.toml: source.transition row 1 sums to 0.98, not 1 (tolerance 1e-06)``.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import torch

from .chain import DTYPE, MarkovChain
from .hmm import HiddenMarkovModel, HMMPair
from .presets import ChainPair

DEFAULT_TOLERANCE = 1e-6
FIELDS = ("initial", "transition", "emission")
SIDES = ("source", "target")


class ChainFileError(ValueError):
    """A chain file that cannot be used; the message is one line naming the file and the fault."""


def _leaf_fault(value) -> object | None:
    """The first entry of a nested list/array that is not a real number (bool, str, complex, table...),
    or None when every entry is an int or float."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iuf":
            return None
        return value.reshape(-1)[0] if value.size else None
    if isinstance(value, (list, tuple)):
        return next((f for f in (_leaf_fault(v) for v in value) if f is not None), None)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return value
    return None


def _matrix(where: str, name: str, value, dims: int) -> np.ndarray:
    """A float64 array with ``dims`` dimensions, or ChainFileError naming it (also for entries that are
    not real numbers: booleans, strings such as '0.9', complex numbers)."""
    fault = _leaf_fault(value)
    if fault is not None:
        kind = f" (dtype {value.dtype})" if isinstance(value, np.ndarray) else ""
        raise ChainFileError(f"{where}: {name} holds {fault!r}{kind}, not a real number")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ChainFileError(f"{where}: {name} is not a rectangular array of numbers") from None
    if array.ndim != dims or 0 in array.shape:
        kind = "a non-empty list of numbers" if dims == 1 else "a non-empty list of equally long rows of numbers"
        raise ChainFileError(f"{where}: {name} must be {kind}, got shape {array.shape}")
    return array


def _check_rows(where: str, name: str, array: np.ndarray, tolerance: float) -> np.ndarray:
    """Finite, non-negative rows summing to 1 within ``tolerance``; returned renormalised."""
    rows = array.reshape(-1, array.shape[-1])
    index = (lambda r, c: f"{name}[{c}]") if array.ndim == 1 else (lambda r, c: f"{name}[{r}][{c}]")
    for r, row in enumerate(rows):
        for c, v in enumerate(row):
            if not np.isfinite(v):
                raise ChainFileError(f"{where}: {index(r, c)} = {v} is not finite")
            if v < 0:
                raise ChainFileError(f"{where}: {index(r, c)} = {v:.6g} is negative")
        total = float(row.sum())
        if abs(total - 1.0) > tolerance:
            label = name if array.ndim == 1 else f"{name} row {r}"
            raise ChainFileError(f"{where}: {label} sums to {total:.10g}, not 1 (tolerance {tolerance:g})")
    return array / array.sum(-1, keepdims=True)


def _model(where: str, side: str, fields: dict, tolerance: float) -> MarkovChain | HiddenMarkovModel:
    for key in ("initial", "transition"):
        if key not in fields:
            raise ChainFileError(f"{where}: {side} has no '{key}'")
    initial = _check_rows(where, f"{side}.initial", _matrix(where, f"{side}.initial", fields["initial"], 1), tolerance)
    transition = _matrix(where, f"{side}.transition", fields["transition"], 2)
    n = initial.shape[0]
    if transition.shape != (n, n):
        raise ChainFileError(f"{where}: {side}.transition has shape {transition.shape}; expected {(n, n)} "
                             f"({side}.initial has {n} entries)")
    transition = _check_rows(where, f"{side}.transition", transition, tolerance)
    if fields.get("emission") is None:
        return MarkovChain(torch.tensor(initial, dtype=DTYPE), torch.tensor(transition, dtype=DTYPE))
    emission = _matrix(where, f"{side}.emission", fields["emission"], 2)
    if emission.shape[0] != n:
        raise ChainFileError(f"{where}: {side}.emission has {emission.shape[0]} rows; expected one per hidden state ({n})")
    emission = _check_rows(where, f"{side}.emission", emission, tolerance)
    return HiddenMarkovModel(*(torch.tensor(a, dtype=DTYPE) for a in (initial, transition, emission)))


def _tolerance(where: str, value) -> float:
    if isinstance(value, (bool, str, np.bool_)):
        raise ChainFileError(f"{where}: tolerance must be a number, got {value!r}")
    try:
        tolerance = float(value)
    except (TypeError, ValueError):
        raise ChainFileError(f"{where}: tolerance must be a number, got {value!r}") from None
    if not (np.isfinite(tolerance) and 0 <= tolerance < 1):
        raise ChainFileError(f"{where}: tolerance must be in [0, 1), got {tolerance}")
    return tolerance


def _read_toml(path: Path) -> tuple[dict, dict]:
    """(top-level settings, {side: fields}) of a TOML chain file (UTF-8, a leading BOM allowed)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ChainFileError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                             "save the chain file as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ChainFileError(f"{path}: invalid TOML: {exc}") from None
    unknown = sorted(set(data) - {"name", "tolerance", *SIDES})
    if unknown:
        raise ChainFileError(f"{path}: unknown key {unknown[0]!r} (expected name, tolerance, [source], [target])")
    sides = {}
    for side in SIDES:
        fields = data.get(side)
        if not isinstance(fields, dict):
            raise ChainFileError(f"{path}: missing table [{side}] with initial and transition")
        extra = sorted(set(fields) - set(FIELDS))
        if extra:
            raise ChainFileError(f"{path}: unknown key {extra[0]!r} in [{side}] (expected {', '.join(FIELDS)})")
        sides[side] = fields
    return data, sides


def _read_npz(path: Path) -> tuple[dict, dict]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as exc:
        raise ChainFileError(f"{path}: not a readable .npz archive: {exc}") from None
    known = {f"{side}_{f}" for side in SIDES for f in FIELDS} | {"name", "tolerance"}
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise ChainFileError(f"{path}: unknown array {unknown[0]!r} (expected <source|target>_<{'|'.join(FIELDS)}>)")
    for key in ("name", "tolerance"):
        if key in arrays and arrays[key].size != 1:
            raise ChainFileError(f"{path}: {key} must be a single value, got an array of shape {arrays[key].shape}")
    settings = {key: arrays[key].item() for key in ("name", "tolerance") if key in arrays}
    return settings, {side: {f: arrays[f"{side}_{f}"] for f in FIELDS if f"{side}_{f}" in arrays} for side in SIDES}


def load_chain_pair(path: str | Path) -> ChainPair | HMMPair:
    """Read and validate a pair file (.toml or .npz; see the module docstring).

    Returns a :class:`~markov.presets.ChainPair` (the type the presets produce) when neither side has
    emissions, else an :class:`~markov.hmm.HMMPair`. Raises :class:`ChainFileError` (a ValueError)
    with one line naming the file and the fault."""
    path = Path(path)
    if not path.is_file():
        raise ChainFileError(f"{path}: " + ("a directory, not a chain file" if path.is_dir() else "no such chain file"))
    readers = {".toml": _read_toml, ".npz": _read_npz}
    if path.suffix not in readers:
        raise ChainFileError(f"{path}: chain files must end in .toml or .npz, got {path.suffix or 'no suffix'!r}")
    settings, sides = readers[path.suffix](path)
    tolerance = _tolerance(str(path), settings.get("tolerance", DEFAULT_TOLERANCE))
    source, target = (_model(str(path), side, sides[side], tolerance) for side in SIDES)
    name = settings.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise ChainFileError(f"{path}: name must be a non-empty string, got {name!r}")
    if source.vocab_size != target.vocab_size:
        raise ChainFileError(f"{path}: the target has {target.vocab_size} tokens and the source {source.vocab_size}; "
                             "both must use the same vocabulary")
    if isinstance(source, MarkovChain) and isinstance(target, MarkovChain):
        return ChainPair(source, target, name)
    as_hmm = lambda m: m if isinstance(m, HiddenMarkovModel) else HiddenMarkovModel.from_chain(m)  # noqa: E731
    return HMMPair(as_hmm(source), as_hmm(target), name)


def _toml_array(value: torch.Tensor) -> str:
    if value.dim() == 1:
        return "[" + ", ".join(repr(float(v)) for v in value) + "]"
    return "[\n" + "".join(f"    {_toml_array(row)},\n" for row in value) + "]"


def save_chain_pair(pair: ChainPair | HMMPair, path: str | Path) -> Path:
    """Write ``pair`` as a chain file (.toml or .npz) that :func:`load_chain_pair` reads back to round-off
    (floats are written with their shortest round-trip representation; loading renormalises rows)."""
    path = Path(path)
    models = {side: getattr(pair, side) for side in SIDES}
    fields = {side: {f: getattr(m, f) for f in FIELDS if hasattr(m, f)} for side, m in models.items()}
    if path.suffix == ".npz":
        arrays = {f"{side}_{f}": v.cpu().numpy() for side in SIDES for f, v in fields[side].items()}
        np.savez(path, name=np.array(pair.name), **arrays)
    elif path.suffix == ".toml":
        text = f"name = {json.dumps(pair.name)}\n"
        for side in SIDES:
            text += f"\n[{side}]\n" + "".join(f"{f} = {_toml_array(v)}\n" for f, v in fields[side].items())
        path.write_text(text)
    else:
        raise ChainFileError(f"{path}: chain files must end in .toml or .npz")
    return path
