"""The command line: one parser for every command, and ``main()``, the one place where
outcomes become exit statuses and one-line messages.

Imports stay lazy: `vethpeer --version` must not pay for netlink, rich or any runtime
client. Data flows one way: parse -> command -> gather() -> render.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__, commands
from .commands.options import split_argv
from .commands.parser import build_parser
from .environment import Environment
from .errors import ExitStatus, VethpeerError


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Arguments as the commands see them; a usage error raises before anything else is checked."""
    argv, tcpdump_args = split_argv(argv)
    args = _parse_one_command(argv) or build_parser().parse_args(argv)
    if args.command is None:  # bare `vethpeer` = `vethpeer table`
        args = build_parser().parse_args([*argv, commands.DEFAULT])
    if tcpdump_args:
        args.tcpdump_args = tcpdump_args
    return args


def _parse_one_command(argv: Sequence[str]) -> argparse.Namespace | None:
    """The arguments parsed by a parser of the one command they name: the other ten commands'
    modules and options are not built (a few ms a run). None when no word names a command, on
    --help (which lists every command) or on any usage error: then the whole parser decides,
    and says what is wrong as it always has."""
    guess = next((word for word in argv if word in commands.NAMES), None)
    if guess is None or "-h" in argv or "--help" in argv:
        return None
    try:
        return build_parser(only=guess).parse_args(argv)
    except VethpeerError:  # the word was an option's value (`-n table which x`), or a typo
        return None


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    return commands.load(args.command).run(args, env)


class Outcome:
    """What the outcome handling needs to know from the run: whether --debug was given.
    (A plain class: ``dataclasses`` would cost `vethpeer --version` its import.)"""

    __slots__ = ("debug",)

    def __init__(self) -> None:
        self.debug = False


def finish(prog: str, env: Environment, action: Callable[[Outcome], int]) -> int:
    """Run ``action`` and turn every way it can end into an exit status and at most one line on
    stderr (``prog: message``); with ``--debug`` (set on the Outcome) errors raise instead.
    Shared by ``vethpeer`` and ``kubectl-vethpeer``."""
    outcome = Outcome()
    try:
        status = action(outcome)
        env.stdout.flush()  # a reader that has gone (`| head -0`) is found here, not at exit
        return status
    except VethpeerError as error:
        if outcome.debug:
            raise
        hint = f" ({error.hint})" if error.hint else ""
        env.warn(f"{prog}: {error}{hint}")
        return int(error.status)
    except KeyboardInterrupt:
        env.warn(f"{prog}: interrupted")
        return int(ExitStatus.INTERRUPTED)
    except BrokenPipeError:  # `vethpeer table | head`
        try:  # what is still buffered goes nowhere, instead of "Exception ignored" at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, env.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return int(ExitStatus.SUCCESS)
    except Exception as error:
        if outcome.debug:
            raise
        name = type(error).__name__
        env.warn(f"{prog}: internal error: {name}: {error} (run again with --debug for the traceback)")
        return int(ExitStatus.ERROR)


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """Parse, run one command, and turn every outcome into an exit status."""
    if env is None:
        env = Environment()
        for stream in (env.stdout, env.stderr):  # a terminal that is not UTF-8: "\\u65e5", not a crash
            if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
                stream.reconfigure(errors="backslashreplace")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv == ["--version"]:  # what argparse would print, without building every command's parser
        env.stdout.write(f"vethpeer {__version__}\n")
        return int(ExitStatus.SUCCESS)
    gc_was_on = gc.isenabled()

    def action(outcome: Outcome) -> int:
        args = parse(argv)
        outcome.debug = args.debug
        if not commands.load(args.command).LONG_RUNNING:
            # A short run building thousands of acyclic values: the cyclic collector would
            # only re-scan them (about 5% of a large table's time). Restored on the way out.
            gc.disable()
        return int(run(args, env))

    try:
        return finish("vethpeer", env, action)
    finally:
        if gc_was_on:
            gc.enable()
