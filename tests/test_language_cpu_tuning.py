"""benchmarks/language_cpu_tuning.py: argument handling, the learning-rate schedule, and one tiny
candidate end to end on synthetic arXiv data (trained, sampled, measured, resumed)."""

from __future__ import annotations

import json
import lzma
import math
from pathlib import Path

import pytest

from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("model energy field network quantum learning graph wave lattice data spin flow optimal "
         "sparse kernel random policy agent neural convex bound proof").split()


tuning = load_benchmark("language_cpu_tuning")


def _write(path: Path, category: str, n: int) -> None:
    lines = []
    for i in range(n):
        words = [WORDS[(i * 7 + k * 3 + k * k) % len(WORDS)] for k in range(20 + i % 7)]
        lines.append(json.dumps({"id": f"{category}-{i}", "abstract": " ".join(words) + ".", "categories": category}))
    path.write_bytes(lzma.compress(("\n".join(lines) + "\n").encode()))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "arxiv"
    d.mkdir()
    _write(d / "arxiv_cs.jsonl.xz", "cs.LG", 120)
    _write(d / "arxiv_physics.jsonl.xz", "physics.optics", 20)
    return d


def test_candidate_parsing_and_errors():
    c = tuning.parse_candidate("bpe:4096:64:192:4:16:1e-3:constant")
    assert (c.tokenizer, c.vocab, c.length, c.hidden, c.blocks, c.batch, c.lr, c.schedule) == (
        "bpe", 4096, 64, 192, 4, 16, 1e-3, "constant")
    assert c.name == "bpe4k-L64-192x4-b16-constant-lr0.001"
    for bad, match in [("bpe:4096:64", "expected tokenizer"), ("gpt2:0:64:128:2", "tokenizer must be one of"),
                       ("bpe:4096:64:130:2", "multiple of heads"), ("bpe:4096:64:128:2:32:2e-3:linear", "schedule must be"),
                       ("bpe:x:64:128:2", "invalid literal")]:
        with pytest.raises(Exception, match=match):
            tuning.parse_candidate(bad)
    with pytest.raises(SystemExit):
        tuning.parse_args(["--budget-s", "0"])
    with pytest.raises(SystemExit):
        tuning.parse_args(["--sampling", "L/x"])
    assert tuning.parse_sampling("L/8", 32) == (32, 8)
    assert tuning.parse_sampling("16", 32) == (16, None)


def test_loss_curve():
    assert tuning.loss_curve([4.0, 2.0, 3.0, 1.0, 5.0], 2) == [(2, 3.0), (5, 3.0)]


def test_tiny_candidate_end_to_end_and_resume(tmp_path, data_dir, capsys):
    out = tmp_path / "tuning.json"
    argv = ["--data-dir", str(data_dir), "--candidate", "bpe:300:16:16:1:8:3e-3:cosine", "--budget-s", "0.2",
            "--samples", "4", "--sampling", "4/0", "L/4", "--elbo-rows", "4", "--perplexity-draws", "1",
            "--max-abstracts", "100", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert tuning.main(argv) == 0
    res = json.loads(out.read_text())["candidates"]["bpe0k-L16-16x1-b8-cosine-lr0.003"]
    assert res["steps"] >= 51 and res["vocab_size"] <= 300
    assert [(r["steps"], r["top_k"]) for r in res["sampling"]] == [(4, None), (16, 4)]
    for row in res["sampling"] + [res["held_out"]]:
        assert 0 < row["distinct_1"] <= 1 and 0 < row["distinct_2"] <= 1
        assert math.isfinite(row["perplexity"]) and row["perplexity"] > 1
        assert len(row["snippets"]) == 3 and all(isinstance(s, str) for s in row["snippets"])
    assert res["held_out_elbo"]["nats_per_char"] > 0
    assert res["loss_curve"][-1][0] == res["steps"]
    md = out.with_suffix(".md")
    assert "| bpe0k-L16-16x1-b8-cosine-lr0.003 |" in md.read_text()
    md.write_text(md.read_text() + "\n## Recommendation\n\nhand-written\n")
    capsys.readouterr()
    assert tuning.main(argv) == 0
    assert "done already" in capsys.readouterr().err
    assert tuning.main(argv + ["--report-only"]) == 0
    assert md.read_text().count("## Recommendation\n\nhand-written") == 1
    (tmp_path / "broken.json").write_text("{")
    assert tuning.main(argv[:-4] + ["--out", str(tmp_path / "broken.json")]) == 1
