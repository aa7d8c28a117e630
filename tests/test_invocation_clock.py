"""InvocationClock: every invocation's wall time in a run folder, interrupted ones included."""

from __future__ import annotations

import json

import pytest

from gtl_verify.provenance import INVOCATIONS_FILE, InvocationClock, provenance
from gtl_verify.storage import DamagedCacheWarning
from reports.markdown import wall_time_item


def test_parts_accumulate_oldest_first_and_an_interrupted_invocation_counts(tmp_path):
    with InvocationClock(tmp_path) as clock:
        assert clock.parts() == [pytest.approx(clock.elapsed(), abs=1e-3)]
    first = json.loads((tmp_path / INVOCATIONS_FILE).read_text())
    with pytest.raises(KeyboardInterrupt), InvocationClock(tmp_path):
        raise KeyboardInterrupt  # Ctrl-C: this part is kept for the resumed run
    with InvocationClock(tmp_path) as clock:
        parts = clock.parts()
        meta = provenance({}, [0], clock.elapsed(), parts)
    assert len(parts) == 3 and parts[0] == first[0] and all(p >= 0 for p in parts)
    assert json.loads((tmp_path / INVOCATIONS_FILE).read_text())[:2] == parts[:2]
    label, text = wall_time_item(meta)
    assert label == "Wall time" and f"{sum(parts):.1f} s in total over 3 invocations" in text


def test_provenance_without_parts_has_no_parts_key():
    assert "wall_time_parts_s" not in provenance({}, [0], 1.0)


@pytest.mark.parametrize("text", ["", "{", "[1, -2]", '["a"]', "{}"])
def test_a_damaged_record_is_named_and_restarted(tmp_path, text):
    (tmp_path / INVOCATIONS_FILE).write_text(text)
    with pytest.warns((DamagedCacheWarning, UserWarning), match=INVOCATIONS_FILE), InvocationClock(tmp_path) as clock:
        assert len(clock.parts()) == 1
    assert len(json.loads((tmp_path / INVOCATIONS_FILE).read_text())) == 1


def test_the_commit_recorded_is_the_one_the_run_started_from(monkeypatch, tmp_path):
    """A long run records the commit read at start-up, even when the checkout moves on meanwhile."""
    import subprocess
    from types import SimpleNamespace

    from gtl_verify import provenance

    heads = iter(["a" * 40, "b" * 40])

    def fake_run(cmd, **kwargs):
        return SimpleNamespace(stdout=next(heads) if "rev-parse" in cmd else "", returncode=0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    provenance.git_commit.cache_clear()
    try:
        first = provenance.git_commit(tmp_path)
        assert provenance.git_commit(tmp_path) == first == "a" * 40
    finally:
        provenance.git_commit.cache_clear()
