"""The graph as a Mermaid flowchart, to paste into Markdown (GitHub renders ```mermaid blocks).

Mermaid lays it out itself. Node IDs are vethpeer's own (ASCII, ``-`` as ``_``); every
label is double-quoted with each character outside letters, digits and ``.:_-/,+=@``
and space written as Mermaid's ``#NNN;`` entity, so quotes, ``<``, ``&``, ``#`` and
backticks in a name stay text. Line styles (thick, plain, dotted) and words in the
labels carry the meaning; colours only repeat it.
"""

from __future__ import annotations

from .elements import EdgeKind, Graph, Mark, Node, NodeKind
from .text import MARK_WORDS, cluster_lines, node_lines

SAFE = frozenset(".:_-/,+=@ ")

SHAPES = {
    NodeKind.INTERFACE: ('("', '")'),
    NodeKind.NIC: ('[["', '"]]'),
    NodeKind.BRIDGE: ('{{"', '"}}'),
    NodeKind.OVS_BRIDGE: ('{{"', '"}}'),
    NodeKind.UNRESOLVED: ('>"', '"]'),
    NodeKind.GROUP: ('[("', '")]'),
}

LINKS = {
    EdgeKind.VETH: "===",
    EdgeKind.PORT: "---",
    EdgeKind.OVS_PORT: "-- OVS ---",
    EdgeKind.PARENT: "-. parent .->",
    EdgeKind.UNRESOLVED: "-. ? .-",
    EdgeKind.GROUP: "===",
}

CLASSES = {
    Mark.ERROR: "fill:#fed7d7,stroke:#c53030,stroke-width:4px",
    Mark.WARNING: "fill:#feebc8,stroke:#c05621,stroke-width:3px",
    Mark.DOWN: "fill:#edf2f7,stroke:#718096,stroke-dasharray:6 3",
    Mark.NO_CARRIER: "fill:#edf2f7,stroke:#718096,stroke-dasharray:2 2",
}
KIND_CLASSES = {
    NodeKind.BRIDGE: "fill:#fff3c4",
    NodeKind.OVS_BRIDGE: "fill:#e9d8fd,stroke-width:3px",
    NodeKind.NIC: "fill:#e2e8f0",
    NodeKind.GROUP: "fill:#e6fffa",
}


def escape(text: str) -> str:
    return "".join(c if c.isalnum() or c in SAFE else f"#{ord(c)};" for c in text)


def ident(node_id: str) -> str:
    return node_id.replace("-", "_")


def label(parts: list[str]) -> str:
    return "<br/>".join(escape(p) for p in parts)


def _node(node: Node) -> str:
    opening, closing = SHAPES[node.kind]
    return f"{ident(node.id)}{opening}{label(node_lines(node))}{closing}"


def render(graph: Graph) -> str:
    out = ["flowchart LR"]
    inside: dict[str | None, list[Node]] = {}
    clusters = {c.id for c in graph.clusters}
    for node in graph.nodes:
        inside.setdefault(node.cluster if node.cluster in clusters else None, []).append(node)
    for cluster in graph.clusters:
        out.append(f'  subgraph {ident(cluster.id)}["{label(cluster_lines(cluster))}"]')
        out += [f"    {_node(node)}" for node in inside.get(cluster.id, [])]
        out.append("  end")
    out += [f"  {_node(node)}" for node in inside.get(None, [])]
    nodes = graph.node_map()
    for edge in graph.edges:
        link = LINKS[edge.kind]
        if edge.kind is EdgeKind.GROUP:
            link = f"== #215;{nodes[edge.source].count} ==="
        out.append(f"  {ident(edge.source)} {link} {ident(edge.target)}")
    for number, edge in enumerate(graph.edges):
        if edge.kind is EdgeKind.VETH:
            out.append(f"  linkStyle {number} stroke:#2b6cb0,stroke-width:3px")
    marks = graph.marks_used()
    if marks:
        out.append('  subgraph legend["Legend"]')
        out += [f'    legend_{m.name.lower()}("{escape(MARK_WORDS[m])}<br/>[{m.word}]")' for m in marks]
        out.append("  end")
    for mark, style in CLASSES.items():
        out.append(f"  classDef {mark.name.lower()} {style}")
    for kind, style in KIND_CLASSES.items():
        out.append(f"  classDef {kind.name.lower()} {style}")
    for kind in KIND_CLASSES:
        members = [ident(n.id) for n in graph.nodes if n.kind is kind and n.worst is None]
        if members:
            out.append(f"  class {','.join(members)} {kind.name.lower()}")
    for mark in marks:
        members = [ident(n.id) for n in graph.nodes if n.worst is mark]
        members.append(f"legend_{mark.name.lower()}")
        out.append(f"  class {','.join(members)} {mark.name.lower()}")
    return "\n".join(out) + "\n"
