"""The graph model, its narrowing and collapsing, and the renderers' escaping, on hand-built
reports (the correlator's real output over hand-built snapshots; the integration tests do the
same against the kernel). Names come from JSON-ish sources here: a container name is whatever a
daemon answered, so they carry quotes, markup, entities, unicode and DOT escape sequences."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from html import unescape
from html.parser import HTMLParser

import pytest

from vethpeer.commands.graph import AUTO_COLLAPSE_ABOVE
from vethpeer.correlate import correlate
from vethpeer.drawing import build, dot, graphviz, html, mermaid, shape, text
from vethpeer.drawing.elements import EdgeKind, Mark, NodeKind, document
from vethpeer.errors import ExitStatus, MissingProgram
from vethpeer.model import Claim, Link, Namespace, NsKey, NsView, Report, Snapshot, Workload, WorkloadKind
from vethpeer.netlink import IFF_UP

from .builders import UP, answered

HOST = NsKey(4, 1)
EVIL = 'web"];\n</script><script>alert(1)</script>&lt;\\N\\l & \u00e9\u2028\u00a0\x07'


def report(names: list[str], *, down: int | None = None) -> Report:
    """A host with eth0 (a NIC), bridge br0, and one namespace per name, eth0 <-> vethN on br0."""
    host_links = [
        Link(1, "lo", flags=UP | 0x8),
        Link(2, "eth0", flags=UP, mac="02:00:00:00:00:01", addresses=("192.0.2.1/24",)),
        Link(3, "br0", flags=UP, kind="bridge", mac="02:00:00:00:00:02"),
    ]
    views, claims, host_nsids = [], [], {}
    for i, name in enumerate(names):
        key = NsKey(4, 100 + i)
        ns = Namespace(key, mounts=(f"/run/docker/netns/{i:012x}",), pids=(1000 + i,))
        host_links.append(
            Link(
                10 + i,
                f"veth{i}",
                flags=UP,
                kind="veth",
                master=3,
                link=2,
                link_netnsid=i,
                mac=f"02:00:00:00:01:{i:02x}",
            )
        )
        flags = IFF_UP if down == i else UP
        inside = (
            Link(1, "lo", flags=UP | 0x8),
            Link(2, "eth0", flags=flags, kind="veth", link=10 + i, link_netnsid=0),
        )
        views.append(NsView(ns, inside, nsids={0: HOST}))
        host_nsids[i] = key
        claims.append(Claim(key, Workload(WorkloadKind.DOCKER, name, id=f"{i:064x}", source="docker"), 10))
    host = NsView(Namespace(HOST, is_host=True, pids=(1,)), tuple(host_links), nsids=host_nsids)
    snap = Snapshot(HOST, (host, *views))
    return correlate(snap, [answered("docker", claims)])


def test_model_has_clusters_nodes_and_edges() -> None:
    graph = build.build(report(["web", "db"]))
    assert [c.label for c in graph.clusters] == ["host", "docker/db", "docker/web"]
    kinds = {n.name: n.kind for n in graph.nodes if n.cluster == "ns1"}
    assert kinds == {
        "eth0": NodeKind.NIC,
        "br0": NodeKind.BRIDGE,
        "veth0": NodeKind.INTERFACE,
        "veth1": NodeKind.INTERFACE,
    }
    edges = {(e.source, e.target, e.kind) for e in graph.edges}
    assert ("n100-2", "n1-10", EdgeKind.VETH) in edges and ("n1-10", "n1-3", EdgeKind.PORT) in edges
    assert len(graph.edges) == 4
    doc = document(graph, {"schema_version": 1})
    assert doc["graph"]["schema_version"] == 1 and len(doc["graph"]["nodes"]) == len(graph.nodes)


def test_down_ends_are_marked_and_never_collapsed() -> None:
    graph = build.build(report([f"w{i}" for i in range(6)], down=2))
    (marked,) = [n for n in graph.nodes if n.marks]
    assert marked.marks == (Mark.NO_CARRIER,) and marked.id == "n102-2"
    folded = shape.collapse(graph)
    (group,) = [n for n in folded.nodes if n.kind is NodeKind.GROUP]
    assert group.count == 5 and "docker/w2" not in group.members
    assert any(c.label == "docker/w2" for c in folded.clusters)
    assert [e.kind for e in folded.edges if e.source == group.id] == [EdgeKind.GROUP]
    assert "[NO-CARRIER]" in dot.render(folded)


def test_namespace_pairs_are_one_group() -> None:
    """Namespaces joined only to each other (eth0 <-> eth0, both ifindex 2, nsid 0 both ways)."""
    views = [NsView(Namespace(HOST, is_host=True, pids=(1,)), (Link(1, "lo", flags=UP | 0x8),))]
    for i in range(3):
        a, b = NsKey(4, 200 + 2 * i), NsKey(4, 201 + 2 * i)
        for me, other in ((a, b), (b, a)):
            eth0 = Link(2, "eth0", flags=UP, kind="veth", link=2, link_netnsid=0)
            views.append(NsView(Namespace(me, mounts=(f"/run/netns/p{me.ino}",)), (eth0,), nsids={0: other}))
    graph = build.build(correlate(Snapshot(HOST, tuple(views)), []))
    assert len([e for e in graph.edges if e.kind is EdgeKind.VETH]) == 3
    folded = shape.collapse(graph)
    (group,) = [n for n in folded.nodes if n.kind is NodeKind.GROUP]
    assert group.count == 3 and group.id == "group-pairs" and len(folded.clusters) == 1
    assert group.members[0] == "net:[200] \u2013 net:[201]"
    assert text.node_lines(group)[0] == "3 namespace pairs joined by one veth"


def test_narrowing_keeps_peers_bridges_and_one_hop() -> None:
    graph = build.build(report(["web", "db", "cache"]))
    narrowed = shape.around(graph, shape.seeds_in(graph, {"ns100"}), "web")
    assert {c.label for c in narrowed.clusters} == {"host", "docker/web", "docker/db", "docker/cache"}
    assert "eth0" not in {n.name for n in narrowed.nodes if n.cluster == "ns1"}  # the NIC is two hops away
    only = shape.around_bridge(graph, "br0", "br0")
    assert len(only.clusters) == 4


def _dot_json(source: str) -> dict[str, object]:
    if not os.access("/usr/bin/dot", os.X_OK):
        pytest.skip("needs Graphviz")
    done = subprocess.run(["/usr/bin/dot", "-Tjson"], input=source.encode(), capture_output=True, check=True)
    loaded: dict[str, object] = json.loads(done.stdout)
    return loaded


def test_dot_draws_hostile_names_literally() -> None:
    graph = build.build(report([EVIL, "x" * 300]))
    parsed = _dot_json(dot.render(graph))
    objects = parsed["objects"]
    assert isinstance(objects, list)
    drawn = {
        o["name"]: [op["text"] for op in o.get("_ldraw_", []) if op.get("op") == "T"]
        for o in objects
        if "name" in o
    }
    evil_cluster = next(c for c in graph.clusters if c.label == f"docker/{EVIL}")
    assert drawn[f"cluster_{evil_cluster.id}"][0] == text.shorten(f"docker/{EVIL}")
    long_cluster = next(c for c in graph.clusters if "xxxx" in c.label)
    assert len(drawn[f"cluster_{long_cluster.id}"][0]) == text.LABEL_LIMIT
    assert "\\x07" in text.shorten(EVIL, 200) and "\x07" not in dot.render(graph)


def test_mermaid_labels_are_entities() -> None:
    out = mermaid.render(build.build(report([EVIL])))
    label_line = next(line for line in out.splitlines() if "subgraph ns100" in line)
    inner = label_line.split('["', 1)[1].rsplit('"]', 1)[0]
    assert '"' not in inner and "<" not in inner.replace("<br/>", "") and "\n" not in inner
    # U+2028 is shown as the text \u2028 (vethpeer/render/safe.py), so the label is shortened
    assert "#60;/" in inner and "#38;" in inner and "#92;u2028" in inner and "\u2028" not in inner


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.on: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.on += [a for a, _ in attrs if a.startswith("on")]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def test_html_cannot_be_injected() -> None:
    r = report([EVIL])
    graph = build.build(r)
    svg = graphviz.layout(dot.render(graph), "svg") if os.access("/usr/bin/dot", os.X_OK) else "<svg></svg>"
    page = html.render(graph, svg if isinstance(svg, str) else svg.decode(), r.rows)
    parsed = _Collect()
    parsed.feed(page)
    assert parsed.tags.count("script") == 2 and parsed.on == []
    data = json.loads(parsed.scripts[0])
    assert any(text.visible(EVIL) in " ".join(lines) for lines in data["clusters"].values())
    digest = base64.b64encode(hashlib.sha256(html.SCRIPT.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in unescape(page) and parsed.scripts[1] == html.SCRIPT
    assert "</script><script>alert" not in page


def test_script_json_cannot_close_its_element() -> None:
    out = html.script_json({"a": "</script><!--\u2028&"})
    assert "<" not in out and ">" not in out and "&" not in out and "\u2028" not in out
    assert json.loads(out) == {"a": "</script><!--\u2028&"}


def test_missing_graphviz_is_exit_8_naming_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graphviz, "FALLBACKS", ("/nonexistent/dot",))
    with pytest.raises(MissingProgram) as raised:
        graphviz.find_dot({"PATH": "/nonexistent"})
    assert raised.value.status is ExitStatus.MISSING_PROGRAM and int(raised.value.status) == 8
    assert "graphviz" in (raised.value.hint or "")


def test_auto_collapse_threshold_is_documented() -> None:
    with open(
        os.path.join(os.path.dirname(__file__), "..", "..", "docs", "graph.md"), encoding="utf-8"
    ) as docs:
        words = " ".join(docs.read().split())
    assert f"more than {AUTO_COLLAPSE_ABOVE} workload namespaces are drawn" in words
    assert f"up to {AUTO_COLLAPSE_ABOVE} drawn workload namespaces" in words


def _shared_namespace_report() -> Report:
    """docker/web's namespace, also claimed by its cgroup and its process."""
    base = report(["web"])
    key = NsKey(4, 100)
    others = [
        Claim(key, Workload(WorkloadKind.CONTAINER, "0" * 12, id="0" * 64, source="cgroup"), 5),
        Claim(key, Workload(WorkloadKind.PROCESS, "pid/1000 (sleep)", source="kernel"), 1),
    ]
    return correlate(base.snapshot, [answered("docker", [Claim(key, base.workloads[key][0], 10), *others])])


@pytest.mark.parametrize("render", [dot.render, mermaid.render])
def test_a_namespace_label_says_what_else_names_it(render: object) -> None:
    """Not "+2 more": the other workloads of the namespace, by name."""
    out = render(build.build(_shared_namespace_report()))  # type: ignore[operator]
    assert "more" not in out
    sleep = "pid/1000 #40;sleep#41;" if render is mermaid.render else "pid/1000 (sleep)"  # entities
    assert "also container/000000000000" in out and f"also {sleep}" in out
