"""Reports: every kind renders tables and non-empty figures; paper comparisons; clear errors."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtl_verify.provenance import provenance, write_results
from reports import builder, paper
from reports.builder import RENDERERS, build_report, build_reports, find_results, report_names
from reports.cli import register
from reports.markdown import fmt_sci, markdown_table
from reports.schema import ResultsError
from reports.stats import summarize

META = provenance(config={"steps": 8, "lr": 0.001}, seeds=[0, 1, 2], wall_time_s=12.5)


def diag(d: float, k: int = 5) -> list[list[float]]:
    off = (1 - d) / (k - 1)
    return [[d if i == j else off for j in range(k)] for i in range(k)]


def figures_of(md_path: Path) -> list[Path]:
    text = md_path.read_text()
    rels = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    return [md_path.parent / r for r in rels]


def assert_figures_ok(md_path: Path, expected: int | None = None) -> list[Path]:
    figs = figures_of(md_path)
    for f in figs:
        assert f.is_file(), f
        assert f.stat().st_size > 1000, f
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if expected is not None:
        assert len(figs) == expected
    return figs


def assert_header(text: str, title: str) -> None:
    """Title, summary, the results (sections), and the provenance last."""
    lines = text.splitlines()
    assert lines[0] == f"# {title}"
    prov = text.index("## Provenance")
    headings = [m.start() for m in re.finditer(r"^## (?!Provenance).*$", text, flags=re.M)]
    assert headings and max(headings) < prov  # every result comes before the provenance
    for item in ("**Command**", "**Commit**", "**Device**", "**Seeds**: 0, 1, 2", "**Wall time of the last invocation**: 12.5 s",
                 "**Packages**", "**Regenerate this report**: `gtl report", '"lr": 0.001'):
        assert item in text[prov:], item


# --- synthetic results ---------------------------------------------------------------------------


def theory_results() -> dict:
    return {"checks": [
        {"name": "theorem1", "description": "guided kernel equals target kernel", "residual": 3.2e-15, "tolerance": 1e-10, "passed": True, "cases": 50},
        {"name": "stabiliser", "description": "mask mass", "residual": 0.0, "tolerance": 1e-10, "passed": True, "cases": 20},
        {"name": "jensen", "description": "Jensen gap sign", "residual": 2.5e-3, "tolerance": 1e-10, "passed": False, "cases": 7},
        {"name": "r1-uniform-fails", "description": "R1 fails for the uniform kernel", "residual": 5e-4, "tolerance": 1e-6,
         "passed": True, "cases": 20, "expect": "fails"},
    ]}


def markov_results(gtl_kl: dict[int, float] | None = None, seeds=(0, 1, 2)) -> dict:
    """Preset 'paper' with per-method KL near the published values (GTL optionally overridden)."""
    published = {m: dict(v) for m, v in paper.MARKOV_TRANSITION_KL.items()}
    if gtl_kl:
        published["gtl"].update(gtl_kl)
    cells = []
    for method, display in (("target-only", "target-only"), ("fine-tuned", "fine-tuned"), ("gtl", "gtl")):
        for n in (1000, 100, 20):
            for s in seeds:
                kl = published[method][n] * (1 + 0.01 * (s - 1))
                cells.append({"preset": "paper", "n_target": n, "method": display, "seed": s,
                              "metrics": {"transition_kl": kl, "cross_entropy_gap": 0.01 * n ** -0.5, "exact_kl": None,
                                          "exact_tv": None, "wall_s": 1.5},
                              "estimated_transition": diag(0.7 + 0.01 * s)})
    cells.append({"preset": "tiny", "n_target": 10, "method": "gtl", "seed": 0,
                  "metrics": {"transition_kl": 0.2, "cross_entropy_gap": 0.03, "exact_kl": 0.11, "exact_tv": 0.09},
                  "estimated_transition": None})
    return {
        "config": {"length": 20},
        "presets": {"paper": {"vocab_size": 5, "source_transition": diag(0.1), "target_transition": diag(0.8)},
                    "tiny": {"vocab_size": 3, "source_transition": diag(0.2, 3), "target_transition": diag(0.9, 3)}},
        "cells": cells,
        "gamma_sweep": [{"preset": "paper", "n_target": 100, "gamma": g, "seed": s, "transition_kl": 0.1 + 0.02 * abs(g - 1) + 0.001 * s}
                        for g in (0.0, 0.5, 1.0, 2.0) for s in seeds],
        "overlap_sweep": [{"overlap": o, "method": m, "seed": s, "transition_kl": (1.1 - o) * (2 if m == "gtl" else 1) + 0.001 * s}
                          for o in (0.0, 0.5, 1.0) for m in ("gtl", "target-only") for s in seeds],
        "components": [{"preset": "paper", "n_target": 100, "seed": s, "component": "ratio", "metric": "heldout_bce", "value": 0.4 + 0.01 * s}
                       for s in seeds],
        "unknown_extra": {"ignored": True},
    }


def validation_results() -> dict:
    rows = []
    for setting in ("gamma=1", "gamma=2"):
        for rule, tv in (("gtl", 1e-12), ("unguided", 0.31), ("my_module:MyRule", 0.05)):
            rows.append({"rule": rule, "setting": setting, "exact_tv": tv, "exact_kl": tv * 2, "mc_kl": None,
                         "cross_entropy_gap": 0.001, "notes": "exact | enumeration" if rule == "gtl" else ""})
    return {"preset": "tiny", "rules": rows}


def language_results() -> dict:
    mauve = []
    for m, base in (("target-only", 0.3), ("fine-tuned", 0.35), ("gtl", 0.5), ("unguided", 0.1)):
        for f in (1.0, 0.3, 0.05, 0.01):
            for s in range(3):
                mauve.append({"method": m, "fraction": f, "seed": s, "mauve": base + 0.05 * f + 0.01 * s})
    return {
        "config": {"steps": 128},
        "mauve": mauve,
        "classifier": [{"method": m, "fraction": 0.05, "p_source": p, "pct_target": 100 * (1 - p)} for m, p in (("gtl", 0.3), ("gtl", 0.32), ("unguided", 0.96))],
        "distinct": [{"method": "gtl", "fraction": 0.05, "n": n, "value": 0.5 + 0.1 * n} for n in (1, 2, 3)],
        "perplexity": [{"method": "gtl", "fraction": 0.05, "value": 45.0 + s, "evaluator": "gpt2"} for s in range(3)],
        "ablations": {"gamma": [{"gamma": g, "p_source": 0.96 - 0.12 * g, "mauve": 0.2 + 0.05 * g} for g in (0, 1, 2, 5)],
                      "candidates": [{"n": n, "p_source": 0.8 / math.log2(n), "mauve": 0.1 * math.log2(n) / 10} for n in (8, 64, 1024)]},
        "timing": [{"method": "unguided", "seconds_per_sequence": 0.5, "ratio_passes_per_sequence": 0, "device": "cpu"},
                   {"method": "gtl", "seconds_per_sequence": 0.8, "ratio_passes_per_sequence": 128, "device": "cpu"}],
    }


def benchmark_results() -> dict:
    return {
        "title": "Sampler throughput",
        "tables": {"Steps per second": [{"batch": 1, "steps_per_s": 120.5, "note": "warm"}, {"batch": 8, "steps_per_s": 610.0, "extra": [1, 2]}],
                   "Modes": [{"ms": 2.0, "mode": "b"}]},
        "columns": {"Modes": ["mode", "ms"]},
        "figures": [{"title": "Throughput vs batch", "x": "batch", "y": "steps_per_s", "series": "method",
                     "xlabel": "batch size (sequences)", "ylabel": "steps per second (1/s)", "logx": True, "logy": False,
                     "rows": [{"batch": b, "method": m, "steps_per_s": b * k + r} for b in (1, 4, 16) for m, k in (("cached", 50), ("plain", 20)) for r in (0, 3)]},
                    {"title": "Categorical x", "x": "mode", "y": "ms", "series": None, "rows": [{"mode": "a", "ms": 1.0}, {"mode": "b", "ms": 2.0}]}],
    }


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


def write(tmp_path: Path, name: str, kind: str, results: dict) -> Path:
    return write_results(tmp_path / f"{name}.json", kind, results, META)


# --- each kind ------------------------------------------------------------------------------------------


def test_renderers_cover_all_kinds():
    assert set(RENDERERS) == {"theory", "markov-benchmark", "validation", "language", "benchmark", "ratios"}


def test_theory_report(tmp_path, out):
    md = build_report(write(tmp_path, "theory", "theory", theory_results()), out)
    assert md == out / "theory.md"
    text = md.read_text()
    assert_header(text, "Theory checks")
    assert "3 of 4 exact checks passed; failed: jensen." in text
    assert "1 of them (r1-uniform-fails) are separations that must fail" in text
    assert "| theorem1 | guided kernel equals target kernel | holds | 3.20e-15 | 1.00e-10 | 50 | yes |" in text
    assert "| jensen | Jensen gap sign | holds | 2.50e-03 | 1.00e-10 | 7 | **NO** |" in text
    assert "| r1-uniform-fails | R1 fails for the uniform kernel | fails | 5.00e-04 | 1.00e-06 | 20 | yes |" in text
    assert "disagrees" not in text  # a separation above its tolerance is what the theory predicts
    assert "docs/THEORY.md" in text
    assert "0.00e+00" in text
    figs = assert_figures_ok(md, expected=1)
    assert figs[0].parent == out / "figures" and figs[0].name.startswith("theory-")


def test_markov_report_tables_figures_and_paper(tmp_path, out):
    md = build_report(write(tmp_path, "markov", "markov-benchmark", markov_results()), out)
    text = md.read_text()
    assert_header(text, "Markov-chain transfer benchmark")
    for heading in ("## Comparison with the paper", "## Preset paper", "## Preset tiny", "## Guidance strength (gamma) sweep",
                    "## Support overlap sweep", "## Components"):
        assert heading in text, heading
    # mean and 95% bootstrap percentile interval over seeds 0, 1, 2 for GTL at n = 20
    s = summarize([0.244 * (1 + 0.01 * (k - 1)) for k in range(3)])
    assert f"| gtl | 20 | 3 | {s.interval_text()} |" in text
    assert "wall_s" in text  # extra numeric metric shown
    # paper comparison: all close, so no differing sentence, but rankings are stated
    assert "| 20 | GTL |" in text and "| 0.244 |" in text and "close" in text
    assert "worse than the paper" not in text and "better than the paper" not in text
    assert "the ranking (best first) matches the paper: GTL > fine-tuned > target-only" in text
    assert "9 close" in text
    # the benchmark's exact_kl is the Monte-Carlo KL from the exact sampler density: labelled as the validator does
    assert "MC KL (nats)" in text and "exact KL (nats)" not in text and "0.11" in text
    notes = text.split("## Metric notes", 1)[1]
    assert "E_x~sampler[log s(x) - log q(x)]" in notes and "A negative gap means" in notes and "mode-seeking" in notes
    assert "| paper | 100 | ratio | heldout_bce | 3 |" in text
    assert_figures_ok(md, expected=6)  # 2 KL-vs-n, 2 heatmaps, gamma, overlap
    assert "Learned ratio" not in text  # the results name no estimator


def test_markov_report_names_the_ratio_estimator(tmp_path, out):
    res = markov_results()
    res["config"] = {"ratio_estimator": "guided-likelihood", "training": {"ratio_steps": 1000}}
    res["cells"] += [{**c, "method": "gtl-paper"} for c in res["cells"] if c["method"] == "gtl"]
    text = build_report(write(tmp_path, "markov-est", "markov-benchmark", res), out).read_text()
    assert ("Learned ratio of gtl and its variants: the guided-likelihood estimator (1000 AdamW steps per network); "
            "gtl-paper: the paper's estimator at the same budget.") in text


def test_markov_paper_sentences_when_numbers_disagree(tmp_path, out):
    md = build_report(write(tmp_path, "m2", "markov-benchmark", markov_results(gtl_kl={20: 0.366, 1000: 0.026})), out)
    text = md.read_text()
    assert ("At n target = 20, our GTL row-averaged KL (0.366) is worse than the paper's (0.244): "
            "50 % higher than the published value (difference +0.122).") in text
    assert ("At n target = 1000, our GTL row-averaged KL (0.026) is better than the paper's (0.052): "
            "50 % lower than the published value (difference -0.026).") in text
    assert "% of the published value" not in text
    assert "| +0.122 | +50 % | worse |" in text
    assert "At n target = 1000 the ranking differs: ours GTL > target-only > fine-tuned, paper target-only > GTL > fine-tuned" in text


def test_markov_without_paper_preset_and_empty_lists(tmp_path, out):
    res = {"presets": {}, "cells": [{"preset": "p", "n_target": 5, "method": "gtl", "seed": 3,
                                     "metrics": {"transition_kl": 0.5}}]}
    text = build_report(write(tmp_path, "m3", "markov-benchmark", res), out).read_text()
    assert "Comparison with the paper" not in text and "## Preset p" in text
    assert "| gtl | 5 | 1 | 0.5 |" in text  # one seed: mean only
    empty = build_report(write(tmp_path, "m4", "markov-benchmark", {"presets": {}, "cells": []}), out).read_text()
    assert "holds no cells" in empty
    with pytest.raises(ValueError, match="kind 'markov-benchmark' needs results key 'presets'"):
        build_report(write(tmp_path, "m5", "markov-benchmark", {}), out)  # not a Markov results file


def test_markov_report_notes_target_only_tokens(tmp_path, out):
    from reports.render_markov import target_only_note

    source, target = [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], [[0.4, 0.3, 0.3]] * 3
    res = {"presets": {"p": {"vocab_size": 3, "source_transition": source, "target_transition": target},
                       "q": {"vocab_size": 3, "source_transition": target, "target_transition": target}},
           "cells": [{"preset": name, "n_target": 5, "method": "gtl", "seed": 0, "metrics": {"transition_kl": 0.5}}
                     for name in ("p", "q")]}
    text = build_report(write(tmp_path, "m6", "markov-benchmark", res), out).read_text()
    assert text.count("target-only token(s) 2:") == 1  # p only: its source reaches 1 (from 2), never 2
    assert target_only_note(target, target) is None


def test_validation_report(tmp_path, out):
    md = build_report(write(tmp_path, "val", "validation", validation_results()), out)
    text = md.read_text()
    assert_header(text, "Guidance-rule validation (preset tiny)")
    assert "| gtl | gamma=1 | 1.000e-12 | 2.000e-12 | - | 0.001 | exact \\| enumeration |" in text
    assert "Setting gamma=1: smallest exact TV gtl" in text and "largest unguided" in text
    header = next(line for line in text.splitlines() if line.startswith("| Rule |"))
    assert "| exact KL (nats) | MC KL (nats) | cross-entropy gap (nats/token) |" in header  # one label per metric
    assert "## Metric notes" in text and "A negative gap means" in text
    assert_figures_ok(md, expected=1)


def test_language_report(tmp_path, out):
    md = build_report(write(tmp_path, "lang", "language", language_results()), out)
    text = md.read_text()
    assert_header(text, "arXiv CS -> Physics transfer")
    assert "only the ordering of the methods is comparable" in text and "GPT-2-large" in text and "MiniLM" in text
    s = summarize([0.5 + 0.05 * 0.05 + 0.01 * k for k in range(3)])
    assert f"| 5 % | {s.interval_text()} |" not in text  # first column is target-only
    assert s.interval_text() in text and "±" not in text
    assert "| 5 % | GTL |" in text and "| 0.695 | 1 |" in text
    assert text.count("matches the paper: GTL > fine-tuned > target-only") == 4
    assert "matches the paper at 4 of 4 target shares" in text
    for heading in ("## MAUVE", "## Domain classifier", "## Diversity (distinct-n)", "## Generative perplexity",
                    "## Ablations", "## Sampling cost", "### Guidance strength gamma", "### Number of ratio candidates n"):
        assert heading in text, heading
    assert "| gtl | 0.8 | - | 1.60x | 128 | cpu |" in text  # no source-only row: no ratio to the unguided sampler
    assert "| distinct-1 | distinct-2 | distinct-3 |" in text
    assert_figures_ok(md, expected=4)  # ours, paper, gamma, candidates
    assert "## Density ratio" not in text  # META records no language config


def test_language_report_names_the_ratio_estimator_and_its_budget(tmp_path, out):
    config = {"ratio": {"estimator": "telescoping-nce"}, "training": {"ratio": {"steps": 100, "batch_size": 64, "lr": 5e-4}},
              "models": {"ratio": {"hidden": 24, "blocks": 2}}}
    path = write_results(tmp_path / "lang-ratio.json", "language", language_results(), {**META, "config": config})
    text = build_report(path, out).read_text()
    assert "## Density ratio" in text
    assert ("the `telescoping-nce` estimator (`gtl_verify.estimators`) on the kept physics segments of each share and "
            "replicate: 100 AdamW steps of 64 rows at rate 0.0005") in text and "hidden size 24, 2 blocks" in text


def test_language_report_pairs_gtl_with_each_baseline_by_replicate(tmp_path, out):
    """Three replicates: MAUVE per replicate is the mean of its k-means seeds, intervals are over
    replicates, and GTL is compared with each baseline replicate by replicate."""
    mauve, classifier, perplexity = [], [], []
    for rep in range(3):
        for m, base in (("target-only", 0.30), ("fine-tuned", 0.40), ("gtl", 0.35 + 0.05 * rep)):
            for k in range(2):  # two k-means seeds: +-0.01 around the replicate's value
                mauve.append({"method": m, "fraction": 0.05, "replicate": rep, "seed": k, "mauve": base + 0.01 * (2 * k - 1)})
            classifier.append({"method": m, "fraction": 0.05, "replicate": rep, "p_source": 0.5 if m != "gtl" else 0.2,
                               "pct_target": 50.0})
            perplexity.append({"method": m, "fraction": 0.05, "replicate": rep, "value": 100.0 if m != "gtl" else 50.0,
                               "evaluator": "e"})
    res = {"config": {}, "mauve": mauve, "classifier": classifier, "perplexity": perplexity,
           "timing": [{"method": "source-only", "seconds_per_sequence": 0.5, "ratio_passes_per_sequence": 0, "device": "cpu"},
                      {"method": "gtl", "seconds_per_sequence": 1.0, "ratio_passes_per_sequence": 64, "device": "cpu"}]}
    text = build_report(write(tmp_path, "lang-rep", "language", res), out).read_text()
    assert "over 3 target-side replicates" in text
    gtl_vs = {line.split("|")[2].strip(): line for line in text.splitlines() if line.startswith("| 5 % | gtl vs ")}
    # GTL - target-only = 0.05, 0.10, 0.15 (all three better); GTL - fine-tuned = -0.05, 0, +0.05 (one better)
    assert f"| {summarize([0.05, 0.10, 0.15]).interval_text()} (3/3) |" in gtl_vs["gtl vs target-only"]
    assert "[-0.05, 0.05] (1/3) |" in gtl_vs["gtl vs fine-tuned"]  # mean 0 up to round-off
    assert "| -0.3 [-0.3, -0.3] (3/3) |" in gtl_vs["gtl vs fine-tuned"]  # P(source): lower is better
    assert "| 0.5 [0.5, 0.5] (3/3) |" in gtl_vs["gtl vs fine-tuned"]  # perplexity ratio: lower is better
    assert ("Replicates in which GTL is better than the baseline: 5 % physics: fine-tuned on MAUVE 1/3, P(source) 3/3, "
            "perplexity 3/3; target-only on MAUVE 3/3, P(source) 3/3, perplexity 3/3.") in text
    assert "| gtl | 1 | 2.00x | 2.00x | 64 | cpu |" in text  # twice the unguided source-only sampler


def test_language_report_refuses_rows_without_their_replicate(tmp_path, out):
    res = {"config": {}, "mauve": [{"method": "gtl", "fraction": 0.05, "replicate": 1, "seed": 0, "mauve": 0.5},
                                   {"method": "gtl", "fraction": 0.05, "seed": 0, "mauve": 0.4}]}
    with pytest.raises(ResultsError, match="1 of 2 metric rows carry no replicate"):
        build_report(write(tmp_path, "lang-mixed", "language", res), out)


def test_language_report_pairs_skip_perplexities_that_are_not_positive(tmp_path, out):
    rows = [{"method": m, "fraction": 0.05, "replicate": 0, "value": v, "evaluator": "e"}
            for m, v in (("gtl", 50.0), ("fine-tuned", 0.0), ("target-only", 100.0))]
    res = {"config": {}, "mauve": [], "perplexity": rows,
           "classifier": [{"method": m, "fraction": 0.05, "replicate": 0, "p_source": 0.5, "pct_target": 50.0}
                          for m in ("gtl", "fine-tuned", "target-only")]}
    text = build_report(write(tmp_path, "lang-zero", "language", res), out).read_text()
    line = next(x for x in text.splitlines() if x.startswith("| 5 % | gtl vs fine-tuned"))
    assert line.endswith("| - |")  # no ratio against a zero perplexity
    assert "| 0.5 (1/1) |" in next(x for x in text.splitlines() if x.startswith("| 5 % | gtl vs target-only"))


def test_language_ordering_disagreement_and_percent_fractions(tmp_path, out):
    res = language_results()
    for r in res["mauve"]:
        r["fraction"] *= 100  # recorded in percent
        if r["method"] == "target-only":
            r["mauve"] = 0.9
    text = build_report(write(tmp_path, "lang2", "language", res), out).read_text()
    assert "At 1 % target data the ranking differs: ours target-only > GTL > fine-tuned, paper GTL > fine-tuned > target-only" in text
    assert "| 100 % |" in text


def test_language_tied_mauve_is_reported_as_a_tie_not_a_ranking(tmp_path, out):
    res = language_results()
    for r in res["mauve"]:
        r["mauve"] = 0.00407  # every method at the MAUVE floor
    text = build_report(write(tmp_path, "lang3", "language", res), out).read_text()
    assert "At 1 % target data our methods tie (all 0.00407): no ranking to compare." in text
    assert "1 % target data: all methods tie (0.00407)" in text
    assert "matches the paper at 0 of 0 target shares where our values differ" in text
    assert "| 1 % | GTL | 0.00407 [0.00407, 0.00407] | tie |" in text


def test_benchmark_report(tmp_path, out):
    md = build_report(write(tmp_path, "bench", "benchmark", benchmark_results()), out)
    text = md.read_text()
    assert_header(text, "Sampler throughput")
    assert "| batch | note | steps_per_s | extra |" in text  # write_results sorts keys; union in order of appearance
    assert "| 8 | - | 610 | [1, 2] |" in text
    assert "| mode | ms |\n|---|---|\n| b | 2 |" in text  # optional column order
    assert "## Throughput vs batch" in text and "error bars: 95% bootstrap percentile interval over seeds" in text
    assert_figures_ok(md, expected=2)
    assert "2 table(s) and 2 figure(s)." in text


# --- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"kind": "theory", "meta": {}}', "must be an object with keys 'kind', 'meta', 'results'"),
    ('[1, 2]', "must be an object with keys"),
    ('{"kind": 3, "meta": {}, "results": {}}', "'kind' must be a non-empty string"),
    ('{"kind": "theory", "meta": [], "results": {}}', "'meta' must be an object"),
    ('{"kind": "theory", "meta": {}, "results": []}', "'results' must be an object"),
    ('{"kind": "nonsense", "meta": {}, "results": {}}', "unknown kind 'nonsense' (known kinds: benchmark, language"),
    ('{"kind": "theory", "meta": {}, "results": {}}', "results is missing key 'checks'"),
    ('{"kind": "theory", "meta": {}, "results": {"checks": [{"name": "a"}]}}', "results.checks[0] is missing key 'residual'"),
])
def test_malformed_files_raise_value_error_naming_file(tmp_path, out, content, message):
    path = tmp_path / "broken_file.json"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        build_report(path, out)
    msg = str(info.value)
    assert "broken_file.json" in msg and message in msg
    assert "\n" not in msg
    assert not (out / "broken_file.md").exists()


@pytest.mark.parametrize("kind, mutate, message", [
    ("markov-benchmark", lambda r: r["cells"][4]["metrics"].update(transition_kl="abc"),
     "results.cells[4].metrics.transition_kl must be a number, got 'abc'"),
    ("markov-benchmark", lambda r: r["cells"][0].pop("method"), "results.cells[0] is missing key 'method'"),
    ("markov-benchmark", lambda r: r["cells"][0].update(n_target=2.5), "results.cells[0].n_target must be an integer"),
    ("markov-benchmark", lambda r: r["cells"][0].update(estimated_transition=[[1, 2], [3]]), "must be a square matrix"),
    ("markov-benchmark", lambda r: r["presets"]["paper"].pop("vocab_size"), "results.presets.paper is missing key 'vocab_size'"),
    ("validation", lambda r: r["rules"][1].update(exact_tv=True), "results.rules[1].exact_tv must be a number, got True"),
    ("language", lambda r: r["mauve"][0].pop("seed"), "results.mauve[0] is missing key 'seed'"),
    ("language", lambda r: r["ablations"]["gamma"][0].pop("gamma"), "results.ablations.gamma[0] is missing key 'gamma'"),
    ("benchmark", lambda r: r["figures"][0]["rows"][2].pop("batch"), "results.figures[0].rows[2] is missing key 'batch'"),
    ("benchmark", lambda r: r.update(tables={"t": [1]}), "results.tables.t[0] must be an object"),
    ("theory", lambda r: r["checks"][0].update(passed="yes"), "results.checks[0].passed must be true or false"),
])
def test_missing_or_mistyped_fields(tmp_path, out, kind, mutate, message):
    res = {"theory": theory_results, "markov-benchmark": markov_results, "validation": validation_results,
           "language": language_results, "benchmark": benchmark_results}[kind]()
    mutate(res)
    path = write(tmp_path, "bad_fields", kind, res)
    with pytest.raises(ValueError) as info:
        build_report(path, out)
    msg = str(info.value)
    assert msg.startswith(f"results file {path}: ") and message in msg, msg
    assert not (out / "figures").exists() or not list((out / "figures").iterdir())


def test_binary_file(tmp_path, out):
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=r"binary\.json is not UTF-8 text"):
        build_report(path, out)


def test_missing_file(tmp_path, out):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        build_report(tmp_path / "nope.json", out)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        build_reports([tmp_path / "nope.json"], out)


# --- several files, folders, CLI ----------------------------------------------------------------------------


def test_folders_and_name_collisions(tmp_path, out):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "b").mkdir(parents=True)
    write_results(tmp_path / "runs" / "a" / "results.json", "theory", theory_results(), META)
    write_results(tmp_path / "runs" / "b" / "results.json", "validation", validation_results(), META)
    (tmp_path / "runs" / "a" / "config.json").write_text(json.dumps({"lr": 1}))  # not a results file
    notes = []
    files = find_results([tmp_path / "runs"], log=notes.append)
    assert [f.parent.name for f in files] == ["a", "b"] and any("config.json" in n for n in notes)
    assert report_names(files) == ["a-results", "b-results"]
    mds = build_reports([tmp_path / "runs", tmp_path / "runs" / "a" / "results.json"], out)  # duplicate dropped
    assert [m.name for m in mds] == ["a-results.md", "b-results.md"]
    for m in mds:
        assert_figures_ok(m, expected=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no results files"):
        build_reports([tmp_path / "empty"], out)


def test_build_reports_checks_all_files_before_writing(tmp_path, out):
    good = write(tmp_path, "good", "theory", theory_results())
    bad = write(tmp_path, "bad", "mystery", {})
    with pytest.raises(ValueError, match="bad.json.*unknown kind 'mystery'"):
        build_reports([good, bad], out)
    assert not (out / "good.md").exists()


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gtl")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli(tmp_path, capsys):
    results = write(tmp_path, "theory", "theory", theory_results())
    args = make_parser().parse_args(["report", str(results), "--out", str(tmp_path / "rep")])
    assert args.func(args) == 0
    assert (tmp_path / "rep" / "theory.md").is_file()
    assert str(tmp_path / "rep" / "theory.md") in capsys.readouterr().out
    default = make_parser().parse_args(["report", str(tmp_path)])
    assert default.out is None
    assert default.func(default) == 0
    assert (tmp_path / "theory.md").is_file()  # beside its results, not in the package folder
    with pytest.raises(SystemExit):
        make_parser().parse_args(["report"])


def test_gtl_main_one_line_errors(tmp_path, capsys, monkeypatch):
    """Through gtl_verify.cli.main with only this command registered (the others are independent)."""
    import gtl_verify.cli as gtl_cli

    monkeypatch.setattr(gtl_cli, "COMMAND_MODULES", ("reports.cli",))
    good = write(tmp_path, "theory", "theory", theory_results())
    assert gtl_cli.main(["report", str(good), "--out", str(tmp_path / "rep")]) == 0
    bad = tmp_path / "odd.json"
    bad.write_text('{"kind": "odd", "meta": {}, "results": {}}')
    capsys.readouterr()
    assert gtl_cli.main(["report", str(bad), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gtl report: error: results file") and "odd.json" in err and "unknown kind 'odd'" in err
    assert "\n" not in err


# --- building blocks -----------------------------------------------------------------------------------------


def test_summary_bootstrap_interval():
    s = summarize([1.0, 2.0, 3.0])
    assert s.mean == 2.0 and s.n == 3 and math.isclose(s.std, 1.0)
    # P(resampled mean = 1) = P(= 3) = 1/27 > 2.5 %: the 95% percentile interval is the data's range
    assert (s.lo, s.hi) == (1.0, 3.0)
    assert s.error_bar() == (1.0, 1.0)
    one = summarize([0.5, None, float("nan")])
    assert one.n == 1 and math.isnan(one.lo) and one.interval_text() == "0.5" and one.error_bar() == (0.0, 0.0)
    assert summarize([]).interval_text() == "-"
    with pytest.raises(ValueError, match="level"):
        summarize([1.0], level=1.5)


def test_kl_interval_that_a_t_interval_takes_below_zero_stays_non_negative():
    from scipy import stats as scipy_stats

    kls = [0.0012, 0.0025, 0.0031, 0.0904]  # one bad seed: a skewed, non-negative sample
    n, mean = len(kls), sum(kls) / len(kls)
    sd = math.sqrt(sum((k - mean) ** 2 for k in kls) / (n - 1))
    t_lower = mean - scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert t_lower < 0  # what the reports printed before
    s = summarize(kls)
    assert 0 <= min(kls) <= s.lo < s.mean < s.hi <= max(kls)
    assert "[-" not in s.interval_text()
    low, high = s.error_bar()
    assert s.mean - low >= 0 and math.isclose(s.mean + high, s.hi)


def _exact_bootstrap_means(xs: list[float]) -> list[float]:
    """Every one of the n^n equally likely resamples' means (the exact bootstrap law)."""
    import itertools

    return [sum(c) / len(xs) for c in itertools.product(xs, repeat=len(xs))]


@settings(deadline=None, max_examples=60)
@given(st.lists(st.floats(0.0, 50.0, allow_nan=False), min_size=2, max_size=5),
       st.sampled_from([0.8, 0.9, 0.95]))
def test_bootstrap_interval_respects_the_range_and_is_a_percentile_interval(xs, level):
    s = summarize(xs, level)
    assert 0.0 <= min(xs) <= s.lo <= s.hi <= max(xs)
    assert summarize(xs, level) == s  # fixed bootstrap seed: the same report every time
    scaled = summarize([x / 50.0 for x in xs], level)  # probabilities / MAUVE stay in [0, 1]
    assert 0.0 <= scaled.lo <= scaled.hi <= 1.0
    exact = sorted(_exact_bootstrap_means(xs))
    tail = (1 - level) / 2
    slack = 0.02 + 1e-12 * max(xs)  # Monte Carlo error of 10,000 resamples
    below = sum(m < s.lo - 1e-12 * max(1.0, max(xs)) for m in exact) / len(exact)
    above = sum(m > s.hi + 1e-12 * max(1.0, max(xs)) for m in exact) / len(exact)
    assert below <= tail + slack and above <= tail + slack


def test_paper_constants_and_comparison():
    assert paper.MARKOV_TRANSITION_KL["gtl"] == {1000: 0.052, 100: 0.100, 20: 0.244}
    assert paper.MARKOV_TRANSITION_KL["target-only"][20] == 0.614
    assert paper.LANGUAGE_MAUVE["fine-tuned"][1.0] == 0.495
    assert paper.canonical_method("GTL") == "gtl" and paper.canonical_method("Target_Only") == "target-only"
    c = paper.Comparison("x", "gtl", 0.11, 0.100)
    assert c.verdict == "close" and c.sentence("KL") is None
    higher_better = paper.Comparison("x", "gtl", 0.5, 0.719, lower_is_better=False)
    assert higher_better.verdict == "worse" and "lower" in higher_better.sentence("MAUVE")
    assert paper.Comparison("x", "gtl", None, 0.1).verdict == "missing"


def test_markdown_blocks():
    assert fmt_sci(3.2e-15) == "3.20e-15" and fmt_sci(None) == "-"
    assert markdown_table(["a"], [["x|y"]]).endswith("| x\\|y |")
    assert builder.RENDERERS is RENDERERS
    assert issubclass(ResultsError, ValueError)


def test_markov_bars_verdicts_and_attribution():
    from reports.render_markov import bar_checks
    from reports.stats import summarize

    def g(*values):
        return {"transition_kl": summarize(list(values))}

    grouped = {
        ("paper", "gtl", 100): g(0.30, 0.34), ("paper", "target-only", 100): g(0.20, 0.22),
        ("paper", "fine-tuned", 100): g(0.50, 0.52), ("paper", "gtl-oracle-ratio", 100): g(0.004, 0.006),
        ("paper", "gtl-oracle-denoiser", 100): g(0.31, 0.33), ("other", "gtl", 100): g(9.0),
    }
    table, notes = bar_checks(grouped)
    lines = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert "met" in lines["GTL below fine-tuned"] and "missed by 0.11 " in lines["GTL below target-only"]
    assert "missed by 0.22 " in lines["GTL at or below the paper's GTL"]  # 0.32 vs 0.100
    assert lines["exact-ratio GTL <= 0.01"].split("|")[5].strip() == "met"
    assert notes and all("the ratio network" in n for n in notes)
    grouped[("paper", "gtl-oracle-denoiser", 100)] = g(0.01, 0.012)
    grouped[("paper", "gtl-oracle-ratio", 100)] = g(0.2, 0.2)
    assert all("the denoiser" in n for n in bar_checks(grouped)[1])


def test_markov_bars_of_planner_gtl_and_the_learned_ratio_goals():
    """GTL under the planner sampler has its own bars, against fine-tuning under the same sampler too;
    both GTL methods meet or miss the learned-ratio goals; the ablations (of the ancestral sampler)
    explain no planner bar."""
    from reports.render_markov import LEARNED_RATIO_GOALS, bar_checks

    def g(*values):
        return {"transition_kl": summarize(list(values))}

    grouped = {("paper", "gtl", 100): g(0.05, 0.07), ("paper", "gtl-planner", 100): g(0.02, 0.03),
               ("paper", "target-only", 100): g(0.03, 0.03), ("paper", "fine-tuned", 100): g(0.04, 0.04),
               ("paper", "fine-tuned-planner", 100): g(0.01, 0.01), ("paper", "gtl-planner", 1000): g(0.05, 0.05),
               ("paper", "gtl-oracle-ratio", 100): g(0.003), ("paper", "gtl-oracle-denoiser", 100): g(0.06)}
    table, notes = bar_checks(grouped)
    lines = {(line.split("|")[1].strip(), int(line.split("|")[2])): line for line in table.splitlines()[2:]}

    def verdict(bar, n):
        return lines[(bar, n)].split("|")[5].strip()

    assert verdict("GTL (planner sampler) below target-only", 100) == "met"
    assert verdict("GTL (planner sampler) below fine-tuned", 100) == "met"
    assert "missed by 0.015 " in lines[("GTL (planner sampler) below fine-tuned-planner", 100)]
    assert LEARNED_RATIO_GOALS[100] == 0.07 and verdict("GTL <= the learned-ratio goal", 100) == "met"
    assert "missed by 0.01 " in lines[("GTL (planner sampler) <= the learned-ratio goal", 1000)]  # 0.05 vs 0.04
    assert ("GTL (planner sampler) below target-only", 1000) not in lines  # rivals only at n <= 100
    assert ("GTL below fine-tuned-planner", 100) not in lines
    assert notes and all(n.startswith("n target = 100, GTL below") for n in notes)


def test_markov_bars_count_the_seeds_below_the_rival_paired_by_seed():
    from reports.render_markov import _grouped, bar_checks

    def cell(method, seed, kl):
        return {"preset": "paper", "method": method, "n_target": 100, "seed": seed, "metrics": {"transition_kl": kl}}

    cells = [cell("gtl", 0, 0.1), cell("gtl", 1, 0.3), cell("gtl", 2, 0.2),
             cell("target-only", 0, 0.2), cell("target-only", 1, 0.2), cell("target-only", 2, 0.25),
             cell("fine-tuned", 5, 0.1)]  # no seed shared with gtl
    table, _ = bar_checks(_grouped(cells), cells)
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()[2:]}
    assert lines["GTL below target-only"][-1] == "2 of 3"  # seeds 0 and 2; the means (0.2 vs 0.217) say met
    assert lines["GTL below fine-tuned"][-1] == "-" and lines["GTL <= the learned-ratio goal"][-1] == "-"
    assert table.splitlines()[0].endswith("| seeds below the rival (paired) |")
    assert bar_checks(_grouped(cells))[0].splitlines()[2].split("|")[-2].strip() == "-"  # without cells: no pairing


def test_markov_pairing_skips_nan_runs_and_a_rival_without_finite_runs_sets_no_bar():
    from reports.render_markov import _grouped, bar_checks

    def cell(method, seed, kl):
        return {"preset": "paper", "method": method, "n_target": 100, "seed": seed, "metrics": {"transition_kl": kl}}

    nan = float("nan")
    cells = [cell("gtl", 0, nan), cell("gtl", 1, 0.1), cell("gtl", 2, 0.1),
             cell("target-only", 0, 0.2), cell("target-only", 1, 0.2), cell("target-only", 2, 0.05),
             cell("fine-tuned", 0, nan), cell("fine-tuned", 1, nan)]
    table, _ = bar_checks(_grouped(cells), cells)
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()[2:]}
    assert lines["GTL below target-only"][-1] == "1 of 2"  # seed 0's NaN is in neither the mean nor the pairing
    assert "GTL below fine-tuned" not in lines and "nan" not in table


def test_a_results_file_repeating_a_markov_run_is_refused(tmp_path):
    import json

    from reports.builder import build_report

    data = json.loads((Path(__file__).parents[1] / "reports/runs/markov-default.json").read_text())
    data["results"]["cells"].append(dict(data["results"]["cells"][0]))
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=r"results.cells\[\d+\] repeats results.cells\[0\] \(preset 'paper', method "):
        build_report(path, tmp_path)


def test_markov_attribution_without_ablations_says_so_plainly():
    from reports.render_markov import bar_checks

    grouped = {("paper", "gtl", 100): {"transition_kl": summarize([0.30, 0.34])},
               ("paper", "target-only", 100): {"transition_kl": summarize([0.20, 0.22])}}
    _, notes = bar_checks(grouped)
    assert notes and all("ablations not run (gtl-oracle-ratio, gtl-oracle-denoiser); cannot attribute" in n for n in notes)
    assert not any("responsible is" in n or "(ablations missing)" in n for n in notes)


def test_markov_overlap_section_names_the_pair_of_its_rows(tmp_path):
    from reports.render_markov import _overlap_section

    class Ctx:
        def figure_path(self, name):
            return tmp_path / f"{name}.png", f"figures/{name}.png"

    rows = [{"preset": "no-overlap", "overlap": o, "method": "gtl-oracle-denoiser", "seed": s, "kl": 0.1 + o + s / 100}
            for o in (0.0, 0.5) for s in (0, 1)]
    title, body = _overlap_section({"overlap": rows}, Ctx())
    assert "at overlap 0 they lie outside the source's support" in body and "| no-overlap | gtl-oracle-denoiser | 0 | 2 |" in body
    assert "Rows of preset `?`" not in body
    _, old = _overlap_section({"overlap": [dict(r, preset="?") for r in rows]}, Ctx())
    assert "Rows of preset `?` come from a results file written before the sweep named its pair" in old
    assert "outside the source's support" not in old


def test_markov_attribution_with_one_ablation_says_what_it_removes():
    from reports.render_markov import bar_checks

    grouped = {("paper", "gtl", 100): {"transition_kl": summarize([0.07, 0.09])},
               ("paper", "target-only", 100): {"transition_kl": summarize([0.02, 0.02])},
               ("paper", "gtl-oracle-ratio", 100): {"transition_kl": summarize([0.03, 0.03])}}
    _, notes = bar_checks(grouped)
    assert notes and all("ablations not run (gtl-oracle-denoiser)" in n and
                         "(the exact ratio alone takes the KL from 0.08 to 0.03)" in n for n in notes)


def test_markov_headline_names_no_oracle_ablation_as_the_best_method(tmp_path):
    from reports.builder import build_report

    path = tmp_path / "m.json"
    path.write_text((Path(__file__).parents[1] / "reports/runs/markov-paper.json").read_text())
    text = build_report(path, tmp_path).read_text()
    assert "is gtl-oracle-ratio" not in text
    assert "best at n target = 5 is fine-tuned-planner (KL 0.194, oracle ablations aside)" in text


@pytest.mark.parametrize("residual, tolerance, expect, outcome", [
    (1e-15, 1e-10, "holds", "holds"), (1e-3, 1e-10, "holds", "unexpected"),
    (5e-4, 1e-6, "fails", "fails-as-predicted"), (1e-9, 1e-6, "fails", "unexpected"),
    (float("nan"), 1e-6, "fails", "unexpected"), (0.0, 0.0, "holds", "holds"),
])
def test_residual_outcome_colours_predicted_failures_apart(residual, tolerance, expect, outcome):
    from reports.figures import RESIDUAL_COLOURS, residual_outcome

    assert residual_outcome(residual, tolerance, expect) == outcome
    assert RESIDUAL_COLOURS["fails-as-predicted"][0] not in (RESIDUAL_COLOURS["unexpected"][0], RESIDUAL_COLOURS["holds"][0])
    with pytest.raises(ValueError, match="expect"):
        residual_outcome(0.0, 1.0, "maybe")


def test_provenance_wall_time_of_a_resumed_run_and_collapsed_config():
    from reports.markdown import CONFIG_INLINE_LINES, provenance_block, wall_time_item

    assert wall_time_item({"wall_time_s": 12.5}) == ("Wall time of the last invocation", "12.5 s")
    label, text = wall_time_item({"wall_time_s": 30.0, "wall_time_parts_s": [100.0, 30.0]})
    assert label == "Wall time" and text.startswith("130.0 s in total over 2 invocations (the run was resumed")
    assert wall_time_item({"wall_time_parts_s": [7.0]}) == ("Wall time", "7.0 s (one invocation)")
    assert wall_time_item({}) == ("Wall time of the last invocation", "-")
    long = provenance_block({"config": {f"k{i}": i for i in range(CONFIG_INLINE_LINES + 5)}})
    assert "<details>" in long and "</details>" in long and long.index("<details>") < long.index('"k0"')
    assert "<details>" not in provenance_block({"config": {"a": 1}})


def test_provenance_names_the_config_changes_a_run_folder_accepted():
    """A language run resumed with --allow-config-change reused components computed under the old
    config; its report showed only the last config, as if everything were computed under it."""
    from reports.markdown import provenance_block

    assert "Config changed" not in provenance_block({"config": {"a": 1}, "config_changes": []})
    text = provenance_block({"config": {"a": 1}, "config_changes": [
        {"from": "aaa", "to": "bbb", "changed": ["sampling.samples (16 -> 32)"]},
        {"from": "bbb", "to": "ccc", "changed": ["seeds ([] -> [0, 1])", "ratio.estimator (\"paper\" -> \"x|y\")"]}]})
    line = next(li for li in text.splitlines() if li.startswith("- **Config changed during the run**"))
    assert "2 time(s)" in line and "aaa -> bbb: sampling.samples (16 -> 32)" in line
    assert "bbb -> ccc: seeds ([] -> [0, 1]), ratio.estimator" in line and "x\\|y" in line


def test_error_bars_drawn_are_the_bootstrap_interval_and_never_cross_zero(tmp_path, monkeypatch):
    import matplotlib.axes

    from reports.figures import line_plot

    drawn = []
    original = matplotlib.axes.Axes.errorbar

    def spy(self, x, y, yerr=None, **kwargs):
        drawn.append((list(y), [list(row) for row in yerr]))
        return original(self, x, y, yerr=yerr, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    skewed = {20: [0.0012, 0.0025, 0.0031, 0.0904], 100: [0.0, 0.0, 0.002], 1000: [0.001]}
    sums = {n: summarize(v) for n, v in skewed.items()}
    line_plot(tmp_path / "kl.png", "KL", "n", "KL (nats)", {"gtl": list(sums.items())}, logx=True, logy=True)
    (ys, (below, above)), = drawn
    for (n, s), y, lo_err, hi_err in zip(sorted(sums.items()), ys, below, above):
        assert y - lo_err >= 0.0
        if s.n > 1:
            assert math.isclose(y - lo_err, s.lo, abs_tol=1e-15) and math.isclose(y + hi_err, s.hi, abs_tol=1e-15)
        else:
            assert lo_err == hi_err == 0.0
    assert (tmp_path / "kl.png").stat().st_size > 1000


def test_provenance_shows_notes_recorded_with_the_results():
    from reports.markdown import provenance_block

    assert "**Notes**" not in provenance_block({"config": {"a": 1}})
    text = provenance_block({"config": {"a": 1}, "notes": ["Cells were copied in.", "A|B"]})
    assert "- **Notes**: Cells were copied in. A\\|B" in text


def test_provenance_command_is_the_gtl_command_whichever_way_it_was_started():
    """``python -m gtl_verify.cli markov ...`` recorded the module's absolute file path as the command."""
    from gtl_verify.provenance import invocation

    assert invocation(["/x/bin/gtl", "markov", "--seeds", "0"]) == "gtl markov --seeds 0"
    assert invocation(["/work/tree/gtl_verify/cli.py", "markov", "--quiet"]) == "gtl markov --quiet"
    assert invocation(["benchmarks/sampler_cost.py", "--out", "x"]) == "benchmarks/sampler_cost.py --out x"
    assert invocation(["other/cli.py", "a"]) == "other/cli.py a"
    assert invocation(["/x/gtl", "markov", "--out", "my runs"]) == "gtl markov --out 'my runs'"  # runs again as typed
    assert invocation([]) == invocation([""]) == "?"


def test_provenance_items_stay_one_list_item_whatever_the_meta_holds():
    """A line break of any kind (\\r too) in a note, a config change or the command started a new
    Markdown block (a heading, a list item); a non-list 'changed' was split into characters."""
    from reports.markdown import provenance_block

    text = provenance_block({"config": {"a": 1}, "command": "gtl x\n# injected", "notes": "one\r- injected\r# heading",
                             "config_changes": [{"from": "h1\n\n# Injected", "to": "h2", "changed": "k (1 -> 2)"},
                                                {"from": "h2", "to": "h3", "changed": 7}, "odd\u2028entry"]})
    lines = text.splitlines()
    assert not any(li.lstrip().startswith("#") for li in lines) and sum("injected" in li.lower() for li in lines) == 3
    assert "h1  # Injected -> h2: k (1 -> 2)" in text and "h2 -> h3: 7" in text and "odd entry" in text
    assert "- **Notes**: one - injected # heading" in text
