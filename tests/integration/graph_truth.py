"""The two sides of the graph tests: the picture parsed back through Graphviz's own
``dot -Tjson``, and the truth read from the kernel with ``ip -j -d link`` in each namespace
(plus ``ovs-vsctl list-ports`` for OVS bridges, which the userspace datapath hides from
the kernel). Both are reduced to node IDs and edges in vethpeer's ID scheme
(``n<netns inode>-<ifindex>``) so that they can be compared edge by edge.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.lab.netlab import HOST, Ns, kernel_links, nsid_names

EdgeKey = tuple[str, str, str] | tuple[str, frozenset[str]]


def nid(inode: int, index: int) -> str:
    return f"n{inode}-{index}"


@dataclass
class Picture:
    """A DOT document, laid out and parsed back by Graphviz."""

    nodes: dict[str, dict[str, Any]]  # name -> object
    clusters: dict[str, dict[str, Any]]  # name -> object
    cluster_of: dict[str, str]  # node name -> cluster name
    edges: list[tuple[str, str, str]]  # (kind, tail, head)

    @classmethod
    def parse(cls, dot_text: str, dot: str = "/usr/bin/dot") -> Picture:
        done = subprocess.run([dot, "-Tjson"], input=dot_text.encode(), capture_output=True, check=True)
        doc = json.loads(done.stdout)
        objects = doc.get("objects", [])
        by_gvid = {o["_gvid"]: o for o in objects if not o["name"].startswith("cluster_")}
        clusters = {o["name"]: o for o in objects if o["name"].startswith("cluster_")}
        cluster_of = {}
        for name, cluster in clusters.items():
            for gvid in cluster.get("nodes", []):
                cluster_of[by_gvid[gvid]["name"]] = name
        edges = [
            (e.get("class", ""), by_gvid[e["tail"]]["name"], by_gvid[e["head"]]["name"])
            for e in doc.get("edges", [])
        ]
        return cls({o["name"]: o for o in by_gvid.values()}, clusters, cluster_of, edges)

    def drawn_text(self, name: str) -> list[str]:
        """The lines Graphviz actually drew for a node or cluster (entities decoded, as on screen)."""
        obj = self.nodes.get(name) or self.clusters[name]
        return [op["text"] for op in obj.get("_ldraw_", []) if op.get("op") == "T"]

    def edge_keys(self, among: set[str]) -> set[EdgeKey]:
        return {key(kind, a, b) for kind, a, b in self.edges if a in among and b in among}

    def edges_touching(self, among: set[str]) -> list[tuple[str, str, str]]:
        return [e for e in self.edges if e[1] in among or e[2] in among]


def key(kind: str, a: str, b: str) -> EdgeKey:
    return (kind, frozenset({a, b})) if kind == "veth" else (kind, a, b)


@dataclass
class Truth:
    nodes: set[str] = field(default_factory=set)
    edges: set[EdgeKey] = field(default_factory=set)
    names: dict[str, str] = field(default_factory=dict)  # node id -> ifname
    host_kept: set[int] = field(default_factory=set)


def _kind(link: dict[str, Any]) -> str | None:
    kind: str | None = link.get("linkinfo", {}).get("info_kind")
    return kind


def kernel_truth(spaces: Iterable[Ns], host_names: Iterable[str] = ()) -> Truth:
    """What the kernel says about these namespaces, their host peers and those peers' masters.

    Non-host namespaces: every interface but ``lo`` (``lo`` when it is the only one);
    veth peers from ``link_index``/``link_netnsid`` with the nsid named by ``ip netns``
    (an unnamed nsid is the host: the only unnamed namespace these tests pair with);
    same-namespace peers and parents from ``link``; masters from ``master``. Host: the
    links named in ``host_names``, the peers found above, and their masters.
    """
    truth = Truth()
    spaces = list(spaces)
    by_name = {ns.name: ns for ns in spaces if ns.name is not None}
    host_links = kernel_links(HOST)
    host_index = {link["ifindex"]: link for link in host_links.values()}
    truth.host_kept = {host_links[n]["ifindex"] for n in host_names if n in host_links}
    for ns in spaces:
        links = kernel_links(ns)
        names = nsid_names(ns)
        shown = [link for link in links.values() if link["ifname"] != "lo"] or list(links.values())
        for link in shown:
            me = nid(ns.inode, link["ifindex"])
            truth.nodes.add(me)
            truth.names[me] = link["ifname"]
            if link.get("master"):
                truth.edges.add(("port", me, nid(ns.inode, links[link["master"]]["ifindex"])))
            peer: tuple[int, int] | None = None
            if "link_index" in link and link.get("link_netnsid") is not None:
                name = names.get(int(link["link_netnsid"]))
                peer_ns = by_name[name].inode if name is not None else HOST.inode
                peer = (peer_ns, int(link["link_index"]))
            elif link.get("link") and link["link"] in links:
                peer = (ns.inode, links[link["link"]]["ifindex"])
            if peer is None:
                continue
            if peer[0] == HOST.inode:
                truth.host_kept.add(peer[1])
            if _kind(link) == "veth":
                truth.edges.add(key("veth", me, nid(*peer)))
            else:
                truth.edges.add(("parent", me, nid(*peer)))
    masters = {
        host_links[host_index[i]["master"]]["ifindex"] for i in truth.host_kept if host_index[i].get("master")
    }
    truth.host_kept |= masters
    for index in truth.host_kept:
        link = host_index[index]
        me = nid(HOST.inode, index)
        truth.nodes.add(me)
        truth.names[me] = link["ifname"]
        if link.get("master"):
            truth.edges.add(("port", me, nid(HOST.inode, host_links[link["master"]]["ifindex"])))
        if _kind(link) != "veth" and link.get("link") in host_links:
            truth.edges.add(("parent", me, nid(HOST.inode, host_links[link["link"]]["ifindex"])))
    return truth


def label_of(picture: Picture, name: str) -> str:
    """The first drawn line of a node, as a person reads it (Graphviz has decoded the entities)."""
    lines = picture.drawn_text(name)
    return lines[0] if lines else ""
