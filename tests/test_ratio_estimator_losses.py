"""Population losses of the ratio estimators, computed exactly by enumeration on small pairs.

Every noisy state z of {0..K}^L (mask id K) is a row weighted by its probability p_t(z) or q_t(z)
(alpha^{revealed} (1 - alpha)^{masked} times P_obs / Q_obs); the regressions enumerate (x, z) pairs
weighted by p(x) k(z | x). Each loss is evaluated at its stated minimiser and at perturbations of it.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gtl_verify.estimators.losses import (
    guided_cross_entropy,
    log_space_loss,
    noisy_classifier_loss,
    paper_loss,
    ratio_space_loss,
    site_nce_loss,
)
from gtl_verify.objectives import classifier_loss, cycle_loss, ratio_regression_loss
from gtl_verify.testing.exact import exact_components
from gtl_verify.testing.strategies import chain_pairs, pairs, seeds

TOL = 1e-12
perturbation_sizes = st.sampled_from([1e-3, 0.1, 1.0, 5.0])


def noisy_states(k: int, length: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(k + 1), repeat=length)), dtype=torch.long)


def clean_states(k: int, length: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(k), repeat=length)), dtype=torch.long)


def noisy_weights(comp, z: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(p_t(z), q_t(z)) [B] for the masked process with keep probability alpha."""
    masked = (z == comp.mask_id).sum(-1).double()
    kernel = alpha ** (z.shape[1] - masked) * (1 - alpha) ** masked
    return kernel * comp.source.log_obs(z).exp(), kernel * comp.target.log_obs(z).exp()


def perturbation(seed: int, shape) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def setup(pair, length: int, alpha: float):
    comp = exact_components(pair)
    z = noisy_states(comp.vocab_size, length)
    p_t, q_t = noisy_weights(comp, z, alpha)
    keep = (p_t > 0) & (q_t > 0)  # states where log r is finite
    return comp, z[keep], p_t[keep], q_t[keep]


@settings(max_examples=25, deadline=None)
@given(pair=chain_pairs(vocab=(2, 3)), length=st.integers(1, 3), alpha=st.floats(0.1, 0.9), seed=seeds, eps=perturbation_sizes)
def test_noisy_classifier_loss_is_minimal_at_the_exact_ratio(pair, length, alpha, seed, eps):
    comp, z, p_t, q_t = setup(pair, length, alpha)
    log_r = comp.ratio(z).double()
    zz = torch.cat([z, z])
    label = torch.cat([torch.ones(len(z)), torch.zeros(len(z))]).double()
    weight = torch.cat([p_t, q_t])  # p_t and q_t, not renormalised: states with q_t = 0 add 0 at the optimum

    def loss(f):
        return float(noisy_classifier_loss(torch.cat([f, f]), label, weight))

    assert zz.shape[0] == weight.shape[0]
    assert loss(log_r) <= loss(log_r + eps * perturbation(seed, log_r.shape)) + TOL


def positive(pair) -> bool:
    """Both chains strictly positive: every clean log-ratio log r_0(x) is finite."""
    return all(bool((c.initial > 0).all() and (c.transition > 0).all()) for c in (pair.source, pair.target))


def regression_cases(test):
    """Hypothesis cases of the regressions: positive chain pairs (finite log r_0), K <= 3, L <= 3."""
    return settings(max_examples=25, deadline=None)(given(
        pair=chain_pairs(vocab=(2, 3), kinds=("random", "banded")).filter(positive), length=st.integers(1, 3),
        alpha=st.floats(0.1, 0.9), seed=seeds, eps=perturbation_sizes)(test))


def source_pairs(comp, length: int, alpha: float):
    """Rows (x, z) with weight p(x) k(z | x) for every clean x and every mask pattern."""
    x = clean_states(comp.vocab_size, length)
    px = comp.source_table(length).double()
    masks = torch.tensor(list(itertools.product([False, True], repeat=length)))
    xs = x.repeat_interleave(len(masks), 0)
    ms = masks.repeat(len(x), 1)
    z = torch.where(ms, comp.mask_id, xs)
    k = alpha ** (~ms).sum(-1).double() * (1 - alpha) ** ms.sum(-1).double()
    w = px.repeat_interleave(len(masks)) * k
    log_r0 = comp.target_table(length).double().log() - px.log()
    return xs, z, w, log_r0.repeat_interleave(len(masks))


def state_index(z: torch.Tensor, k: int) -> torch.Tensor:
    """Row of z in :func:`noisy_states` (itertools.product order: first position most significant)."""
    return (z * (k + 1) ** torch.arange(z.shape[1] - 1, -1, -1)).sum(-1)


@regression_cases
def test_ratio_space_regression_is_minimal_at_the_exact_ratio(pair, length, alpha, seed, eps):
    comp = exact_components(pair)
    _, z, w, log_r0 = source_pairs(comp, length, alpha)
    keep = w > 0
    z, w, log_r0 = z[keep], w[keep], log_r0[keep]
    log_r = comp.ratio(z).double()
    h = perturbation(seed, ((comp.vocab_size + 1) ** length,))[state_index(z, comp.vocab_size)]
    base = float(ratio_space_loss(log_r, log_r0, w))
    assert base <= float(ratio_space_loss(log_r + eps * h, log_r0, w)) + TOL


def paper_minimiser(comp, z_all, length, alpha, cycle_weight):
    """f*(z) = (p_t E_p[log r_0 | z] + w q_t log r(z)) / (p_t + w q_t) over the noisy states z_all."""
    _, z, w, log_r0 = source_pairs(comp, length, alpha)
    idx = state_index(z, comp.vocab_size)
    n = (comp.vocab_size + 1) ** length
    mass = torch.zeros(n, dtype=torch.float64).index_add_(0, idx, w)
    first = torch.zeros(n, dtype=torch.float64).index_add_(0, idx, w * log_r0)
    p_t, q_t = noisy_weights(comp, z_all, alpha)
    j = state_index(z_all, comp.vocab_size)
    assert torch.equal(j, torch.arange(len(z_all)))
    cond = first[j] / mass[j]  # E_p[log r_0 | z]
    return (p_t * cond + cycle_weight * q_t * comp.ratio(z_all).double()) / (p_t + cycle_weight * q_t), (z, w, log_r0)


@regression_cases
def test_paper_loss_is_minimal_at_its_stated_minimiser_not_at_the_exact_ratio(pair, length, alpha, seed, eps):
    comp = exact_components(pair)
    z_all = noisy_states(comp.vocab_size, length)
    cw = 0.1
    f_star, (zs, ws, log_r0) = paper_minimiser(comp, z_all, length, alpha, cw)
    _, q_t = noisy_weights(comp, z_all, alpha)
    cycle_target = comp.ratio(z_all).double()  # the time-dependent classifier at its optimum
    src_idx, h = state_index(zs, comp.vocab_size), perturbation(seed, (len(z_all),))

    def loss(f):
        return float(paper_loss(f[src_idx], log_r0, f, cycle_target, cycle_weight=cw, source_weight=ws, target_weight=q_t))

    assert loss(f_star) <= loss(f_star + eps * h) + TOL
    assert loss(f_star) <= loss(cycle_target) + TOL  # the exact ratio does no better (Jensen gap >= 0)


def test_paper_minimiser_differs_from_the_exact_ratio_on_the_paper_chains():
    from markov.presets import make_pair

    comp = exact_components(make_pair("diagonal", vocab_size=3))
    z_all = noisy_states(3, 3)
    f_star, _ = paper_minimiser(comp, z_all, 3, 0.5, 0.1)
    gap = comp.ratio(z_all).double() - f_star
    assert float(gap.max()) > 0.05  # Jensen: the log-space regression sits below log r


def site_setup(pair, length: int, alpha: float):
    comp, z, p_t, q_t = setup(pair, length, alpha)
    masked = z == comp.mask_id
    lp = comp.source(z).double()
    q = comp.target(z).double().exp()
    q = torch.where(masked[..., None], q, torch.zeros((), dtype=torch.float64))
    site = comp.ratio.single_site(z).double()
    return comp, z, q_t, masked, lp, q, site


@settings(max_examples=25, deadline=None)
@given(pair=pairs(vocab=(2, 3)), length=st.integers(1, 3), alpha=st.floats(0.1, 0.9), seed=seeds, eps=perturbation_sizes)
def test_guided_likelihood_is_minimal_at_the_exact_ratio(pair, length, alpha, seed, eps):
    comp, z, q_t, masked, lp, q, site = site_setup(pair, length, alpha)
    finite = torch.where(torch.isfinite(site), site, torch.full_like(site, -1e4))  # tokens q excludes
    base = float(guided_cross_entropy(lp, finite, q, masked, q_t))
    h = perturbation(seed, site.shape)
    assert base <= float(guided_cross_entropy(lp, finite + eps * h, q, masked, q_t)) + TOL
    # a per-position constant (the level) does not change it
    shift = eps * h[..., :1]
    assert float(guided_cross_entropy(lp, finite + shift, q, masked, q_t)) == pytest.approx(base, abs=1e-10)


@settings(max_examples=25, deadline=None)
@given(pair=pairs(vocab=(2, 3)), length=st.integers(1, 3), alpha=st.floats(0.1, 0.9), seed=seeds, eps=perturbation_sizes)
def test_telescoping_nce_is_minimal_at_the_exact_increment(pair, length, alpha, seed, eps):
    comp, z, q_t, masked, lp, q, site = site_setup(pair, length, alpha)
    increment = site - comp.ratio(z).double()[:, None, None]
    increment = torch.where(torch.isfinite(increment), increment, torch.full_like(increment, -1e4))
    base = float(site_nce_loss(lp, increment, q, masked, q_t))
    h = perturbation(seed, site.shape)
    assert base <= float(site_nce_loss(lp, increment + eps * h, q, masked, q_t)) + TOL
    # unlike the guided likelihood, the level is pinned: a constant shift costs
    if bool(masked.any()):
        assert float(site_nce_loss(lp, increment + 0.5, q, masked, q_t)) > base


@settings(max_examples=40, deadline=None)
@given(pair=pairs(vocab=(2, 4)), length=st.integers(1, 4))
def test_guided_posterior_with_the_exact_ratio_is_the_exact_target_posterior(pair, length):
    comp = exact_components(pair)
    z = noisy_states(comp.vocab_size, length)
    z = z[torch.isfinite(comp.ratio(z).double()) & torch.isfinite(comp.source.log_obs(z))]
    masked = z == comp.mask_id
    lp = comp.source(z).double()[masked]
    site = comp.ratio.single_site(z).double()[masked]
    guided = torch.log_softmax(torch.where(torch.isfinite(lp), lp + site, -torch.inf), -1).exp()
    exact = comp.target(z).double()[masked].exp()
    assert guided.shape == exact.shape
    assert float((guided - exact).abs().sum()) <= 1e-10 * max(guided.numel(), 1)
    assert bool(((guided - exact).abs() <= 1e-10).all())


def test_one_hot_labels_reduce_to_the_token_cross_entropy():
    lp = torch.log_softmax(torch.randn(2, 3, 4, dtype=torch.float64), -1)
    site = torch.randn(2, 3, 4, dtype=torch.float64)
    x = torch.tensor([[0, 1, 2], [3, 3, 0]])
    masked = torch.tensor([[True, False, True], [True, True, False]])
    got = guided_cross_entropy(lp, site, F.one_hot(x, 4).double(), masked)
    guided = torch.log_softmax(lp + site, -1).gather(-1, x[..., None])[..., 0]
    want = -(guided * masked).sum(-1).mean()
    assert float(got) == pytest.approx(float(want), abs=1e-12)
    assert float(log_space_loss(torch.tensor([1.0]), torch.tensor([3.0]))) == pytest.approx(4.0)


@settings(max_examples=25, deadline=None)
@given(seeds, st.integers(2, 9))
def test_unweighted_losses_are_the_training_objectives(seed, batch):
    """With no weights the estimators' losses are the per-batch objectives the shared recipes train
    with (:mod:`gtl_verify.objectives`): one definition for training and the population checks."""
    g = torch.Generator().manual_seed(seed)
    pred, lab = torch.randn(batch, generator=g, dtype=torch.float64), torch.randn(batch, generator=g, dtype=torch.float64)
    y = torch.randint(2, (batch,), generator=g).double()
    assert torch.allclose(noisy_classifier_loss(pred, y), classifier_loss(-pred, y), atol=TOL)
    assert torch.allclose(ratio_space_loss(pred, lab), ratio_regression_loss(pred, lab, "ratio"), atol=TOL)
    pt, c = pred.flip(0), lab.flip(0)
    expected = ratio_regression_loss(pred, lab, "log") + cycle_loss(pt, c, 0.1, "log")
    assert torch.allclose(paper_loss(pred, lab, pt, c, cycle_weight=0.1), expected, atol=TOL)
