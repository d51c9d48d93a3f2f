"""vethpeer's own rtnetlink decoder (vethpeer/netlink.py) against pyroute2, on the same real links.

pyroute2 is the reference: both read the same namespaces, one after the other, and
every field vethpeer uses must agree. pyroute2 is entered with vethpeer's own
``netns.inside()`` (setns of this thread, then back), never ``IPRoute(netns=...)``,
which forks a helper and creates the namespace when the name does not exist.

Needs: root, iproute2, pyroute2 (PyPI, in the ``test`` extra).
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.lab import netlab
from tests.lab.netlab import HOST, Lab, Ns, Topology
from tests.policy import need
from vethpeer.model import FdbEntry, Link
from vethpeer.netlink import BRPORT_STATES, RtnlSocket
from vethpeer.netns import inside

pytestmark = pytest.mark.integration

NSID_UNSET = (None, -1, 0xFFFFFFFF)
SETTLE_SECONDS = 10.0


@dataclass(frozen=True)
class World:
    lab: Lab
    topologies: tuple[Topology, ...]
    namespaces: tuple[Ns, ...]  # host first


@pytest.fixture(scope="module")
def world(module_lab: Lab) -> World:
    need(importlib.util.find_spec("pyroute2") is not None, "needs pyroute2 (pip install pyroute2)")
    lab = module_lab
    topologies = [*netlab.everything(lab), netlab.same_ifindex(lab, 20)]
    bridged = topologies[2]
    # a static FDB entry next to the learned and permanent ones
    port = bridged.pairs[0].a.ifname
    netlab._run(["bridge", "fdb", "add", "02:00:5e:10:00:01", "dev", port, "master", "static"])
    # a bridge inside a namespace, with a port, so the FDB is read in a non-host namespace too
    router = topologies[3].namespaces[0]
    br = lab.bridge(router, "br9")
    pair = lab.veth(router, "p9a", router, "p9b")
    lab.enslave(pair.a, br)
    namespaces = [HOST, *(ns for topo in topologies for ns in topo.namespaces)]
    return World(lab, tuple(topologies), tuple(namespaces))


@pytest.fixture(scope="module")
def home_fd() -> Iterator[int]:
    fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    yield fd
    os.close(fd)


@dataclass(frozen=True)
class Dump:
    links: dict[int, dict[str, Any]]
    addresses: set[tuple[int, str]]
    fdb: set[tuple[Any, ...]]
    bridged: set[tuple[Any, ...]] = field(default_factory=set)  # ours: bridge_fdb() (pyroute2: none)


def _socket_in(ns: Ns, home_fd: int) -> RtnlSocket:
    """Our netlink socket, opened inside ``ns``: it keeps answering for that namespace, from home."""
    fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with inside(fd, home_fd):
            return RtnlSocket()
    finally:
        os.close(fd)


def _ours(ns: Ns, home_fd: int) -> Dump:
    with _socket_in(ns, home_fd) as sock:
        links = {link.index: _link_fields(link) for link in sock.links()}
        addresses = {(a.index, a.address) for a in sock.addresses()}
        fdb = {_fdb_fields(e) for e in sock.fdb()}
        bridged = {_fdb_fields(e) for e in sock.bridge_fdb()}
    return Dump(links, addresses, fdb, bridged)


def _link_fields(link: Link) -> dict[str, Any]:
    return {
        "index": link.index,
        "name": link.name,
        "flags": link.flags,
        "kind": link.kind,
        "mac": link.mac,
        "mtu": link.mtu,
        "operstate": link.operstate,
        "master": link.master,
        "link": link.link,
        "link_netnsid": link.link_netnsid,
        "slave_kind": link.slave_kind,
        "brport_state": link.brport_state,
    }


def _fdb_fields(entry: FdbEntry) -> tuple[Any, ...]:
    return (entry.port, entry.mac, entry.master, entry.vlan, entry.state, entry.flags)


def _reference(ns: Ns, home_fd: int) -> Dump:
    from pyroute2 import IPRoute

    fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with inside(fd, home_fd), IPRoute() as ipr:
            raw_links = ipr.get_links()
            raw_addresses = ipr.get_addr()
            raw_fdb = ipr.fdb("dump")
    finally:
        os.close(fd)
    links = {}
    for msg in raw_links:
        slave_kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_KIND")
        state = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA", "IFLA_BRPORT_STATE")
        links[msg["index"]] = {
            "index": msg["index"],
            "name": msg.get("ifname"),
            "flags": msg["flags"],
            "kind": msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
            "mac": msg.get("address"),
            "mtu": msg.get("mtu"),
            "operstate": (msg.get("operstate") or "unknown").lower(),
            "master": msg.get("master"),
            "link": msg.get("link"),
            "link_netnsid": msg.get("link_netnsid"),
            "slave_kind": slave_kind,
            "brport_state": BRPORT_STATES[state] if slave_kind == "bridge" and state is not None else None,
        }
    addresses = set()
    for msg in raw_addresses:
        address = msg.get("local") or msg.get("address")
        if address is not None:
            addresses.add((msg["index"], f"{address}/{msg['prefixlen']}"))
    fdb = {
        (msg["ifindex"], msg.get("lladdr"), msg.get("master"), msg.get("vlan"), msg["state"], msg["flags"])
        for msg in raw_fdb
        if msg.get("lladdr") is not None
    }
    return Dump(links, addresses, fdb)


def _lab_indexes(lab: Lab, dump: Dump) -> set[int]:
    """The host's links that belong to this lab (other labs change the host concurrently)."""
    mine = (f"{netlab.PREFIX}{lab.tag}", f"{netlab.PREFIX}br{lab.tag}")
    return {index for index, link in dump.links.items() if str(link["name"]).startswith(mine)} | {1}


def _restrict(dump: Dump, indexes: set[int]) -> Dump:
    return Dump(
        {i: link for i, link in dump.links.items() if i in indexes},
        {a for a in dump.addresses if a[0] in indexes},
        {e for e in dump.fdb if e[0] in indexes},
        {e for e in dump.bridged if e[0] in indexes},
    )


def _both(world: World, ns: Ns, home_fd: int) -> tuple[Dump, Dump]:
    """Both dumps of ns, taken while it holds still.

    The kernel finishes some changes after ``ip`` returns: a new bridge's operstate goes
    from unknown to up up to a second after its first port forwards (linkwatch batches
    non-urgent events), and IPv6 link-local addresses follow a carrier. A reference read
    between two equal reads of ours saw the same state as ours.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        before, ref, after = _ours(ns, home_fd), _reference(ns, home_fd), _ours(ns, home_fd)
        if ns.is_host:
            keep = _lab_indexes(world.lab, ref)
            before, ref, after = (_restrict(dump, keep) for dump in (before, ref, after))
        if before == after or time.monotonic() > deadline:
            return after, ref
        time.sleep(0.1)


def test_links_match_pyroute2(world: World, home_fd: int) -> None:
    checked = 0
    for ns in world.namespaces:
        ours, ref = _both(world, ns, home_fd)
        assert ours.links.keys() == ref.links.keys(), ns
        for index, fields in ref.links.items():
            assert ours.links[index] == fields, (str(ns), index)
            checked += 1
    assert checked > 60


def test_interesting_fields_are_really_exercised(world: World, home_fd: int) -> None:
    """Guard against a vacuous comparison: the lab must produce every kind of value."""
    seen: dict[str, set[Any]] = {}
    for ns in world.namespaces:
        ours, _ = _both(world, ns, home_fd)
        for link in ours.links.values():
            for key, value in link.items():
                seen.setdefault(key, set()).add(value)
    assert {"veth", "bridge", "macvlan", None} <= seen["kind"]
    assert {"up", "down"} <= seen["operstate"]
    assert len(seen["master"] - {None}) >= 3
    assert len(seen["link_netnsid"] - {None}) >= 2
    assert "forwarding" in seen["brport_state"]
    assert "bridge" in seen["slave_kind"]


def test_addresses_match_pyroute2(world: World, home_fd: int) -> None:
    total = 0
    for ns in world.namespaces:
        ours, ref = _both(world, ns, home_fd)
        assert ours.addresses == ref.addresses, str(ns)
        total += len(ref.addresses)
    assert total > 20  # IPv4 of every lab interface, plus IPv6 link-local ones


def test_fdb_matches_pyroute2(world: World, home_fd: int) -> None:
    total = static = 0
    for ns in world.namespaces:
        ours, ref = _both(world, ns, home_fd)
        assert ours.fdb == ref.fdb, str(ns)
        assert ours.bridged == {entry for entry in ref.fdb if entry[2] is not None}, str(ns)  # NDA_MASTER
        total += len(ref.fdb)
        static += sum(1 for entry in ref.fdb if entry[1] == "02:00:5e:10:00:01")
    assert total > 10
    assert static == 1


def _nsid_pyroute2(observer: Ns, target_fd: int, home_fd: int) -> int | None:
    from pyroute2 import IPRoute

    fd = os.open(observer.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with inside(fd, home_fd), IPRoute() as ipr:
            nsid = ipr.get_netnsid(fd=target_fd)["nsid"]
    finally:
        os.close(fd)
    return None if nsid in NSID_UNSET else int(nsid)


def _nsid_ours(observer: Ns, target_fd: int, home_fd: int) -> int | None:
    with _socket_in(observer, home_fd) as sock:
        return sock.nsid_of(target_fd)


def test_nsid_of_matches_pyroute2_and_allocates_nothing(world: World, home_fd: int) -> None:
    observers = [ns for ns in world.namespaces if not ns.is_host][:12]
    targets = [HOST, *observers]
    before = {str(ns): netlab.nsid_names(ns) for ns in observers}
    assigned = unassigned = 0
    for observer in observers:
        for target in targets:
            target_fd = os.open(target.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ours = _nsid_ours(observer, target_fd, home_fd)
                ref = _nsid_pyroute2(observer, target_fd, home_fd)
            finally:
                os.close(target_fd)
            assert ours == ref, (str(observer), str(target))
            if ours is None:
                unassigned += 1
            else:
                assigned += 1
    assert assigned > 0 and unassigned > 0
    after = {str(ns): netlab.nsid_names(ns) for ns in observers}
    assert before == after  # RTM_GETNSID never allocated an nsid


def test_link_netnsid_names_the_peer_namespace(world: World, home_fd: int) -> None:
    """The decoder's IFLA_LINK + IFLA_LINK_NETNSID, resolved with RTM_GETNSID, land on the built peer."""
    checked = 0
    for topo in world.topologies:
        for pair in topo.pairs:
            for end, peer in pair.directed():
                link = _ours(end.ns, home_fd).links[end.ifindex]
                assert link["name"] == end.ifname
                assert link["link"] == peer.ifindex
                if peer.ns == end.ns:
                    assert link["link_netnsid"] is None
                else:
                    peer_fd = os.open(peer.ns.path, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        assert _nsid_ours(end.ns, peer_fd, home_fd) == link["link_netnsid"]
                    finally:
                        os.close(peer_fd)
                checked += 1
    assert checked >= 40
