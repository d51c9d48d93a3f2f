"""How far the live model drifted from a full walk: a pure step, run at each resync.

The model is kept by events; a full walk now and then checks it. Every difference
between the two means an event was missed (or mishandled), so each is counted by kind
and logged:

* ``interface-missing``: the walk has an interface the model does not;
* ``interface-extra``: the model still has one the walk no longer finds;
* ``interface-changed``: both have it, but it differs (a name, state, MTU, address,
  master, MAC, peer or workload) — counters are not compared, they move all the time;
* ``workload``: a namespace's workloads differ (a runtime's names);
* ``namespace``: a namespace is readable in one and not the other, or named differently.

Changes the kernel announced while the walk ran are *excused*: the model hears of them a
moment later, which is no drift. The caller names them (namespaces, or single devices).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

from ..model import End, Link, Namespace, NsKey, Report, Row

Key = tuple[NsKey, int]
KINDS = ("interface-missing", "interface-extra", "interface-changed", "workload", "namespace")


@dataclass(frozen=True, slots=True)
class Drift:
    kind: str
    subject: str  # what differs, for the log: "netns 4026532xxx ifindex 7 (veth1a2b)"


@dataclass(frozen=True, slots=True)
class Excused:
    """What changed while the walk ran: whole namespaces, single devices, or everything.

    ``churned``: namespaces came or went meanwhile (the mount table or the processes changed),
    so one that only the model or only the walk has is excused too. ``names``: a runtime said
    something changed (or namespaces appeared) and the model has yet to ask it again.
    """

    namespaces: frozenset[NsKey] = frozenset()
    devices: frozenset[Key] = frozenset()
    churned: bool = False
    names: bool = False  # the model is about to ask the runtimes again: workloads are not compared
    all: bool = False

    def covers(self, row: Row) -> bool:
        if self.all:
            return True
        ends = (row.end, row.peer) if row.peer is not None else (row.end,)
        return any(e.ns.key in self.namespaces or (e.ns.key, e.link.index) in self.devices for e in ends)


def _link(link: Link) -> Link:
    return replace(link, stats=None) if link.stats is not None else link


def _ns(ns: Namespace) -> tuple[object, ...]:
    """What a document shows of a namespace (its lowest PID, not the processes that come and go)."""
    return (ns.key, ns.is_host, ns.mounts, ns.pids[:1])


def _end(end: End, names: bool) -> tuple[object, ...]:
    return (_ns(end.ns), end.workload if names else None, _link(end.link), end.master)


def _row(row: Row, names: bool = True) -> tuple[object, ...]:
    peer = _end(row.peer, names) if row.peer is not None else None
    return (_end(row.end, names), row.relation, peer, row.unresolved)


def _name(key: Key, row: Row) -> str:
    return f"netns {key[0].ino} ifindex {key[1]} ({row.end.link.name})"


def drift(model: Report, walk: Report, excused: Excused = Excused()) -> list[Drift]:
    """Every difference between the model and the walk that the excused changes do not explain."""
    if excused.all:
        return []
    if excused.churned:
        came_or_went = {v.ns.key for v in model.snapshot.views} ^ {v.ns.key for v in walk.snapshot.views}
        excused = replace(excused, namespaces=excused.namespaces | came_or_went)
    found: list[Drift] = []
    mine = {(r.end.ns.key, r.end.link.index): r for r in model.rows}
    theirs = {(r.end.ns.key, r.end.link.index): r for r in walk.rows}
    for key in sorted(theirs.keys() - mine.keys()):
        if not excused.covers(theirs[key]):
            found.append(Drift("interface-missing", _name(key, theirs[key])))
    for key in sorted(mine.keys() - theirs.keys()):
        if not excused.covers(mine[key]):
            found.append(Drift("interface-extra", _name(key, mine[key])))
    for key in sorted(mine.keys() & theirs.keys()):
        old, new = mine[key], theirs[key]
        if _row(old, not excused.names) != _row(new, not excused.names) and not (
            excused.covers(old) or excused.covers(new)
        ):
            found.append(Drift("interface-changed", _name(key, new)))
    found += _namespaces(model, walk, excused.namespaces, excused.names)
    return found


def _namespaces(model: Report, walk: Report, excused: Collection[NsKey], names: bool) -> list[Drift]:
    found = []
    if not names:
        for key in sorted((model.workloads.keys() | walk.workloads.keys()) - set(excused)):
            if model.workloads.get(key, ()) != walk.workloads.get(key, ()):
                found.append(Drift("workload", f"netns {key.ino}"))
        if model.host_network != walk.host_network:
            found.append(Drift("workload", "the host's network"))
    mine = {v.ns.key: (_ns(v.ns), v.error is None) for v in model.snapshot.views}
    theirs = {v.ns.key: (_ns(v.ns), v.error is None) for v in walk.snapshot.views}
    for key in sorted((mine.keys() | theirs.keys()) - set(excused)):
        if mine.get(key) != theirs.get(key):
            found.append(Drift("namespace", f"netns {key.ino}"))
    return found


def counts(found: Collection[Drift]) -> dict[str, int]:
    by_kind: dict[str, int] = {}
    for item in found:
        by_kind[item.kind] = by_kind.get(item.kind, 0) + 1
    return by_kind
