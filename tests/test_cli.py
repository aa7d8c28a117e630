"""The ``gtl`` command surface: unknown options, choice typos, --version, report noise, option checks."""

import json
import math
import subprocess
import sys

import pytest
import torch

from gtl_verify import __version__
from gtl_verify.cli import main, unknown_option, build_parser
from gtl_verify.samplers import SamplerConfig
from markov.config import MarkovConfig


def _error(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize("argv, prog, bad, suggestion", [
    (["markov", "--n-targets", "20"], "gtl markov", "--n-targets", "--n-target"),
    (["markov", "--n-targets=20"], "gtl markov", "--n-targets", "--n-target"),
    (["markov", "validate", "m:R", "--exact-lenght", "3"], "gtl markov validate", "--exact-lenght", "--exact-length"),
    (["markov", "validate", "m:R", "--ratio-drift", "-1", "--sample", "3", "--lenght", "4"], "gtl markov validate",
     "--lenght", "--length"),
    (["theory", "--sed", "1"], "gtl theory", "--sed", "--seed"),
    (["report", "x.json", "--output", "d"], "gtl report", "--output", "--out"),
    (["language", "run", "--confg", "cpu-tiny"], "gtl language run", "--confg", "--config"),
    (["language", "check-data", "--dta", "x"], "gtl language check-data", "--dta", "--data"),
])
def test_mistyped_option_is_named_with_the_closest_one(capsys, argv, prog, bad, suggestion):
    err = _error(capsys, argv)
    assert err.startswith(f"{prog}: error: unrecognised argument {bad}; did you mean {suggestion}?")
    assert "invalid choice" not in err


def test_unknown_option_without_a_close_match_lists_the_valid_ones(capsys):
    err = _error(capsys, ["theory", "--zzzzzz"])
    assert "unrecognised argument --zzzzzz; valid options: --cases, " in err


def test_negative_numbers_and_known_prefixes_are_not_unknown_options():
    parser = build_parser()
    assert unknown_option(parser, ["markov", "validate", "m:R", "--ratio-drift", "-1.5", "--exact-len", "2"]) is None
    assert unknown_option(parser, ["markov", "--n-target", "20", "5"]) is None
    assert unknown_option(parser, ["markov", "--", "--not-an-option"]) is None


def test_choice_typos_get_a_suggestion(capsys):
    err = _error(capsys, ["langage", "run"])
    assert "invalid choice: 'langage'" in err and "did you mean 'language'?" in err
    err = _error(capsys, ["markov", "--preset", "papr"])
    assert err.startswith("gtl markov: error: argument --preset") and "did you mean 'paper'?" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"gtl {__version__}"


def test_version_from_the_command_line():
    out = subprocess.run([sys.executable, "-m", "gtl_verify.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"gtl {__version__}"


@pytest.mark.parametrize("args, message", [
    (["--exact-length", "0"], "--exact-length must be in [1, inf), got 0"),
    (["--exact-length", "9"], "--exact-length = 9: (K+1)^L = 6^9 states > the limit 50000"),
    (["--samples", "1"], "--samples must be in [2, inf), got 1"),
    (["--ratio-drift", "nan"], "--ratio-drift must be a finite real number, got nan"),
    (["--ratio-drift", "inf"], "--ratio-drift must be a finite real number, got inf"),
    (["--ratio-drift=-inf"], "--ratio-drift must be a finite real number, got -inf"),
    (["--length", "0"], "--length must be in [1, inf), got 0"),
    (["--learned", "0"], "--learned must be in [1, inf), got 0"),
    (["--seed", "-1"], "--seed must be in [0, inf), got -1"),
])
def test_validator_options_checked_before_any_work(capsys, monkeypatch, args, message):
    import markov.validator as validator

    monkeypatch.setattr(validator, "load_rule", lambda spec: pytest.fail("loaded the rule before checking options"))
    assert main(["markov", "validate", "markov.examples:Unstabilised", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gtl markov: error: {message}") and len(err.splitlines()) == 1


@pytest.mark.parametrize("gamma", [math.inf, math.nan, -1.0])
def test_infinite_or_nan_gamma_is_rejected_at_construction(gamma):
    with pytest.raises(ValueError, match=r"gamma must be in \[0, inf\), got"):
        SamplerConfig(1, 2, gamma=gamma)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, inf\), got"):
        MarkovConfig(gamma=gamma)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, inf\), got"):
        SamplerConfig(1, 2, gamma=[[0.0, 1.0], [1.0, gamma]])


def test_markov_toml_gamma_inf_names_the_key(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("gamma = inf\n")
    assert main(["markov", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "gtl markov: error: gamma must be in [0, inf), got inf"
    assert not (tmp_path / "run").exists()


def test_report_on_a_run_folder_prints_one_summary_line_for_internal_files(tmp_path, capsys):
    from gtl_verify.provenance import provenance, write_results

    run = tmp_path / "run"
    results = {"preset": "paper", "rules": [{"rule": "r", "setting": "s", "exact_tv": 0.1, "exact_kl": 0.2,
                                             "mc_kl": None, "cross_entropy_gap": None, "notes": "n"}]}
    write_results(run / "results.json", "validation", results, provenance({}, [0], 1.0))
    for i in range(5):
        (run / "cells").mkdir(exist_ok=True)
        (run / "cells" / f"c{i}.json").write_text(json.dumps({"metrics": i}))
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == "skipped 5 internal JSON file(s) (not results files: no 'kind')"
    assert captured.out.strip().endswith("results.md")


def test_device_option_is_checked_with_its_name():
    from gtl_verify.validation import check_device

    assert check_device("--device", "cpu") == torch.device("cpu")
    assert check_device("--device", "cpu:0") == check_device("--device", torch.device("cpu", 0)) == torch.device("cpu")
    # leading zeros and non-ASCII digits parsed as an index, then torch.device raised a RuntimeError
    for bad in ("gpu", "cuda:x", "CPU", "cuda:-1", "", "cuda:01", "cuda:00", "cuda:\u0660", " cpu", "cpu:1", None, 3):
        with pytest.raises(ValueError, match=r"^--device must be cpu, cuda, cuda:N or mps, got"):
            check_device("--device", bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^--device cuda:1: CUDA is not available here"):
            check_device("--device", "cuda:1")
    else:
        n = torch.cuda.device_count()
        with pytest.raises(ValueError, match=f"only {n} CUDA device"):
            check_device("--device", f"cuda:{n}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_validator_device_cuda_without_cuda_is_one_line(capsys):
    assert main(["markov", "validate", "markov.examples:Unstabilised", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gtl markov: error: --device cuda: CUDA is not available here") and "\n" not in err


@pytest.mark.parametrize("argv, message", [
    (["theory", "--cases", "0"], "gtl theory: error: --cases must be in [1, inf), got 0"),
    (["theory", "--seed", "-2"], "gtl theory: error: --seed must be in [0, inf), got -2"),
    (["markov", "--n-target", "20", "0"], "gtl markov: error: --n-target must be in [1, inf), got 0"),
    (["markov", "--seeds", "-1"], "gtl markov: error: --seeds must be in [0, inf), got -1"),
    (["markov", "--samples", "1"], "gtl markov: error: --samples must be in [2, inf), got 1"),
])
def test_theory_and_markov_options_name_the_option(tmp_path, capsys, argv, message):
    assert main([*argv, "--quiet"] + (["--out", str(tmp_path / "run")] if argv[0] == "markov" else [])) == 2
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "run").exists()


def test_quick_markov_config_is_a_small_valid_grid():
    from pathlib import Path

    from markov.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "markov" / "quick.toml")
    assert (len(config.presets), len(config.n_targets), len(config.seeds), len(config.methods)) == (1, 1, 1, 4)
    assert config.gamma_sweep == () and config.overlap_sweep == ()
    assert config.training.ratio_steps <= 300 and config.training.source_steps <= 300


def test_option_values_are_not_taken_for_sub_commands(capsys):
    parser = build_parser()
    # "validate" is the value of --out here, so --exact-length belongs to gtl markov, which lacks it
    assert unknown_option(parser, ["markov", "--out", "validate", "--exact-length", "2"])[1].startswith(
        "unrecognised argument --exact-length")
    assert unknown_option(parser, ["markov", "validate", "m:R", "--out", "validate", "--exact-length", "2"]) is None
    assert unknown_option(parser, ["markov", "--preset", "paper", "diagonal", "--n-target", "5", "--quiet"]) is None


def test_report_goes_beside_its_results_without_out(tmp_path):
    from reports.cli import default_out

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text("{}")
    assert default_out([str(run)]) == run
    assert default_out([str(run / "results.json"), str(tmp_path / "other.json")]) == run
