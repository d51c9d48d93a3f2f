"""`vethpeer history TARGET`: every binding a target had over time, from the journal `serve` writes."""

from __future__ import annotations

import argparse

from ..environment import Environment
from ..errors import ExitStatus, NotFound, UsageError
from . import options

NAME = "history"
HELP = "every binding a target had over time (from the journal `serve` writes)"
DESCRIPTION = (
    "Every binding TARGET had — a veth name, MAC, IP, container or pod name or ID, NS/NAME — newest "
    "first: its workload, interface, host-side veth, bridge, addresses, first seen and gone. Read from "
    "the journal `vethpeer serve` keeps (read-only); without one, the host as it is now. See history.md."
)
LONG_RUNNING = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET")
    parser.add_argument("--since", type=options.moment, metavar="T", help="only bindings alive at or after T")
    parser.add_argument(
        "--until", type=options.moment, metavar="T", help="only bindings alive at or before T"
    )
    options.add_journal(parser)
    options.add_output(parser, ("table", "json"))


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..journal.query import history
    from ..journal.store import JournalError, Store
    from ..journal.times import rfc3339
    from ..render import history as render

    if args.since is not None and args.until is not None and args.since > args.until:
        raise UsageError("--since is after --until")
    path = options.journal_path(args, env.environ)
    try:
        store = Store.open_reader(path)
    except JournalError as why:
        from .which import live

        env.warn(f"vethpeer: history not available ({why}); showing the host as it is now")
        return live(args, env, quiet=False)
    try:
        records = history(store, args.target, args.since, args.until, args.namespace)
    finally:
        store.close()
    if not records:
        window = "" if args.since is None and args.until is None else " in that time"
        raise NotFound(f"nothing named {args.target!r} in the journal {path}{window}")
    window_json = {
        "since": None if args.since is None else rfc3339(args.since),
        "until": None if args.until is None else rfc3339(args.until),
    }
    document = render.document("history", args.target, records, path, **window_json)
    render.write(document, records, env, args.output == "json")
    return ExitStatus.SUCCESS
