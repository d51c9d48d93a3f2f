"""What changed between two reports, as the events `vethpeer watch` prints: a pure step.

Kernel notifications only say *where* to look (see :mod:`.events`); the truth is the
difference between the report before and the report after, so every creation and
deletion is reported exactly once, whatever the number of messages the kernel sent.
A change undone between two looks (within a few milliseconds) is not seen.

Events, in the order they are printed: ``netns-appeared``, ``named`` (a runtime named
a namespace that was known only by its path or a process), ``created``, ``moved``,
``up``/``down``, ``carrier-on``/``carrier-off``, ``enslaved``/``released``,
``address-added``/``address-removed``, ``mtu``, ``deleted``, ``netns-gone``.

Each names the workload and the peer the way `which` does:
``pod/shop/web-1 eth0 <-> veth3f2a (cni0): carrier on``. An event about the host-side
device names it: ``... <-> veth3f2a (cni0): veth3f2a enslaved to cni0``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from ..model import End, Link, NsKey, Relation, Report, Row, Workload, WorkloadKind
from ..netlink import IFF_LOWER_UP, IFF_UP

RowKey = tuple[NsKey, int]


@dataclass(frozen=True, slots=True)
class Move:
    """The kernel said: ifindex ``index`` left namespace ``source`` for ``target`` as ``new_index``."""

    source: NsKey
    index: int
    target: NsKey | None  # None: a namespace we could not place
    new_index: int | None


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    workload: Workload
    netns: NsKey
    message: str  # the whole line: subject and what happened
    row: Row | None = None  # None for namespace events
    before: object = None
    after: object = None
    resync: bool = False  # found by a full walk after the event socket overflowed
    names: tuple[str, ...] = ()  # the namespace's `ip netns` names


def subject(row: Row, host: NsKey) -> str:
    """``WORKLOAD IF <-> PEER (BRIDGE or the peer's workload)``, as `which` names a pair."""
    end = row.end
    text = f"{end.workload.label} {end.link.name}"
    peer = row.peer
    if peer is None:
        return text + (" <-> ?" if row.unresolved else "")
    arrow = "<->" if row.relation is Relation.VETH else "on"
    text += f" {arrow} {peer.link.name}"
    if peer.master:
        text += f" ({peer.master})"
    elif peer.ns.key not in (host, end.ns.key):
        text += f" ({peer.workload.label})"
    return text


def _rows(report: Report) -> dict[RowKey, Row]:
    """The rows events are about: not loopbacks (a new namespace's only row, until it gets a
    veth), and not host devices whose peer's namespace could not be placed (a namespace
    going away leaves its host end behind for a moment: nothing can be named there)."""
    host = report.snapshot.host
    return {
        (r.end.ns.key, r.end.link.index): r
        for r in report.rows
        if not r.end.link.is_loopback and not (r.end.ns.key == host and r.unresolved is not None)
    }


def _devices(report: Report) -> set[RowKey]:
    """Every device of the snapshot, as (namespace, ifindex): rows or not."""
    return {(view.ns.key, link.index) for view in report.snapshot.views for link in view.links}


def _workloads(report: Report) -> dict[NsKey, Workload]:
    """The workload of every namespace that was read (not the host)."""
    found: dict[NsKey, Workload] = {}
    host = report.snapshot.host
    for view in report.snapshot.views:
        if view.error or view.ns.key == host:
            continue
        named = report.workloads.get(view.ns.key)
        found[view.ns.key] = named[0] if named else _fallback(report, view.ns.key)
    return found


def _fallback(report: Report, key: NsKey) -> Workload:
    for row in report.rows:
        if row.end.ns.key == key:
            return row.end.workload
    return Workload(WorkloadKind.NETNS, f"net:[{key.ino}]", id=str(key.ino))  # as the correlator names it


def _pair_key(row: Row) -> frozenset[RowKey]:
    """A pair between two workload namespaces is two rows: one event for both."""
    if row.peer is None or row.relation is not Relation.VETH:
        return frozenset({(row.end.ns.key, row.end.link.index)})
    return frozenset({(row.end.ns.key, row.end.link.index), (row.peer.ns.key, row.peer.link.index)})


def _once(rows: Iterable[tuple[RowKey, Row]]) -> list[tuple[RowKey, Row]]:
    seen: set[frozenset[RowKey]] = set()
    chosen = []
    for key, row in rows:
        pair = _pair_key(row)
        if pair in seen:
            continue
        seen.add(pair)
        chosen.append((key, row))
    return chosen


def _link_changes(
    link: Link, before: Link, master: str | None, old_master: str | None
) -> list[tuple[str, str, object, object]]:
    """(kind, text, before, after) for one device that exists in both reports."""
    found: list[tuple[str, str, object, object]] = []
    up, was_up = bool(link.flags & IFF_UP), bool(before.flags & IFF_UP)
    if up != was_up:
        found.append(("up" if up else "down", "up" if up else "down", was_up, up))
    carrier, had = bool(link.flags & IFF_LOWER_UP), bool(before.flags & IFF_LOWER_UP)
    if carrier != had:
        found.append(
            (
                "carrier-on" if carrier else "carrier-off",
                f"carrier {'on' if carrier else 'off'}",
                had,
                carrier,
            )
        )
    if master != old_master:
        if old_master is not None:
            found.append(("released", f"released from {old_master}", old_master, master))
        if master is not None:
            found.append(("enslaved", f"enslaved to {master}", old_master, master))
    if link.mtu != before.mtu:
        found.append(("mtu", f"mtu {before.mtu} -> {link.mtu}", before.mtu, link.mtu))
    for address in sorted(set(before.addresses) - set(link.addresses)):
        found.append(("address-removed", f"address {address} removed", address, None))
    for address in sorted(set(link.addresses) - set(before.addresses)):
        found.append(("address-added", f"address {address} added", None, address))
    return found


def _end_changes(end: End, old: End, own: bool) -> list[tuple[str, str, object, object]]:
    changes = _link_changes(end.link, old.link, end.master, old.master)
    if own:
        return changes
    return [(kind, f"{end.link.name} {text}", b, a) for kind, text, b, a in changes]


def diff(
    old: Report,
    new: Report,
    moves: Collection[Move] = (),
    *,
    resync: bool = False,
) -> list[Event]:
    """The events that turn ``old`` into ``new``. ``moves``: what the kernel said was moved."""
    host = new.snapshot.host
    old_rows, new_rows = _rows(old), _rows(new)
    old_ws, new_ws = _workloads(old), _workloads(new)
    events: list[Event] = []

    spaces = {v.ns.key: v.ns for v in (*old.snapshot.views, *new.snapshot.views)}

    def emit(
        kind: str,
        row: Row | None,
        what: str,
        workload: Workload,
        netns: NsKey,
        before: object = None,
        after: object = None,
    ) -> None:
        text = (subject(row, host) if row is not None else workload.label) + ": " + what
        names = spaces[netns].netns_names if netns in spaces else ()
        events.append(Event(kind, workload, netns, text, row, before, after, resync, names))

    for key in sorted(new_ws.keys() - old_ws.keys()):
        emit("netns-appeared", None, "network namespace appeared", new_ws[key], key)
    for key in sorted(new_ws.keys() & old_ws.keys()):
        if new_ws[key].label != old_ws[key].label:
            emit(
                "named",
                None,
                f"named (was {old_ws[key].label})",
                new_ws[key],
                key,
                old_ws[key].label,
                new_ws[key].label,
            )

    gone = {k: r for k, r in old_rows.items() if k not in new_rows}
    born = {k: r for k, r in new_rows.items() if k not in old_rows}
    moved = _match_moves(gone, born, moves)
    for old_key, new_key in moved:
        row, before = born.pop(new_key), gone.pop(old_key)
        where = old_ws.get(old_key[0])
        origin = (
            where.label
            if where is not None
            else ("host" if old_key[0] == host else f"net:[{old_key[0].ino}]")
        )
        emit(
            "moved",
            row,
            f"moved from {origin} ({before.end.link.name}, ifindex {before.end.link.index})",
            row.end.workload,
            row.end.ns.key,
            origin,
            row.end.workload.label,
        )
    # A row can come or go while its device stays: a host pair's row ends when one end moves
    # into a container (the host end is then that container's peer), and one begins when it
    # moves back. The move is the event; the device was neither created nor deleted.
    before_devices, after_devices = _devices(old), _devices(new)
    born = {k: r for k, r in born.items() if k not in before_devices}
    gone = {k: r for k, r in gone.items() if k not in after_devices}
    for _key, row in _once(sorted(born.items())):
        kind = row.end.link.kind or "interface"
        emit("created", row, f"{kind} created", row.end.workload, row.end.ns.key)
    for both in sorted(new_rows.keys() & old_rows.keys()):
        row, before = new_rows[both], old_rows[both]
        changes = _end_changes(row.end, before.end, own=True)
        peer, old_peer = row.peer, before.peer
        # the host-side device's own changes (a peer in a workload namespace has its own row)
        same_host_device = (
            peer is not None
            and old_peer is not None
            and peer.ns.key == host == old_peer.ns.key
            and peer.link.index == old_peer.link.index
        )
        if same_host_device:
            assert peer is not None and old_peer is not None
            changes += _end_changes(peer, old_peer, own=False)
        for kind, text, b, a in changes:
            emit(kind, row, text, row.end.workload, row.end.ns.key, b, a)
    for _key, row in _once(sorted(gone.items())):
        kind = row.end.link.kind or "interface"
        emit("deleted", row, f"{kind} deleted", row.end.workload, row.end.ns.key)
    for key in sorted(old_ws.keys() - new_ws.keys()):
        emit("netns-gone", None, "network namespace went away", old_ws[key], key)
    return events


def _match_moves(
    gone: Mapping[RowKey, Row], born: Mapping[RowKey, Row], moves: Collection[Move]
) -> list[tuple[RowKey, RowKey]]:
    """(old key, new key) of devices that moved: what the kernel said, else the same device
    (kind and MAC address) leaving one namespace and arriving in another between two looks."""
    pairs: list[tuple[RowKey, RowKey]] = []
    taken: set[RowKey] = set()
    for move in moves:
        old_key = (move.source, move.index)
        if old_key not in gone:
            continue
        mac = gone[old_key].end.link.mac
        exact = move.target is not None and move.new_index is not None
        for new_key, row in born.items():
            # the kernel named the destination: no need for the MAC (Docker sets a new one there)
            if new_key in taken or (not exact and row.end.link.mac != mac):
                continue
            if move.new_index is not None and new_key[1] != move.new_index:
                continue
            if move.target is not None and new_key[0] != move.target:
                continue
            pairs.append((old_key, new_key))
            taken.add(new_key)
            break
    matched = {old for old, _new in pairs}
    by_device = {
        (r.end.link.kind, r.end.link.mac): k for k, r in born.items() if k not in taken and r.end.link.mac
    }
    for old_key, row in gone.items():
        if old_key in matched or not row.end.link.mac:
            continue
        arrived = by_device.get((row.end.link.kind, row.end.link.mac))
        if arrived is not None and arrived[0] != old_key[0] and arrived not in taken:
            pairs.append((old_key, arrived))
            taken.add(arrived)
    return pairs
