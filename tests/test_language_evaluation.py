"""Conditions that make the language metrics comparable: the MAUVE size guard, one text path for
samples and held-out text, enough held-out data, one top-k truncation for every method, and a
quiet feature-model load."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gtl_verify.cli import main
from language import evaluate as ev
from language import pipeline
from language.config import CONFIG_DIR, config_from_dict, load_config
from language.segments import decode
from test_language_pipeline import write_synthetic


# ------------------------------------------------------------------ MAUVE size guard
def test_two_random_rows_against_500_references_are_flagged_not_a_clean_one():
    pytest.importorskip("mauve", reason="mauve-text is not installed (pip install mauve-text)")
    rng = np.random.default_rng(0)
    summary = ev.mauve_seeds(rng.normal(size=(2, 16)), rng.normal(size=(500, 16)), seeds=[0])
    assert summary.buckets == 2
    assert not summary.guard.meaningful
    assert "NOT MEANINGFUL" in summary.text() and "(k=2" in summary.text()
    line = summary.guard.problem("the samples")
    assert "the samples" in line and "2 samples against 500 references with 2 k-means buckets" in line
    assert "\n" not in line


@given(st.integers(1, 5000), st.integers(1, 5000))
def test_guard_rule_at_the_default_bucket_count(n_p, n_q):
    guard = ev.mauve_guard(n_p, n_q)
    assert guard.buckets == max(2, min(n_p, n_q) // 10)
    assert guard.meaningful == (min(n_p, n_q) >= ev.MAUVE_MIN_SAMPLES)
    if guard.meaningful:  # both sets hold at least ten samples per bucket, and there are five buckets or more
        assert min(n_p, n_q) >= ev.MAUVE_SAMPLES_PER_BUCKET * guard.buckets
        assert guard.buckets >= ev.MAUVE_MIN_BUCKETS
        assert guard.problem("x") == ""
    else:
        assert f"{n_p} samples against {n_q} references" in guard.problem("x")
    assert ev.MauveGuard.from_dict(guard.to_dict()) == guard


@given(st.integers(1, 3000), st.integers(1, 3000), st.integers(2, 300))
def test_guard_rule_at_any_bucket_count(n_p, n_q, k):
    guard = ev.MauveGuard(n_p, n_q, k)
    assert guard.meaningful == (k >= 5 and n_p >= 10 * k and n_q >= 10 * k)
    assert guard.required == 10 * max(k, 5)


def test_mauve_uses_the_recorded_bucket_count(monkeypatch):
    mauve = pytest.importorskip("mauve", reason="mauve-text is not installed (pip install mauve-text)")
    seen = []

    class Out:
        mauve = 0.5

    monkeypatch.setattr(mauve, "compute_mauve", lambda **kw: seen.append(kw["num_buckets"]) or Out())
    rng = np.random.default_rng(1)
    summary = ev.mauve_seeds(rng.normal(size=(64, 4)), rng.normal(size=(500, 4)), seeds=[0, 1])
    assert seen == [6, 6] and summary.buckets == 6 and summary.guard.meaningful
    assert summary.text() == "0.500 ± 0.000 (k=6)"
    # mauve-text's own 'auto' count agrees wherever n/10 needs no rounding
    assert ev.mauve_buckets(60, 500) == max(2, int(round(60 / 10)))


def test_guard_report_lists_every_flagged_set():
    sets = [("gtl 0.05", ev.mauve_guard(16, 64).to_dict()), ("target-only 1", ev.mauve_guard(64, 500).to_dict())]
    report = ev.guard_report(sets)
    assert not report["all_meaningful"] and len(report["flagged"]) == 1
    assert report["flagged"][0].startswith("MAUVE of gtl 0.05 is not meaningful: 16 samples against 64 references")
    assert ev.guard_report(sets[1:])["all_meaningful"]


@pytest.mark.parametrize("sampling, message", [
    ({"samples": 16}, "MAUVE of every method (sampling.samples) is not meaningful: 16 samples against 500 references"),
    ({"ablation_samples": 32}, "MAUVE of the ablations (sampling.ablation_samples) is not meaningful: 32 samples"),
])
def test_config_refuses_small_mauve_sets_unless_allowed(sampling, message):
    with pytest.raises(ValueError) as info:
        config_from_dict({"sampling": sampling})
    assert message in str(info.value) and "evaluation.allow_small_mauve" in str(info.value)
    config_from_dict({"sampling": sampling, "evaluation": {"allow_small_mauve": True}})
    # no sweep: the ablation sample size is not used, so it is not checked
    config_from_dict({"sampling": {"ablation_samples": 32, "gamma_sweep": [], "candidates_sweep": []}})


def test_every_shipped_config_satisfies_the_guard_or_says_it_is_a_smoke_test():
    for path in sorted(CONFIG_DIR.glob("*.toml")):
        cfg = load_config(path.stem)
        sizes = [cfg.sampling.samples] + ([cfg.sampling.ablation_samples]
                                          if cfg.sampling.gamma_sweep or cfg.sampling.candidates_sweep else [])
        meaningful = all(ev.mauve_guard(n, cfg.evaluation.reference_texts).meaningful for n in sizes)
        if cfg.evaluation.allow_small_mauve:
            assert not meaningful and "SMOKE TEST" in path.read_text(), path.name
        else:
            assert meaningful, path.name
    assert load_config("cpu-tiny").evaluation.allow_small_mauve
    assert not any(load_config(n).evaluation.allow_small_mauve for n in ("cpu", "gpu", "paper"))


# ------------------------------------------------------------------ one truncation for every method
@pytest.mark.parametrize("sampling, message", [
    ({"top_k": 0, "candidates": 4}, "sampling.top_k = 0 (no truncation) but gtl draws from its sampling.candidates = 4"),
    ({"top_k": 16, "candidates": 8}, "sampling.candidates = 8 is below sampling.top_k = 16"),
    ({"top_k": 0, "methods": ["target-only", "gtl-planner"]}, "but gtl-planner draws from"),
])
def test_config_refuses_unequal_truncation(sampling, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        config_from_dict({"sampling": sampling})


def test_unguided_comparisons_may_skip_truncation():
    cfg = config_from_dict({"sampling": {"top_k": 0, "methods": ["source-only", "target-only", "fine-tuned", "tcsm"]}})
    assert cfg.sampling.top_k == 0


def test_shipped_configs_truncate_every_method_alike():
    for path in sorted(CONFIG_DIR.glob("*.toml")):
        s = load_config(path.stem).sampling
        assert 1 <= s.top_k <= s.candidates, path.name


def test_method_truncation_records():
    assert ev.method_truncation("target-only", 8, None, 1000) == {
        "method": "target-only", "top_k": 8, "candidates": None, "tokens_per_reveal": 8,
        "text": "top-8 of its own token law"}
    gtl = ev.method_truncation("gtl", 8, 16, 1000)
    assert gtl["tokens_per_reveal"] == 8 and gtl["text"] == "top-8 of the guided law over the denoiser's top-16 candidates"
    assert ev.method_truncation("gtl", 8, 2, 1000)["tokens_per_reveal"] == 2  # a candidates-ablation point
    assert ev.method_truncation("gtl", 8, 5000, 300)["candidates"] == 300  # never more candidates than tokens
    assert ev.method_truncation("fine-tuned", 0, None, 50) == {
        "method": "fine-tuned", "top_k": None, "candidates": None, "tokens_per_reveal": 50, "text": "none (the whole law)"}


# ------------------------------------------------------------------ too little held-out data
@pytest.mark.parametrize("domain, n_cs, n_physics", [("physics", 300, 5), ("CS", 10, 300)])
def test_too_little_held_out_data_is_refused_before_training(tmp_path, monkeypatch, capsys, domain, n_cs, n_physics):
    write_synthetic(tmp_path / "data" / "cs.jsonl", n_cs, domains=("cs",))
    write_synthetic(tmp_path / "data" / "physics.jsonl", n_physics, seed=1, domains=("physics",))

    def forbidden(*args, **kwargs):
        raise AssertionError("nothing may be trained when the evaluation data is too small")

    monkeypatch.setattr(pipeline, "train", forbidden)
    config = load_config("cpu-tiny", path=str(tmp_path / "data"))
    with pytest.raises(ValueError, match=f"too little held-out {domain} data: \\d+ segments from \\d+ held-out abstract") as info:
        pipeline.run_pipeline(config, tmp_path / "run", progress=False)
    text = str(info.value)
    if domain == "physics":
        assert "needs 80 (64 MAUVE reference (evaluation.reference_texts) + 16 ceiling (sampling.samples))" in text
        assert "from 1 held-out abstract" in text  # 5 physics abstracts, 20 % held out
    else:
        assert "needs 16 (16 floor (sampling.samples))" in text
    assert not (tmp_path / "run" / "models").exists()
    code = main(["language", "run", "--config", "cpu-tiny", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run2"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"too little held-out {domain} data" in err and len(err.strip().splitlines()) == 1


def test_check_held_out_counts():
    ev.check_held_out("physics", 80, 3, {"a": 64, "b": 16})
    with pytest.raises(ValueError, match=r"physics data: 79 segments from 3 held-out abstract\(s\), .* needs 80 \(64 a \+ 16 b\)"):
        ev.check_held_out("physics", 79, 3, {"a": 64, "b": 16})


# ------------------------------------------------------------------ one text path
def _rare_words(count: int) -> list[str]:
    """Whole-word bert-base-uncased tokens that the synthetic abstracts never use otherwise."""
    from language.tokenizer import load_bert_tokenizer

    vocab = load_bert_tokenizer().get_vocab()
    words = sorted(w for w in vocab if w.isalpha() and w.isascii() and len(w) >= 7)
    return words[:: max(1, len(words) // count)][:count]


def test_held_out_text_round_tripped_through_the_model_vocabulary_scores_as_the_reference_path(tmp_path):
    """Physics abstracts carry words seen at most once in training (min_count 2 makes them [UNK]):
    the held-out rows a metric sees are exactly what a model that emitted the same segments would
    give, text, MiniLM features, MAUVE and distinct-n alike."""
    path = write_synthetic(tmp_path / "data" / "arxiv.jsonl", 120)
    rare = iter(_rare_words(240))
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for rec in lines:
        if "physics" in rec["categories"]:
            rec["abstract"] += f" {next(rare)} {next(rare)}"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    config = config_from_dict({
        "data": {"path": str(path.parent), "tokenizer": "bert", "vocabulary": "observed", "min_count": 2,
                 "max_per_domain": 120, "val_fraction": 0.3, "segment_length": 16, "fractions": [1.0]},
        "sampling": {"samples": 16, "ablation_samples": 8, "gamma_sweep": [], "candidates_sweep": [], "top_k": 4, "candidates": 4},
        "evaluation": {"reference_texts": 50, "mauve_seeds": [0], "allow_small_mauve": True},
    }, name="text-path")
    run = pipeline.Run(config, tmp_path / "run", progress=False)
    data = pipeline.prepare_data(run)
    vocab, tok = data.vocab, data.tokenizer
    # the raw held-out segments in tokenizer ids, as cut from the abstracts, in the pipeline's order
    raw = torch.load(next((tmp_path / "run" / "data").glob("segments-*.pt")), weights_only=True)["segments"]["target_val"]
    perm = torch.randperm(raw.shape[0], generator=torch.Generator().manual_seed(run.seed("reference")))
    n_ref, n_held = config.evaluation.reference_texts, config.sampling.samples
    raw_held = raw[perm[n_ref: n_ref + n_held]]
    assert raw_held.shape[0] == n_held
    # a model emitting these segments writes them in model ids (rare words -> [UNK])
    emitted, kept = vocab.encode(raw_held)
    assert bool(kept.all())
    unk = tok.token_to_id("[UNK]")
    assert (vocab.decode(emitted) == unk).any()  # the fixture does exercise the [UNK] collapse
    e = pipeline.Evaluator(run, None, None, np.empty((0, 0)), ev.load_feature_model("cpu"))
    e.reference = e.features(e.texts(data.reference_rows))
    reference_path = e.texts(data.held_out_rows)
    sample_path = list(decode(vocab.decode(emitted), tok))
    assert reference_path == sample_path
    assert reference_path != list(decode(raw_held, tok))  # the raw text keeps words no model here can write
    for n in (1, 2, 3):
        assert ev.distinct_n(data.held_out_rows, n) == ev.distinct_n(emitted, n)
    seeds = config.evaluation.mauve_seeds
    as_reference = pipeline.evaluate_samples(e, data.held_out_rows, classifier=False, perplexity=False, tag="held")
    as_sample = pipeline.evaluate_samples(e, emitted, classifier=False, perplexity=False, tag="sample")
    assert as_reference["mauve"] == as_sample["mauve"] and as_reference["distinct"] == as_sample["distinct"]
    assert np.array_equal(e.features(reference_path), e.features(sample_path))
    assert as_reference["seeds"] == list(seeds)


# ------------------------------------------------------------------ --quiet
def test_quiet_feature_model_load_shows_no_loading_bar(monkeypatch, capfd):
    hf_logging = pytest.importorskip("transformers.utils.logging")
    monkeypatch.setattr(ev, "_MODELS", {})
    before = hf_logging.is_progress_bar_enabled()
    capfd.readouterr()
    ev.load_feature_model("cpu", progress=False)
    out, err = capfd.readouterr()
    assert "Loading" not in err + out and "%|" not in err
    assert hf_logging.is_progress_bar_enabled() == before  # the library's setting is restored
