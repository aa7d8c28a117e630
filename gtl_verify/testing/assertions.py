"""Assertions against exact ground truth, with failure messages a reader of the test can act on.

Each ``assert_*`` raises ``AssertionError`` whose message names what was checked, the first state
where it fails (masks shown as M), the expected and observed laws side by side and their total
variation (TV = 1/2 sum |expected - observed|) against the tolerance. Inputs that make the exact
reference undefined (a state impossible under a law, a length the oracle does not answer for)
raise ``ValueError`` instead: the test is wrong, not the code under test.

- :func:`assert_rule_matches_exact_step`: a guidance rule, given the exact source denoiser and the
  exact ratio, returns the exact guided step (:func:`~gtl_verify.testing.exact.exact_guided_step`).
- :func:`assert_sampler_law_exact`: the planner sampler with the rule and exact components has the
  target's law at gamma = 1, computed exactly by propagation (:func:`gtl_verify.exact_law.planner_law`).
- :func:`assert_ratio_calibrated`: a ratio model gives the exact noisy log-ratio log q_t(z)/p_t(z) on
  masked states (and log r(z^{i<-v}) at masked positions if it has ``single_site``).
- :func:`assert_denoiser_exact`: a denoiser gives the exact posterior p(x^i = v | z) at masked positions.
"""

from __future__ import annotations

import torch

from ..enumeration import enumerate_sequences
from ..exact_law import MAX_STATES, planner_law
from ..planners import LeftToRightPlanner
from ..rules import rule_name
from ..samplers import SamplerConfig
from ..schedules import LogLinearSchedule, Schedule
from ..validation import check_real_range, check_times, check_tokens
from .exact import DTYPE, ExactComponents, exact_components, exact_guided_step, format_state, make_step_input

MAX_ROWS = 12  # outcomes listed in a failure message


def total_variation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """TV along the last dim, [...]: 1/2 sum |a - b|."""
    return 0.5 * (a - b).abs().sum(-1)


def law_table(expected: torch.Tensor, observed: torch.Tensor, labels: list[str]) -> str:
    """Expected and observed probabilities side by side; at most MAX_ROWS rows, largest gaps first
    when there are more."""
    rows = list(range(len(labels)))
    if len(rows) > MAX_ROWS:
        rows = sorted(torch.argsort((expected - observed).abs(), descending=True)[:MAX_ROWS].tolist())
    width = max(len(labels[i]) for i in rows)
    lines = [f"    {'outcome':{width}s}  {'expected':>12s}  {'observed':>12s}"]
    lines += [f"    {labels[i]:{width}s}  {float(expected[i]):12.6g}  {float(observed[i]):12.6g}" for i in rows]
    if len(rows) < len(labels):
        lines.append(f"    ({len(labels) - len(rows)} outcomes with smaller differences not shown)")
    return "\n".join(lines)


def _locate(bad: torch.Tensor, positions: torch.Tensor, z: torch.Tensor, mask_id: int) -> tuple[int, int, str]:
    """(j, i, text) for the first True of ``bad`` [M] over ``positions`` [M, 2] = (row, position)."""
    j = int(bad.nonzero()[0, 0])
    b, i = positions[j].tolist()
    return j, i, f"z = {format_state(z[b], mask_id)} (row {b}), masked position {i}"


def _dtype_note(out, tol: float) -> str:
    """For a floating output coarser than the tolerance (float32 round-off 1.2e-07 > the default 1e-9),
    a note naming its dtype; otherwise ''."""
    dtype = getattr(out, "dtype", None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or torch.finfo(dtype).eps <= tol:
        return ""
    return (f"\n  note: the output is {dtype} (round-off {torch.finfo(dtype).eps:.2g} > tolerance {tol:g}): compute in "
            "float64 or pass a tol above that round-off")


def _check_tol(tol: float) -> float:
    """``tol`` as a float, or ValueError: it must be a finite real >= 0 (NaN would fail every check)."""
    return check_real_range("tol", tol, 0.0)


def _as_states(comp: ExactComponents, z) -> torch.Tensor:
    """z as int64 [B, L], or ValueError: an integer tensor of two dimensions (float token ids are refused,
    not truncated) with entries in 0..K (K = the mask id) and a length the components answer for."""
    z = torch.as_tensor(z)
    check_tokens("z", z, comp.mask_id + 1)
    comp.check_length(z.shape[1])
    return z.long()


def _step_probs(name: str, out, m: int, k: int, where: str) -> torch.Tensor:
    """The rule's output as probabilities [M, K+1], or an AssertionError saying what is wrong with it."""
    if not torch.is_tensor(out):
        raise AssertionError(f"rule {name!r} returned {type(out).__name__} {where}, expected a tensor of "
                             f"log-weights of shape [M, K + 1] = {(m, k + 1)}")
    if tuple(out.shape) != (m, k + 1):
        raise AssertionError(f"rule {name!r} returned shape {tuple(out.shape)} {where}, expected [M, K + 1] = {(m, k + 1)} "
                             "(M masked positions; K token slots then the stay-masked slot)")
    out = out.detach().to(DTYPE)
    if torch.isnan(out).any() or torch.isposinf(out).any() or torch.isneginf(out).all(-1).any():
        bad = (torch.isnan(out).any(-1) | torch.isposinf(out).any(-1) | torch.isneginf(out).all(-1)).nonzero()[0, 0]
        raise AssertionError(f"rule {name!r} returned log-weights {out[bad].tolist()} {where} (masked position "
                             f"{int(bad)} in positions order): NaN, +inf or all -inf is not a law")
    return torch.softmax(out, dim=-1)


def assert_rule_matches_exact_step(rule, pair, z: torch.Tensor | None = None, *, length: int = 3, s: float = 0.3,
                                   t: float = 0.7, gamma: float = 1.0, schedule: Schedule | None = None,
                                   candidates: int | None = None, tol: float = 1e-9) -> None:
    """Assert that ``rule`` reproduces the exact guided step at every masked position of z [B, L].

    pair: ChainPair, HMMPair, EnumerationOracle or ExactComponents. z: masked states (mask id K;
    default: the all-mask state of ``length``). The rule gets the exact source denoiser and the
    exact ratio; its [M, K + 1] log-weights, normalised, must be within TV ``tol`` of
    :func:`~gtl_verify.testing.exact.exact_guided_step` with the same ``candidates`` (None: all K).
    Raises ValueError (the test's setup, before any work) unless 0 <= s < t <= 1, ``tol`` is a finite
    real >= 0 and z is an integer [B, L] tensor of ids in 0..K.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not the toolkit's
    tol = _check_tol(tol)
    s, t = check_times(s, t)
    comp = exact_components(pair)
    z = torch.full((1, comp.check_length(length)), comp.mask_id) if z is None else _as_states(comp, z)
    schedule = schedule or LogLinearSchedule()
    want = exact_guided_step(comp, z, s, t, gamma, schedule, candidates)
    name = rule_name(rule)
    where = f"at the step t={t:g} -> s={s:g} (gamma={gamma:g})"
    step = make_step_input(comp, z, s, t, gamma, schedule)
    out = rule(step)
    got = _step_probs(name, out, step.positions.shape[0], comp.vocab_size, where)
    tv = total_variation(want, got)
    bad = ~(tv <= tol)  # NaN counts as a difference
    if not bad.any():
        return
    j, _, place = _locate(bad, step.positions, z, comp.mask_id)
    labels = [f"token {v}" for v in range(comp.vocab_size)] + ["stay masked"]
    raise AssertionError(
        f"rule {name!r} does not reproduce the exact guided step {where}, "
        f"alpha_t={step.alpha_t:.6g}, alpha_s={step.alpha_s:.6g}, candidates={candidates or 'all'}:\n"
        f"  first differing state: {place}\n"
        f"{law_table(want[j], got[j], labels)}\n"
        f"  TV = {float(tv[j]):.6g} > tolerance {tol:g}; {int(bad.sum())} of {len(tv)} masked positions differ, "
        f"largest TV {float(tv.max()):.6g}\n"
        "  expected: stay = (1-a_s)/(1-a_t); tokens = (a_s-a_t)/(1-a_t) * p^(1-gamma) q^gamma, normalised over the "
        "candidates (p, q: exact source and target posteriors at the position)" + _dtype_note(out, tol))


def _sequence_labels(vocab_size: int, length: int) -> list[str]:
    return [format_state(x, -1) for x in enumerate_sequences(vocab_size, length)]


def _outside_source_note(source: torch.Tensor, target: torch.Tensor) -> str:
    lost = float(target[source == 0].sum())
    if lost <= 0:
        return ""
    return (f"\n  note: the target puts mass {lost:.6g} on sequences the source never emits (log-ratio +inf there); "
            "no guidance of this source can reach them: the documented failure mode of ratio guidance, "
            "so TV >= that mass for every rule")


def assert_sampler_law_exact(rule, pair, length: int, *, planner=None, temperature: float = 0.0, gamma: float = 1.0,
                             schedule: Schedule | None = None, tol: float = 1e-9):
    """Assert that the planner sampler (one position per step) with ``rule``, the exact source denoiser and
    the exact ratio has exactly the target's law over the K^L sequences of ``length``.

    The law is propagated exactly (no sampling noise). planner: default left-to-right at temperature 0;
    any planner and temperature are exact for an exact rule at gamma = 1, the only gamma whose exact
    output law is the target's (gamma != 1 raises ValueError: the reference would be wrong). Raises
    ValueError, before any work, when (K + 1)^length exceeds the exact propagation's
    :data:`~gtl_verify.exact_law.MAX_STATES` or ``tol`` is not a finite real >= 0. Returns the
    :class:`~gtl_verify.exact_law.ExactLaw` on success. (The ancestral sampler is not covered: it
    reveals the positions of one step independently given z_t, so it is exact only as T -> infinity.)
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not the toolkit's
    tol = _check_tol(tol)
    if check_real_range("gamma", gamma) != 1.0:
        raise ValueError(f"gamma must be 1 in assert_sampler_law_exact (only at gamma = 1 is the exact law the "
                         f"target's), got {gamma}; check other gammas step by step with assert_rule_matches_exact_step")
    comp = exact_components(pair)
    length = comp.check_length(length)
    if (comp.vocab_size + 1) ** length > MAX_STATES:
        raise ValueError(f"length {length} is too large for the exact law: (K+1)**L = {(comp.vocab_size + 1) ** length} "
                         f"noisy states exceed {MAX_STATES} (K = {comp.vocab_size}); use a shorter length")
    schedule = schedule or LogLinearSchedule()
    name = rule_name(rule)
    config = SamplerConfig(1, length, gamma=gamma, rule=rule, temperature=temperature, final_argmax=False)
    try:
        law = planner_law(comp.source, comp.ratio, planner or LeftToRightPlanner(), schedule, config)
    except ValueError as exc:
        raise AssertionError(f"rule {name!r}: the sampler's exact law could not be computed: {exc}") from exc
    target, source = comp.target_table(length).to(DTYPE), comp.source_table(length).to(DTYPE)
    observed = law.clean
    diff = (observed - target).abs()
    tv = 0.5 * float(diff.sum())
    total = float(observed.sum())
    if tv <= tol and abs(total - 1) <= tol and not torch.isnan(observed).any():
        return law
    labels = _sequence_labels(comp.vocab_size, length)
    first = int((diff > tol).nonzero()[0, 0]) if (diff > tol).any() else int(diff.argmax())
    raise AssertionError(
        f"rule {name!r} with exact components at gamma={gamma:g} does not sample the target law "
        f"(planner {type(planner or LeftToRightPlanner()).__name__}, temperature {temperature:g}, length {length}):\n"
        f"  first differing sequence: {labels[first]}: expected {float(target[first]):.6g}, observed {float(observed[first]):.6g}\n"
        f"{law_table(target, observed, labels)}\n"
        f"  TV = {tv:.6g} > tolerance {tol:g}; the observed law sums to {total:.6g} "
        f"(mass left on masked states {law.leftover_mass:.3g})" + _outside_source_note(source, target))


def _log_mismatch(got: torch.Tensor, want: torch.Tensor, tol: float) -> torch.Tensor:
    """Bool mask of entries that differ: infinities must match with sign, finite ones within tol."""
    same_inf = (torch.isinf(got) & torch.isinf(want) & (torch.sign(got) == torch.sign(want)))
    close = (got - want).abs() <= tol
    return ~(same_inf | (torch.isfinite(got) & torch.isfinite(want) & close))


def _model_output(what: str, out, shape: tuple[int, ...]) -> torch.Tensor:
    """A model's output as float64 of ``shape`` (a [B] output may also come as [B, 1]), or an
    AssertionError naming the shapes: a wrong number of values is the model's fault."""
    got = torch.as_tensor(out).detach().to(DTYPE)
    if got.numel() != torch.Size(shape).numel():
        raise AssertionError(f"{what} returned shape {tuple(got.shape)} ({got.numel()} values), expected {tuple(shape)}")
    return got.reshape(shape)


def assert_ratio_calibrated(ratio_model, pair, z, *, t: float = 0.5, tol: float = 1e-8) -> None:
    """Assert that ``ratio_model(z)`` is the exact noisy log-ratio log r_t(z) = log q_t(z)/p_t(z) at every
    masked state z [B, L] (within ``tol`` in log space; +inf / -inf must match), and, if the model has
    ``single_site``, log r(z^{i<-v}) at every masked position i and token v.

    States impossible under the source have log r = +inf (target-only mass); under both, -inf."""
    __tracebackhide__ = True  # pytest shows the caller's line, not the toolkit's
    tol = _check_tol(tol)
    comp = exact_components(pair)
    z = _as_states(comp, z)
    tt = torch.full((z.shape[0],), t, dtype=torch.float32)
    want = comp.ratio(z, tt).to(DTYPE)
    out = ratio_model(z, tt)
    got = _model_output("ratio model", out, want.shape)
    bad = _log_mismatch(got, want, tol)
    if bad.any():
        b = int(bad.nonzero()[0, 0])
        raise AssertionError(
            f"ratio model is not calibrated: at z = {format_state(z[b], comp.mask_id)} (row {b}) it gives "
            f"log r = {float(got[b]):.6g}, the exact log q_t(z)/p_t(z) is {float(want[b]):.6g} "
            f"(|diff| {abs(float(got[b] - want[b])):.3g} > tolerance {tol:g}); {int(bad.sum())} of {len(bad)} states differ"
            + _dtype_note(out, tol))
    if not hasattr(ratio_model, "single_site"):
        return
    masked = z == comp.mask_id
    want_site = comp.ratio.single_site(z, tt).to(DTYPE)[masked]
    got_site = _model_output("ratio model's single_site", ratio_model.single_site(z, tt), (*z.shape, comp.vocab_size))[masked]
    bad = _log_mismatch(got_site, want_site, tol).any(-1)
    if bad.any():
        j, _, place = _locate(bad, masked.nonzero(), z, comp.mask_id)
        labels = [f"log r(z^(i<-{v}))" for v in range(comp.vocab_size)]
        raise AssertionError(
            f"ratio model's single_site is not calibrated at {place}:\n{law_table(want_site[j], got_site[j], labels)}\n"
            f"  (log-ratios, not probabilities; tolerance {tol:g})")


def assert_denoiser_exact(denoiser, pair, z, *, which: str = "source", t: float = 0.5, tol: float = 1e-8) -> None:
    """Assert that ``denoiser(z)`` [B, L, K] gives the exact posterior p(x^i = v | z) of the ``which``
    law ("source" or "target") at every masked position of z [B, L], within TV ``tol`` per position."""
    __tracebackhide__ = True  # pytest shows the caller's line, not the toolkit's
    tol = _check_tol(tol)
    comp = exact_components(pair)
    if which not in ("source", "target"):
        raise ValueError(f"which must be 'source' or 'target', got {which!r}")
    z = _as_states(comp, z)
    exact = comp.source if which == "source" else comp.target
    tt = torch.full((z.shape[0],), t, dtype=torch.float32)
    want = exact(z, tt).to(DTYPE).exp()
    if torch.isnan(want[z == comp.mask_id]).any():
        b = int(torch.isnan(want).any(-1).any(-1).nonzero()[0, 0])
        raise ValueError(f"state z = {format_state(z[b], comp.mask_id)} has probability 0 under the {which}")
    out = denoiser(z, tt)
    got = torch.as_tensor(out).detach().to(DTYPE)
    if got.shape != want.shape:
        raise AssertionError(f"denoiser returned shape {tuple(got.shape)}, expected [B, L, K] = {tuple(want.shape)}")
    got = got.exp()
    masked = z == comp.mask_id
    tv = total_variation(want[masked], got[masked])
    bad = ~(tv <= tol)  # NaN counts as a difference
    if not bad.any():
        return
    j, i, place = _locate(bad, masked.nonzero(), z, comp.mask_id)
    labels = [f"x^{i} = {v}" for v in range(comp.vocab_size)]
    raise AssertionError(
        f"denoiser differs from the exact {which} posterior p(x^i = v | z) at {place}:\n"
        f"{law_table(want[masked][j], got[masked][j], labels)}\n"
        f"  TV = {float(tv[j]):.6g} > tolerance {tol:g}; {int(bad.sum())} of {len(tv)} masked positions differ"
        + _dtype_note(out, tol))

