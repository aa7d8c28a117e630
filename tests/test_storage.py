"""Run-folder files: atomic 0644 writes, damaged caches named and recomputed, the run-folder lock,
the component store, and a Markov run folder whose summary covers every finished cell."""

from __future__ import annotations

import dataclasses
import json
import stat

import pytest
import torch

from gtl_verify.networks import BackboneConfig, SequenceNet
from gtl_verify.provenance import write_results
from gtl_verify.storage import (
    DamagedCacheWarning,
    RunFolderBusy,
    RunLock,
    atomic_torch_save,
    atomic_write_text,
    load_torch_cache,
    read_json_cache,
)
from gtl_verify.store import ComponentStore, key_digest
from markov import benchmark
from markov.config import MarkovConfig, ModelSizes, TrainingBudget


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_are_world_readable(tmp_path):
    assert _mode(atomic_write_text(tmp_path / "a.txt", "x")) == 0o644
    assert _mode(atomic_torch_save({"a": torch.ones(2)}, tmp_path / "b.pt")) == 0o644
    assert _mode(write_results(tmp_path / "r.json", "theory", {}, {})) == 0o644


@pytest.mark.parametrize("text", ["", "{\"cells\": [1, 2", "\x00\x01"])
def test_damaged_json_cache_is_named_and_dropped(tmp_path, text):
    path = tmp_path / "cell.json"
    path.write_text(text)
    with pytest.warns(DamagedCacheWarning, match=str(path)):
        assert read_json_cache(path) is None
    assert not path.exists()
    assert read_json_cache(tmp_path / "missing.json") is None


def test_a_cache_of_the_wrong_shape_is_named_and_dropped(tmp_path):
    path = tmp_path / "cell.json"
    for text in ("{}", "[]", "\"x\""):
        path.write_text(text)
        with pytest.warns(DamagedCacheWarning, match="unexpected content"):
            assert read_json_cache(path, lambda v: isinstance(v, dict) and "metrics" in v) is None
        assert not path.exists()
    path.write_text('{"metrics": {}}')
    assert read_json_cache(path, lambda v: isinstance(v, dict) and "metrics" in v) == {"metrics": {}}


def test_truncated_torch_cache_is_named_and_dropped(tmp_path):
    path = atomic_torch_save({"tokens": torch.arange(1000)}, tmp_path / "segments.pt")
    data = path.read_bytes()
    for size in (0, len(data) // 2):
        path.write_bytes(data[:size])
        with pytest.warns(DamagedCacheWarning, match="segments.pt"):
            assert load_torch_cache(path) is None
        assert not path.exists()


class _Odd:
    """A class torch's weights-only loader does not allow."""


def test_a_pickle_that_is_no_tensors_only_file_is_named_without_torchs_unsafe_advice(tmp_path):
    """torch's weights-only refusal advises loading with weights_only=False (arbitrary code): not ours to repeat."""
    path = tmp_path / "odd.pt"
    torch.save({"a": _Odd()}, path)
    with pytest.warns(DamagedCacheWarning) as record:
        assert load_torch_cache(path) is None
    text = str(record[0].message)
    assert "odd.pt" in text and "not a tensors-only torch file" in text and "weights_only" not in text


def _store_net(store: ComponentStore, calls: list[int]):
    cfg = BackboneConfig(vocab_size=3, num_embeddings=4, max_length=4, hidden=8, blocks=1, heads=2, cond=4)

    def fit(net, ckpt, digest):
        calls.append(1)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.5)

    return store.get("ratio net", {"estimator": "regression", "steps": 3}, lambda: SequenceNet(cfg), fit)


def test_store_loads_what_it_saved_and_rebuilds_a_truncated_file(tmp_path):
    calls: list[int] = []
    store = ComponentStore(tmp_path, digest_chars=12)
    first = _store_net(store, calls)
    path = tmp_path / f"ratio-net-{key_digest({'estimator': 'regression', 'steps': 3}, 12)}.pt"
    assert path.is_file() and calls == [1] and _mode(path) == 0o644
    again = _store_net(ComponentStore(tmp_path, digest_chars=12), calls)
    assert calls == [1]  # loaded, not refitted
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(DamagedCacheWarning, match=path.name):
        rebuilt = _store_net(ComponentStore(tmp_path, digest_chars=12), calls)
    assert calls == [1, 1]
    for a, b, c in zip(first.state_dict().values(), again.state_dict().values(), rebuilt.state_dict().values()):
        assert torch.equal(a, b) and torch.equal(a, c)  # seeded by the key's digest: the same weights


def test_typed_keys_hash_like_their_dict():
    @dataclasses.dataclass(frozen=True)
    class Key:
        name: str
        steps: int
        sizes: tuple[int, ...]

    assert key_digest(Key("a", 3, (1, 2))) == key_digest({"name": "a", "steps": 3, "sizes": [1, 2]})
    assert key_digest(Key("a", 3, (1, 2))) != key_digest(Key("a", 4, (1, 2)))


def test_run_lock_refuses_a_second_run(tmp_path):
    import os

    with RunLock(tmp_path / "run"):
        with pytest.raises(RunFolderBusy, match=rf"run folder {tmp_path / 'run'} is in use by another run \(pid {os.getpid()}\)"):
            with RunLock(tmp_path / "run"):
                pass
    with RunLock(tmp_path / "run"):  # released
        pass


TINY = MarkovConfig(
    presets=("paper",), n_targets=(8,), seeds=(0,), n_source=100, length=3, samples=20, gamma_sweep=(), overlap_sweep=(),
    methods=("source-only", "target-only"), gamma_sweep_n_target=8, overlap_n_target=8,
    models=ModelSizes(denoiser_hidden=8, denoiser_blocks=1, ratio_hidden=8, ratio_blocks=1, heads=2),
    training=TrainingBudget(source_steps=2, target_steps=2, batch_size=8),
)


def test_markov_folder_summary_covers_every_finished_cell_and_recomputes_damaged_cells(tmp_path):
    full = benchmark.run_benchmark(TINY, tmp_path, progress=False)
    smaller = benchmark.run_benchmark(dataclasses.replace(TINY, methods=("source-only",)), tmp_path, progress=False)
    assert [c["method"] for c in smaller.cells] == ["source-only", "target-only"]
    assert smaller.cells == json.loads(json.dumps(full.cells))
    assert list(smaller.config["methods"]) == ["source-only", "target-only"]
    cell = next((tmp_path / "cells").glob("*target-only.json"))
    cell.write_text("")
    with pytest.warns(DamagedCacheWarning, match=cell.name):
        again = benchmark.run_benchmark(TINY, tmp_path, progress=False)
    def timeless(cells):
        return [{**c, "metrics": {k: v for k, v in c["metrics"].items() if k != "sampling_s"}} for c in cells]

    assert timeless(again.cells) == timeless(smaller.cells)  # recomputed from the stored models: the same value
    assert json.loads(cell.read_text())["metrics"]
    cell.write_text("{}")  # valid JSON, not a cell: also a damaged cache
    with pytest.warns(DamagedCacheWarning, match=cell.name):
        assert timeless(benchmark.run_benchmark(TINY, tmp_path, progress=False).cells) == timeless(smaller.cells)
    # without its marker the cells cannot be tied to a configuration: refused, nothing reused or deleted
    marker = tmp_path / "cell-config.json"
    for text in ('{"cell_h', "[]"):
        marker.write_text(text)
        with pytest.warns(DamagedCacheWarning), pytest.raises(ValueError, match="cell-config.json is missing or damaged"):
            benchmark.run_benchmark(TINY, tmp_path, progress=False)
        assert cell.exists()


def test_component_ids_are_typed_and_shared_by_writers_and_readers():
    from gtl_verify.store import ComponentId
    from language.components import CLEAN

    assert CLEAN.at(0.3) == ComponentId("clean classifier", 0.3) and CLEAN.at(0.3).name == "clean classifier 0.3"
    assert CLEAN.name == "clean classifier" and hash(CLEAN.at(1)) == hash(CLEAN.at(1.0))
    assert CLEAN.at(0.3) != CLEAN.at(0.05)
