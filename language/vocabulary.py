"""Model vocabularies: model ids <-> tokenizer ids (the tokenizer's own ids, or the ids observed in
the training segments renumbered, with the mask after them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch




@dataclass
class Vocabulary:
    """Model ids <-> tokenizer ids.

    ``full``: model ids are the tokenizer's ids (K = tokenizer vocabulary, mask = its [MASK], inside
    0..K-1, so ``num_embeddings = K``). ``observed``: the ``token_ids`` kept from the training
    segments renumbered 0..V-1 (sorted), mask id V, ``num_embeddings = V + 1``; a tokenizer id
    outside them reads as [UNK] when ``unk_id`` (a tokenizer id among ``token_ids``) is set."""

    kind: str
    tokenizer_size: int
    tokenizer_mask_id: int
    token_ids: torch.Tensor | None = None  # [V] tokenizer id of each model id (observed)
    unk_id: int | None = None
    min_count: int = 1
    coverage: float = 1.0  # share of training tokens inside the kept ids

    @property
    def size(self) -> int:
        return self.tokenizer_size if self.token_ids is None else int(self.token_ids.numel())

    @property
    def mask_id(self) -> int:
        return self.tokenizer_mask_id if self.token_ids is None else self.size

    @property
    def num_embeddings(self) -> int:
        return self.size if self.mask_id < self.size else self.mask_id + 1

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(model ids, rows kept): ids outside the vocabulary read as [UNK] when it is set;
        otherwise rows holding one are dropped."""
        if self.token_ids is None:
            return tokens.clone(), torch.ones(tokens.shape[0], dtype=torch.bool)
        fill = -1
        if self.unk_id is not None:
            fill = int((self.token_ids == self.unk_id).nonzero()[0, 0])
        lookup = torch.full((self.tokenizer_size,), fill, dtype=torch.long)
        lookup[self.token_ids] = torch.arange(self.size)
        mapped = lookup[tokens]
        keep = (mapped >= 0).all(dim=1)
        return mapped[keep], keep

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokenizer ids of model ids (a leftover mask becomes the tokenizer's [MASK])."""
        tokens = tokens.detach().cpu().long()
        if self.token_ids is None:
            return tokens
        table = torch.cat([self.token_ids, torch.tensor([self.tokenizer_mask_id])])
        return table[tokens.clamp(0, self.size)]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": self.size, "mask_id": self.mask_id, "num_embeddings": self.num_embeddings,
                "tokenizer_size": self.tokenizer_size, "tokenizer_mask_id": self.tokenizer_mask_id,
                "min_count": self.min_count, "unk_id": self.unk_id, "coverage": self.coverage}


def observed_vocabulary(train_rows: list[torch.Tensor], tokenizer_size: int, mask_id: int, unk_id: int | None,
                        min_count: int = 1) -> Vocabulary:
    """The ids seen at least ``min_count`` times in ``train_rows`` (the mask excluded; [UNK] always
    kept when the tokenizer has one and ``min_count`` > 1)."""
    counts = torch.zeros(tokenizer_size, dtype=torch.long)
    for rows in train_rows:
        counts += torch.bincount(rows.flatten(), minlength=tokenizer_size)
    keep = counts >= min_count
    keep[mask_id] = False
    if min_count > 1:
        if unk_id is None:
            raise ValueError("data.min_count > 1 needs a tokenizer with an [UNK] token")
        keep[unk_id] = True
    ids = keep.nonzero().flatten()
    coverage = float(counts[keep].sum() / counts.sum().clamp_min(1))
    use_unk = unk_id if (unk_id is not None and bool(keep[unk_id])) else None
    return Vocabulary("observed", tokenizer_size, mask_id, ids, use_unk, min_count, coverage)
