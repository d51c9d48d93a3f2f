"""The graph model: what `vethpeer graph` draws, free of any output format.

Clusters are network namespaces (labelled with their workload), nodes are interfaces,
bridges (Linux and Open vSwitch), host NICs, unresolved peers and collapsed groups,
edges are veth pairs, bridge ports, macvlan/ipvlan parents and group memberships.
The JSON form (:func:`document`) is versioned: fields may be added, never removed or
renamed, without bumping :data:`SCHEMA_VERSION` (docs/graph.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

SCHEMA_VERSION = 1


class NodeKind(str, Enum):
    INTERFACE = "interface"  # any interface inside a namespace (veth end, macvlan, tun, ...)
    NIC = "nic"  # a host interface that is no virtual device kind (a physical NIC)
    BRIDGE = "bridge"  # a Linux bridge
    OVS_BRIDGE = "ovs-bridge"  # an Open vSwitch bridge (from OVSDB)
    UNRESOLVED = "unresolved"  # the peer of a veth that could not be found
    GROUP = "group"  # --collapse: several ordinary workloads on one bridge


class EdgeKind(str, Enum):
    VETH = "veth"  # the two ends of a veth (or netkit) pair
    PORT = "port"  # an interface enslaved to a Linux bridge (or bond, ...): interface -> master
    OVS_PORT = "ovs-port"  # an interface that is a port of an OVS bridge: interface -> bridge
    PARENT = "parent"  # a macvlan/ipvlan/vlan on its parent (lower) device: child -> parent
    UNRESOLVED = "unresolved"  # a veth end -> the placeholder of its missing peer
    GROUP = "group"  # a collapsed group -> the bridge its members' host veths are on


class Mark(str, Enum):
    """Something unusual about a node; each is drawn with a colour AND a shape/line style
    AND a word in the label, never colour alone."""

    DOWN = "down"  # administratively down (no IFF_UP)
    NO_CARRIER = "no-carrier"  # up, but no carrier (IFF_LOWER_UP unset)
    WARNING = "warning"  # a doctor finding at warning level
    ERROR = "error"  # a doctor finding at error level

    @property
    def word(self) -> str:
        return {"down": "DOWN", "no-carrier": "NO-CARRIER", "warning": "WARNING", "error": "ERROR"}[
            self.value
        ]


# The order of precedence when a node has several marks: the worst decides the colour.
MARK_ORDER = (Mark.ERROR, Mark.WARNING, Mark.DOWN, Mark.NO_CARRIER)


@dataclass(frozen=True, slots=True)
class Cluster:
    """One network namespace."""

    id: str  # "ns<inode>"
    label: str  # the workload's label: host, docker/web, pod/default/api, netns/x, pid/42 (sleep)
    kind: str  # the workload's kind: host, pod, docker, container, netns, process
    inode: int
    dev: int
    is_host: bool = False
    netns_names: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()  # every workload sharing the namespace, best first
    k8s_namespace: str | None = None


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    kind: NodeKind
    name: str  # interface or bridge name; a group's description
    cluster: str | None = None  # the Cluster id it is drawn in; None: outside every namespace
    ifindex: int | None = None
    link_kind: str | None = None  # IFLA_INFO_KIND: veth, bridge, macvlan, openvswitch, None (a NIC)
    mac: str | None = None
    mtu: int | None = None
    state: str | None = None  # operstate
    addresses: tuple[str, ...] = ()
    marks: tuple[Mark, ...] = ()
    findings: tuple[str, ...] = ()  # "warning veth-down: ..." for doctor findings at warning and above
    count: int = 0  # GROUP: how many workloads it stands for
    members: tuple[str, ...] = ()  # GROUP: their labels

    @property
    def worst(self) -> Mark | None:
        return next((m for m in MARK_ORDER if m in self.marks), None)

    def marked(self, *more: Mark) -> Node:
        marks = tuple(m for m in MARK_ORDER if m in self.marks or m in more)
        return replace(self, marks=marks)


@dataclass(frozen=True, slots=True)
class Edge:
    source: str  # node ids; for PORT, OVS_PORT, PARENT, GROUP the source is the lower/member side
    target: str
    kind: EdgeKind

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity regardless of direction for veth pairs."""
        a, b = (self.source, self.target)
        if self.kind is EdgeKind.VETH and b < a:
            a, b = b, a
        return (a, b, self.kind.value)


@dataclass(frozen=True, slots=True)
class Graph:
    clusters: tuple[Cluster, ...]
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    collapsed: bool = False
    title: str = "vethpeer"
    notes: tuple[str, ...] = field(default=())  # e.g. "narrowed to docker/web and one hop beyond"

    def node_map(self) -> dict[str, Node]:
        return {node.id: node for node in self.nodes}

    def marks_used(self) -> list[Mark]:
        used = {m for node in self.nodes for m in node.marks}
        return [m for m in MARK_ORDER if m in used]


def cluster_json(c: Cluster) -> dict[str, Any]:
    return {
        "id": c.id,
        "label": c.label,
        "kind": c.kind,
        "netns": {"inode": c.inode, "dev": c.dev, "names": list(c.netns_names)},
        "is_host": c.is_host,
        "workloads": list(c.workloads),
        "k8s_namespace": c.k8s_namespace,
    }


def node_json(n: Node) -> dict[str, Any]:
    return {
        "id": n.id,
        "kind": n.kind.value,
        "name": n.name,
        "cluster": n.cluster,
        "ifindex": n.ifindex,
        "link_kind": n.link_kind,
        "mac": n.mac,
        "mtu": n.mtu,
        "state": n.state,
        "addresses": list(n.addresses),
        "marks": [m.value for m in n.marks],
        "findings": list(n.findings),
        "count": n.count,
        "members": list(n.members),
    }


def edge_json(e: Edge) -> dict[str, Any]:
    return {"source": e.source, "target": e.target, "kind": e.kind.value}


def document(graph: Graph, header: dict[str, Any]) -> dict[str, Any]:
    """The `graph -o json` document: vethpeer's common header, then the graph."""
    return {
        **header,
        "graph": {
            "schema_version": SCHEMA_VERSION,
            "title": graph.title,
            "collapsed": graph.collapsed,
            "notes": list(graph.notes),
            "clusters": [cluster_json(c) for c in graph.clusters],
            "nodes": [node_json(n) for n in graph.nodes],
            "edges": [edge_json(e) for e in graph.edges],
        },
    }
