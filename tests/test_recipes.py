"""The shared training recipes (gtl_verify.recipes): each loss is its objective on the recipe's
batches, the runtime hooks are no-ops unless asked, and both pipelines speak one vocabulary of
ratio estimators."""

from __future__ import annotations

import pytest
import torch

from gtl_verify import recipes
from gtl_verify.networks import BackboneConfig, DenoiserNet, SequenceNet
from gtl_verify.objectives import classifier_loss, mdlm_loss, noisy_classifier_batch
from gtl_verify.schedules import LogLinearSchedule
from language.config import RatioConfig
from markov.config import MarkovConfig

K, L = 5, 6
SCHEDULE = LogLinearSchedule()


def _backbone() -> BackboneConfig:
    return BackboneConfig(vocab_size=K, num_embeddings=K + 1, max_length=L, hidden=8, blocks=1, heads=2, cond=4)


def _data(seed: int, n: int = 12) -> torch.Tensor:
    return torch.randint(K, (n, L), generator=torch.Generator().manual_seed(seed))


def test_denoiser_recipe_is_the_mdlm_loss_on_its_rows():
    torch.manual_seed(0)
    net, x = DenoiserNet(_backbone()), _data(0)
    recipe = recipes.denoiser(net, x, schedule=SCHEDULE, mask_id=K)
    assert recipe.data is x
    got = recipe.loss(net, x, torch.Generator().manual_seed(3))
    want = mdlm_loss(net, x, SCHEDULE, K, torch.Generator().manual_seed(3))
    assert torch.equal(got, want)


def test_classifier_recipes_draw_balanced_batches_and_use_their_objective():
    torch.manual_seed(0)
    net, xs, xt = SequenceNet(_backbone()), _data(1), _data(2)
    clean = recipes.clean_classifier(net, xs, xt, 8)
    x, y = clean.data(torch.Generator().manual_seed(0))
    assert x.shape == (8, L) and y.tolist() == [1.0] * 4 + [0.0] * 4
    assert torch.equal(clean.loss(net, (x, y), torch.Generator()), classifier_loss(net(x)[:, 0], y))
    noisy = recipes.noisy_classifier(net, xs, xt, 8, schedule=SCHEDULE, mask_id=K)
    b = noisy.data(torch.Generator().manual_seed(0))
    z, _, labels = noisy_classifier_batch(b[0], b[1], SCHEDULE, torch.Generator().manual_seed(5), mask_id=K)
    assert torch.equal(noisy.loss(net, b, torch.Generator().manual_seed(5)), classifier_loss(net(z)[:, 0], labels))


def test_ratio_regression_needs_target_rows_for_its_cycle_term():
    net = SequenceNet(_backbone())
    with pytest.raises(ValueError, match="target is required"):
        recipes.ratio_regression(net, _data(1), torch.zeros(12), 8, schedule=SCHEDULE, mask_id=K, space="ratio",
                                 cycle=recipes.Cycle(net, 0.1))
    with_cycle = recipes.ratio_regression(net, _data(1), torch.zeros(12), 8, schedule=SCHEDULE, mask_id=K, space="log",
                                          target=_data(2), cycle=recipes.Cycle(net, 0.1))
    batch = with_cycle.data(torch.Generator().manual_seed(0))
    assert [tuple(b.shape) for b in batch] == [(8, L), (8,), (4, L)]
    assert torch.isfinite(with_cycle.loss(net, batch, torch.Generator().manual_seed(1)))


def test_hooks_are_no_ops_on_cpu_unless_forced():
    net = DenoiserNet(_backbone())
    hooks = recipes.Hooks(bf16=True, compile=True)
    assert hooks.compiled(net) is net and hooks.sampling(net) is net
    assert not torch.is_autocast_enabled('cpu')
    with hooks.autocast():
        assert not torch.is_autocast_enabled('cpu')
    with recipes.Hooks(bf16=True, force=True).autocast():
        assert torch.is_autocast_enabled('cpu')


def test_ratio_estimator_vocabularies():
    """Both pipelines take exactly the estimators of the core registry."""
    from gtl_verify.estimators import ESTIMATORS

    for name in ESTIMATORS:
        assert MarkovConfig(ratio_estimator=name).ratio_estimator == name
        assert RatioConfig(estimator=name).estimator == name


def test_sampling_hooks_compile_and_autocast_the_networks_the_sampler_calls():
    """Forced on the CPU (aot_eager, bf16 autocast): the sampler calls the compiled network under
    autocast, gets float32 outputs within bf16 rounding of float32 eager, and draws valid tokens."""
    from gtl_verify.learned import NetworkDenoiser
    from gtl_verify.samplers import SamplerConfig, ancestral_sample

    torch.manual_seed(0)
    net = DenoiserNet(_backbone()).eval()
    hooks = recipes.Hooks(bf16=True, compile=True, backend="aot_eager", force=True)
    hooked = hooks.sampling(net)
    assert hooked is not net and hooked.config is net.config
    assert isinstance(hooked.fn, torch._dynamo.eval_frame.OptimizedModule)
    z = torch.full((3, L), K)
    z[:, ::2] = _data(4, 3)[:, ::2]
    with torch.no_grad():
        low, ref = hooked(z), net(z)
    assert low.dtype == torch.float32
    scale = max(1.0, float(ref.abs().max()))
    assert float((low - ref).abs().max()) <= 2 * 16 * 2.0**-8 * scale  # 2 D u S, D <= 16 rounding stages
    res = ancestral_sample(NetworkDenoiser(hooked, K), None, SCHEDULE,
                           SamplerConfig(num_samples=4, length=L, steps=4, gamma=0.0, final_argmax=True),
                           torch.Generator().manual_seed(0))
    assert res.tokens.shape == (4, L) and bool(((res.tokens >= 0) & (res.tokens < K)).all())


def test_language_provider_calls_its_networks_through_the_run_hooks(monkeypatch):
    from language import components

    calls = []
    run = type("R", (), {"hooks": recipes.Hooks(), "nets": {components.SOURCE: DenoiserNet(_backbone())}})()
    monkeypatch.setattr(recipes.Hooks, "sampling", lambda self, n: calls.append(n) or n)
    provider = components.Components(run, 0.5)
    assert provider.denoiser("source") is run.nets[components.SOURCE] and calls == [run.nets[components.SOURCE]]
