"""The ``gtl`` command: one sub-command per part of the suite.

    gtl theory     exact checks of every identity (gtl_verify.checks)
    gtl markov     synthetic Markov-chain benchmark and the guidance validator (markov)
    gtl language   arXiv CS -> Physics transfer (language)
    gtl report     Markdown reports and figures from results JSON (reports)

Bad input ends with a one-line message and exit status 2 (``--traceback`` shows the trace).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = ("gtl_verify.checks.cli", "markov.cli", "language.cli", "reports.cli")


class UsageError(ValueError):
    """An error in what the user asked for; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gtl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, OSError) as exc:
        if args.traceback:
            raise
        print(f"gtl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
