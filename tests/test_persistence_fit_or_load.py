"""gtl_verify.estimators.fit_or_load, the one load-or-fit-and-save path of the applications: a saved
fit is reloaded without training, a damaged file is refitted, no path means no file, and a
denoiser reaches only the estimators that need one."""

from __future__ import annotations

import pytest
import torch

from gtl_verify.estimators import EstimatorBudget, fit_or_load, get_estimator, on_device, site_estimators
from gtl_verify.estimators import classifiers
from gtl_verify.schedules import LogLinearSchedule
from gtl_verify.storage import DamagedCacheWarning
from markov.oracle import PairOracle
from markov.presets import make_pair

SCHEDULE = LogLinearSchedule()
PAIR = make_pair("diagonal", vocab_size=3)
ORACLE = PairOracle(PAIR)
GEN = torch.Generator().manual_seed(0)
SOURCE, TARGET = PAIR.source.sample(40, 4, GEN), PAIR.target.sample(12, 4, GEN)
BUDGET = EstimatorBudget(steps=3, batch_size=8, hidden=8, blocks=1, heads=2)
Z = torch.tensor([[0, 3, 1, 3], [3, 3, 2, 0]])


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
        fit_or_load("guided-likelihood", tmp_path / "r.pt", {}, SOURCE, TARGET, BUDGET, schedule=SCHEDULE, vocab_size=3)
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
    with pytest.raises(ValueError, match="path must name a file .*got the folder"):
        _fit(tmp_path)
    with pytest.raises(ValueError, match="its folder cannot be created"):
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
    for device, match in (("gpu0", "device must name a torch device"), (missing, "device must be one this machine has")):
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
