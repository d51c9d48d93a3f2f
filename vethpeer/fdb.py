"""The bridge's MAC table as a second, independent witness of who is plugged where.

The ifindex/iflink pair says which host veth is a workload's peer. A Linux bridge
learns, from every frame a workload sends, the workload's MAC on the port the frame
came in by: so if the pairing is right and the workload has spoken lately, its MAC is
in the bridge's forwarding database *on the peer's port*. That is the classic manual
method (``bridge fdb show`` / ``brctl showmacs``), here done in-process over the
snapshot's AF_BRIDGE neighbour dump.

Pure: everything is read from a :class:`~vethpeer.model.Report` whose walk was asked
for the FDB (``gather(..., fdb=True)``). A bridge whose FDB was not read has no
entries at all (a read one always has at least its ports' own local entries), so it
gives no verdict rather than a false "not learned".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import NamedTuple

from .model import FdbEntry, Link, NsKey, NsView, Relation, Report, Row

NUD_PERMANENT = 0x80  # a local entry: the bridge's or a port's own MAC (frames go up the stack)
NUD_NOARP = 0x40  # a static entry (added by hand, never ages)


class FdbState(str, Enum):
    LEARNED = "learned"  # on the peer's port: the pairing is confirmed by traffic
    NOT_LEARNED = "not-learned-yet"  # the workload has not sent a frame lately (or ever)
    ELSEWHERE = "elsewhere"  # on another port, or local: a duplicate MAC or a mis-plugged veth


class FdbStatus(NamedTuple):
    """What the bridge's MAC table says about one workload interface."""

    state: FdbState
    bridge: str
    port: str  # the peer: the port the MAC should be learned on
    mac: str
    learned_on: str | None = None  # where it is (the peer's port when learned)
    vlans: tuple[int, ...] = ()  # VLANs of the entries found for the MAC
    local: bool = False  # the entry found is a local one: the bridge takes those frames itself
    static: bool = False  # the entry was added by hand

    @property
    def cell(self) -> str:
        """The FDB column: ``learned``, ``not-learned-yet`` or ``elsewhere(<port>)``."""
        if self.state is FdbState.ELSEWHERE:
            return f"elsewhere({self.learned_on})"
        return str(self.state.value)

    def evidence(self) -> str:
        """One sentence for `which` and `doctor`."""
        where = f"bridge {self.bridge}"
        if self.state is FdbState.LEARNED:
            how = "a static entry" if self.static else "learned"
            return f"{where} has {self.mac} ({how}) on port {self.port}, the peer: the pairing is confirmed"
        if self.state is FdbState.NOT_LEARNED:
            return f"{where} has not learned {self.mac} on any port (no frame from it lately)"
        if self.local:
            return (
                f"{where} holds {self.mac} as a LOCAL address of {self.learned_on}: frames to the workload "
                "stop at the host"
            )
        return f"{where} learned {self.mac} on port {self.learned_on}, not on {self.port} (the peer)"

    def as_json(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "bridge": self.bridge,
            "port": self.port,
            "mac": self.mac,
            "learned_on": self.learned_on,
            "vlans": list(self.vlans),
            "local": self.local,
            "static": self.static,
        }


RowKey = tuple[NsKey, int]  # (namespace, ifindex) of a row's own interface


def row_key(row: Row) -> RowKey:
    return (row.end.ns.key, row.end.link.index)


class _Tables:
    """One namespace's FDB indexed once: (bridge ifindex, MAC) -> entries; its links by ifindex."""

    def __init__(self, view: NsView) -> None:
        self.links = {link.index: link for link in view.links}
        self.port_names = view.port_names
        self.read: set[int] = set()  # bridges whose table was read
        self.by_mac: dict[tuple[int, str], list[FdbEntry]] = {}
        for entry in view.fdb:
            if entry.master is not None:  # the bridge's own table (NTF_MASTER)
                self.read.add(entry.master)
                self.by_mac.setdefault((entry.master, entry.mac), []).append(entry)

    def name(self, index: int) -> str:
        link = self.links.get(index)
        return link.name if link is not None else self.port_names.get(index, f"if{index}")


def _is_local(entry: FdbEntry) -> bool:
    return bool(entry.state & NUD_PERMANENT)


def _classify(mac: str, peer: Link, bridge: Link, tables: _Tables) -> FdbStatus | None:
    if bridge.index not in tables.read:
        return None  # FDB not read (every read bridge has local entries)
    found = tables.by_mac.get((bridge.index, mac), [])
    vlans = tuple(sorted({e.vlan for e in found if e.vlan is not None}))
    base = FdbStatus(FdbState.NOT_LEARNED, bridge.name, peer.name, mac, vlans=vlans)
    local = [e for e in found if _is_local(e)]
    if local:
        where = tables.name(local[0].port)
        return _with(base, FdbState.ELSEWHERE, where, local=True)
    here = [e for e in found if e.port == peer.index]
    if here:
        return _with(base, FdbState.LEARNED, peer.name, static=all(e.state & NUD_NOARP for e in here))
    if found:
        return _with(base, FdbState.ELSEWHERE, tables.name(found[0].port))
    return base


def _with(
    base: FdbStatus, state: FdbState, where: str, *, local: bool = False, static: bool = False
) -> FdbStatus:
    return FdbStatus(state, base.bridge, base.port, base.mac, where, base.vlans, local, static)


def _bridge_port(row: Row) -> tuple[Link, NsKey] | None:
    """The peer link and its namespace, when the peer is a port of a Linux bridge."""
    peer = row.peer
    if (
        peer is None
        or row.relation is not Relation.VETH
        or peer.link.slave_kind != "bridge"
        or peer.link.master is None
        or not row.end.link.mac
    ):
        return None
    return peer.link, peer.ns.key


def classify(report: Report, rows: Iterable[Row] | None = None) -> dict[RowKey, FdbStatus]:
    """An FDB verdict for every row whose peer is a Linux bridge port and whose bridge was read."""
    views = {view.ns.key: view for view in report.snapshot.views}
    tables: dict[NsKey, _Tables] = {}
    verdicts: dict[RowKey, FdbStatus] = {}
    for row in report.rows if rows is None else rows:
        port = _bridge_port(row)
        if port is None:
            continue
        peer, key = port
        view = views.get(key)
        if view is None or not view.fdb:
            continue
        table = tables.get(key) or tables.setdefault(key, _Tables(view))
        bridge = table.links.get(peer.master) if peer.master is not None else None
        mac = row.end.link.mac
        if bridge is None or bridge.kind != "bridge" or mac is None:
            continue
        verdict = _classify(mac, peer, bridge, table)
        if verdict is not None:
            verdicts[row_key(row)] = verdict
    return verdicts


class Duplicate(NamedTuple):
    """One MAC on two or more ports of one bridge."""

    bridge: str
    netns: NsKey  # where the bridge is
    mac: str
    ports: tuple[str, ...]  # port names, sorted
    rows: tuple[Row, ...]  # the workload interfaces that carry the MAC

    def evidence(self) -> str:
        return f"{self.mac} is on ports {', '.join(self.ports)} of bridge {self.bridge}"


def duplicates(report: Report, rows: Iterable[Row] | None = None) -> list[Duplicate]:
    """MACs that one bridge sees on several ports.

    Two ways: workload interfaces with one MAC whose peers are ports of one bridge
    (a conflict whatever the FDB says: the bridge can only forward to one of them),
    and non-local FDB entries of one MAC on several ports (in different VLANs, the
    only way the kernel keeps two).
    """
    chosen = list(report.rows if rows is None else rows)
    views: Mapping[NsKey, NsView] = {view.ns.key: view for view in report.snapshot.views}
    groups: dict[tuple[NsKey, int, str], tuple[set[str], list[Row]]] = {}
    for row in chosen:
        port = _bridge_port(row)
        if port is None or row.end.link.mac is None:
            continue
        peer, key = port
        assert peer.master is not None
        ports, members = groups.setdefault((key, peer.master, row.end.link.mac), (set(), []))
        ports.add(peer.name)
        members.append(row)
    for key, view in views.items():
        if not view.fdb:
            continue
        table = _Tables(view)
        for (bridge, mac), entries in table.by_mac.items():
            port_indexes = {e.port for e in entries if not _is_local(e) and e.port != bridge}
            if len(port_indexes) > 1:
                ports, _members = groups.setdefault((key, bridge, mac), (set(), []))
                ports.update(table.name(p) for p in port_indexes)
    found = []
    for (key, bridge, mac), (ports, members) in sorted(groups.items(), key=lambda item: item[0][2]):
        if len(ports) < 2:
            continue
        bridge_name = (
            next((link.name for link in views[key].links if link.index == bridge), f"if{bridge}")
            if key in views
            else f"if{bridge}"
        )
        found.append(Duplicate(bridge_name, key, mac, tuple(sorted(ports)), tuple(members)))
    return found
