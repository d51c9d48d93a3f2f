"""`vethpeer doctor [TARGET]`: findings with evidence and fix commands (never run)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from ..environment import Environment
from ..errors import ExitStatus
from . import options

if TYPE_CHECKING:
    from ..checks import Diagnosis, Facts
    from ..live.rates import Sample
    from ..model import Report, Row

NAME = "doctor"
HELP = "check every veth pair (or TARGET's) and print findings with evidence and fixes"
DESCRIPTION = (
    "Check veth pairs, bridges, routes and MAC tables; print each finding with its severity, "
    "the evidence, the commands that confirm it and the command that would fix it "
    f"(never run). Findings at warning level and above are shown; --all shows info ones too. "
    f"Exit {int(ExitStatus.FINDINGS)} when a finding is a warning or an error."
)
LONG_RUNNING = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", nargs="?", help="anything `which` accepts")
    parser.add_argument(
        "--all", dest="show_info", action="store_true", help="show info findings too (JSON always has all)"
    )
    parser.add_argument(
        "--sample",
        type=options.positive_seconds,
        metavar="SECONDS",
        help="also read every link's counters twice, SECONDS apart: drops and errors that rise",
    )
    options.add_output(parser, formats=("text", "json"))


def facts_for(
    report: Report, rows: tuple[Row, ...], proc: str = "/proc", samples: tuple[Sample, Sample] | None = None
) -> Facts:
    """Collect what the checks need beyond the report: routes, sysctls, fd holders of orphans."""
    from .. import doctor_reads
    from ..checks import Facts, link_index, orphan_rows
    from ..checks import wanted_facts as wanted

    host = report.snapshot.host
    routes, conf = wanted(rows, host)
    namespaces = [view.ns for view in report.snapshot.views if not view.error]
    inside = doctor_reads.read(namespaces, routes=routes, conf=conf, proc=proc)
    orphans = orphan_rows(rows, report)
    nsids = {row.end.link.link_netnsid for row in orphans if row.end.link.link_netnsid is not None}
    holders = doctor_reads.fd_holders(nsids, host.dev, proc) if nsids else {}
    return Facts(
        rows=rows,
        host=host,
        links=link_index(report),
        inside=inside,
        orphans=orphans,
        holders=holders,
        samples=samples,
    )


def diagnose(
    report: Report,
    target: str | None,
    namespace: str | None,
    proc: str = "/proc",
    samples: tuple[Sample, Sample] | None = None,
) -> Diagnosis:
    """The rows TARGET (or the namespace filter) selects, checked."""
    from ..checks import diagnose as run_checks
    from ..targets import resolve, scoped

    rows = report.rows
    if target:
        rows = resolve(report, target, namespace=namespace, proc=proc).rows
    elif namespace:
        rows = scoped(report, namespace).rows
    return run_checks(report, facts_for(report, rows, proc, samples))


def exit_status(diagnosis: Diagnosis) -> ExitStatus:
    from ..checks import Severity

    worst = diagnosis.worst
    return ExitStatus.FINDINGS if worst is not None and worst is not Severity.INFO else ExitStatus.SUCCESS


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..collect import gather
    from ..render import OutputFormat, findings
    from ..render import json as jsonrender

    request, samples = options.request(args, fdb=True), None
    if args.sample:  # two walks with counters, SECONDS apart: the rates of drops and errors
        from dataclasses import replace

        from ..live.rates import sample

        request = replace(request, stats=True)
        started = time.monotonic()
        first = sample(gather(request, env), started)
        time.sleep(max(0.0, started + args.sample - time.monotonic()))
    report = gather(request, env)
    if args.sample:
        samples = (first, sample(report, time.monotonic()))
    diagnosis = diagnose(report, args.target, args.namespace, env.proc, samples)
    if OutputFormat(args.output) is OutputFormat.JSON:
        jsonrender.write(findings.document(report, diagnosis), env)
    else:
        findings.write_text(diagnosis, env, show_info=args.show_info)
    return exit_status(diagnosis)
