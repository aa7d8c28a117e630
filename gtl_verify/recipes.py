"""Training recipes of the learned components, shared by every application: what a network is
trained on and with which loss (denoiser, clean and noisy classifiers, ratio regression, planner,
TCSM correction, autoregressive source), parameterised by the masking schedule and the data.

A recipe is a :class:`Recipe` ``(data, loss)`` for :func:`gtl_verify.training.train`: ``data`` is a
LongTensor [N, L] (rows drawn by the trainer) or ``data(generator) -> batch`` (CPU data generator),
``loss(model, batch, generator) -> scalar`` (the generator on the model's device draws every time
and mask). The application keeps the rest (sizes, budgets, the component store, checkpoints).

:class:`Hooks` carries the runtime's bf16 autocast and ``torch.compile``; both are no-ops unless
asked (bf16 and compile only on CUDA, or everywhere with ``force``), and the same hooks wrap the
networks at sampling time (:meth:`Hooks.sampling`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from .baselines import ar_loss
from .learned import ClassifierRatio
from .objectives import (
    classifier_loss,
    cycle_loss,
    mask_tokens,
    mdlm_loss,
    noisy_classifier_batch,
    planner_loss,
    planner_targets,
    ratio_regression_loss,
    sample_times,
    subs_log_probs,
)
from .schedules import Schedule
from .training import balanced_batches

LossFn = Callable[[nn.Module, Any, torch.Generator], torch.Tensor]

@dataclass(frozen=True)
class Hooks:
    """bf16 autocast and ``torch.compile`` of the networks, for training and sampling.

    ``bf16`` / ``compile`` take effect on CUDA devices only, unless ``force`` (a CPU check of the GPU
    numerics: autocast on the CPU, compile with ``backend``, e.g. ``aot_eager``)."""

    device: torch.device = torch.device("cpu")
    bf16: bool = False
    compile: bool = False
    backend: str | None = None
    force: bool = False

    @property
    def _active(self) -> bool:
        return self.force or self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """A bf16 autocast context when asked, else a null context."""
        if self.bf16 and self._active:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def compiled(self, net: nn.Module) -> Callable[..., torch.Tensor]:
        """``torch.compile(net)`` when asked (it shares the parameters of ``net``), else ``net``."""
        if self.compile and self._active:
            return torch.compile(net, backend=self.backend) if self.backend else torch.compile(net)
        return net

    def sampling(self, net: nn.Module) -> nn.Module:
        """``net`` as the samplers call it: compiled and under autocast when asked; outputs are cast
        up to float32 (the adapters cast to float64 before guidance). Returns ``net`` itself when
        neither hook is on."""
        if not ((self.bf16 or self.compile) and self._active):
            return net
        return _Hooked(net, self)


class _Hooked(nn.Module):
    """A network called through :class:`Hooks` (same parameters and ``config``; float32 outputs)."""

    def __init__(self, net: nn.Module, hooks: Hooks) -> None:
        super().__init__()
        self.net, self.hooks = net, hooks
        self.fn = hooks.compiled(net)
        self.config = getattr(net, "config", None)
        if hasattr(net, "head"):
            self.head = net.head

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        with self.hooks.autocast():
            return self.fn(*args, **kwargs).float()


NO_HOOKS = Hooks()


def _caller(net: nn.Module, hooks: Hooks) -> Callable[[nn.Module], Callable[..., torch.Tensor]]:
    """``pick(model)``: the network a loss calls. The trainer's ``model`` (the data-parallel wrapper
    when distributed: its gradient all-reduce) unless the hooks compile ``net``."""
    fn = hooks.compiled(net)
    return (lambda model: model) if fn is net else (lambda model: fn)


class Recipe(NamedTuple):
    """What :func:`gtl_verify.training.train` is given: ``data`` and ``loss``."""

    data: Any
    loss: LossFn


def denoiser(net: nn.Module, data: Any, *, schedule: Schedule, mask_id: int, hooks: Hooks = NO_HOOKS) -> Recipe:
    """MDLM masked-diffusion loss (SUBS parameterisation, schedule weight; Sahoo et al. 2024 eq. 10)
    of ``net`` (a denoiser, a TCSMNet or an AR-initialised denoiser) on clean rows of ``data``."""
    pick = _caller(net, hooks)

    def loss(model, batch, gen):
        with hooks.autocast():
            return mdlm_loss(pick(model), batch, schedule, mask_id, gen)

    return Recipe(data, loss)


def autoregressive(net: nn.Module, data: torch.Tensor, *, start_id: int, hooks: Hooks = NO_HOOKS) -> Recipe:
    """Next-token cross-entropy of a causal network on ``data`` (start token ``start_id``)."""
    def loss(model, batch, gen):
        with hooks.autocast():
            return ar_loss(model, batch, start_id)

    return Recipe(data, loss)


def clean_classifier(net: nn.Module, source: torch.Tensor, target: torch.Tensor, batch_size: int, *,
                     hooks: Hooks = NO_HOOKS) -> Recipe:
    """Binary cross-entropy of P(source | x) on clean rows, balanced batches (pi_s = pi_t): the
    optimum logit is log p(x)/q(x), so log r_0(x) = -logit (THEORY section 5)."""
    draw = balanced_batches(source, target, batch_size)
    pick = _caller(net, hooks)

    def batch(gen):
        xs, xt = draw(gen)
        return torch.cat([xs, xt]), torch.cat([torch.ones(len(xs)), torch.zeros(len(xt))])

    def loss(model, b, gen):
        with hooks.autocast():
            return classifier_loss(pick(model)(b[0])[:, 0].float(), b[1])

    return Recipe(batch, loss)


def noisy_classifier(net: nn.Module, source: torch.Tensor, target: torch.Tensor, batch_size: int, *, schedule: Schedule,
                     mask_id: int, time_conditioned: bool = False, hooks: Hooks = NO_HOOKS) -> Recipe:
    """Binary cross-entropy of P(source | z_t[, t]) on masked rows of both domains (t ~ U[0, 1] per
    row, balanced): the optimum logit is log p_t(z)/q_t(z) at every t (R1), log r(z) = -logit."""
    pick = _caller(net, hooks)

    def loss(model, b, gen):
        z, t, labels = noisy_classifier_batch(b[0], b[1], schedule, gen, mask_id=mask_id)
        with hooks.autocast():
            return classifier_loss(pick(model)(z, t.float() if time_conditioned else None)[:, 0].float(), labels)

    return Recipe(balanced_batches(source, target, batch_size), loss)


@dataclass(frozen=True)
class Cycle:
    """The cycle term of a ratio regression: ``weight`` times the regression of the ratio network
    on masked target rows against a noisy classifier's log-ratio, clamped to +-``max_log_ratio``."""

    classifier: nn.Module
    weight: float


def ratio_regression(net: nn.Module, source: torch.Tensor, labels: torch.Tensor, batch_size: int, *, schedule: Schedule,
                     mask_id: int, space: str, max_log_ratio: float = 30.0, target: torch.Tensor | None = None,
                     cycle: Cycle | None = None, hooks: Hooks = NO_HOOKS) -> Recipe:
    """Regression of log r_hat(z) on pseudo labels log r_0(x) ([N_s], one per source row) over
    masked source rows, in ``space`` ``ratio`` (minimiser E[r_0 | z] = r(z), R2) or ``log``
    (E[log r_0 | z], Jensen-biased); with ``cycle`` (needs ``target``) plus the cycle term on
    batch_size // 2 masked target rows (the reference pipeline, arXiv 2512.10877)."""
    if cycle is not None and target is None:
        raise ValueError("target is required with a cycle term, got None")
    pick = _caller(net, hooks)
    half = max(batch_size // 2, 1)
    reference = ClassifierRatio(cycle.classifier, n_source=1, n_target=1) if cycle is not None else None

    def batch(gen):
        idx = torch.randint(len(source), (batch_size,), generator=gen)
        if cycle is None:
            return source[idx], labels[idx]
        return source[idx], labels[idx], target[torch.randint(len(target), (half,), generator=gen)]

    def loss(model, b, gen):
        x, lab = b[0], b[1]
        t = sample_times(len(x), gen, 0.0, False, x.device)
        z = mask_tokens(x, t, schedule, mask_id, gen)
        fn = pick(model)
        with hooks.autocast():
            out = ratio_regression_loss(fn(z)[:, 0].float(), lab, space, max_log_ratio=max_log_ratio)
            if cycle is not None:
                xt = b[2]
                tt = sample_times(len(xt), gen, 0.0, False, xt.device)
                zt = mask_tokens(xt, tt, schedule, mask_id, gen)
                ref = reference(zt, tt.float()).clamp(-max_log_ratio, max_log_ratio)
                out = out + cycle_loss(fn(zt)[:, 0].float(), ref, cycle.weight, space)
        return out

    return Recipe(batch, loss)


def planner(net: nn.Module, frozen_denoiser: nn.Module, data: torch.Tensor, *, schedule: Schedule, mask_id: int,
            log_prob_features: bool = False, hooks: Hooks = NO_HOOKS) -> Recipe:
    """Binary cross-entropy, over masked positions, of P(the frozen denoiser's arg-max at i is the
    clean token | z) on masked rows of ``data`` (t ~ U[1e-3, 1], stratified); with
    ``log_prob_features`` the planner also reads the denoiser's log-probs [B, L, K]."""
    pick = _caller(net, hooks)
    src_fn = hooks.compiled(frozen_denoiser)
    frozen_denoiser.eval()

    def loss(model, x, gen):
        t = sample_times(len(x), gen, 1e-3, True, x.device)
        z = mask_tokens(x, t, schedule, mask_id, gen)
        with torch.no_grad(), hooks.autocast():
            lp = subs_log_probs(src_fn(z).float(), z, mask_id)
        targets = planner_targets(lp, x, z, mask_id)
        with hooks.autocast():
            scores = pick(model)(z, None, lp) if log_prob_features else pick(model)(z)
        return planner_loss(scores.float(), targets, z == mask_id)

    return Recipe(data, loss)


__all__ = ["Cycle", "Hooks", "NO_HOOKS", "Recipe", "autoregressive", "clean_classifier", "denoiser", "noisy_classifier",
           "planner", "ratio_regression"]
