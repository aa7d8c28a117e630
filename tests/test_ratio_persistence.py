"""A fitted ratio model saved and reloaded (every estimator), moved between devices; fit_or_load, the one
load-or-fit-and-save path of the applications (a saved fit is reloaded without training, a damaged file
is refitted, no path means no file, a denoiser reaches only the estimators that need one, bad keys, paths
and devices refused before training); and the Markov benchmark's ratio-training path
(markov.components.train_ratio) keyed by estimator, budget and denoiser."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gtl_verify.estimators import (ESTIMATORS, EstimatorBudget, classifiers, fit_or_load, get_estimator, load_fitted,
                                   on_device, save_fitted, site_estimators)
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
Z = torch.tensor([[0, 3, 1, 3], [3, 3, 2, 0]])


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
    info = store.components["ratio-guided-likelihood"]
    assert store.trained == ["ratio-guided-likelihood"] and info["parameters"] > 0 and info["estimator"] == "guided-likelihood"
    assert info["train_seconds"] > 0
    reloaded = ComponentStore(tmp_path)
    again = _train(reloaded)
    assert reloaded.trained == [] and "train_seconds" not in reloaded.components["ratio-guided-likelihood"]
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


def test_a_file_recording_more_of_its_key_than_asked_for_is_reloaded(tmp_path, monkeypatch):
    """Files saved with the whole key beside its hash (the language pipeline's, before the store
    fitted every app's ratio) reload under a request for the hash; a differing item still refuses."""
    path = tmp_path / "ratio.pt"
    model = _fit(path, {"config_hash": "abc", "key": {"fraction": 0.05}}).model
    _no_training(monkeypatch)
    again = _fit(path, {"config_hash": "abc"})
    assert not again.trained and torch.equal(model.single_site(_noisy()), again.model.single_site(_noisy()))
    with pytest.raises(ValueError, match="written for another estimator or key"):
        _fit(path, {"config_hash": "abd"})
    with pytest.raises(ValueError, match="written for another estimator or key"):
        _fit(path, {"config_hash": "abc", "seed": 1})


def test_an_empty_key_is_refused_and_an_odd_saved_key_is_another_key(tmp_path, monkeypatch):
    """An empty asked meta matched any saved file; a tensor in a saved meta raised torch's RuntimeError."""
    path = tmp_path / "ratio.pt"
    _fit(path, {"config_hash": "abc"})
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match=r"^meta must be a non-empty dict .*got \{\}$"):
        fit_or_load("guided-likelihood", path, {}, SOURCE, TARGET, BUDGET, schedule=SCHEDULE, vocab_size=3,
                    denoiser=ORACLE.source)
    payload = torch.load(path, weights_only=False)
    payload["meta"] = {"config_hash": torch.tensor([1, 2])}
    torch.save(payload, path)
    for asked in ({"config_hash": 1}, {"config_hash": "abc"}):
        with pytest.raises(ValueError, match=f"ratio model file {path} was written for another estimator or key"):
            _fit(path, asked)
    payload["meta"] = {"config_hash": 1.0}
    torch.save(payload, path)
    with pytest.raises(ValueError, match="written for another estimator or key"):
        _fit(path, {"config_hash": 1})  # equal value, another type: not the same key


def test_a_file_without_a_fitted_model_is_named(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="must hold 'estimator' and 'parts'"):
        load_fitted(tmp_path / "other.pt", "paper")


# ------------------------------------------------------------------ fit_or_load
def _fit(path, meta=None, name="guided-likelihood"):
    return fit_or_load(name, path, meta or {"key": 1}, SOURCE, TARGET, BUDGET, schedule=SCHEDULE, vocab_size=3,
                       denoiser=ORACLE.source, seed=4)


def _no_training(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a saved fit must be reloaded, not trained again")

    monkeypatch.setattr(site_estimators, "train", forbidden)


def test_a_saved_fit_is_reloaded_without_training(tmp_path, monkeypatch):
    path = tmp_path / "ratio.pt"
    first = _fit(path)
    assert first.trained and path.is_file()
    _no_training(monkeypatch)
    again = _fit(path)
    assert not again.trained
    assert torch.equal(first.model.single_site(Z), again.model.single_site(Z))
    model, trained = again  # unpacks as (model, trained)
    assert model is again.model and trained is False


def test_a_damaged_file_is_refitted_and_saved_again(tmp_path):
    path = tmp_path / "ratio.pt"
    first = _fit(path)
    path.write_bytes(b"not a torch file")
    with pytest.warns(DamagedCacheWarning, match="ratio.pt"):
        redone = _fit(path)
    assert redone.trained and path.is_file()
    assert torch.equal(first.model.single_site(Z), redone.model.single_site(Z))  # same seed, same fit
    assert not _fit(path).trained


def test_another_key_in_the_file_is_refused(tmp_path):
    path = tmp_path / "ratio.pt"
    _fit(path, {"key": 1})
    with pytest.raises(ValueError, match="another estimator or key"):
        _fit(path, {"key": 2})


def test_no_path_fits_every_time_and_writes_nothing(tmp_path):
    assert _fit(None).trained and _fit(None).trained
    assert list(tmp_path.iterdir()) == []


def test_the_denoiser_reaches_only_the_estimators_that_need_it(monkeypatch):
    seen = []
    real = classifiers.NoisyClassifier._fit

    def spy(self, inputs, budget):
        seen.append(inputs.denoiser)
        return real(self, inputs, budget)

    monkeypatch.setattr(classifiers.NoisyClassifier, "_fit", spy)
    assert not get_estimator("noisy-classifier").needs_denoiser
    _fit(None, name="noisy-classifier")
    assert seen == [None]


def test_bad_input_is_refused_before_any_training(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match="unknown ratio estimator 'kernel'"):
        _fit(tmp_path / "r.pt", name="kernel")
    with pytest.raises(ValueError, match="needs the frozen source denoiser"):
        fit_or_load("guided-likelihood", tmp_path / "r.pt", {"key": 1}, SOURCE, TARGET, BUDGET, schedule=SCHEDULE, vocab_size=3)
    assert not (tmp_path / "r.pt").exists()


def test_a_fit_trains_on_the_device_it_is_given():
    """``device`` reaches every network of a fit (the parts are on it) and, on the CPU, an explicit
    device gives the default fit bit for bit."""
    default = _fit(None).model
    explicit = fit_or_load("guided-likelihood", None, {"key": 1}, SOURCE, TARGET, BUDGET, schedule=SCHEDULE,
                           vocab_size=3, denoiser=ORACLE.source, seed=4, device=torch.device("cpu")).model
    assert torch.equal(default.increment(Z), explicit.increment(Z))
    for name in ("guided-likelihood", "paper"):
        model = fit_or_load(name, None, {"key": 1}, SOURCE, TARGET, BUDGET, schedule=SCHEDULE, vocab_size=3,
                            denoiser=ORACLE.source, seed=4, device="cpu").model
        assert {p.device.type for net in model.parts.values() for p in net.parameters()} == {"cpu"}


@pytest.mark.parametrize("meta, match", [
    ({"path": __import__("pathlib").Path("runs")}, r"meta\['path'\] must be plain data .*PosixPath"),
    ({"lr": float("nan")}, r"meta\['lr'\] must be a finite float"),
    ({"grid": [1, {"x": torch.tensor(1.0)}]}, r"meta\['grid'\]\[1\]\['x'\] must be plain data .*Tensor"),
    ({1: "a"}, "meta keys must be str, got 1"),
    ([("key", 1)], "meta must be a dict"),
])
def test_a_key_that_would_not_reload_equal_is_refused_before_training(tmp_path, monkeypatch, meta, match):
    """A key a saved file does not give back equal (a Path fails the tensors-only reload, NaN is not
    equal to itself) would make every run refit and overwrite the file: refused before training."""
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match=match) as info:
        _fit(tmp_path / "ratio.pt", meta)
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []


def test_a_path_where_no_file_can_be_saved_is_refused_before_training(tmp_path, monkeypatch):
    """A folder, or a path under a file, fails at save time: checked before the fit."""
    _no_training(monkeypatch)
    (tmp_path / "plain").write_text("x")
    with pytest.raises(ValueError, match=r"^path .* is a folder, expected a file path$"):
        _fit(tmp_path)
    with pytest.raises(ValueError, match=r"^path .*ratio\.pt cannot be written: .*plain exists and is not a folder$"):
        _fit(tmp_path / "plain" / "ratio.pt")


def test_a_path_in_a_new_folder_is_fitted_and_saved_there(tmp_path):
    path = tmp_path / "a" / "b" / "ratio.pt"
    assert _fit(path).trained and path.is_file() and not _fit(path).trained


def test_a_key_mismatch_names_both_keys(tmp_path):
    path = tmp_path / "ratio.pt"
    _fit(path, {"key": 1})
    with pytest.raises(ValueError, match=r"meta \{'key': 1\}; asked for 'guided-likelihood', meta \{'key': 2\}"):
        _fit(path, {"key": 2})


def test_a_device_this_machine_lacks_is_refused_with_or_without_a_saved_fit(tmp_path, monkeypatch):
    """fit_or_load checked ``device`` only when it trained (a saved fit hid a bad device), and
    on_device failed deep in torch (an invalid string, cuda without a GPU)."""
    path = tmp_path / "ratio.pt"
    model = _fit(path).model
    _no_training(monkeypatch)
    missing = f"cuda:{torch.cuda.device_count()}"
    for device, match in (("gpu0", "^device must be cpu, cuda, cuda:N or mps, got 'gpu0'$"),
                          (missing, f"^device {missing}: (CUDA is not available|only .* visible)")):
        with pytest.raises(ValueError, match=match):
            fit_or_load("guided-likelihood", path, {"key": 1}, SOURCE, TARGET, BUDGET, schedule=SCHEDULE, vocab_size=3,
                        denoiser=ORACLE.source, seed=4, device=device)
        with pytest.raises(ValueError, match=match):
            on_device(model, device)


@pytest.mark.parametrize("damage", ["missing weight", "misshapen weight", "parts not a dict", "missing spec", "extra part"])
def test_a_file_whose_parts_do_not_build_is_damaged_and_refitted(tmp_path, damage):
    """A readable file of the right estimator and key whose parts do not build failed with a raw
    multi-line RuntimeError, KeyError or AttributeError; it is a damaged file: warned, refitted."""
    path = tmp_path / "ratio.pt"
    first = _fit(path)
    payload = torch.load(path, weights_only=True)
    part = payload["parts"]["increments"]
    if damage == "missing weight":
        part["state_dict"].popitem()
    elif damage == "misshapen weight":
        part["spec"]["config"]["hidden"] *= 2
    elif damage == "parts not a dict":
        payload["parts"] = [part]
    elif damage == "missing spec":
        del part["spec"]
    else:
        payload["parts"]["extra"] = part
    torch.save(payload, path)
    with pytest.warns(DamagedCacheWarning, match="ratio.pt .*parts do not build"):
        redone = _fit(path)
    assert redone.trained and torch.equal(first.model.single_site(Z), redone.model.single_site(Z))
    assert not _fit(path).trained
