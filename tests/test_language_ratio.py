"""The language pipeline's density ratio (language.config.RatioConfig, language.ratio): the config
takes exactly the core registry's estimators, and a fitted model (mask id K) is read with the
pipeline's mask id of a ``full`` vocabulary."""

from __future__ import annotations

import pytest
import torch

from gtl_verify.estimators import ESTIMATORS, EstimatorBudget, get_estimator, on_device
from gtl_verify.networks import BackboneConfig, DenoiserNet
from gtl_verify.schedules import LogLinearSchedule
from language.config import RatioConfig, config_from_dict
from language.ratio import MaskMapped, estimator_denoiser, pipeline_ratio
from language.vocabulary import Vocabulary

K, L = 6, 5
FULL = Vocabulary("full", K, 2)  # the tokenizer's [MASK] = 2 inside 0..K-1
OBSERVED = Vocabulary("observed", 9, 8, torch.arange(K))  # mask id K
GEN = torch.Generator().manual_seed(0)
CLEAN = torch.tensor([0, 1, 3, 4, 5])
SOURCE = CLEAN[torch.randint(5, (30, L), generator=GEN)]
TARGET = CLEAN[torch.randint(3, (10, L), generator=GEN)]
BUDGET = EstimatorBudget(steps=2, batch_size=4, hidden=8, blocks=1, heads=2)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_the_config_takes_every_registry_estimator(name):
    assert RatioConfig(estimator=name).estimator == name
    assert config_from_dict({"ratio": {"estimator": name}}).ratio.estimator == name


@pytest.mark.parametrize("value", ["kernel", "regression", "regression-log", ""])
def test_an_unknown_estimator_is_refused_naming_the_key_and_value(value):
    with pytest.raises(ValueError) as info:
        config_from_dict({"ratio": {"estimator": value}})
    assert "ratio.estimator" in str(info.value) and repr(value) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("table, key", [("ratio", "cycle_weight"), ("ratio", "time_conditioned_classifier"),
                                        ("ratio", "max_log_ratio"), ("ratio", "space"), ("training", "noisy_classifier")])
def test_the_removed_ratio_keys_are_unknown(table, key):
    with pytest.raises(ValueError, match=rf"unknown key\(s\) \['{key}'\] in {table}"):
        config_from_dict({table: {key: {} if table == "training" else 1}})


def _denoiser() -> DenoiserNet:
    torch.manual_seed(1)
    return DenoiserNet(BackboneConfig(vocab_size=K, num_embeddings=K, max_length=L, hidden=8, blocks=1, heads=2, cond=4)).eval()


def test_a_fit_with_the_full_vocabulary_is_read_with_the_pipeline_mask():
    """Fitted with mask K against the denoiser of a full vocabulary (mask 2), the model read through
    pipeline_ratio with mask 2 gives the fitted model's outputs with mask K."""
    net = _denoiser()
    model = get_estimator("guided-likelihood").fit(SOURCE, TARGET, BUDGET, schedule=LogLinearSchedule(), vocab_size=K,
                                                   mask_id=K, denoiser=estimator_denoiser(net, FULL), seed=0)
    read = pipeline_ratio(model, FULL)
    assert isinstance(read, MaskMapped) and read.parts is model.parts and read.name == "guided-likelihood"
    z_pipeline = torch.tensor([[0, 2, 3, 2, 5], [2, 2, 2, 2, 2]])
    z_model = z_pipeline.masked_fill(z_pipeline == 2, K)
    assert torch.equal(read(z_pipeline), model(z_model))
    assert torch.equal(read.single_site(z_pipeline), model.single_site(z_model))
    assert torch.equal(read.increment(z_pipeline), model.increment(z_model))
    assert pipeline_ratio(model, OBSERVED) is model


def test_the_estimator_denoiser_reads_mask_k_as_the_pipeline_mask():
    net = _denoiser()
    z = torch.tensor([[0, K, 3, K, 5]])
    got = estimator_denoiser(net, FULL)(z, None)
    assert got.shape == (1, L, K) and net.training is False
    masked = (z == K)[0]
    assert torch.allclose(got[0, masked].exp().sum(-1), torch.ones(int(masked.sum())), atol=1e-5)
    assert torch.isneginf(got[0, masked, 2]).all()  # SUBS: the mask is never a clean token
    assert torch.equal(got[0, ~masked].argmax(-1), z[0, ~masked])  # observed positions are kept


def test_a_sequence_only_model_offers_no_single_site_output():
    model = get_estimator("noisy-classifier").fit(SOURCE, TARGET, BUDGET, schedule=LogLinearSchedule(), vocab_size=K,
                                                  mask_id=K, seed=0)
    read = pipeline_ratio(model, FULL)
    assert not hasattr(read, "single_site") and not hasattr(read, "increment")
    z = torch.tensor([[0, 2, 3, 2, 5]])
    assert torch.equal(read(z), model(z.masked_fill(z == 2, K)))


def _mapped(name: str = "noisy-classifier"):
    est = get_estimator(name)
    kw = {"denoiser": estimator_denoiser(_denoiser(), FULL)} if est.needs_denoiser else {}
    model = est.fit(SOURCE, TARGET, BUDGET, schedule=LogLinearSchedule(), vocab_size=K, mask_id=K, seed=0, **kw)
    return model, pipeline_ratio(model, FULL)


def test_moving_a_mapped_model_keeps_the_mask_mapping(monkeypatch):
    """on_device of a MaskMapped used to reassemble its parts into the bare fitted model (mask K):
    the pipeline's mask 2 then read as a clean token. It moves the fitted model and keeps the map.
    (The meta device stands for a second device of this machine.)"""
    from gtl_verify.estimators import persistence

    monkeypatch.setattr(persistence, "check_device", lambda name, device: torch.device(device))
    model, read = _mapped()
    assert on_device(read, "cpu") is read
    moved = on_device(read, "meta")
    assert isinstance(moved, MaskMapped) and moved.mask_id == 2 and moved.vocab_size == K
    assert {p.device.type for net in moved.parts.values() for p in net.parameters()} == {"meta"}
    assert {p.device.type for net in model.parts.values() for p in net.parameters()} == {"cpu"}


@pytest.mark.parametrize("token", [K, K + 3, -1])
def test_a_token_outside_the_pipeline_vocabulary_is_refused(token):
    """K is the estimators' mask, no pipeline token: mapped silently it read as a mask."""
    _, read = _mapped("guided-likelihood")
    z = torch.tensor([[0, token, 3, 2, 5]])
    for call in (read, read.single_site, read.increment):
        with pytest.raises(ValueError, match=rf"z has a token outside 0..{K - 1}"):
            call(z)


def test_a_mapped_model_copies_and_pickles_with_what_it_offers():
    import copy
    import pickle

    for name in ("guided-likelihood", "noisy-classifier"):
        model, read = _mapped(name)
        z = torch.tensor([[0, 2, 3, 2, 5]])
        for clone in (copy.copy(read), copy.deepcopy(read), pickle.loads(pickle.dumps(read))):
            assert isinstance(clone, MaskMapped) and hasattr(clone, "increment") == hasattr(model, "increment")
            assert torch.equal(clone(z), read(z))


@pytest.mark.parametrize("value, close", [("guided_likelihood", "guided-likelihood"), ("Guided-Likelihood", "guided-likelihood"),
                                          (" telescoping-nce", "telescoping-nce"), ("noisy-clasifier", "noisy-classifier"),
                                          ("kernel", None)])
def test_a_mistyped_estimator_names_the_closest_one(value, close):
    with pytest.raises(ValueError) as info:
        config_from_dict({"ratio": {"estimator": value}})
    message = str(info.value)
    assert (f"did you mean {close!r}?" in message) if close else ("did you mean" not in message)


def test_the_estimator_denoiser_refuses_the_pipeline_mask_as_a_clean_token():
    """Clean samples holding the tokenizer's [MASK] (2 in a full vocabulary) were read as masks."""
    fn = estimator_denoiser(_denoiser(), FULL)
    with pytest.raises(ValueError, match="z holds the pipeline's mask id 2 as a clean token"):
        fn(torch.tensor([[0, K, 2, K, 5]]), None)
