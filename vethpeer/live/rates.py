"""Rates from two counter samples: a pure step, no I/O.

A :class:`Sample` is every link's ``IFLA_STATS64`` counters at one instant, keyed by
(namespace, ifindex). :func:`rates` turns two samples and the rows of the newer report
into one :class:`Rates` per workload interface:

* Directions are **the workload's point of view**: ``rx`` is what the workload received
  (its own interface's rx). For a veth, the host-side device's rx is the workload's tx —
  the host end's counters are reported separately, as ``peer`` drops and errors, in the
  host device's own directions (that is what ``ip -s link show vethXXXX`` prints).
* A counter that went down (the device was re-created, or moved in with another history)
  is a reset: its rate over the interval is the new value itself, and ``reset`` is set.
* An interface that is in the newer sample only has no rate yet (``new``); one that is in
  the older only is gone and has no row; a namespace that died mid-sample has no row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model import LinkStats, NsKey, Report, Row

IfKey = tuple[NsKey, int]  # (namespace, ifindex): an ifindex means something only inside its namespace


@dataclass(frozen=True, slots=True)
class Sample:
    """Counters of every link that had them, at ``at`` (seconds, a monotonic clock)."""

    at: float
    counters: Mapping[IfKey, LinkStats] = field(default_factory=dict)
    read: Mapping[NsKey, float] = field(default_factory=dict)  # when each namespace was read, if known

    def time_of(self, key: NsKey) -> float:
        return self.read.get(key, self.at)


def sample(report: Report, at: float, read: Mapping[NsKey, float] | None = None) -> Sample:
    """The counters a walk with ``stats=True`` read, from every namespace that could be read.

    ``read``: when each namespace's counters were read (:attr:`Walker.read_times`): a walk
    over a thousand namespaces takes a while, and each interface's rate is taken over its
    own namespace's interval.
    """
    counters = {
        (view.ns.key, link.index): link.stats
        for view in report.snapshot.views
        if not view.error
        for link in view.links
        if link.stats is not None
    }
    return Sample(at, counters, dict(read or {}))


@dataclass(frozen=True, slots=True)
class Pair:
    """A per-second rate in both directions."""

    rx: float = 0.0
    tx: float = 0.0

    @property
    def total(self) -> float:
        return self.rx + self.tx


@dataclass(frozen=True, slots=True)
class Delta:
    """Per-second rates of one interface's counters, in the interface's own directions."""

    bytes: Pair = Pair()
    packets: Pair = Pair()
    dropped: Pair = Pair()
    errors: Pair = Pair()
    reset: bool = False


@dataclass(frozen=True, slots=True)
class Rates:
    """One workload interface over the interval. ``own``: its counters (the workload's point
    of view); ``peer``: the other end's (the host device's own point of view), or None."""

    row: Row
    own: Delta | None  # None: new since the older sample (no rate yet)
    peer: Delta | None = None

    @property
    def new(self) -> bool:
        return self.own is None

    @property
    def total(self) -> float:
        return self.own.bytes.total if self.own is not None else 0.0


def _rate(new: int, old: int, seconds: float) -> tuple[float, bool]:
    if new < old:  # reset: count from zero
        return new / seconds, True
    return (new - old) / seconds, False


def delta(old: LinkStats, new: LinkStats, seconds: float) -> Delta:
    """Per-second rates between two readings of one interface's counters."""
    values = [
        _rate(n, o, seconds)
        for n, o in (
            (new.rx_bytes, old.rx_bytes),
            (new.tx_bytes, old.tx_bytes),
            (new.rx_packets, old.rx_packets),
            (new.tx_packets, old.tx_packets),
            (new.rx_dropped, old.rx_dropped),
            (new.tx_dropped, old.tx_dropped),
            (new.rx_errors, old.rx_errors),
            (new.tx_errors, old.tx_errors),
        )
    ]
    r = [value for value, _reset in values]
    return Delta(
        bytes=Pair(r[0], r[1]),
        packets=Pair(r[2], r[3]),
        dropped=Pair(r[4], r[5]),
        errors=Pair(r[6], r[7]),
        reset=any(reset for _value, reset in values),
    )


def _delta_of(key: IfKey, older: Sample, newer: Sample, seconds: float) -> Delta | None:
    old, new = older.counters.get(key), newer.counters.get(key)
    if old is None or new is None:
        return None
    own = newer.time_of(key[0]) - older.time_of(key[0])
    return delta(old, new, own if own > 0 else seconds)


def rates(rows: Iterable[Row], older: Sample, newer: Sample) -> list[Rates]:
    """Rates of each row (from the newer report) whose interface the newer sample has.

    Sorted by total rate, highest first; new interfaces (no rate yet) last.
    """
    seconds = newer.at - older.at
    if seconds <= 0:
        raise ValueError("the newer sample must be later than the older one")
    found = []
    for row in rows:
        key = (row.end.ns.key, row.end.link.index)
        if key not in newer.counters:
            continue
        peer = None
        if row.peer is not None:
            peer = _delta_of((row.peer.ns.key, row.peer.link.index), older, newer, seconds)
        found.append(Rates(row, _delta_of(key, older, newer, seconds), peer))
    found.sort(key=lambda r: (r.new, -r.total))
    return found


def totals(found: Iterable[Rates]) -> Delta:
    """The sum of every interface's own rates (the workloads' point of view)."""
    sums = {name: [0.0, 0.0] for name in ("bytes", "packets", "dropped", "errors")}
    for r in found:
        if r.own is None:
            continue
        for name, acc in sums.items():
            value: Pair = getattr(r.own, name)
            acc[0] += value.rx
            acc[1] += value.tx
    pairs = {name: Pair(rx, tx) for name, (rx, tx) in sums.items()}
    return Delta(
        bytes=pairs["bytes"], packets=pairs["packets"], dropped=pairs["dropped"], errors=pairs["errors"]
    )


# The orders `top` sorts by (--sort and its keys).
SORTS: dict[str, Callable[[Rates], Any]] = {
    "total": lambda r: -r.total,
    "rx": lambda r: -(r.own.bytes.rx if r.own else 0.0),
    "tx": lambda r: -(r.own.bytes.tx if r.own else 0.0),
    "drops": lambda r: -(_drops(r.own) + _drops(r.peer)),
    "name": lambda r: (r.row.end.workload.label, r.row.end.link.name),
}


def _drops(d: Delta | None) -> float:
    return d.dropped.total if d is not None else 0.0


def sort(found: Sequence[Rates], by: str) -> list[Rates]:
    """By ``by`` (a key of SORTS); new interfaces (no rate yet) last."""
    key = SORTS[by]
    return sorted(found, key=lambda r: (r.new, key(r)))
