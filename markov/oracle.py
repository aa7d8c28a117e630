"""Exact denoiser and ratio oracles for Markov chains by forward-backward (THEORY.md section 6).

For a chain (pi, S) and a partly masked z [B, L] (mask id m), with e_i(v) = 1 if z^i = m else
[v = z^i]:

    a_1(v) = pi(v) e_1(v),          a_i(v) = sum_u a_{i-1}(u) S(u, v) e_i(v),
    b_L(u) = 1,                     b_i(u) = sum_v S(u, v) e_{i+1}(v) b_{i+1}(v),
    P_obs(z) = sum_v a_L(v),        p(x^i = v | z) = a_i(v) b_i(v) / P_obs(z).

Marginals, log P_obs and ratios come from the same recursions read off precomputed transition
powers (:mod:`markov.gaps`): observed positions make the messages one-hot, so a_i and b_i at a
masked i are rows of S^d anchored at the nearest observed tokens, and each call is a few row
gathers, O(B L K), with no loop over positions. The powers are computed once per chain and
device by float64 matmuls, or in log space where a probability is small enough to underflow
(``log_space``: None = automatic, True / False = forced).

:meth:`ChainOracle.forward_backward` keeps the explicit scaled recursion (each a_i, b_i divided
by its sum, the forward sums c_i kept so that log P_obs = sum_i log c_i; one [B, K] x [K, K]
product per step) for the pairwise posteriors of :meth:`PairOracle.expected_log_clean_ratio`.

The masked process makes everything independent of the time t (R1, R3), so ``t`` is accepted
and ignored. Pair quantities (source p, target q):

    log r(z)          = log Q_obs(z) - log P_obs(z)
    log r(z^{i<-v})   = log r(z) + log q(x^i = v | z) - log p(x^i = v | z)    (i masked)
    E_{p(x|z)}[log q(x) - log p(x)]
                      = sum_v p(x^1 = v | z) log(pi_q(v)/pi_p(v))
                        + sum_{i>=2} sum_{u,v} p(x^{i-1} = u, x^i = v | z) log(S_q(u, v)/S_p(u, v)).

Convention for 0/0: a ratio whose numerator Q_obs is 0 is reported as r = 0 (log r = -inf),
also when P_obs is 0 too, so that guided logits log p + gamma log r stay -inf where both laws
forbid a token. A sequence impossible under p but possible under q has log r = +inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gtl_verify.validation import check_mask_id, check_tokens

from .chain import DTYPE, MarkovChain
from .gaps import TransitionPowers, gap_chunks, gather_combine
from .gaps import log_obs as gaps_log_obs
from .presets import ChainPair


@dataclass
class ForwardBackward:
    """Scaled messages of one forward-backward pass, batch-major.

    ``emissions`` e, ``forward`` a_hat and ``backward`` b_hat are [B, L, K] (a_hat, b_hat rows sum
    to 1, or are NaN where the observations are impossible); ``log_scales`` [B, L] holds log c_i,
    so log P_obs(z) = sum_i log c_i; ``masked`` [B, L] is z == mask_id.
    """

    emissions: torch.Tensor
    forward: torch.Tensor
    backward: torch.Tensor
    log_scales: torch.Tensor
    masked: torch.Tensor

    @property
    def log_obs(self) -> torch.Tensor:
        """log P_obs(z), [B]."""
        return self.log_scales.sum(-1)

    def marginals(self) -> torch.Tensor:
        """p(x^i = v | z) = a_hat_i(v) b_hat_i(v) / sum_u a_hat_i(u) b_hat_i(u), [B, L, K] (NaN if P_obs(z) = 0)."""
        prod = self.forward * self.backward
        return prod.div_(prod.sum(-1, keepdim=True))


@dataclass
class ChainPosterior:
    """log p(x^i = v | z) [B, L, K] and log P_obs(z) [B]."""

    log_marginals: torch.Tensor
    log_obs: torch.Tensor


class ChainOracle:
    """Exact denoiser of one chain (the :class:`~gtl_verify.protocols.Denoiser` protocol).

    ``oracle(z)`` gives log p(x^i = v | z) [B, L, K] (0 / -inf one-hot rows at unmasked
    positions; NaN rows if P_obs(z) = 0); ``oracle.log_obs(z)`` gives log P_obs(z) [B].
    ``mask_id`` defaults to K. ``log_space`` picks how the transition powers are computed
    (None: matmuls unless an entry could underflow, then logsumexp; True / False: forced).
    Raises ValueError for a chain that is not a MarkovChain or a bad mask_id / log_space.
    """

    def __init__(self, chain: MarkovChain, mask_id: int | None = None, *, log_space: bool | None = None) -> None:
        if not isinstance(chain, MarkovChain):
            raise ValueError(f"chain must be a MarkovChain, got {type(chain).__name__}")
        self.chain = chain
        self.vocab_size = chain.vocab_size
        self.mask_id = check_mask_id(self.vocab_size if mask_id is None else mask_id, self.vocab_size)
        if log_space not in (None, True, False):
            raise ValueError(f"log_space must be None, True or False, got {log_space!r}")
        self._log_space = log_space
        self._params: dict[torch.device, tuple[torch.Tensor, ...]] = {}
        self._tables: dict[torch.device, TransitionPowers] = {}
        self._positive = bool((chain.initial > 0).all() and (chain.transition > 0).all())

    def __repr__(self) -> str:
        return f"ChainOracle(vocab_size={self.vocab_size}, mask_id={self.mask_id})"

    def parameters_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pi, S, S^T, emission table) as float64 tensors on ``device`` (cached).

        The emission table [K+1, K] has the identity in rows 0..K-1 and ones in row K (the mask).
        """
        device = torch.device(device)
        if device not in self._params:
            k = self.vocab_size
            pi = self.chain.initial.to(device)
            s = self.chain.transition.to(device)
            table = torch.cat([torch.eye(k, dtype=DTYPE), torch.ones(1, k, dtype=DTYPE)]).to(device)
            self._params[device] = (pi, s, s.T.contiguous(), table)
        return self._params[device]

    def check(self, z: torch.Tensor) -> None:
        """Raise ValueError unless z is an integer [B, L], L >= 1, with tokens in 0..K-1 or mask_id."""
        k = self.vocab_size
        check_tokens("z", z, max(k, self.mask_id + 1))
        if z.shape[1] < 1:
            raise ValueError(f"z must have at least one position, got shape {tuple(z.shape)}")
        if self.mask_id > k and z.numel():
            bad = (z >= k) & (z != self.mask_id)
            if bad.any():
                idx = bad.nonzero()[0].tolist()
                raise ValueError(
                    f"z has token {int(z[idx[0], idx[1]])} at index {idx}, neither in 0..{k - 1} nor the mask id {self.mask_id}"
                )

    def _states(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Position-major emission-table rows [L, B] (the mask mapped to K) and the mask [B, L]."""
        z = z.long()
        masked = z == self.mask_id
        rows = torch.where(masked, self.vocab_size, z)
        return rows.T.contiguous(), masked

    def emissions(self, z: torch.Tensor) -> torch.Tensor:
        """e_i(v) = 1 if z^i is masked else [v = z^i], [B, L, K] float64."""
        self.check(z)
        rows, _ = self._states(z)
        return self.parameters_on(z.device)[3][rows.T]

    def _backward(self, rows: torch.Tensor, s_t: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Scaled backward messages b_hat [B, L, K] (rows sum to 1; NaN once the observations are impossible)."""
        length, batch = rows.shape
        k = table.shape[1]
        bwd = torch.empty(batch, length, k, dtype=DTYPE, device=rows.device)
        bwd[:, length - 1] = 1.0 / k
        for i in range(length - 2, -1, -1):
            b = torch.mm(bwd[:, i + 1] * table[rows[i + 1]], s_t, out=bwd[:, i])
            b.div_(b.sum(-1, keepdim=True))
        return bwd

    def _forward(self, rows: torch.Tensor, pi: torch.Tensor, s: torch.Tensor, table: torch.Tensor,
                 store: torch.Tensor | None = None, marginals_into: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled forward pass; returns log c_i [B, L] (a row is -inf from its first impossible step on).

        ``store`` [B, L, K] receives a_hat_i. ``marginals_into`` [B, L, K] must hold b_hat and is
        overwritten in place with p(x^i = v | z) = a_hat_i b_hat_i / sum (this fuses the two passes
        and avoids a second [B, L, K] buffer). Rows of impossible z become NaN (0/0).
        """
        length, batch = rows.shape
        scales = torch.empty(length, batch, 1, dtype=DTYPE, device=rows.device)
        a = pi * table[rows[0]]
        for i in range(length):
            if i:
                a = torch.mm(a, s).mul_(table[rows[i]])
            c = torch.sum(a, -1, keepdim=True, out=scales[i])
            a.div_(c)
            if store is not None:
                store[:, i] = a
            if marginals_into is not None:
                m = marginals_into[:, i]
                m.mul_(a)
                m.div_(m.sum(-1, keepdim=True))
        log_c = scales[..., 0].T.log()
        # after a zero scale the following ones are NaN (0/0): the whole row is impossible
        return torch.where(torch.cumsum(scales[..., 0].T == 0, dim=-1) > 0, -torch.inf, log_c)

    def forward_backward(self, z: torch.Tensor) -> ForwardBackward:
        """Run both scaled recursions on z [B, L] (validated) and keep all messages."""
        self.check(z)
        pi, s, s_t, table = self.parameters_on(z.device)
        rows, masked = self._states(z)
        fwd = torch.empty(z.shape[0], z.shape[1], self.vocab_size, dtype=DTYPE, device=z.device)
        log_scales = self._forward(rows, pi, s, table, store=fwd)
        return ForwardBackward(table[rows.T], fwd, self._backward(rows, s_t, table), log_scales, masked)

    def _powers(self, device: torch.device) -> TransitionPowers:
        """The chain's transition-power tables on ``device`` (cached; grown on demand)."""
        device = torch.device(device)
        if device not in self._tables:
            pi, s = self.parameters_on(device)[:2]
            self._tables[device] = TransitionPowers(pi, s, self._log_space)
        return self._tables[device]

    @property
    def positive(self) -> bool:
        """Whether every entry of pi and S is > 0 (then every power is, and no log table entry is -inf beyond d = 0)."""
        return self._positive

    @property
    def log_space(self) -> bool:
        """Whether the power tables on the CPU are computed in log space (see :mod:`markov.gaps`)."""
        return self._powers(torch.device("cpu")).log_space

    def _assemble(self, z: torch.Tensor, probabilities: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Gap formula over batch chunks: log marginals (or marginals) [B, L, K] and log P_obs [B].

        Probabilities are products of the linear tables on the matmul path and exp of the log form
        on the log-space path (where the factors may underflow while their ratio does not); a
        chunk that grows the tables past an underflow switches to the log-space form. NaN rows
        where P_obs(z) = 0.
        """
        self.check(z)
        k = self.vocab_size
        powers = self._powers(z.device)
        out = torch.empty(*z.shape, k, dtype=DTYPE, device=z.device)
        log_obs = torch.empty(z.shape[0], dtype=DTYPE, device=z.device)
        for rows, index in gap_chunks(z, self.mask_id, k):
            left, right = powers.tables(index.max_distance)
            log_obs[rows] = gaps_log_obs(index, left)
            product = probabilities and not powers.log_space
            if product:
                left, right = powers.linear_tables(index.max_distance)
            norm = left.view(-1)[index.norm]
            chunk = out[rows].view(-1, k)
            gather_combine(chunk, left, index.left, right, index.right,
                           norm.reciprocal_() if product else norm.neg_(), product)
            if probabilities and not product:
                chunk.exp_()
        impossible = torch.isneginf(log_obs)
        if impossible.any():
            out[impossible] = torch.nan
        return out, log_obs

    def posterior(self, z: torch.Tensor) -> ChainPosterior:
        """log p(x^i = v | z) [B, L, K] and log P_obs(z) [B] by the gap formula (NaN rows where P_obs(z) = 0)."""
        return ChainPosterior(*self._assemble(z, probabilities=False))

    def marginals(self, z: torch.Tensor) -> torch.Tensor:
        """p(x^i = v | z), [B, L, K] float64 (NaN rows where P_obs(z) = 0)."""
        return self._assemble(z, probabilities=True)[0]

    def __call__(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x^i = v | z), [B, L, K] float64 (``t`` is ignored: R3)."""
        return self.posterior(z).log_marginals

    def log_obs(self, z: torch.Tensor) -> torch.Tensor:
        """log P_obs(z) = log sum_{x agreeing with z where unmasked} p(x), [B]."""
        self.check(z)
        powers = self._powers(z.device)
        out = torch.empty(z.shape[0], dtype=DTYPE, device=z.device)
        for rows, index in gap_chunks(z, self.mask_id, self.vocab_size):
            out[rows] = gaps_log_obs(index, powers.tables(index.max_distance)[0])
        return out

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of clean sequences x [B, L] (the chain's exact likelihood)."""
        return self.chain.log_prob(x)


def _log_ratio(log_num: torch.Tensor, log_den: torch.Tensor) -> torch.Tensor:
    """log(num/den) with num = 0 read as ratio 0 (-inf), also when den = 0."""
    return torch.where(torch.isneginf(log_num), -torch.inf, log_num - log_den)


class PairOracle:
    """Exact noisy ratio r(z) = Q_obs(z)/P_obs(z) of a source/target chain pair.

    Implements :class:`~gtl_verify.protocols.SequenceRatio` (``oracle(z)`` -> log r(z) [B]) and
    ``SingleSiteRatio`` (``oracle.single_site(z)`` -> log r(z^{i<-v}) [B, L, K]).
    Build from a :class:`ChainPair` or from two chains: ``PairOracle(source, target)``.
    """

    def __init__(self, pair_or_source: ChainPair | MarkovChain, target: MarkovChain | None = None,
                 mask_id: int | None = None, *, log_space: bool | None = None) -> None:
        if isinstance(pair_or_source, ChainPair):
            if target is not None:
                raise ValueError("target must be None when a ChainPair is given")
            source, target = pair_or_source.source, pair_or_source.target
        elif isinstance(pair_or_source, MarkovChain):
            if not isinstance(target, MarkovChain):
                raise ValueError(f"target must be a MarkovChain, got {type(target).__name__}")
            source = pair_or_source
        else:
            raise ValueError(f"pair_or_source must be a ChainPair or a MarkovChain, got {type(pair_or_source).__name__}")
        if source.vocab_size != target.vocab_size:
            raise ValueError(f"target must have the source's vocab_size {source.vocab_size}, got {target.vocab_size}")
        self.source = ChainOracle(source, mask_id, log_space=log_space)
        self.target = ChainOracle(target, self.source.mask_id, log_space=log_space)
        self.vocab_size, self.mask_id = self.source.vocab_size, self.source.mask_id
        self._ratio_cache: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def __repr__(self) -> str:
        return f"PairOracle(vocab_size={self.vocab_size}, mask_id={self.mask_id})"

    def source_denoiser(self) -> ChainOracle:
        return self.source

    def target_denoiser(self) -> ChainOracle:
        return self.target

    def __call__(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """log r(z) = log Q_obs(z) - log P_obs(z), [B] (``t`` ignored: R1)."""
        return _log_ratio(self.target.log_obs(z), self.source.log_obs(z))

    def single_site(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """log r(z^{i<-v}) = log r(z) + log q(x^i=v|z) - log p(x^i=v|z) at masked i, [B, L, K].

        At unmasked positions every entry is log r(z) (exact for v = z^i; the protocol leaves the
        other entries unspecified). Where q(x^i = v | z) = 0 the entry is -inf (0/0 read as 0).
        For strictly positive chains the gap formula's factors are divided table by table
        (one gather pass); otherwise both posteriors are formed and combined.
        """
        if not (self.source.positive and self.target.positive):
            return self._single_site_general(z)
        self.source.check(z)
        k = self.vocab_size
        site = torch.empty(*z.shape, k, dtype=DTYPE, device=z.device)
        for rows, index in gap_chunks(z, self.mask_id, k):
            (left_p, _), (left_q, _) = self._tables(z.device, index.max_distance)
            left, right = self._ratio_tables(z.device, index.max_distance)
            log_r = gaps_log_obs(index, left_q) - gaps_log_obs(index, left_p)
            # observed positions: zero rows and a zero norm (G_0(u, u) = 1), so the entry is log r
            per_row = left_p.view(-1)[index.norm] - left_q.view(-1)[index.norm]
            per_row.view(index.observed.shape).add_(log_r[:, None])
            observed = index.observed.reshape(-1)
            left_rows = index.left.masked_fill(observed, 0)
            right_rows = index.right.masked_fill(observed, 0)
            gather_combine(site[rows].view(-1, k), left, left_rows, right, right_rows, per_row, False)
        return site

    def _tables(self, device: torch.device, max_distance: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """Both chains' (left, right) log tables covering max_distance."""
        return (self.source._powers(device).tables(max_distance), self.target._powers(device).tables(max_distance))

    def _ratio_tables(self, device: torch.device, max_distance: int) -> tuple[torch.Tensor, torch.Tensor]:
        """log G^q - log G^p for the left and right tables (strictly positive chains; cached per device)."""
        (left_p, right_p), (left_q, right_q) = self._tables(device, max_distance)
        cached = self._ratio_cache.get(torch.device(device))
        if cached is None or cached[0] is not left_p or cached[1] is not left_q:
            rows = min(left_p.shape[0], left_q.shape[0])
            left, right = left_q[:rows] - left_p[:rows], right_q[:rows] - right_p[:rows]
            # rows of distance 0 (observed positions never use them here) hold -inf - -inf
            left.masked_fill_(left.isnan(), 0.0), right.masked_fill_(right.isnan(), 0.0)
            cached = (left_p, left_q, left, right)
            self._ratio_cache[torch.device(device)] = cached
        return cached[2], cached[3]

    def _single_site_general(self, z: torch.Tensor) -> torch.Tensor:
        """single_site for chains with exact zeros: both posteriors, infinities sorted out entry by entry."""
        post_p, post_q = self.source.posterior(z), self.target.posterior(z)
        log_r = _log_ratio(post_q.log_obs, post_p.log_obs)
        site = post_q.log_marginals  # reused in place as the output buffer
        q_zero = torch.isneginf(site)
        site.sub_(post_p.log_marginals).add_(log_r[:, None, None])
        site.masked_fill_(q_zero | torch.isneginf(log_r)[:, None, None], -torch.inf)
        if torch.isposinf(log_r).any():  # P_obs(z) = 0 < Q_obs(z): p's marginals are undefined
            rows = torch.isposinf(log_r)
            inf = torch.full_like(site[rows], torch.inf)
            site[rows] = torch.where(q_zero[rows], -inf, inf)
        unmasked = (z != self.mask_id).to(site.device)
        site[unmasked] = log_r[:, None].expand(z.shape)[unmasked][:, None]
        return site

    def expected_log_clean_ratio(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """E_{p(x|z)}[log q(x) - log p(x)], [B] (<= log r(z) by Jensen), from pairwise posteriors.

        p(x^{i-1} = u, x^i = v | z) is proportional to a_hat_{i-1}(u) S_p(u, v) e_i(v) b_hat_i(v).
        -inf when some x with p(x|z) > 0 has q(x) = 0; NaN where P_obs(z) = 0.
        """
        fb = self.source.forward_backward(z)
        pi_p, s_p = self.source.parameters_on(z.device)[:2]
        pi_q, s_q = self.target.parameters_on(z.device)[:2]

        def weights(p: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # finite part log(q/p) where both > 0, and the indicator of q = 0 < p (log ratio -inf)
            both = (p > 0) & (q > 0)
            w = torch.where(both, torch.log(torch.where(both, q, 1.0)) - torch.log(torch.where(both, p, 1.0)), 0.0)
            return w, ((p > 0) & (q == 0)).to(DTYPE)

        w0, f0 = weights(pi_p, pi_q)
        first = fb.forward[:, 0] * fb.backward[:, 0]
        first = first / first.sum(-1, keepdim=True)  # p(x^1 = v | z), [B, K]
        total = first @ w0
        forbidden = first @ f0
        if z.shape[1] > 1:
            w, f = weights(s_p, s_q)
            eb = fb.emissions[:, 1:] * fb.backward[:, 1:]  # [B, L-1, K]
            prev = fb.forward[:, :-1]
            norm = (prev * torch.matmul(eb, s_p.T)).sum(-1)  # [B, L-1]
            num = (prev * torch.matmul(eb, (s_p * w).T)).sum(-1)
            bad = (prev * torch.matmul(eb, (s_p * f).T)).sum(-1)
            total = total + (num / norm).sum(-1)
            forbidden = forbidden + (bad / norm).sum(-1)
        total = torch.where(forbidden > 0, -torch.inf, total)
        return torch.where(torch.isneginf(fb.log_obs), torch.nan, total)
