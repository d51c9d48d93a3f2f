"""The pure core: join the kernel's view and the sources' claims into rows.

No I/O here. A peer is the link with index IFLA_LINK in the namespace that
IFLA_LINK_NETNSID names *as resolved from the reporting namespace* (see walk.py);
no netnsid means the same namespace. An ifindex number alone never identifies
anything: every pod's eth0 has the same one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .model import (
    Claim,
    End,
    Link,
    LinkClaim,
    Namespace,
    NsKey,
    NsView,
    Relation,
    Report,
    Row,
    Snapshot,
    SourceResult,
    Workload,
    WorkloadKind,
)

PAIR_KINDS = frozenset({"veth", "netkit"})
HOST = Workload(WorkloadKind.HOST, "host")


def _unnamed(ns: Namespace) -> Workload:
    return Workload(WorkloadKind.NETNS, f"net:[{ns.key.ino}]", id=str(ns.key.ino))


def _rank(claims: Iterable[Claim]) -> dict[NsKey, tuple[Workload, ...]]:
    """All workloads per namespace, best claim first; equal priorities by name."""
    by_ns: dict[NsKey, list[Claim]] = {}
    for claim in claims:
        by_ns.setdefault(claim.netns, []).append(claim)
    return {key: _ranked_workloads(found) for key, found in by_ns.items()}


def _ranked_workloads(claims: Iterable[Claim]) -> tuple[Workload, ...]:
    """One namespace's workloads, best claim first; equal priorities by name."""
    unique: dict[tuple[str, str, str | None], Workload] = {}
    for claim in sorted(claims, key=lambda c: (-c.priority, c.workload.kind.value, c.workload.name)):
        w = claim.workload
        unique.setdefault((w.kind.value, w.name, w.id), w)
    return tuple(unique.values())


def _host_network(claims: Iterable[Claim]) -> tuple[Workload, ...]:
    """Workloads sharing the host namespace; one per ID, named by the best source."""
    best: dict[str, Workload] = {}
    for claim in sorted(claims, key=lambda c: -c.priority):
        w = claim.workload
        if w.kind is not WorkloadKind.HOST:
            best.setdefault(w.id or w.label, w)
    return tuple(sorted(best.values(), key=lambda w: w.label))


def _link_owners(claims: Iterable[LinkClaim]) -> dict[tuple[NsKey, str], Workload]:
    """(namespace, interface name) -> the workload holding that one interface (a tap's VM)."""
    best: dict[tuple[NsKey, str], LinkClaim] = {}
    for claim in claims:
        key = (claim.netns, claim.ifname)
        known = best.get(key)
        if known is None or (-claim.priority, claim.workload.name) < (-known.priority, known.workload.name):
            best[key] = claim
    return {key: claim.workload for key, claim in best.items()}


# What a join read, for a Correlator (:attr:`_Index.looked`): (namespace, what, which).
NS = 0  # the namespace: its view's error and its workloads (its object: see Correlator._stale)
LINK = 1  # its link at ifindex ``which``
NAME = 2  # only that link's name (a bridge's, for a port's row)
NSID = 3  # what its nsid ``which`` means (view.nsids)
LONELY = 4  # whether its links are all loopback (a namespace's ``lo`` is a row only then)
Seen = tuple[NsKey, int, int]


class _Index:
    """Lookups over one snapshot."""

    def __init__(
        self,
        snapshot: Snapshot,
        workloads: Mapping[NsKey, tuple[Workload, ...]],
        link_owners: Mapping[tuple[NsKey, str], Workload] | None = None,
    ) -> None:
        self.link_owners = link_owners or {}
        self.snapshot = snapshot
        self.views: dict[NsKey, NsView] = {view.ns.key: view for view in snapshot.views}
        self.workloads = workloads
        # What the rows joined since it was set read (see Seen): a Correlator keeps rows while
        # those stay the same.
        self.looked: list[Seen] | None = None
        self.by_index: dict[NsKey, tuple[NsView, dict[int, Link]]] = {}  # a Correlator keeps them

    def links(self, key: NsKey) -> dict[int, Link]:
        """The namespace's links by ifindex (made when first asked)."""
        view = self.views[key]
        found = self.by_index.get(key)
        if found is None or found[0] is not view:
            found = self.by_index[key] = (view, {link.index: link for link in view.links})
        return found[1]

    def link_at(self, key: NsKey, index: int, name_only: bool = False) -> Link | None:
        if self.looked is not None:
            self.looked.append((key, NAME if name_only else LINK, index))
        return self.links(key).get(index)

    def workload(self, ns: Namespace) -> Workload:
        if self.looked is not None:
            self.looked.append((ns.key, NS, 0))
        if ns.key == self.snapshot.host:
            return HOST
        named = self.workloads.get(ns.key)
        return named[0] if named else _unnamed(ns)

    def end(self, ns: Namespace, link: Link) -> End:
        master = None
        if link.master is not None:
            bridge = self.link_at(ns.key, link.master, name_only=True)
            master = bridge.name if bridge else f"if{link.master}"
        return End(ns, self.workload(ns), link, master)

    def peer(self, view: NsView, link: Link) -> tuple[Relation | None, End | None, str | None]:
        """(relation, the other end, why it is unresolved)."""
        relation, found, unresolved = self.peer_link(view, link)
        return relation, None if found is None else self.end(*found), unresolved

    def peer_link(
        self, view: NsView, link: Link
    ) -> tuple[Relation | None, tuple[Namespace, Link] | None, str | None]:
        """:meth:`peer`, the other end as (its namespace, its link): no End is built for it."""
        if (view.ns.key, link.name) in self.link_owners and link.kind == "tun":
            return Relation.TAP, None, None  # the other end is a process's file descriptor
        if not link.link or (link.link == link.index and link.link_netnsid is None):
            return None, None, None
        relation = Relation.VETH if link.kind in PAIR_KINDS else Relation.PARENT
        if link.link_netnsid is None:
            resolved: NsKey | None = view.ns.key
        else:
            if self.looked is not None:
                self.looked.append((view.ns.key, NSID, link.link_netnsid))
            resolved = view.nsids.get(link.link_netnsid)
        if resolved is None:
            return (
                relation,
                None,
                (
                    f"nsid {link.link_netnsid} (as seen from this namespace) "
                    "matches no namespace that could be read"
                ),
            )
        where: NsKey = resolved
        if self.looked is not None:
            self.looked.append((where, NS, 0))
        target_view = self.views.get(where)
        if target_view is None or target_view.error:
            reason = target_view.error if target_view else "not readable"
            return relation, None, f"the peer's namespace could not be read: {reason}"
        other = self.link_at(where, link.link)
        if other is None:
            return relation, None, f"ifindex {link.link} is gone from the peer's namespace"
        if relation is Relation.VETH and other.link != link.index:
            return relation, None, f"ifindex {link.link} there does not point back (changed during the walk?)"
        return relation, (target_view.ns, other), None


def _wanted(view: NsView, link: Link, host: NsKey, index: _Index) -> bool:
    """Rows are interfaces inside workload namespaces, plus host veths not shown as a peer."""
    if view.ns.key != host:
        if not link.is_loopback:
            return True
        if index.looked is not None:
            index.looked.append((view.ns.key, LONELY, 0))
        return _lonely(view)
    if (host, link.name) in index.link_owners and link.kind == "tun":
        return True  # a tap held by a VM: the VM's row
    if link.kind not in PAIR_KINDS:
        return False
    # a thousand host veths whose peers are rows elsewhere: their peers' Ends are not built
    _relation, peer, unresolved = index.peer_link(view, link)
    return unresolved is not None or (peer is not None and peer[0].key == host)


def _lonely(view: NsView) -> bool:
    return all(other.is_loopback for other in view.links)


def _order(row: Row) -> tuple[int, str, int, str]:
    workload = row.end.workload
    return (workload.kind is WorkloadKind.HOST, workload.label, row.end.ns.key.ino, row.end.link.name)


def _link_row(view: NsView, link: Link, host: NsKey, index: _Index) -> Row | None:
    """The row of one link of a namespace that could be read (None: it is not one)."""
    if not _wanted(view, link, host, index):
        return None
    relation, peer, unresolved = index.peer(view, link)
    end = index.end(view.ns, link)
    owner = index.link_owners.get((view.ns.key, link.name))
    if relation is Relation.TAP and owner is not None and view.ns.key == host:
        end = End(end.ns, owner, end.link, end.master)  # the host's tap is the VM's
    return Row(end, relation, peer, unresolved)


def _view_rows(view: NsView, host: NsKey, index: _Index) -> list[Row]:
    """The rows of one namespace (none for one that could not be read)."""
    if view.error:
        return []
    rows = [_link_row(view, link, host, index) for link in view.links]
    return [row for row in rows if row is not None]


_Named = tuple[dict[NsKey, tuple[Workload, ...]], tuple[Workload, ...], dict[tuple[NsKey, str], Workload]]


def _named(snapshot: Snapshot, results: Sequence[SourceResult]) -> _Named:
    """What the sources' claims say: the workloads per namespace, the host's, the links' owners."""
    claims = [claim for result in results for claim in result.claims]
    workloads = _rank(c for c in claims if c.netns != snapshot.host)
    host_network = _host_network(c for c in claims if c.netns == snapshot.host)
    return workloads, host_network, _link_owners(c for result in results for c in result.links)


def _report(
    rows: list[Row],
    snapshot: Snapshot,
    results: Sequence[SourceResult],
    workloads: Mapping[NsKey, tuple[Workload, ...]],
    host_network: tuple[Workload, ...],
    *,
    ordered: bool = False,
) -> Report:
    if not ordered:
        rows.sort(key=_order)
    return Report(
        rows=tuple(rows),
        workloads=workloads,
        host_network=host_network,
        sources=tuple(result.status for result in results),
        snapshot=snapshot,
    )


def correlate(snapshot: Snapshot, results: Sequence[SourceResult]) -> Report:
    """Every interface inside a workload namespace, joined with its peer, sorted."""
    workloads, host_network, owners = _named(snapshot, results)
    index = _Index(snapshot, workloads, owners)
    rows = [row for view in snapshot.views for row in _view_rows(view, snapshot.host, index)]
    return _report(rows, snapshot, results, workloads, host_network)


Keyed = tuple[tuple[int, str, int, str], Row]  # a row with its sort key
Ordered = list[Keyed]
Slot = tuple[NsKey, int]  # a link's place: its namespace, its ifindex (see Correlator._join)


class _Unit:
    """One link joined: the object it was joined from, what the join read, its row (or none)."""

    __slots__ = ("link", "looked", "row")

    def __init__(self, link: Link, looked: tuple[Seen, ...], row: Keyed | None) -> None:
        self.link, self.looked, self.row = link, looked, row


class _Joined:
    """One namespace joined: the view, its links' units by slot (in the view's order), their rows."""

    __slots__ = ("rows", "units", "view")

    def __init__(self, view: NsView, units: dict[int, _Unit], rows: Ordered) -> None:
        self.view, self.units, self.rows = view, units, rows


class Correlator:
    """:func:`correlate` again and again (the live model): a link's row is joined again only when
    what it was joined from changed, the others kept from the last call.

    A link's row depends on the link, and on what its join read (:data:`Seen`): a namespace's
    workloads and whether it could be read, a link at an ifindex, a bridge's name, what an nsid
    means, whether a namespace has only loopback links. A link that is the same object as last
    time, of which everything read is equal (mostly: the same objects), has the same row, kept.
    What was read of a namespace can only change when its view is another object, or its
    workloads are others: of such a view only what differs from the last one is looked at again
    (its links that are other objects, its nsids that mean something else), through an index from
    what was read to the links whose rows read it. So a host whose view is new every look (a veth
    came) joins again the veth that came, not its thousand others, and a look that changed a few
    namespaces costs a few joins. A namespace object found anew for the same key (its processes
    or mounts changed: the host's whenever a process starts or ends there) is put into the rows
    that show it. The sources' claims are ranked again when they are others, a namespace's
    workloads reused when its claims are the same; a change of the links' owners or of the host
    joins everything again. The result equals ``correlate(snapshot, results)``.
    """

    def __init__(self) -> None:
        self._host: NsKey | None = None
        self._owners: dict[tuple[NsKey, str], Workload] = {}
        self._claims: tuple[Sequence[SourceResult], NsKey, _Named] | None = None  # the last ranking
        self._by_ns: dict[NsKey, tuple[list[Claim], tuple[Workload, ...]]] = {}  # claims -> ranked
        self._joined: dict[NsKey, _Joined] = {}
        # what was read of each namespace: the value then (the same for every reader, after each
        # call), and the links whose rows read it
        self._read: dict[NsKey, dict[Seen, tuple[object, set[Slot]]]] = {}
        self._views: dict[NsKey, NsView] = {}
        self._workloads: Mapping[NsKey, tuple[Workload, ...]] = {}
        self._by_index: dict[NsKey, tuple[NsView, dict[int, Link]]] = {}

    def _reset(self) -> None:
        self._joined, self._read, self._views, self._workloads, self._by_index = {}, {}, {}, {}, {}

    def _ranked(self, snapshot: Snapshot, results: Sequence[SourceResult]) -> _Named:
        """:func:`_named`, a namespace's ranking kept while its claims are the same objects."""
        memo = self._claims
        if memo is not None and memo[0] is results and memo[1] == snapshot.host:
            return memo[2]
        host = snapshot.host
        claims: dict[NsKey, list[Claim]] = {}
        on_host: list[Claim] = []
        for result in results:
            for claim in result.claims:
                if claim.netns == host:
                    on_host.append(claim)
                else:
                    claims.setdefault(claim.netns, []).append(claim)
        before, by_ns = self._by_ns, {}
        workloads: dict[NsKey, tuple[Workload, ...]] = {}
        for key, found in claims.items():
            kept = before.get(key)
            if kept is None or kept[0] != found:  # (the same objects, mostly: compared in C)
                kept = found, _ranked_workloads(found)
            workloads[key] = kept[1]
            by_ns[key] = kept
        self._by_ns = by_ns
        links = _link_owners(c for result in results for c in result.links)
        named = workloads, _host_network(on_host), links
        self._claims = results, host, named
        return named

    def __call__(self, snapshot: Snapshot, results: Sequence[SourceResult]) -> Report:
        workloads, host_network, owners = self._ranked(snapshot, results)
        if snapshot.host != self._host or owners != self._owners:
            self._host, self._owners = snapshot.host, owners
            self._reset()
        index = _Index(snapshot, workloads, owners)
        views = index.views
        if len(views) != len(snapshot.views):  # a namespace twice: not from a walk, joined whole
            self._reset()
            return correlate(snapshot, results)
        index.by_index = self._by_index
        redo, moved = self._stale(index)
        joined: dict[NsKey, _Joined] = {}
        ordered: Ordered = []
        for view in snapshot.views:
            key = view.ns.key
            kept = self._joined.get(key)
            if kept is None or kept.view is not view or key in redo:
                kept = self._join(view, kept, redo.get(key), key in moved, index)
            elif key in moved:
                self._repoint(kept, views)
            joined[key] = kept
            ordered += kept.rows
        for key in self._joined.keys() - joined.keys():
            for slot, unit in self._joined[key].units.items():
                self._forget((key, slot), unit.looked)
        for key in self._by_index.keys() - views.keys():
            del self._by_index[key]
        self._joined, self._views, self._workloads = joined, views, workloads
        ordered.sort(key=_first)  # stable: as correlate()'s sort of the same rows in the same order
        rows = [row for _key, row in ordered]
        return _report(rows, snapshot, results, workloads, host_network, ordered=True)

    def _join(
        self,
        view: NsView,
        kept: _Joined | None,
        again: set[int] | None,
        moved: bool,
        index: _Index,
    ) -> _Joined:
        """A namespace's rows: each link's kept when it is the same object and nothing it read
        changed (``again``: the slots that did), joined again otherwise.

        A link's slot is its ifindex; a view from a walk has each once (an ifindex is a device in
        its namespace), one that repeats one (a hand-made view) has the repeats by position."""
        key = view.ns.key
        before = kept.units if kept is not None else {}
        units: dict[int, _Unit] = {}
        rows: Ordered = []
        if not view.error:
            host = index.snapshot.host
            for position, link in enumerate(view.links):
                slot = link.index if link.index not in units else -1 - position
                unit = before.get(slot)
                if unit is not None and unit.link is link and (again is None or slot not in again):
                    if moved and unit.row is not None:
                        unit.row = (unit.row[0], _current(unit.row[1], index.views))
                else:
                    if unit is not None:
                        self._forget((key, slot), unit.looked)
                    unit = self._join_link(view, link, (key, slot), host, index)
                units[slot] = unit
                if unit.row is not None:
                    rows.append(unit.row)
        for slot in before.keys() - units.keys():
            self._forget((key, slot), before[slot].looked)
        return _Joined(view, units, rows)

    def _join_link(self, view: NsView, link: Link, slot: Slot, host: NsKey, index: _Index) -> _Unit:
        index.looked = []
        row = _link_row(view, link, host, index)
        looked = tuple(dict.fromkeys(index.looked))
        index.looked = None
        for seen in looked:
            read = self._read.get(seen[0])
            if read is None:
                read = self._read[seen[0]] = {}
            entry = read.get(seen)
            if entry is None:
                read[seen] = (self._now(index, seen), {slot})
            else:
                entry[1].add(slot)  # its value is the current one (see _stale)
        return _Unit(link, looked, None if row is None else (_order(row), row))

    @staticmethod
    def _repoint(kept: _Joined, views: Mapping[NsKey, NsView]) -> None:
        """The same rows, with the namespaces' objects as found now."""
        rows: Ordered = []
        for unit in kept.units.values():
            if unit.row is not None:
                order, row = unit.row
                fresh = _current(row, views)
                if fresh is not row:
                    unit.row = order, fresh
                rows.append(unit.row)
        kept.rows = rows

    def _stale(self, index: _Index) -> tuple[dict[NsKey, set[int]], set[NsKey]]:
        """The links whose rows read something that is not what it was, by namespace: only what
        was read of a namespace whose view or workloads are others can be, and of a view that is
        another object only what differs from the last one (its links at the ifindexes whose
        object is another, its nsids that mean something else, its workloads, whether it could
        be read, whether it has only loopback links). Each value read is then made the current
        one (every reader of a changed one is joined again, and reads it anew).

        And the namespaces with rows that show a namespace whose object is another (its processes
        or mounts found anew), by the same key: nothing a join reads of a namespace but its key, so
        those rows are the same but for that object (a join builds each End with the
        namespace's object of the snapshot)."""
        views, before, reads = index.views, self._views, self._read
        redo: dict[NsKey, set[int]] = {}
        moved: set[NsKey] = set()
        for key, view in views.items():
            old = before.get(key)
            if old is view:
                continue
            read = reads.get(key)
            if not read:
                continue
            if old is None or old.error or view.error:
                self._check(index, read, list(read), redo)
                continue
            if old.ns is not view.ns:
                entry = read.get((key, NS, 0))
                if entry is not None:
                    moved.update(reader for reader, _slot in entry[1])
            seens: list[Seen] = [(key, NS, 0), (key, LONELY, 0)]
            found = self._by_index.get(key)
            then = (
                found[1]
                if found is not None and found[0] is old
                else {link.index: link for link in old.links}
            )
            now = index.links(key)
            differ = [at for at, link in now.items() if then.get(at) is not link]
            differ += then.keys() - now.keys()
            for at in differ:
                seens += ((key, LINK, at), (key, NAME, at))
            if old.nsids is not view.nsids:
                seens += (
                    (key, NSID, nsid) for nsid in {n for n, _ in old.nsids.items() ^ view.nsids.items()}
                )
            self._check(index, read, seens, redo)
        for key in before.keys() - views.keys():
            read = reads.get(key)
            if read:
                self._check(index, read, list(read), redo)
        workloads, earlier = index.workloads, self._workloads
        if workloads is not earlier:
            renamed = [key for key, named in workloads.items() if earlier.get(key) is not named]
            renamed += earlier.keys() - workloads.keys()
            for key in renamed:
                read = reads.get(key)
                if read:
                    self._check(index, read, [(key, NS, 0)], redo)
        return redo, moved

    def _check(
        self,
        index: _Index,
        read: dict[Seen, tuple[object, set[Slot]]],
        seens: Iterable[Seen],
        redo: dict[NsKey, set[int]],
    ) -> None:
        """Each of ``seens`` that was read and is now another value: its readers to join again."""
        for seen in seens:
            entry = read.get(seen)
            if entry is None:
                continue
            then, readers = entry
            now = self._now(index, seen)
            if now is not then and now != then:
                _mark(redo, readers)
                read[seen] = (now, readers)

    def _forget(self, slot: Slot, looked: tuple[Seen, ...]) -> None:
        """The link at ``slot`` no longer reads these."""
        for seen in looked:
            read = self._read.get(seen[0])
            entry = read.get(seen) if read is not None else None
            if read is None or entry is None:
                continue
            entry[1].discard(slot)
            if not entry[1]:
                del read[seen]
                if not read:
                    del self._read[seen[0]]

    @staticmethod
    def _now(index: _Index, seen: Seen) -> object:
        """What ``seen`` reads in ``index``'s snapshot."""
        key, what, at = seen
        view = index.views.get(key)
        if view is None:
            return None
        if what == NS:  # the namespace's object is not compared: see _stale
            return view.error, index.workloads.get(key)
        if what == NSID:
            return view.nsids.get(at)
        if what == LONELY:
            return _lonely(view)
        link = index.links(key).get(at)
        return link.name if what == NAME and link is not None else link


def _mark(slots: dict[NsKey, set[int]], readers: Iterable[Slot]) -> None:
    for key, slot in readers:
        found = slots.get(key)
        if found is None:
            slots[key] = {slot}
        else:
            found.add(slot)


_new = tuple.__new__  # a named tuple made without its __new__'s call: a thousand rows a look


def _current(row: Row, views: Mapping[NsKey, NsView]) -> Row:
    """``row`` with each End's namespace the object of ``views`` (the same key)."""
    end = _current_end(row.end, views)
    peer = None if row.peer is None else _current_end(row.peer, views)
    if end is row.end and peer is row.peer:
        return row
    return _new(Row, (end, row.relation, peer, row.unresolved))


def _current_end(end: End, views: Mapping[NsKey, NsView]) -> End:
    found = views.get(end.ns.key)
    if found is None or found.ns is end.ns:
        return end
    return _new(End, (found.ns, end.workload, end.link, end.master))


def _first(pair: tuple[tuple[int, str, int, str], Row]) -> tuple[int, str, int, str]:
    return pair[0]
