"""`vethpeer which TARGET`: one answer, fast; `-q` prints only the host-side veth names."""

from __future__ import annotations

import argparse

from ..environment import Environment
from ..errors import ExitStatus, NotFound
from . import options

NAME = "which"
HELP = "one target: container, pod, PID, netns, veth, MAC or IP"
DESCRIPTION = (
    "Resolve TARGET — a container or pod name or ID prefix, NS/NAME, a PID, a netns name or path, "
    "a host veth (its name, or ifN: its ifindex), a MAC or an IP — and show its interfaces, their "
    "peers and bridges. A target no longer on the host but in the journal (see `serve`) is shown "
    "as it was last bound, marked as past (exit 9); --at T answers for a moment in the past from "
    "the journal."
)
LONG_RUNNING = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only host-side veth names")
    parser.add_argument(
        "--at",
        type=options.moment,
        metavar="T",
        help="the binding at time T, from the journal (RFC 3339, -2h / 90m ago, or Unix time)",
    )
    options.add_journal(parser)
    options.add_output(parser)


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    if args.at is not None:
        return at(args, env)
    return live(args, env, args.quiet, past=True)


def live(args: argparse.Namespace, env: Environment, quiet: bool, *, past: bool = False) -> ExitStatus:
    """The answer from the host as it is now; with ``past``, a target not found is looked up in
    the journal (:func:`gone`)."""
    from ..collect import gather
    from ..render import OutputFormat
    from ..render import json as jsonrender
    from ..render import tables as tablerender
    from ..render.safe import shown
    from ..targets import host_sides, joined_container, resolve

    output = OutputFormat(args.output)
    request = options.request(args, fdb=not quiet, target=args.target)
    report = gather(request, env)
    try:
        match = resolve(report, args.target, namespace=args.namespace, proc=env.proc)
    except NotFound as error:
        if not past:
            raise
        return gone(args, env, error)
    out = env.stdout
    if quiet:
        names = [link.name for link, _row in host_sides(match.rows, report.snapshot.host)]
        if not names:  # an empty answer would make `tcpdump -i "$(vethpeer which -q X)"` misbehave
            why = "it shares the host network namespace" if match.host_network else "no peer is in the host"
            raise NotFound(f"{args.target} has no host-side veth ({why})")
        for name in names:
            out.write(shown(name) + "\n")
    elif output is OutputFormat.JSON:
        jsonrender.write(jsonrender.report_json(report, match.rows, namespace=args.namespace), env)
    else:
        owner = match.rows[0].end.workload if match.rows else None
        joined = joined_container(owner, args.target) if owner is not None else None
        if owner is not None and joined is not None:  # why `which join` shows docker/web
            out.write(shown(f"{joined} shares {owner.label}'s network namespace") + "\n")
        if match.rows:  # host-network workloads other than the target's are not the question here
            tablerender.write_table(
                report, env, match.rows, wide=output is OutputFormat.WIDE, host_network=()
            )
            for line in tablerender.evidence(report, match.rows):  # the bridge's MAC table, a second witness
                out.write(shown(line) + "\n")
        for w in match.host_network:
            if w.kind.value == "host":
                out.write(
                    shown(f"{args.target} is in the host network namespace: it has no veth of its own") + "\n"
                )
            else:
                out.write(
                    shown(f"{w.label} shares the host network namespace: it has no veth of its own") + "\n"
                )
        if not match.rows and not match.host_network:
            out.write(shown(f"{args.target}: its network namespace has no interfaces") + "\n")
    return ExitStatus.SUCCESS


def gone(args: argparse.Namespace, env: Environment, error: NotFound) -> ExitStatus:
    """A target not on the host now: its last binding from the journal, marked as past (exit 9)."""
    from ..journal.query import last_binding
    from ..journal.store import JournalError, Store
    from ..render import history
    from ..render.safe import shown

    path = options.journal_path(args, env.environ)
    try:
        store = Store.open_reader(path)
    except JournalError as why:
        raise NotFound(str(error), hint=f"history not available: {why}") from None
    try:
        records = last_binding(store, args.target, args.namespace)
    except NotFound:
        raise NotFound(str(error), hint=f"not in the journal {path} either") from None
    finally:
        store.close()
    if args.quiet:
        return ExitStatus.GONE
    if args.output == "json":
        history.write(
            history.document("which-past", args.target, records, path, present=False), records, env, True
        )
    else:
        past = "is bound to no workload on this host now; its last binding, from the journal (past):"
        env.stdout.write(f"{shown(args.target)} {past}\n")
        history.write_table(records, env)
    return ExitStatus.GONE


def at(args: argparse.Namespace, env: Environment) -> ExitStatus:
    """``which TARGET --at T``: from the journal; the live host when there is no journal."""
    from ..journal.query import at as at_moment
    from ..journal.store import JournalError, Store
    from ..journal.times import rfc3339
    from ..render import history

    path = options.journal_path(args, env.environ)
    try:
        store = Store.open_reader(path)
    except JournalError as why:
        env.warn(f"vethpeer: history not available ({why}); answering from the host as it is now")
        return live(args, env, args.quiet)
    try:
        records = at_moment(store, args.target, args.at, namespace=args.namespace)
    finally:
        store.close()
    when = rfc3339(args.at)
    if not records:
        raise NotFound(f"{args.target!r} had no binding at {when} in the journal {path}")
    if args.quiet:
        for name in dict.fromkeys(r.binding.host_name for r in records if r.binding.host_name):
            env.stdout.write(name + "\n")
        return ExitStatus.SUCCESS
    document = history.document("which-at", args.target, records, path, at=when)
    history.write(document, records, env, args.output == "json")
    return ExitStatus.SUCCESS
