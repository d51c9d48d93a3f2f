"""`kubectl vethpeer history TARGET` and `which TARGET --at T`: every node's journal, through its agent.

A pod that is gone is gone from the API server too, so its node is not known: every agent is
asked (or the one of ``--node``), and each answers from its own journal
(``/api/v1/history/<target>``, ``/api/v1/which/<target>?at=T``). A node whose journal does not
know the target answers 404: that is "nothing here", not a failure.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

from ..environment import Environment
from ..errors import ExitStatus, NotFound, SourceFailed
from .cluster import Cluster
from .fanout import NodeAnswer, agents_and_nodes, fan_out
from .render import cluster_document, write_json

HEADER = ["NODE", "FIRST SEEN", "GONE", "WORKLOAD", "INTERFACE", "HOST SIDE", "ADDRESSES"]


def path_for(args: argparse.Namespace, target: str) -> str:
    if args.command == "which":
        return f"api/v1/which/{quote(target, safe='')}?{urlencode({'at': repr(args.at)})}"
    query = {k: repr(v) for k, v in (("since", args.since), ("until", args.until)) if v is not None}
    return f"api/v1/history/{quote(target, safe='')}" + (f"?{urlencode(query)}" if query else "")


def _nothing_there(answer: NodeAnswer) -> bool:
    return answer.status == "error" and answer.detail.split(": ", 1)[-1].startswith("404")


def rows(answers: Sequence[NodeAnswer]) -> list[list[str]]:
    found = []
    for answer in answers:
        if answer.status != "ok" or answer.document is None:
            continue
        for b in answer.document.get("bindings", []):
            host: dict[str, Any] = b.get("host_side") or {}
            found.append(
                [
                    answer.node,
                    b["first_seen"],
                    b["gone"] or f"(bound; last seen {b['last_seen']})",
                    b["workload"]["label"],
                    b["interface"]["name"],
                    host.get("name") or "-",
                    ",".join(b["interface"]["addresses"]) or "-",
                ]
            )
    return sorted(found, key=lambda r: r[1], reverse=True)


def run(cluster: Cluster, args: argparse.Namespace, target: str, env: Environment) -> ExitStatus:
    from ..render.tables import write_columns

    found, nodes = agents_and_nodes(
        cluster, args.agent_namespace, args.agent_selector, args.timeout, args.node
    )
    answers = fan_out(cluster, found, nodes, path_for(args, target), args.timeout)
    failed = [a for a in answers if a.status != "ok" and not _nothing_there(a)]
    table = rows(answers)
    if args.output == "json":
        kind = "which-at" if args.command == "which" else "history"
        write_json(cluster_document(kind, [a for a in answers if not _nothing_there(a)]), env)
    elif table:
        write_columns(HEADER, table, env)
    for answer in failed:
        env.warn(f"node {answer.node}: {answer.status}: {answer.detail}")
    if not table:
        if answers and len(failed) == len(answers):
            raise SourceFailed("no vethpeer agent answered")
        when = " at that time" if args.command == "which" else ""
        raise NotFound(f"no node's journal has {target!r}{when}")
    return ExitStatus.SUCCESS
