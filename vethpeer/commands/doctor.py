"""`vethpeer doctor [TARGET]`: findings with evidence and fix commands (never run)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from ..environment import Environment
from ..errors import ExitStatus
from . import options

if TYPE_CHECKING:
    from ..checks import Diagnosis

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


def exit_status(diagnosis: Diagnosis) -> ExitStatus:
    from ..checks import Severity

    worst = diagnosis.worst
    return ExitStatus.FINDINGS if worst is not None and worst is not Severity.INFO else ExitStatus.SUCCESS


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..collect import gather
    from ..diagnosis import diagnose
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
