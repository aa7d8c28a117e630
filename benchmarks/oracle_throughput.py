"""Throughput of the exact Markov-chain oracles (forward-backward).

Times ``ChainOracle`` marginals (log p(x^i = v | z), [B, L, K]) and ``PairOracle.single_site``
(log r(z^{i<-v}), two forward-backward passes) on random chains and half-masked sequences.
Each entry is the median wall time of ``--repeats`` runs after ``--warmup`` runs.

    python benchmarks/oracle_throughput.py                        # B=1024, L=256, K=32
    python benchmarks/oracle_throughput.py --sweep --threads 2
    python benchmarks/oracle_throughput.py --device cuda

Results go to ``--out`` (default runs/perf): oracle_throughput.json (a "benchmark" results file)
and its Markdown report with the figure (seconds against L per K and B), as ``gtl report`` writes it.

Each forward-backward step is a small [B, K] x [K, K] product plus a few [B, K] element-wise
operations, so with several threads on a busy machine the per-operation thread barriers can
dominate; use ``--threads 1`` or ``OMP_WAIT_POLICY=PASSIVE`` there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from markov.chain import MarkovChain
from markov.oracle import ChainOracle, PairOracle
from markov.presets import dirichlet_matrix
from gtl_verify.provenance import provenance, write_results
from reports.builder import build_reports

SWEEP_BATCH = (64, 256, 1024)
SWEEP_LENGTH = (64, 256, 1024)
SWEEP_VOCAB = (5, 32, 128)
SWEEP_MAX_ELEMENTS = 2**25
GOAL_SHAPE, GOAL_S = (1024, 256, 32), 0.5  # marginals of 1024 x 256 x 32 under 0.5 s on a 2-core CPU  # B * L * K above this (256 MiB per float64 buffer) is left out of the sweep


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(batch: int, length: int, vocab: int, device: torch.device, warmup: int, repeats: int,
            seed: int = 0) -> dict[str, float]:
    """Median seconds for marginals and for single-site ratios at one (B, L, K)."""
    g = torch.Generator().manual_seed(seed)
    uniform = torch.full((vocab,), 1.0 / vocab, dtype=torch.float64)
    source = MarkovChain(uniform, dirichlet_matrix(vocab, 1.0, g))
    target = MarkovChain(uniform, dirichlet_matrix(vocab, 1.0, g))
    x = source.sample(batch, length, g)
    mask = torch.rand(batch, length, generator=g) < 0.5
    z = torch.where(mask, vocab, x).to(device)
    chain_oracle = ChainOracle(source)
    pair_oracle = PairOracle(source, target)
    return {
        "marginals_s": _time(lambda: chain_oracle(z), device, warmup, repeats),
        "single_site_s": _time(lambda: pair_oracle.single_site(z), device, warmup, repeats),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=32)
    parser.add_argument("--sweep", action="store_true", help="time a grid over batch, length and vocab")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="runs/perf", help="folder for the results JSON and report (default runs/perf)")
    args = parser.parse_args(argv)
    for name in ("batch", "length", "vocab", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.sweep:
        grid = [(b, length, k) for b in SWEEP_BATCH for length in SWEEP_LENGTH for k in SWEEP_VOCAB
                if b * length * k <= SWEEP_MAX_ELEMENTS]
    else:
        grid = [(args.batch, args.length, args.vocab)]
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"median of {args.repeats} after {args.warmup} warm-up")
    print(f"{'B':>6} {'L':>6} {'K':>5} {'marginals_s':>12} {'single_site_s':>14} {'Mpos/s':>8}")
    start = time.perf_counter()
    load_before = os.getloadavg()
    rows = []
    for b, length, k in grid:
        res = measure(b, length, k, device, args.warmup, args.repeats)
        rate = b * length / res["marginals_s"] / 1e6
        print(f"{b:>6} {length:>6} {k:>5} {res['marginals_s']:>12.4f} {res['single_site_s']:>14.4f} {rate:>8.2f}")
        rows.append({"device": str(device), "B": b, "L": length, "K": k, **res, "Mpositions_per_s": rate,
                     "goal_s": GOAL_S if (b, length, k) == GOAL_SHAPE else None})
    figure = {"title": "Oracle forward-backward: seconds for the marginals of a batch", "x": "L", "y": "marginals_s",
              "series": "series", "xlabel": "sequence length L", "ylabel": "wall time (s, median)", "logx": True,
              "logy": True, "rows": [{**r, "series": f"B={r['B']}, K={r['K']}"} for r in rows]}
    results = {"title": f"Exact oracle throughput ({device}, {torch.get_num_threads()} threads)",
               "tables": {"throughput": rows},
               "columns": {"throughput": ["device", "B", "L", "K", "marginals_s", "single_site_s", "Mpositions_per_s", "goal_s"]},
               "figures": [figure] if len(rows) > 1 else [],
               "load_average": {"before": list(load_before), "after": list(os.getloadavg())}}
    config = {k: v for k, v in vars(args).items() if k != "out"} | {"threads_used": torch.get_num_threads()}
    path = write_results(Path(args.out) / "oracle_throughput.json", "benchmark", results,
                         provenance(config, [0], time.perf_counter() - start))
    print(f"results: {path}")
    for report in build_reports([str(path)], args.out):
        print(f"report: {report}")


if __name__ == "__main__":
    main()
