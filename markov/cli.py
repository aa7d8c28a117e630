"""``gtl markov``: the synthetic benchmark (default), ``gtl markov validate`` for guidance rules and
``gtl markov ratios`` for the ratio estimators against the exact ratio."""

from __future__ import annotations

import argparse

from pathlib import Path

from gtl_verify.validation import check_device, check_int_range, check_output_dir, check_sample_memory


def run_benchmark_from_args(args: argparse.Namespace) -> int:
    """``gtl markov``: the command-line values checked under their option names, then the benchmark."""
    from . import benchmark

    for n in args.n_target or ():
        check_int_range("--n-target", n, 1)
    for seed in args.seeds or ():
        check_int_range("--seeds", seed, 0)
    if args.samples is not None:
        check_int_range("--samples", args.samples, 2)
        _check_samples_memory(args)
    check_distinct_pairs((args.preset or []) + (args.chains or []))
    device = check_device("--device", args.device)
    check_output_dir("--out", args.out or Path("runs"))
    return benchmark.run_from_args(args, device=device)


def check_distinct_pairs(names: list[str]) -> None:
    """Raise ValueError (one line) when two of the presets and chain files name the same pair: the same
    preset twice, or two chain files of one content (markov.presets.pair_identity), which would count
    that pair twice in every table."""
    from .presets import pair_identity

    seen: dict[str, str] = {}
    for name in names:
        identity = pair_identity(name)
        if identity in seen:
            same = "is given twice" if seen[identity] == name else f"has the same content as {seen[identity]}"
            raise ValueError(f"--preset/--chains: {name} {same}; give each pair once")
        seen[identity] = name


def _check_samples_memory(args: argparse.Namespace) -> None:
    """Bound ``--samples`` by a memory estimate (gtl_verify.validation.check_sample_memory) at the
    configured length and the largest vocabulary of the chosen chains, before any training."""
    from .config import load_config
    from .presets import resolve_pair

    length = load_config(args.config).length
    chains = (args.preset or []) + (args.chains or []) or ["paper"]
    vocab = max(resolve_pair(c, seed=0).vocab_size for c in chains)
    check_sample_memory("--samples", args.samples, length, vocab)


def register(sub: argparse._SubParsersAction) -> None:
    from . import benchmark, ratios, validator

    parser = sub.add_parser("markov", help="Markov-chain transfer benchmark and guidance validator",
                            description=benchmark.__doc__.split("\n\n")[0] + " Without a SUBCOMMAND it runs the "
                            "benchmark grid; a flag given beside --config overrides that key of the file, and the "
                            "defaults shown apply only where neither sets it.")
    benchmark.add_arguments(parser)
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda or cuda:N: where the samplers run (every method's sampling and the density of "
                             "its samples; the networks are trained on the CPU and copied there) (default cpu)")
    parser.set_defaults(func=run_benchmark_from_args)
    inner = parser.add_subparsers(dest="markov_command", metavar="SUBCOMMAND", title="subcommands (optional)")
    val = inner.add_parser("validate", help="check a guidance rule against exact ground truth",
                           description=validator.__doc__.split("\n\n")[0])
    validator.add_arguments(val)
    val.set_defaults(func=validator.run_from_args)
    rat = inner.add_parser("ratios", help="ratio estimators against the exact ratio (single-site TV, log-ratio RMSE, GTL KL)",
                           description=ratios.__doc__.split("\n\n")[0])
    ratios.add_arguments(rat)
    rat.set_defaults(func=ratios.run_from_args)
