"""Which masked-diffusion denoiser settings learn text fastest on a CPU: a fixed wall-clock budget per candidate.

Each candidate fixes a tokenizer (bert-base-uncased WordPiece restricted to the ids seen in training,
or a byte-level BPE of a few thousand tokens trained on the CS training abstracts), a segment length,
a denoiser size (DiT hidden x blocks), a batch size and a learning-rate schedule (linear warm-up, then
constant or cosine decay to ``--lr-floor`` of the peak). For each candidate the script

1. packs the CS (source) abstracts into segments (:func:`language.segments.pack_segments`),
2. measures the step time of the repository trainer (:func:`gtl_verify.training.train`, MDLM loss
   :func:`gtl_verify.objectives.mdlm_loss`, log-linear schedule) over a few probe steps and sets
   the step count that fills ``--budget-s`` seconds, then trains a fresh ``DenoiserNet`` for it,
3. measures the held-out CS MDLM negative ELBO (nats per token, and nats per character of the
   decoded text, which is comparable across tokenizers),
4. draws ``--samples`` unguided sequences (:func:`gtl_verify.samplers.ancestral_sample`) for every
   (sampling steps, top-k) of ``--sampling``, and measures distinct-1/2 (over model token ids, as the
   pipeline does, and over whitespace words of the decoded text) and the generative perplexity
   (:func:`language.evaluate.generative_perplexity`) of the samples, beside the same numbers for
   ``--samples`` held-out CS segments measured the same way.

The perplexity evaluator is the candidate's own denoiser (the pipeline's evaluator, a target-only
physics denoiser of the same size, would double the training cost of every candidate); the
ratio sample / held-out perplexity is what the targets use.

The cosine schedule is the trainer's own (``TrainConfig.lr_schedule``, :func:`gtl_verify.training.lr_factor`).

Results go to ``--out`` (JSON, rewritten after every candidate; a candidate already there with the
same settings is skipped, so an interrupted run resumes) and a Markdown table beside it (a hand-written
section of that file starting at ``## Recommendation`` is kept when the table is rewritten).

Run: ``OMP_NUM_THREADS=2 python -m benchmarks.language_cpu_tuning --budget-s 180``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from gtl_verify.learned import NetworkDenoiser
from gtl_verify.networks import BackboneConfig, DenoiserNet, count_parameters
from gtl_verify.objectives import mdlm_elbo_nats_per_token, mdlm_loss
from gtl_verify.rules import Unguided
from gtl_verify.samplers import SamplerConfig, ancestral_sample
from gtl_verify.schedules import LogLinearSchedule
from gtl_verify.training import LR_SCHEDULES, TrainConfig, config_hash, train
from gtl_verify.validation import check_int_range, check_real_range
from language import data as data_mod
from language import evaluate as ev
from language.pipeline import Vocabulary, observed_vocabulary
from language.segments import decode, pack_segments
from language.tokenizer import load_bert_tokenizer, tokenizer_info, train_bpe_tokenizer

SCHEDULE = LogLinearSchedule()
TOKENIZERS = ("bert", "bpe")
PROBE_STEPS = 4


@dataclass(frozen=True)
class Candidate:
    """One setting: tokenizer (``bert`` observed ids, or ``bpe`` with ``vocab`` tokens), segment
    ``length``, denoiser ``hidden`` x ``blocks`` (``heads`` heads), ``batch`` rows per step, peak
    ``lr`` with ``warmup`` steps and ``schedule`` (constant or cosine)."""

    tokenizer: str
    vocab: int
    length: int
    hidden: int
    blocks: int
    heads: int = 4
    batch: int = 32
    lr: float = 2e-3
    warmup: int = 50
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if self.schedule not in LR_SCHEDULES:
            raise ValueError(f"schedule must be one of {LR_SCHEDULES}, got {self.schedule!r}")
        for name in ("length", "hidden", "blocks", "heads", "batch"):
            check_int_range(name, getattr(self, name), 1)
        check_int_range("warmup", self.warmup, 0)
        check_real_range("lr", self.lr, 0.0, open_low=True)
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")

    @property
    def name(self) -> str:
        tok = "bert-obs" if self.tokenizer == "bert" else f"bpe{self.vocab // 1000}k"
        return f"{tok}-L{self.length}-{self.hidden}x{self.blocks}-b{self.batch}-{self.schedule}-lr{self.lr:g}"


def parse_candidate(text: str) -> Candidate:
    """``tokenizer:vocab:length:hidden:blocks[:batch[:lr[:schedule]]]``, e.g. ``bpe:4096:64:128:2:32:2e-3:cosine``
    (``vocab`` is ignored for bert)."""
    parts = text.split(":")
    if not 5 <= len(parts) <= 8:
        raise argparse.ArgumentTypeError(
            f"--candidate {text!r}: expected tokenizer:vocab:length:hidden:blocks[:batch[:lr[:schedule]]]")
    try:
        kw: dict[str, Any] = dict(tokenizer=parts[0], vocab=int(parts[1]), length=int(parts[2]),
                                  hidden=int(parts[3]), blocks=int(parts[4]))
        if len(parts) > 5:
            kw["batch"] = int(parts[5])
        if len(parts) > 6:
            kw["lr"] = float(parts[6])
        if len(parts) > 7:
            kw["schedule"] = parts[7]
        return Candidate(**kw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--candidate {text!r}: {exc}") from None


DEFAULT_CANDIDATES = (
    "bert:0:64:128:2:32:2e-3:constant",  # today's cpu config, run for the same budget
    "bpe:4096:64:128:2:32:2e-3:cosine",
    "bpe:4096:32:128:2:64:2e-3:cosine",
    "bpe:4096:64:192:4:32:2e-3:cosine",
    "bpe:4096:64:256:4:32:1e-3:cosine",
    "bpe:2048:64:192:4:32:2e-3:cosine",
    "bpe:8192:64:192:4:32:2e-3:cosine",
    "bert:0:64:128:2:32:2e-3:cosine",
)


# ------------------------------------------------------------------ learning-rate schedule
# ------------------------------------------------------------------ data
def load_texts(data_dir: Path, max_abstracts: int, cache: Path, seed: int = 0) -> dict[str, list[str]]:
    """CS train / validation abstracts (``max_abstracts`` sampled, 10 % held out), cached as JSON."""
    key = {"data": str(data_dir), "max": max_abstracts, "seed": seed}
    if cache.is_file():
        try:
            payload = json.loads(cache.read_text())
            if payload.get("key") == key:
                return payload["texts"]
        except (json.JSONDecodeError, KeyError):
            print(f"text cache {cache} is damaged; re-reading the data", file=sys.stderr)
    domains = data_mod.load_domains(data_dir, max_per_domain=max_abstracts, seed=seed)
    train_texts, val_texts = data_mod.split(domains.source, 0.1, seed)
    texts = {"train": train_texts, "val": val_texts}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "texts": texts}))
    return texts


@dataclass
class Packed:
    """Segments in model ids and the way back to text."""

    vocab: Vocabulary
    tokenizer: Any
    train: torch.Tensor  # [N, L]
    val: torch.Tensor  # [M, L]

    def texts(self, rows: torch.Tensor) -> list[str]:
        return list(decode(self.vocab.decode(rows), self.tokenizer))


def pack(texts: dict[str, list[str]], c: Candidate, tokenizers: dict[tuple[str, int], Any]) -> Packed:
    """Tokenise (the BPE tokenizer is trained on the training texts once per vocabulary size) and pack."""
    key = (c.tokenizer, c.vocab if c.tokenizer == "bpe" else 0)
    if key not in tokenizers:
        tokenizers[key] = load_bert_tokenizer() if c.tokenizer == "bert" else train_bpe_tokenizer(texts["train"], c.vocab)
    tok = tokenizers[key]
    train_rows = pack_segments(texts["train"], tok, c.length)
    val_rows = pack_segments(texts["val"], tok, c.length)
    info = tokenizer_info(tok)
    if c.tokenizer == "bert":
        vocab = observed_vocabulary([train_rows], info.vocab_size, info.mask_id, tok.token_to_id("[UNK]"), 5)
    else:
        vocab = Vocabulary("full", info.vocab_size, info.mask_id)
    return Packed(vocab, tok, vocab.encode(train_rows)[0], vocab.encode(val_rows)[0])


# ------------------------------------------------------------------ training
def build(c: Candidate, packed: Packed, seed: int) -> DenoiserNet:
    torch.manual_seed(seed)
    cfg = BackboneConfig(vocab_size=packed.vocab.size, num_embeddings=packed.vocab.num_embeddings, max_length=c.length,
                         hidden=c.hidden, blocks=c.blocks, heads=c.heads, cond=c.hidden // 2)
    return DenoiserNet(cfg)


def fit(c: Candidate, packed: Packed, budget_s: float, lr_floor: float, seed: int) -> tuple[DenoiserNet, dict[str, Any]]:
    """Probe the step time, then train a fresh denoiser for the steps that fill ``budget_s``."""
    mask_id = packed.vocab.mask_id

    def loss(model, batch, gen):
        return mdlm_loss(model, batch, SCHEDULE, mask_id, gen)

    probe = build(c, packed, seed)
    train(probe, loss, packed.train, TrainConfig(steps=1, batch_size=c.batch, seed=seed), progress=False)  # warm caches
    started = time.perf_counter()
    train(probe, loss, packed.train, TrainConfig(steps=PROBE_STEPS, batch_size=c.batch, seed=seed), progress=False)
    step_s = (time.perf_counter() - started) / PROBE_STEPS
    steps = max(c.warmup + 1, int(budget_s / step_s))
    net = build(c, packed, seed)
    cpu_started = time.process_time()
    config = TrainConfig(steps=steps, batch_size=c.batch, lr=c.lr, warmup=c.warmup, seed=seed, log_every=max(1, steps // 10),
                         lr_schedule=c.schedule, lr_floor=lr_floor)
    result = train(net, loss, packed.train, config, progress=False)
    cpu_s = time.process_time() - cpu_started
    tail = result.losses[-max(1, steps // 20):]
    return net, {"loss_curve": loss_curve(result.losses, 20), "probe_step_s": step_s, "train_cpu_s": cpu_s, "cpu_s_per_step": cpu_s / max(1, result.steps), "steps": result.steps, "train_s": result.wall_time_s,
                 "step_s": result.wall_time_s / max(1, result.steps), "final_train_loss": sum(tail) / len(tail),
                 "parameters": count_parameters(net), "epochs": result.steps * c.batch / packed.train.shape[0]}


def loss_curve(losses: Sequence[float], points: int) -> list[tuple[int, float]]:
    """(last step, mean training loss) of ``points`` equal chunks of the steps: below one epoch every
    batch is unseen, so this traces the held-out MDLM loss (nats per token) against steps."""
    n = len(losses)
    bounds = sorted({round(n * (i + 1) / points) for i in range(points)} - {0})
    out, start = [], 0
    for end in bounds:
        chunk = losses[start:end]
        out.append((end, sum(chunk) / len(chunk)))
        start = end
    return out


# ------------------------------------------------------------------ evaluation
def word_distinct(texts: Sequence[str], n: int) -> float:
    """distinct-n over whitespace words of the decoded texts (comparable across tokenizers)."""
    ids: dict[str, int] = {}
    rows = [[ids.setdefault(w, len(ids)) for w in t.split()] for t in texts]
    rows = [r for r in rows if len(r) >= n]
    return ev.distinct_n(rows, n) if rows else 0.0


def measure(net: DenoiserNet, packed: Packed, rows: torch.Tensor, draws: int, seed: int) -> dict[str, Any]:
    """distinct-n (token ids and words) and the evaluator's generative perplexity of ``rows`` [N, L]."""
    texts = packed.texts(rows)
    gen = torch.Generator().manual_seed(seed)
    ppl = ev.generative_perplexity(net, rows, SCHEDULE, packed.vocab.mask_id, gen, draws)
    return {"distinct_1": ev.distinct_n(rows, 1), "distinct_2": ev.distinct_n(rows, 2),
            "word_distinct_1": word_distinct(texts, 1), "word_distinct_2": word_distinct(texts, 2),
            "perplexity": ppl["perplexity"], "nats_per_token": ppl["nats_per_token"],
            "snippets": [t[:160] for t in texts[:3]]}


def held_out_elbo(net: DenoiserNet, packed: Packed, rows: int, seed: int) -> dict[str, float]:
    """Held-out MDLM negative ELBO in nats per token and per character of the decoded text."""
    val = packed.val[:rows]
    nats = mdlm_elbo_nats_per_token(net, val, SCHEDULE, packed.vocab.mask_id, torch.Generator().manual_seed(seed),
                                    samples=4)
    chars = sum(len(t) for t in packed.texts(val))
    return {"nats_per_token": nats, "nats_per_char": nats * val.numel() / max(1, chars), "rows": int(val.shape[0])}


def sample(net: DenoiserNet, packed: Packed, n: int, steps: int, top_k: int | None, seed: int) -> tuple[torch.Tensor, float]:
    denoiser = NetworkDenoiser(net, packed.vocab.mask_id)
    cfg = SamplerConfig(num_samples=n, length=packed.train.shape[1], steps=steps, gamma=0.0, rule=Unguided(),
                        top_k=top_k, final_argmax=True)
    net.eval()
    with torch.no_grad():
        res = ancestral_sample(denoiser, None, SCHEDULE, cfg, torch.Generator().manual_seed(seed))
    return res.tokens.cpu(), res.wall_time_s


def evaluate(c: Candidate, net: DenoiserNet, packed: Packed, args: argparse.Namespace) -> dict[str, Any]:
    n = args.samples
    out: dict[str, Any] = {"held_out_elbo": held_out_elbo(net, packed, args.elbo_rows, args.seed),
                           "held_out": measure(net, packed, packed.val[:n], args.perplexity_draws, args.seed), "sampling": []}
    for steps_text in args.sampling:
        steps, top_k = parse_sampling(steps_text, c.length)
        tokens, wall = sample(net, packed, n, steps, top_k, args.seed)
        row = {"steps": steps, "top_k": top_k, "sample_s": wall, **measure(net, packed, tokens, args.perplexity_draws, args.seed)}
        row["perplexity_ratio"] = row["perplexity"] / out["held_out"]["perplexity"]
        out["sampling"].append(row)
    return out


def parse_sampling(text: str, length: int) -> tuple[int, int | None]:
    """``STEPS[/TOPK]`` with STEPS an integer or ``L`` (the segment length), e.g. ``L``, ``L/8``, ``32/0`` (0 = no top-k)."""
    steps_text, _, k_text = text.partition("/")
    try:
        steps = length if steps_text == "L" else int(steps_text)
        top_k = int(k_text) if k_text else 0
    except ValueError:
        raise ValueError(f"--sampling {text!r}: expected STEPS[/TOPK], STEPS an integer or L") from None
    check_int_range("sampling steps", steps, 1)
    check_int_range("sampling top-k", top_k, 0)
    return steps, (top_k or None)


# ------------------------------------------------------------------ report
KEEP_FROM = "## Recommendation"


def _fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def table_rows(results: dict[str, Any]) -> list[str]:
    head = ("| candidate | budget (s) | params | step (s) | CPU s/step | steps | epochs | train (s) | held-out nats/token | held-out nats/char "
            "| sampling T / top-k | distinct-1 | distinct-2 | word distinct-2 | gen. ppl | held-out ppl | ratio | sample (s) |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results["candidates"].items():
        elbo, held = r["held_out_elbo"], r["held_out"]
        for s in r["sampling"]:
            budget = r.get("settings", {}).get("budget_s", "?")
            rows.append(f"| {name} | {budget} | {r['parameters'] / 1e6:.2f}M | {_fmt(r['step_s'])} | {_fmt(r.get('cpu_s_per_step', math.nan))} | {r['steps']} | {_fmt(r['epochs'], 2)} "
                        f"| {r['train_s']:.0f} | {_fmt(elbo['nats_per_token'])} | {_fmt(elbo['nats_per_char'])} "
                        f"| {s['steps']} / {s['top_k'] or 'off'} | {_fmt(s['distinct_1'])} | {_fmt(s['distinct_2'])} "
                        f"| {_fmt(s['word_distinct_2'])} | {_fmt(s['perplexity'])} | {_fmt(held['perplexity'])} "
                        f"| {_fmt(s['perplexity_ratio'])} | {s['sample_s']:.1f} |")
    return rows


def held_out_rows(results: dict[str, Any]) -> list[str]:
    rows = ["| candidate | vocabulary | train segments | distinct-1 | distinct-2 | word distinct-1 | word distinct-2 | load before / after |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in results["candidates"].items():
        h = r["held_out"]
        rows.append(f"| {name} | {r['vocab_size']} | {r['train_segments']} | {_fmt(h['distinct_1'])} | {_fmt(h['distinct_2'])} "
                    f"| {_fmt(h['word_distinct_1'])} | {_fmt(h['word_distinct_2'])} "
                    f"| {r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} |")
    return rows


def snippet_lines(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name, r in results["candidates"].items():
        for s in r["sampling"]:
            out.append(f"- **{name}**, T = {s['steps']}, top-k {s['top_k'] or 'off'}:")
            out.extend(f"  - `{t[:120]}`" for t in s["snippets"][:2])
    return out


def render_markdown(results: dict[str, Any], previous: str = "") -> str:
    """The measured tables; the hand-written part of ``previous`` from ``## Recommendation`` on is kept."""
    st = results.get("settings", {})
    lines = ["# Fastest CPU settings for the source (CS) MDLM denoiser", "",
             "Every candidate trains for a wall-clock budget (column `budget`; the step count comes from a probe of "
             "the step time, so a load change moves the real training time, column `train`; "
             f"{results.get('threads', '?')} torch threads on the shared 2-core machine, load averages per candidate below), "
             f"then draws {st.get('samples', '?')} unguided samples per sampling setting. Held-out: "
             f"{st.get('samples', '?')} held-out CS segments measured the same way. distinct-n over model token ids "
             "(as the pipeline) and over whitespace words of the decoded text (comparable across tokenizers). "
             "Generative perplexity: MDLM-ELBO perplexity under the candidate's own denoiser "
             f"({st.get('perplexity_draws', '?')} draws per row); ratio = samples / held-out. "
             "Produced by `benchmarks/language_cpu_tuning.py`; numbers in `language-cpu-tuning.json`.", "",
             "## Candidates", "", *table_rows(results), "", "## Held-out CS (per tokenizer and segment length)", "",
             *held_out_rows(results), "", "## Samples (first two of each setting, first 120 characters)", "",
             *snippet_lines(results), ""]
    text = "\n".join(lines)
    keep = previous.find(KEEP_FROM)
    return text + ("\n" + previous[keep:] if keep >= 0 else "")


def write_outputs(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out)
    md = out.with_suffix(".md")
    md.write_text(render_markdown(results, md.read_text() if md.is_file() else ""))


# ------------------------------------------------------------------ driver
def settings_key(c: Candidate, args: argparse.Namespace) -> str:
    return config_hash({"candidate": asdict(c), "budget_s": args.budget_s, "samples": args.samples, "seed": args.seed,
                        "sampling": list(args.sampling), "max_abstracts": args.max_abstracts, "lr_floor": args.lr_floor,
                        "draws": args.perplexity_draws, "elbo_rows": args.elbo_rows})[:16]


def run_candidate(c: Candidate, texts: dict[str, list[str]], tokenizers: dict, args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    started = time.perf_counter()
    packed = pack(texts, c, tokenizers)
    net, fit_info = fit(c, packed, args.budget_s, args.lr_floor, args.seed)
    result = {"candidate": asdict(c), "name": c.name, "vocab_size": packed.vocab.size,
              "train_segments": int(packed.train.shape[0]), "val_segments": int(packed.val.shape[0]),
              "train_tokens": int(packed.train.numel()), **fit_info, **evaluate(c, net, packed, args)}
    result["wall_s"] = time.perf_counter() - started
    result["settings"] = {"budget_s": args.budget_s, "samples": args.samples, "perplexity_draws": args.perplexity_draws,
                          "elbo_rows": args.elbo_rows, "threads": torch.get_num_threads()}
    result["load_before"], result["load_after"] = list(load_before), list(os.getloadavg())
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=None, help="arXiv data (default: ../shared/data/arxiv)")
    p.add_argument("--candidate", type=parse_candidate, action="append", dest="candidates",
                   help="tokenizer:vocab:length:hidden:blocks[:batch[:lr[:schedule]]] (repeatable; default: a built-in grid)")
    p.add_argument("--budget-s", type=float, default=180.0, help="training wall-clock seconds per candidate")
    p.add_argument("--samples", type=int, default=64, help="samples (and held-out segments) per measurement")
    p.add_argument("--sampling", nargs="+", default=["L/8", "L/0"], help="STEPS[/TOPK] settings to sample with")
    p.add_argument("--max-abstracts", type=int, default=3000, help="CS abstracts read (10 %% held out)")
    p.add_argument("--lr-floor", type=float, default=0.1, help="cosine schedule's final rate / peak")
    p.add_argument("--perplexity-draws", type=int, default=4)
    p.add_argument("--elbo-rows", type=int, default=256, help="held-out segments for the ELBO")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("reports/runs/language-cpu-tuning.json"))
    p.add_argument("--cache-dir", type=Path, default=Path("runs/language-cpu-tuning"))
    p.add_argument("--report-only", action="store_true", help="rewrite the Markdown from --out without training")
    args = p.parse_args(argv)
    if not args.budget_s > 0:
        p.error(f"--budget-s must be > 0, got {args.budget_s}")
    for name in ("samples", "max_abstracts", "perplexity_draws", "elbo_rows"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0.0 <= args.lr_floor <= 1.0:
        p.error(f"--lr-floor must be in [0, 1], got {args.lr_floor}")
    for text in args.sampling:
        try:
            parse_sampling(text, 8)
        except ValueError as exc:
            p.error(str(exc))
    args.candidates = args.candidates or [parse_candidate(t) for t in DEFAULT_CANDIDATES]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict[str, Any] = {"candidates": {}}
    if args.out.is_file():
        try:
            results = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            print(f"results file {args.out} is damaged; move it away (or repair it) and rerun", file=sys.stderr)
            return 1
    if args.report_only:
        if not results["candidates"]:
            print(f"--report-only: no results in {args.out}", file=sys.stderr)
            return 1
        write_outputs(results, args.out)
        return 0
    data_dir = data_mod.resolve_data_dir(args.data_dir)
    texts = load_texts(data_dir, args.max_abstracts, args.cache_dir / "texts.json", args.seed)
    tokenizers: dict = {}
    results["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "candidates"}
    results["threads"] = torch.get_num_threads()
    for c in args.candidates:
        key = settings_key(c, args)
        if results["candidates"].get(c.name, {}).get("key") == key:
            print(f"{c.name}: done already", file=sys.stderr)
            continue
        print(f"{c.name}: training for {args.budget_s:g}s (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
        res = run_candidate(c, texts, tokenizers, args)
        res["key"] = key
        results["candidates"][c.name] = res
        best = max(res["sampling"], key=lambda r: r["distinct_2"])
        print(f"{c.name}: {res['steps']} steps, held-out {res['held_out_elbo']['nats_per_char']:.3f} nats/char, "
              f"distinct-2 {best['distinct_2']:.3f} (held-out {res['held_out']['distinct_2']:.3f}), "
              f"ppl ratio {best['perplexity_ratio']:.2f}", file=sys.stderr)
        write_outputs(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
