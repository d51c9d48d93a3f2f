"""Report (+ doctor's findings) -> :class:`~vethpeer.drawing.elements.Graph`. Pure: no I/O.

* every readable namespace is a cluster labelled with its best workload;
* every interface in it is a node, loopback only when it is the namespace's only one;
* a host interface of no virtual kind is a NIC; a ``bridge`` is a Linux bridge node;
* an interface with a kernel master gets a ``port`` edge to it; a host interface that
  OVSDB names as a port of an OVS bridge (the report's master, set by ``ovs.annotate``,
  where the kernel says ``ovs-system`` or nothing) gets an ``ovs-port`` edge to that
  bridge — the host link of the bridge's name when there is one, else a node of its own;
* rows with a veth peer give ``veth`` edges (once per pair), rows with a parent give
  ``parent`` edges, and host macvlans/vlans on host devices (no row) too; an unresolved
  peer is a placeholder node with an ``unresolved`` edge;
* marks: DOWN (no IFF_UP), NO-CARRIER (up, no IFF_LOWER_UP), and the worst doctor
  finding (warning or error) on the interface it is about.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace

from ..checks import Finding, Severity
from ..correlate import HOST, PAIR_KINDS
from ..model import End, Link, NsKey, NsView, Relation, Report, Workload, WorkloadKind
from ..netlink import IFF_LOWER_UP, IFF_UP
from ..ovs import KERNEL_MASTERS
from .elements import Cluster, Edge, EdgeKind, Graph, Mark, Node, NodeKind


def node_id(key: NsKey, index: int) -> str:
    return f"n{key.ino}-{index}"


def cluster_id(key: NsKey) -> str:
    return f"ns{key.ino}"


def ovs_bridge_id(name: str) -> str:
    return "ovs-" + hashlib.sha1(name.encode(errors="surrogateescape")).hexdigest()[:12]


def link_marks(link: Link) -> tuple[Mark, ...]:
    if not link.flags & IFF_UP:
        return (Mark.DOWN,)
    if not link.flags & IFF_LOWER_UP:
        return (Mark.NO_CARRIER,)
    return ()


def _workloads(report: Report, view: NsView) -> tuple[Workload, ...]:
    key = view.ns.key
    if key == report.snapshot.host:
        return (HOST, *report.host_network)
    found = report.workloads.get(key)
    if found:
        return found
    return (Workload(WorkloadKind.NETNS, f"net:[{key.ino}]", id=str(key.ino)),)


def _cluster(report: Report, view: NsView) -> Cluster:
    workloads = _workloads(report, view)
    best = workloads[0]
    return Cluster(
        id=cluster_id(view.ns.key),
        label=best.label,
        kind=best.kind.value,
        inode=view.ns.key.ino,
        dev=view.ns.key.dev,
        is_host=view.ns.key == report.snapshot.host,
        netns_names=view.ns.netns_names,
        workloads=tuple(w.label for w in workloads),
        k8s_namespace=best.namespace,
    )


def _node(view: NsView, link: Link, is_host: bool) -> Node:
    if link.kind == "bridge":
        kind = NodeKind.BRIDGE
    elif is_host and link.kind is None and not link.is_loopback:
        kind = NodeKind.NIC
    else:
        kind = NodeKind.INTERFACE
    return Node(
        id=node_id(view.ns.key, link.index),
        kind=kind,
        name=link.name,
        cluster=cluster_id(view.ns.key),
        ifindex=link.index,
        link_kind=link.kind,
        mac=link.mac,
        mtu=link.mtu,
        state=link.operstate,
        addresses=link.addresses,
        marks=link_marks(link),
    )


def _shown(view: NsView) -> list[Link]:
    links = [link for link in view.links if not link.is_loopback]
    return links or list(view.links)


class _Builder:
    def __init__(self, report: Report) -> None:
        self.report = report
        self.host = report.snapshot.host
        self.clusters: list[Cluster] = []
        self.nodes: dict[str, Node] = {}
        self.edges: dict[tuple[str, str, str], Edge] = {}
        self.by_name: dict[tuple[NsKey, str], str] = {}  # (namespace, ifname) -> node id

    def edge(self, source: str, target: str, kind: EdgeKind) -> None:
        if source in self.nodes and target in self.nodes and source != target:
            edge = Edge(source, target, kind)
            self.edges.setdefault(edge.key, edge)

    def namespaces(self) -> None:
        views = [v for v in self.report.snapshot.views if not v.error]
        views.sort(key=lambda v: (v.ns.key != self.host, self.report_label(v), v.ns.key.ino))
        for view in views:
            self.clusters.append(_cluster(self.report, view))
            is_host = view.ns.key == self.host
            for link in _shown(view):
                node = _node(view, link, is_host)
                self.nodes[node.id] = node
                self.by_name[(view.ns.key, link.name)] = node.id
        for view in views:
            for link in _shown(view):
                here = node_id(view.ns.key, link.index)
                if link.master is not None:
                    self.edge(here, node_id(view.ns.key, link.master), EdgeKind.PORT)
                if view.ns.key == self.host and link.kind not in PAIR_KINDS and link.link:
                    self.host_parent(view, link, here)

    def report_label(self, view: NsView) -> str:
        return _workloads(self.report, view)[0].label

    def host_parent(self, view: NsView, link: Link, here: str) -> None:
        """A host macvlan/ipvlan/vlan (never a row) on its parent."""
        if link.link == link.index and link.link_netnsid is None:
            return
        where = view.ns.key if link.link_netnsid is None else view.nsids.get(link.link_netnsid)
        if where is not None and link.link is not None:
            self.edge(here, node_id(where, link.link), EdgeKind.PARENT)

    def rows(self) -> None:
        for row in self.report.rows:
            here = node_id(row.end.ns.key, row.end.link.index)
            if here not in self.nodes:
                continue
            for end in (row.end, row.peer):
                if end is not None:
                    self.ovs_port(end)
            if row.peer is not None and row.relation is not None:
                kind = EdgeKind.VETH if row.relation is Relation.VETH else EdgeKind.PARENT
                self.edge(here, node_id(row.peer.ns.key, row.peer.link.index), kind)
            elif row.unresolved is not None:
                ghost = Node(
                    id=f"{here}-peer",
                    kind=NodeKind.UNRESOLVED,
                    name=f"peer ifindex {row.end.link.link}",
                    cluster=None,
                    ifindex=row.end.link.link,
                    findings=(f"unresolved: {row.unresolved}",),
                )
                self.nodes[ghost.id] = ghost
                self.edge(here, ghost.id, EdgeKind.UNRESOLVED)

    def ovs_port(self, end: End) -> None:
        if end.ns.key != self.host or end.master is None:
            return
        kernel_master = None
        if end.link.master is not None:
            master_node = self.nodes.get(node_id(self.host, end.link.master))
            kernel_master = master_node.name if master_node else None
        if end.link.master is not None and end.master == kernel_master:
            return  # a kernel master (Linux bridge, bond): drawn from the link already
        if kernel_master not in KERNEL_MASTERS:
            return
        here = node_id(self.host, end.link.index)
        bridge = self.by_name.get((self.host, end.master))
        if bridge is None:
            bridge = ovs_bridge_id(end.master)
            if bridge not in self.nodes:
                self.nodes[bridge] = Node(
                    bridge, NodeKind.OVS_BRIDGE, end.master, cluster=cluster_id(self.host)
                )
        else:
            node = self.nodes[bridge]
            self.nodes[bridge] = replace(node, kind=NodeKind.OVS_BRIDGE)
        if end.link.master is not None:  # drop the kernel port edge to ovs-system
            self.edges.pop(Edge(here, node_id(self.host, end.link.master), EdgeKind.PORT).key, None)
        self.edge(here, bridge, EdgeKind.OVS_PORT)


def build(report: Report) -> Graph:
    """The whole host as a graph."""
    builder = _Builder(report)
    builder.namespaces()
    builder.rows()
    return Graph(tuple(builder.clusters), tuple(builder.nodes.values()), tuple(builder.edges.values()))


def mark_findings(graph: Graph, findings: Iterable[Finding]) -> Graph:
    """Doctor's findings at warning level and above, on the interfaces they are about."""
    nodes = graph.node_map()
    changed = False
    for finding in findings:
        if finding.severity is Severity.INFO:
            continue
        here = node_id(finding.end.ns.key, finding.end.link.index)
        node = nodes.get(here)
        if node is None:
            continue
        mark = Mark.ERROR if finding.severity is Severity.ERROR else Mark.WARNING
        text = f"{finding.severity.value} {finding.check}: {finding.message}"
        nodes[here] = replace(node.marked(mark), findings=(*node.findings, text))
        changed = True
    return replace(graph, nodes=tuple(nodes.values())) if changed else graph
