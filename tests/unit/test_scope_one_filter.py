"""`-n NS` is one filter (targets.scoped, targets.in_scope) wherever a command applies it:
`table`'s rows, `top`'s rows, `graph`'s drawn namespaces and `watch`'s events keep the same
workloads, those of Kubernetes namespace NS. The report is the correlator's own answer over
a made-up topology (three workloads on a bridge, one hostNetwork pod)."""

from __future__ import annotations

import argparse
import io

import pytest

from vethpeer.commands import graph, top, watch
from vethpeer.environment import Environment
from vethpeer.live.changes import Event
from vethpeer.live.rates import Rates
from vethpeer.model import Report
from vethpeer.targets import in_scope, scoped

from .test_serve_scope import HOSTNET, world


def labels_in_table(report: Report, namespace: str | None) -> set[str]:
    return {row.end.workload.label for row in scoped(report, namespace).rows}


@pytest.mark.parametrize("namespace", ["shop", "team-b", "nowhere", None])
def test_table_top_graph_and_watch_keep_the_same_workloads(namespace: str | None) -> None:
    report = world().report
    wanted = labels_in_table(report, namespace)
    assert wanted == {r.end.workload.label for r in report.rows if in_scope(r.end.workload, namespace)}

    args = argparse.Namespace(target=None, namespace=namespace)
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    rates = [Rates(row, None) for row in report.rows]
    assert {r.row.end.workload.label for r in top.select_rows(rates, report, args, env)} == wanted

    graph_args = argparse.Namespace(
        target=None, namespace=namespace, bridge=None, doctor="off", collapse=False
    )
    drawn, _rows = graph.shape(report, graph_args, "/nonexistent-vqe-proc")
    drawn_workloads = {w for c in drawn.clusters if not c.is_host for w in c.workloads}
    assert wanted <= drawn_workloads  # and whatever is one hop beyond (here: the bridge's other ports)
    assert bool(drawn_workloads) is bool(wanted)

    events = [Event("netns-added", row.end.workload, row.end.ns.key, "appeared", row) for row in report.rows]
    events.append(Event("netns-added", HOSTNET, report.snapshot.host, "appeared"))
    kept = {e.workload.label for e in events if watch.concerns(e, None, namespace)}
    hostnet = {HOSTNET.label} if in_scope(HOSTNET, namespace) else set()
    assert kept == wanted | hostnet
