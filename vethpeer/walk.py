"""The kernel walk: read every namespace's links over netlink, then resolve its nsids.

For each namespace the calling thread enters it just long enough to open a
NETLINK_ROUTE socket (a socket answers for the namespace it was created in), then
comes back; everything else is asked through that socket from home. Nothing is
created or changed, and no process is forked.

IFLA_LINK_NETNSID values are only meaningful in the namespace that reported them,
so each one is turned into a namespace identity (:class:`NsKey`) here:

1. every namespace asks "what nsid do you give the host?" (RTM_GETNSID, which,
   unlike a link dump, never allocates one) — that resolves every pod/container
   whose peer is in the host;
2. veth pairs are symmetric: once the pod end's peer is *verified* to be host
   ifindex L, host link L's own nsid must mean the pod's namespace — derived,
   not guessed, and only accepted when L points back at the pod end;
3. whatever is left (peers between two non-host namespaces, macvlan parents in
   another namespace) is verified with RTM_GETNSID against the candidates the
   pairs suggest, and at worst against every namespace.
An nsid that none of this resolves stays unresolved; the correlator reports it.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace

from .errors import NamespaceGone
from .model import FdbEntry, Link, Namespace, NsKey, NsView, Snapshot
from .netlink import NetlinkError, RtnlSocket
from .netns import Discovery, inside, open_namespace, raise_fd_limit


@dataclass(slots=True)
class _Open:
    """A namespace being read: its fd, its socket and what was dumped so far."""

    ns: Namespace
    fd: int
    sock: RtnlSocket
    links: tuple[Link, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()
    nsids: dict[int, NsKey] = field(default_factory=dict)

    def wanted(self) -> set[int]:
        """nsids used by this namespace's links that are not resolved yet."""
        return {
            link.link_netnsid
            for link in self.links
            if link.link_netnsid is not None and link.link_netnsid not in self.nsids
        }


def _with_addresses(links: Iterable[Link], sock: RtnlSocket) -> tuple[Link, ...]:
    by_index: dict[int, list[str]] = {}
    for address in sock.addresses():
        by_index.setdefault(address.index, []).append(address.address)
    return tuple(
        replace(link, addresses=tuple(by_index[link.index])) if link.index in by_index else link
        for link in links
    )


def _some_links(sock: RtnlSocket, names: Collection[str]) -> list[Link]:
    """Only the named links and their masters: for `which vethXXXX`, not a dump of the host."""
    found = [link for link in map(sock.link, names) if link is not None]
    masters = {link.master for link in found if link.master} - {link.index for link in found}
    found += [link for link in (sock.link(index=i) for i in sorted(masters)) if link is not None]
    return found


def _socket_in(ns: Namespace, home_fd: int) -> tuple[int, RtnlSocket]:
    """An fd on the namespace and a netlink socket that answers for it (made inside, used from home)."""
    fd = open_namespace(ns)
    try:
        with inside(fd, home_fd):
            return fd, RtnlSocket()
    except OSError:
        os.close(fd)
        raise


def _read(ns: Namespace, home_fd: int, fdb: bool, only: Collection[str] | None = None) -> _Open:
    fd, sock = _socket_in(ns, home_fd)
    try:
        links = sock.links() if only is None else _some_links(sock, only)
        opened = _Open(ns, fd, sock, _with_addresses(links, sock))
        if fdb and any(link.kind == "bridge" for link in opened.links):
            opened.fdb = tuple(sock.fdb())
    except OSError:
        sock.close()
        os.close(fd)
        raise
    return opened


def _ask(observer: _Open, target: _Open) -> None:
    """Record the nsid ``observer`` gives ``target``, if it has one."""
    try:
        nsid = observer.sock.nsid_of(target.fd)
    except NetlinkError:
        return
    if nsid is not None:
        observer.nsids.setdefault(nsid, target.ns.key)


def _derive_from_pairs(opened: dict[NsKey, _Open]) -> bool:
    """Step 2: a verified pair end tells the other end what its nsid means."""
    index = {key: {link.index: link for link in o.links} for key, o in opened.items()}
    learned = False
    for key, o in opened.items():
        for link in o.links:
            if link.kind not in ("veth", "netkit") or link.link is None:
                continue
            where = key if link.link_netnsid is None else o.nsids.get(link.link_netnsid)
            if where is None or where not in opened:
                continue
            other = index[where].get(link.link)
            if (
                other is None
                or other.link != link.index
                or other.link_netnsid is None
                or other.link_netnsid in opened[where].nsids
            ):
                continue
            opened[where].nsids[other.link_netnsid] = key
            learned = True
    return learned


def _verify_candidates(opened: dict[NsKey, _Open]) -> None:
    """Step 3: ask the kernel about the namespaces the links suggest, then about all."""
    by_index: dict[int, list[tuple[NsKey, Link]]] = {}
    for key, o in opened.items():
        for link in o.links:
            if link.link is not None and link.link_netnsid is not None:
                by_index.setdefault(link.index, []).append((key, link))
    for key, o in opened.items():
        if not o.wanted():
            continue
        for link in o.links:
            if link.link_netnsid is None or link.link_netnsid in o.nsids or link.link is None:
                continue
            for other_key, other in by_index.get(link.link, ()):
                if other_key != key and other.link == link.index:
                    _ask(o, opened[other_key])
        if o.wanted():  # parents of macvlans, odd topologies: one exhaustive pass
            for other_key, other_open in opened.items():
                if other_key != key and other_key not in o.nsids.values():
                    _ask(o, other_open)
                if not o.wanted():
                    break


def snapshot(
    discovery: Discovery, *, fdb: bool = False, host_links: Collection[str] | None = None
) -> Snapshot:
    """Read every discovered namespace. A namespace that vanishes meanwhile is a view with an error.

    ``host_links``: read only these host links (and their bridges), not the whole host.
    """
    raise_fd_limit(2 * len(discovery.namespaces) + 64)
    home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    opened: dict[NsKey, _Open] = {}
    failed: list[NsView] = []
    try:
        for ns in discovery.namespaces:
            try:
                opened[ns.key] = _read(ns, home_fd, fdb, host_links if ns.key == discovery.host else None)
            except NamespaceGone as gone:
                failed.append(NsView(ns, error=str(gone)))
            except OSError as error:
                failed.append(NsView(ns, error=f"cannot read: {error.strerror or error}"))

        host = opened.get(discovery.host)
        if host is not None:
            for key, o in opened.items():
                if key != discovery.host and o.wanted():
                    _ask(o, host)
        while _derive_from_pairs(opened):
            pass
        _verify_candidates(opened)

        views = [NsView(o.ns, o.links, dict(o.nsids), o.fdb) for o in opened.values()]
    finally:
        for o in opened.values():
            o.sock.close()
            os.close(o.fd)
        os.close(home_fd)
    views.extend(failed)
    views.sort(key=lambda view: view.ns.key)
    return Snapshot(
        host=discovery.host,
        views=tuple(views),
        unreadable_pids=discovery.unreadable_pids,
        vanished_pids=discovery.vanished_pids,
        host_found_via=discovery.host_found_via,
    )


def peer_namespace(discovery: Discovery, host_ifname: str) -> NsKey | None:
    """The namespace on the other side of a host link, for `which vethXXXX` without a full walk.

    One RTM_GETLINK for the link, then the host's socket is asked which nsid it gives each
    namespace until one equals the link's IFLA_LINK_NETNSID (RTM_GETNSID allocates nothing).
    None when the link is not there, has no peer elsewhere, or no namespace matches: the
    caller then walks everything.
    """
    host_ns = next((ns for ns in discovery.namespaces if ns.key == discovery.host), None)
    if host_ns is None:
        return None
    home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        host_fd, sock = _socket_in(host_ns, home_fd)
    except (OSError, NamespaceGone):
        return None
    finally:
        os.close(home_fd)
    os.close(host_fd)
    try:
        link = sock.link(host_ifname)
        if link is None or link.link_netnsid is None:
            return None
        for ns in discovery.namespaces:
            if ns.key == discovery.host:
                continue
            try:
                fd = open_namespace(ns)
            except NamespaceGone:
                continue
            try:
                if sock.nsid_of(fd) == link.link_netnsid:
                    return ns.key
            except NetlinkError:
                continue
            finally:
                os.close(fd)
        return None
    finally:
        sock.close()
