"""Data preparation: abstracts per domain -> seeded held-out split -> nested target fractions ->
tokenised, packed segments in model ids (cached under ``<run>/data``)."""

from __future__ import annotations


import torch

from gtl_verify.storage import atomic_torch_save, atomic_write_text, load_torch_cache
from gtl_verify.training import config_hash

from . import data as data_mod
from . import evaluate as ev
from .segments import pack_segments
from .tokenizer import load_bert_tokenizer, tokenizer_info, train_bpe_tokenizer
from .run_folder import PreparedData, Run, _fraction_key, _payload
from .vocabulary import Vocabulary, observed_vocabulary


def _load_tokenizer(run: Run, train_texts: list[str], digest: str):
    cfg = run.config.data
    if cfg.tokenizer == "bert":
        return load_bert_tokenizer()
    from tokenizers import Tokenizer

    path = run.root / "data" / f"tokenizer-bpe-{digest}.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    tok = train_bpe_tokenizer(train_texts, cfg.bpe_vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, tok.to_str())
    return Tokenizer.from_file(str(path))


def prepare_data(run: Run) -> PreparedData:
    """Abstracts -> seeded splits -> tokenised, packed segments (cached under ``<run>/data``)."""
    cfg, seed = run.config.data, run.config.seed
    data_dir = data_mod.resolve_data_dir(cfg.path)
    key = {"data": {k: v for k, v in vars(cfg).items() if k != "path"}, "seed": seed, "files": [
        (p.name, p.stat().st_size) for p in data_mod.data_files(data_dir)]}
    digest = config_hash(key)[:16]
    cache = run.root / "data" / f"segments-{digest}.pt"
    payload = load_torch_cache(cache, lambda p: _payload(p, ("texts", "summary", "segments")))
    if payload is not None:
        run.log(f"data: loaded {cache.name}")
    else:
        run.log(f"data: reading {data_dir}")
        domains = data_mod.load_domains(data_dir, scheme=cfg.scheme, max_per_domain=cfg.max_per_domain or None, seed=seed)
        src_train, src_val = data_mod.split(domains.source, cfg.val_fraction, seed)
        tgt_train, tgt_val = data_mod.split(domains.target, cfg.val_fraction, seed)
        if cfg.overlap > 0:
            src_train, tgt_train = data_mod.move_target_into_source(src_train, tgt_train, cfg.overlap, seed)
        fractions = data_mod.target_fractions(tgt_train, cfg.fractions, seed)
        texts = {"source_train": src_train, "source_val": src_val, "target_val": tgt_val,
                 **{f"target_{_fraction_key(f)}": t for f, t in fractions.items()}}
        payload = {"texts": texts, "summary": data_mod.summary(domains), "segments": None}
    texts = payload["texts"]
    tok = _load_tokenizer(run, texts["source_train"] + texts[f"target_{_fraction_key(max(cfg.fractions))}"], digest)
    if payload["segments"] is None:
        length = cfg.segment_length

        def pack(name: str) -> torch.Tensor:
            try:
                return pack_segments(texts[name], tok, length, progress=False)
            except ValueError as exc:
                raise ValueError(f"data split {name!r} ({len(texts[name])} abstracts): {exc}") from None

        payload["segments"] = {name: pack(name) for name in texts}
        payload["counts"] = {name: len(t) for name, t in texts.items()}
        atomic_torch_save(payload, cache)
    seg = payload["segments"]
    info = tokenizer_info(tok)
    if cfg.vocabulary == "observed":
        # source and the largest target share (every smaller share lies inside it)
        rows = [seg["source_train"], seg[f"target_{_fraction_key(max(cfg.fractions))}"]]
        vocab = observed_vocabulary(rows, info.vocab_size, info.mask_id, tok.token_to_id("[UNK]"), cfg.min_count)
    else:
        vocab = Vocabulary("full", info.vocab_size, info.mask_id)
    # evaluation rows in model ids, like the samples: one text path (model vocabulary -> text) for all
    target_val, source_val = vocab.encode(seg["target_val"])[0], vocab.encode(seg["source_val"])[0]
    n_held, n_ref = run.config.sampling.samples, run.config.evaluation.reference_texts
    ev.check_held_out("physics", target_val.shape[0], payload["counts"]["target_val"],
                      {"MAUVE reference (evaluation.reference_texts)": n_ref, "ceiling (sampling.samples)": n_held})
    ev.check_held_out("CS", source_val.shape[0], payload["counts"]["source_val"], {"floor (sampling.samples)": n_held})
    perm = torch.randperm(target_val.shape[0], generator=torch.Generator().manual_seed(run.source_seed("reference")))
    summary = dict(payload["summary"])
    summary.update({"abstracts": payload["counts"], "segments": {k: int(v.shape[0]) for k, v in seg.items()},
                    "segment_length": cfg.segment_length, "tokenizer": info.name, "vocabulary": vocab.to_dict(),
                    "reference_segments": n_ref, "held_out_segments": n_held, "data_dir": str(data_dir)})
    data = PreparedData(
        vocab=vocab, tokenizer=tok,
        source_train=vocab.encode(seg["source_train"])[0], source_val=source_val,
        target_train={float(f): vocab.encode(seg[f"target_{_fraction_key(f)}"])[0] for f in cfg.fractions},
        target_val=target_val,
        reference_rows=target_val[perm[:n_ref]], held_out_rows=target_val[perm[n_ref : n_ref + n_held]],
        summary=summary, hash=digest,
    )
    for name, rows in (("source_train", data.source_train), *((f"target fraction {f:g}", r) for f, r in data.target_train.items())):
        if rows.shape[0] < 1:
            raise ValueError(f"data split {name} holds no segment")
    run.data = data
    run.log(f"data: {data.source_train.shape[0]} source / "
            + ", ".join(f"{r.shape[0]} target ({f:g})" for f, r in data.target_train.items())
            + f" segments of {data.length} tokens, vocabulary {vocab.size} ({vocab.kind}), mask id {vocab.mask_id}")
    return data
