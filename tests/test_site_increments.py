"""The stabilised guided step reads a single-site model's increments: one network pass per step.

A :class:`~gtl_verify.estimators.SiteRatioModel` gives its sequence level log r(z) by telescoping
(up to L passes); the stabilised step normalises over each position's candidates, so it only needs
the increments log r(z^{i<-v}) - log r(z). These tests hold the increment path to the full
single-site path: the same exact law, one pass per row and step, and the unstabilised rule (which
does need the level) unchanged.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gtl_verify import guidance
from gtl_verify.amortised import SingleSiteRatioNet
from gtl_verify.estimators import SiteRatioModel
from gtl_verify.exact_law import ancestral_law
from gtl_verify.networks import BackboneConfig
from gtl_verify.protocols import SingleSiteIncrement, SingleSiteRatio
from gtl_verify.rules import GTL
from gtl_verify.samplers import SamplerConfig, ancestral_sample
from gtl_verify.schedules import LogLinearSchedule
from gtl_verify.testing import exact_components
from markov.presets import make_pair

K, L = 3, 4
SCHED = LogLinearSchedule()


def _model(seed: int = 0) -> SiteRatioModel:
    torch.manual_seed(seed)
    net = SingleSiteRatioNet(BackboneConfig(vocab_size=K, num_embeddings=K + 1, max_length=L, hidden=16, blocks=1, heads=2),
                             mask_id=K, level_head=False)
    for p in net.parameters():  # a non-trivial ratio: the zero-initialised head would give r = 1
        torch.nn.init.normal_(p, std=0.2)
    return SiteRatioModel("guided-likelihood", net)


class SingleSiteOnly:
    """The model without ``increment``: the step must read log r(z) + increments from ``single_site``."""

    def __init__(self, model: SiteRatioModel) -> None:
        self.model = model

    def __call__(self, z, t=None):
        return self.model(z, t)

    def single_site(self, z, t=None):
        return self.model.single_site(z, t)


def _states(n: int = 32, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(0, K, (n, L), generator=g)
    return torch.where(torch.rand(n, L, generator=g) < 0.5, torch.full_like(z, K), z)


def test_increments_are_single_site_minus_the_level_and_zero_where_observed():
    model = _model()
    z = _states()
    inc, site, level = model.increment(z), model.single_site(z), model(z)
    masked = (z == K)[..., None].expand(-1, -1, K)
    assert isinstance(model, SingleSiteIncrement) and isinstance(model, SingleSiteRatio)
    assert torch.allclose(inc[masked], (site - level[:, None, None])[masked], atol=1e-5)
    assert bool((inc[~masked] == 0).all())
    assert float(inc[masked].abs().max()) > 0.1  # the check above compares non-trivial values


def test_relative_scores_differ_from_absolute_by_one_constant_per_sequence():
    model = _model()
    z = _states()
    positions = (z == K).nonzero()
    tokens = torch.arange(K).expand(len(positions), K)
    absolute = guidance.score_candidates(model, z, positions, tokens)
    relative = guidance.score_candidates(model, z, positions, tokens, relative=True)
    shift = absolute - relative  # [M, K]: one value per row b
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-5)
    per_row = {}
    for (b, _), c in zip(positions.tolist(), shift[:, 0].tolist()):
        per_row.setdefault(b, []).append(c)
    assert all(max(v) - min(v) < 1e-5 for v in per_row.values())
    # a model without increments: relative scores are the absolute ones
    plain = guidance.score_candidates(SingleSiteOnly(model), z, positions, tokens, relative=True)
    assert torch.equal(plain, absolute)


@pytest.mark.parametrize("candidates", [None, 2])
@pytest.mark.parametrize("gamma", [0.5, 1.0, 3.0])
def test_stabilised_law_from_increments_equals_the_law_from_single_site(candidates, gamma):
    comp = exact_components(make_pair("dirichlet", vocab_size=K, seed=3))
    model = _model(seed=2)
    cfg = SamplerConfig(1, L, steps=3, gamma=gamma, rule=GTL(candidates=candidates))
    fast = ancestral_law(comp.source, model, SCHED, cfg)
    full = ancestral_law(comp.source, SingleSiteOnly(model), SCHED, cfg)
    assert float((fast.clean - full.clean).abs().sum()) / 2 < 1e-6
    assert abs(float(fast.clean.sum()) - 1.0) < 1e-12


def test_unstabilised_rule_still_reads_the_level():
    """Without the stabiliser the stay slot is weighted by r(z)^gamma, so the rule reads the level
    log r(z) beside absolute candidate scores: the same law as the single-site path, and a level
    inconsistent with the scores changes it."""
    comp = exact_components(make_pair("dirichlet", vocab_size=K, seed=3))
    model = _model(seed=2)
    cfg = SamplerConfig(1, L, steps=3, gamma=1.0, rule=GTL(stabilise=False))
    a = ancestral_law(comp.source, model, SCHED, cfg)
    b = ancestral_law(comp.source, SingleSiteOnly(model), SCHED, cfg)
    assert float((a.clean - b.clean).abs().sum()) / 2 < 1e-6

    class ShiftedLevel(SingleSiteOnly):  # the stay slot's level 2 nats above the candidates' level
        def __call__(self, z, t=None):
            return self.model(z, t) + 2.0

    c = ancestral_law(comp.source, ShiftedLevel(model), SCHED, cfg)
    assert float((a.clean - c.clean).abs().sum()) / 2 > 1e-2


def test_guided_sampling_costs_one_increment_pass_per_row_and_step():
    comp = exact_components(make_pair("dirichlet", vocab_size=K, seed=3))
    b = 16
    model = _model(seed=2)
    res = ancestral_sample(comp.source, model, SCHED, SamplerConfig(b, L, steps=L, gamma=1.0), torch.Generator().manual_seed(0))
    assert res.ratio_passes == 0 and res.single_site_passes > 0
    assert model.passes.sequences == res.single_site_passes <= b * L  # counted passes = network passes
    # reading single_site instead: the telescoped level adds a pass per observed position
    slow = _model(seed=2)
    ancestral_sample(comp.source, SingleSiteOnly(slow), SCHED, SamplerConfig(b, L, steps=L, gamma=1.0),
                     torch.Generator().manual_seed(0))
    assert slow.passes.sequences > 2 * model.passes.sequences


@pytest.mark.parametrize("z", [[[0, K + 1, K, K]], [[-1, K, K, K]]])
def test_a_token_outside_the_vocabulary_and_mask_is_refused_by_the_telescoped_level(z):
    """The telescoping gathers increments at z's tokens before any pass sees z: a token beyond the
    mask id used to fail in an index error, now one ValueError naming z."""
    with pytest.raises(ValueError, match=rf"z has a token outside 0..{K}"):
        _model()(torch.tensor(z))


class TableRatio:
    """A user ratio model from a table of log r(z) over every partly masked z ([K + 1]^L states):
    ``single_site`` and ``increment`` enumerate z^{i<-v}; ``shift`` adds c(z) to the increments of
    each sequence (consistent up to a constant per sequence: the stabilised law must not move)."""

    def __init__(self, log_r: torch.Tensor, shift: torch.Tensor | None = None) -> None:
        self.log_r, self.shift = log_r, shift
        self.weights = (K + 1) ** torch.arange(L - 1, -1, -1)

    def _index(self, z: torch.Tensor) -> torch.Tensor:
        return (z * self.weights).sum(-1)

    def __call__(self, z, t=None):
        return self.log_r[self._index(z)]

    def single_site(self, z, t=None):
        cand = z[:, None, None, :].expand(-1, L, K, -1).clone()  # [B, L, K, L]
        eye = torch.eye(L, dtype=torch.bool)[None, :, None, :]
        cand = torch.where(eye, torch.arange(K)[None, None, :, None], cand)
        return self.log_r[self._index(cand)]

    def increment(self, z, t=None):
        d = self.single_site(z, t) - self(z, t)[:, None, None]
        if self.shift is not None:
            d = d + self.shift[self._index(z)][:, None, None]
        return torch.where((z == K)[..., None], d, torch.zeros_like(d))


class IncrementOnly:
    """A model with ``increment`` and a sequence ratio but no ``single_site``."""

    def __init__(self, model: TableRatio) -> None:
        self.model = model

    def __call__(self, z, t=None):
        return self.model(z, t)

    def increment(self, z, t=None):
        return self.model.increment(z, t)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.0, 4.0), gamma=st.floats(0.0, 3.0),
       candidates=st.sampled_from([None, 1, 2]), shifted=st.booleans(), steps=st.integers(1, 4))
def test_stabilised_law_is_the_same_from_increments_single_site_and_sequence_scores(seed, scale, gamma, candidates, shifted, steps):
    """Over random ratio tables: the stabilised GTL law from a consistent ``increment`` (shifted or
    not by a constant per sequence), from ``single_site`` and from candidate sequence scores agree."""
    g = torch.Generator().manual_seed(seed)
    log_r = scale * torch.randn((K + 1) ** L, generator=g, dtype=torch.float64)
    shift = 5.0 * torch.randn((K + 1) ** L, generator=g, dtype=torch.float64) if shifted else None
    comp = exact_components(make_pair("dirichlet", vocab_size=K, seed=seed % 7))
    cfg = SamplerConfig(1, L, steps=steps, gamma=gamma, rule=GTL(candidates=candidates))
    laws = [ancestral_law(comp.source, m, SCHED, cfg).clean for m in
            (TableRatio(log_r, shift), IncrementOnly(TableRatio(log_r, shift)), SingleSiteOnly(TableRatio(log_r)),
             TableRatio(log_r).__call__)]
    for law in laws[1:]:
        assert float((law - laws[0]).abs().sum()) / 2 < 1e-9


def test_an_increment_only_model_pays_one_pass_and_the_unstabilised_rule_scores_candidates():
    """No ``single_site``: the stabilised step reads ``increment``; the unstabilised rule scores the
    candidate sequences with ``__call__`` (the same law as the full table)."""
    g = torch.Generator().manual_seed(0)
    table = TableRatio(torch.randn((K + 1) ** L, generator=g, dtype=torch.float64))
    comp = exact_components(make_pair("dirichlet", vocab_size=K, seed=3))
    res = ancestral_sample(comp.source, IncrementOnly(table), SCHED, SamplerConfig(8, L, steps=L, gamma=1.0),
                           torch.Generator().manual_seed(0))
    assert res.ratio_passes == 0 and 0 < res.single_site_passes <= 8 * L
    cfg = SamplerConfig(1, L, steps=3, gamma=1.0, rule=GTL(stabilise=False))
    a = ancestral_law(comp.source, IncrementOnly(table), SCHED, cfg).clean
    b = ancestral_law(comp.source, table, SCHED, cfg).clean
    assert float((a - b).abs().sum()) / 2 < 1e-9


@pytest.mark.parametrize("fault, error, match", [
    ("nan", guidance.ImpossibleStepError, "log-ratio is NaN at a candidate the denoiser allows"),
    ("shape", ValueError, r"ratio.increment must return shape \(1, 4, 3\), got \(1, 4, 2\)"),
    ("dtype", ValueError, "ratio.increment must return a floating tensor, got dtype torch.int64"),
])
def test_a_faulty_increment_is_named_by_the_step(fault, error, match):
    base = TableRatio(torch.zeros((K + 1) ** L, dtype=torch.float64))

    class Faulty(IncrementOnly):
        def increment(self, z, t=None):
            d = super().increment(z, t)
            return {"nan": d + float("nan"), "shape": d[..., :-1], "dtype": d.long()}[fault]

    comp = exact_components(make_pair("dirichlet", vocab_size=K, seed=3))
    with pytest.raises(error, match=match):
        ancestral_law(comp.source, Faulty(base), SCHED, SamplerConfig(1, L, steps=2, gamma=1.0))


def test_an_infinite_increment_takes_the_mass_and_values_at_observed_positions_are_ignored():
    """+inf at one allowed token: every reveal there is that token; junk (NaN, inf) at observed
    positions is never read (the convention: 0 there, unspecified for the step)."""
    base = TableRatio(torch.zeros((K + 1) ** L, dtype=torch.float64))

    class Peaked(IncrementOnly):
        def increment(self, z, t=None):
            d = super().increment(z, t)
            masked = (z == K)[..., None]
            d = torch.where(masked & (torch.arange(K) == 1), torch.full_like(d, float("inf")), d)
            return torch.where(masked, d, torch.full_like(d, float("nan")))

    comp = exact_components(make_pair("dirichlet", vocab_size=K, seed=3))
    law = ancestral_law(comp.source, Peaked(base), SCHED, SamplerConfig(1, L, steps=3, gamma=0.5)).clean
    assert float(law.max()) == pytest.approx(1.0, abs=1e-12)  # the all-1 sequence, surely


@pytest.mark.parametrize("t", [0.5, torch.tensor(0.5), torch.tensor([0.5, 0.5])])
def test_a_time_conditioned_increment_network_telescopes_with_a_scalar_time(t):
    """The telescoping passed t = None for a scalar t, so a time-conditioned network refused a t it
    had been given; every form of t gives the same level."""
    torch.manual_seed(0)
    net = SingleSiteRatioNet(BackboneConfig(vocab_size=K, num_embeddings=K + 1, max_length=L, hidden=16, blocks=1, heads=2,
                                            time_conditioning=True), mask_id=K, level_head=False)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    model = SiteRatioModel("guided-likelihood", net)
    z = torch.tensor([[0, K, 1, K], [K, K, 2, 0]])
    level = model(z, t)
    assert torch.equal(level, model(z, torch.tensor([0.5, 0.5]))) and float(level.abs().max()) > 0
    masked = (z == K)[..., None].expand(-1, -1, K)
    assert torch.allclose((model.single_site(z, t) - level[:, None, None])[masked], model.increment(z, t)[masked], atol=1e-5)


@pytest.mark.parametrize("value", [None, 0.1])
def test_an_output_that_is_not_callable_is_not_called(value):
    """``single_site`` / ``increment`` that are no methods (switched off with None, or an unrelated
    value such as a step size named ``increment``): the step scores candidate sequences. A float
    passed the runtime protocol checks (they test the attribute only) and the step called it."""
    g = torch.Generator().manual_seed(1)
    table = TableRatio(torch.randn((K + 1) ** L, generator=g, dtype=torch.float64))

    class Off(TableRatio):
        single_site = value
        increment = value

    comp = exact_components(make_pair("dirichlet", vocab_size=K, seed=3))
    cfg = SamplerConfig(1, L, steps=2, gamma=1.0)
    off = Off(table.log_r)
    assert float((ancestral_law(comp.source, off, SCHED, cfg).clean - ancestral_law(comp.source, table, SCHED, cfg).clean).abs().sum()) < 1e-9
    res = ancestral_sample(comp.source, off, SCHED, SamplerConfig(4, L, steps=2, gamma=1.0), torch.Generator().manual_seed(0))
    assert res.single_site_passes == 0 and res.ratio_passes > 0
