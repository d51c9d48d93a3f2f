"""Pure transformations of a graph: narrowing to a target, a bridge or a Kubernetes namespace,
and collapsing ordinary workloads into one node per bridge.

Narrowing from seed interfaces keeps (1) the seeds, (2) their veth peers and parents,
(3) the bridges those are ports of, and (4) everything one edge beyond that — a veth
pair counts as one thing, so a bridge's other ports come with the workloads behind them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from .model import Cluster, Edge, EdgeKind, Graph, Node, NodeKind

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


def _ordinary(
    cluster: Cluster, inside: list[Node], adjacent: dict[str, list[Edge]], nodes: dict[str, Node]
) -> tuple[str | None, Node, Node] | None:
    """(bridge id or None, the interface, its host peer) for a workload with one plain veth."""
    if cluster.is_host or len(inside) != 1 or inside[0].marks or inside[0].kind is not NodeKind.INTERFACE:
        return None
    mine = inside[0]
    edges = adjacent.get(mine.id, [])
    if len(edges) != 1 or edges[0].kind is not EdgeKind.VETH:
        return None
    peer = nodes[_other(edges[0], mine.id)]
    host_cluster = next((c for c in [peer.cluster] if c is not None), None)
    if peer.marks or host_cluster is None or host_cluster == cluster.id:
        return None
    rest = [e for e in adjacent.get(peer.id, []) if e is not edges[0]]
    if not rest:
        return None, mine, peer
    if len(rest) == 1 and rest[0].kind in PORT_KINDS and rest[0].source == peer.id:
        return rest[0].target, mine, peer
    return None


def collapse(graph: Graph, protect: Iterable[str] = ()) -> Graph:
    """Fold the ordinary workloads of each bridge (one unmarked veth to an unmarked host port,
    nothing else) into one GROUP node with a count; workloads whose host veth is on no bridge
    (routed, as Calico does) are one group too. ``protect``: cluster ids never folded."""
    protected = set(protect)
    nodes = graph.node_map()
    adjacent = _adjacency(graph)
    inside: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if node.cluster is not None:
            inside.setdefault(node.cluster, []).append(node)
    hosts = {c.id for c in graph.clusters if c.is_host}
    groups: dict[str | None, list[tuple[Cluster, Node, Node]]] = {}
    for cluster in graph.clusters:
        if cluster.id in protected:
            continue
        found = _ordinary(cluster, inside.get(cluster.id, []), adjacent, nodes)
        if found is not None and nodes[found[2].id].cluster in hosts:
            groups.setdefault(found[0], []).append((cluster, found[1], found[2]))
    gone_nodes: set[str] = set()
    gone_clusters: set[str] = set()
    added: list[Node] = []
    new_edges: list[Edge] = []
    for bridge, members in sorted(groups.items(), key=lambda kv: kv[0] or ""):
        if len(members) < MIN_GROUP:
            continue
        for cluster, mine, peer in members:
            gone_clusters.add(cluster.id)
            gone_nodes.update((mine.id, peer.id))
        kinds: dict[str, int] = {}
        for cluster, _mine, _peer in members:
            kinds[cluster.kind] = kinds.get(cluster.kind, 0) + 1
        where = f"on {nodes[bridge].name}" if bridge is not None else "routed (no bridge)"
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        group = Node(
            id=f"group-{bridge or 'routed'}",
            kind=NodeKind.GROUP,
            name=f"{len(members)} workloads {where} ({summary})",
            count=len(members),
            members=tuple(sorted(c.label for c, _m, _p in members)),
        )
        added.append(group)
        if bridge is not None:
            new_edges.append(Edge(group.id, bridge, EdgeKind.GROUP))
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
