"""The on-call commands, `doctor` and `capture`: their arguments and how they run.

Kept apart from cli.py so the main parser only needs two lines for them; they use
cli's gathering (privilege check, sources, --strict) through the ``gather`` callable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ExitStatus

if TYPE_CHECKING:
    from .model import Report

Gather = Callable[..., "Report"]  # cli._gather(args, fdb=...)


def add_commands(
    commands: Any,
    common: Callable[[argparse.ArgumentParser, bool], None],
    output: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add `doctor` and `capture` to the subcommands (``commands`` is argparse's subparsers action)."""
    doctor = commands.add_parser(
        "doctor",
        help="check every veth pair (or TARGET's) and print findings with evidence and fixes",
        description=(
            "Check veth pairs, bridges, routes and MAC tables; print each finding with its severity, "
            "the evidence, the commands that confirm it and the command that would fix it "
            f"(never run). Exit {int(ExitStatus.FINDINGS)} when a finding is a warning or an error."
        ),
    )
    common(doctor, False)
    doctor.add_argument("target", metavar="TARGET", nargs="?", help="anything `which` accepts")
    output(doctor)

    capture = commands.add_parser(
        "capture",
        help="run tcpdump on TARGET's host-side veth: vethpeer capture TARGET [-- TCPDUMP ARGS]",
        description=(
            "Resolve TARGET like `which` and become `tcpdump -i <host veth> TCPDUMP ARGS`. "
            "Put tcpdump's arguments after `--`."
        ),
    )
    common(capture, False)
    capture.add_argument("target", metavar="TARGET")
    pick = capture.add_mutually_exclusive_group()
    pick.add_argument("-i", "--interface", metavar="IF", help="the host veth (or the workload's name for it)")
    pick.add_argument(
        "--all", dest="all_interfaces", action="store_true", help="capture on all of TARGET's host veths"
    )
    capture.set_defaults(tcpdump_args=[])


def split_tcpdump_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """`vethpeer capture T -- -n icmp`: everything after the first ``--`` is tcpdump's."""
    if "--" in argv:
        cut = argv.index("--")
        if "capture" in argv[:cut]:
            return argv[:cut], argv[cut + 1 :]
    return argv, []


def doctor(args: argparse.Namespace, out: TextIO, gather: Gather) -> ExitStatus:
    from . import doctor as doc
    from . import nsfacts
    from .which import resolve

    report = gather(args, fdb=True)
    rows = report.rows
    if args.target:
        rows = resolve(report, args.target, namespace=args.namespace).rows
    elif args.namespace:
        rows = tuple(r for r in rows if r.end.workload.namespace == args.namespace)
    routes, conf = doc.wanted_facts(rows, report.snapshot.host)
    namespaces = [view.ns for view in report.snapshot.views if not view.error]
    facts = nsfacts.read(namespaces, routes=routes, conf=conf)
    orphans = doc.orphan_nsids(rows, report)
    holders = nsfacts.fd_holders(orphans, report.snapshot.host.dev) if orphans else {}
    diagnosis = doc.diagnose(report, rows, facts, holders)
    if args.output == "json":
        import json

        from .output import header

        data: dict[str, Any] = {
            **header(report),
            "checked": {"interfaces": diagnosis.interfaces, "namespaces": diagnosis.namespaces},
            "not_checked": list(diagnosis.skipped),
            "findings": [doc.finding_json(f) for f in diagnosis.findings],
            "summary": doc.summary(diagnosis),
        }
        out.write(json.dumps(data, indent=2))
        out.write("\n")
    else:
        doc.write_text(diagnosis, out)
    worst = diagnosis.worst
    return ExitStatus.FINDINGS if worst is not None and worst is not doc.Severity.INFO else ExitStatus.SUCCESS


def capture(args: argparse.Namespace, out: TextIO, gather: Gather) -> ExitStatus:
    from . import capture as cap
    from .which import resolve

    report = gather(args)
    match = resolve(report, args.target, namespace=args.namespace)
    chosen = cap.choose(match, report, interface=args.interface, everything=args.all_interfaces)
    argv = cap.command(chosen, args.tcpdump_args)
    out.flush()
    cap.execute(argv, chosen)
    sys.exit(int(ExitStatus.ERROR))  # not reached: execute() either execs or raises
