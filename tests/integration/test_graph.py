"""`vethpeer graph` against real topologies: the DOT output, laid out and parsed back by
Graphviz's own ``dot -Tjson``, must have exactly the nodes and edges the kernel reports
(``ip -j -d link`` in every namespace; ``ovs-vsctl list-ports`` for the private Open vSwitch,
whose userspace datapath the kernel knows nothing about), edge by edge.

The classic topologies are built for real: a direct pair between two namespaces, two
namespaces on a Linux bridge, two on an OVS bridge (the test's own ovsdb-server and
ovs-vswitchd, ``datapath_type=netdev`` where the kernel has no openvswitch module), a
router namespace with two legs, and a macvlan on a host device. Everything is named
``vpg*`` and removed afterwards. The HTML page is opened in real headless Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, run_vethpeer
from tests.integration.graph_truth import Picture, Truth, kernel_truth, label_of, nid
from tests.lab import netlab
from tests.lab.browser import CHROMIUM, Browser
from tests.lab.netlab import HOST, Ns, Topology
from tests.lab.ovs_lab import OvsLab, OvsUnavailable, ovs_binaries_available, start_ovs
from tests.lab.vpg_lab import PREFIX, GraphLab
from tests.policy import need

pytestmark = pytest.mark.integration
DOT = "/usr/bin/dot"


@dataclass
class World:
    lab: GraphLab
    ovs: OvsLab
    topologies: dict[str, Topology]
    ovs_bridge: str
    env: dict[str, str]
    pictures: dict[str, Picture]  # topology -> `vethpeer graph <it> -o dot`, parsed back by Graphviz


def _ovs_topology(lab: GraphLab, ovs: OvsLab) -> tuple[Topology, str]:
    bridge = f"{PREFIX}ovs{lab.tag}"
    ovs.add_bridge(bridge)
    namespaces = lab.netns_many(["o0", "o1"])
    pairs = []
    for i, ns in enumerate(namespaces):
        pair = lab.veth(HOST, lab.link_name(f"o{i}"), ns, "eth0")
        ovs.add_port(bridge, pair.a.ifname)
        lab.addr(pair.b, lab.ip4(7, i + 2))
        pairs.append(pair)
    return Topology(tuple(namespaces), tuple(pairs)), bridge


def _narrowing(topologies: dict[str, Topology], ovs_bridge: str) -> dict[str, list[str]]:
    def first(name: str) -> list[str]:
        return [topologies[name].namespaces[0].name or ""]

    return {
        "direct": first("direct"),
        "bridge": ["--bridge", topologies["bridge"].bridges[0].ifname],
        "ovs": ["--bridge", ovs_bridge],
        "router": first("router"),
        "macvlan": first("macvlan"),
        "down": first("down"),
    }


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    need(os.path.exists(DOT), "needs Graphviz (Debian package graphviz)")
    need(ovs_binaries_available(), "needs openvswitch-switch (ovsdb-server, ovs-vswitchd, ovs-vsctl)")
    netlab.sweep(PREFIX)
    try:
        ovs = start_ovs(PREFIX)
    except OvsUnavailable as error:
        need(False, f"cannot start a private OVS: {error}")
        raise
    try:
        lab = GraphLab()
        with lab:
            topologies = {
                "direct": netlab.straight_pair(lab),
                "bridge": netlab.bridged(lab, count=2),
                "router": netlab.router(lab),
                "macvlan": netlab.macvlan(lab),
            }
            down_ns = lab.netns("dn")
            down = lab.veth(HOST, lab.link_name("dn"), down_ns, "eth0", up=False)
            topologies["down"] = Topology((down_ns,), (down,))
            topologies["ovs"], bridge = _ovs_topology(lab, ovs)
            env = {"OVS_RUNDIR": str(ovs.run_dir)}
            pictures = {}
            for name, narrow in _narrowing(topologies, bridge).items():
                # Narrowed, so that Graphviz lays out this topology, not every namespace of a busy
                # host; one hop beyond is kept, so a wrong extra edge would still be in the picture.
                done = run_vethpeer("graph", *narrow, "-o", "dot", "--no-collapse", env=env)
                assert done.returncode == 0, done.stderr
                pictures[name] = Picture.parse(done.stdout, DOT)
            yield World(lab, ovs, topologies, bridge, env, pictures)
            for name, topo in topologies.items():
                for port in topo.pairs if name == "ovs" else ():
                    ovs.del_port(bridge, port.a.ifname)
    finally:
        ovs.cleanup()


def _host_names(world: World, name: str) -> list[str]:
    topo = world.topologies[name]
    names = [b.ifname for b in topo.bridges]
    if name == "macvlan":
        names.append(world.lab.link_name("mv1"))
    if name == "ovs":
        names.append(world.ovs_bridge)
    return names


def _ovs_truth(world: World, truth: Truth) -> None:
    """OVS ports from OVSDB: the kernel (userspace datapath) shows no master for them."""
    from vethpeer.drawing.build import ovs_bridge_id

    host = netlab.kernel_links(HOST)
    bridge = world.ovs_bridge
    target = nid(HOST.inode, host[bridge]["ifindex"]) if bridge in host else ovs_bridge_id(bridge)
    truth.nodes.add(target)
    truth.names[target] = bridge
    for port in world.ovs.vsctl("list-ports", bridge).split():
        truth.edges.add(("ovs-port", nid(HOST.inode, host[port]["ifindex"]), target))


def _compare(picture: Picture, truth: Truth, spaces: list[Ns]) -> None:
    mine = {f"cluster_ns{ns.inode}" for ns in spaces}
    drawn = {n for n, c in picture.cluster_of.items() if c in mine}
    host_drawn = {n for n in truth.nodes if n.startswith(f"n{HOST.inode}-") or n.startswith("ovs-")}
    assert drawn == {
        n for n in truth.nodes if not n.startswith(f"n{HOST.inode}-") and not n.startswith("ovs-")
    }
    assert host_drawn <= set(picture.nodes), host_drawn - set(picture.nodes)
    subset = drawn | host_drawn
    assert picture.edge_keys(subset) == truth.edges
    # nothing else hangs off these interfaces: no extra peer, port or parent anywhere
    stray = [e for e in picture.edges_touching(subset) if e[1] not in subset or e[2] not in subset]
    assert not stray, stray
    for node in subset:
        assert label_of(picture, node) == truth.names[node], node


@pytest.mark.parametrize("name", ["direct", "bridge", "ovs", "router", "macvlan", "down"])
def test_nodes_and_edges_equal_the_kernel(world: World, name: str) -> None:
    topo = world.topologies[name]
    truth = kernel_truth(topo.namespaces, _host_names(world, name))
    if name == "ovs":
        _ovs_truth(world, truth)
    assert truth.edges, "the topology has edges"
    _compare(world.pictures[name], truth, list(topo.namespaces))


def test_namespaces_are_clusters_labelled_with_their_workload(world: World) -> None:
    for name, topo in world.topologies.items():
        for ns in topo.namespaces:
            cluster = f"cluster_ns{ns.inode}"
            assert world.pictures[name].drawn_text(cluster)[0] == f"netns/{ns.name}"


def test_kinds_and_marks(world: World) -> None:
    host = netlab.kernel_links(HOST)
    bridge = world.topologies["bridge"].bridges[0].ifname
    assert world.pictures["bridge"].nodes[nid(HOST.inode, host[bridge]["ifindex"])]["class"] == "bridge"
    ovs_node = world.pictures["ovs"].nodes[nid(HOST.inode, host[world.ovs_bridge]["ifindex"])]
    assert "ovs-bridge" in ovs_node["class"]
    pic = world.pictures["down"]
    down = world.topologies["down"].pairs[0]
    for end in (down.a, down.b):
        node = pic.nodes[nid(end.ns.inode, end.ifindex)]
        assert "down" in node["class"].split(), node["class"]
        assert "[DOWN]" in " ".join(pic.drawn_text(nid(end.ns.inode, end.ifindex)))
        assert "dashed" in node["style"] or "bold" in node["style"] or "solid" in node["style"]
    assert "legend-down" in pic.nodes  # the legend explains the mark
    macvlan = world.pictures["macvlan"]
    parent = [e for e in macvlan.edges if e[0] == "parent"]
    assert len(parent) == 2 and all(macvlan.nodes[e[2]]["class"] == "bridge" for e in parent)
    assert macvlan.nodes["legend-parent-b"]["label"] == "macvlan/ipvlan/vlan parent"


def test_target_narrows_to_peers_bridges_and_one_hop(world: World) -> None:
    rtr, client_a, client_b = world.topologies["router"].namespaces
    done = run_vethpeer("graph", client_a.name or "", "-o", "json", env=world.env)
    assert done.returncode == 0, done.stderr
    graph = done.json()["graph"]
    assert graph["schema_version"] == 1
    clusters = {c["id"] for c in graph["clusters"]}
    assert clusters == {f"ns{client_a.inode}", f"ns{rtr.inode}", f"ns{HOST.inode}"}
    names = {(n["cluster"], n["name"]) for n in graph["nodes"]}
    lab = world.lab
    assert (f"ns{rtr.inode}", "eth0") in names and (f"ns{rtr.inode}", "eth1") not in names
    assert (f"ns{HOST.inode}", lab.bridge_name("a")) in names
    assert (f"ns{HOST.inode}", lab.bridge_name("b")) not in names
    assert f"ns{client_b.inode}" not in clusters


def test_bridge_option_and_collapse(world: World) -> None:
    bridge = world.topologies["bridge"].bridges[0].ifname
    # --no-doctor: the lab's namespaces have no default route, a warning that keeps them apart
    done = run_vethpeer("graph", "--bridge", bridge, "--collapse", "--no-doctor", "-o", "json", env=world.env)
    assert done.returncode == 0, done.stderr
    graph = done.json()["graph"]
    (group,) = [n for n in graph["nodes"] if n["kind"] == "group"]
    assert group["count"] == 2
    assert sorted(group["members"]) == sorted(
        f"netns/{ns.name}" for ns in world.topologies["bridge"].namespaces
    )
    assert [e["kind"] for e in graph["edges"] if e["source"] == group["id"]] == ["group"]
    assert graph["collapsed"] is True
    marked = run_vethpeer("graph", "--bridge", bridge, "--collapse", "-o", "json", env=world.env).json()[
        "graph"
    ]
    assert not [n for n in marked["nodes"] if n["kind"] == "group"]  # workloads with findings stay visible


def test_doctor_findings_are_marked(world: World) -> None:
    """The lab's namespaces have addresses and no default route: doctor warns (no-default-route)."""
    pic = world.pictures["bridge"]
    pair = world.topologies["bridge"].pairs[0]
    name = nid(pair.b.ns.inode, pair.b.ifindex)
    assert "warning" in pic.nodes[name]["class"].split()
    assert "[WARNING]" in " ".join(pic.drawn_text(name))
    assert "no-default-route" in pic.nodes[name]["tooltip"]
    assert "legend-warning" in pic.nodes


def test_svg_and_png_come_from_graphviz(world: World) -> None:
    ns = world.topologies["router"].namespaces[0]
    svg = run_vethpeer("graph", ns.name or "", "-o", "svg", env=world.env)
    assert svg.returncode == 0, svg.stderr
    root = ET.fromstring(svg.stdout)
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    assert f"ns{ns.inode}" in ids
    png = subprocess.run(
        [sys.executable, "-m", "vethpeer", "graph", ns.name or "", "-o", "png"],
        capture_output=True,
        env={**os.environ, **world.env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        check=False,
    )
    assert png.returncode == 0, png.stderr
    assert png.stdout.startswith(b"\x89PNG\r\n\x1a\n")


def test_without_graphviz_a_clear_error(world: World) -> None:
    done = run_vethpeer("graph", "-o", "svg", env={**world.env, "VETHPEER_DOT": "/nonexistent/dot"})
    assert done.returncode == 8
    assert "graphviz" in done.stderr.lower() and done.stderr.count("\n") == 1
    assert (
        run_vethpeer("graph", "-o", "dot", env={**world.env, "VETHPEER_DOT": "/nonexistent/dot"}).returncode
        == 0
    )


def test_mermaid_has_every_edge(world: World) -> None:
    direct = world.topologies["direct"].namespaces[0].name or ""
    done = run_vethpeer("graph", direct, "-o", "mermaid", env=world.env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("flowchart LR\n")
    pair = world.topologies["direct"].pairs[0]
    a, b = (nid(e.ns.inode, e.ifindex).replace("-", "_") for e in (pair.a, pair.b))
    assert f"  {a} === {b}" in done.stdout or f"  {b} === {a}" in done.stdout


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.handlers: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.handlers += [(tag, name) for name, _ in attrs if name.lower().startswith("on")]


def _open_page(path: Path, search: str, shot: Path) -> dict[str, object]:
    need(os.access(CHROMIUM, os.X_OK), "needs chromium (Debian package chromium)")
    with Browser() as browser:
        page = browser.open(path.as_uri())
        hits = page.evaluate(
            "(function(){var s=document.getElementById('search');s.value=" + json.dumps(search) + ";"
            "s.dispatchEvent(new Event('input'));"
            "return {count:document.getElementById('count').textContent,"
            "rows:document.querySelectorAll('#rows tbody tr:not(.hidden)').length,"
            "boxes:document.querySelectorAll('svg g.node.hit').length,"
            "text:document.body.innerText,"
            "images:document.images.length,"
            "scripts:document.scripts.length};})()"
        )
        page.screenshot(str(shot))
        assert page.problems() == []
    assert isinstance(hits, dict)
    return hits


def test_html_page_in_headless_chromium(world: World, tmp_path: Path) -> None:
    rtr = world.topologies["router"].namespaces[0]
    done = run_vethpeer("graph", rtr.name or "", "-o", "html", env=world.env)
    assert done.returncode == 0, done.stderr
    page = tmp_path / "graph.html"
    page.write_text(done.stdout)
    assert "http://" not in done.stdout.replace("http://www.w3.org/", "")  # no network resource
    hits = _open_page(page, rtr.name or "", tmp_path / "graph.png")
    assert int(str(hits["rows"])) >= 2 and int(str(hits["boxes"])) >= 2, hits
    assert (tmp_path / "graph.png").read_bytes().startswith(b"\x89PNG")
    shutil.copy(tmp_path / "graph.png", tmp_path / "kept-artifact.png")


HOSTILE = "vpg-x<img src=x onerror=alert(1)>&amp;\"'\u00e9<script>"  # no "/": a netns name is a file name


def test_hostile_names_render_and_never_inject(world: World, tmp_path: Path) -> None:
    lab = world.lab
    subprocess.run(["ip", "netns", "add", HOSTILE], check=True)
    try:
        ns = Ns(name=HOSTILE, inode=os.stat(f"/run/netns/{HOSTILE}").st_ino)
        lab.veth(HOST, lab.link_name("x"), ns, "eth0")
        _hostile_checks(world, ns, tmp_path)
    finally:  # `ip -batch` (the lab's clean-up) cannot take this name: one `ip netns del` of its own
        subprocess.run(["ip", "netns", "del", HOSTILE], check=False)


def _hostile_checks(world: World, ns: Ns, tmp_path: Path) -> None:
    from vethpeer.drawing.text import shorten

    dot = run_vethpeer("graph", HOSTILE, "-o", "dot", env=world.env)
    assert dot.returncode == 0, dot.stderr
    picture = Picture.parse(dot.stdout, DOT)
    # Graphviz draws exactly the (shortened) name: quotes, <, & and the entity-looking text intact
    assert picture.drawn_text(f"cluster_ns{ns.inode}")[0] == shorten(f"netns/{HOSTILE}")
    assert "netns " + HOSTILE in dot.stdout.replace("&amp;", "&").replace('\\"', '"')
    mermaid = run_vethpeer("graph", HOSTILE, "-o", "mermaid", env=world.env).stdout
    assert "<img" not in mermaid and "#60;img" in mermaid and "#60;script#62;" in mermaid
    html_run = run_vethpeer("graph", HOSTILE, "-o", "html", env=world.env)
    assert html_run.returncode == 0, html_run.stderr
    tags = _Tags()
    tags.feed(html_run.stdout)
    assert "img" not in tags.tags and tags.tags.count("script") == 2
    assert tags.handlers == []
    page = tmp_path / "hostile.html"
    page.write_text(html_run.stdout)
    hits = _open_page(page, "onerror=alert", tmp_path / "hostile.png")
    assert hits["images"] == 0 and hits["scripts"] == 2, hits
    assert int(str(hits["rows"])) >= 1, hits
    assert HOSTILE in str(hits["text"])


MERMAID_JS = os.environ.get("VETHPEER_MERMAID_JS") or str(
    ROOT / ".cache" / "mermaid" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
)
RENDER_MERMAID = """(async function(){
mermaid.initialize({startOnLoad: false, securityLevel: 'strict'});
var r = await mermaid.render('picture', SOURCE);
document.getElementById('out').innerHTML = r.svg;
var svg = document.querySelector('#out svg');
return {nodes: svg.querySelectorAll('g.node').length, clusters: svg.querySelectorAll('g.cluster').length,
        edges: svg.querySelectorAll('.flowchart-link').length, text: svg.textContent,
        images: document.images.length, scripts: document.scripts.length};
})()"""


def _render_mermaid(source: str, tmp_path: Path) -> dict[str, object]:
    """Mermaid's own parser and renderer (mermaid.js from npm) in headless Chromium."""
    need(os.access(CHROMIUM, os.X_OK), "needs chromium (Debian package chromium)")
    need(
        os.path.exists(MERMAID_JS), f"needs mermaid.js at {MERMAID_JS} (scripts/install --test puts it there)"
    )
    page = tmp_path / "mermaid.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f'<script src="{Path(MERMAID_JS).as_uri()}"></script></head><body><div id="out"></div></body></html>'
    )
    with Browser() as browser:
        shown = browser.open(page.as_uri())
        result = shown.evaluate(RENDER_MERMAID.replace("SOURCE", json.dumps(source)), wait=True)
        assert shown.problems() == []
    assert isinstance(result, dict)
    return result


def test_mermaid_renders_in_mermaid_itself(world: World, tmp_path: Path) -> None:
    rtr = world.topologies["router"].namespaces[0].name or ""
    source = run_vethpeer("graph", rtr, "-o", "mermaid", env=world.env)
    assert source.returncode == 0, source.stderr
    graph = run_vethpeer("graph", rtr, "-o", "json", env=world.env).json()["graph"]
    drawn = _render_mermaid(source.stdout, tmp_path)
    marks = {m for n in graph["nodes"] for m in n["marks"]}
    assert drawn["nodes"] == len(graph["nodes"]) + len(marks)  # + one legend entry per mark used
    assert drawn["clusters"] == len(graph["clusters"]) + (1 if marks else 0)
    assert drawn["edges"] == len(graph["edges"])
    assert world.lab.bridge_name("a") in str(drawn["text"])


def test_mermaid_of_a_hostile_name_is_text(world: World, tmp_path: Path) -> None:
    subprocess.run(["ip", "netns", "add", HOSTILE], check=True)
    try:
        ns = Ns(name=HOSTILE, inode=os.stat(f"/run/netns/{HOSTILE}").st_ino)
        world.lab.veth(HOST, world.lab.link_name("y"), ns, "eth0")
        source = run_vethpeer("graph", HOSTILE, "-o", "mermaid", env=world.env)
        assert source.returncode == 0, source.stderr
        drawn = _render_mermaid(source.stdout, tmp_path)
        assert drawn["images"] == 0 and drawn["scripts"] == 1, drawn
        assert "netns/vpg-x<img src" in str(drawn["text"]), drawn["text"]
    finally:
        subprocess.run(["ip", "netns", "del", HOSTILE], check=False)
