"""benchmarks/gpu_estimate.py: measured FLOPs equal the transformer's formula; totals add up."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_estimate  # noqa: E402

from gtl_verify.networks import BackboneConfig, DenoiserNet  # noqa: E402


def denoiser_forward_flops(h: int, length: int, vocab: int, cond: int, blocks: int) -> int:
    """2 x multiply-adds per row: AdaLN modulation (once per row), qkv, Q K^T and A V, projection,
    the 4h MLP, the final modulation and the vocabulary head."""
    block = 2 * cond * 6 * h + 2 * length * h * 3 * h + 4 * length * length * h + 2 * length * h * h + 16 * length * h * h
    return blocks * block + 2 * cond * 2 * h + 2 * length * h * vocab


@settings(max_examples=8, deadline=None)
@given(heads=st.sampled_from([1, 2]), head_dim=st.sampled_from([2, 8]), blocks=st.integers(0, 2),
       length=st.integers(1, 12), vocab=st.integers(2, 40), cond=st.sampled_from([2, 6]))
def test_measured_flops_equal_the_formula(heads, head_dim, blocks, length, vocab, cond):
    h = heads * head_dim
    net = DenoiserNet(BackboneConfig(vocab_size=vocab, num_embeddings=vocab, max_length=length, hidden=h, blocks=blocks,
                                     heads=heads, cond=cond))
    cost = gpu_estimate.measure(net, 2, length, vocab)
    expected = denoiser_forward_flops(h, length, vocab, cond, blocks)
    assert cost.forward == expected
    assert cost.train == 3 * expected  # backward: two matmuls per forward matmul
    assert cost.saved_bytes > 0 and cost.parameters == sum(p.numel() for p in net.parameters())


def test_estimate_files_and_totals(tmp_path):
    assert gpu_estimate.main(["--config", "cpu-tiny", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "gpu_estimate.json").read_text())
    est, totals = data["results"], data["results"]["totals"]
    stages = est["stages"]
    flops = sum(s["flops"] for s in stages)
    assert abs((totals["training_pflop"] + totals["sampling_pflop"]) * 1e15 - flops) <= 1e-9 * flops
    peak = 989e12 * 0.25
    assert abs(totals["minutes"] * 60 - flops / peak) <= 1e-9 * flops / peak
    assert totals["peak_memory_gib"] == max(s["memory_gib"] for s in stages)
    assert "not a measurement" in (tmp_path / "gpu_estimate.md").read_text()
