"""`which TARGET` reads only the target's namespace when the target says where (vethpeer/focus.py):
the focused answer must be the full walk's, target by target, on every truth topology.

Both walks run in this process against the same lab (prefix ``vqh``): ``gather`` with the
target (the focused walk) and without (everything), then ``targets.resolve`` on each; the
rows (ends, peers, bridges, relations, workloads), the host-network answer and any error
must be the same. Every target kind that may take the shortcut does (asserted), and the ones
that may not (a MAC or an IP held twice on the node, MACs inside namespaces) are compared too:
:func:`cloned` holds a host veth's MAC cloned into another namespace and one IP in two
namespaces, where the full walk says "ambiguous". Workload names (here the kernel source's: a
process's ``pid/N (comm)``, a bind mount's path, an ID or a prefix of one) take the shortcut
after the sources (``by_name``); tests/integration/test_focus_cri.py does the same for pods and
Docker containers.
"""

from __future__ import annotations

import io
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import _need_lab
from tests.lab import netlab
from tests.lab.netlab import HOST, Lab, Topology
from vethpeer.collect import Request, gather
from vethpeer.environment import Environment
from vethpeer.errors import VethpeerError
from vethpeer.focus import BY_NAME, by_name, locate
from vethpeer.model import Report, Row
from vethpeer.netns import discover
from vethpeer.sources import Context, kernel
from vethpeer.targets import ifindex, resolve


class FocusLab(Lab):
    prefix = "vqh"


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Lab, list[Topology]]]:
    _need_lab()
    lab = FocusLab()
    try:
        topologies = list(netlab.everything(lab))
        topologies.append(netlab.isolated_pairs(lab, 2))
        topologies.append(cloned(lab))
        yield lab, topologies
    finally:
        lab.cleanup()
        settled()


def cloned(lab: Lab) -> Topology:
    """Two host veths' namespaces; the second's eth0 takes the first host veth's MAC, and both
    eth0s one IP (a cloned MAC, a duplicated IP: the full walk answers "ambiguous" for each)."""
    first, second = lab.netns_many(["kc", "kd"])
    pairs = (
        lab.veth(HOST, lab.link_name("kc"), first, "eth0"),
        lab.veth(HOST, lab.link_name("kd"), second, "eth0"),
    )
    mac = netlab.kernel_links(HOST)[pairs[0].a.ifname]["address"]
    netlab._run([*second.ip(), "link", "set", "dev", "eth0", "address", mac])
    for pair in pairs:
        lab.addr(pair.b, lab.ip4(7, 2))
    return Topology((first, second), pairs)


def settled(timeout: float = 20.0) -> None:
    """The kernel frees deleted namespaces later, and only then drops the host's nsids for them:
    wait until the host's nsids stop changing, so that the next module starts from a still host."""
    deadline = time.monotonic() + timeout
    last = netlab.nsid_names(HOST)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = netlab.nsid_names(HOST)
        if now == last:
            return
        last = now


def _row(row: Row) -> tuple[Any, ...]:
    peer = row.peer
    return (
        row.end.ns.key,
        row.end.link.name,
        row.end.link.addresses,
        row.end.master,
        row.end.workload.label,
        row.relation,
        None if peer is None else (peer.ns.key, peer.link.name, peer.master, peer.workload.label),
        row.unresolved,
    )


def _answer(report: Report, target: str) -> tuple[Any, ...]:
    try:
        match = resolve(report, target)
    except VethpeerError as error:
        return ("error", type(error).__name__, str(error))
    return ("rows", tuple(_row(r) for r in match.rows), tuple(w.label for w in match.host_network))


def _targets(lab: Lab, topologies: list[Topology]) -> dict[str, bool]:
    """target -> whether it may take the shortcut."""
    found: dict[str, bool] = {str(os.getpid()): True, "/proc/self/ns/net": True}
    host_links = netlab.kernel_links(HOST)
    macs: dict[str, int] = {}  # MAC -> how many links have it, on the whole node
    ips: dict[str, set[str]] = {}  # IP -> the namespaces that hold it ("" the host)
    for link in host_links.values():
        macs[link["address"]] = macs.get(link["address"], 0) + 1
        for cidr in link.get("addresses", ()):
            ips.setdefault(cidr.split("/")[0], set()).add("")
    for topology in topologies:
        for ns in topology.namespaces:
            if ns.name:
                found[ns.name] = True
            if ns.pid is not None:
                found[str(ns.pid)] = True
            found[ns.path] = True
            for link in netlab.kernel_links(ns).values():
                found.setdefault(link["address"], False)  # a MAC inside: the full walk
                macs[link["address"]] = macs.get(link["address"], 0) + 1
                for cidr in link.get("addresses", ()):
                    ips.setdefault(cidr.split("/")[0], set()).add(ns.path)
    for ip, holders in ips.items():  # an IP one namespace holds, the host not: the shortcut
        found[ip] = len(holders) == 1 and "" not in holders
    for topology in topologies:
        for pair in topology.pairs:
            for end in (pair.a, pair.b):
                if end.ns.is_host:
                    link = host_links[end.ifname]
                    pairs_out = link.get("linkinfo", {}).get("info_kind") == "veth" and "link_netnsid" in link
                    found[end.ifname] = pairs_out
                    found[f"if{link['ifindex']}"] = pairs_out
                    # its MAC, when no other link on the node has it (a bridge takes its lowest port's)
                    found[link["address"]] = pairs_out and macs[link["address"]] == 1
    found.update({f"{lab.prefix}-nothing": False, "lo": False, "if2147483646": False})
    return found


def test_focused_which_answers_as_the_full_walk(world: tuple[Lab, list[Topology]]) -> None:
    lab, topologies = world
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
    sources = [kernel.KernelNames()]
    full = gather(Request(sources=sources, ovs=False, fdb=True), env)
    discovery = discover()
    took = []
    for target, shortcut in _targets(lab, topologies).items():
        focused = gather(Request(sources=sources, ovs=False, fdb=True, target=target), env)
        assert _answer(focused, target) == _answer(full, target), target
        if shortcut:
            assert locate(discovery, target) is not None, f"{target} took the full walk"
            assert len(focused.snapshot.views) < len(full.snapshot.views), target
            took.append(target)
    assert len(took) > 20
    kinds = {
        "mac": [t for t in took if t.count(":") == 5],
        "ip": [t for t in took if t.startswith("100.")],
        "ifindex": [t for t in took if ifindex(t) is not None],
    }
    assert all(kinds.values()), kinds


def test_a_cloned_mac_and_a_duplicated_ip_walk_everything(world: tuple[Lab, list[Topology]]) -> None:
    """The full walk says "ambiguous" for both: the shortcut must see it cannot prove otherwise."""
    lab, topologies = world
    first, second = topologies[-1].pairs
    mac = netlab.kernel_links(HOST)[first.a.ifname]["address"]
    assert netlab.kernel_links(second.b.ns)["eth0"]["address"] == mac
    discovery = discover()
    assert locate(discovery, mac) is None
    assert locate(discovery, lab.ip4(7, 2).split("/")[0]) is None
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
    for target in (mac, lab.ip4(7, 2).split("/")[0]):
        focused = gather(Request(sources=[kernel.KernelNames()], ovs=False, target=target), env)
        assert _answer(focused, target)[:2] == ("error", "Ambiguous"), target


def _workload_targets(full: Report) -> set[str]:
    """Every name, label and ID the sources gave, a prefix of each ID, and names of nothing."""
    found = {"vqh-nothing", "pod/vqh-nothing", "vqh-a/vqh-b", "f", "0"}
    workloads = [w for claimed in full.workloads.values() for w in claimed]
    for w in workloads:
        found |= {w.name, w.label}
        if w.id:
            found |= {w.id, w.id[:2]}
    return {t for t in found if t.strip()}


def test_focused_which_by_name_answers_as_the_full_walk(world: tuple[Lab, list[Topology]]) -> None:
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
    sources = [kernel.KernelNames()]
    full = gather(Request(sources=sources, ovs=False, fdb=True), env)
    discovery = discover()
    results = [kernel.KernelNames().collect(Context(discovery.host, discovery.namespaces))]
    by_names = 0
    for target in sorted(_workload_targets(full)):
        focused = gather(Request(sources=sources, ovs=False, fdb=True, target=target), env)
        assert _answer(focused, target) == _answer(full, target), target
        if locate(discovery, target) == BY_NAME:
            assert by_name(discovery, results, target) is not None, target
            assert len(focused.snapshot.views) < len(full.snapshot.views), target
            by_names += 1
    assert by_names > 20


def test_a_peer_in_a_third_namespace_is_read_too(world: tuple[Lab, list[Topology]]) -> None:
    """straight_pair: eth0's peer is another lab namespace, not the host: both are read."""
    _lab, topologies = world
    left, right = topologies[0].namespaces
    assert left.name is not None
    found = locate(discover(), left.name)
    assert found is not None
    assert {key.ino for key in found.namespaces} == {left.inode, right.inode}
    assert found.host_links == ()


def test_an_alternative_name_is_not_taken_for_the_interfaces_name(world: tuple[Lab, list[Topology]]) -> None:
    """RTM_GETLINK by name finds a link by an altname too, but a target names an interface by its
    name only: a host veth whose altname is another namespace's `ip netns` name answers for that
    namespace, as the full walk does."""
    _lab, topologies = world
    host = next((t, e) for t in topologies for p in t.pairs for e in (p.a, p.b) if e.ns.is_host)
    alt = next(ns.name for t in topologies if t is not host[0] for ns in t.namespaces if ns.name)
    subprocess.run(["ip", "link", "property", "add", "dev", host[1].ifname, "altname", alt], check=True)
    try:
        env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
        sources = [kernel.KernelNames()]
        full = gather(Request(sources=sources, ovs=False, fdb=True), env)
        focused = gather(Request(sources=sources, ovs=False, fdb=True, target=alt), env)
        assert _answer(full, alt)[0] == "rows"
        assert _answer(focused, alt) == _answer(full, alt)
    finally:
        subprocess.run(["ip", "link", "property", "del", "dev", host[1].ifname, "altname", alt], check=False)
