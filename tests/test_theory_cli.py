import argparse
import json

import pytest

from gtl_verify.checks import CHECKS, run_checks
from gtl_verify.checks.base import Check
from gtl_verify.checks.cli import register
from gtl_verify.checks.suite import run_check


def _parser():
    parser = argparse.ArgumentParser(prog="gtl")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_every_check_passes_on_a_seeded_batch():
    results = run_checks(cases=3, seed=1, progress=False)
    assert {r.name for r in results} == {c.name for c in CHECKS}
    for r in results:
        assert r.passed, (r.name, r.residual)
        if r.name.startswith("rational"):
            assert r.residual == 0.0


def test_theory_command_writes_json_and_exit_status(tmp_path, capsys):
    out = tmp_path / "theory.json"
    args = _parser().parse_args(["theory", "--cases", "2", "--only", "r4", "rational-r4", "--json", str(out), "--quiet"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "r4" in printed and "2/2 checks passed" in printed
    data = json.loads(out.read_text())
    assert data["kind"] == "theory" and len(data["results"]["checks"]) == 2
    assert all(c["passed"] for c in data["results"]["checks"])


def test_failing_check_gives_nonzero_exit(monkeypatch, capsys):
    from gtl_verify.checks import cli, suite

    broken = Check("broken", "always 1", lambda gen, device: 1.0)
    monkeypatch.setattr(cli, "run_checks", lambda *a, **k: [run_check(broken, 2, 0)])
    args = _parser().parse_args(["theory", "--quiet"])
    assert args.func(args) == 1
    assert "FAILED: broken" in capsys.readouterr().out


def test_separation_check_semantics():
    fails_ok = run_check(Check("sep", "", lambda gen, device: 0.5, 1e-6, "fails"), 3, 0)
    assert fails_ok.passed
    assert not run_check(Check("sep", "", lambda gen, device: 0.0, 1e-6, "fails"), 3, 0).passed
    assert not run_check(Check("nan", "", lambda gen, device: float("nan")), 1, 0).passed


def test_bad_arguments():
    with pytest.raises(ValueError, match="cases must be >= 1"):
        run_checks(cases=0, progress=False)
    with pytest.raises(ValueError, match="unknown check name"):
        run_checks(only=["nope"], progress=False)
