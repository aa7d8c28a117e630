"""The suite's one settings loader (gtl_verify.config): typed, range-checked, dotted-key errors
for both applications, and the committed settings files loading with their meaning unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gtl_verify.config import Budget, ConfigError, NetSize, build, load
from markov.config import MarkovConfig, load_config as load_markov

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, message", [
    ("[training]\nratio_steps = -7\n", "training.ratio_steps must be in [0, inf), got -7"),
    ("[training]\nsource_steps = -1\n", "training.source_steps must be in [0, inf), got -1"),
    ('[training]\nsource_steps = "100"\n', "training.source_steps must be an integer, got '100'"),
    ("gamma_sweep_n_target = -3\n", "gamma_sweep_n_target must be in [1, inf), got -3"),
    ("n_targets = 20\n", "n_targets must be a list, got 20"),
    ("models = 3\n", "models must be a table, got 3"),
    ('gamma = "1.0"\n', "gamma must be a real number, got '1.0'"),
    ("seeds = 0\n", "seeds must be a list, got 0"),
    ("seeds = []\n", "seeds must hold at least one value"),
    ('presets = "paper"\n', "presets must be a list, got 'paper'"),
    ("overlap_n_target = 0\n", "overlap_n_target must be in [1, inf), got 0"),
    ("candidates = 6\n", "candidates must be at most the vocabulary size K=5 of preset 'paper', got 6"),
    ("[models]\ndenoiser_hidden = 30\n", "models.denoiser_hidden must be an even multiple of heads=4"),
    ("[models]\nhiden = 8\n", "unknown key(s) ['hiden'] in models"),
    ("n_targets = [20, 1.5]\n", "n_targets[1] must be an integer, got 1.5"),
])
def test_markov_config_errors_name_the_dotted_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_markov(path)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_markov_cli_refuses_bad_config_before_any_work(tmp_path, capsys):
    from gtl_verify.cli import main

    path = tmp_path / "bad.toml"
    path.write_text("[training]\nratio_steps = -7\n")
    assert main(["markov", "--config", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "training.ratio_steps must be in [0, inf), got -7" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["paper_grid.toml", "presets_grid.toml"])
def test_committed_markov_grids_keep_their_meaning(name):
    import tomllib

    from markov.config import MODEL_TABLES, TRAINING_TABLES

    raw = tomllib.loads((ROOT / "markov" / name).read_text())
    config = load_markov(ROOT / "markov" / name)
    flat = config.to_dict()
    tables = {"models": MODEL_TABLES, "training": TRAINING_TABLES}
    for key, value in raw.items():
        if isinstance(value, dict):
            for inner, v in value.items():
                if isinstance(v, dict):  # a per-component table
                    for setting, w in v.items():
                        assert flat[key][tables[key][inner][setting]] == w
                else:
                    assert flat[key][inner] == v
        else:
            assert flat[key] == (list(value) if isinstance(value, list) else value) or tuple(flat[key]) == tuple(value)


def test_committed_language_configs_load():
    from language.config import load_config

    for path in sorted((ROOT / "language" / "configs").glob("*.toml")):
        assert load_config(path).name == path.stem


def test_markov_sizes_are_shared_netsizes():
    sizes = MarkovConfig().models
    assert sizes.denoiser == NetSize(hidden=32, blocks=2, heads=4, cond=16)
    assert sizes.ratio.hidden == sizes.ratio_hidden
    budget = MarkovConfig().training.budget(50, lr=0.5)
    assert budget == Budget(steps=50, batch_size=64, lr=0.5, weight_decay=0.01, warmup=5)


@given(st.integers(-5, 5), st.sampled_from(["steps", "warmup"]))
def test_budget_int_ranges_name_the_dotted_key(value, key):
    if value >= 0:
        assert getattr(build(Budget(), {key: value}, "training.x"), key) == value
    else:
        with pytest.raises(ConfigError, match=rf"^training\.x\.{key} must be in \[0, inf\), got {value}$"):
            build(Budget(), {key: value}, "training.x")


@given(st.one_of(st.text(max_size=3), st.booleans(), st.lists(st.integers(), max_size=2), st.none()))
def test_type_errors_for_non_integers(value):
    with pytest.raises(ConfigError, match=r"^training\.x\.steps must be an integer"):
        build(Budget(), {"steps": value}, "training.x")


def test_values_keep_their_toml_type_so_hashes_stay(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("gamma = 1\n")
    config = load(MarkovConfig(), path)
    assert config.gamma == 1 and isinstance(config.gamma, int)
    assert load(MarkovConfig()).hash() == MarkovConfig().hash()


def test_markov_per_component_tables_load_like_the_old_flat_keys(tmp_path):
    new = tmp_path / "new.toml"
    new.write_text('[models.denoiser]\nhidden = 16\nblocks = 1\nheads = 2\n[models.ratio]\nhidden = 8\nheads = 2\n'
                   '[training]\nbatch_size = 8\n[training.ratio]\nsteps = 7\nlr = 0.01\nbatch_size = 4\n[training.ar2diff]\nsteps = 3\n')
    old = tmp_path / "old.toml"
    old.write_text('[models]\ndenoiser_hidden = 16\ndenoiser_blocks = 1\nratio_hidden = 8\nheads = 2\n'
                   '[training]\nbatch_size = 8\nratio_steps = 7\nratio_lr = 0.01\nratio_batch_size = 4\nar2diff_continue_steps = 3\n')
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_markov(new)
    with pytest.warns(DeprecationWarning, match="flat keys models.denoiser_hidden"):
        assert load_markov(old) == loaded
    assert (loaded.models.ratio_hidden, loaded.training.ratio_steps, loaded.training.ar2diff_continue_steps) == (8, 7, 3)


@pytest.mark.parametrize("text, message", [
    ("[models.critic]\nhidden = 8\n", "models.critic is not a component table"),
    ("[training.ratio]\nwarmup = 3\n", "training.ratio.warmup is not a setting"),
    ("[models.denoiser]\nheads = 2\n[models.ratio]\nheads = 4\n", "models.ratio.heads must equal"),
    ('overlap_preset = "paper"\n', r"overlap_preset must be a preset the overlap mixes \(\['diagonal', .*got 'paper'"),
    ('overlap_preset = "nope"\n', r"overlap_preset must be .*got 'nope'"),
    ('overlap_preset = "missing.toml"\n', r"^overlap_preset 'missing.toml': missing.toml: no such chain file"),
])
def test_markov_component_table_errors_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_markov(path)
