"""Loss functions: SUBS, MDLM ELBO, classifier ratio, ratio regression, planner targets."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gtl_verify.enumeration import EnumerationOracle, LawPair
from gtl_verify.forward import MaskedProcess, UniformProcess, enumerate_sequences
from gtl_verify.objectives import (
    classifier_log_ratio,
    classifier_loss,
    cycle_loss,
    mask_tokens,
    mdlm_elbo_nats_per_token,
    mdlm_loss,
    mdlm_terms,
    noisy_classifier_batch,
    planner_loss,
    planner_targets,
    ratio_regression_loss,
    sample_times,
    subs_log_probs,
)
from gtl_verify.schedules import CosineSchedule, LogLinearSchedule, make_schedule

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class ConstantLogits:
    """A stand-in denoiser: logits fixed per token (uniform when zeros)."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    def __call__(self, z, t=None):
        return self.logits.expand(*z.shape, -1).clone()


# ------------------------------------------------------------------ SUBS
def test_subs_carry_over_and_normalised():
    k, mask = 4, 4
    z = torch.tensor([[0, 4, 3, 4], [4, 4, 1, 2]])
    logits = torch.randn(2, 4, k, generator=gen(), dtype=F64)
    lp = subs_log_probs(logits, z, mask)
    masked = z == mask
    assert torch.allclose(lp[masked], torch.log_softmax(logits, -1)[masked], atol=0)
    onehot = torch.nn.functional.one_hot(z[~masked], k).to(F64)
    assert torch.equal(lp[~masked].exp(), onehot)
    assert torch.equal(lp[~masked][onehot == 0], torch.full(((onehot == 0).sum().item(),), -math.inf, dtype=F64))
    assert torch.allclose(torch.logsumexp(lp, -1), torch.zeros(2, 4, dtype=F64), atol=1e-12)


def test_subs_no_mass_on_mask_inside_vocabulary():
    k, mask = 6, 2  # a tokenizer's [MASK] id inside the vocabulary
    z = torch.tensor([[2, 0, 2, 5]])
    logits = torch.randn(1, 4, k, generator=gen(1))
    logits[..., 2] = 50.0  # the network would love to predict the mask
    lp = subs_log_probs(logits, z, mask)
    assert torch.isinf(lp[0, [0, 2], 2]).all()
    assert torch.allclose(lp.exp().sum(-1), torch.ones(1, 4), atol=1e-6)


@settings(max_examples=50)
@given(k=st.integers(2, 6), length=st.integers(1, 6), seed=st.integers(0, 10**6))
def test_subs_property(k, length, seed):
    g = gen(seed)
    z = torch.randint(0, k + 1, (3, length), generator=g)
    lp = subs_log_probs(torch.randn(3, length, k, generator=g, dtype=F64) * 5, z, k)
    assert torch.allclose(torch.logsumexp(lp, -1), torch.zeros(3, length, dtype=F64), atol=1e-12)
    unmasked = z != k
    assert torch.equal(lp[unmasked].argmax(-1), z[unmasked])


def test_subs_validates():
    with pytest.raises(ValueError, match="logits must have shape"):
        subs_log_probs(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="unmasked token outside"):
        subs_log_probs(torch.zeros(1, 2, 4), torch.tensor([[5, 4]]), 4)


# ------------------------------------------------------------------ masking and times
def test_mask_tokens_matches_masked_process():
    sched = LogLinearSchedule()
    proc = MaskedProcess(3, sched)
    x = torch.randint(0, 3, (50, 9), generator=gen())
    t = torch.rand(50, generator=gen(1), dtype=F64)
    assert torch.equal(mask_tokens(x, t, sched, 3, gen(7)), proc.sample(x, t, gen(7)))


def test_sample_times_stratified():
    t = sample_times(8, gen(), t_min=0.1)
    assert t.dtype == F64 and ((t >= 0.1) & (t <= 1)).all()
    strata = torch.floor((t - 0.1) / 0.9 * 8).long().sort().values
    assert torch.equal(strata, torch.arange(8))
    assert torch.equal(sample_times(8, gen(3)), sample_times(8, gen(3)))
    free = sample_times(1000, gen(), stratified=False)
    assert abs(float(free.mean()) - 0.5) < 0.05
    with pytest.raises(ValueError, match="t_min"):
        sample_times(4, gen(), t_min=1.0)


# ------------------------------------------------------------------ MDLM loss
@pytest.mark.parametrize("name", ["loglinear", "linear", "cosine", "geometric"])
def test_mdlm_weight_is_minus_dalpha_over_one_minus_alpha(name):
    sched = make_schedule(name)
    k, length = 4, 12
    x = torch.randint(0, k, (6, length), generator=gen())
    t = torch.tensor([0.05, 0.2, 0.4, 0.6, 0.8, 1.0], dtype=F64)
    terms = mdlm_terms(ConstantLogits(torch.zeros(k)), x, sched, k, gen(2), t)
    expected = -sched.dalpha(t) / (1 - sched.alpha(t))
    assert torch.allclose(terms.weight.double(), expected, rtol=1e-6)
    # uniform logits: -log p = log K at every masked position
    n_masked = (terms.z == k).sum(-1)
    assert torch.allclose(terms.nll.double(), n_masked.double() * math.log(k), rtol=1e-6)
    assert torch.allclose(terms.loss, terms.weight * terms.nll / length)
    assert torch.allclose(mdlm_loss(ConstantLogits(torch.zeros(k)), x, sched, k, gen(2), t), terms.loss.mean())


@pytest.mark.parametrize("sched", [LogLinearSchedule(1e-3), CosineSchedule(1e-3)])
def test_mdlm_loss_expectation_uniform_denoiser(sched):
    """E[loss] = int w(t) (1 - alpha_t) log K dt / (1 - t_min) = (alpha(t_min) - alpha(1)) log K / (1 - t_min)."""
    k, length, t_min = 3, 16, 1e-3
    net = ConstantLogits(torch.zeros(k))
    x = torch.randint(0, k, (4096, length), generator=gen())
    g = gen(1)
    values = torch.stack([mdlm_terms(net, x, sched, k, g, t_min=t_min).loss.double() for _ in range(5)])
    expected = (sched.alpha(t_min) - sched.alpha(1.0)) * math.log(k) / (1 - t_min)
    se = float(values.std()) / math.sqrt(values.numel())
    assert abs(float(values.mean()) - expected) < 5 * se + 1e-3


def test_mdlm_elbo_of_exact_denoiser_is_entropy():
    """With the exact denoiser the continuous-time MDLM NELBO equals -log p(x) (any-order AR)."""
    k, length = 2, 3
    p = torch.tensor([0.3, 0.05, 0.1, 0.05, 0.2, 0.1, 0.05, 0.15], dtype=F64)
    sched = LogLinearSchedule(1e-4)
    oracle = EnumerationOracle(LawPair.from_tables(p, p, k, length), MaskedProcess(k, sched))
    exact = oracle.denoiser("p")
    x = enumerate_sequences(k, length)[torch.multinomial(p, 40000, replacement=True, generator=gen())]
    nelbo = mdlm_elbo_nats_per_token(exact, x, sched, k, gen(1), samples=1, batch_size=40000, t_min=1e-3)
    entropy = float(-(p * p.log()).sum()) / length
    # Monte-Carlo standard error of this estimator at this size is about 0.005
    assert abs(nelbo - entropy) < 0.02
    # deterministic given the generator
    assert nelbo == mdlm_elbo_nats_per_token(exact, x, sched, k, gen(1), samples=1, batch_size=40000, t_min=1e-3)


def test_mdlm_loss_gradient_and_process_argument():
    torch.manual_seed(0)
    logits = torch.zeros(3, requires_grad=True)
    x = torch.randint(0, 3, (8, 5), generator=gen())
    proc = MaskedProcess(3, LogLinearSchedule())
    loss = mdlm_loss(lambda z, t: logits.expand(*z.shape, -1), x, None, proc, gen(4))
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert torch.equal(mdlm_loss(ConstantLogits(torch.zeros(3)), x, None, proc, gen(4)), mdlm_loss(ConstantLogits(torch.zeros(3)), x, proc.schedule, 3, gen(4)))


def test_mdlm_loss_validates():
    net = ConstantLogits(torch.zeros(3))
    sched = LogLinearSchedule()
    x = torch.randint(0, 3, (2, 4), generator=gen())
    with pytest.raises(ValueError, match="masked"):
        mdlm_loss(net, x, None, UniformProcess(3, sched), gen())
    with pytest.raises(ValueError, match="schedule is required"):
        mdlm_loss(net, x, None, 3, gen())
    with pytest.raises(ValueError, match="no mask id"):
        mdlm_loss(net, torch.tensor([[0, 3]]), sched, 3, gen())
    with pytest.raises(ValueError, match="t must be > 0"):
        mdlm_loss(net, x, sched, 3, gen(), t=0.0)
    with pytest.raises(ValueError, match="vocabulary size"):
        mdlm_loss(ConstantLogits(torch.zeros(2)), torch.tensor([[2, 2]]), sched, 3, gen())


# ------------------------------------------------------------------ classifier
def _analytic_problem():
    p = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=F64)
    q = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)
    return p, q


@pytest.mark.parametrize("n_source, n_target", [(1000, 20), (50, 50), (30, 300)])
@pytest.mark.parametrize("eps", [0.0, 0.05, 0.2])
def test_optimal_classifier_recovers_ratio(n_source, n_target, eps):
    p, q = _analytic_problem()
    pi_s, pi_t = n_source / (n_source + n_target), n_target / (n_source + n_target)
    d = pi_s * p / (pi_s * p + pi_t * q)
    d_eps = (1 - eps) * d + eps * (1 - d)
    logit = torch.log(d_eps / (1 - d_eps))
    log_r = classifier_log_ratio(logit, n_source, n_target, eps)
    assert torch.allclose(log_r, torch.log(q / p), atol=1e-10, rtol=0)
    # the logit is the population optimum of classifier_loss (zero gradient of the expected loss)
    logit_var = logit.clone().requires_grad_(True)
    labels = torch.cat([torch.ones(4, dtype=F64), torch.zeros(4, dtype=F64)])
    weights = torch.cat([pi_s * p, pi_t * q])
    per_row = torch.stack([classifier_loss(logit_var[i % 4 : i % 4 + 1], labels[i : i + 1], eps) for i in range(8)])
    (per_row * weights).sum().backward()
    assert logit_var.grad.abs().max() < 1e-12
    # defects: no prior correction / no smoothing inversion give a wrong level or a wrong shape
    if n_source != n_target:
        bias = classifier_log_ratio(logit, 1, 1, eps) - torch.log(q / p)
        assert torch.allclose(bias, torch.full_like(bias, -math.log(n_source / n_target)), atol=1e-10)
    if eps > 0:
        raw = classifier_log_ratio(logit, n_source, n_target, 0.0)
        assert (raw - torch.log(q / p)).abs().max() > 1e-3


@settings(max_examples=100)
@given(d=st.floats(1e-6, 1 - 1e-6), eps=st.floats(0.0, 0.45), ns=st.integers(1, 10**5), nt=st.integers(1, 10**5))
def test_classifier_log_ratio_property(d, eps, ns, nt):
    d_eps = (1 - eps) * d + eps * (1 - d)
    logit = torch.tensor([math.log(d_eps) - math.log1p(-d_eps)], dtype=F64)
    out = float(classifier_log_ratio(logit, ns, nt, eps))
    expected = math.log((1 - d) / d) + math.log(ns / nt)
    assert abs(out - expected) < 1e-6 * (1 + abs(expected))


def test_classifier_ratio_edges_and_validation():
    assert torch.equal(classifier_log_ratio(torch.tensor([2.0]), 10, 10), torch.tensor([-2.0], dtype=F64))
    extreme = classifier_log_ratio(torch.tensor([40.0, -40.0]), 10, 10, 0.1)
    assert torch.isfinite(extreme).all() and extreme[0] < -100 and extreme[1] > 100
    with pytest.raises(ValueError, match="smoothing"):
        classifier_log_ratio(torch.zeros(1), 1, 1, 0.5)
    with pytest.raises(ValueError, match="n_target"):
        classifier_log_ratio(torch.zeros(1), 1, 0)
    with pytest.raises(ValueError, match="label"):
        classifier_loss(torch.zeros(2), torch.tensor([0.0, 0.5]))
    smoothed = classifier_loss(torch.zeros(1), torch.ones(1), 0.1)
    assert abs(float(smoothed) - math.log(2)) < 1e-6


def test_noisy_classifier_batch():
    sched = LogLinearSchedule()
    proc = MaskedProcess(4, sched)
    xs = torch.randint(0, 4, (5, 6), generator=gen())
    xt = torch.randint(0, 4, (3, 6), generator=gen(1))
    z, t, labels = noisy_classifier_batch(xs, xt, proc, gen(2))
    assert z.shape == (8, 6) and t.shape == (8,) and torch.equal(labels, torch.tensor([1.0] * 5 + [0.0] * 3))
    x = torch.cat([xs, xt])
    assert torch.equal(z[z != 4], x[z != 4])
    z2, t2, _ = noisy_classifier_batch(xs, xt, sched, gen(2), mask_id=103)
    assert torch.equal(t, t2) and torch.equal(z2 == 103, z == 4)
    with pytest.raises(ValueError, match="mask_id is required"):
        noisy_classifier_batch(xs, xt, sched, gen())
    with pytest.raises(ValueError, match="masked"):
        noisy_classifier_batch(xs, xt, UniformProcess(4, sched), gen())


# ------------------------------------------------------------------ ratio regression
def _posterior_problem():
    """A small enumerable pair of laws and, for every noisy z, the posterior p(x | z) and r_0(x)."""
    k, length = 2, 3
    g = gen(5)
    p = torch.rand(k**length, generator=g, dtype=F64) + 0.05
    q = torch.rand(k**length, generator=g, dtype=F64) ** 3 + 0.01
    p, q = p / p.sum(), q / q.sum()
    oracle = EnumerationOracle(LawPair.from_tables(p, q, k, length), MaskedProcess(k, LogLinearSchedule()))
    t = 0.5
    post = oracle.clean_posterior(t, "p")  # [z, x]
    seen = oracle.noisy_marginal(t, "p") > 0
    return oracle, post[seen], oracle.ratio(t)[seen], oracle.expected_log_clean_ratio(t)[seen], torch.log(q / p)


@pytest.mark.parametrize("space", ["ratio", "log"])
def test_regression_minimisers(space):
    oracle, post, ratio, e_log, log_r0 = _posterior_problem()
    n_z, n_x = post.shape
    minimiser = torch.log(ratio) if space == "ratio" else e_log
    pred = minimiser.clone().requires_grad_(True)
    per = ratio_regression_loss(
        pred[:, None].expand(n_z, n_x), log_r0[None, :].expand(n_z, n_x), space, reduction="none"
    ).reshape(n_z, n_x)
    (per * post).sum().backward()
    assert pred.grad.abs().max() < 1e-12
    # closed forms: ratio space -> E[r_0 | z] = r(z); log space -> E[log r_0 | z]
    assert torch.allclose(ratio, post @ log_r0.exp(), atol=1e-12)
    assert torch.allclose(e_log, post @ log_r0, atol=1e-12)


def test_log_space_regression_is_jensen_biased():
    _, post, ratio, e_log, _ = _posterior_problem()
    gap = torch.log(ratio) - e_log
    assert (gap >= -1e-12).all() and gap.max() > 1e-2  # strict where the posterior is not a point mass


def test_regression_fit_converges_to_conditional_mean():
    _, post, ratio, _, log_r0 = _posterior_problem()
    n_z, n_x = post.shape
    pred = torch.zeros(n_z, dtype=F64, requires_grad=True)
    opt = torch.optim.LBFGS([pred], lr=1, max_iter=200, tolerance_grad=1e-14, tolerance_change=0, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        per = ratio_regression_loss(pred[:, None].expand(n_z, n_x), log_r0[None, :].expand(n_z, n_x), "ratio", reduction="none")
        loss = (per.reshape(n_z, n_x) * post).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert torch.allclose(pred.detach().exp(), ratio, atol=1e-6)


def test_regression_stability_and_validation():
    pred = torch.tensor([500.0, -500.0], requires_grad=True)
    loss = ratio_regression_loss(pred, torch.tensor([0.0, 0.0]), "ratio")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    with pytest.raises(ValueError, match="space"):
        ratio_regression_loss(pred, pred, "odds")
    with pytest.raises(ValueError, match="target_log_r0"):
        ratio_regression_loss(pred, torch.zeros(3))


def test_cycle_loss():
    pred = torch.tensor([0.1, -0.3], requires_grad=True)
    target = torch.tensor([0.5, 0.0], requires_grad=True)
    loss = cycle_loss(pred, target, weight=0.1)
    assert torch.allclose(loss, 0.1 * ratio_regression_loss(pred, target.detach()))
    loss.backward()
    assert target.grad is None and pred.grad is not None
    assert float(cycle_loss(pred, target, weight=0.0).detach()) == 0.0


# ------------------------------------------------------------------ planner
def test_planner_targets_and_loss():
    k, mask = 3, 3
    x = torch.tensor([[0, 1, 2, 0]])
    z = torch.tensor([[3, 3, 2, 3]])
    logits = torch.tensor([[[5.0, 0, 0], [5.0, 0, 0], [0, 0, 5.0], [0, 0, 5.0]]])
    lp = subs_log_probs(logits, z, mask)
    targets = planner_targets(lp, x, z, mask)
    assert torch.equal(targets, torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    masked = z == mask
    scores = torch.tensor([[2.0, -1.0, 7.0, 0.5]], requires_grad=True)
    loss = planner_loss(scores, targets, masked)
    manual = torch.nn.functional.binary_cross_entropy_with_logits(scores[masked], targets[masked])
    assert torch.allclose(loss, manual)
    loss.backward()
    assert scores.grad[0, 2] == 0  # unmasked positions do not count
    none = planner_loss(scores, targets, torch.zeros_like(masked))
    assert float(none.detach()) == 0.0 and none.requires_grad
    with pytest.raises(ValueError, match="must agree"):
        planner_targets(lp, x[:, :2], z, mask)
