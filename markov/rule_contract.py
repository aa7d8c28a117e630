"""The guidance-rule contract, checked on every output, and the validator's verdicts.

A rule (see :mod:`gtl_verify.rules`) maps a :class:`~gtl_verify.rules.StepInput` with M masked
positions and K tokens to log-weights [M, K + 1] (tokens, then "stay masked"), floating point,
each entry finite or -inf. :class:`CheckedRule` wraps a rule for one validator setting, checks
every output (from the first step on) and raises :class:`RuleError`, one line naming the rule,
the setting, the step and the fault, when the output breaks the contract or leaves the sampler's
law undefined:

- not a tensor, shape other than [M, K + 1], integer, boolean or complex dtype, a device other
  than the step's (a meta tensor holds no values);
- a NaN or a +inf entry (the normalised law would be 0/0 or inf/inf);
- a row whose weights are all -inf (every outcome forbidden: 0/0), over the K tokens in the
  planner settings (the token law is conditioned on a reveal) and over all K + 1 slots in the
  ancestral ones;
- weight on a token the source denoiser forbids (log p = -inf) at a step before the last: the
  states it leads to are impossible under the source, where the denoiser is undefined;
- weight on "stay masked" at the last step (s = 0, where alpha_s = 1 and the masked process has
  revealed every position) in the ancestral settings: the rule would leave masks behind.

Outputs are detached (a rule's autograd graph is not kept). A rule whose outputs are all >= 0 is
legal (log-weights may be shifted) but looks like one that returns probabilities instead of
log-weights, which the step would misread (all-zero "probabilities" become a uniform law): it gets
a warning (:attr:`CheckedRule.warning`), printed by the validator beside its rows.

It also counts the positions where ties decided a top-n candidate set (the n-th and (n+1)-th
largest denoiser log-probs equal), for rules with an integer ``candidates`` attribute < K.
"""

from __future__ import annotations

import math
import torch

from gtl_verify.rules import GuidanceRule, StepInput, rule_uses_ratio

EXACT_TV_TOLERANCE = 1e-9  # float64 round-off of an exact law propagated over <= 50 000 states
NOISE_SE = 3.0  # a Monte-Carlo figure within this many standard errors of 0 is sampling noise
LAW_SUM_TOLERANCE = 1e-9


class RuleError(ValueError):
    """A rule output that breaks the contract, or a law that is not a distribution (one line)."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _first(mask: torch.Tensor) -> list[int]:
    return mask.nonzero()[0].tolist()


def output_fault(out: object, step: StepInput, reveal_only: bool) -> str | None:
    """What is wrong with the rule output ``out`` for ``step`` (None when nothing is).

    reveal_only: the sampler uses only the K token slots (planner settings)."""
    m, k = int(step.positions.shape[0]), step.vocab_size
    want = f"[M, K+1] = [{m}, {k + 1}] (M masked positions, K tokens and the stay-masked slot)"
    if not torch.is_tensor(out):
        return f"returned {type(out).__name__}, expected a floating-point tensor of log-weights {want}"
    if tuple(out.shape) != (m, k + 1):
        return f"returned shape {list(out.shape)}, expected {want}"
    if not out.is_floating_point():
        return f"returned dtype {out.dtype}, expected a floating-point dtype"
    device = step.log_probs.device
    if out.device != device:
        return f"returned a tensor on device {out.device}, expected the step's device {device}"
    if m == 0:
        return None
    where = lambda row, slot: _position(step, row) + (", stay slot" if slot == k else f", token {slot}")  # noqa: E731
    if torch.isnan(out).any():
        return f"returned NaN at {where(*_first(torch.isnan(out)))}"
    if torch.isposinf(out).any():
        return f"returned +inf at {where(*_first(torch.isposinf(out)))} (log-weights must be finite or -inf)"
    used = out[:, :k] if reveal_only else out
    dead = torch.isneginf(used).all(-1)
    if dead.any():
        slots = "token weights" if reveal_only else "weights (tokens and stay)"
        return f"all {slots} are -inf at {_position(step, int(_first(dead)[0]))}: the step law is undefined (0/0)"
    if step.s == 0 and not reveal_only and not torch.isneginf(out[:, k]).all():
        row = int(_first(~torch.isneginf(out[:, k]))[0])
        return (f"keeps log-weight {out[row, k].item():.3g} on stay masked at {_position(step, row)} at the last step "
                f"(s = 0, alpha_s = 1: every position must be revealed); the rule would leave masks behind")
    if step.s > 0:
        lp = step.position_log_probs
        forbidden = torch.isneginf(lp) & ~torch.isneginf(out[:, :k])
        if forbidden.any():
            row, v = _first(forbidden)
            return (f"puts weight on token {v} at {_position(step, row)}, which the source denoiser forbids "
                    f"(log p = -inf): the denoiser is undefined on the states it leads to")
    return None


def probability_warning(out: torch.Tensor, reveal_only: bool, vocab_size: int) -> str | None:
    """A warning when every used weight of ``out`` [M, K + 1] is finite and >= 0 (probabilities, not
    log-weights: log-weights of a normalised law are <= 0, and exp-sums of rows of probabilities
    lie in [K, e K], far from 1); None otherwise, and always for K = 1: there a single token's
    log-weight 0 (with or without a stay-masked slot) is a valid law and tells nothing apart."""
    used = out[:, :vocab_size] if reveal_only else out
    if vocab_size == 1 or used.numel() == 0 or not (torch.isfinite(used).all() and (used >= 0).all()):
        return None
    exp_sum = float(used.exp().sum(-1).max())
    return (f"outputs are all >= 0 (row exp-sum up to {exp_sum:.3g}, far from 1): looks like probabilities, "
            f"expected log-weights (the step reads them as log-weights: all-zero rows become uniform)")


def _position(step: StepInput, row: int) -> str:
    b, i = step.positions[row].tolist()
    return f"sequence {b}, position {i}"


def tied_candidates(step: StepInput, n: int) -> int:
    """Positions of ``step`` where the n-th and (n+1)-th largest finite denoiser log-probs are equal."""
    lp = step.position_log_probs
    if not 1 <= n < lp.shape[-1] or lp.shape[0] == 0:
        return 0
    top = torch.topk(lp, n + 1, dim=-1).values
    return int(((top[:, n - 1] == top[:, n]) & torch.isfinite(top[:, n])).sum())


class CheckedRule:
    """``rule`` for one setting of the validator, every output checked (see the module docstring).

    Raises RuleError naming the rule, the setting and the step; an exception raised by the rule
    itself becomes a RuleError too (its traceback chained)."""

    def __init__(self, rule: GuidanceRule, name: str, setting: str, reveal_only: bool) -> None:
        self.rule, self.name, self.setting, self.reveal_only = rule, name, setting, reveal_only
        self.uses_ratio = rule_uses_ratio(rule)
        candidates = getattr(rule, "candidates", None)
        self.candidates = candidates if isinstance(candidates, int) and not isinstance(candidates, bool) else None
        self.steps = 0
        self.warning: str | None = None
        self.tied_positions = 0
        self.guided_positions = 0

    def where(self, step: StepInput | None = None) -> str:
        at = "" if step is None else f", step {self.steps} (t={step.t:.4g} -> s={step.s:.4g})"
        return f"rule {self.name!r}, setting {self.setting!r}{at}"

    def __call__(self, step: StepInput) -> torch.Tensor:
        self.steps += 1
        try:
            out = self.rule(step)
        except Exception as exc:  # the rule is user code: any failure is reported as one line
            raise RuleError(f"{self.where(step)}: raised {type(exc).__name__}: {_one_line(exc)}") from exc
        try:
            fault = output_fault(out, step, self.reveal_only)
        except Exception as exc:  # an output torch cannot inspect (e.g. an unusual tensor subclass)
            fault = f"returned an output that cannot be inspected ({type(exc).__name__}: {exc})"
        if not fault and step.positions.shape[0]:
            self.warning = self.warning or probability_warning(out.detach(), self.reveal_only, step.vocab_size)
        elif fault and torch.is_tensor(out) and out.device == step.log_probs.device and out.is_floating_point() \
                and tuple(out.shape) == (step.positions.shape[0], step.vocab_size + 1):
            hint = probability_warning(out.detach(), self.reveal_only, step.vocab_size)
            fault += f" (note: {hint})" if hint else ""
        if fault:
            raise RuleError(f"{self.where(step)}: {_one_line(fault)}")
        out = out.detach()
        if self.candidates is not None and step.gamma > 0 and step.score is not None:
            self.tied_positions += tied_candidates(step, self.candidates)
            self.guided_positions += int(step.positions.shape[0])
        return out

    def ties_note(self) -> str | None:
        """A note when ties between equally likely tokens decided the top-n candidate set."""
        if not self.tied_positions:
            return None
        return (f"ties decided the top-{self.candidates} candidate set at {self.tied_positions} of "
                f"{self.guided_positions} guided positions (equal denoiser log-probs at ranks "
                f"{self.candidates} and {self.candidates + 1}; see guidance.top_n for the tie-break)")


def check_law_sums_to_one(clean: torch.Tensor, where: str) -> None:
    """Raise RuleError unless the clean law ``clean`` [K^L] is finite, >= 0 and sums to 1."""
    total = float(clean.sum())
    if not torch.isfinite(clean).all() or (clean < 0).any() or not abs(total - 1.0) <= LAW_SUM_TOLERANCE:
        nan = int(torch.isnan(clean).sum())
        detail = f"{nan} NaN entries" if nan else f"a total of {total:.12g}"
        raise RuleError(f"{where}: the sampler's exact law is not a distribution ({detail}); TV and KL are not reported")


# Round-off of sum_x s(x) log(s(x)/q(x)) in float64: each log carries eps |log|, so the sum carries
# about eps * sum_x s(x) (|log s(x)| + |log q(x)|) <= 2 eps (L ln K + max|log q|) ~ 1e-14 on the
# enumerable settings (K^L <= 50 000); 1e-12 leaves a factor 100 of margin.
KL_ROUNDOFF = 1e-12


def exact_kl(kl: float, where: str) -> float:
    """An exact KL [nats] with float64 round-off below 0 clamped to 0: a value in [-KL_ROUNDOFF, 0)
    becomes 0, a value further below 0 raises RuleError (KL >= 0 for any two distributions)."""
    if kl < -KL_ROUNDOFF:
        raise RuleError(f"{where}: the exact KL is {kl:.3g} < 0 beyond float64 round-off ({KL_ROUNDOFF:g})")
    return max(kl, 0.0)


def exact_verdict(tv: float) -> str:
    """Verdict on an exact law by its TV to q [dimensionless]; the only noise is float64 round-off."""
    if tv <= EXACT_TV_TOLERANCE:
        return f"exact (TV {tv:.2g} <= {EXACT_TV_TOLERANCE:g}, float64 round-off)"
    return f"not exact (TV {tv:.3g} > {EXACT_TV_TOLERANCE:g})"


def mc_verdict(kl: float, standard_error: float, samples: int) -> str:
    """Verdict on a Monte-Carlo KL [nats] with standard error std/sqrt(samples): exact when
    |KL| <= 3 standard errors (plus the exact-law tolerance, for a sampler whose every sample has
    log s = log q exactly and so a standard error of 0)."""
    noise = NOISE_SE * standard_error + EXACT_TV_TOLERANCE
    label = f"{NOISE_SE:g} SE = {noise:.2g} from {samples} samples"
    if math.isfinite(kl) and abs(kl) <= noise:
        return f"exact within sampling noise (MC KL {kl:.2g}, |KL| <= {label})"
    return f"not exact (MC KL {kl:.3g}, beyond {label})"
