"""Seeded training and held-out sequences drawn from a source/target chain pair."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gtl_verify.validation import check_int_range

from .presets import ChainPair

SPLITS = ("source_train", "target_train", "source_heldout", "target_heldout")


@dataclass
class MarkovData:
    """Sequences [n, L] (LongTensors) of the four splits."""

    source_train: torch.Tensor
    target_train: torch.Tensor
    source_heldout: torch.Tensor
    target_heldout: torch.Tensor


def split_generator(seed: int, split: int) -> torch.Generator:
    """An independent CPU generator for split number ``split`` of ``seed`` (NumPy SeedSequence mixing)."""
    seed = check_int_range("seed", seed, 0)
    state = np.random.SeedSequence([seed, split]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def make_data(
    pair: ChainPair, *, n_source: int, n_target: int, length: int, seed: int, n_heldout: int = 1000
) -> MarkovData:
    """Draw n_source/n_target training and n_heldout held-out sequences of each chain.

    Each split has its own generator (see :func:`split_generator`), so changing one size
    leaves the other splits' sequences unchanged.
    """
    n_source = check_int_range("n_source", n_source, 1)
    n_target = check_int_range("n_target", n_target, 1)
    n_heldout = check_int_range("n_heldout", n_heldout, 1)
    length = check_int_range("length", length, 1)
    seed = check_int_range("seed", seed, 0)
    src, tgt = pair.source.to("cpu"), pair.target.to("cpu")
    return MarkovData(
        source_train=src.sample(n_source, length, split_generator(seed, 0)),
        target_train=tgt.sample(n_target, length, split_generator(seed, 1)),
        source_heldout=src.sample(n_heldout, length, split_generator(seed, 2)),
        target_heldout=tgt.sample(n_heldout, length, split_generator(seed, 3)),
    )
