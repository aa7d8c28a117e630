"""User-defined pairs from TOML and .npz files: round trips, exact answers and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gtl_verify.rules import GTL
from gtl_verify.testing import CHAIN_KINDS, assert_sampler_law_exact, chain_pairs, hmm_pairs
from markov.chain_file import ChainFileError, load_chain_pair, save_chain_pair
from markov.hmm import HMMPair, make_hmm_pair
from markov.presets import ChainPair, make_pair

PAIR_TOML = """
name = "two tokens"
tolerance = 1e-3

[source]
initial = [0.5, 0.5]
transition = [[0.9, 0.1], [0.2, 0.8]]

[target]
initial = [0.3333, 0.6667]
transition = [[0.5, 0.5], [0.25, 0.75]]
"""


def write(tmp_path, text: str, name: str = "pair.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_pair_loads_as_the_presets_type_and_is_exact(tmp_path):
    pair = load_chain_pair(write(tmp_path, PAIR_TOML))
    assert isinstance(pair, ChainPair) and pair.name == "two tokens" and pair.vocab_size == 2
    assert abs(float(pair.target.initial.sum()) - 1) <= 1e-15  # renormalised within the stated tolerance
    torch.testing.assert_close(pair.source.transition, torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64))
    assert_sampler_law_exact(GTL(), pair, 3)


@settings(max_examples=25)
@given(st.one_of(chain_pairs(kinds=CHAIN_KINDS), hmm_pairs()), st.sampled_from([".toml", ".npz"]))
def test_round_trip_is_exact_to_round_off(tmp_path_factory, pair, suffix):
    path = save_chain_pair(pair, tmp_path_factory.mktemp("pairs") / f"pair{suffix}")
    loaded = load_chain_pair(path)
    assert type(loaded) is type(pair) and loaded.name == pair.name
    for side in ("source", "target"):
        want, got = getattr(pair, side), getattr(loaded, side)
        torch.testing.assert_close(got.table(2), want.table(2), rtol=0, atol=1e-15)


def test_emissions_make_an_hmm_pair_and_a_side_without_them_is_a_chain(tmp_path):
    text = PAIR_TOML.replace("[target]", "[target]\nemission = [[1.0, 0.0], [0.3, 0.7]]")
    pair = load_chain_pair(write(tmp_path, text))
    assert isinstance(pair, HMMPair) and pair.source.num_hidden == 2
    torch.testing.assert_close(pair.source.emission, torch.eye(2, dtype=torch.float64))
    regime = save_chain_pair(make_hmm_pair("regime"), tmp_path / "regime.npz")
    assert isinstance(load_chain_pair(regime), HMMPair)


def test_preset_pairs_round_trip_through_toml(tmp_path):
    for name in ("paper", "no-overlap"):
        pair = make_pair(name)
        loaded = load_chain_pair(save_chain_pair(pair, tmp_path / f"{name}.toml"))
        torch.testing.assert_close(loaded.source.transition, pair.source.transition, rtol=0, atol=1e-15)
        torch.testing.assert_close(loaded.target.initial, pair.target.initial, rtol=0, atol=1e-15)


@pytest.mark.parametrize("old, new, message", [
    ("transition = [[0.9, 0.1], [0.2, 0.8]]", "transition = [[0.9, 0.1], [0.2, 0.78]]",
     r"pair.toml: source.transition row 1 sums to 0.98, not 1 \(tolerance 0.001\)$"),
    ("transition = [[0.9, 0.1], [0.2, 0.8]]", "transition = [[1.1, -0.1], [0.2, 0.8]]",
     r"pair.toml: source.transition\[0\]\[1\] = -0.1 is negative$"),
    ("transition = [[0.9, 0.1], [0.2, 0.8]]", "transition = [[nan, 0.1], [0.2, 0.8]]",
     r"pair.toml: source.transition\[0\]\[0\] = nan is not finite$"),
    ("initial = [0.3333, 0.6667]", "initial = [0.3333, inf]", r"pair.toml: target.initial\[1\] = inf is not finite$"),
    ("transition = [[0.5, 0.5], [0.25, 0.75]]", "transition = [[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]]",
     r"pair.toml: target.transition has shape \(2, 3\); expected \(2, 2\) \(target.initial has 2 entries\)$"),
    ("transition = [[0.5, 0.5], [0.25, 0.75]]", "transition = [[0.5, 0.5], [0.25]]",
     r"pair.toml: target.transition is not a rectangular array of numbers$"),
    ("transition = [[0.5, 0.5], [0.25, 0.75]]", "transitions = [[0.5, 0.5], [0.25, 0.75]]",
     r"pair.toml: unknown key 'transitions' in \[target\]"),
    ("tolerance = 1e-3", "tolerance = -1", r"pair.toml: tolerance must be in \[0, 1\), got -1.0$"),
    ("tolerance = 1e-3", "tolerance = 1e-3\nseed = 3", r"pair.toml: unknown key 'seed'"),
    ("[target]", "[target]\nemission = [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]",
     r"pair.toml: the target has 3 tokens and the source 2; both must use the same vocabulary$"),
    ("[target]", "[target]\nemission = [[0.5, 0.5]]",
     r"pair.toml: target.emission has 1 rows; expected one per hidden state \(2\)$"),
    ("name =", "name = = ", r"pair.toml: invalid TOML"),
])
def test_bad_files_give_one_line_errors(tmp_path, old, new, message):
    path = write(tmp_path, PAIR_TOML.replace(old, new, 1))
    with pytest.raises(ChainFileError, match=message) as info:
        load_chain_pair(path)
    assert "\n" not in str(info.value)


def test_missing_parts_and_files_are_named(tmp_path):
    with pytest.raises(ChainFileError, match="missing table \\[target\\]"):
        load_chain_pair(write(tmp_path, PAIR_TOML.split("[target]")[0]))
    with pytest.raises(ChainFileError, match="target has no 'transition'"):
        load_chain_pair(write(tmp_path, PAIR_TOML.split("transition = [[0.5")[0]))
    with pytest.raises(ChainFileError, match="no such chain file"):
        load_chain_pair(tmp_path / "absent.toml")
    with pytest.raises(ChainFileError, match="must end in .toml or .npz, got '.json'"):
        load_chain_pair(write(tmp_path, "{}", "pair.json"))
    np.savez(tmp_path / "bad.npz", source_initial=np.ones(2) / 2, source_transition=np.eye(2),
             target_initial=np.ones(2) / 2, target_transition=np.eye(2), target_emision=np.eye(2))
    with pytest.raises(ChainFileError, match="bad.npz: unknown array 'target_emision'"):
        load_chain_pair(tmp_path / "bad.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(ChainFileError, match="broken.npz: not a readable .npz archive"):
        load_chain_pair(tmp_path / "broken.npz")


def test_resolve_pair_reads_presets_and_chain_files(tmp_path):
    from markov.presets import is_chain_file, pair_identity, resolve_pair

    path = write(tmp_path, PAIR_TOML)
    assert is_chain_file(str(path)) and not is_chain_file("paper")
    assert torch.equal(resolve_pair("dirichlet", seed=3).target.transition, make_pair("dirichlet", seed=3).target.transition)
    assert torch.equal(resolve_pair("diagonal", overlap=0.5).source.transition,
                       make_pair("diagonal", overlap=0.5).source.transition)
    pair, mixed = load_chain_pair(path), resolve_pair(str(path), overlap=0.25)
    torch.testing.assert_close(mixed.source.transition, 0.75 * pair.source.transition + 0.25 * pair.target.transition)
    assert torch.equal(resolve_pair(str(path), overlap=1.0).source.transition, pair.target.transition)
    assert pair_identity("paper") == "paper" and pair_identity(str(path)).startswith("chain file sha256 ")
    before = pair_identity(str(path))
    path.write_text(PAIR_TOML.replace("0.9, 0.1", "0.8, 0.2"))
    assert pair_identity(str(path)) != before
    hmm = save_chain_pair(make_hmm_pair("regime"), tmp_path / "regime.toml")
    with pytest.raises(ValueError, match="regime.toml: holds hidden Markov models"):
        resolve_pair(str(hmm))


def test_pair_identity_is_the_content_not_the_path_or_name(tmp_path, monkeypatch):
    """One content under two spellings of its path, another folder and another name has one identity
    (the store key that seeds the weights), so it gets identical results; a changed matrix does not."""
    from markov.config import load_config
    from markov.presets import pair_identity
    from markov.validator import setting_record

    (tmp_path / "a").mkdir()
    path = write(tmp_path / "a", PAIR_TOML, "sonly.toml")
    renamed = write(tmp_path, PAIR_TOML.replace('"two tokens"', '"other label"'), "copy.toml")
    monkeypatch.chdir(tmp_path / "a")
    spellings = ["sonly.toml", str(path), "../a/sonly.toml", str(renamed)]
    assert len({pair_identity(p) for p in spellings}) == 1
    npz = save_chain_pair(load_chain_pair(path), tmp_path / "same.npz")  # same laws to round-off, other format
    np.testing.assert_allclose(load_chain_pair(npz).source.transition, load_chain_pair(path).source.transition)
    records = {str(setting_record("gtl", p, exact_length=3, length=4, samples=8, ratio_drift=0.0, seed=0,
                                  learned_n_target=None)) for p in spellings}
    assert len(records) == 1
    hashes = {load_config(None, presets=[p]).cell_hash() for p in spellings}
    assert len(hashes) == 1
    changed = write(tmp_path, PAIR_TOML.replace("0.9, 0.1", "0.8, 0.2"), "changed.toml")
    assert pair_identity(str(changed)) != pair_identity("sonly.toml")


def test_the_same_pair_twice_is_refused(tmp_path):
    from markov.cli import check_distinct_pairs

    path = write(tmp_path, PAIR_TOML)
    copy = write(tmp_path, PAIR_TOML.replace('"two tokens"', '"copy"'), "copy.toml")
    check_distinct_pairs(["paper", str(path)])
    with pytest.raises(ValueError, match="pair.toml is given twice"):
        check_distinct_pairs([str(path), str(path)])
    with pytest.raises(ValueError, match="copy.toml has the same content as .*pair.toml"):
        check_distinct_pairs([str(path), str(copy)])
    with pytest.raises(ValueError, match="paper is given twice"):
        check_distinct_pairs(["paper", "paper"])


@pytest.mark.parametrize("old, new, message", [
    ("0.9, 0.1", "'0.9', 0.1", r"source.transition holds '0.9', not a real number"),
    ("0.9, 0.1", "true, 0.1", r"source.transition holds True, not a real number"),
    ('name = "two tokens"', "name = {a=1}", r"name must be a non-empty string, got \{'a': 1\}"),
    ('name = "two tokens"', "name = 3", r"name must be a non-empty string, got 3"),
    ("tolerance = 1e-3", 'tolerance = "1e-3"', r"tolerance must be a number, got '1e-3'"),
])
def test_values_that_are_not_numbers_or_names_are_refused(tmp_path, old, new, message):
    path = write(tmp_path, PAIR_TOML.replace(old, new))
    with pytest.raises(ChainFileError, match=rf"^{tmp_path / 'pair.toml'}: {message}"):
        load_chain_pair(path)


def test_encoding_and_directories_are_named_with_the_file(tmp_path):
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + PAIR_TOML.encode())
    assert load_chain_pair(bom).name == "two tokens"  # a UTF-8 BOM is read as UTF-8
    latin = tmp_path / "latin.toml"
    latin.write_bytes(PAIR_TOML.replace("two tokens", "caf\u00e9").encode("latin-1"))
    with pytest.raises(ChainFileError, match=r"latin.toml: not UTF-8 text \(byte 0xe9"):
        load_chain_pair(latin)
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(ChainFileError, match=r"folder.toml: a directory, not a chain file"):
        load_chain_pair(tmp_path / "folder.toml")


def test_npz_values_of_the_wrong_kind_or_size_are_named(tmp_path):
    arrays = {f"{side}_{f}": getattr(getattr(make_pair("paper"), side), f).numpy() for side in ("source", "target")
              for f in ("initial", "transition")}
    cases = {"complex": ({"source_transition": arrays["source_transition"].astype(complex)},
                         r"source.transition holds .*j\) \(dtype complex128\), not a real number"),
             "boolean": ({"target_initial": np.ones(5, dtype=bool)}, r"target.initial holds .*True.* \(dtype bool\)"),
             "tolerance": ({"tolerance": np.array([1e-6, 1e-6])}, r"tolerance must be a single value, got an array of shape \(2,\)"),
             "name": ({"name": np.array(["a", "b"])}, r"name must be a single value"),
             "numeric name": ({"name": np.array(3)}, r"name must be a non-empty string, got 3")}
    for label, (change, message) in cases.items():
        path = tmp_path / f"{label.replace(' ', '-')}.npz"
        np.savez(path, **{**arrays, **change})
        with pytest.raises(ChainFileError, match=rf"^{path}: {message}"):
            load_chain_pair(path)
