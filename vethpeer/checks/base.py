"""What every doctor check shares: findings, the facts a check may look at, and the registry.

A check is a pure function ``(report, facts) -> findings``, registered with the ids of
the findings it can produce (each documented in docs/troubleshooting.md, which a test
enforces). Adding a check is adding one function here or in a sibling module and one
docs entry.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from ..doctor_reads import Holder, NsFacts
from ..live.rates import Sample
from ..model import End, Link, NsKey, Relation, Report, Row
from ..netlink import IFF_LOWER_UP, IFF_UP


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 2, "warning": 1, "info": 0}[self.value]


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # stable identifier, documented in docs/troubleshooting.md
    severity: Severity
    end: End  # the interface the finding is about
    message: str
    evidence: tuple[str, ...] = ()
    confirm: tuple[str, ...] = ()  # read-only commands that show the evidence
    fix: tuple[str, ...] = ()  # commands that would fix it (never run)
    peer: End | None = None

    @property
    def subject(self) -> str:
        text = f"{self.end.workload.label} {self.end.link.name}"
        if self.peer is not None:
            text += f" <-> {self.peer.link.name}"
            if self.peer.ns.key != self.end.ns.key:
                text += f" ({self.peer.workload.label})"
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """Everything the checks look at besides the report, built once per run."""

    rows: tuple[Row, ...]  # the rows to check: all, or TARGET's
    host: NsKey
    links: Mapping[NsKey, Mapping[int, Link]]  # every namespace's links by ifindex
    inside: Mapping[NsKey, NsFacts] = field(default_factory=dict)  # routes, neighbours, sysctls
    orphans: tuple[Row, ...] = ()  # host veths whose peer's namespace nothing holds
    holders: Mapping[int, Sequence[Holder]] = field(default_factory=dict)  # nsid -> fd holders
    samples: tuple[Sample, Sample] | None = None  # counters at two instants (doctor --sample)

    def link(self, key: NsKey, index: int | None) -> Link | None:
        return self.links.get(key, {}).get(index) if index is not None else None


Check = Callable[[Report, Facts], Iterable[Finding]]


@dataclass(frozen=True, slots=True)
class Registered:
    ids: tuple[str, ...]
    run: Check


CHECKS: list[Registered] = []


def check(*ids: str) -> Callable[[Check], Check]:
    """Register a check and the finding ids it can produce."""

    def register(function: Check) -> Check:
        CHECKS.append(Registered(ids, function))
        return function

    return register


def all_ids() -> list[str]:
    return [i for registered in CHECKS for i in registered.ids]


def link_index(report: Report) -> dict[NsKey, dict[int, Link]]:
    return {view.ns.key: {link.index: link for link in view.links} for view in report.snapshot.views}


def _pair_key(row: Row) -> frozenset[tuple[NsKey, int]] | None:
    if row.peer is None or row.relation is not Relation.VETH:
        return None
    return frozenset({(row.end.ns.key, row.end.link.index), (row.peer.ns.key, row.peer.link.index)})


def pairs(rows: Iterable[Row]) -> list[Row]:
    """Each veth pair once (a pair inside one workload namespace is two rows)."""
    seen: set[frozenset[tuple[NsKey, int]]] = set()
    chosen = []
    for row in rows:
        key = _pair_key(row)
        if key is None or key in seen:
            continue
        seen.add(key)
        chosen.append(row)
    return chosen


def ends(rows: Iterable[Row]) -> list[End]:
    """Every interface of the rows and of their peers, once."""
    seen: set[tuple[NsKey, int]] = set()
    found = []
    for row in rows:
        for end in (row.end, row.peer):
            if end is None or (end.ns.key, end.link.index) in seen:
                continue
            seen.add((end.ns.key, end.link.index))
            found.append(end)
    return found


def link_flags(link: Link) -> str:
    names = []
    if link.flags & IFF_UP and not link.flags & IFF_LOWER_UP:
        names.append("NO-CARRIER")
    names.append("UP" if link.flags & IFF_UP else "DOWN (admin)")
    if link.flags & IFF_LOWER_UP:
        names.append("LOWER_UP")
    return ",".join(names)


Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@functools.lru_cache(maxsize=16384)  # above a round's addresses: cycling through more would miss them all
def interface(text: str) -> Interface:
    """``ipaddress.ip_interface``, remembered: `serve` checks the same few thousand addresses at
    every round, and parsing them was most of the checks' time."""
    return ipaddress.ip_interface(text)


@functools.lru_cache(maxsize=4096)
def address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``ipaddress.ip_address``, remembered (the gateways, the same at every round)."""
    return ipaddress.ip_address(text)


def global_addresses(addresses: Iterable[str], family: int | None = None) -> list[Interface]:
    """The addresses that are neither link-local nor loopback (of ``family`` only, if given)."""
    return list(_global_addresses(tuple(addresses), family))


@functools.lru_cache(maxsize=32768)  # up to three asks (families) a link a round
def _global_addresses(addresses: tuple[str, ...], family: int | None) -> tuple[Interface, ...]:
    found = []
    for text in addresses:
        iface = interface(text)
        if iface.ip.is_link_local or iface.ip.is_loopback:
            continue
        if family is not None and (iface.version == 4) != (family == socket.AF_INET):
            continue
        found.append(iface)
    return tuple(found)
