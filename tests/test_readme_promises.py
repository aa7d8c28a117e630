"""What the README and the Makefile tell a newcomer about cost and test depth matches the suite."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_make_test_names_its_hypothesis_profile_and_the_ci_depth():
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    profiles = dict(re.findall(r'register_profile\("(\w+)", max_examples=(\d+)', conftest))
    default = re.search(r'HYPOTHESIS_PROFILE", "(\w+)"', conftest)[1]
    readme = " ".join((ROOT / "README.md").read_text().split())  # line breaks as spaces
    assert f"`{default}` profile ({profiles[default]} examples per property)" in readme
    assert f"`ci` profile ({profiles['ci']} examples)" in readme
    assert "HYPOTHESIS_PROFILE=ci make test" in readme and "HYPOTHESIS_PROFILE=ci make test" in (ROOT / "Makefile").read_text()


def test_make_test_prints_the_profile_it_runs():
    try:
        dry = subprocess.run(["make", "-n", "-C", str(ROOT), "test"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("make is not installed")
    assert "HYPOTHESIS_PROFILE:-dev" in dry.stdout and "pytest" in dry.stdout


def test_cpu_tiny_cost_is_stated_as_measured():
    line = next(line for line in (ROOT / "README.md").read_text().splitlines() if "`gtl language run --config cpu-tiny`" in line)
    assert "about a minute" not in line and "54 s wall measured" in line and "2-core" in line
