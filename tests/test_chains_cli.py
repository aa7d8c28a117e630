"""`gtl markov --chains FILE` and `gtl markov validate RULE --chains FILE` end to end on a user's chain file."""

from __future__ import annotations

import json

import pytest

from gtl_verify.cli import main
from markov.chain_file import ChainFileError
from markov.config import MarkovConfig
from markov.validator import validate

PAIR = """
name = "three tokens"
[source]
initial = [0.5, 0.4, 0.1]
transition = [[0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.3, 0.3, 0.4]]
[target]
initial = [0.2, 0.3, 0.5]
transition = [[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.2, 0.2, 0.6]]
"""

TINY = """
n_targets = [20]
methods = ["gtl-oracle-ratio"]
n_source = 200
samples = 20
length = 6
gamma_sweep = []
overlap_sweep = []
[training]
source_steps = 5
target_steps = 5
ratio_steps = 5
"""


@pytest.fixture
def pair_file(tmp_path):
    path = tmp_path / "pair.toml"
    path.write_text(PAIR)
    return path


def test_validate_runs_on_a_chain_file_and_full_guidance_is_exact(pair_file, tmp_path):
    out = tmp_path / "validate"
    code = main(["markov", "validate", "markov.examples:Unstabilised", "--chains", str(pair_file), "--exact-length", "2",
                 "--length", "8", "--samples", "20", "--quiet", "--out", str(out)])
    assert code == 0
    rows = json.loads((out / "results.json").read_text())["results"]["rules"]
    full = [r for r in rows if r["rule"] == "full guidance" and r["setting"] == "exact: left-to-right"]
    assert full and full[0]["exact_tv"] <= 1e-12


def test_benchmark_runs_on_a_chain_file(pair_file, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "bench"
    assert main(["markov", "--config", str(config), "--chains", str(pair_file), "--quiet", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert list(results["presets"]) == [str(pair_file)] and results["presets"][str(pair_file)]["vocab_size"] == 3
    assert {c["method"] for c in results["cells"]} == {"gtl-oracle-ratio"}


def test_a_bad_chain_file_is_named_before_any_work(pair_file, capsys):
    pair_file.write_text(PAIR.replace("0.6, 0.3, 0.1]", "0.6, 0.3, 0.2]", 1))
    with pytest.raises(ChainFileError, match=r"pair.toml: source.transition row 0 sums to 1.1, not 1"):
        validate(lambda step: None, str(pair_file), exact_length=2, length=8, samples=20, progress=False)
    with pytest.raises(ChainFileError, match=r"pair.toml: source.transition row 0 sums to 1.1"):
        MarkovConfig(presets=(str(pair_file),))


def test_a_changed_chain_file_changes_the_cell_hash(pair_file):
    before = MarkovConfig(presets=(str(pair_file),)).cell_hash()
    pair_file.write_text(PAIR.replace("0.2, 0.3, 0.5", "0.3, 0.3, 0.4"))
    assert MarkovConfig(presets=(str(pair_file),)).cell_hash() != before
    assert MarkovConfig(presets=("paper",)).cell_hash() == MarkovConfig(presets=("diagonal",)).cell_hash()


VALIDATE = ["markov", "validate", "markov.examples:Unstabilised", "--exact-length", "2", "--length", "8",
            "--samples", "20", "--quiet"]


def test_validate_default_folders_keep_each_pair_and_use_the_files_name(pair_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(VALIDATE + ["--preset", "diagonal"]) == 0
    assert main(VALIDATE + ["--chains", str(pair_file)]) == 0
    folders = sorted(p.parent.relative_to(tmp_path).as_posix() for p in tmp_path.glob("runs/validate/*/*/results.json"))
    rule = folders[0].split("/")[2]
    assert folders == [f"runs/validate/{rule}/diagonal", f"runs/validate/{rule}/three-tokens"]
    chains = tmp_path / f"runs/validate/{rule}/three-tokens"
    results = json.loads((chains / "results.json").read_text())["results"]
    assert results["preset"] == "three tokens" and results["pair"].startswith("chain file sha256 ")  # content, not path
    report = (chains / "results.md").read_text()
    assert "# Guidance-rule validation (preset three tokens)" in report and "pair.toml" not in report.split("## Provenance")[0]


def test_validate_refuses_a_folder_holding_another_setting(pair_file, tmp_path, capsys):
    out = tmp_path / "v"
    assert main(VALIDATE + ["--preset", "diagonal", "--out", str(out)]) == 0
    before = (out / "results.json").read_text()
    capsys.readouterr()
    for other in (["--chains", str(pair_file)], ["--preset", "diagonal", "--seed", "1"], ["--preset", "paper"]):
        assert main(VALIDATE + other + ["--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"--out {out} already holds the results of a different validation" in err, err
        assert (out / "results.json").read_text() == before  # nothing replaced
    assert main(VALIDATE + ["--preset", "diagonal", "--out", str(out)]) == 0  # the same setting re-runs in place


def test_benchmark_report_uses_the_chain_files_name(pair_file, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "bench"
    assert main(["markov", "--config", str(config), "--chains", str(pair_file), "--quiet", "--out", str(out)]) == 0
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "results-three-tokens-transitions.png" in figures and not any("pair.toml" in f for f in figures), figures
    report = (out / "results.md").read_text().split("## Provenance")[0]
    assert "Preset three tokens" in report and "pair.toml" not in report


def test_resumed_benchmark_reports_every_invocations_wall_time(pair_file, tmp_path):
    from gtl_verify.provenance import read_results

    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "bench"
    argv = ["markov", "--config", str(config), "--chains", str(pair_file), "--quiet", "--out", str(out)]
    assert main(argv) == 0 and main(argv) == 0  # the second invocation resumes the folder
    parts = read_results(out / "results.json")["meta"]["wall_time_parts_s"]
    assert len(parts) == 2 and json.loads((out / ".invocations.json").read_text())[0] == parts[0]
    assert f"{sum(parts):.1f} s in total over 2 invocations" in (out / "results.md").read_text()
