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
    ranked: dict[NsKey, tuple[Workload, ...]] = {}
    for key, found in by_ns.items():
        found.sort(key=lambda c: (-c.priority, c.workload.kind.value, c.workload.name))
        unique: dict[tuple[str, str, str | None], Workload] = {}
        for claim in found:
            w = claim.workload
            unique.setdefault((w.kind.value, w.name, w.id), w)
        ranked[key] = tuple(unique.values())
    return ranked


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
        # What the rows joined since it was set read: (namespace, None, _) its view and workloads,
        # (namespace, ifindex, False) one of its links, (namespace, ifindex, True) only that link's
        # name (a bridge's) -- a Correlator keeps rows while those stay the same.
        self.looked: list[tuple[NsKey, int | None, bool]] | None = None
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
            self.looked.append((key, index, name_only))
        return self.links(key).get(index)

    def workload(self, ns: Namespace) -> Workload:
        if self.looked is not None:
            self.looked.append((ns.key, None, False))
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
        resolved = view.ns.key if link.link_netnsid is None else view.nsids.get(link.link_netnsid)
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
            self.looked.append((where, None, False))
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
        return not link.is_loopback or all(other.is_loopback for other in view.links)
    if (host, link.name) in index.link_owners and link.kind == "tun":
        return True  # a tap held by a VM: the VM's row
    if link.kind not in PAIR_KINDS:
        return False
    # a thousand host veths whose peers are rows elsewhere: their peers' Ends are not built
    _relation, peer, unresolved = index.peer_link(view, link)
    return unresolved is not None or (peer is not None and peer[0].key == host)


def _order(row: Row) -> tuple[int, str, int, str]:
    workload = row.end.workload
    return (workload.kind is WorkloadKind.HOST, workload.label, row.end.ns.key.ino, row.end.link.name)


def _view_rows(view: NsView, host: NsKey, index: _Index) -> list[Row]:
    """The rows of one namespace (none for one that could not be read)."""
    rows: list[Row] = []
    if view.error:
        return rows
    for link in view.links:
        if not _wanted(view, link, host, index):
            continue
        relation, peer, unresolved = index.peer(view, link)
        end = index.end(view.ns, link)
        owner = index.link_owners.get((view.ns.key, link.name))
        if relation is Relation.TAP and owner is not None and view.ns.key == host:
            end = End(end.ns, owner, end.link, end.master)  # the host's tap is the VM's
        rows.append(Row(end, relation, peer, unresolved))
    return rows


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


Seen = tuple[NsKey, "int | None", bool]  # what :attr:`_Index.looked` names
Ordered = list[tuple[tuple[int, str, int, str], Row]]  # rows with their sort keys


class Correlator:
    """:func:`correlate` again and again (the live model): the rows of a namespace are joined again
    only when what they were joined from changed, the others kept from the last call.

    A namespace's rows depend on its view, and on what they read of the others (their peers'):
    a namespace's identity and workloads, a link at an ifindex, a bridge's name. When its view is
    the same object as last time and everything it read is equal (mostly: the same objects), its
    rows are the same, and kept. What a row read of a namespace can only change when that
    namespace's view is another object, or its workloads are others: only what was read of those
    is looked at again (an index from what was read to the namespaces that read it), so a look
    that changed a few namespaces costs a few joins, not a pass over every row. The sources'
    claims are ranked again when they are others; a change of the links' owners or of the host
    joins everything again. The result equals ``correlate(snapshot, results)``.
    """

    def __init__(self) -> None:
        self._host: NsKey | None = None
        self._owners: dict[tuple[NsKey, str], Workload] = {}
        self._claims: tuple[Sequence[SourceResult], NsKey, _Named] | None = None  # the last ranking
        self._joined: dict[NsKey, tuple[NsView, tuple[Seen, ...], Ordered]] = {}
        # what was read of each namespace: the value then (the same for every reader, after each
        # call), and the namespaces whose rows read it
        self._read: dict[NsKey, dict[Seen, tuple[object, set[NsKey]]]] = {}
        self._views: dict[NsKey, NsView] = {}
        self._workloads: Mapping[NsKey, tuple[Workload, ...]] = {}
        self._by_index: dict[NsKey, tuple[NsView, dict[int, Link]]] = {}

    def _ranked(self, snapshot: Snapshot, results: Sequence[SourceResult]) -> _Named:
        memo = self._claims
        if memo is not None and memo[0] is results and memo[1] == snapshot.host:
            return memo[2]
        named = _named(snapshot, results)
        self._claims = results, snapshot.host, named
        return named

    def __call__(self, snapshot: Snapshot, results: Sequence[SourceResult]) -> Report:
        workloads, host_network, owners = self._ranked(snapshot, results)
        if snapshot.host != self._host or owners != self._owners:
            self._host, self._owners = snapshot.host, owners
            self._joined, self._read, self._views, self._workloads = {}, {}, {}, {}
        index = _Index(snapshot, workloads, owners)
        views = index.views
        index.by_index = {key: found for key, found in self._by_index.items() if views.get(key) is found[0]}
        redo, moved = self._stale(index)
        joined: dict[NsKey, tuple[NsView, tuple[Seen, ...], Ordered]] = {}
        ordered: Ordered = []
        for view in snapshot.views:
            key = view.ns.key
            kept = self._joined.get(key)
            if kept is not None and kept[0] is view and key not in redo:
                if key in moved:  # the same rows, with the namespaces' objects as found now
                    kept = (view, kept[1], [(order, _current(row, views)) for order, row in kept[2]])
                joined[key] = kept
                ordered += kept[2]
                continue
            if kept is not None:
                self._forget(key, kept[1])
            index.looked = []
            found = [(_order(row), row) for row in _view_rows(view, snapshot.host, index)]
            looked = tuple(dict.fromkeys(index.looked))
            for seen in looked:
                entry = self._read.setdefault(seen[0], {}).get(seen)
                if entry is None:
                    self._read[seen[0]][seen] = (self._now(index, *seen), {key})
                else:
                    entry[1].add(key)  # its value is the current one (see _stale)
            joined[key] = (view, looked, found)
            ordered += found
        for key in self._joined.keys() - joined.keys():
            self._forget(key, self._joined[key][1])
        self._joined, self._by_index = joined, index.by_index
        self._views, self._workloads = views, workloads
        ordered.sort(key=_first)  # stable: as correlate()'s sort of the same rows in the same order
        rows = [row for _key, row in ordered]
        return _report(rows, snapshot, results, workloads, host_network, ordered=True)

    def _stale(self, index: _Index) -> tuple[set[NsKey], set[NsKey]]:
        """The namespaces whose rows read something that is not what it was: only what was read
        of a namespace whose view or workloads are others can be. Each value read is then made
        the current one (every reader of a changed one is joined again, and reads it anew).

        And the namespaces whose rows show a namespace whose object is another (its processes or
        mounts found anew: the host's, whenever a process starts or ends there), by the same key:
        nothing a join reads of a namespace but its key, so those rows are the same but for
        that object (a join builds each End with the namespace's object of the snapshot)."""
        views, before = index.views, self._views
        changed = {key for key, view in views.items() if before.get(key) is not view}
        moved: set[NsKey] = set()
        for key in changed:
            old = before.get(key)
            if old is not None and old.ns is not views[key].ns:
                entry = self._read.get(key, {}).get((key, None, False))
                if entry is not None:
                    moved |= entry[1]
        changed |= before.keys() - views.keys()
        workloads = index.workloads
        if workloads is not self._workloads:
            changed.update(
                key
                for key in workloads.keys() | self._workloads.keys()
                if workloads.get(key) != self._workloads.get(key)
            )
        redo: set[NsKey] = set()
        for target in changed:
            read = self._read.get(target)
            if not read:
                continue
            for seen, (then, readers) in read.items():
                now = self._now(index, *seen)
                if now is not then and now != then:
                    redo |= readers
                    read[seen] = (now, readers)
        return redo, moved

    def _forget(self, key: NsKey, looked: tuple[Seen, ...]) -> None:
        """``key``'s rows no longer read these."""
        for seen in looked:
            read = self._read.get(seen[0])
            entry = read.get(seen) if read is not None else None
            if read is None or entry is None:
                continue
            entry[1].discard(key)
            if not entry[1]:
                del read[seen]
                if not read:
                    del self._read[seen[0]]

    @staticmethod
    def _now(index: _Index, key: NsKey, at: int | None, name_only: bool) -> object:
        if at is None:  # the namespace's object is not compared: see _stale
            view = index.views.get(key)
            return (view.error, index.workloads.get(key)) if view is not None else None
        link = index.links(key).get(at) if key in index.views else None
        return link.name if name_only and link is not None else link


def _current(row: Row, views: Mapping[NsKey, NsView]) -> Row:
    """``row`` with each End's namespace the object of ``views`` (the same key)."""
    end = _current_end(row.end, views)
    peer = None if row.peer is None else _current_end(row.peer, views)
    return row if end is row.end and peer is row.peer else Row(end, row.relation, peer, row.unresolved)


def _current_end(end: End, views: Mapping[NsKey, NsView]) -> End:
    view = views.get(end.ns.key)
    return end if view is None or view.ns is end.ns else End(view.ns, end.workload, end.link, end.master)


def _first(pair: tuple[tuple[int, str, int, str], Row]) -> tuple[int, str, int, str]:
    return pair[0]
