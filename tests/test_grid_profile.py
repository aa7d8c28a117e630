"""benchmarks/grid_profile.py: exclusive stage timing and the report table (the runs themselves are minutes long)."""

from __future__ import annotations

import time

from benchmark_scripts import load_benchmark

gp = load_benchmark("grid_profile")


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_nested_stage_is_not_counted_in_its_parent():
    timer = gp.StageTimer()
    with timer.stage("outer"):
        _busy(0.05)
        with timer.stage("inner"):
            _busy(0.1)
    assert timer.calls == {"outer": 1, "inner": 1}
    assert 0.09 <= timer.cpu["inner"] and 0.04 <= timer.cpu["outer"] < 0.09


def _run(variant, cpu, stages, cells):
    return {"variant": variant, "total": {"wall_s": 2 * cpu, "cpu_s": cpu}, "stages": {k: {"cpu_s": v} for k, v in stages.items()},
            "cells": cells, "estimator_fit_cpu_s": {}}


def test_report_gives_ratios_and_flags_different_cells():
    meta = {"base": "abc", "head": "def", "seed": 0, "n_target": 100, "estimator_steps": 0, "ratio_steps": 4000,
            "load_before": "load 1", "load_after": "load 2"}
    before = _run("before", 10.0, {"train: a": 6.0, "density pass (fixed order)": 2.0}, {"gtl": {"transition_kl": 0.1}})
    after = _run("after", 5.0, {"train: a": 4.0}, {"gtl": {"transition_kl": 0.1}})
    text = gp.markdown([before, after], meta)
    assert "| after | 10 | 5 | 2.00x |" in text and "| density pass (fixed order) | 2.0 | 20.0% | 0.0 | 0.00 |" in text
    assert "**True**" in text
    after["cells"] = {"gtl": {"transition_kl": 0.2}}
    assert "**False**" in gp.markdown([before, after], meta)
