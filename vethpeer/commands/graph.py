"""`vethpeer graph [TARGET]`: the host's network topology as a picture (DOT, SVG, PNG, Mermaid, HTML)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..environment import Environment
from ..errors import ExitStatus
from . import options

if TYPE_CHECKING:
    from ..checks import Finding
    from ..drawing.elements import Graph
    from ..model import Report, Row

NAME = "graph"
HELP = "draw namespaces, veth pairs, bridges and NICs (DOT, SVG, PNG, Mermaid, HTML page, JSON)"
DESCRIPTION = (
    "Draw the host's network topology: namespaces as boxes labelled with their workload, the "
    "interfaces inside, veth pairs as edges, Linux and Open vSwitch bridges with their ports, "
    "macvlan/ipvlan parents, host NICs; down or carrier-less interfaces and doctor findings "
    "(warning and above) are marked. TARGET (anything `which` accepts) narrows the picture to "
    "that workload, its peers, their bridges and one hop beyond. -o dot needs nothing else; "
    "svg, png and html run Graphviz's dot (Debian package graphviz; "
    f"exit {int(ExitStatus.MISSING_PROGRAM)} without it)."
)
LONG_RUNNING = False
FORMATS = ("dot", "svg", "png", "mermaid", "html", "json")
# Above this many drawn workload namespaces: --collapse is on, and doctor checks only links.
AUTO_COLLAPSE_ABOVE = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", nargs="?", help="anything `which` accepts")
    options.add_output(parser, formats=FORMATS)
    parser.add_argument(
        "--bridge", metavar="NAME", help="only this bridge (Linux or OVS), its ports and their workloads"
    )
    parser.add_argument(
        "--collapse",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fold each bridge's ordinary workloads into one node with a count "
        f"(default: on above {AUTO_COLLAPSE_ABOVE} workload namespaces)",
    )
    parser.add_argument(
        "--doctor",
        choices=("auto", "full", "links", "off"),
        default="auto",
        help="mark doctor's findings: full (also reads routes and sysctls inside each drawn namespace), "
        "links (only what the walk read: link state, MTU, bridge ports, MAC tables), off; "
        f"auto (the default): full up to {AUTO_COLLAPSE_ABOVE} drawn workload namespaces, else links",
    )
    parser.add_argument(
        "--no-doctor", dest="doctor", action="store_const", const="off", help="same as --doctor off"
    )


def shown_rows(report: Report, graph: Graph) -> tuple[Row, ...]:
    from ..drawing.build import cluster_id

    shown = {c.id for c in graph.clusters}
    return tuple(row for row in report.rows if cluster_id(row.end.ns.key) in shown)


def shape(report: Report, args: argparse.Namespace, proc: str) -> tuple[Graph, tuple[Row, ...]]:
    """Build, narrow, mark doctor's findings, collapse: the pure middle of the command."""
    from ..drawing import build, shape
    from ..targets import resolve, scoped

    graph = build.build(report)
    protect: set[str] = set()
    if args.target:
        match = resolve(report, args.target, namespace=args.namespace, proc=proc)
        clusters = {build.cluster_id(row.end.ns.key) for row in match.rows}
        if not match.rows and match.host_network:
            clusters = {build.cluster_id(report.snapshot.host)}
        protect = clusters
        seeds = shape.seeds_in(graph, clusters)
        if not match.rows:
            seeds = {n.id for n in graph.nodes if n.cluster in clusters and n.kind.value == "nic"}
        graph = shape.around(graph, seeds, f"{args.target}: its peers, their bridges and one hop beyond")
    elif args.namespace:
        clusters = {build.cluster_id(key) for key in scoped(report, args.namespace).workloads}
        graph = shape.around(graph, shape.seeds_in(graph, clusters), f"Kubernetes namespace {args.namespace}")
    if args.bridge:
        graph = shape.around_bridge(graph, args.bridge, f"bridge {args.bridge}")
    rows = shown_rows(report, graph)
    mode = args.doctor
    if mode == "auto":
        mode = "full" if shape.workload_clusters(graph) <= AUTO_COLLAPSE_ABOVE else "links"
    if mode != "off":
        graph = build.mark_findings(graph, _findings(report, rows, proc, full=mode == "full"))
    collapse = args.collapse
    if collapse is None:
        collapse = shape.workload_clusters(graph) > AUTO_COLLAPSE_ABOVE
    if collapse:
        graph = shape.collapse(graph, protect)
    return graph, rows


def _findings(report: Report, rows: tuple[Row, ...], proc: str, *, full: bool) -> tuple[Finding, ...]:
    """Doctor's checks over the drawn rows; without ``full``, over what the walk read only
    (the checks that need routes, sysctls or fd holders find nothing to look at and stay quiet)."""
    from ..checks import Facts, diagnose, link_index
    from ..diagnosis import facts_for

    if full:
        facts = facts_for(report, rows, proc)
    else:
        facts = Facts(rows=rows, host=report.snapshot.host, links=link_index(report))
    return diagnose(report, facts).findings


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..collect import gather
    from ..drawing import dot, graphviz, html, mermaid
    from ..drawing.elements import document
    from ..errors import UsageError
    from ..render import json as jsonrender

    if args.output == "png" and env.stdout_isatty:
        raise UsageError("-o png writes binary data: redirect stdout to a file (> topology.png)")
    report = gather(options.request(args, fdb=True), env)
    graph, rows = shape(report, args, env.proc)
    if args.output == "json":
        jsonrender.write(document(graph, jsonrender.header(report)), env)
    elif args.output == "mermaid":
        env.stdout.write(mermaid.render(graph))
    elif args.output == "dot":
        env.stdout.write(dot.render(graph))
    elif args.output == "html":
        svg = graphviz.layout(dot.render(graph), "svg", env.environ).decode("utf-8", errors="replace")
        env.stdout.write(html.render(graph, svg, rows))
    else:
        picture = graphviz.layout(dot.render(graph), args.output, env.environ)
        if args.output == "svg":
            env.stdout.write(picture.decode("utf-8", errors="replace"))
        else:
            env.stdout.flush()
            env.stdout.buffer.write(picture)
            env.stdout.buffer.flush()
    return ExitStatus.SUCCESS
