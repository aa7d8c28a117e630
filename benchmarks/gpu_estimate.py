"""Time and memory of a language config on a GPU, estimated from FLOP counts measured on CPU.

No GPU is needed: every network of the config is built at its configured size and one forward
(and forward + backward) pass over ``--rows`` segments is run on CPU under
``torch.utils.flop_counter.FlopCounterMode``, which counts the matmul FLOPs; the attention
products, which it does not see in the CPU kernel, are added from their formula (elementwise
work, the optimiser step and data movement are not counted). Per-row costs are
then scaled to the config's work:

- training: steps x batch rows of every component (the pipeline's stages: source denoiser;
  per target fraction a target-only denoiser, a fine-tuned denoiser, the TCSM correction next to
  a frozen source forward, the clean classifier, the guided-likelihood ratio (an increment network
  of the TCSM correction's cost next to a frozen source forward); the planner next to a frozen
  source forward);
- sampling: per method and fraction, ``samples`` sequences. Unguided ancestral sampling makes
  T denoiser passes per sequence; GTL with a single-site ratio (guided-likelihood,
  telescoping-nce) adds one increment pass per step whatever n (the stabilised step reads every
  candidate from it); the planner sampler makes L denoiser, planner and ratio passes per sequence;
  TCSM a source and a correction pass per step. The gamma and candidate ablations add their own GTL samples.

Time = FLOPs / (peak x utilisation) for an assumed bf16 dense peak (``--peak-tflops``, default
989, NVIDIA H100/H200 SXM) at ``--utilisation`` (default 0.25, small transformers rarely reach
more), plus a pessimistic column at ``--low-utilisation``. Memory per training stage: 16 bytes
per trained parameter (float32 weights, gradients, AdamW moments; + 4 with EMA), 4 bytes per
frozen parameter, and the bytes the autograd graph saves for backward, measured under CPU bf16
autocast per row and scaled to the batch. Sampling memory: the denoiser's [B, L, K] outputs in
float32 plus the sampler's float64 log-probabilities and their cached copy.

Evaluation (MAUVE features, the perplexity evaluator) is not included.

    python benchmarks/gpu_estimate.py --config gpu --out reports/runs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gtl_verify.networks import BackboneConfig, DenoiserNet, PositionNet, SequenceNet, count_parameters  # noqa: E402
from gtl_verify.provenance import atomic_write_text, provenance  # noqa: E402
from language.config import LanguageConfig, load_config  # noqa: E402

BERT_VOCAB = 30522
GIB = 2.0**30


@dataclass
class NetCost:
    """Measured per-row costs of one network: FLOPs of a forward and of a forward + backward
    pass over one row of L tokens, bytes saved for backward per row (bf16 autocast), parameters."""

    forward: float
    train: float
    saved_bytes: float
    parameters: int


def _vocab_size(cfg: LanguageConfig) -> int:
    if cfg.data.tokenizer == "bert":
        return BERT_VOCAB
    return int(cfg.data.bpe_vocab_size)


def _backbone(size, vocab: int, length: int, time_conditioning: bool = False) -> BackboneConfig:
    return BackboneConfig(vocab_size=vocab, num_embeddings=vocab, max_length=length, hidden=size.hidden, blocks=size.blocks,
                          heads=size.heads, cond=size.cond, mlp_ratio=size.mlp_ratio, dropout=size.dropout,
                          positions=size.positions, time_conditioning=time_conditioning)


def _call(net: nn.Module, z: torch.Tensor, timed: bool, log_probs: torch.Tensor | None) -> torch.Tensor:
    t = torch.full((z.shape[0],), 0.5) if timed else None
    if isinstance(net, PositionNet) and net.log_prob_features:
        return net(z, t, log_probs)
    return net(z, t)


def measure(net: nn.Module, rows: int, length: int, vocab: int, timed: bool = False) -> NetCost:
    """Per-row FLOPs (forward; forward + backward) and saved-for-backward bytes of ``net``."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randint(vocab, (rows, length), generator=gen)
    log_probs = torch.log_softmax(torch.randn(rows, length, vocab, generator=gen), -1) if isinstance(net, PositionNet) else None
    with FlopCounterMode(display=False) as fwd:  # (its module tracker needs autograd on)
        _call(net, z, timed, log_probs)
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = _call(net, z, timed, log_probs)
        loss = out.float().logsumexp(-1).mean() if out.dim() == 3 else out.float().square().mean()
    loss.backward()
    with FlopCounterMode(display=False) as both:
        out = _call(net, z, timed, log_probs)
        (out.float().logsumexp(-1).mean() if out.dim() == 3 else out.float().square().mean()).backward()
    attention = 0.0 if _counts_attention(fwd) else attention_flops(net.config, length)
    return NetCost(fwd.get_total_flops() / rows + attention, both.get_total_flops() / rows + 3 * attention,
                   saved[0] / rows, count_parameters(net))


def _counts_attention(counter: FlopCounterMode) -> bool:
    return any("scaled_dot_product" in str(op) for ops in counter.get_flop_counts().values() for op in ops)


def attention_flops(config: BackboneConfig, length: int) -> float:
    """Forward FLOPs of the attention products per row, 2 x 2 L^2 hidden per block (Q K^T and
    A V); added when the counter does not see the CPU attention kernel (torch 2.x counts only the
    CUDA flash/efficient kernels). Backward: twice the forward, as for any matmul."""
    return 4.0 * length * length * config.hidden * config.blocks


SINGLE_SITE_ESTIMATORS = ("guided-likelihood", "telescoping-nce")


def networks(cfg: LanguageConfig, rows: int) -> dict[str, NetCost]:
    """Measured costs of every network of ``cfg`` (the TCSM correction: a denoiser of the ratio's size)."""
    k, length, m = _vocab_size(cfg), cfg.data.segment_length, cfg.models
    torch.manual_seed(0)
    nets = {
        "denoiser": (DenoiserNet(_backbone(m.denoiser, k, length)), False),
        "tcsm correction": (DenoiserNet(_backbone(m.ratio, k, length)), False),
        "classifier": (SequenceNet(_backbone(m.classifier, k, length)), False),
        "planner": (PositionNet(_backbone(m.planner, k, length), cfg.sampling.planner_log_prob_features), False),
    }
    return {name: measure(net, rows, length, k, t) for name, (net, t) in nets.items()}


def _stage(name: str, count: int, steps: int, batch: int, flops_per_row: float, trained: int, frozen: int,
           saved_per_row: float, ema: bool) -> dict[str, Any]:
    param_bytes = trained * (20 if ema else 16) + frozen * 4
    return {"stage": name, "count": count, "steps": steps, "batch": batch, "flops": count * steps * batch * flops_per_row,
            "memory_gib": (param_bytes + batch * saved_per_row) / GIB}


def training_stages(cfg: LanguageConfig, c: dict[str, NetCost]) -> list[dict[str, Any]]:
    """FLOPs and memory of every training stage (see the module docstring)."""
    tr, f = cfg.training, len(cfg.data.fractions)
    den, tcsm, cls, plan = (c[k] for k in ("denoiser", "tcsm correction", "classifier", "planner"))
    rows = [
        _stage("source denoiser", 1, tr.source.steps, tr.source.batch_size, den.train, den.parameters, 0, den.saved_bytes,
               tr.source.ema > 0),
        _stage("target-only denoiser", f, tr.target.steps, tr.target.batch_size, den.train, den.parameters, 0, den.saved_bytes,
               tr.target.ema > 0),
        _stage("fine-tuned denoiser", f, tr.finetune.steps, tr.finetune.batch_size, den.train, den.parameters, 0,
               den.saved_bytes, tr.finetune.ema > 0),
        _stage("tcsm correction", f, tr.ratio.steps, tr.ratio.batch_size, tcsm.train + den.forward, tcsm.parameters,
               den.parameters, tcsm.saved_bytes, tr.ratio.ema > 0),
        _stage("clean classifier", f, tr.classifier.steps, tr.classifier.batch_size, cls.train, cls.parameters, 0,
               cls.saved_bytes, tr.classifier.ema > 0),
    ]
    # the guided-likelihood ratio: an increment network of the ratio's size with a hidden -> K head (the
    # cost of a TCSM correction) next to a frozen source forward, per step
    rows.append(_stage("ratio (guided-likelihood)", f, tr.ratio.steps, tr.ratio.batch_size, tcsm.train + den.forward,
                       tcsm.parameters, den.parameters, tcsm.saved_bytes, tr.ratio.ema > 0))
    rows.append(_stage("planner", 1, tr.planner.steps, tr.planner.batch_size, plan.train + den.forward, plan.parameters,
                       den.parameters, plan.saved_bytes, tr.planner.ema > 0))
    return rows


def sampling_stages(cfg: LanguageConfig, c: dict[str, NetCost]) -> list[dict[str, Any]]:
    """FLOPs and memory of drawing every method's samples and the ablations."""
    s, length, k = cfg.sampling, cfg.data.segment_length, _vocab_size(cfg)
    t_steps, f = s.steps, len(cfg.data.fractions)
    ratio = c["tcsm correction"]  # the single-site increment network: every candidate in one pass per step
    den = c["denoiser"].forward

    def gtl(n: int) -> float:
        return t_steps * (den + ratio.forward)

    per_sequence = {
        "source-only": (1, t_steps * den),
        "target-only": (f, t_steps * den),
        "fine-tuned": (f, t_steps * den),
        "tcsm": (f, t_steps * (den + c["tcsm correction"].forward)),
        "gtl": (f, gtl(s.candidates)),
        "gtl-planner": (f, length * (den + c["planner"].forward + ratio.forward)),
    }
    out_bytes = s.batch * length * k * (4 + 8 + 8)  # float32 outputs, float64 log-probs and their cache
    weights = 4 * (c["denoiser"].parameters + ratio.parameters + c["planner"].parameters)
    memory = (weights + out_bytes) / GIB
    rows = [{"stage": f"sample {m}", "count": cnt, "samples": s.samples, "flops": cnt * s.samples * fl, "memory_gib": memory}
            for m, (cnt, fl) in per_sequence.items() if m in s.methods]
    if s.gamma_sweep:
        rows.append({"stage": "ablation gamma", "count": len(s.gamma_sweep), "samples": s.ablation_samples,
                     "flops": len(s.gamma_sweep) * s.ablation_samples * gtl(s.candidates), "memory_gib": memory})
    if s.candidates_sweep:
        rows.append({"stage": "ablation candidates", "count": len(s.candidates_sweep), "samples": s.ablation_samples,
                     "flops": s.ablation_samples * sum(gtl(min(n, k)) for n in s.candidates_sweep), "memory_gib": memory})
    return rows


def estimate(cfg: LanguageConfig, rows: int, peak_tflops: float, utilisation: float, low_utilisation: float) -> dict[str, Any]:
    """The whole estimate: measured per-row costs, stages with FLOPs, times and memory, totals."""
    if cfg.ratio.estimator not in SINGLE_SITE_ESTIMATORS:
        raise ValueError(f"ratio.estimator {cfg.ratio.estimator!r}: this estimate models the single-site estimators "
                         f"{list(SINGLE_SITE_ESTIMATORS)} only")
    costs = networks(cfg, rows)
    stages = training_stages(cfg, costs) + sampling_stages(cfg, costs)
    for st in stages:
        st["seconds"] = st["flops"] / (peak_tflops * 1e12 * utilisation)
        st["seconds_low"] = st["flops"] / (peak_tflops * 1e12 * low_utilisation)
    train = [s for s in stages if not s["stage"].startswith(("sample", "ablation"))]
    sample = [s for s in stages if s["stage"].startswith(("sample", "ablation"))]

    def total(group: list[dict[str, Any]], key: str) -> float:
        return sum(s[key] for s in group)

    return {
        "assumptions": {"peak_bf16_tflops": peak_tflops, "utilisation": utilisation, "low_utilisation": low_utilisation,
                        "measured_rows": rows, "vocab_size": _vocab_size(cfg), "length": cfg.data.segment_length,
                        "counted": "matmul and attention FLOPs (torch FlopCounterMode, CPU); evaluation excluded"},
        "networks": {k: vars(v) for k, v in costs.items()},
        "stages": stages,
        "totals": {
            "training_pflop": total(train, "flops") / 1e15, "sampling_pflop": total(sample, "flops") / 1e15,
            "training_minutes": total(train, "seconds") / 60, "sampling_minutes": total(sample, "seconds") / 60,
            "minutes": total(stages, "seconds") / 60, "minutes_low": total(stages, "seconds_low") / 60,
            "peak_memory_gib": max(s["memory_gib"] for s in stages),
            "peak_memory_stage": max(stages, key=lambda s: s["memory_gib"])["stage"],
        },
    }


def markdown(name: str, est: dict[str, Any]) -> str:
    a, t = est["assumptions"], est["totals"]
    lines = [
        f"# GPU estimate of the `{name}` language config (not a measurement)",
        "",
        f"FLOPs counted on CPU (torch FlopCounterMode, {a['measured_rows']} rows of {a['length']} tokens, vocabulary "
        f"{a['vocab_size']}) and scaled to the config; time at {a['peak_bf16_tflops']:g} bf16 dense TFLOP/s "
        f"(H100/H200 SXM) x {a['utilisation']:.0%} utilisation (pessimistic: {a['low_utilisation']:.0%}). "
        "Matmul and attention FLOPs only; evaluation (MAUVE features, perplexity) excluded.",
        "",
        f"**Total: {t['minutes']:.1f} min** (training {t['training_minutes']:.1f} min, {t['training_pflop']:.3g} PFLOP; "
        f"sampling {t['sampling_minutes']:.1f} min, {t['sampling_pflop']:.3g} PFLOP); at {a['low_utilisation']:.0%}: "
        f"{t['minutes_low']:.1f} min. **Peak memory {t['peak_memory_gib']:.1f} GiB** ({t['peak_memory_stage']}).",
        "",
        "| network | parameters | forward GFLOP/row | fwd+bwd GFLOP/row | saved for backward MiB/row (bf16) |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, v in est["networks"].items():
        lines.append(f"| {k} | {v['parameters']:,} | {v['forward'] / 1e9:.4g} | {v['train'] / 1e9:.4g} | "
                     f"{v['saved_bytes'] / 2**20:.4g} |")
    lines += ["", "| stage | count | steps x batch / samples | PFLOP | minutes | minutes (pessimistic) | memory GiB |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for s in est["stages"]:
        work = f"{s['steps']} x {s['batch']}" if "steps" in s else f"{s['samples']}"
        lines.append(f"| {s['stage']} | {s['count']} | {work} | {s['flops'] / 1e15:.4g} | {s['seconds'] / 60:.3g} | "
                     f"{s['seconds_low'] / 60:.3g} | {s['memory_gib']:.3g} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="gpu", help="language config name or TOML file (default gpu)")
    p.add_argument("--rows", type=int, default=2, help="segments per measured pass (default 2)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak TFLOP/s (default 989: H100/H200 SXM)")
    p.add_argument("--utilisation", type=float, default=0.25, help="share of the peak reached (default 0.25)")
    p.add_argument("--low-utilisation", type=float, default=0.10, help="pessimistic share (default 0.10)")
    p.add_argument("--out", type=Path, default=Path("runs/perf"), help="folder for gpu_estimate.json/.md")
    args = p.parse_args(argv)
    if args.rows < 1:
        p.error(f"--rows must be >= 1, got {args.rows}")
    if not args.peak_tflops > 0:
        p.error(f"--peak-tflops must be > 0, got {args.peak_tflops}")
    for name in ("utilisation", "low_utilisation"):
        if not 0 < getattr(args, name) <= 1:
            p.error(f"--{name.replace('_', '-')} must be in (0, 1], got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    cfg = load_config(args.config)
    est = estimate(cfg, args.rows, args.peak_tflops, args.utilisation, args.low_utilisation)
    text = markdown(args.config, est)
    print(text)
    meta = provenance({"config": args.config, "rows": args.rows, "peak_tflops": args.peak_tflops,
                       "utilisation": args.utilisation, "low_utilisation": args.low_utilisation}, [],
                      time.perf_counter() - start)
    atomic_write_text(args.out / "gpu_estimate.json",
                      json.dumps({"kind": "estimate", "meta": meta, "results": est}, indent=2, sort_keys=True, default=float) + "\n")
    atomic_write_text(args.out / "gpu_estimate.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
