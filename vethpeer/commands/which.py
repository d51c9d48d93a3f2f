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
    "a host veth, a MAC or an IP — and show its interfaces, their peers and bridges."
)
LONG_RUNNING = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only host-side veth names")
    options.add_output(parser)


def maybe_host_ifname(target: str) -> str | None:
    """A target that could be a host interface name (and nothing `which` tries earlier)."""
    if len(target) > 15 or target.isdigit() or any(c in target for c in "/:. "):
        return None
    return target


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..collect import gather
    from ..render import OutputFormat
    from ..render import json as jsonrender
    from ..render import tables as tablerender
    from ..render.safe import shown
    from ..targets import host_sides, resolve

    output = OutputFormat(args.output)
    request = options.request(args, fdb=not args.quiet, host_ifname=maybe_host_ifname(args.target))
    report = gather(request, env)
    match = resolve(report, args.target, namespace=args.namespace, proc=env.proc)
    out = env.stdout
    if args.quiet:
        names = [link.name for link, _row in host_sides(match.rows, report.snapshot.host)]
        if not names:  # an empty answer would make `tcpdump -i "$(vethpeer which -q X)"` misbehave
            why = "it shares the host network namespace" if match.host_network else "no peer is in the host"
            raise NotFound(f"{args.target} has no host-side veth ({why})")
        for name in names:
            out.write(shown(name) + "\n")
    elif output is OutputFormat.JSON:
        jsonrender.write(jsonrender.report_json(report, match.rows, namespace=args.namespace), env)
    else:
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
