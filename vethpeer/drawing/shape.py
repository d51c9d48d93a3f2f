"""Pure transformations of a graph: narrowing to a target, a bridge or a Kubernetes namespace,
and collapsing ordinary workloads into one node per bridge.

Narrowing from seed interfaces keeps (1) the seeds, (2) their veth peers and parents,
(3) the bridges those are ports of, and (4) everything one edge beyond that — a veth
pair counts as one thing, so a bridge's other ports come with the workloads behind them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from .elements import Cluster, Edge, EdgeKind, Graph, Node, NodeKind

# A bridge's ordinary workloads are folded into one node only when there are at least this many.
MIN_GROUP = 2

PEER_KINDS = frozenset({EdgeKind.VETH, EdgeKind.PARENT, EdgeKind.UNRESOLVED})
PORT_KINDS = frozenset({EdgeKind.PORT, EdgeKind.OVS_PORT})


def _adjacency(graph: Graph) -> dict[str, list[Edge]]:
    adjacent: dict[str, list[Edge]] = {node.id: [] for node in graph.nodes}
    for edge in graph.edges:
        adjacent.setdefault(edge.source, []).append(edge)
        adjacent.setdefault(edge.target, []).append(edge)
    return adjacent


def _other(edge: Edge, node: str) -> str:
    return edge.target if edge.source == node else edge.source


def _close_pairs(chosen: set[str], adjacent: dict[str, list[Edge]]) -> set[str]:
    """Both ends of every veth pair (and an unresolved placeholder) one of whose ends is chosen."""
    more = {
        _other(e, n)
        for n in chosen
        for e in adjacent.get(n, ())
        if e.kind in (EdgeKind.VETH, EdgeKind.UNRESOLVED)
    }
    return chosen | more


def keep(graph: Graph, chosen: set[str], note: str) -> Graph:
    """The subgraph of ``chosen`` nodes, with the clusters they are in."""
    clusters_used = {node.cluster for node in graph.nodes if node.id in chosen}
    return replace(
        graph,
        clusters=tuple(c for c in graph.clusters if c.id in clusters_used),
        nodes=tuple(n for n in graph.nodes if n.id in chosen),
        edges=tuple(e for e in graph.edges if e.source in chosen and e.target in chosen),
        notes=(*graph.notes, note),
    )


def around(graph: Graph, seeds: Iterable[str], note: str) -> Graph:
    """Seeds, their peers, their bridges and one hop beyond."""
    adjacent = _adjacency(graph)
    chosen = set(seeds)
    chosen |= {_other(e, n) for n in set(chosen) for e in adjacent.get(n, ()) if e.kind in PEER_KINDS}
    chosen |= {
        e.target for n in set(chosen) for e in adjacent.get(n, ()) if e.kind in PORT_KINDS and e.source == n
    }
    chosen |= {_other(e, n) for n in set(chosen) for e in adjacent.get(n, ())}
    return keep(graph, _close_pairs(chosen, adjacent), note)


def around_bridge(graph: Graph, name: str, note: str) -> Graph:
    """A bridge (Linux or OVS) of that name, its ports and the workloads behind them."""
    adjacent = _adjacency(graph)
    bridges = {
        n.id for n in graph.nodes if n.name == name and n.kind in (NodeKind.BRIDGE, NodeKind.OVS_BRIDGE)
    }
    chosen = bridges | {_other(e, b) for b in bridges for e in adjacent.get(b, ())}
    return keep(graph, _close_pairs(chosen, adjacent), note)


def seeds_in(graph: Graph, clusters: Iterable[str]) -> set[str]:
    wanted = set(clusters)
    return {n.id for n in graph.nodes if n.cluster in wanted}


def workload_clusters(graph: Graph) -> int:
    return sum(1 for c in graph.clusters if not c.is_host)


PAIRS = "(pairs)"  # the group key of namespaces joined to each other by one veth


@dataclass(frozen=True, slots=True)
class _Member:
    clusters: tuple[Cluster, ...]
    nodes: tuple[str, ...]
    label: str


def _ordinary(
    cluster: Cluster,
    inside: dict[str, list[Node]],
    adjacent: dict[str, list[Edge]],
    nodes: dict[str, Node],
    hosts: set[str],
) -> tuple[str | None, _Member] | None:
    """(group key, member) for a workload namespace with one plain veth and nothing else: to a
    host port on a bridge (key: the bridge's id), to a host port on none (None), or to another
    such namespace (PAIRS, reported by the one with the smaller cluster id)."""
    mine_all = inside.get(cluster.id, [])
    if (
        cluster.is_host
        or len(mine_all) != 1
        or mine_all[0].marks
        or mine_all[0].kind is not NodeKind.INTERFACE
    ):
        return None
    mine = mine_all[0]
    edges = adjacent.get(mine.id, [])
    if len(edges) != 1 or edges[0].kind is not EdgeKind.VETH:
        return None
    peer = nodes[_other(edges[0], mine.id)]
    if peer.marks or peer.cluster is None or peer.cluster == cluster.id:
        return None
    rest = [e for e in adjacent.get(peer.id, []) if e is not edges[0]]
    if peer.cluster not in hosts:
        if len(inside.get(peer.cluster, [])) == 1 and not rest and cluster.id < peer.cluster:
            return PAIRS, _Member((cluster,), (mine.id, peer.id), cluster.label)
        return None
    single = (cluster,)
    if not rest:
        return None, _Member(single, (mine.id, peer.id), cluster.label)
    if len(rest) == 1 and rest[0].kind in PORT_KINDS and rest[0].source == peer.id:
        return rest[0].target, _Member(single, (mine.id, peer.id), cluster.label)
    return None


def _group(key: str | None, members: list[_Member], nodes: dict[str, Node]) -> Node:
    kinds: dict[str, int] = {}
    for member in members:
        for cluster in member.clusters:
            kinds[cluster.kind] = kinds.get(cluster.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    if key == PAIRS:
        name, ident = f"{len(members)} namespace pairs joined by one veth ({summary})", "group-pairs"
    else:
        where = f"on {nodes[key].name}" if key is not None else "routed (no bridge)"
        name, ident = f"{len(members)} workloads {where} ({summary})", f"group-{key or 'routed'}"
    return Node(
        id=ident,
        kind=NodeKind.GROUP,
        name=name,
        count=len(members),
        members=tuple(sorted(m.label for m in members)),
    )


def collapse(graph: Graph, protect: Iterable[str] = ()) -> Graph:
    """Fold the ordinary workloads of each bridge (one unmarked veth to an unmarked host port,
    nothing else) into one GROUP node with a count; workloads whose host veth is on no bridge
    (routed, as Calico does) are one group, and so are namespaces joined only to each other by
    one unmarked veth. ``protect``: cluster ids never folded."""
    protected = set(protect)
    nodes = graph.node_map()
    adjacent = _adjacency(graph)
    inside: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if node.cluster is not None:
            inside.setdefault(node.cluster, []).append(node)
    hosts = {c.id for c in graph.clusters if c.is_host}
    clusters = {c.id: c for c in graph.clusters}
    groups: dict[str | None, list[_Member]] = {}
    for cluster in graph.clusters:
        if cluster.id in protected:
            continue
        found = _ordinary(cluster, inside, adjacent, nodes, hosts)
        if found is None:
            continue
        key, member = found
        peer_cluster = nodes[member.nodes[1]].cluster or ""
        if key == PAIRS:
            if peer_cluster in protected or peer_cluster in hosts:
                continue
            other = clusters[peer_cluster]
            member = _Member((cluster, other), member.nodes, f"{cluster.label} \u2013 {other.label}")
        groups.setdefault(key, []).append(member)
    gone_nodes: set[str] = set()
    gone_clusters: set[str] = set()
    added: list[Node] = []
    new_edges: list[Edge] = []
    for key, members in sorted(groups.items(), key=lambda kv: kv[0] or ""):
        if len(members) < MIN_GROUP:
            continue
        for member in members:
            gone_clusters.update(c.id for c in member.clusters)
            gone_nodes.update(member.nodes)
        group = _group(key, members, nodes)
        added.append(group)
        if key is not None and key != PAIRS:
            new_edges.append(Edge(group.id, key, EdgeKind.GROUP))
    if not added:
        return replace(graph, collapsed=True)
    return replace(
        graph,
        clusters=tuple(c for c in graph.clusters if c.id not in gone_clusters),
        nodes=tuple(n for n in graph.nodes if n.id not in gone_nodes) + tuple(added),
        edges=tuple(e for e in graph.edges if e.source not in gone_nodes and e.target not in gone_nodes)
        + tuple(new_edges),
        collapsed=True,
    )
