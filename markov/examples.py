"""Two example guidance variants, written the way a user would write their own.

Check them against ground truth with

    gtl markov validate markov.examples:Unstabilised --ratio-drift -1
    gtl markov validate markov.examples:ContextFreeRatio

A rule is any callable taking a :class:`gtl_verify.rules.StepInput` and returning log-weights
[M, K + 1] (tokens, then "stay masked") for the masked positions ``step.positions``: floating point,
each entry finite or -inf (forbidden), never NaN or +inf, and never -inf in a whole row. The
validator checks this contract on every output (markov.rule_contract) and names the first fault.
"""

from __future__ import annotations

import torch

from gtl_verify import guidance
from gtl_verify.rules import GTL, StepInput


class Unstabilised(GTL):
    """GTL without the mask-mass stabiliser: guidance weights the whole reverse marginal, the mask
    slot by r(z)^gamma. Exact with a calibrated ratio; a ratio whose level drifts with the number of
    revealed tokens changes when positions are revealed."""

    def __init__(self) -> None:
        super().__init__(candidates=None, stabilise=False, name="unstabilised")


class ContextFreeRatio:
    """Scores token v at position i with the ratio of the sequence where ONLY position i is revealed,
    log r(m..m v m..m), ignoring the context: a cheap first-order-in-context approximation of the
    single-site ratio r(z^{i<-v}) (one candidate table per position, reusable across samples)."""

    name = "context-free-ratio"
    uses_ratio = True

    def __call__(self, step: StepInput) -> torch.Tensor:
        lp = step.position_log_probs
        if step.gamma == 0 or step.score is None:
            return guidance.mdlm_posterior(lp, step.alpha_s, step.alpha_t)
        k = lp.shape[-1]
        ids = torch.arange(k, device=lp.device).expand(lp.shape[0], k)
        bare = torch.full_like(step.z, step.mask_id)
        log_r = guidance.score_candidates(step.sequence_ratio, bare, step.positions, ids)
        tokens = guidance.combine(lp, log_r, step.gamma)
        return guidance.stabilise(tokens, step.alpha_s, step.alpha_t)
