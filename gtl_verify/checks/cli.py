"""``gtl theory``: every identity checked on a seeded batch of random problems."""

from __future__ import annotations

import argparse
import time

from ..provenance import provenance, write_results
from ..validation import check_int_range, check_output_file
from .suite import CHECKS, run_checks


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("theory", help="exact checks of Theorem 1 and the identities (THEORY.md 1-5)",
                            description="Exact checks of every identity, worst residual over random problems.")
    parser.add_argument("--cases", type=int, default=20, help="random problems per check (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random problems (default 0)")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[c.name for c in CHECKS], help="run only these checks")
    parser.add_argument("--json", metavar="PATH", help="also write the table as a results JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_from_args)


def format_table(results) -> str:
    lines = [f"{'check':28s} {'expect':6s} {'worst residual':>15s} {'tolerance':>10s} {'cases':>5s}  status"]
    for r in results:
        status = "ok" if r.passed else "FAILED"
        extra = "  " + ", ".join(f"{k}={v:.3g}" for k, v in r.details.items()) if r.details else ""
        lines.append(f"{r.name:28s} {r.expect:6s} {r.residual:15.3e} {r.tolerance:10.1e} {r.cases:5d}  {status}{extra}")
    return "\n".join(lines)


def run_from_args(args: argparse.Namespace) -> int:
    check_int_range("--cases", args.cases, 1)
    check_int_range("--seed", args.seed, 0)
    if args.json:
        check_output_file("--json", args.json)
    start = time.perf_counter()
    results = run_checks(args.cases, args.seed, args.only, progress=not args.quiet)
    print(format_table(results))
    failed = [r.name for r in results if not r.passed]
    print(f"\n{len(results) - len(failed)}/{len(results)} checks passed" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if args.json:
        meta = provenance({"cases": args.cases, "only": args.only}, [args.seed], time.perf_counter() - start)
        path = write_results(args.json, "theory", {"checks": [r.to_dict() for r in results]}, meta)
        print(f"results written to {path}")
    return 1 if failed else 0
