"""Bad input to ``gtl language run``: a run folder resumed with a different config, and a config
whose sampling would exceed its declared time budget (estimated from a pilot before sampling).
(Too little held-out data for the configured evaluation: tests/test_language_evaluation.py.)"""

from __future__ import annotations

import dataclasses

import json
import math

import pytest
import torch

from gtl_verify.cli import main
from gtl_verify.config import build
from language import pipeline, run_folder, sampling
from language.config import config_from_dict, load_config
from language.run_folder import CONFIG_RECORD, config_history, record_config
from tests.test_language_pipeline import synthetic_dir  # noqa: F401  (the synthetic arXiv fixture)

CPU = torch.device("cpu")


def _tiny(**changes):
    """The cpu-tiny config with ``changes`` (a nested table) applied."""
    return build(load_config("cpu-tiny"), changes)


def _record(out):
    return json.loads((out / CONFIG_RECORD).read_text())


# ------------------------------------------------------------------ resumed with a different config
def test_first_start_records_the_config_and_an_equal_config_resumes(tmp_path):
    config = _tiny()
    assert record_config(tmp_path, config, CPU) == []
    rec = _record(tmp_path)
    assert (rec["name"], rec["hash"], rec["device"], rec["history"]) == ("cpu-tiny", config.hash(), "cpu", [])
    assert rec["config"]["training"]["source"]["steps"] == 60
    assert record_config(tmp_path, _tiny(), CPU) == []
    assert _record(tmp_path) == rec


def test_a_different_config_is_refused_naming_the_differing_settings(tmp_path):
    record_config(tmp_path, _tiny(), CPU)
    before = (tmp_path / CONFIG_RECORD).read_text()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "source-denoiser-0123.pt").write_bytes(b"kept")
    changed = _tiny(training={"source": {"steps": 1000}}, sampling={"samples": 32})
    with pytest.raises(ValueError) as info:
        record_config(tmp_path, changed, CPU)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"run folder {tmp_path} was started with config 'cpu-tiny' (hash {_tiny().hash()}); ")
    assert "differs in training.source.steps (60 -> 1000), sampling.samples (16 -> 32); use a new --out" in text
    assert text.endswith("or pass --allow-config-change to reuse the components whose settings are unchanged")
    many = _tiny(seed=4, data={"segment_length": 16, "fractions": [1.0, 0.05]}, training={"target": {"lr": 1e-3}},
                 sampling={"steps": 4, "gamma_sweep": []})
    with pytest.raises(ValueError, match=r"differs in seed \(0 -> 4\), data\.segment_length \(32 -> 16\), "
                                         r"data\.fractions \(\[1\.0, 0\.3, 0\.05, 0\.01\] -> \[1\.0, 0\.05\]\) and 3 more;"):
        record_config(tmp_path, many, CPU)
    assert (tmp_path / CONFIG_RECORD).read_text() == before  # nothing recorded, nothing deleted
    assert (tmp_path / "models" / "source-denoiser-0123.pt").read_bytes() == b"kept"


def test_settings_that_change_no_result_are_not_a_change(tmp_path):
    record_config(tmp_path, _tiny(), CPU)
    before = (tmp_path / CONFIG_RECORD).read_text()
    same = _tiny(name="renamed", runtime={"threads": 2, "checkpoint_every": 7, "sampling_budget_minutes": 3.0})
    assert record_config(tmp_path, same, CPU) == []
    assert (tmp_path / CONFIG_RECORD).read_text() == before
    # the device counts as resolved: 'auto' that ran on the CPU equals an explicit 'cpu' ...
    assert record_config(tmp_path, _tiny(runtime={"device": "cpu"}), CPU) == []
    # ... but not the same folder continued on a GPU (another random stream, bf16)
    with pytest.raises(ValueError, match=r'differs in runtime\.device \("cpu" -> "cuda"\);'):
        record_config(tmp_path, _tiny(), torch.device("cuda"))


def test_allow_change_records_the_new_config_and_keeps_the_history(tmp_path):
    first, second, third = _tiny(), _tiny(sampling={"samples": 32}), _tiny(sampling={"samples": 32}, seeds=[0, 1])
    record_config(tmp_path, first, CPU)
    assert record_config(tmp_path, second, CPU, allow_change=True) == ["sampling.samples (16 -> 32)"]
    assert record_config(tmp_path, second, CPU) == []  # the new config is the folder's now
    assert record_config(tmp_path, third, CPU, allow_change=True) == ["seeds ([] -> [0, 1])"]
    rec = _record(tmp_path)
    assert rec["hash"] == third.hash() and rec["config"]["seeds"] == [0, 1]
    assert [h["hash"] for h in rec["history"]] == [first.hash(), second.hash()]
    assert [h["changed"] for h in rec["history"]] == [["sampling.samples (16 -> 32)"], ["seeds ([] -> [0, 1])"]]
    assert all("history" not in h for h in rec["history"])
    assert config_history(tmp_path) == [
        {"from": first.hash(), "to": second.hash(), "changed": ["sampling.samples (16 -> 32)"]},
        {"from": second.hash(), "to": third.hash(), "changed": ["seeds ([] -> [0, 1])"]}]


def test_a_folder_run_under_one_config_has_no_history(tmp_path):
    record_config(tmp_path, _tiny(), CPU)
    record_config(tmp_path, _tiny(), CPU)
    assert config_history(tmp_path) == []


def test_a_setting_added_to_the_code_later_counts_at_its_default(tmp_path):
    record_config(tmp_path, _tiny(), CPU)
    rec = _record(tmp_path)
    del rec["config"]["sampling"]["planner_temperature"]  # a record written before the setting existed
    (tmp_path / CONFIG_RECORD).write_text(json.dumps(rec))
    assert record_config(tmp_path, _tiny(), CPU) == []  # 0.5 is the default
    with pytest.raises(ValueError, match=r"differs in sampling\.planner_temperature \(0\.5 -> 0\.25\);"):
        record_config(tmp_path, _tiny(sampling={"planner_temperature": 0.25}), CPU)
    rec["config"]["sampling"]["retired_setting"] = 3  # a recorded setting the code no longer has
    (tmp_path / CONFIG_RECORD).write_text(json.dumps(rec))
    assert record_config(tmp_path, _tiny(), CPU) == []


@pytest.mark.parametrize("content, reason", [("{\"name\": ", "Expecting value"), ("[1, 2]", "not a config record"),
                                             ("{\"name\": \"x\"}", "not a config record")])
def test_a_damaged_record_is_named_with_the_way_out(tmp_path, content, reason):
    (tmp_path / CONFIG_RECORD).write_text(content)
    with pytest.raises(ValueError) as info:
        record_config(tmp_path, _tiny(), CPU)
    text = str(info.value)
    assert text.startswith(f"run folder {tmp_path}: its config record {tmp_path / CONFIG_RECORD} is damaged (") and reason in text
    assert "delete it, or pass --allow-config-change, to record this config" in text and "\n" not in text
    assert (tmp_path / CONFIG_RECORD).read_text() == content
    assert record_config(tmp_path, _tiny(), CPU, allow_change=True) == []
    assert _record(tmp_path)["hash"] == _tiny().hash()


@pytest.mark.parametrize("history", [None, 5, "abc", {"hash": "h"}, [None], ["h1"], [{"hash": "h"}],
                                     [{"hash": "h", "changed": None}], [{"hash": "h", "changed": "k (1 -> 2)"}],
                                     [{"hash": 3, "changed": []}], [{"hash": "h", "changed": [1]}]])
def test_a_record_with_a_damaged_history_is_named_when_the_run_starts(tmp_path, history):
    """config_history read the history only after the pipeline's work, and crashed there (results lost)."""
    record_config(tmp_path, _tiny(), CPU)
    rec = _record(tmp_path)
    rec["history"] = history
    (tmp_path / CONFIG_RECORD).write_text(json.dumps(rec))
    for call in (lambda: record_config(tmp_path, _tiny(), CPU), lambda: config_history(tmp_path)):
        with pytest.raises(ValueError, match=r"is damaged \(its history must be a list of earlier records") as info:
            call()
        assert "\n" not in str(info.value)


def test_config_history_of_a_folder_without_a_record_is_named(tmp_path):
    with pytest.raises(ValueError, match=f"run folder {tmp_path} has no config record"):
        config_history(tmp_path)


def test_a_damaged_history_stops_the_run_before_any_work(tmp_path, monkeypatch):
    record_config(tmp_path, _tiny(), CPU)
    rec = _record(tmp_path)
    rec["history"] = None
    (tmp_path / CONFIG_RECORD).write_text(json.dumps(rec))
    monkeypatch.setattr(pipeline, "run_pipeline", lambda *a, **k: pytest.fail("the work started"))
    with pytest.raises(ValueError, match="its history must be"):
        pipeline.run(_tiny(), tmp_path, progress=False)


def test_cli_refuses_a_changed_config_before_any_work_and_accepts_it_when_allowed(tmp_path, monkeypatch, capsys, synthetic_dir):  # noqa: F811
    out = tmp_path / "run"
    started = load_config("cpu-tiny", path=str(synthetic_dir))
    record_config(out, build(started, {"sampling": {"samples": 32}}), pipeline.resolve_device("auto"))

    def reached(config, root, progress=True):
        raise RuntimeError(f"pipeline reached with {config.sampling.samples} samples")

    monkeypatch.setattr(pipeline, "run_pipeline", reached)
    args = ["language", "run", "--config", "cpu-tiny", "--data", str(synthetic_dir), "--out", str(out), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "differs in sampling.samples (32 -> 16); use a new --out" in err
    assert not (out / ".invocations.json").exists()  # a refused start is not an invocation of the run
    with pytest.raises(RuntimeError, match="pipeline reached with 16 samples"):
        main(args + ["--allow-config-change"])
    rec = _record(out)
    assert rec["hash"] == started.hash() and rec["history"][0]["changed"] == ["sampling.samples (32 -> 16)"]


# ------------------------------------------------------------------ sampling time budget
@pytest.mark.parametrize("value, message", [(-1.0, "runtime.sampling_budget_minutes must be in"),
                                            ("10", "runtime.sampling_budget_minutes"),
                                            (math.inf, "runtime.sampling_budget_minutes")])
def test_sampling_budget_is_validated(value, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict({"runtime": {"sampling_budget_minutes": value}})
    assert config_from_dict({"runtime": {"sampling_budget_minutes": 30}}).runtime.sampling_budget_minutes == 30
    assert config_from_dict({}).runtime.sampling_budget_minutes == 0.0


FAST_TRAINING = {k: {"steps": 2} for k in ("source", "target", "finetune", "classifier", "ratio", "planner")}


@pytest.fixture(scope="module")
def trained(synthetic_dir, tmp_path_factory):  # noqa: F811
    """cpu-tiny with two replicates and 2 training steps per component, trained (first replicate)."""
    config = build(load_config("cpu-tiny", path=str(synthetic_dir)),
                   {"seeds": [0, 1], "training": FAST_TRAINING, "runtime": {"device": "cpu"}})
    run = pipeline.Run(config, tmp_path_factory.mktemp("budget"), progress=False)
    pipeline.prepare_data(run)
    run.replicate = config.replicate_seeds[0]
    pipeline.train_components(run)
    return run


def test_estimate_scales_the_pilot_by_steps_batches_sets_and_replicates(trained, monkeypatch):
    run, cfg = trained, trained.config
    s, n = cfg.sampling, cfg.sampling.candidates
    assert (n, s.gamma_sweep, s.candidates_sweep, s.samples, s.batch, s.ablation_samples) == (4, (0.0, 2.0), (2, 8), 16, 16, 8)
    Cost = sampling.StepCost
    pilot = {"source-only": Cost(1.0, 0.5), "target-only": Cost(1.0, 0.5), "fine-tuned": Cost(1.0, 0.5),
             "tcsm": Cost(2.0, 0.5), "ar2diff": Cost(1.5, 0.5), "gtl n=4": Cost(1.0, 4.0), "gtl gamma=0": Cost(1.0, 0.5), "gtl n=2": Cost(1.0, 2.0),
             "gtl n=8": Cost(1.0, 6.0), "gtl-planner n=4": Cost(3.0, 0.0), "fine-tuned-planner": Cost(2.0, 0.0)}
    asked = []

    def fake(run_, method, fraction, candidates, gamma):
        kind = f"{method} gamma=0" if method.startswith("gtl") and gamma == 0 else (
            f"{method} n={candidates}" if method.startswith("gtl") else method)
        asked.append(kind)
        return pilot[kind]

    monkeypatch.setattr(sampling, "_pilot_step", fake)
    est = sampling.estimate_sampling_seconds(run)
    # 2 replicates; 16 samples = 1 batch of 16; 8 steps; 4 shares (source-only: 1); masked share summed over the grid
    shares, steps, reps = len(cfg.data.fractions), s.steps, 2
    alpha = run.schedule.alpha
    masked = math.fsum((1 - alpha(j / steps)) / (1 - alpha(1.0)) for j in range(1, steps + 1))
    assert masked == pytest.approx((steps + 1) / 2, rel=1e-3)  # log-linear: alpha(t) ~ 1 - t

    def batch(c):
        return steps * c.fixed + c.masked * masked

    assert est.method_seconds["source-only"] == pytest.approx(reps * 1 * batch(pilot["source-only"]))
    assert est.method_seconds["target-only"] == pytest.approx(reps * shares * batch(pilot["target-only"]))
    assert est.method_seconds["tcsm"] == pytest.approx(reps * shares * batch(pilot["tcsm"]))
    assert est.method_seconds["ar2diff"] == pytest.approx(reps * shares * batch(pilot["ar2diff"]))
    assert est.method_seconds["gtl"] == pytest.approx(reps * shares * batch(pilot["gtl n=4"]))
    assert est.method_seconds["gtl-planner"] == pytest.approx(reps * shares * cfg.data.segment_length * 3.0)
    assert est.method_seconds["fine-tuned-planner"] == pytest.approx(reps * shares * cfg.data.segment_length * 2.0)
    # ablations (first replicate only, 8 samples = 1 batch): gamma 0 (no ratio calls) and 2, candidates 2 and 8
    ablation = batch(pilot["gtl gamma=0"]) + batch(pilot["gtl n=4"]) + batch(pilot["gtl n=2"]) + batch(pilot["gtl n=8"])
    assert est.method_seconds["gtl ablations"] == pytest.approx(ablation)
    assert est.sets == reps * (1 + 7 * shares) + 4 and est.batch == 16  # 7 methods at every share
    assert est.seconds == pytest.approx(math.fsum(est.method_seconds.values()))
    assert sorted(asked) == sorted(pilot)  # one pilot per kind
    assert est.pilot_text().startswith("batch 16: source-only 1.5 s/step, target-only 1.5 s/step")
    # 32 samples in batches of 16 take two batches, 17 take two (the second counted as full)
    for samples, batches in ((32, 2), (17, 2)):
        run.config = build(cfg, {"sampling": {"samples": samples}})
        try:
            assert sampling.estimate_sampling_seconds(run).method_seconds["tcsm"] == pytest.approx(
                batches * reps * shares * batch(pilot["tcsm"]))
        finally:
            run.config = cfg


def test_pilot_with_the_real_networks_leaves_the_sample_streams_alone(trained):
    run = trained
    first = pipeline.draw_samples(run, "gtl", 0.05, tag="stream-check")
    for f in (run.root / "samples").glob("gtl-0.05-stream-check-*.pt"):
        f.unlink()
    rng = torch.get_rng_state()
    est = sampling.estimate_sampling_seconds(run)
    assert torch.equal(torch.get_rng_state(), rng)  # the pilot draws from its own generator only
    assert set(est.method_seconds) == set(run.config.sampling.methods) | {"gtl ablations"}
    assert all(c.at(1.0) > 0 and c.fixed >= 0 and c.masked >= 0 for c in est.step_costs.values()) and all(v > 0 for v in est.method_seconds.values())
    assert not list((run.root / "samples").glob("gtl-0.05-stream-check-*.pt"))  # the pilot stores nothing
    again = pipeline.draw_samples(run, "gtl", 0.05, tag="stream-check")
    assert torch.equal(first.tokens, again.tokens)


def test_cached_sets_of_the_current_replicate_are_not_counted(trained, monkeypatch):
    monkeypatch.setattr(sampling, "_pilot_step", lambda *a: sampling.StepCost(1.0, 1.0))
    run = trained
    before = sampling.estimate_sampling_seconds(run)
    pipeline.draw_samples(run, "source-only", run.config.data.fractions[0])
    after = sampling.estimate_sampling_seconds(run)
    assert after.sets == before.sets - 1
    assert after.method_seconds["source-only"] == pytest.approx(before.method_seconds["source-only"] / 2)


def test_over_budget_run_stops_before_sampling_with_the_estimate(trained, monkeypatch, capsys):
    run = trained
    over = build(run.config, {"runtime": {"sampling_budget_minutes": 1e-6}})
    monkeypatch.setattr(run_folder, "train", lambda *a, **k: pytest.fail("trained components are reused"))
    monkeypatch.setattr(pipeline, "_draw_method_samples", lambda *a: pytest.fail("no sample set may be drawn"))
    with pytest.raises(ValueError) as info:
        pipeline.run_pipeline(over, run.root, progress=True)
    text = str(info.value)
    assert "\n" not in text and text.startswith("sampling would take about ")
    assert f"min (pilot at batch {over.sampling.batch}: source-only " in text and "gtl-planner n=4 " in text
    assert text.endswith("more than twice runtime.sampling_budget_minutes = 1e-06; lower sampling.samples, "
                         "sampling.steps or sampling.candidates, or raise the budget")
    assert "sampling estimate: about " in capsys.readouterr().err  # in the run log too


def test_within_budget_or_unchecked(trained, monkeypatch, capsys):
    run = trained
    run.progress = True
    try:
        run.config = build(run.config, {"runtime": {"sampling_budget_minutes": 1e6}})
        est = sampling.check_sampling_budget(run)
        assert est is not None and est.seconds > 0
        assert f"{est.text()}; runtime.sampling_budget_minutes = 1e+06" in capsys.readouterr().err
        run.config = build(run.config, {"runtime": {"sampling_budget_minutes": 0.0}})
        monkeypatch.setattr(sampling, "_pilot_step", lambda *a: pytest.fail("no pilot without a budget"))
        assert sampling.check_sampling_budget(run) is None
    finally:
        run.progress = False
        run.config = build(run.config, {"runtime": {"sampling_budget_minutes": 0.0}})


def test_the_pipeline_draws_the_planned_sets(trained, monkeypatch):
    """The pipeline draws exactly the planned sets (samples, gamma, candidates, tag) and files each
    ablation point under its sweep with its value."""
    run, s = trained, trained.config.sampling
    drawn = []

    def record(run_, method, fraction, *, samples=None, gamma=None, candidates=None, tag="main"):
        drawn.append(sampling.PlannedSet(method, fraction, samples, gamma, candidates, tag))
        return sampling.SampleSet(method, fraction, tag, torch.zeros(1, 1, dtype=torch.long), {})

    monkeypatch.setattr(sampling, "draw_samples", record)
    monkeypatch.setattr(pipeline, "evaluate_samples", lambda *a, **k: {})
    pipeline._draw_method_samples(run)
    ablations = pipeline._ablations(run, None)
    main, planned_ablations = sampling.planned_sets(run.config)
    assert drawn == [dataclasses.replace(p, sweep="") for p in main + planned_ablations]
    assert [x for x, _, _ in ablations["gamma"]] == list(s.gamma_sweep)
    assert [x for x, _, _ in ablations["candidates"]] == list(s.candidates_sweep)
