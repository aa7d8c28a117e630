"""Input validation shared by the whole suite.

Every check raises ``ValueError`` whose message names the offending parameter and its value,
so that the CLI can print it as a one-line error.
"""

from __future__ import annotations

import math
import operator
import os
import re
import tempfile
from pathlib import Path
from typing import Sequence

import torch

STOCHASTIC_ATOL = 1e-9


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise if ``x`` holds a NaN or an infinity."""
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise ValueError(f"{name} has a non-finite entry at index {bad}: {x[tuple(bad)].item()}")


def check_shape(name: str, x: torch.Tensor, shape: Sequence[int | None]) -> None:
    """Raise unless ``x.shape`` matches ``shape`` (``None`` matches any size)."""
    if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = tuple("*" if s is None else s for s in shape)
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")


def check_probability(name: str, p: torch.Tensor, dim: int = -1, atol: float = STOCHASTIC_ATOL) -> None:
    """Raise unless ``p`` is finite, non-negative and sums to 1 along ``dim``."""
    check_finite(name, p)
    if (p < 0).any():
        idx = (p < 0).nonzero()[0].tolist()
        raise ValueError(f"{name} has a negative entry at index {idx}: {p[tuple(idx)].item()}")
    sums = p.sum(dim=dim)
    err = (sums - 1).abs()
    if (err > atol).any():
        idx = int(err.flatten().argmax())
        raise ValueError(
            f"{name} must sum to 1 along dim {dim} (tolerance {atol}); "
            f"found a sum of {sums.flatten()[idx].item():.12g}"
        )


def check_stochastic_matrix(name: str, m: torch.Tensor, atol: float = STOCHASTIC_ATOL) -> None:
    """Raise unless ``m`` is a square row-stochastic matrix."""
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {tuple(m.shape)}")
    check_probability(name, m, dim=-1, atol=atol)


def check_int_range(name: str, value: int, low: int, high: int | None = None) -> int:
    """Raise unless ``low <= value <= high`` (``high=None``: no upper bound)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {_short(value)}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {_short(value)}") from None
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f"[{low}, inf)"
        raise ValueError(f"{name} must be in {bound}, got {value}")
    return value


def check_real_range(
    name: str, value: float, low: float = -math.inf, high: float = math.inf, *, open_low: bool = False
) -> float:
    """Raise unless ``value`` is a finite real in ``[low, high]`` (``(low, high]`` if ``open_low``).

    NaN and +-inf are always rejected, also when a bound is infinite: every real parameter of the
    suite (gamma, temperatures, drifts, rates) is finite. Strings ("1.0") and booleans are rejected
    too (a number written as text or a flag is a caller's mistake, not a value); so are tensors of
    more than one element. Command-line text is converted by the parser before it gets here.
    """
    if isinstance(value, (bool, str, bytes)) or (torch.is_tensor(value) and value.numel() != 1):
        raise ValueError(f"{name} must be a real number, got {_short(value)}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {_short(value)}") from None
    if not math.isfinite(value) or (open_low and value <= low) or value < low or value > high:
        bound = "a finite real number" if math.isinf(low) and math.isinf(high) else f"in {_real_interval(low, high, open_low)}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _real_interval(low: float, high: float, open_low: bool) -> str:
    """The allowed interval in interval notation; an infinite end is open (the value must be finite)."""
    left = "(" if open_low or math.isinf(low) else "["
    right = ")" if math.isinf(high) else "]"
    return f"{left}{low:g}, {high:g}{right}"


def check_times(s: float, t: float) -> tuple[float, float]:
    """Raise unless ``0 <= s < t <= 1`` (reverse step from time t to the earlier time s)."""
    s = check_real_range("s", s, 0.0, 1.0)
    t = check_real_range("t", t, 0.0, 1.0)
    if not s < t:
        raise ValueError(f"s must be smaller than t, got s={s}, t={t}")
    return s, t


def check_tokens(name: str, z: torch.Tensor, num_states: int) -> None:
    """Raise unless ``z`` is an integer tensor [B, L] with entries in ``0..num_states-1``."""
    if not torch.is_tensor(z) or z.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"{name} must be an integer tensor, got {getattr(z, 'dtype', type(z).__name__)}")
    if z.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, length), got {tuple(z.shape)}")
    if z.numel() and (int(z.min()) < 0 or int(z.max()) >= num_states):
        raise ValueError(
            f"{name} has a token outside 0..{num_states - 1}: min {int(z.min())}, max {int(z.max())}"
        )


def check_mask_id(mask_id: int, vocab_size: int) -> int:
    """The mask id must lie outside the vocabulary ``0..vocab_size-1``."""
    mask_id = int(mask_id)
    if 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id must lie outside the vocabulary 0..{vocab_size - 1}, got {mask_id}")
    return mask_id


def check_device(name: str, value: torch.device | str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (a string or a torch.device; ``cpu:0`` reads as ``cpu``)
    -> torch.device. Raises ValueError naming ``name`` unless the value has that form (N without
    leading zeros, ASCII digits) and the device exists on this machine (CUDA available and N below
    the number of visible GPUs; MPS available), before any work."""
    text = str(value) if isinstance(value, (str, torch.device)) else None
    match = re.fullmatch(r"cpu(?::0)?|cuda(?::(0|[1-9][0-9]*))?|mps", text or "", flags=re.ASCII)
    if not match:
        raise ValueError(f"{name} must be cpu, cuda, cuda:N or mps, got {_short(value if text is None else text)}")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {text}: CUDA is not available here (torch {torch.__version__}, "
                             f"CUDA build {torch.version.cuda or 'none'}); use {name} cpu")
        count = torch.cuda.device_count()
        if int(match[1] or 0) >= count:
            raise ValueError(f"{name} {text}: only {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})")
    if text == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name} mps: MPS is not available here; use {name} cpu")
    return torch.device("cpu" if text.startswith("cpu") else text)  # cpu:0 is the cpu: one device, one name


def check_output_dir(name: str, path: str | Path) -> Path:
    """Create the folder ``path`` (and its parents), write and delete a probe file in it, and remove
    the folders it created (a later error leaves nothing behind); raise ValueError naming the option
    ``name`` when that fails (an existing file, a read-only or virtual file system), so that an
    output folder is known to be writable before any work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {path} exists and is not a folder")
    created = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-"):
            pass
    except OSError as exc:
        raise ValueError(f"{name} {path} is not a writable folder ({exc.strerror or type(exc).__name__})") from None
    finally:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass
    return path


def check_output_file(name: str, path: str | Path) -> Path:
    """Raise ValueError naming the option ``name`` unless the file ``path`` can be written: not an
    existing folder, and its folder writable (checked with :func:`check_output_dir`)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name} {path} is a folder, expected a file path")
    try:
        check_output_dir(name, path.parent)
    except ValueError as exc:
        raise ValueError(f"{name} {path} cannot be written: {str(exc).removeprefix(name + ' ')}") from None
    return path


def available_memory_bytes() -> int:
    """Physical memory of this machine in bytes (os.sysconf; 2**63 - 1 where unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1


def check_sample_memory(name: str, samples: int, length: int, vocab_size: int, copies: int = 4) -> int:
    """Raise ValueError naming ``name`` when drawing ``samples`` sequences of ``length`` needs more
    memory than the machine has. Estimate: ``copies`` float64 tables [samples, length, K + 1] (the
    denoiser's log-probs, its cache, the step law and the density pass), in bytes; returned."""
    estimate = int(samples) * int(length) * (int(vocab_size) + 1) * 8 * int(copies)
    limit = available_memory_bytes()
    if estimate > limit:
        raise ValueError(f"{name} = {samples} needs about {_bytes(estimate)} ({copies} float64 tables of "
                         f"{samples} x {length} x {vocab_size + 1}), more than this machine's {_bytes(limit)} of memory")
    return estimate


def _bytes(n: int) -> str:
    """Bytes in GiB."""
    return f"{n / 2**30:.3g} GiB"
