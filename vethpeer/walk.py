"""The kernel walk: read every namespace's links over netlink, then resolve its nsids.

For each namespace the calling thread enters it just long enough to open a
NETLINK_ROUTE socket (a socket answers for the namespace it was created in), then
comes back; everything else is asked through that socket from home. Nothing is
created or changed, and no process is forked.

Links are dumped first (a dump allocates nsids as a side effect), then each
IFLA_LINK_NETNSID is turned into a namespace identity by :func:`vethpeer.nsids.resolve`,
which asks the kernel (RTM_GETNSID) through the sockets opened here.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace

from . import nsids
from .errors import NamespaceGone
from .model import FdbEntry, Link, Namespace, NsKey, NsView, Snapshot
from .netlink import NetlinkError, RtnlSocket
from .netns import Discovery, home_namespace, inside, open_namespace, raise_fd_limit


@dataclass(slots=True)
class _Open:
    """A namespace being read: its fd, its socket and what was dumped so far."""

    ns: Namespace
    fd: int
    sock: RtnlSocket
    links: tuple[Link, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()
    port_names: dict[int, str] = field(default_factory=dict)


def with_addresses(links: Iterable[Link], sock: RtnlSocket) -> tuple[Link, ...]:
    by_index: dict[int, list[str]] = {}
    for address in sock.addresses():
        by_index.setdefault(address.index, []).append(address.address)
    return tuple(
        replace(link, addresses=tuple(by_index[link.index])) if link.index in by_index else link
        for link in links
    )


def links_by_index(sock: RtnlSocket, indexes: Iterable[int], stats: bool = False) -> dict[int, Link | None]:
    """These links again, each with its addresses (an RTM_GETLINK each; None: there is none now)."""
    fresh: dict[int, Link | None] = {}
    for index in sorted(set(indexes)):
        link = sock.link(index=index, stats=stats)
        if link is not None:
            found = tuple(address.address for address in sock.addresses(index))
            link = replace(link, addresses=found) if found else link
        fresh[index] = link
    return fresh


def _some_links(sock: RtnlSocket, names: Collection[str | int], stats: bool = False) -> list[Link]:
    """Only these links (by name or ifindex) and their masters: for `which`, not a dump of the host."""
    asked = (
        sock.link(name, stats=stats) if isinstance(name, str) else sock.link(index=name, stats=stats)
        for name in names
    )
    found = list({link.index: link for link in asked if link is not None}.values())
    masters = {link.master for link in found if link.master} - {link.index for link in found}
    found += [link for link in (sock.link(index=i, stats=stats) for i in sorted(masters)) if link is not None]
    return found


def _port_names(host: _Open, opened: Iterable[_Open]) -> dict[int, str]:
    """A host read only in part: the names of the ports its bridges learned the walked
    namespaces' MACs on, where those ports were not read (RTM_GETLINK by ifindex, one a port).
    An FDB verdict says where a row's MAC was learned; the other entries name nothing shown."""
    macs = {link.mac for o in opened if o is not host for link in o.links}
    known = {link.index for link in host.links}
    ports = {e.port for e in host.fdb if e.mac in macs} - known
    asked = (host.sock.link(index=i) for i in sorted(ports))
    return {link.index: link.name for link in asked if link is not None}


def socket_in(ns: Namespace, home_fd: int, proc: str = "/proc") -> tuple[int, RtnlSocket]:
    """An fd on the namespace and a netlink socket that answers for it (made inside, used from home)."""
    fd = open_namespace(ns, proc)
    try:
        with inside(fd, home_fd):
            return fd, RtnlSocket()
    except OSError:
        os.close(fd)
        raise


def _read(
    ns: Namespace,
    home_fd: int,
    fdb: bool,
    only: Collection[str | int] | None = None,
    proc: str = "/proc",
    stats: bool = False,
) -> _Open:
    fd, sock = socket_in(ns, home_fd, proc)
    try:
        links = sock.links(stats) if only is None else _some_links(sock, only, stats)
        opened = _Open(ns, fd, sock, with_addresses(links, sock))
        if fdb and any(link.kind == "bridge" for link in opened.links):
            opened.fdb = tuple(sock.bridge_fdb())  # what fdb.py reads: entries that name their bridge
    except OSError:
        sock.close()
        os.close(fd)
        raise
    return opened


def _read_unmatched(
    opened: dict[NsKey, _Open], unmatched: dict[NsKey, set[int]], *, skip: NsKey | None, stats: bool
) -> bool:
    """The pair ends seen from one side only (:func:`vethpeer.nsids.unmatched`: made or moved
    while the namespaces were read one after another) read again where they are named; True if
    any namespace's links changed. ``skip``: a namespace read only in part (`which`'s host)."""
    changed = False
    for key, indexes in unmatched.items():
        o = opened.get(key)
        if o is None or key == skip:
            continue
        try:
            fresh = links_by_index(o.sock, indexes, stats)
        except OSError:
            continue  # the namespace is going away: what was read stands
        kept = [fresh.pop(link.index) if link.index in fresh else link for link in o.links]
        links = tuple(link for link in [*kept, *fresh.values()] if link is not None)
        changed |= links != o.links
        o.links = links
    return changed


def snapshot(
    discovery: Discovery,
    *,
    fdb: bool = False,
    host_links: Collection[str | int] | None = None,
    proc: str = "/proc",
    stats: bool = False,
) -> Snapshot:
    """Read every discovered namespace. A namespace that vanishes meanwhile is a view with an error.

    ``host_links``: read only these host links (and their bridges), not the whole host.
    ``stats``: each link's IFLA_STATS64 counters too.
    """
    raise_fd_limit(2 * len(discovery.namespaces) + 64)
    with home_namespace(proc) as home_fd:
        return _snapshot(discovery, home_fd, fdb, host_links, proc, stats)


def _snapshot(
    discovery: Discovery,
    home_fd: int,
    fdb: bool,
    host_links: Collection[str | int] | None,
    proc: str,
    stats: bool,
) -> Snapshot:
    opened: dict[NsKey, _Open] = {}
    failed: list[NsView] = []
    try:
        for ns in discovery.namespaces:
            try:
                only = host_links if ns.key == discovery.host else None
                opened[ns.key] = _read(ns, home_fd, fdb, only, proc, stats)
            except NamespaceGone as gone:
                failed.append(NsView(ns, error=str(gone)))
            except OSError as error:
                failed.append(NsView(ns, error=f"cannot read: {error.strerror or error}"))

        def ask(observer: NsKey, target: NsKey) -> int | None:
            try:
                return opened[observer].sock.nsid_of(opened[target].fd)
            except NetlinkError:
                return None

        host = opened.get(discovery.host)
        if host_links is not None and host is not None and host.fdb:
            host.port_names = _port_names(host, opened.values())
        links = {key: o.links for key, o in opened.items()}
        resolved = nsids.resolve(links, discovery.host, ask)
        if _read_unmatched(
            opened,
            nsids.unmatched(links, resolved),
            skip=discovery.host if host_links is not None else None,
            stats=stats,
        ):
            links = {key: o.links for key, o in opened.items()}
            resolved = nsids.resolve(links, discovery.host, ask)
        views = [
            NsView(o.ns, o.links, resolved[key], o.fdb, port_names=o.port_names) for key, o in opened.items()
        ]
    finally:
        for o in opened.values():
            o.sock.close()
            os.close(o.fd)
    views.extend(failed)
    views.sort(key=lambda view: view.ns.key)
    return Snapshot(
        host=discovery.host,
        views=tuple(views),
        unreadable_pids=discovery.unreadable_pids,
        vanished_pids=discovery.vanished_pids,
        host_found_via=discovery.host_found_via,
    )
