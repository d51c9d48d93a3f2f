"""A walk that can be repeated cheaply: what `top`, `watch` (and `serve`) call every round.

:func:`vethpeer.walk.snapshot` opens a namespace fd and a netlink socket per namespace
and closes them at the end; a :class:`Walker` keeps them between rounds and, per round,

1. rediscovers the namespaces (a ``/proc`` scan and the mount table: cheap) and opens
   only those that appeared, closing those that went away;
2. re-dumps the links (with their ``IFLA_STATS64`` counters) of every namespace, or of
   the ``dirty`` ones only (`watch`: those a kernel event named); with ``links_every``
   (`top`), between link dumps only the counters are read (RTM_GETSTATS, a tenth of the
   cost), and the links again as soon as a namespace's set of interfaces changes;
3. resolves the nsids with :func:`vethpeer.nsids.resolve`, remembering every answer the
   kernel gave (an nsid, once assigned, keeps its meaning while both namespaces live),
   and reads again the pair ends seen from one side only (:func:`vethpeer.nsids.unmatched`);
4. re-runs the sources' naming (Docker, CRI, cgroups, ...) only when the set of
   namespaces changed, or every ``naming_every`` seconds, or when asked to;
5. joins everything into a :class:`~vethpeer.model.Report` with a
   :class:`~vethpeer.correlate.Correlator` (the pure correlator, again only where something
   changed since the last round; everything again after a full read).

Threads: ``setns()`` moves only the calling thread, and a new thread inherits the
namespace current in its parent. Every ``setns`` here happens on the thread that made
the walker, inside :func:`vethpeer.netns.inside` (which always comes back); calling a
round from another thread is an error.

What holding costs: an open fd or socket keeps its namespace alive. A namespace whose
last process exits (or whose bind mount is removed) therefore lives until the next
rediscovery notices and closes our handles — at most one round later. Nothing is ever
written; like every walk, a link dump may make the kernel allocate an nsid, and no
RTM_NEWNSID is ever sent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TypeVar

from .. import nsids, ovs
from ..collect import Inflight, Naming, Request, check_privilege, check_sources, name_namespaces
from ..correlate import Correlator
from ..environment import Environment
from ..errors import NamespaceGone
from ..model import FdbEntry, Link, LinkStats, Namespace, NsKey, NsView, Report, Snapshot
from ..netlink import DumpInterrupted, NetlinkError, RtnlSocket
from ..netns import Discovery, discover, home_fd, inside, raise_fd_limit
from ..sources import Context
from ..sources.kernel import KernelNames
from ..walk import links_by_index, socket_in, with_addresses
from .carry import remember, restat

T = TypeVar("T")
NAMING_MIN = 2.0  # seconds: the runtimes' sources are asked at most this often when namespaces churn
PATCH_BELOW = 4  # a namespace is patched, not dumped, when events name fewer than 1/4 of its links


Face = tuple[NsKey, bool, tuple[str, ...], tuple[str, ...], tuple[int, ...], str | None]


def faces(discovery: Discovery) -> frozenset[Face]:
    """What a discovery says of each namespace that a report shows or names it by."""
    return frozenset(
        (ns.key, ns.is_host, ns.mounts, ns.reachable, ns.pids[:1], ns.comm) for ns in discovery.namespaces
    )


def _shape(links: tuple[Link, ...]) -> tuple[Link, ...]:
    """The links without their counters (what a change of the kernel's state is about)."""
    return tuple(replace(link, stats=None) if link.stats is not None else link for link in links)


def _with_stats(link: Link | None, stats: LinkStats | None) -> Link | None:
    return link if link is None or link.stats == stats else replace(link, stats=stats)


@dataclass(slots=True)
class _Kept:
    """A namespace held open between rounds: its fd, a socket made inside it, its last dump."""

    ns: Namespace
    fd: int
    sock: RtnlSocket
    links: tuple[Link, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()  # its bridges' MAC tables, when the request asks (read with the links)
    read_at: float = 0.0  # time.monotonic() of the last dump or counters read


class Walker:
    """Repeated walks over every namespace, for one thread. Use as a context manager."""

    def __init__(
        self,
        request: Request,
        env: Environment,
        *,
        addresses: bool = True,
        naming_every: float = 30.0,
        links_every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_privilege(env.proc)
        if request.inflight is None:  # a hung source is not started again every round
            request = replace(request, inflight=Inflight())
        self.request, self.env, self.addresses = request, env, addresses
        self.naming_every, self.links_every, self.clock = naming_every, links_every, clock
        self._links_at = float("-inf")
        self._resolved: nsids.Resolved | None = None  # valid while no links were read again
        self._last_resolved: nsids.Resolved = {}  # the latest resolution, kept when links are read again
        self._resolved_from: dict[NsKey, tuple[Link, ...]] = {}  # the links it was made from
        self._incomplete: set[NsKey] = set()  # namespaces with an nsid it left unresolved
        self._joined: Naming | None = None  # the naming the last report was joined with
        self._thread = threading.get_ident()
        self._home = home_fd(env.proc)
        self._kept: dict[NsKey, _Kept] = {}
        self._errors: dict[NsKey, str] = {}
        self._asked: dict[tuple[NsKey, NsKey], int] = {}
        self._naming: Naming | None = None
        self._named: frozenset[Face] = frozenset()
        self._named_at = 0.0
        self._stale = False  # a runtime said something changed: ask the sources again
        self._kernel = KernelNames()  # the kernel's names between the sources' answers (kept per namespace)
        self.discovery: Discovery | None = None
        self._faced: tuple[Discovery, frozenset[Face]] | None = None
        self._views: dict[NsKey, NsView] = {}  # the last snapshot's, kept where nothing changed
        self._correlator = Correlator()  # joins again only the namespaces whose inputs changed
        self.report: Report | None = None
        self.again: set[NsKey] = set()  # namespaces whose last dump the kernel kept interrupting
        self.read_at = 0.0  # time.monotonic() when the last round read the counters: a Sample's time

    # ---------------------------------------------------------------- lifetime

    def __enter__(self) -> Walker:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for key in list(self._kept):
            self._drop(key)
        if self._home >= 0:
            os.close(self._home)
            self._home = -1

    def _drop(self, key: NsKey) -> None:
        self._resolved = None
        kept = self._kept.pop(key)
        self.again.discard(key)
        self._forget(key)
        self._views.pop(key, None)
        kept.sock.close()
        os.close(kept.fd)
        for pair in [p for p in self._asked if key in p]:
            del self._asked[pair]

    def _forget(self, key: NsKey) -> None:
        """What the nsids of the namespaces held open said of ``key`` (gone: they may mean another
        now). Those that had a name for it are looked at again, as a fresh resolution would: a
        link still read as pointing there is resolved anew (unresolved, or what the kernel gave
        that nsid to since)."""
        self._resolved_from.pop(key, None)
        self._incomplete.discard(key)
        kept: nsids.Resolved = {}
        for observer, found in self._last_resolved.items():
            if observer == key:
                continue
            if key in found.values():
                found = {n: t for n, t in found.items() if t != key}
                self._incomplete.add(observer)
            kept[observer] = found
        self._last_resolved = kept

    def _resolve(
        self, links: Mapping[NsKey, tuple[Link, ...]], host: NsKey
    ) -> tuple[nsids.Resolved, set[NsKey]]:
        """:func:`nsids.resolve`, only for the namespaces whose links changed since the last one
        (or that it left an nsid unresolved in); and those namespaces."""
        before = self._resolved_from
        todo = {key for key, found in links.items() if before.get(key) is not found}
        todo |= self._incomplete & links.keys()
        known = self._last_resolved if before else None  # nothing yet, or every namespace read again
        resolved = nsids.resolve(links, host, self._ask, known, todo, confirm=True)
        self._incomplete = nsids.unresolved(links, resolved, todo)
        self._resolved_from = dict(links)
        self._last_resolved = resolved
        return resolved, todo

    # ---------------------------------------------------------------- rounds

    def rediscover(self) -> bool:
        """Find the namespaces again; close what went away. True if any changed (came, went, or
        was mounted, unmounted, or is held by another first process now)."""
        before = self._faces(self.discovery) if self.discovery else None
        self.discovery = discover(self.env.proc, self.discovery)
        now = frozenset(ns.key for ns in self.discovery.namespaces)
        for key in set(self._kept) - now:
            self._drop(key)
        for key in set(self._errors) - now:
            del self._errors[key]
        return before != self._faces(self.discovery)

    def _faces(self, discovery: Discovery) -> frozenset[Face]:
        """:func:`faces`, made once per discovery."""
        if self._faced is None or self._faced[0] is not discovery:
            self._faced = discovery, faces(discovery)
        return self._faced[1]

    def rename(self, *, now: bool = False) -> None:
        """Have a round ask the sources again (a runtime said something changed): the next one,
        or the first one ``NAMING_MIN`` s after the sources were last asked (see :meth:`naming_due`);
        ``now``: the next one, whenever they were last asked."""
        self._stale = True
        if now:
            self._named_at = float("-inf")

    def naming_due(self) -> float | None:
        """When a round should ask the sources again (clock time), None: no need."""
        if self._naming is None or self.discovery is None:
            return None
        if self._stale or self._faces(self.discovery) != self._named:
            return self._named_at + NAMING_MIN
        return None

    def round(
        self,
        dirty: Collection[NsKey] | None = None,
        *,
        rediscover: bool = True,
        full: bool = False,
        named: Mapping[NsKey, Collection[int]] | None = None,
    ) -> Report:
        """One walk: every namespace re-dumped, or only ``dirty`` ones (and new ones).

        ``named``: with ``dirty``, devices (ifindexes) the kernel named in other namespaces:
        those are read again (:meth:`_refresh`: a big namespace only where named).
        ``full``: every namespace's links again even when ``links_every`` would read counters only.
        """
        if threading.get_ident() != self._thread:
            raise RuntimeError("a Walker must be used from the thread that made it (setns is per thread)")
        if rediscover or self.discovery is None:
            self.rediscover()
        assert self.discovery is not None
        raise_fd_limit(2 * len(self.discovery.namespaces) + 64)
        now = self.clock()
        counters_only = (
            dirty is None
            and not full
            and self.request.stats
            and self.links_every is not None
            and now - self._links_at < self.links_every
        )
        if dirty is None and not counters_only:  # every namespace read again: every nsid resolved anew
            self._links_at = now
            self._resolved_from, self._incomplete = {}, set()
            self._correlator = Correlator()  # and every row joined anew
        started = time.monotonic()
        for ns in self.discovery.namespaces:
            kept = self._kept.get(ns.key)
            if kept is None:  # new, or could not be opened last time (tried again: its ways may have changed)
                self._open(ns)
            else:
                kept.ns = ns  # the same namespace, its processes and mounts as found now
                if counters_only:
                    self._counters(kept)
                elif dirty is None or ns.key in dirty:
                    self._dump(kept)
                elif named and ns.key in named:
                    self._refresh(kept, named[ns.key])
        self.read_at = (started + time.monotonic()) / 2  # when the counters were read (about)
        resolved = None if counters_only else self._repair(self.discovery.host)
        same_links = resolved is None and self._resolved is not None  # nothing read again but counters
        snap = self._snapshot(self.discovery, resolved)
        naming = self._naming_for(self.discovery)
        previous = self.report
        if same_links and previous is not None and naming is self._joined:
            report = restat(previous, snap)  # the same rows, with this round's links (counters)
        else:
            report = self._correlator(snap, naming.results)
            if naming.ovs is not None:
                report = ovs.annotate(report, naming.ovs)
        self._joined = naming
        self.report = report
        return report

    def reread(self, keys: Collection[NsKey]) -> set[NsKey]:
        """Dump ``keys`` again; those whose links (beyond their counters) or MAC tables changed."""
        changed = set()
        resolved = self._resolved
        for key in list(keys):  # (it may be the set :attr:`again`, which a dump changes)
            kept = self._kept.get(key)
            if kept is None:
                continue
            before = (_shape(kept.links), kept.fdb)
            self._dump(kept)
            if key not in self._kept or (_shape(kept.links), kept.fdb) != before:
                changed.add(key)
        if not changed:
            self._resolved = resolved  # the same links: the peers found before still hold
        return changed

    def _open(self, ns: Namespace) -> None:
        try:
            fd, sock = socket_in(ns, self._home, self.env.proc)
        except NamespaceGone as gone:
            self._errors[ns.key] = str(gone)
            return
        except OSError as error:
            self._errors[ns.key] = f"cannot read: {error.strerror or error}"
            return
        self._errors.pop(ns.key, None)
        self._kept[ns.key] = kept = _Kept(ns, fd, sock)
        self._dump(kept)

    def _dump(self, kept: _Kept) -> bool:
        """The namespace read whole; False if it could not be: then it is dropped (an error), or,
        when the kernel interrupted the dump every time (NLM_F_DUMP_INTR: a namespace changing
        under it, as a host does while a runtime makes hundreds of veths), its last read stands
        and it is read again at the next rescan (:attr:`again`). Forgetting the host for a look
        would leave every workload's peer unresolved in that look's report."""
        self._resolved = None
        read_at = time.monotonic()
        try:
            links = kept.sock.links(self.request.stats)
            kept.links = with_addresses(links, kept.sock) if self.addresses else tuple(links)
            kept.fdb = self._fdb(kept)
        except DumpInterrupted:
            if not kept.read_at:  # never read: nothing stands
                self._unreadable(kept, "the kernel interrupted every dump (the namespace kept changing)")
                return False
            self.again.add(kept.ns.key)
            return False
        except OSError as error:
            self._unreadable(kept, f"cannot read: {error.strerror or error}")
            return False
        kept.read_at = read_at
        self.again.discard(kept.ns.key)
        return True

    def _unreadable(self, kept: _Kept, why: str) -> None:
        self._drop(kept.ns.key)
        self._errors[kept.ns.key] = why

    def _refresh(self, kept: _Kept, indexes: Collection[int]) -> None:
        """These devices read again: a namespace of a few links is dumped whole (as cheap), a
        big one (the host: a link per workload) is patched where named (:meth:`_patch`), as is
        one whose dump the kernel kept interrupting (the devices named are what changed)."""
        whole = PATCH_BELOW * len(indexes) >= len(kept.links)
        if whole and (self._dump(kept) or kept.ns.key not in self._kept):
            return
        self._patch(kept, indexes)

    def _patch(self, kept: _Kept, indexes: Collection[int]) -> None:
        """Only these links again (RTM_GETLINK each; none: gone), their addresses, and the MAC
        table entries of these devices: what a dump would now say of them, the rest kept (and
        the counters of the namespace's last read, taken at one moment, ``read_at``).

        Sound because every change of a link sends an event naming it (the caller's events),
        but one: a veth whose peer moved away points elsewhere silently; the caller names that
        one too, and :meth:`_repair` catches what does not point back."""
        self._resolved = None
        sock = kept.sock
        try:
            fresh = (
                links_by_index(sock, indexes, self.request.stats)
                if self.addresses
                else {
                    index: sock.link(index=index, stats=self.request.stats) for index in sorted(set(indexes))
                }
            )
            # a patched link keeps the counters of the namespace's last read (read_at): a rate
            # takes both from one moment
            kept_links = [
                _with_stats(fresh.pop(link.index), link.stats) if link.index in fresh else link
                for link in kept.links
            ]
            links = tuple(link for link in [*kept_links, *fresh.values()] if link is not None)
            kept.links = links
            if not self.request.fdb or not any(link.kind == "bridge" for link in links):
                kept.fdb = ()
            elif not kept.fdb:
                kept.fdb = tuple(sock.fdb())  # a bridge appeared: its table, whole
            else:  # a dump lists each device's entries in turn, by ifindex
                ports: dict[int, list[FdbEntry]] = {}
                for entry in kept.fdb:
                    ports.setdefault(entry.port, []).append(entry)
                for index in indexes:
                    ports[index] = sock.fdb(port=index)
                kept.fdb = tuple(entry for port in sorted(ports) for entry in ports[port])
        except OSError as error:
            self._unreadable(kept, f"cannot read: {error.strerror or error}")

    def _fdb(self, kept: _Kept) -> tuple[FdbEntry, ...]:
        if not self.request.fdb or not any(link.kind == "bridge" for link in kept.links):
            return ()
        return tuple(kept.sock.fdb())

    def _repair(self, host: NsKey) -> nsids.Resolved | None:
        """After a round that read links: read again the peers that are missing or stale
        (:func:`vethpeer.nsids.unmatched`), each where it is named.

        A namespace without an nsid in the host sends no events, so a veth created from the
        host into it is seen only from the host side; its other end is found here. And a
        namespace read after the host may hold a pair end made since the host was read.
        Every pair is looked at, each look (a link kept since the last one can be unmatched
        by a link read now, or by an nsid that now means something).
        """
        links = {key: kept.links for key, kept in self._kept.items()}
        resolved, _todo = self._resolve(links, host)
        stale = nsids.unmatched(links, resolved)
        for key, named in stale.items():
            if key in self._kept:
                self._refresh(self._kept[key], named)
        return None if stale else resolved  # what the snapshot needs, unless links were read again

    def _counters(self, kept: _Kept) -> None:
        """Only the counters (RTM_GETSTATS); the links again if the set of interfaces changed.

        The counters always come from this one quick read, whose time is ``read_at``: a full
        link dump of a busy host spreads over a fraction of a second, too vague for a rate.
        """
        try:
            read_at, counters = time.monotonic(), kept.sock.stats()
            differ = counters.keys() ^ {link.index for link in kept.links}
            if differ:
                # an interface came or went (its events not looked at yet): those links themselves
                # (the host, a link per workload, patched: not its thousand links), then the counters again
                self._refresh(kept, differ)
                if kept.ns.key not in self._kept:
                    return
                read_at, counters = time.monotonic(), kept.sock.stats()
            fdb = self._fdb(kept)  # a bridge learns without telling anyone: read as often as the counters
        except OSError:
            self._dump(kept)
            return
        kept.read_at, kept.fdb = read_at, fdb
        kept.links = tuple(  # most links are idle: only those whose counters moved are rebuilt
            replace(link, stats=counters[link.index])
            if link.index in counters and link.stats != counters[link.index]
            else link
            for link in kept.links
        )

    def _ask(self, observer: NsKey, target: NsKey) -> int | None:
        """Which nsid ``observer`` gives ``target`` (RTM_GETNSID, allocates nothing); answers kept."""
        known = self._asked.get((observer, target))
        if known is not None:
            return known
        try:
            nsid = self._kept[observer].sock.nsid_of(self._kept[target].fd)
        except (KeyError, NetlinkError):
            return None
        if nsid is not None:
            self._asked[(observer, target)] = nsid
        return nsid

    def _snapshot(self, discovery: Discovery, resolved: nsids.Resolved | None = None) -> Snapshot:
        if resolved is None:
            resolved = self._resolved  # counters-only rounds: the links' peers are unchanged
        if resolved is None:
            links = {key: kept.links for key, kept in self._kept.items()}
            resolved, _todo = self._resolve(links, discovery.host)
        self._resolved = resolved
        views = [self._view(kept, resolved[key]) for key, kept in self._kept.items()]
        by_key = {ns.key: ns for ns in discovery.namespaces}
        views += [NsView(by_key[key], error=error) for key, error in self._errors.items() if key in by_key]
        views.sort(key=lambda view: view.ns.key)
        return Snapshot(
            host=discovery.host,
            views=tuple(views),
            unreadable_pids=discovery.unreadable_pids,
            vanished_pids=discovery.vanished_pids,
            host_found_via=discovery.host_found_via,
        )

    def _view(self, kept: _Kept, meaning: Mapping[int, NsKey]) -> NsView:
        """The namespace's view: the last snapshot's when made of the same objects (the correlator
        then knows it by its identity)."""
        view = self._views.get(kept.ns.key)
        if (
            view is None
            or view.ns is not kept.ns
            or view.links is not kept.links
            or view.nsids is not meaning
            or view.fdb is not kept.fdb
        ):
            view = self._views[kept.ns.key] = NsView(kept.ns, kept.links, meaning, kept.fdb)
        return view

    def _naming_for(self, discovery: Discovery) -> Naming:
        keys = frozenset(ns.key for ns in discovery.namespaces)
        seen = self._faces(discovery)  # a new mount or first process names a namespace anew, as a new one
        now = self.clock()
        wanted = seen != self._named or self._stale
        if self._naming is not None and wanted and now - self._named_at < NAMING_MIN:
            # namespaces come and go faster than the daemons should be asked: the kernel's own
            # names (ip netns, mounts, processes) now, the runtimes' at most every NAMING_MIN s
            return self._kernel_names(discovery, self._naming) if seen != self._named else self._naming
        if self._naming is None or wanted or now - self._named_at >= self.naming_every:
            self._stale = False
            fresh = name_namespaces(discovery, self.request, self.env, self._kernel)
            self._naming = fresh if self._naming is None else remember(self._naming, fresh, keys)
            self._named, self._named_at = seen, now
            statuses = [r.status for r in self._naming.results]
            if self._naming.ovs is not None:
                statuses.append(self._naming.ovs.status)
            check_sources(statuses, self.request, self.env)
        return self._naming

    def _kernel_names(self, discovery: Discovery, naming: Naming) -> Naming:
        context = Context(
            discovery.host,
            discovery.namespaces,
            self.request.options,
            proc=self.env.proc,
            environ=self.env.environ,
        )
        fresh = self._kernel.collect(context)
        results = tuple(fresh if r.status.name == fresh.status.name else r for r in naming.results)
        return Naming(results, naming.ovs)

    def read_times(self) -> dict[NsKey, float]:
        """When each namespace held open was last read (for :func:`vethpeer.live.rates.sample`)."""
        return {key: kept.read_at for key, kept in self._kept.items()}

    # ---------------------------------------------------------------- for the event socket

    def host_nsids(self) -> dict[int, NsKey]:
        """nsid -> namespace, as the host names the namespaces held open (no nsid is assigned)."""
        if self.discovery is None:
            return {}
        host = self.discovery.host
        found = {}
        for key in self._kept:
            if key != host:
                nsid = self._ask(host, key)
                if nsid is not None:
                    found[nsid] = key
        return found

    def in_host(self, make: Callable[[], T]) -> T:
        """``make()`` run inside the host namespace (a socket made there answers for it)."""
        assert self.discovery is not None
        host = self._kept.get(self.discovery.host)
        if host is None:
            raise NamespaceGone("the host's network namespace could not be opened")
        with inside(host.fd, self._home):
            return make()

    def peer_of(self, key: NsKey, index: int) -> tuple[NsKey, int] | None:
        """Where the veth ``index`` of ``key`` pointed when last read: its peer's namespace and
        ifindex (for a move: the end left behind, which the kernel does not tell about)."""
        kept = self._kept.get(key)
        link = next((link for link in kept.links if link.index == index), None) if kept else None
        if link is None or link.kind not in nsids.PAIR_KINDS or link.link is None:
            return None
        if link.link_netnsid is None:
            return key, link.link
        target = self.nsid_target(key, link.link_netnsid)
        return (target, link.link) if target is not None else None

    def nsid_target(self, observer: NsKey, nsid: int) -> NsKey | None:
        """The namespace that ``observer`` calls ``nsid`` (among those held open)."""
        known = self._last_resolved.get(observer, {}).get(nsid)  # an nsid keeps its meaning while both live
        if known is not None and known in self._kept:
            return known
        for key in self._kept:
            if key != observer and self._ask(observer, key) == nsid:
                return key
        return None
