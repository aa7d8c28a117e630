"""Smoke test of benchmarks/oracle_throughput.py: tiny shape, results file, peers skipped with a note."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from benchmark_scripts import load_benchmark



@pytest.fixture(scope="module")
def bench():
    yield load_benchmark("oracle_throughput")
    sys.modules.pop("oracle_throughput", None)


def test_tiny_run_writes_ratios_to_the_bare_chain(bench, tmp_path, monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec
    missing = {"hmmlearn", "pomegranate"}
    monkeypatch.setattr(bench.importlib.util, "find_spec",
                        lambda name, *a: None if name in missing else real_find_spec(name, *a))
    threads = torch.get_num_threads()
    try:
        bench.main(["--batch", "3", "--length", "5", "--vocab", "3", "--repeats", "2", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)  # the benchmark pins one thread
    printed = capsys.readouterr().out
    assert "hmmlearn is not installed" in printed and "pomegranate is not installed" in printed
    results = json.loads((tmp_path / "oracle_throughput.json").read_text())["results"]
    rows = {row["what"]: row for row in results["tables"]["timings"]}
    assert rows[bench.BARE]["ratio_to_bare"] == 1.0
    goal_rows = [row for row in rows.values() if row["goal_ratio"] is not None]
    assert len(goal_rows) == 5 and all(row["rounds"] == 2 and row["median_s"] > 0 for row in goal_rows)
    assert results["tables"]["peer agreement"] == []
    assert "not installed" in results["tables"]["machine"][0]["notes"]
    assert (tmp_path / "oracle_throughput.md").is_file()


def test_bad_arguments_are_named(bench):
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
