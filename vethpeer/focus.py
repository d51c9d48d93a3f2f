"""`which TARGET` without a full walk, when the target says which namespace it is about.

A host interface (by name, or a host veth by MAC), a PID, a namespace path and an ``ip netns``
name each lead to one namespace before anything is walked. Then only that namespace is read
whole, plus what its rows need: the host links its peers are (RTM_GETLINK by ifindex, not a
dump of the host) and any other namespace a peer lives in, each found by asking RTM_GETNSID
until the nsid matches (which allocates nothing). An IP (it lives inside some namespace) or
anything ambiguous gets ``None``: the caller walks everything.

A target none of those kinds claims is a workload's name or ID: :func:`locate` says
:data:`BY_NAME`, every source names every namespace first, and :func:`by_name` matches the
target against their names with :mod:`vethpeer.targets`' own matchers. One namespace found is
read as above; none or several (not found, ambiguous) need no row read; a VM's tap (a host
interface the VM holds) needs the host's links, so its name walks everything.

The order is :func:`vethpeer.targets.resolve`'s: a target that an earlier kind of target
would claim (an IP, a MAC, ...) never takes a later kind's shortcut, so the answer is the
full walk's. ``tests/integration/test_focus.py`` compares the two on the truth topologies,
``tests/integration/test_focus_cri.py`` on pods of a real containerd beside Docker containers.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from .correlate import correlate
from .errors import NamespaceGone
from .model import Link, Namespace, NsKey, Snapshot, SourceResult
from .netlink import NetlinkError, RtnlSocket
from .netns import Discovery, home_namespace, key_of, open_namespace
from .targets import workload_matchers, workload_namespaces
from .walk import socket_in

_MAC = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$")
PAIR_KINDS = frozenset({"veth", "netkit"})
_NEVER_ROWS = frozenset({"bridge", "openvswitch", "macvlan", "ipvlan", "vlan", "dummy", "vxlan"})
BY_NAME: Literal["by name"] = "by name"  # the target is a workload's name or ID: see by_name()


@dataclass(frozen=True, slots=True)
class Focus:
    """What to read: ``namespaces`` whole, and of the host only ``host_links`` (names or ifindexes)."""

    namespaces: frozenset[NsKey]
    host_links: tuple[str | int, ...]


def _could_be_ifname(target: str) -> bool:
    """The kernel's rule for interface names (IFNAMSIZ, no '/', ':' or whitespace)."""
    return (
        len(target.encode()) <= 15
        and not any(c in target for c in "/:")
        and not any(c.isspace() for c in target)
    )


def _is_ip(target: str) -> bool:
    try:
        ipaddress.ip_interface(target)
    except ValueError:
        return False
    return True


def locate(discovery: Discovery, target: str, proc: str = "/proc") -> Focus | Literal["by name"] | None:
    """The focus for ``target``; :data:`BY_NAME`: ask the sources first (:func:`by_name`);
    None: walk everything."""
    target = target.strip()
    host = next((ns for ns in discovery.namespaces if ns.key == discovery.host), None)
    if host is None or not target or _is_ip(target):
        return None
    try:
        with home_namespace(proc) as home_fd:
            host_fd, sock = socket_in(host, home_fd, proc)
    except (OSError, NamespaceGone):
        return None
    try:
        return _locate(discovery, target, sock, host_fd, proc)
    except (OSError, NamespaceGone):
        return None
    finally:
        sock.close()
        os.close(host_fd)


def _locate(
    discovery: Discovery, target: str, sock: RtnlSocket, host_fd: int, proc: str
) -> Focus | Literal["by name"] | None:
    if _MAC.match(target.lower()):
        mac = target.lower().replace("-", ":")
        # A bridge takes a port's MAC; it is never a row, so only the links that can be are counted.
        rows = [link for link in sock.links() if link.mac == mac and link.kind not in _NEVER_ROWS]
        return _behind_host_link(discovery, sock, rows, proc)
    if target.isdigit() and os.path.exists(f"{proc}/{target}"):
        return _namespace(discovery, key_of(f"{proc}/{target}/ns/net"), host_fd, proc)
    if target.startswith(("/", "./")):
        return _namespace(discovery, key_of(target), host_fd, proc)
    link = sock.link(target) if _could_be_ifname(target) else None
    # The kernel finds a link by an alternative name too; a target is an interface by its name only.
    if link is not None and link.name == target:  # a host interface, before any `ip netns` name
        return _behind_host_link(discovery, sock, [link], proc)
    named = [ns.key for ns in discovery.namespaces if target in ns.netns_names]
    if not named:
        return BY_NAME  # no earlier kind of target claims it: a workload, named by the sources
    return _namespace(discovery, named[0], host_fd, proc) if len(named) == 1 else None


def by_name(
    discovery: Discovery,
    results: Sequence[SourceResult],
    target: str,
    namespace: str | None = None,
    proc: str = "/proc",
) -> Focus | None:
    """The focus for a workload target (``-n`` ``namespace``), once the sources named every
    namespace: the one namespace their names place it in, read as a PID's would be."""
    target = target.strip()
    matchers = workload_matchers(target, namespace)
    held = (c.workload for result in results for c in result.links if c.netns == discovery.host)
    if any(matcher(w) for w in held for matcher in matchers):
        return None  # a VM's tap: its row is a host interface, found by reading the host whole
    # The sources' names joined as the full walk joins them (the correlator), without its rows.
    names = correlate(Snapshot(discovery.host, ()), results)
    keys = workload_namespaces(names, target, namespace)
    if len(keys) != 1:
        return Focus(frozenset(), ())  # not found, or ambiguous: no row is shown
    try:
        return _namespace(discovery, next(iter(keys)), None, proc)
    except (OSError, NamespaceGone):
        return None


def _behind_host_link(discovery: Discovery, sock: RtnlSocket, links: list[Link], proc: str) -> Focus | None:
    """One host veth whose peer is in another namespace: that link, and that namespace."""
    if len(links) != 1 or links[0].kind not in PAIR_KINDS or links[0].link_netnsid is None:
        return None
    others = (ns for ns in discovery.namespaces if ns.key != discovery.host)
    found = _nsids(sock, {links[0].link_netnsid}, others, proc)
    peer = found.get(links[0].link_netnsid)
    return Focus(frozenset({peer}), (links[0].name,)) if peer is not None else None


def _namespace(discovery: Discovery, key: NsKey, host_fd: int | None, proc: str) -> Focus | None:
    """One namespace, its peers' host links and the other namespaces its peers are in."""
    if key == discovery.host:
        return Focus(frozenset(), ())
    target = next((ns for ns in discovery.namespaces if ns.key == key), None)
    if target is None:
        return None  # not found: the full walk says so, as it always has
    with home_namespace(proc) as home_fd:
        fd, sock = socket_in(target, home_fd, proc)
    try:
        links = sock.links()
        wanted = {link.link_netnsid for link in links if link.link_netnsid is not None}
        # The host first: it is where nearly every peer is.
        order = sorted(discovery.namespaces, key=lambda ns: (ns.key != discovery.host, ns.key))
        opened = {discovery.host: host_fd} if host_fd is not None else None
        found = _nsids(sock, wanted, (ns for ns in order if ns.key != key), proc, opened)
    finally:
        sock.close()
        os.close(fd)
    if found.keys() != wanted:
        return None  # a peer in no namespace found: the full walk reports it as it always has
    host_links = tuple(
        link.link
        for link in links
        if link.link_netnsid is not None and found[link.link_netnsid] == discovery.host and link.link
    )
    return Focus(frozenset({key, *found.values()} - {discovery.host}), host_links)


def _nsids(
    sock: RtnlSocket,
    wanted: set[int],
    candidates: Iterable[Namespace],
    proc: str,
    opened: dict[NsKey, int] | None = None,
) -> dict[int, NsKey]:
    """nsid (as ``sock``'s namespace numbers them) -> namespace, asking until each is found."""
    found: dict[int, NsKey] = {}
    for ns in candidates:
        if found.keys() >= wanted:
            break
        key = ns.key
        fd = (opened or {}).get(key)
        own = fd is None
        try:
            if fd is None:
                fd = open_namespace(ns, proc)
        except NamespaceGone:
            continue
        try:
            nsid = sock.nsid_of(fd)
        except NetlinkError:
            nsid = None
        finally:
            if own:
                os.close(fd)
        if nsid is not None and nsid in wanted:
            found[nsid] = key
    return found
