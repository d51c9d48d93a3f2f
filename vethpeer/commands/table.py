"""`vethpeer table`: every workload interface and its peer."""

from __future__ import annotations

import argparse

from ..environment import Environment
from ..errors import ExitStatus
from . import options

NAME = "table"
HELP = "every workload interface and its peer (the default)"
DESCRIPTION = (
    "One row per interface inside each workload's network namespace, joined with its peer "
    "(the other end of the veth, or a macvlan's parent) and the bridge that peer is on."
)
LONG_RUNNING = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_output(parser)


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..collect import gather
    from ..render import OutputFormat
    from ..render import json as jsonrender
    from ..render import tables as tablerender

    output = OutputFormat(args.output)
    report = gather(options.request(args, fdb=output is not OutputFormat.TABLE), env)
    rows, shared = report.rows, report.host_network
    if args.namespace:
        rows = tuple(r for r in rows if r.end.workload.namespace == args.namespace)
        shared = tuple(w for w in shared if w.namespace == args.namespace)
    if output is OutputFormat.JSON:
        jsonrender.write(jsonrender.report_json(report, rows, namespace=args.namespace), env)
    else:
        tablerender.write_table(report, env, rows, wide=output is OutputFormat.WIDE, host_network=shared)
    return ExitStatus.SUCCESS
