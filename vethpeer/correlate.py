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
        self.links: dict[NsKey, dict[int, Link]] = {
            key: {link.index: link for link in view.links} for key, view in self.views.items()
        }
        self.workloads = workloads

    def workload(self, ns: Namespace) -> Workload:
        if ns.key == self.snapshot.host:
            return HOST
        named = self.workloads.get(ns.key)
        return named[0] if named else _unnamed(ns)

    def end(self, ns: Namespace, link: Link) -> End:
        master = None
        if link.master is not None:
            bridge = self.links[ns.key].get(link.master)
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
        target_view = self.views.get(where)
        if target_view is None or target_view.error:
            reason = target_view.error if target_view else "not readable"
            return relation, None, f"the peer's namespace could not be read: {reason}"
        other = self.links[where].get(link.link)
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


def correlate(snapshot: Snapshot, results: Sequence[SourceResult]) -> Report:
    """Every interface inside a workload namespace, joined with its peer, sorted."""
    claims = [claim for result in results for claim in result.claims]
    workloads = _rank(c for c in claims if c.netns != snapshot.host)
    host_network = _host_network(c for c in claims if c.netns == snapshot.host)
    index = _Index(snapshot, workloads, _link_owners(c for result in results for c in result.links))
    rows = []
    for view in snapshot.views:
        if view.error:
            continue
        for link in view.links:
            if not _wanted(view, link, snapshot.host, index):
                continue
            relation, peer, unresolved = index.peer(view, link)
            end = index.end(view.ns, link)
            owner = index.link_owners.get((view.ns.key, link.name))
            if relation is Relation.TAP and owner is not None and view.ns.key == snapshot.host:
                end = End(end.ns, owner, end.link, end.master)  # the host's tap is the VM's
            rows.append(Row(end, relation, peer, unresolved))
    rows.sort(key=_order)
    return Report(
        rows=tuple(rows),
        workloads=workloads,
        host_network=host_network,
        sources=tuple(result.status for result in results),
        snapshot=snapshot,
    )
