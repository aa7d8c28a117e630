"""Ground-truth metrics of generated sequences against the target chain.

- transition_kl: the paper's metric, (1/K) sum_u KL(S_q(u, .) || S_hat(u, .)) with S_hat estimated
  from the samples' transitions (additive smoothing ``SMOOTHING`` per cell so that a missed
  transition gives a large but finite value).
- cross_entropy_gap: E_samples[-log q(x)] / L minus the exact per-token entropy of q at length L,
  H_L(q) / L = (H(pi) + sum_{i>=2} sum_u P_q(x^{i-1} = u) H(S_q(u, .))) / L. Sign: 0 in expectation
  for exact samples; > 0 samples on sequences q finds unlikely; < 0 samples concentrated on sequences
  more likely than typical under q (mode-seeking, low diversity) -- neither side is "better".
- mc_kl: KL(sampler || q) = E[log s(x) - log q(x)] when the sampler's log-density is known
  (fixed reveal order), with its standard error.
- exact_tv / exact_kl: from an exact law on enumerable spaces.
"""

from __future__ import annotations

import math

import torch

from .chain import DTYPE, MarkovChain, estimate_transition, row_averaged_kl

SMOOTHING = 1e-3


def transition_kl(target: MarkovChain, samples: torch.Tensor) -> float:
    """Row-averaged KL(true target transition || transition estimated from ``samples``)."""
    est = estimate_transition(samples, SMOOTHING, vocab_size=target.vocab_size)
    return row_averaged_kl(target.transition, est)


def entropy_per_token(chain: MarkovChain, length: int) -> float:
    """H(x^{1..L}) / L in nats, exactly, from the position marginals of the chain."""
    def h(p: torch.Tensor) -> torch.Tensor:
        return -(torch.where(p > 0, p * torch.log(p), torch.zeros((), dtype=DTYPE))).sum(-1)

    marg = chain.initial.clone()
    total = float(h(chain.initial))
    rows = h(chain.transition)
    for _ in range(1, length):
        total += float(marg @ rows)
        marg = marg @ chain.transition
    return total / length


def cross_entropy_gap(target: MarkovChain, samples: torch.Tensor) -> float:
    """Mean -log q(x)/L over samples minus H_L(q)/L (0 for exact samples, in expectation)."""
    length = samples.shape[1]
    ce = float(-target.log_prob(samples).mean()) / length
    return ce - entropy_per_token(target, length)


def mc_kl(log_density: torch.Tensor, log_target: torch.Tensor) -> tuple[float, float]:
    """(mean, standard error) of log s(x) - log q(x) over samples x ~ s."""
    diff = (log_density - log_target).to(torch.float64)
    if not torch.isfinite(diff).all():
        return math.inf, math.nan
    return float(diff.mean()), float(diff.std() / math.sqrt(max(len(diff), 1)))
