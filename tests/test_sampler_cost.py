"""benchmarks/sampler_cost.py: counted ratio passes equal the cost formulas on tiny networks, the
formula-only rows carry their reason, and the config rows read their sizes through the config loaders."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from gtl_verify.networks import BackboneConfig
from gtl_verify.schedules import LogLinearSchedule

from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


sc = load_benchmark("sampler_cost")
CPU = torch.device("cpu")


def tiny_setting(k: int = 3, length: int = 4, batch: int = 2, steps: int = 5) -> tuple:
    cfg = BackboneConfig(vocab_size=k, num_embeddings=k + 1, max_length=length, hidden=8, blocks=1, heads=2, cond=4)
    nets = sc.make_nets(cfg, cfg, k, 64, 0, CPU)
    planners = {"planner": (sc.make_planner("confidence"), 0.5), "left-to-right": (sc.LeftToRightPlanner(), 0.0)}
    return nets, sc.RunSetting(k, k, batch, length, steps, planners)


def test_expected_masked_position_steps_is_L_T_plus_1_over_2_for_the_log_linear_schedule():
    for length, steps in [(1, 1), (4, 5), (16, 16), (7, 33)]:
        got = sc.expected_masked_position_steps(LogLinearSchedule(), length, steps)
        assert got == pytest.approx(float(Fraction(length * (steps + 1), 2)), rel=1e-12)


def test_counted_passes_equal_the_formulas_for_every_method_and_sampler():
    nets, setting = tiny_setting()
    k, length, b = setting.k, setting.length, setting.batch
    methods = sc.methods_for(k, (1, 2, 7), ("ancestral", "planner", "left-to-right"))
    assert {m.n for m in methods if m.guided} == {1, 2, k}  # n >= K dropped, full guidance scores all K
    meas = sc.measure(methods, nets, setting, CPU, repeats=2, warmup=0, seed=0)
    assert meas.rounds == 2
    for m in methods:
        res, rec, exact, status = meas.last[m]
        assert status == "ok" and res.ratio_passes == exact
        if not m.guided:
            assert (res.ratio_passes, res.single_site_passes) == (0, 0)
        elif m.amortised:
            assert res.ratio_passes == 0 and res.single_site_passes == sum(rec.rows) > 0
        elif m.planned:  # one position per step, n candidates there: L n per sequence
            assert res.ratio_passes == b * length * m.n
            assert sum(rec.masked) == b * length * (length + 1) // 2
        else:  # every masked position scores n (K for full guidance) candidates at every step
            assert res.ratio_passes == m.n * sum(rec.masked) > 0
        row = sc.cost_row(m, meas, setting, None)
        assert row["check"] == "ok" and row["repeats"] == 2
        assert row["formula_passes_per_seq"] == row["ratio_passes_per_seq"]
        if not m.guided:
            assert row["guided_over_unguided"] == 1.0


def test_a_count_that_differs_from_the_formula_raises_naming_the_method():
    nets, setting = tiny_setting()
    method = sc.Method("planner", "top-2", sc.GTL(candidates=2), 2)
    res, rec, _ = sc.run_once(method, nets, setting, CPU, 0)
    wrong = replace(res, ratio_passes=res.ratio_passes + 1)
    with pytest.raises(AssertionError, match="planner top-2 at K=3, L=4"):
        sc.check_counts(method, wrong, rec, setting.k, setting.length, setting.batch)


def test_rows_over_the_work_limits_are_formula_only_with_the_reason():
    nets, setting = tiny_setting()
    methods = sc.methods_for(setting.k, (1,), ("ancestral",))
    args = type("Args", (), {"max_token_passes": 20.0, "max_denoiser_work": float("inf")})()
    skipped = sc.skip_reasons(methods, setting, args)
    assert skipped[methods[0]] is None  # unguided: no ratio work
    full = next(m for m in methods if m.name == "full")
    assert "--max-token-passes" in skipped[full]
    row = sc.cost_row(full, sc.Measurement({}, {}, 0), setting, skipped[full])
    expected = setting.k * sc.expected_masked_position_steps(sc.SCHEDULE, setting.length, setting.steps)
    assert row["check"] == "formula only" and row["formula_passes_per_seq"] == pytest.approx(expected)
    assert row["wall_s_per_seq"].startswith("not run (")
    args.max_denoiser_work = setting.k * setting.length ** 2 - 1
    assert all("--max-denoiser-work" in why for why in sc.skip_reasons(methods, setting, args).values())


def test_markov_case_reads_the_sizes_of_the_config_file(tmp_path):
    from markov.config import MarkovConfig
    from markov.presets import make_pair

    path = tmp_path / "m.toml"
    path.write_text('presets = ["paper"]\nlength = 7\nsamples = 9\ncandidates = 2\nplanner_temperature = 0.25\n'
                    "[models]\ndenoiser_hidden = 16\ndenoiser_blocks = 3\nratio_hidden = 8\nratio_blocks = 1\nheads = 2\n")
    case = sc.markov_case(path)
    k = make_pair("paper").source.vocab_size
    assert (case.k, case.mask_id, case.length, case.batch, case.candidates) == (k, k, 7, 9, (2,))
    assert (case.denoiser.hidden, case.denoiser.blocks, case.denoiser.heads) == (16, 3, 2)
    assert (case.ratio.hidden, case.ratio.blocks, case.planner.hidden, case.planner_temperature) == (8, 1, 8, 0.25)
    default = sc.markov_case(None)
    cfg = MarkovConfig()
    assert (default.length, default.batch, default.candidates) == (cfg.length, cfg.samples, ())
    assert (default.denoiser.hidden, default.ratio.blocks) == (cfg.models.denoiser_hidden, cfg.models.ratio_blocks)
    assert default.samplers == ("left-to-right", "planner")


def test_language_case_reads_the_cpu_config_and_its_bpe_vocabulary():
    from language.config import load_config
    from language.tokenizer import BPE_SPECIAL_TOKENS

    cfg = load_config("cpu")
    case = sc.language_case("cpu")
    assert (case.k, case.mask_id) == (cfg.data.bpe_vocab_size, BPE_SPECIAL_TOKENS.index("[MASK]"))
    assert case.length == cfg.data.segment_length and case.steps == cfg.sampling.steps
    assert case.batch == cfg.sampling.batch and case.candidates == (cfg.sampling.candidates,)
    assert case.top_k == (cfg.sampling.top_k or None) and case.gamma == cfg.sampling.gamma
    for net in ("denoiser", "ratio", "planner"):
        size, got = getattr(cfg.models, net), getattr(case, net)
        assert (got.hidden, got.blocks, got.heads, got.cond) == (size.hidden, size.blocks, size.heads, size.cond)


def test_language_case_of_a_changed_file_and_a_missing_vocabulary(tmp_path):
    text = (ROOT / "language/configs/cpu.toml").read_text().replace("segment_length = 32", "segment_length = 16")
    text = text.replace('vocabulary = "full"', 'vocabulary = "observed"')  # its size comes from a run's results
    path = tmp_path / "mine.toml"
    text = re.sub(r"(?m)^candidates = \d+", "candidates = 3", text)
    path.write_text(re.sub(r"(?m)^top_k = \d+", "top_k = 3", text))  # top-k <= candidates (equal truncation)
    with pytest.raises(FileNotFoundError, match="language-mine.json"):
        sc.language_case(path)
    results = tmp_path / "run.json"
    results.write_text(json.dumps({"results": {"vocabulary": {"size": 50, "tokenizer_size": 30522, "tokenizer_mask_id": 103}}}))
    case = sc.language_case(path, vocab_results=results)
    assert (case.k, case.mask_id, case.length, case.candidates) == (50, 50, 16, (3,))


def test_main_writes_grid_config_goal_and_load_tables(tmp_path):
    cfg = tmp_path / "m.toml"
    cfg.write_text("length = 4\nsamples = 3\n[models]\ndenoiser_hidden = 8\ndenoiser_blocks = 1\nratio_hidden = 8\n"
                   "ratio_blocks = 1\nheads = 2\n")
    out = tmp_path / "out"
    assert sc.main(["--K", "3", "--L", "4", "--n", "1", "--repeats", "1", "--warmup", "0", "--skip-validation",
                    "--markov-configs", str(cfg), "--language-configs", "--config-repeats", "2", "--out", str(out)]) == 0
    results = json.loads((out / "sampler_cost.json").read_text())["results"]
    config = results["tables"][sc.CONFIG_TABLE]
    assert config and all(r["check"] == "ok" and r["repeats"] == 2 and r["L"] == 4 and r["batch"] == 3 for r in config)
    assert {r["sampler"] for r in config} == {"left-to-right", "planner"}
    assert all(r["status"] == "open: needs a GPU" for r in results["tables"][sc.GOALS_TABLE])
    load = results["tables"][sc.LOAD_TABLE][0]
    assert len(load["load_before_1_5_15"].split(" / ")) == 3 and "ratios" in load["note"]
