"""``gtl report``: Markdown reports with PNG figures and tables from results JSON files.

A run folder holds internal JSON files (cell caches, model metadata) next to its results files;
they are skipped with one summary line on stderr, not one line each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="results JSON files, or folders searched recursively for them")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder for the Markdown reports; figures go to DIR/figures (default: the first "
                             "RESULTS folder, or the folder of the first RESULTS file)")


def default_out(results: list[str]) -> Path:
    """Where reports go without --out: beside the results they are made from."""
    first = Path(results[0])
    return first if first.is_dir() else first.parent


def run_from_args(args: argparse.Namespace) -> int:
    from .builder import build_reports, find_results

    skipped: list[str] = []
    files = find_results(args.results, log=skipped.append)
    if skipped:
        print(f"skipped {len(skipped)} internal JSON file(s) (not results files: no 'kind')", file=sys.stderr)
    for path in build_reports(files, args.out if args.out is not None else default_out(args.results)):
        print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="Markdown reports and figures from results JSON",
                            description="Markdown reports with PNG figures and tables from results JSON files.")
    add_arguments(parser)
    parser.set_defaults(func=run_from_args)
