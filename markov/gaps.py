"""Transition-power tables and the gap formula: exact Markov-chain posteriors by row gathers.

Given a partly masked z [B, L], the masked positions between two observed tokens depend on
nothing else (Markov property; THEORY.md section 6). Call the *anchors* of position i the
last observed position j <= i and the first observed k >= i, with a virtual start j = -1
(token START) and end k = L (token END) where there is none. Then, exactly,

    p(x^i = v | z) = G_{i-j}(z^j, v) G_{k-i}(v, z^k) / G_{k-j}(z^j, z^k),
    P_obs(z)       = prod over consecutive anchors j < k of G_{k-j}(z^j, z^k),

with G_d(u, w) = S^d(u, w) for tokens u, w, G_d(START, w) = (pi S^{d-1})(w) and G_d(., END) = 1.
(At an observed i, j = k = i and the formula gives the one-hot row: G_0 = I.) This is the
forward-backward recursion with its messages read off precomputed powers: for observed
positions the messages are one-hot, so the whole pass collapses to gathers.

:class:`TransitionPowers` holds log G_d for d = 0..D as two row tables (left factor G_{i-j}(u, .)
and right factor G_{k-i}(., w)), grown on demand and cached per device. Powers are computed by
plain float64 matmuls (``log_space=False``), which is exact up to round-off as long as no
positive entry underflows, or by log-space matrix products (logsumexp; ``log_space=True``),
which keep exact zeros as -inf and any tiny probability as a finite log. ``log_space=None``
uses the matmul path and switches to the log-space path once a transition probability lies
below 1e-20 or a computed power entry below 1e-280 (where underflow could lose a term).

:func:`gap_index` turns z into row indices into those tables; the work per call is then
O(B L K) memory traffic, independent of K^2.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .chain import DTYPE

SMALLEST_TRANSITION = 1e-20  # below this a product of a kept power entry and S may underflow
SMALLEST_POWER = 1e-280  # a positive power entry below this may have lost underflowed terms
CHUNK_POSITIONS = 8192  # positions per batch chunk: index arrays and gather temporaries stay in cache


@dataclass(frozen=True)
class GapIndex:
    """Row indices of a batch into :class:`TransitionPowers` tables (all int64, flattened over [B, L]).

    ``left`` and ``right`` index rows of the left/right tables (row 0 is all zeros: log 1);
    ``norm`` indexes the flattened left table at log G_{k-j}(z^j, z^k) (0 where k is END);
    ``step`` [B, L] indexes the flattened left table at log G_{k-j}(z^j, z^k) for each observed
    k and its previous anchor j (0 elsewhere), so log P_obs = sum over positions;
    ``observed`` [B, L] is z != mask; ``max_distance`` is the largest d used.
    """

    left: torch.Tensor
    right: torch.Tensor
    norm: torch.Tensor
    step: torch.Tensor
    observed: torch.Tensor
    max_distance: int


def table_row(distance: torch.Tensor, token: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Row of (d, token) in a table laid out as 1 + d (K + 1) + token (token K = START/END)."""
    return 1 + distance * (vocab_size + 1) + token


def gap_index(z: torch.Tensor, mask_id: int, vocab_size: int) -> GapIndex:
    """Anchors of every position of z [B, L] (tokens 0..K-1 or ``mask_id``) as table indices.

    O(B L) integer work: a running max/min over positions finds the anchors.
    """
    batch, length = z.shape
    k = vocab_size
    observed = z != mask_id
    pos = torch.arange(length, device=z.device).expand(batch, length)
    left = torch.where(observed, pos, -1).cummax(1).values  # last observed <= i, -1 = START
    right = torch.where(observed, pos, length).flip(1).cummin(1).values.flip(1)  # first >= i, L = END
    tokens = torch.where(observed, z, k)
    left_tok = tokens.gather(1, left.clamp(min=0)).masked_fill_(left < 0, k)
    has_right = right < length
    right_tok = tokens.gather(1, right.clamp(max=length - 1))
    left_row = table_row(pos - left, left_tok, k)
    right_row = torch.where(has_right, table_row(right - pos, right_tok, k), 0)
    gap_row = table_row(right - left, left_tok, k)
    norm = torch.where(has_right, gap_row * k + right_tok, 0)
    # log P_obs: at each observed k the factor G_{k-j}(z^j, z^k), j the previous anchor
    prev = torch.nn.functional.pad(left[:, :-1], (1, 0), value=-1)
    prev_tok = torch.nn.functional.pad(left_tok[:, :-1], (1, 0), value=k)
    step = torch.where(observed, table_row(pos - prev, prev_tok, k) * k + tokens, 0)
    reach = torch.where(has_right, right, pos) - left
    max_distance = int(reach.max()) if reach.numel() else 0
    return GapIndex(left_row.reshape(-1), right_row.reshape(-1), norm.reshape(-1), step, observed, max_distance)


def gap_chunks(z: torch.Tensor, mask_id: int, vocab_size: int) -> Iterator[tuple[slice, GapIndex]]:
    """:func:`gap_index` of consecutive batch chunks of z [B, L] (about CHUNK_POSITIONS positions each)."""
    z = z.long()
    step = max(1, CHUNK_POSITIONS // max(1, z.shape[1]))
    for start in range(0, z.shape[0], step):
        yield slice(start, start + step), gap_index(z[start : start + step], mask_id, vocab_size)


def gather_combine(out: torch.Tensor, first: torch.Tensor, first_rows: torch.Tensor, second: torch.Tensor,
                   second_rows: torch.Tensor, per_row: torch.Tensor, product: bool) -> None:
    """out [n, K] <- first[first_rows] + second[second_rows] + per_row[:, None] (or the product of the three)."""
    torch.index_select(first, 0, first_rows, out=out)
    if product:
        out.mul_(second.index_select(0, second_rows)).mul_(per_row[:, None])
    else:
        out.add_(second.index_select(0, second_rows)).add_(per_row[:, None])


def log_obs(index: GapIndex, left: torch.Tensor) -> torch.Tensor:
    """log P_obs [B] of a chunk: the sum of log G_{k-j}(z^j, z^k) over consecutive anchors."""
    return left.view(-1)[index.step].sum(-1)


def _log_matmul(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """log(exp(log_a) @ exp(log_b)) by logsumexp over the inner index (exact zeros stay -inf)."""
    return torch.logsumexp(log_a[:, :, None] + log_b[None, :, :], dim=1)


class TransitionPowers:
    """log G_d tables of one chain (pi [K], S [K, K] float64) on one device, for d = 0..D.

    ``left`` [1 + (D+1)(K+1), K]: row 1 + d(K+1) + u holds log S^d(u, .) for u < K and
    log (pi S^{d-1})(.) for u = K (START; -inf at d = 0). ``right`` (same shape): row
    1 + d(K+1) + w holds log S^d(., w) for w < K (rows for w = K are unused zeros). Row 0 of
    both is zeros. Call :meth:`tables` with the largest distance needed; the cache grows by
    doubling. ``log_space`` as in the module docstring (None: automatic).
    """

    def __init__(self, initial: torch.Tensor, transition: torch.Tensor, log_space: bool | None = None) -> None:
        self.initial, self.transition = initial, transition
        positive = torch.cat([initial[initial > 0], transition[transition > 0]])
        tiny = bool((positive < SMALLEST_TRANSITION).any())
        self.log_space = tiny if log_space is None else bool(log_space)
        self._automatic = log_space is None
        self._blocks = self._first_blocks()  # [D+1, K+1, K]: rows u < K: G_d(u, .), row K: G_d(START, .)
        self._left = self._right = self._linear = None

    @property
    def max_distance(self) -> int:
        return self._blocks.shape[0] - 1

    def _first_blocks(self) -> torch.Tensor:
        k = self.transition.shape[0]
        eye = torch.eye(k, dtype=DTYPE, device=self.transition.device)
        zero0 = torch.cat([eye, torch.zeros(1, k, dtype=DTYPE, device=eye.device)])
        one = torch.cat([self.transition, self.initial[None]])
        blocks = torch.stack([zero0, one])
        return blocks.log() if self.log_space else blocks

    def _grow(self, max_distance: int) -> None:
        """Extend the powers to max_distance by G_d = G_{d-1} S (both block rows at once)."""
        d_now = self.max_distance
        new = [self._blocks]
        last = self._blocks[-1]
        log_s = self.transition.log() if self.log_space else None
        for _ in range(d_now, max_distance):
            last = _log_matmul(last, log_s) if self.log_space else last @ self.transition
            new.append(last[None])
        self._blocks = torch.cat(new)
        if not self.log_space and self._automatic:
            positive = self._blocks[self._blocks > 0]
            if positive.numel() and float(positive.min()) < SMALLEST_POWER:
                self.log_space = True  # underflow possible: recompute everything in log space
                self._blocks = self._first_blocks()
                self._grow(max_distance)
        self._left = self._right = self._linear = None

    @staticmethod
    def _layout(blocks: torch.Tensor, one: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(left, right) row tables of G_d blocks [D+1, K+1, K]; ``one`` is 1 in the table's units (0 for logs)."""
        k = blocks.shape[-1]
        row0 = torch.full((1, k), one, dtype=DTYPE, device=blocks.device)
        right = torch.cat([blocks[:, :k].transpose(1, 2), torch.full_like(blocks[:, :1], one)], dim=1)
        return torch.cat([row0, blocks.reshape(-1, k)]), torch.cat([row0, right.reshape(-1, k)])

    def tables(self, max_distance: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(left, right) log tables covering distances 0..>= max_distance."""
        if max_distance > self.max_distance:
            self._grow(max(max_distance, 2 * self.max_distance))
        if self._left is None:
            self._left, self._right = self._layout(self._blocks if self.log_space else self._blocks.log(), 0.0)
        return self._left, self._right

    def linear_tables(self, max_distance: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(left, right) tables of G_d itself (row 0 ones); matmul path only (ValueError on the log-space path)."""
        self.tables(max_distance)
        if self.log_space:
            raise ValueError("linear_tables needs the matmul path, but this chain's powers are in log space")
        if self._linear is None:
            self._linear = self._layout(self._blocks, 1.0)
        return self._linear
