"""Fixed-length token segments from abstracts, and decoding back to text.

Packing: every abstract ``a_i`` is tokenised without special tokens and wrapped as
``[CLS] a_i [SEP]``; the wrapped abstracts are concatenated in order into one stream
``s = [CLS] a_1 [SEP] [CLS] a_2 [SEP] ...`` which is cut into ``N = floor(|s| / length)``
rows of ``length`` tokens (the ragged tail is dropped), so no padding is ever needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from gtl_verify.validation import check_int_range

from .tokenizer import tokenizer_info

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

MIN_SEGMENT_LENGTH = 4


def _check_plain(tokenizer: "Tokenizer") -> None:
    if tokenizer.padding is not None:
        raise ValueError("tokenizer has padding enabled; call tokenizer.no_padding() before packing")
    if tokenizer.truncation is not None:
        raise ValueError("tokenizer has truncation enabled; call tokenizer.no_truncation() before packing")


def token_stream(
    texts: Sequence[str], tokenizer: "Tokenizer", batch_size: int = 4096, progress: bool = False
) -> np.ndarray:
    """The int64 stream ``[CLS] a_1 [SEP] [CLS] a_2 [SEP] ...``; texts with no tokens are left out."""
    batch_size = check_int_range("batch_size", batch_size, 1)
    _check_plain(tokenizer)
    info = tokenizer_info(tokenizer)
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] must be a string, got {type(text).__name__}")
    # encode_batch_fast (tokenizers >= 0.20) skips the character offsets, which packing never uses
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    pieces: list[np.ndarray] = []
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="tokenising", unit="batch", disable=not progress):
        encodings = encode(texts[start : start + batch_size], add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        lengths = lengths[lengths > 0]
        out = np.empty(int(lengths.sum() + 2 * len(lengths)), dtype=np.int64)
        pos = 0
        for enc in encodings:
            ids = enc.ids
            if not ids:
                continue
            out[pos] = info.cls_id
            out[pos + 1 : pos + 1 + len(ids)] = ids
            out[pos + 1 + len(ids)] = info.sep_id
            pos += len(ids) + 2
        pieces.append(out)
    return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)


def pack_segments(
    texts: Sequence[str],
    tokenizer: "Tokenizer",
    length: int,
    batch_size: int = 4096,
    progress: bool = False,
) -> torch.Tensor:
    """LongTensor ``[N, length]`` of packed segments (see the module docstring).

    Raises ValueError when ``length < 4`` or when the texts give fewer than ``length`` tokens.
    """
    length = check_int_range("length", length, MIN_SEGMENT_LENGTH)
    stream = token_stream(texts, tokenizer, batch_size=batch_size, progress=progress)
    n = stream.size // length
    if n == 0:
        raise ValueError(
            f"the texts give {stream.size} tokens with [CLS]/[SEP], fewer than one segment of length {length}"
        )
    return torch.from_numpy(stream[: n * length].reshape(n, length).copy())


def decode(tokens: torch.Tensor | Sequence[int] | Sequence[Sequence[int]], tokenizer: "Tokenizer") -> str | list[str]:
    """Text of a token sequence ``[L]`` (a string) or of a batch ``[B, L]`` (a list of strings),
    special tokens ([CLS], [SEP], [PAD], [MASK]) skipped."""
    if torch.is_tensor(tokens):
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise ValueError(f"tokens must be an integer tensor, got {tokens.dtype}")
        if tokens.dim() not in (1, 2):
            raise ValueError(f"tokens must have shape (length,) or (batch, length), got {tuple(tokens.shape)}")
        single = tokens.dim() == 1
        rows = tokens.detach().cpu().to(torch.int64).tolist()
    else:
        rows = list(tokens)
        single = not rows or isinstance(rows[0], (int, np.integer))
    batch = [rows] if single else [list(r) for r in rows]
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    clean: list[list[int]] = []
    for b, row in enumerate(batch):
        row = [int(t) for t in row]
        bad = [t for t in row if t < 0 or t >= vocab]
        if bad:
            raise ValueError(f"tokens row {b} has an id outside 0..{vocab - 1}: {bad[0]}")
        clean.append(row)
    texts = tokenizer.decode_batch(clean, skip_special_tokens=True)
    return texts[0] if single else texts
