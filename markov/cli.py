"""``gtl markov``: the synthetic benchmark (default) and ``gtl markov validate`` for guidance rules."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from . import benchmark, validator

    parser = sub.add_parser("markov", help="Markov-chain transfer benchmark and guidance validator",
                            description=benchmark.__doc__.split("\n\n")[0])
    benchmark.add_arguments(parser)
    parser.set_defaults(func=benchmark.run_from_args)
    inner = parser.add_subparsers(dest="markov_command", metavar="SUBCOMMAND")
    val = inner.add_parser("validate", help="check a guidance rule against exact ground truth",
                           description=validator.__doc__.split("\n\n")[0])
    validator.add_arguments(val)
    val.set_defaults(func=validator.run_from_args)
