"""The graph as Graphviz DOT text. Graphviz does the layout; this only declares.

Every ID and string is double-quoted: ``\\`` and ``"`` are backslash-escaped and ``&``
becomes ``&amp;`` (Graphviz decodes HTML entities in labels and tooltips, so a name
containing ``&lt;`` must not turn into ``<``). Node IDs are vethpeer's own ASCII IDs,
so the SVG's ``id`` attributes and ``<title>`` elements never carry a foreign name.
Legend nodes and edges have IDs starting with ``legend-``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .elements import Cluster, Edge, EdgeKind, Graph, Mark, Node, NodeKind
from .text import (
    EDGE_WORDS,
    KIND_WORDS,
    MARK_WORDS,
    cluster_details,
    cluster_lines,
    edge_details,
    node_details,
    node_lines,
)

FONT = "Helvetica,Arial,sans-serif"

NODE_STYLE: dict[NodeKind, dict[str, str]] = {
    NodeKind.INTERFACE: {"shape": "box", "style": "rounded,filled", "fillcolor": "#ffffff"},
    NodeKind.NIC: {"shape": "box3d", "style": "filled", "fillcolor": "#e2e8f0"},
    NodeKind.BRIDGE: {"shape": "hexagon", "style": "filled", "fillcolor": "#fff3c4"},
    NodeKind.OVS_BRIDGE: {"shape": "hexagon", "style": "filled", "fillcolor": "#e9d8fd", "peripheries": "2"},
    NodeKind.UNRESOLVED: {"shape": "box", "style": "dashed", "fillcolor": "#ffffff", "color": "#c53030"},
    NodeKind.GROUP: {"shape": "folder", "style": "filled", "fillcolor": "#e6fffa"},
}

# colour AND line style AND (in the label) a word: never colour alone
MARK_STYLE: dict[Mark, dict[str, str]] = {
    Mark.ERROR: {
        "color": "#c53030",
        "fillcolor": "#fed7d7",
        "penwidth": "3",
        "peripheries": "2",
        "line": "solid",
    },
    Mark.WARNING: {"color": "#c05621", "fillcolor": "#feebc8", "penwidth": "3", "line": "bold"},
    Mark.DOWN: {"color": "#718096", "fillcolor": "#edf2f7", "penwidth": "1.5", "line": "dashed"},
    Mark.NO_CARRIER: {"color": "#718096", "fillcolor": "#edf2f7", "penwidth": "1.5", "line": "dotted"},
}

EDGE_STYLE: dict[EdgeKind, dict[str, str]] = {
    EdgeKind.VETH: {"color": "#2b6cb0", "penwidth": "2.5", "style": "solid", "dir": "none"},
    EdgeKind.PORT: {"color": "#4a5568", "penwidth": "1", "style": "solid", "dir": "none"},
    EdgeKind.OVS_PORT: {"color": "#6b46c1", "penwidth": "1.5", "style": "bold", "dir": "none"},
    EdgeKind.PARENT: {
        "color": "#2f855a",
        "penwidth": "1.5",
        "style": "dashed",
        "dir": "forward",
        "arrowhead": "empty",
    },
    EdgeKind.UNRESOLVED: {"color": "#c53030", "penwidth": "1.5", "style": "dotted", "dir": "none"},
    EdgeKind.GROUP: {"color": "#4a5568", "penwidth": "3", "style": "solid", "dir": "none"},
}


def quote(text: str) -> str:
    """A DOT double-quoted string with ``text`` taken literally."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;") + '"'


def lines(parts: Sequence[str]) -> str:
    """Several lines as one quoted DOT string (``\\n`` centres each line)."""
    return '"' + "\\n".join(quote(p)[1:-1] for p in parts) + '"'


def attributes(pairs: Iterable[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{key}={value}" for key, value in pairs) + "]"


def node_attributes(node: Node, cluster: Cluster | None) -> list[tuple[str, str]]:
    style = dict(NODE_STYLE[node.kind])
    worst = node.worst
    if worst is not None:
        mark = MARK_STYLE[worst]
        style.update({k: v for k, v in mark.items() if k != "line"})
        base = [
            s
            for s in style.get("style", "").split(",")
            if s and s not in ("solid", "dashed", "dotted", "bold")
        ]
        style["style"] = ",".join([*base, mark["line"]])
    classes = " ".join([node.kind.value, *(m.value for m in node.marks)])
    pairs = [("id", quote(node.id)), ("class", quote(classes)), ("label", lines(node_lines(node)))]
    pairs += [(key, quote(value)) for key, value in style.items()]
    pairs.append(("tooltip", lines(node_details(node, cluster))))
    return pairs


def edge_attributes(edge: Edge, nodes: dict[str, Node]) -> list[tuple[str, str]]:
    pairs = [("class", quote(edge.kind.value))]
    pairs += [(key, quote(value)) for key, value in EDGE_STYLE[edge.kind].items()]
    pairs.append(("tooltip", quote(edge_details(edge, nodes))))
    if edge.kind is EdgeKind.GROUP:
        count = nodes[edge.source].count
        pairs.append(("label", quote(f"\u00d7{count}")))
    return pairs


def _legend(graph: Graph) -> list[str]:
    kinds = [k for k in NodeKind if any(n.kind is k for n in graph.nodes) and k is not NodeKind.INTERFACE]
    marks = graph.marks_used()
    edges = [k for k in EdgeKind if any(e.kind is k for e in graph.edges)]
    if not (kinds or marks or edges):
        return []
    out = [
        '  subgraph "cluster_legend" {',
        '    label="Legend"; id="legend"; style="rounded"; color="#a0aec0"; fontsize="10";',
    ]
    for kind in kinds:
        sample = Node(f"legend-{kind.value}", kind, KIND_WORDS[kind], count=0)
        shown = [("label", quote(KIND_WORDS[kind])), *((k, quote(v)) for k, v in NODE_STYLE[kind].items())]
        out.append(f"    {quote(sample.id)} {attributes(shown)};")
    for mark in marks:
        sample = Node(f"legend-{mark.value}", NodeKind.INTERFACE, MARK_WORDS[mark], marks=(mark,))
        pairs = [p for p in node_attributes(sample, None) if p[0] not in ("tooltip", "label")]
        pairs.append(("label", lines([MARK_WORDS[mark], f"[{mark.word}]"])))
        out.append(f"    {quote(sample.id)} {attributes(pairs)};")
    for edge_kind in edges:
        a, b = f"legend-{edge_kind.value}-a", f"legend-{edge_kind.value}-b"
        out.append(f'    {quote(a)} [label="", shape="point", width="0.05"];')
        out.append(f'    {quote(b)} [label={quote(EDGE_WORDS[edge_kind])}, shape="plaintext"];')
        edge_pairs = [("id", quote(f"legend-edge-{edge_kind.value}"))]
        edge_pairs += [(k, quote(v)) for k, v in EDGE_STYLE[edge_kind].items()]
        out.append(f"    {quote(a)} -- {quote(b)} {attributes(edge_pairs)};")
    out.append("  }")
    return out


def render(graph: Graph, *, legend: bool = True) -> str:
    nodes = graph.node_map()
    clusters = {c.id: c for c in graph.clusters}
    inside: dict[str | None, list[Node]] = {}
    for node in graph.nodes:
        inside.setdefault(node.cluster if node.cluster in clusters else None, []).append(node)
    out = [
        f"graph {quote(graph.title)} {{",
        f'  graph [rankdir="LR", fontname="{FONT}", fontsize="11", compound="true", tooltip=" ",'
        f' label={lines([*graph.notes])}, labelloc="t", nodesep="0.2", ranksep="0.5"];',
        f'  node [fontname="{FONT}", fontsize="10", color="#4a5568", margin="0.08,0.04"];',
        f'  edge [fontname="{FONT}", fontsize="9"];',
    ]
    for cluster in graph.clusters:
        fill = "#f7fafc" if cluster.is_host else "#ebf4ff"
        out.append(f"  subgraph {quote('cluster_' + cluster.id)} {{")
        head = [
            ("id", quote(cluster.id)),
            ("class", quote("netns " + cluster.kind)),
            ("label", lines(cluster_lines(cluster))),
            ("style", '"rounded,filled"'),
            ("fillcolor", quote(fill)),
            ("color", '"#718096"'),
            ("tooltip", lines(cluster_details(cluster))),
        ]
        out.append("    " + " ".join(f"{key}={value};" for key, value in head))
        for node in inside.get(cluster.id, []):
            out.append(f"    {quote(node.id)} {attributes(node_attributes(node, cluster))};")
        out.append("  }")
    for node in inside.get(None, []):
        out.append(f"  {quote(node.id)} {attributes(node_attributes(node, None))};")
    for edge in graph.edges:
        out.append(
            f"  {quote(edge.source)} -- {quote(edge.target)} {attributes(edge_attributes(edge, nodes))};"
        )
    if legend:
        out += _legend(graph)
    out.append("}")
    return "\n".join(out) + "\n"
