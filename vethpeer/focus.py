"""`which TARGET` without a full walk, when the target says which namespace it is about.

A host interface (by name, or by ifindex: ``ifN``), a PID, a namespace path and an ``ip netns``
name each lead to one namespace before anything is walked. Then only that namespace is read
whole, plus what its rows need: the host links its peers are (RTM_GETLINK by ifindex, not a
dump of the host) and any other namespace a peer lives in, each found by asking RTM_GETNSID
until the nsid matches (which allocates nothing). A MAC or an IP may be anywhere (a cloned
MAC, a duplicated IP): every namespace is asked for it first (one link or address dump each,
only what carries it parsed), and only one holder on the whole node (a host veth's MAC; a
namespace's IP) is a focus. Anything ambiguous gets ``None``: the caller walks everything.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from .correlate import correlate
from .errors import NamespaceGone
from .model import Link, Namespace, NsKey, Snapshot, SourceResult
from .netlink import IFLA_LINK, NetlinkError, RtnlSocket
from .netlink_wire import NLA, U32
from .netns import Discovery, home_namespace, key_of, open_namespace, setns
from .targets import ifindex, workload_matchers, workload_namespaces
from .walk import socket_in

_MAC = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$")
PAIR_KINDS = frozenset({"veth", "netkit"})
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
    if host is None or not target:
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
        return _by_mac(discovery, target.lower().replace("-", ":"), sock, proc)
    if _is_ip(target):
        return _by_ip(discovery, target, sock, host_fd, proc)
    if target.isdigit() and os.path.exists(f"{proc}/{target}"):
        return _namespace(discovery, key_of(f"{proc}/{target}/ns/net"), host_fd, proc)
    if target.startswith(("/", "./")):
        return _namespace(discovery, key_of(target), host_fd, proc)
    link = sock.link(target) if _could_be_ifname(target) else None
    # The kernel finds a link by an alternative name too; a target is an interface by its name only.
    if link is not None and link.name == target:  # a host interface, before any `ip netns` name
        return _behind_host_link(discovery, sock, [link], proc)
    index = ifindex(target)
    link = sock.link(index=index) if index is not None else None
    if link is not None:  # `ifN`: a host interface by its ifindex
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


def _by_mac(discovery: Discovery, mac: str, sock: RtnlSocket, proc: str) -> Focus | None:
    """The one link on the whole node with this MAC is a host veth: its peer's namespace.

    Any other link with it anywhere (a cloned MAC inside a container, a bridge that took its
    port's MAC and may be a macvlan's parent) could be a row the full walk matches too: then
    None. Proving it reads every namespace's links, parsing only those that carry the MAC, or
    that name the host veth as their peer (IFLA_LINK: its ifindex), the only namespaces asked
    for their nsid."""
    raw = bytes.fromhex(mac.replace(":", ""))
    on_host = [link for link in sock.links_holding(raw) if link.mac == mac]
    if len(on_host) != 1 or on_host[0].kind not in PAIR_KINDS or on_host[0].link_netnsid is None:
        return None
    veth = on_host[0]
    # A kernel may omit IFLA_LINK when it equals the device's own ifindex: then any namespace
    # could hold the peer, and each is asked for its nsid, as a host veth's name would be.
    omitted = veth.link == veth.index
    names_veth = NLA.pack(8, IFLA_LINK) + U32.pack(veth.index)

    def ask(asked: RtnlSocket) -> tuple[bool, bool]:
        links = asked.links_carrying((raw, names_veth))
        holds = any(link.mac == mac for link in links)
        return holds, omitted or any(
            link.index == veth.link and link.link == veth.index and link.link_netnsid is not None
            for link in links
        )

    holders, peer = _scan(discovery, proc, ask, sock, veth.link_netnsid)
    return Focus(frozenset({peer}), (veth.name,)) if not holders and peer is not None else None


def _by_ip(discovery: Discovery, target: str, sock: RtnlSocket, host_fd: int, proc: str) -> Focus | None:
    """The one namespace on the node with this address, read as a PID's would be.

    Rows match an IP on their own interface, so every namespace's addresses are asked (one dump
    each): none, several (a duplicated IP: ambiguous) or the host's own give None."""
    wanted = ipaddress.ip_interface(target).ip

    def holds(asked: RtnlSocket) -> bool:
        return any(ipaddress.ip_interface(a.address).ip == wanted for a in asked.addresses())

    if holds(sock):
        return None
    holders, _ = _scan(discovery, proc, lambda asked: (holds(asked), False), sock)
    return _namespace(discovery, holders.pop(), host_fd, proc) if len(holders) == 1 else None


def _scan(
    discovery: Discovery,
    proc: str,
    ask: Callable[[RtnlSocket], tuple[bool, bool]],
    host_sock: RtnlSocket,
    nsid: int | None = None,
) -> tuple[set[NsKey], NsKey | None]:
    """Every namespace but the host's asked whether it holds the target and could be the peer's:
    those that hold it, and the one the host numbers ``nsid`` among those that could. One that
    cannot be read raises: nothing is proven.

    The thread goes from one namespace straight into the next (a netlink socket made in each
    answers for it wherever it is used) and comes home once, at the end, always."""
    holders: set[NsKey] = set()
    peer = None
    with home_namespace(proc) as home_fd:
        try:
            for ns in discovery.namespaces:
                if ns.key == discovery.host:
                    continue
                try:
                    fd = open_namespace(ns, proc)
                except NamespaceGone:
                    continue  # gone since discovery: it holds nothing
                try:
                    setns(fd)
                    asked = RtnlSocket()
                    try:
                        holds, could_be_peer = ask(asked)
                    finally:
                        asked.close()
                    if holds:
                        holders.add(ns.key)
                    if could_be_peer and peer is None and nsid is not None and host_sock.nsid_of(fd) == nsid:
                        peer = ns.key
                finally:
                    os.close(fd)
        finally:
            setns(home_fd)  # failing to come back must not go unnoticed: it raises
    return holders, peer


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
