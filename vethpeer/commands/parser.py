"""The one parser for every command, built from the command modules (`vethpeer --help`, the man
page, and the shell completions all come from it)."""

from __future__ import annotations

import argparse

from .. import __version__
from ..errors import UsageError
from . import NAMES, load, options

EPILOG = """\
exit status: 0 ok, 1 error, 2 usage, 3 target not found, 4 ambiguous target,
5 insufficient privilege, 6 doctor findings, 7 a source failed (--strict),
8 a program an output needs is missing (Graphviz), 9 which: the target is gone
(its last binding, from the journal, is shown), 130 interrupted
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a UsageError like every other failure."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"see: {self.prog} --help")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``only``: with that command's subparser alone (its options parse the same)."""
    parser = _Parser(
        prog="vethpeer",
        description="Which host veth belongs to which container, pod or namespace.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vethpeer {__version__}")
    options.add_common(parser, defaults=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in NAMES if only is None else (only,):
        command = load(name)
        sub = subparsers.add_parser(name, help=command.HELP, description=command.DESCRIPTION, epilog=EPILOG)
        options.add_common(sub, defaults=False)
        command.add_arguments(sub)
    return parser
