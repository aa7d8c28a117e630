"""A fitted ratio model saved and reloaded (every estimator), moved between devices, and the Markov
benchmark's one ratio-training path (markov.components.train_ratio) keyed by estimator, budget and denoiser."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gtl_verify.estimators import ESTIMATORS, EstimatorBudget, get_estimator, load_fitted, on_device, save_fitted
from gtl_verify.schedules import LogLinearSchedule
from gtl_verify.storage import DamagedCacheWarning
from gtl_verify.store import ComponentStore
from markov.components import ratio_budget, train_ratio
from markov.config import ModelSizes, TrainingBudget
from markov.oracle import PairOracle
from markov.presets import make_pair

SCHEDULE = LogLinearSchedule()
PAIR = make_pair("diagonal", vocab_size=3)
ORACLE = PairOracle(PAIR)
GEN = torch.Generator().manual_seed(0)
SOURCE, TARGET = PAIR.source.sample(60, 4, GEN), PAIR.target.sample(12, 4, GEN)
BUDGET = EstimatorBudget(steps=3, batch_size=8, hidden=8, blocks=1, heads=2)


def _noisy(n: int = 6) -> torch.Tensor:
    z = PAIR.source.sample(n, 4, torch.Generator().manual_seed(1))
    z[:, 1] = 3
    return z


@pytest.mark.parametrize("name", ESTIMATORS)
def test_every_estimator_reloads_to_the_same_model(tmp_path, name):
    model = get_estimator(name).fit(SOURCE, TARGET, BUDGET, schedule=SCHEDULE, vocab_size=3, denoiser=ORACLE.source)
    assert set(model.parts) == set(get_estimator(name).part_names)
    save_fitted(model, name, tmp_path / "m.pt", {"key": 1})
    again = load_fitted(tmp_path / "m.pt", name, {"key": 1})
    z = _noisy()
    assert torch.equal(model(z), again(z)) and type(again) is type(model)
    if hasattr(model, "single_site"):
        assert torch.equal(model.single_site(z), again.single_site(z))
    assert on_device(model, "cpu") is model


def test_reload_refuses_another_estimator_or_key_and_recomputes_a_damaged_file(tmp_path):
    model = get_estimator("noisy-classifier").fit(SOURCE, TARGET, BUDGET, schedule=SCHEDULE, vocab_size=3)
    path = save_fitted(model, "noisy-classifier", tmp_path / "m.pt", {"key": 1})
    with pytest.raises(ValueError, match="another estimator or key"):
        load_fitted(path, "paper", {"key": 1})
    with pytest.raises(ValueError, match="another estimator or key"):
        load_fitted(path, "noisy-classifier", {"key": 2})
    path.write_bytes(b"truncated")
    with pytest.warns(DamagedCacheWarning, match="m.pt"):
        assert load_fitted(path, "noisy-classifier") is None
    assert not path.exists() and load_fitted(path, "noisy-classifier") is None


def test_assemble_names_missing_parts_and_on_device_passes_oracles_through():
    with pytest.raises(ValueError, match=r"parts of estimator 'paper' must be \['clean_classifier', 'time_classifier', 'ratio'\]"):
        get_estimator("paper").assemble({"ratio": torch.nn.Linear(1, 1)})
    assert on_device(ORACLE, "cpu") is ORACLE and on_device(None, "cpu") is None


SIZES = ModelSizes(ratio_hidden=8, ratio_blocks=1, heads=2, denoiser_hidden=8, denoiser_blocks=1)
TRAIN = TrainingBudget(ratio_steps=3, ratio_batch_size=8)
KEY = {"preset": "diagonal", "seed": 0, "overlap": 0.0, "vocab_size": 3, "length": 4, "n_source": 60}


def _train(store, estimator="guided-likelihood", training=TRAIN, denoiser_key=None):
    return train_ratio(store, SOURCE, TARGET, estimator, SIZES, training, seed=0, key=KEY, schedule=SCHEDULE,
                       denoiser=ORACLE.source, denoiser_key=denoiser_key or {"exact": True})


def test_train_ratio_uses_the_config_budget_and_reloads_by_key(tmp_path):
    budget = ratio_budget(SIZES, TRAIN)
    assert (budget.train.steps, budget.batch_size, budget.train.lr, budget.size.hidden) == (3, 8, TRAIN.ratio_lr, 8)
    store = ComponentStore(tmp_path)
    first = _train(store)
    assert store.trained == ["ratio-guided-likelihood"] and store.components["ratio-guided-likelihood"]["parameters"] > 0
    again = _train(ComponentStore(tmp_path))
    assert torch.equal(first.single_site(_noisy()), again.single_site(_noisy()))
    fresh = ComponentStore(tmp_path)
    _train(fresh, training=dataclasses.replace(TRAIN, ratio_steps=4))  # another budget: another fit
    _train(fresh, denoiser_key={"exact": False})  # another denoiser: another fit
    _train(fresh, estimator="noisy-classifier")
    assert fresh.trained == ["ratio-guided-likelihood", "ratio-guided-likelihood", "ratio-noisy-classifier"]
    assert len(list(tmp_path.glob("ratio-*.pt"))) == 4


def test_train_ratio_names_an_unknown_estimator_or_a_missing_denoiser_key_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown ratio estimator 'magic'"):
        _train(ComponentStore(tmp_path), estimator="magic")
    with pytest.raises(ValueError, match="denoiser_key .* is required"):
        train_ratio(ComponentStore(tmp_path), SOURCE, TARGET, "telescoping-nce", SIZES, TRAIN, seed=0, key=KEY,
                    schedule=SCHEDULE, denoiser=ORACLE.source)
    assert not list(tmp_path.iterdir())


def test_a_file_without_a_fitted_model_is_named(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="must hold 'estimator' and 'parts'"):
        load_fitted(tmp_path / "other.pt", "paper")
