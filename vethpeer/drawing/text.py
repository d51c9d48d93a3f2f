"""The words every renderer puts on the picture: labels, tooltips, legend entries.

Names come from the kernel, from daemons and from users (a netns may be called almost
anything; a container name comes from JSON). Here they are made *visible*, as in every text
output (:mod:`vethpeer.render.safe`: control characters and undecodable bytes become ``\\xNN``,
a backslash ``\\\\``), and very long names are shortened in the middle for labels (the
tooltip keeps them whole). Each renderer then applies its own format's escaping (DOT,
Mermaid, HTML) to these strings.
"""

from __future__ import annotations

from ..render.safe import shown
from .elements import Cluster, Edge, EdgeKind, Mark, Node, NodeKind

LABEL_LIMIT = 40  # characters of a name shown in a label

KIND_WORDS = {
    NodeKind.NIC: "host NIC",
    NodeKind.BRIDGE: "bridge",
    NodeKind.OVS_BRIDGE: "OVS bridge",
    NodeKind.UNRESOLVED: "peer not found",
    NodeKind.GROUP: "collapsed",
}

EDGE_WORDS = {
    EdgeKind.VETH: "veth pair",
    EdgeKind.PORT: "bridge port",
    EdgeKind.OVS_PORT: "OVS port",
    EdgeKind.PARENT: "macvlan/ipvlan/vlan parent",
    EdgeKind.UNRESOLVED: "peer not found",
    EdgeKind.GROUP: "collapsed workloads",
}

MARK_WORDS = {
    Mark.ERROR: "doctor finding: error",
    Mark.WARNING: "doctor finding: warning",
    Mark.DOWN: "interface down",
    Mark.NO_CARRIER: "no carrier",
}


def visible(text: str) -> str:
    """A name as every text output shows it (:func:`vethpeer.render.safe.shown`)."""
    return shown(text)


def shorten(text: str, limit: int = LABEL_LIMIT) -> str:
    """A label-sized name: the middle replaced by an ellipsis when it is too long."""
    text = visible(text)
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "\u2026" + text[len(text) - (limit - 1 - head) :]


def node_lines(node: Node) -> list[str]:
    """The label of a node, one string per line."""
    if node.kind is NodeKind.GROUP:
        head, _, tail = node.name.partition(" (")
        return [shorten(head, 60)] + ([shorten("(" + tail, 60)] if tail else [])
    lines = [shorten(node.name)]
    kind = KIND_WORDS.get(node.kind) or visible(node.link_kind or "device")
    lines.append(kind)
    first = next((a for a in node.addresses if not a.startswith("fe80:")), None)
    if first:
        lines.append(first)
    if node.marks:
        lines.append(" ".join(f"[{m.word}]" for m in node.marks))
    return lines


def cluster_lines(cluster: Cluster) -> list[str]:
    lines = [shorten(cluster.label)]
    if cluster.is_host:
        lines.append("host namespace")
    elif cluster.netns_names and cluster.label != f"netns/{cluster.netns_names[0]}":
        lines.append("netns " + shorten(cluster.netns_names[0]))
    elif not cluster.label.startswith("net:["):
        lines.append(f"net:[{cluster.inode}]")
    if not cluster.is_host:  # the other names the namespace has (a joined container, its process)
        lines += [f"also {shorten(other)}" for other in cluster.workloads[1:]]
    return lines


def node_details(node: Node, cluster: Cluster | None) -> list[str]:
    """Hover text: everything known about a node, names whole."""
    lines = [visible(node.name)]
    if cluster is not None:
        lines.append(f"in {visible(cluster.label)} (net:[{cluster.inode}])")
    if node.ifindex is not None:
        lines.append(
            f"ifindex {node.ifindex}, {visible(node.link_kind or KIND_WORDS.get(node.kind, 'device'))}"
        )
    if node.state:
        lines.append(f"state {node.state}" + (f", mtu {node.mtu}" if node.mtu else ""))
    if node.mac:
        lines.append(f"mac {node.mac}")
    lines += [visible(a) for a in node.addresses]
    lines += [MARK_WORDS[m] for m in node.marks]
    lines += [visible(f) for f in node.findings]
    if node.members:
        lines += [visible(m) for m in node.members[:50]]
        if len(node.members) > 50:
            lines.append(f"... and {len(node.members) - 50} more")
    return lines


def cluster_details(cluster: Cluster) -> list[str]:
    lines = [visible(w) for w in cluster.workloads]
    lines.append(f"net:[{cluster.inode}]" + (" (host)" if cluster.is_host else ""))
    lines += [f"netns {visible(n)}" for n in cluster.netns_names]
    return lines


def edge_details(edge: Edge, nodes: dict[str, Node]) -> str:
    a, b = nodes.get(edge.source), nodes.get(edge.target)
    ends = " \u2013 ".join(visible(n.name) for n in (a, b) if n is not None)
    return f"{EDGE_WORDS[edge.kind]}: {ends}"
