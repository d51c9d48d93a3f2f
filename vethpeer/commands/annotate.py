"""`vethpeer annotate [FILE...]`: a filter for logs that names the workload behind each veth, MAC and IP."""

from __future__ import annotations

import argparse

from ..environment import Environment
from ..errors import ExitStatus
from . import options

NAME = "annotate"
HELP = "insert the workload after each veth, MAC and IP in log lines (dmesg, journalctl, syslog)"
DESCRIPTION = (
    "Read log lines (FILEs, or stdin) and after each interface name, MAC or IP address the journal "
    "can attribute, insert its workload: `port 1(veth82eaaa7 [docker/web eth0]) entered disabled "
    "state`. Uses each line's own time (dmesg, dmesg -T, journalctl short/short-iso/short-precise, "
    "RFC 3339, syslog), else now. Other lines pass through byte for byte. Streams: "
    "`dmesg -w | vethpeer annotate`. See history.md."
)
LONG_RUNNING = True  # it may follow a stream for days


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..journal import DEFAULT_TOLERANCE  # not .query: every command builds this parser

    parser.add_argument(
        "files", nargs="*", metavar="FILE", help="log files to read (default stdin; - is stdin)"
    )
    parser.add_argument(
        "--tolerance",
        type=options.non_negative_seconds,
        default=DEFAULT_TOLERANCE,
        metavar="S",
        help=f"match a binding up to S seconds before it was first seen or after it was gone "
        f"(default {DEFAULT_TOLERANCE:g})",
    )
    options.add_journal(parser)


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    import sys

    from ..errors import NotFound
    from ..journal.store import JournalError, Store
    from ..journal.stream import Annotator, output_of

    path = options.journal_path(args, env.environ)
    try:
        store: Store | None = Store.open_reader(path)
    except JournalError as why:
        env.warn(f"vethpeer: history not available ({why}); lines pass through as they are")
        store = None
    files = args.files or ["-"]
    for name in files:  # a missing file is an error before any output
        if name != "-":
            try:
                open(name, "rb").close()
            except OSError as error:
                raise NotFound(f"cannot read {name}: {error.strerror}") from None
    annotator = Annotator(store, args.tolerance)
    out = output_of(env.stdout)
    try:
        for name in files:
            if name == "-":
                annotator.stream(sys.stdin.buffer, out)
            else:
                with open(name, "rb") as source:
                    annotator.stream(source, out)
    finally:
        if store is not None:
            store.close()
    return ExitStatus.SUCCESS
