"""``gtl language``: arXiv CS -> Physics transfer pipeline."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("language", help="arXiv CS -> Physics transfer pipeline")
    parser.set_defaults(func=lambda args: parser.error("the language pipeline is not available in this build"))
