"""Exact diagnostics of ratio models and the estimator interface's input checks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gtl_verify.estimators import (
    ESTIMATORS,
    EstimatorBudget,
    check_fit_inputs,
    get_estimator,
    level_free_rmse,
    ratio_diagnostics,
)
from gtl_verify import recipes
from gtl_verify.config import Budget, NetSize
from gtl_verify.estimators.base import CheckedSequenceRatio
from gtl_verify.estimators.classifiers import sequence_net, noisy_classifier
from gtl_verify.training import train
from gtl_verify.objectives import mask_tokens
from gtl_verify.schedules import LogLinearSchedule
from gtl_verify.testing.strategies import chain_pairs, seeds
from markov.oracle import PairOracle
from markov.presets import make_pair

SCHEDULE = LogLinearSchedule()


class Perturbed:
    """The exact ratio with known perturbations: log r + c + a * (revealed positions) for the
    sequence, and + b at token 0 for every single-site entry."""

    def __init__(self, oracle: PairOracle, a: float = 0.0, b: float = 0.0, c: float = 0.0) -> None:
        self.oracle, self.a, self.b, self.c = oracle, a, b, c

    def __call__(self, z, t=None):
        revealed = (z != self.oracle.mask_id).sum(-1).double()
        return self.oracle(z) + self.c + self.a * revealed

    def single_site(self, z, t=None):
        site = self.oracle.single_site(z).clone()
        site[..., 0] += self.b
        return site


def heldout(pair, n: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"source": pair.source.sample(n, length, g), "target": pair.target.sample(n, length, g)}


@settings(max_examples=15, deadline=None)
@given(pair=chain_pairs(vocab=(2, 4), kinds=("random", "banded")), length=st.integers(2, 6), seed=seeds)
def test_diagnostics_are_zero_for_the_exact_ratio(pair, length, seed):
    oracle = PairOracle(pair)
    diag = ratio_diagnostics(oracle, oracle, heldout(pair, 20, length, seed), SCHEDULE, torch.Generator().manual_seed(seed))
    assert len(diag.levels) == 2 * 5
    assert diag.single_site_tv <= 1e-12
    assert diag.log_ratio_rmse <= 1e-9


@settings(max_examples=15, deadline=None)
@given(pair=chain_pairs(vocab=(2, 4), kinds=("random", "banded")), length=st.integers(2, 6), seed=seeds,
       a=st.floats(-2, 2), b=st.floats(-3, 3), c=st.floats(-10, 10), t=st.floats(0.1, 0.9))
def test_diagnostics_give_the_known_value_of_a_known_perturbation(pair, length, seed, a, b, c, t):
    oracle = PairOracle(pair)
    x = heldout(pair, 30, length, seed)["target"]
    diag = ratio_diagnostics(Perturbed(oracle, a, b, c), oracle, {"target": x}, SCHEDULE, torch.Generator().manual_seed(seed), [t])
    z = mask_tokens(x, t, SCHEDULE, oracle.mask_id, torch.Generator().manual_seed(seed))  # the same draw
    revealed = (z != oracle.mask_id).sum(-1).double()
    want_rmse = abs(a) * float(((revealed - revealed.mean()) ** 2).mean().sqrt())  # the constant c is removed
    q0 = oracle.target(z)[..., 0].exp()[z == oracle.mask_id]
    moved = q0 * math.exp(b) / (q0 * math.exp(b) + 1 - q0)  # tilting token 0 by e^b
    want_tv = float((moved - q0).abs().mean()) if q0.numel() else float("nan")
    (level,) = diag.levels
    assert level.log_ratio_rmse == pytest.approx(want_rmse, abs=1e-9)
    if q0.numel():
        assert level.single_site_tv == pytest.approx(want_tv, abs=1e-12)
        assert level.positions == q0.numel()


def test_level_free_rmse_removes_only_a_constant():
    exact = torch.tensor([0.0, 1.0, 2.0, -torch.inf])
    assert level_free_rmse(exact + 7.0, exact) == 0.0
    assert level_free_rmse(torch.tensor([0.0, 0.0, 0.0, 5.0]), exact) == pytest.approx((2 / 3) ** 0.5)


# ------------------------------------------------------------------ the interface
PAIR = make_pair("diagonal", vocab_size=3)
G = torch.Generator().manual_seed(0)
SOURCE, TARGET = PAIR.source.sample(16, 4, G), PAIR.target.sample(8, 4, G)
TINY = EstimatorBudget(steps=2, batch_size=4, hidden=8, blocks=1, heads=2)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_every_estimator_fits_and_returns_a_ratio_model(name):
    oracle = PairOracle(PAIR)
    model = get_estimator(name).fit(SOURCE, TARGET, TINY, schedule=SCHEDULE, vocab_size=3, denoiser=oracle.source, seed=1)
    z = torch.tensor([[3, 3, 3, 3], [0, 3, 1, 3], [0, 1, 2, 0]])
    log_r = model(z)
    assert log_r.shape == (3,) and log_r.dtype == torch.float64 and bool(torch.isfinite(log_r).all())
    diag = ratio_diagnostics(model, oracle, {"target": TARGET}, SCHEDULE, torch.Generator().manual_seed(0), [0.5])
    assert 0.0 <= diag.single_site_tv <= 1.0


def test_site_models_telescope_to_zero_on_the_all_mask_state():
    oracle = PairOracle(PAIR)
    model = get_estimator("telescoping-nce").fit(SOURCE, TARGET, TINY, schedule=SCHEDULE, vocab_size=3, denoiser=oracle.source)
    assert float(model(torch.full((2, 4), 3)).abs().max()) == 0.0
    z = torch.tensor([[0, 3, 3, 3]])
    assert float(model(z)[0]) == pytest.approx(float(model.increment(torch.full((1, 4), 3))[0, 0, 0]), abs=1e-6)


def fit(name="noisy-classifier", source=SOURCE, target=TARGET, **kw):
    args = {"schedule": SCHEDULE, "vocab_size": 3, **kw}
    return get_estimator(name).fit(source, target, TINY, **args)


@pytest.mark.parametrize("call, match", [
    (lambda: get_estimator("kernel-mean"), "unknown ratio estimator 'kernel-mean'"),
    (lambda: get_estimator(["paper"]), r"unknown ratio estimator \['paper'\]"),
    (lambda: fit(target=TARGET[:0]), "target must hold at least one sequence"),
    (lambda: fit(source=SOURCE[:0]), "source must hold at least one sequence"),
    (lambda: fit(target=TARGET[:, :3]), "target must have the source length 4"),
    (lambda: fit(target=TARGET.float()), "target must be a LongTensor"),
    (lambda: fit(target=TARGET + 5), "target must hold clean tokens 0..2"),
    (lambda: fit("guided-likelihood"), "'guided-likelihood' needs the frozen source denoiser"),
    (lambda: fit(mask_id=1), "mask_id must be >= vocab_size 3"),
    (lambda: fit(device="gpu0"), "^device must be cpu, cuda, cuda:N or mps, got 'gpu0'$"),
    (lambda: fit(device=None), "^device must be cpu, cuda, cuda:N or mps, got None$"),
    (lambda: fit(device="meta"), "^device must be cpu, cuda, cuda:N or mps, got 'meta'$"),
    (lambda: fit(device=torch.device("cpu", 1)), r"^device must be cpu, cuda, cuda:N or mps, got 'cpu:1'$"),
    (lambda: fit(device=f"cuda:{torch.cuda.device_count()}"), "^device cuda:.*(not available|device\\(s\\) visible)"),
    (lambda: get_estimator("paper").fit(SOURCE, TARGET, {"steps": 2}, schedule=SCHEDULE, vocab_size=3), "budget must be an EstimatorBudget"),
    (lambda: EstimatorBudget(steps=-1), "steps"),
    (lambda: EstimatorBudget(steps=0), "steps must be >= 1 for a ratio estimator's fit"),
    (lambda: EstimatorBudget(hidden=6, heads=4), "hidden must be divisible by heads=4"),
    (lambda: EstimatorBudget.from_parts({"steps": 2}, NetSize()), "train must be a gtl_verify.config.Budget"),
    (lambda: EstimatorBudget.from_parts(Budget(), None), "size must be a gtl_verify.config.NetSize"),
])
def test_bad_input_gets_a_one_line_error_naming_it(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_budget_is_the_shared_budget_and_net_size():
    b = EstimatorBudget(steps=300, batch_size=6, lr=1e-3, weight_decay=0.0, hidden=16, blocks=1, heads=2)
    assert b.train == Budget(steps=300, batch_size=6, lr=1e-3, weight_decay=0.0, warmup=30)
    assert b.size == NetSize(hidden=16, blocks=1, heads=2, cond=8)
    assert EstimatorBudget.from_parts(b.train, b.size) == b
    cfg, net = b.train_config(seed=5), b.backbone(3, 4, time_conditioning=True)
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.warmup, cfg.seed) == (300, 6, 1e-3, 30, 5)
    assert (net.hidden, net.blocks, net.heads, net.cond, net.num_embeddings, net.time_conditioning) == (16, 1, 2, 8, 4, True)


def test_classifiers_train_by_the_shared_recipes():
    """The estimators' classifiers are the pipelines' recipes: training the same seeded network on
    recipes.noisy_classifier directly gives identical weights."""
    inputs = check_fit_inputs(SOURCE, TARGET, vocab_size=3, mask_id=3, schedule=SCHEDULE, denoiser=None, seed=2,
                              needs_denoiser=False, name="noisy-classifier")
    fitted = noisy_classifier(inputs, TINY, time_conditioning=True)
    again = sequence_net(inputs, TINY, "noisy-time", True)
    recipe = recipes.noisy_classifier(again, SOURCE, TARGET, TINY.batch_size, schedule=SCHEDULE, mask_id=3,
                                      time_conditioned=True)
    train(again, recipe.loss, recipe.data, TINY.train_config(2), progress=False)
    for a, b in zip(fitted.parameters(), again.parameters()):
        assert torch.equal(a, b)


def test_nan_in_a_ratio_output_names_the_estimator():
    model = CheckedSequenceRatio("regression-ratio", lambda z, t=None: torch.full((z.shape[0],), float("nan")), {})
    with pytest.raises(ValueError, match="estimator 'regression-ratio' returned NaN in log r\\(z\\)"):
        model(torch.zeros(2, 4, dtype=torch.long))
