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

    output = OutputFormat(args.output)
    report = gather(options.request(args, fdb=output is not OutputFormat.TABLE), env)
    if args.namespace is not None:  # only then: what each run imports is part of its time
        from ..targets import scoped

        report = scoped(report, args.namespace)
    if output is OutputFormat.JSON:
        from ..render import json as jsonrender

        jsonrender.write(jsonrender.report_json(report), env)
    else:
        from ..render import tables as tablerender

        tablerender.write_table(report, env, wide=output is OutputFormat.WIDE)
    return ExitStatus.SUCCESS
