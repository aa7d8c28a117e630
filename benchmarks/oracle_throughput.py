"""Throughput of the exact Markov-chain oracles against the bare matmul chain and peer HMM libraries.

On one problem (a random Dirichlet(1) chain, B sequences of length L drawn from it, each position
masked with probability 1/2) this times, side by side with repeats interleaved:

- the bare matmul chain: 2 L products [B, K] x [K, K] in float64 (the arithmetic of a
  forward-backward pass with nothing else), the reference every ratio is taken against;
- ``ChainOracle``: log marginals ``oracle(z)``, probabilities ``marginals(z)``, ``log_obs(z)``,
  the same log marginals with log-space power tables forced, a fresh oracle (power tables built
  inside the timed call, also for a batch whose first row is fully masked, which needs the
  largest table) and the explicit scaled recursion ``forward_backward(z)``;
- ``PairOracle``: noisy log-ratios ``oracle(z)`` and single-site ratios ``single_site(z)``
  (two chains: source and a second Dirichlet chain);
- peers on the same problem, as an HMM whose hidden state is the token and whose observation
  is the token or "masked" (each with probability 1/2, which scales P_obs by 2^-L and leaves the
  posteriors unchanged): hmmlearn ``CategoricalHMM.predict_proba`` (implementation "log", its
  default, and "scaling") and pomegranate ``DenseHMM.predict_proba`` (float64). A peer that is
  not installed is skipped with a note (``pip install -e .[bench]`` installs them); the largest
  difference of its posteriors and log-likelihoods from ours is printed and stored.

Each round times every entry once (peers only in the first ``--peer-repeats`` rounds); a ratio is
the median over rounds of the entry's time over the bare chain's time in the same round, so the
load of a shared machine cancels to first order. The load average is recorded before and after.

    OMP_NUM_THREADS=1 python benchmarks/oracle_throughput.py --out reports/runs
    python benchmarks/oracle_throughput.py --sweep --no-peers        # B x L x K grid, ours only
    python benchmarks/oracle_throughput.py --device cuda --no-peers

Results go to ``--out`` (default runs/perf): oracle_throughput.json (a "benchmark" results file)
and its Markdown report, as ``gtl report`` writes it.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # before numpy/torch load
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gtl_verify.provenance import provenance, write_results  # noqa: E402
from markov.chain import MarkovChain  # noqa: E402
from markov.oracle import ChainOracle, PairOracle  # noqa: E402
from markov.presets import dirichlet_matrix  # noqa: E402
from reports.builder import build_reports  # noqa: E402

SWEEP_BATCH = (64, 256, 1024)
SWEEP_LENGTH = (64, 256, 1024)
SWEEP_VOCAB = (5, 32, 128)
SWEEP_MAX_ELEMENTS = 2**25  # B * L * K above this (256 MiB per float64 buffer) is left out of the sweep
GOAL_RATIO = 3.0  # each ChainOracle / PairOracle entry within 3x of the bare matmul chain
BARE = "bare matmul chain (2L x [B,K]x[K,K])"


@dataclass
class Problem:
    """A source chain, a target chain and half-masked draws z [B, L] of the source (mask id K)."""

    source: MarkovChain
    target: MarkovChain
    z: torch.Tensor


@dataclass
class Entry:
    """One timed callable; ``peer`` entries run only in the first rounds."""

    name: str
    run: Callable[[], object]
    peer: bool = False
    goal: bool = False


def make_problem(batch: int, length: int, vocab: int, device: torch.device, seed: int = 0) -> Problem:
    g = torch.Generator().manual_seed(seed)
    uniform = torch.full((vocab,), 1.0 / vocab, dtype=torch.float64)
    source = MarkovChain(uniform, dirichlet_matrix(vocab, 1.0, g))
    target = MarkovChain(uniform, dirichlet_matrix(vocab, 1.0, g))
    x = source.sample(batch, length, g)
    mask = torch.rand(batch, length, generator=g) < 0.5
    return Problem(source, target, torch.where(mask, vocab, x).to(device))


def bare_chain(problem: Problem) -> Callable[[], None]:
    """2 L products [B, K] x [K, K] into preallocated buffers (no allocation, no element-wise work)."""
    batch, length = problem.z.shape
    s = problem.source.transition.to(problem.z.device)
    bufs = [torch.rand(batch, s.shape[0], dtype=torch.float64, device=s.device) for _ in range(2)]

    def run() -> None:
        a, b = bufs
        for _ in range(2 * length):
            torch.mm(a, s, out=b)
            a, b = b, a
    return run


def our_entries(problem: Problem) -> list[Entry]:
    z = problem.z
    chain, pair = ChainOracle(problem.source), PairOracle(problem.source, problem.target)
    log_tables = ChainOracle(problem.source, log_space=True)
    z_far = z.clone()
    z_far[0] = problem.source.vocab_size  # anchors L + 1 apart: the largest power table a batch can need
    return [
        Entry(BARE, bare_chain(problem)),
        Entry("ChainOracle log marginals oracle(z)", lambda: chain(z), goal=True),
        Entry("ChainOracle marginals(z)", lambda: chain.marginals(z), goal=True),
        Entry("ChainOracle log_obs(z)", lambda: chain.log_obs(z), goal=True),
        Entry("PairOracle log r(z)", lambda: pair(z), goal=True),
        Entry("PairOracle single_site(z)", lambda: pair.single_site(z), goal=True),
        Entry("ChainOracle log marginals, log-space power tables", lambda: log_tables(z)),
        Entry("ChainOracle log marginals, fresh oracle (tables built in the call)",
              lambda: ChainOracle(problem.source)(z)),
        Entry("ChainOracle log marginals, fresh oracle, first row fully masked (tables to d = L + 1)",
              lambda: ChainOracle(problem.source)(z_far)),
        Entry("ChainOracle.forward_backward(z) (scaled recursion, all messages)",
              lambda: chain.forward_backward(z).marginals()),
    ]


def _emission_table(vocab: int) -> torch.Tensor:
    """[K, K+1]: state s emits token s or the mask symbol K, each with probability 1/2."""
    eye = torch.eye(vocab, dtype=torch.float64) * 0.5
    return torch.cat([eye, torch.full((vocab, 1), 0.5, dtype=torch.float64)], 1)


def hmmlearn_peer(problem: Problem, implementation: str) -> tuple[Callable, Callable]:
    """(timed predict_proba, agreement) for hmmlearn's CategoricalHMM."""
    from hmmlearn.hmm import CategoricalHMM

    batch, length = problem.z.shape
    k = problem.source.vocab_size
    model = CategoricalHMM(n_components=k, n_features=k + 1, implementation=implementation)
    model.startprob_ = problem.source.initial.numpy()
    model.transmat_ = problem.source.transition.numpy()
    model.emissionprob_ = _emission_table(k).numpy()
    obs = problem.z.cpu().reshape(-1, 1).numpy()
    lengths = [length] * batch

    def run():
        return model.predict_proba(obs, lengths=lengths)

    def agreement(ours: torch.Tensor, log_obs: torch.Tensor) -> tuple[float, float]:
        post = torch.from_numpy(run()).reshape(batch, length, k)
        # per sequence: log P_obs - L log 2 (each position also emits "observed or masked" w.p. 1/2)
        theirs = torch.tensor([model.score(obs[b * length:(b + 1) * length]) for b in range(batch)],
                              dtype=torch.float64)
        return float((post - ours).abs().max()), float((theirs - log_obs + length * math.log(2)).abs().max())
    return run, agreement


def pomegranate_peer(problem: Problem) -> tuple[Callable, Callable]:
    """(timed predict_proba, agreement) for pomegranate's DenseHMM in float64 (every state may end a sequence)."""
    from pomegranate.distributions import Categorical
    from pomegranate.hmm import DenseHMM

    k = problem.source.vocab_size
    table = _emission_table(k)
    model = DenseHMM([Categorical(table[s][None].clone()) for s in range(k)], edges=problem.source.transition.clone(),
                     starts=problem.source.initial.clone(), ends=torch.ones(k, dtype=torch.float64)).double()
    x = problem.z.cpu()[..., None]

    def run():
        return model.predict_proba(x)

    def agreement(ours: torch.Tensor, log_obs: torch.Tensor) -> tuple[float, float]:
        theirs = model.log_probability(x) + x.shape[1] * math.log(2)
        return float((run() - ours).abs().max()), float((theirs - log_obs).abs().max())
    return run, agreement


PEERS = {
    "hmmlearn CategoricalHMM.predict_proba (log)": ("hmmlearn", lambda p: hmmlearn_peer(p, "log")),
    "hmmlearn CategoricalHMM.predict_proba (scaling)": ("hmmlearn", lambda p: hmmlearn_peer(p, "scaling")),
    "pomegranate DenseHMM.predict_proba (float64)": ("pomegranate", pomegranate_peer),
}


def peer_entries(problem: Problem) -> tuple[list[Entry], list[dict], list[str]]:
    """Timed peer entries, their agreement rows and notes for the peers that are skipped."""
    entries, agreement, notes = [], [], []
    if problem.z.device.type != "cpu":
        return entries, agreement, ["peers run on the CPU only; skipped for this device"]
    chain = ChainOracle(problem.source)
    ours, log_obs = chain.marginals(problem.z), chain.log_obs(problem.z)
    for name, (module, build) in PEERS.items():
        if importlib.util.find_spec(module) is None:
            notes.append(f"{name}: {module} is not installed (pip install -e .[bench]); skipped")
            print(f"note: {notes[-1]}")
            continue
        run, agree = build(problem)
        marg_err, obs_err = agree(ours, log_obs)
        agreement.append({"peer": name, "max_abs_marginal_diff": marg_err, "max_abs_log_obs_diff": obs_err})
        print(f"{name}: max |marginal diff| {marg_err:.2e}, max |log P_obs diff| {obs_err:.2e}")
        entries.append(Entry(name, run, peer=True))
    return entries, agreement, notes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(entries: list[Entry], device: torch.device, warmup: int, repeats: int,
                peer_repeats: int, threads: int) -> dict[str, list[float]]:
    """Seconds per round for each entry; each round times every entry once, in order.

    torch's thread count is set again before each entry: importing pomegranate raises it.
    """
    torch.set_num_threads(threads)
    for entry in entries:
        if not entry.peer:
            for _ in range(warmup):
                entry.run()
    times: dict[str, list[float]] = {e.name: [] for e in entries}
    for round_ in range(repeats):
        for entry in entries:
            if entry.peer and round_ >= peer_repeats:
                continue
            torch.set_num_threads(threads)
            _sync(device)
            start = time.perf_counter()
            entry.run()
            _sync(device)
            times[entry.name].append(time.perf_counter() - start)
    return times


def summarise(entries: list[Entry], times: dict[str, list[float]], shape: tuple[int, int, int],
              device: torch.device) -> list[dict]:
    """One row per entry: median seconds and the median same-round ratio to the bare chain."""
    bare = times[BARE]
    rows = []
    for entry in entries:
        own = times[entry.name]
        ratio = statistics.median(t / b for t, b in zip(own, bare))
        b, length, k = shape
        rows.append({"device": str(device), "B": b, "L": length, "K": k, "what": entry.name,
                     "median_s": statistics.median(own), "rounds": len(own), "ratio_to_bare": ratio,
                     "goal_ratio": GOAL_RATIO if entry.goal else None,
                     "meets_goal": (ratio <= GOAL_RATIO) if entry.goal else None})
    return rows


def measure(shape: tuple[int, int, int], device: torch.device, args: argparse.Namespace,
            peers: bool) -> tuple[list[dict], list[dict], list[str]]:
    problem = make_problem(*shape, device)
    entries = our_entries(problem)
    agreement, notes = [], []
    if peers:
        extra, agreement, notes = peer_entries(problem)
        entries += extra
    times = interleaved(entries, device, args.warmup, args.repeats, args.peer_repeats, args.threads)
    rows = summarise(entries, times, shape, device)
    for row in rows:
        print(f"{row['B']:>5} {row['L']:>5} {row['K']:>4}  {row['median_s']:>9.4f} s  {row['ratio_to_bare']:>7.2f}x  "
              f"{row['what']}")
    return rows, agreement, notes


def sweep_figure(rows: list[dict]) -> list[dict]:
    """Seconds for the log marginals against L, one line per (B, K)."""
    name = "ChainOracle log marginals oracle(z)"
    points = [{**r, "series": f"B={r['B']}, K={r['K']}"} for r in rows if r["what"] == name]
    return [{"title": "Oracle log marginals: seconds for a batch", "x": "L", "y": "median_s", "series": "series",
             "xlabel": "sequence length L", "ylabel": "wall time (s, median)", "logx": True, "logy": True,
             "rows": points}]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=32)
    parser.add_argument("--sweep", action="store_true",
                        help="time a grid over batch, length and vocab (peers at the main shape only)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--peer-repeats", type=int, default=3, help="rounds that include the peers (default 3)")
    parser.add_argument("--no-peers", action="store_true", help="skip hmmlearn and pomegranate")
    parser.add_argument("--out", default="runs/perf", help="folder for the results JSON and report (default runs/perf)")
    args = parser.parse_args(argv)
    for name in ("batch", "length", "vocab", "repeats", "threads", "peer_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    main_shape = (args.batch, args.length, args.vocab)
    grid = [main_shape]
    if args.sweep:
        grid += [(b, n, k) for b in SWEEP_BATCH for n in SWEEP_LENGTH for k in SWEEP_VOCAB
                 if b * n * k <= SWEEP_MAX_ELEMENTS and (b, n, k) != main_shape]
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}; "
          f"{args.repeats} interleaved rounds after {args.warmup} warm-up; ratio = median of same-round t / t_bare")
    start, load_before = time.perf_counter(), os.getloadavg()
    rows, agreement, notes = [], [], []
    for shape in grid:
        r, a, n = measure(shape, device, args, peers=not args.no_peers and shape == main_shape)
        rows += r
        agreement += a
        notes += n
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    results = {"title": f"Exact oracle throughput against the bare matmul chain and peers ({device}, "
                        f"{torch.get_num_threads()} thread(s))",
               "tables": {"timings": rows, "peer agreement": agreement,
                          "machine": [{"load_1min_before": load_before[0], "load_1min_after": load_after[0],
                                       "load_5min_after": load_after[1], "cpu_count": os.cpu_count(),
                                       "notes": "; ".join(notes) or None}]},
               "columns": {"timings": ["device", "B", "L", "K", "what", "median_s", "ratio_to_bare", "goal_ratio",
                                       "meets_goal", "rounds"],
                           "peer agreement": ["peer", "max_abs_marginal_diff", "max_abs_log_obs_diff"]},
               "figures": sweep_figure(rows) if args.sweep else [],
               "load_average": {"before": list(load_before), "after": list(load_after)}}
    config = {k: v for k, v in vars(args).items() if k != "out"} | {"threads_used": torch.get_num_threads()}
    path = write_results(Path(args.out) / "oracle_throughput.json", "benchmark", results,
                         provenance(config, [0], time.perf_counter() - start))
    print(f"results: {path}")
    for report in build_reports([str(path)], args.out):
        print(f"report: {report}")


if __name__ == "__main__":
    main()
