"""Results files: schema version, kind-specific required keys, typed results round trips, and every
committed results file still rendering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gtl_verify.provenance import read_results, write_results
from gtl_verify.results import (
    SCHEMA_VERSION,
    LanguageResults,
    MarkovResults,
    REQUIRED_KEYS,
    ResultsSchemaError,
    check_envelope,
)
from reports.builder import build_report
from reports.schema import ResultsError

RUNS = Path(__file__).resolve().parents[1] / "reports" / "runs"
MARKOV = {"config": {"seeds": [0]}, "presets": {}, "methods": ["gtl"], "cells": [], "gamma_sweep": [], "overlap_sweep": [],
          "components": []}


def test_typed_results_round_trip_and_keep_unknown_keys(tmp_path):
    typed = MarkovResults.from_dict({**MARKOV, "new_metric": [1, 2]})
    assert typed.cells == [] and typed.extra == {"new_metric": [1, 2]}
    assert typed.to_dict() == {**MARKOV, "new_metric": [1, 2]}
    path = write_results(tmp_path / "r.json", "markov-benchmark", typed, {})
    envelope = json.loads(path.read_text())
    assert envelope["schema_version"] == SCHEMA_VERSION
    assert MarkovResults.from_dict(read_results(path)["results"]) == typed


def test_required_keys_come_from_the_typed_results():
    assert REQUIRED_KEYS["markov-benchmark"] == MarkovResults.required()
    assert REQUIRED_KEYS["language"] == ("mauve",) and REQUIRED_KEYS["markov-benchmark"] == ("presets", "cells")
    with pytest.raises(ResultsSchemaError, match="results need key 'cells'"):
        MarkovResults.from_dict({k: v for k, v in MARKOV.items() if k != "cells"})


@pytest.mark.parametrize("version", [0, 3, 7, "2", True, None, 2.5])
def test_unknown_schema_version_is_refused(version):
    with pytest.raises(ResultsSchemaError, match=r"results file x.json: schema_version must be one of \[1, 2\]"):
        check_envelope({"kind": "markov-benchmark", "schema_version": version, "meta": {}, "results": MARKOV}, "x.json")


def test_files_without_a_version_read_as_version_1_and_migrate():
    data = check_envelope({"kind": "markov-benchmark", "meta": {}, "results": MARKOV}, "x.json")
    assert data["schema_version"] == SCHEMA_VERSION


def test_report_refuses_a_file_whose_kind_does_not_match_its_fields(tmp_path):
    path = write_results(tmp_path / "relabelled.json", "language", MARKOV, {})
    with pytest.raises(ResultsError, match=rf"results file {path}: kind 'language' needs results key 'mauve'"):
        build_report(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _report_kinds() -> list[str]:
    from reports.builder import RENDERERS

    return sorted(p.name for p in RUNS.glob("*.json") if json.loads(p.read_text()).get("kind") in RENDERERS)


@pytest.mark.parametrize("name", _report_kinds())
def test_every_committed_results_file_renders(name, tmp_path):
    """Every committed results file of a report kind (other JSON there, e.g. kind 'estimate', is not a report)."""
    report = build_report(RUNS / name, tmp_path)
    assert report.is_file() and report.stat().st_size > 200
