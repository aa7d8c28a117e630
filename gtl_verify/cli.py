"""The ``gtl`` command: one sub-command per part of the suite.

    gtl theory     exact checks of every identity (gtl_verify.checks)
    gtl markov     synthetic Markov-chain benchmark and the guidance validator (markov)
    gtl language   arXiv CS -> Physics transfer (language)
    gtl report     Markdown reports and figures from results JSON (reports)

Bad input ends with a one-line message and exit status 2 (``--traceback`` shows the trace); a
mistyped option is named, with the closest valid one suggested.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys
from importlib import metadata

COMMAND_MODULES = ("gtl_verify.checks.cli", "markov.cli", "language.cli", "reports.cli")


class UsageError(ValueError):
    """An error in what the user asked for; printed without a traceback."""


class GtlArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line; an unknown option is named (with the closest
    valid option of the sub-command it was given to) instead of argparse's later, misleading
    complaint (e.g. "invalid choice" for the option's value read as a sub-command).

    Sub-parsers made by ``add_subparsers`` are of this class too (argparse's default)."""

    def parse_known_args(self, args=None, namespace=None):
        self._seen_args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        found = unknown_option(self, getattr(self, "_seen_args", []))
        parser, message = found if found else (self, _suggest_choice(message))
        self.exit(2, f"{parser.prog}: error: {message} (see {parser.prog} --help)\n")


def _suggest_choice(message: str) -> str:
    """argparse's "invalid choice: 'x' (choose from 'a', 'b')" with the closest choice suggested."""
    match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not match:
        return message
    close = difflib.get_close_matches(match[1], re.findall(r"'([^']*)'", match[2]), n=1, cutoff=0.6)
    return f"{message}; did you mean {close[0]!r}?" if close else message


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _action(parser: argparse.ArgumentParser, option: str) -> argparse.Action | None:
    """The action ``option`` selects in ``parser`` (exact, or a prefix of a long option as argparse
    accepts; ``-qVALUE``), None when it names no option."""
    known = parser._option_string_actions
    if option in known:
        return known[option]
    if option.startswith("--"):
        matches = [a for s, a in known.items() if s.startswith(option)] if parser.allow_abbrev else []
        return matches[0] if matches else None
    return known.get(option[:2]) if len(option) > 2 else None


def _values_owed(action: argparse.Action) -> int:
    """How many following tokens ``action`` reads as its values (-1: every non-option token)."""
    if action.nargs is None or action.nargs == argparse.OPTIONAL:
        return 1
    if isinstance(action.nargs, int):
        return action.nargs
    return -1


def unknown_option(parser: argparse.ArgumentParser, args: list[str]) -> tuple[argparse.ArgumentParser, str] | None:
    """(sub-parser, message) for the first option in ``args`` that the sub-command it was given to
    does not define, with the closest defined option suggested (difflib); None when there is none.

    Tokens read as an option's values are never taken for a sub-command."""
    owed = 0
    for token in args:
        if token == "--":
            return None
        if not token.startswith("-") or token == "-" or _is_number(token):
            if owed:
                owed -= 1 if owed > 0 else 0
            else:
                parser = _subcommands(parser).get(token, parser)
            continue
        option, has_value = token.split("=", 1)[0], "=" in token
        action = _action(parser, option)
        if action is None:
            choices = sorted(s for s in parser._option_string_actions if s.startswith("--"))
            close = difflib.get_close_matches(option, choices, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"valid options: {', '.join(choices)}"
            return parser, f"unrecognised argument {option}; {hint}"
        owed = 0 if has_value or (not option.startswith("--") and len(option) > 2) else _values_owed(action)
    return None


def package_version() -> str:
    """The installed gtl-verify version (the source tree's when it is not installed)."""
    try:
        return metadata.version("gtl-verify")
    except metadata.PackageNotFoundError:
        from gtl_verify import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = GtlArgumentParser(prog="gtl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _is_allocation_failure(exc: BaseException) -> bool:
    """A MemoryError, torch's OutOfMemoryError, or the CPU allocator's "can't allocate memory"."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return "can't allocate memory" in text or "out of memory" in text.lower()


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
    except (MemoryError, RuntimeError) as exc:  # an allocation the memory checks did not foresee
        if args.traceback or not _is_allocation_failure(exc):
            raise
        print(f"gtl {args.command}: error: out of memory ({' '.join(str(exc).split())[:200]}); "
              "ask for fewer samples, a shorter length or a smaller batch", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
