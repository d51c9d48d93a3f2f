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
from collections.abc import Sequence

from . import __version__, commands
from .commands.options import split_argv
from .commands.parser import build_parser
from .environment import Environment
from .errors import ExitStatus, VethpeerError


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Arguments as the commands see them; a usage error raises before anything else is checked."""
    argv, tcpdump_args = split_argv(argv)
    args = build_parser().parse_args(argv)
    if args.command is None:  # bare `vethpeer` = `vethpeer table`
        args = build_parser().parse_args([*argv, commands.DEFAULT])
    if tcpdump_args:
        args.tcpdump_args = tcpdump_args
    return args


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    return commands.load(args.command).run(args, env)


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
    debug = False
    gc_was_on = gc.isenabled()
    try:
        args = parse(argv)
        debug = args.debug
        if not commands.load(args.command).LONG_RUNNING:
            # A short run building thousands of acyclic values: the cyclic collector would
            # only re-scan them (about 5% of a large table's time). Restored on the way out.
            gc.disable()
        return int(run(args, env))
    except VethpeerError as error:
        if debug:
            raise
        hint = f" ({error.hint})" if error.hint else ""
        env.warn(f"vethpeer: {error}{hint}")
        return int(error.status)
    except KeyboardInterrupt:
        env.warn("vethpeer: interrupted")
        return int(ExitStatus.INTERRUPTED)
    except BrokenPipeError:  # `vethpeer table | head`
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, env.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return int(ExitStatus.SUCCESS)
    except Exception as error:
        if debug:
            raise
        name = type(error).__name__
        env.warn(f"vethpeer: internal error: {name}: {error} (run again with --debug for the traceback)")
        return int(ExitStatus.ERROR)
    finally:
        if gc_was_on:
            gc.enable()
