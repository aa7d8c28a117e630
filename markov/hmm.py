"""Hidden Markov models and their exact masked-diffusion oracles (forward-backward over hidden states).

An HMM (pi, A, B) has H hidden states h^i with initial law pi [H] and transitions A [H, H], and emits
token x^i ~ B(h^i, .) with emissions B [H, K]:

    p(x) = sum_h pi(h^1) B(h^1, x^1) prod_{i>=2} A(h^{i-1}, h^i) B(h^i, x^i).

A first-order chain (pi, S) is the HMM with H = K, A = S and identity emissions
(:meth:`HiddenMarkovModel.from_chain`). For a partly masked z [B, L] let e_i(h) = 1 at a masked i and
B(h, z^i) otherwise. The scaled recursions of :mod:`markov.oracle` run over hidden states:

    a_1(h) = pi(h) e_1(h),    a_i(h) = sum_g a_{i-1}(g) A(g, h) e_i(h),    P_obs(z) = sum_h a_L(h),
    b_L(h) = 1,               b_i(g) = sum_h A(g, h) e_{i+1}(h) b_{i+1}(h),
    p(x^i = v | z) = sum_h [a_i(h) b_i(h) / sum_g a_i(g) b_i(g)] B(h, v)      (i masked),

each a_i, b_i divided by its sum (log P_obs = sum log c_i), so nothing underflows at long L. The masked
process makes all of it independent of t (THEORY section 6, R1 and R3). Pair quantities and the
conventions for zeros are those of :class:`markov.oracle.PairOracle`: log r(z) = log Q_obs - log P_obs,
log r(z^{i<-v}) = log r(z) + log q(x^i = v | z) - log p(x^i = v | z); Q_obs = 0 gives -inf (also when
P_obs = 0); P_obs = 0 < Q_obs gives +inf (target mass the source never emits: docs/conventions.md).

Presets (:func:`make_hmm_pair`): ``regime``: a target whose K tokens are emitted by two slowly
switching hidden regimes (regime 0 favours the low half of the vocabulary, regime 1 the high half,
switch probability ``switch`` per position) against an i.i.d. uniform source. The ratio at a position
depends on tokens far away (they reveal the regime), which no first-order (per-transition) model captures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gtl_verify.enumeration import MAX_STATES
from gtl_verify.forward import enumerate_sequences
from gtl_verify.validation import check_int_range, check_mask_id, check_probability, check_real_range, check_tokens

from .chain import DTYPE, MarkovChain
from .oracle import _log_ratio
from .presets import ChainPair

HMM_PRESETS = ("regime",)


def _law(name: str, value) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(value, dtype=DTYPE)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a tensor of probabilities, got {type(value).__name__}") from None
    check_probability(name, tensor)
    return tensor


@dataclass(frozen=True)
class HiddenMarkovModel:
    """An HMM: ``initial`` pi [H], ``transition`` A [H, H], ``emission`` B [H, K], float64, each row a
    law within 1e-9 (otherwise ValueError naming the matrix)."""

    initial: torch.Tensor
    transition: torch.Tensor
    emission: torch.Tensor

    def __post_init__(self) -> None:
        initial, transition, emission = (_law(n, getattr(self, n)) for n in ("initial", "transition", "emission"))
        h = initial.numel()
        if initial.dim() != 1 or h < 1:
            raise ValueError(f"initial must be a vector with at least one entry, got shape {tuple(initial.shape)}")
        if tuple(transition.shape) != (h, h):
            raise ValueError(f"transition must have shape {(h, h)}, got {tuple(transition.shape)}")
        if emission.dim() != 2 or emission.shape[0] != h:
            raise ValueError(f"emission must have shape ({h}, K), got {tuple(emission.shape)}")
        for name, value in (("initial", initial), ("transition", transition), ("emission", emission)):
            object.__setattr__(self, name, value)

    @staticmethod
    def from_chain(chain: MarkovChain) -> "HiddenMarkovModel":
        """The chain as an HMM: hidden state = token, identity emissions."""
        return HiddenMarkovModel(chain.initial, chain.transition, torch.eye(chain.vocab_size, dtype=DTYPE))

    @property
    def vocab_size(self) -> int:
        return int(self.emission.shape[1])

    @property
    def num_hidden(self) -> int:
        return int(self.initial.numel())

    def sample(self, n: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` sequences [n, length] (hidden path by inverse CDF, then emissions), float64 uniforms."""
        n, length = check_int_range("n", n, 0), check_int_range("length", length, 1)
        hidden = MarkovChain(self.initial, self.transition).sample(n, length, generator)
        u = torch.rand(n, length, 1, generator=generator, dtype=DTYPE)
        cdf = torch.cumsum(self.emission, -1)
        cdf = cdf / cdf[:, -1:]
        return torch.searchsorted(cdf[hidden], u, right=True)[..., 0].clamp_(max=self.vocab_size - 1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of clean sequences x [B, L], float64 [B] (-inf where p(x) = 0)."""
        check_tokens("x", x, self.vocab_size)
        return HMMOracle(self).log_obs(x)

    def table(self, length: int) -> torch.Tensor:
        """The law of x^{1..length} over all K**length sequences [K**length], row-major."""
        length = check_int_range("length", length, 1)
        if self.vocab_size**length > MAX_STATES:
            raise ValueError(f"length gives K**length = {self.vocab_size}**{length} states, more than {MAX_STATES}")
        return self.log_prob(enumerate_sequences(self.vocab_size, length)).exp()

    def __repr__(self) -> str:
        return f"HiddenMarkovModel(hidden={self.num_hidden}, vocab_size={self.vocab_size})"


@dataclass
class HMMPair:
    """A source HMM p, a target HMM q on the same tokens, and a name (cf. :class:`markov.presets.ChainPair`)."""

    source: HiddenMarkovModel
    target: HiddenMarkovModel
    name: str

    def __post_init__(self) -> None:
        if self.source.vocab_size != self.target.vocab_size:
            raise ValueError(f"target must have the source's vocab_size {self.source.vocab_size}, got {self.target.vocab_size}")

    @property
    def vocab_size(self) -> int:
        return self.source.vocab_size

    @staticmethod
    def from_chains(pair: ChainPair) -> "HMMPair":
        """A chain pair as an HMM pair with identity emissions."""
        return HMMPair(HiddenMarkovModel.from_chain(pair.source), HiddenMarkovModel.from_chain(pair.target), pair.name)


class HMMOracle:
    """Exact denoiser of one HMM (the :class:`~gtl_verify.protocols.Denoiser` protocol), mask id K by default.

    ``oracle(z)`` -> log p(x^i = v | z) [B, L, K] (one-hot rows at unmasked positions, NaN rows where
    P_obs(z) = 0); ``oracle.log_obs(z)`` -> log P_obs(z) [B]."""

    def __init__(self, hmm: HiddenMarkovModel, mask_id: int | None = None) -> None:
        if not isinstance(hmm, HiddenMarkovModel):
            raise ValueError(f"hmm must be a HiddenMarkovModel, got {type(hmm).__name__}")
        self.hmm, self.vocab_size = hmm, hmm.vocab_size
        self.mask_id = check_mask_id(self.vocab_size if mask_id is None else mask_id, self.vocab_size)
        # emission factors e(h) per observed symbol: rows 0..K-1 tokens, row K the mask (all ones)
        self._factors = torch.cat([hmm.emission.T, torch.ones(1, hmm.num_hidden, dtype=DTYPE)])

    def _rows(self, z: torch.Tensor) -> torch.Tensor:
        check_tokens("z", z, max(self.vocab_size, self.mask_id + 1))
        if z.shape[1] < 1:
            raise ValueError(f"z must have at least one position, got shape {tuple(z.shape)}")
        z = z.long().cpu()
        bad = (z >= self.vocab_size) & (z != self.mask_id)
        if bad.any():
            raise ValueError(f"z has token {int(z[bad][0])}, neither in 0..{self.vocab_size - 1} nor the mask id {self.mask_id}")
        return torch.where(z == self.mask_id, self.vocab_size, z)

    def _passes(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scaled forward a_hat [B, L, H], backward b_hat [B, L, H] and log c_i [B, L] (-inf from the
        first impossible step on)."""
        batch, length = rows.shape
        e = self._factors[rows]  # [B, L, H]
        a_mat = self.hmm.transition
        fwd, bwd = torch.empty_like(e), torch.empty_like(e)
        scales = torch.empty(batch, length, dtype=DTYPE)
        a = self.hmm.initial * e[:, 0]
        for i in range(length):
            if i:
                a = (fwd[:, i - 1] @ a_mat) * e[:, i]
            scales[:, i] = a.sum(-1)
            fwd[:, i] = a / scales[:, i, None]
        bwd[:, -1] = 1.0 / self.hmm.num_hidden
        for i in range(length - 2, -1, -1):
            b = (bwd[:, i + 1] * e[:, i + 1]) @ a_mat.T
            bwd[:, i] = b / b.sum(-1, keepdim=True)
        log_c = torch.where(torch.cumsum(scales == 0, dim=-1) > 0, -torch.inf, scales.log())
        return fwd, bwd, log_c

    def log_obs(self, z: torch.Tensor) -> torch.Tensor:
        """log P_obs(z) = log sum over x agreeing with z where unmasked of p(x), [B] float64."""
        return self._passes(self._rows(z))[2].sum(-1)

    def posterior(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(x^i = v | z) [B, L, K], log P_obs(z) [B])."""
        rows = self._rows(z)
        fwd, bwd, log_c = self._passes(rows)
        hidden = fwd * bwd
        hidden = hidden / hidden.sum(-1, keepdim=True)  # p(h^i | z), NaN if P_obs(z) = 0
        probs = hidden @ self.hmm.emission  # masked positions
        observed = torch.nn.functional.one_hot(torch.where(rows == self.vocab_size, 0, rows), self.vocab_size).to(DTYPE)
        unmasked = (rows != self.vocab_size)[..., None]
        impossible = torch.isneginf(log_c.sum(-1))[:, None, None]
        probs = torch.where(unmasked, torch.where(impossible, torch.nan, observed), probs)
        return probs.log(), log_c.sum(-1)

    def __call__(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x^i = v | z), [B, L, K] float64 (``t`` is ignored: R3)."""
        return self.posterior(z)[0].to(z.device)


class HMMPairOracle:
    """Exact noisy ratio of an HMM pair: ``oracle(z)`` -> log r(z) [B], ``oracle.single_site(z)`` ->
    log r(z^{i<-v}) [B, L, K] (log r(z) at unmasked positions); see the module docstring for zeros."""

    def __init__(self, pair: HMMPair, mask_id: int | None = None) -> None:
        if not isinstance(pair, HMMPair):
            raise ValueError(f"pair must be an HMMPair, got {type(pair).__name__}")
        self.source = HMMOracle(pair.source, mask_id)
        self.target = HMMOracle(pair.target, self.source.mask_id)
        self.vocab_size, self.mask_id = self.source.vocab_size, self.source.mask_id

    def __call__(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        return _log_ratio(self.target.log_obs(z), self.source.log_obs(z)).to(z.device)

    def single_site(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        log_p, obs_p = self.source.posterior(z)
        log_q, obs_q = self.target.posterior(z)
        log_r = _log_ratio(obs_q, obs_p)[:, None, None]
        q_zero = torch.isneginf(log_q) | torch.isneginf(log_r)
        source_impossible = torch.isneginf(obs_p)[:, None, None]  # p's marginals are 0/0 there
        site = torch.where(source_impossible, torch.inf, log_r + log_q - log_p)
        site = torch.where(q_zero, -torch.inf, site)
        unmasked = (z.cpu() != self.mask_id)[..., None]
        return torch.where(unmasked, log_r, site).to(z.device)


# ---------------------------------------------------------------------- random and preset pairs
def _rows(rng: np.random.Generator, n: int, k: int, zero: np.ndarray | None) -> np.ndarray:
    rows = rng.dirichlet(np.full(k, rng.choice([0.3, 1.0, 5.0])), size=n)
    if zero is not None:
        rows = np.where(zero, 0.0, rows)
    return rows / rows.sum(-1, keepdims=True)


def _zeros(rng: np.random.Generator, n: int, k: int, keep: np.ndarray | None = None) -> np.ndarray:
    """About a third zeros, never a whole row; ``keep`` [k] bool marks columns allowed to stay non-zero."""
    allowed = np.ones(k, bool) if keep is None else keep
    zero = (rng.random((n, k)) < 0.35) | ~allowed
    zero[np.arange(n), rng.choice(np.flatnonzero(allowed), size=n)] = False
    return zero


def random_hmm_pair(seed: int, vocab_size: int, source_hidden: int, target_hidden: int, sparse: bool = False) -> HMMPair:
    """Seeded random HMM pair with supp q within supp p. With ``sparse`` the target has exact zeros in
    its first-token, transition and emission laws and never emits a random non-empty set F of tokens (|F| < K; empty when K = 1);
    the source has zeros in its hidden laws and emits exactly the tokens outside a subset of F."""
    k = check_int_range("vocab_size", vocab_size, 1)
    hp, hq = check_int_range("source_hidden", source_hidden, 1), check_int_range("target_hidden", target_hidden, 1)
    rng = np.random.default_rng(seed)
    if not sparse:
        def make(h: int) -> HiddenMarkovModel:
            return HiddenMarkovModel(torch.tensor(_rows(rng, 1, h, None)[0]), torch.tensor(_rows(rng, h, h, None)),
                                     torch.tensor(_rows(rng, h, k, None)))
        return HMMPair(make(hp), make(hq), f"random hmm (seed {seed})")
    forbidden, emitted = rng.random(k) < 0.3, int(rng.integers(k))
    forbidden[emitted] = False
    forbidden[(emitted + 1) % k] |= k > 1  # at least one token the target never emits
    target = HiddenMarkovModel(torch.tensor(_rows(rng, 1, hq, _zeros(rng, 1, hq))[0]),
                               torch.tensor(_rows(rng, hq, hq, _zeros(rng, hq, hq))),
                               torch.tensor(_rows(rng, hq, k, _zeros(rng, hq, k, ~forbidden))))
    source_forbidden = forbidden & (rng.random(k) < 0.5)
    source = HiddenMarkovModel(torch.tensor(_rows(rng, 1, hp, _zeros(rng, 1, hp))[0]),
                               torch.tensor(_rows(rng, hp, hp, _zeros(rng, hp, hp))),
                               torch.tensor(_rows(rng, hp, k, np.broadcast_to(source_forbidden, (hp, k)))))
    return HMMPair(source, target, f"sparse random hmm (seed {seed})")


def make_hmm_pair(name: str, *, vocab_size: int = 4, switch: float = 0.02, emphasis: float = 0.8) -> HMMPair:
    """An HMM preset (one of :data:`HMM_PRESETS`); see the module docstring.

    ``regime``: target regimes switch with probability ``switch`` per position and put mass
    ``emphasis`` on their half of the K tokens (uniform within halves); the source is i.i.d. uniform."""
    if name not in HMM_PRESETS:
        raise ValueError(f"name must be one of {list(HMM_PRESETS)}, got {name!r}")
    k = check_int_range("vocab_size", vocab_size, 2)
    switch = check_real_range("switch", switch, 0.0, 1.0)
    emphasis = check_real_range("emphasis", emphasis, 0.0, 1.0)
    low, n_low = torch.arange(k) < k // 2, k // 2
    def half_law(mass_low: float) -> torch.Tensor:
        return torch.where(low, torch.tensor(mass_low / n_low, dtype=DTYPE), (1 - mass_low) / (k - n_low))

    favour, other = half_law(emphasis), half_law(1 - emphasis)
    flip = torch.tensor([[1 - switch, switch], [switch, 1 - switch]], dtype=DTYPE)
    target = HiddenMarkovModel(torch.full((2,), 0.5, dtype=DTYPE), flip, torch.stack([favour, other]))
    uniform = torch.full((1, k), 1.0 / k, dtype=DTYPE)
    source = HiddenMarkovModel(torch.ones(1, dtype=DTYPE), torch.ones(1, 1, dtype=DTYPE), uniform)
    return HMMPair(source, target, name)


def best_first_order_chain(hmm: HiddenMarkovModel) -> MarkovChain:
    """The first-order chain with the HMM's stationary bigram statistics: initial = mu B,
    S(u, v) = P(x^i = u, x^{i+1} = v) / P(x^i = u) with mu the stationary hidden law (the
    maximum-likelihood chain for long stationary samples). Tokens never emitted get uniform rows."""
    mu = MarkovChain(hmm.initial, hmm.transition).stationary()
    b, a = hmm.emission, hmm.transition
    bigram = b.T @ (mu[:, None] * a) @ b  # [K, K]
    total = bigram.sum(-1, keepdim=True)
    k = hmm.vocab_size
    rows = torch.where(total > 0, bigram / torch.where(total > 0, total, 1.0), torch.full_like(bigram, 1.0 / k))
    return MarkovChain(mu @ b, rows)
