"""Drops and errors that rise between two counter samples (`doctor --sample SECONDS`).

Only with two samples in the facts; the rates come from :mod:`vethpeer.live.rates`, each
end in its own directions (``ip -s link`` shows the same counters). The likely causes are
the classic veth tuning advice: an MTU that differs between the ends (a veth drops a frame
bigger than the receiving end's MTU, counted as the sender's tx drop), the transmit queue
(``txqueuelen`` or a qdisc limit), and GRO/GSO offloads.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..live.rates import Delta, rates
from ..model import End, NsKey, Report
from ..shell import in_ns, ip_in
from .base import Facts, Finding, Severity, check


def _confirm(end: End, host: NsKey) -> tuple[str, ...]:
    name = end.link.name
    return (
        ip_in(end, host, "-s", "-s", "link", "show", "dev", name),
        in_ns(end.ns, host, "tc", "-s", "qdisc", "show", "dev", name),
        in_ns(end.ns, host, "ethtool", "-k", name),
    )


def _causes(end: End, other: End | None, delta: Delta, host: NsKey) -> tuple[list[str], list[str]]:
    """(evidence lines naming the likely causes, fix commands)."""
    evidence, fix = [], []
    name = end.link.name
    if other is not None and end.link.mtu and other.link.mtu and end.link.mtu != other.link.mtu:
        low = min(end.link.mtu, other.link.mtu)
        evidence.append(
            f"MTU differs: {name} {end.link.mtu}, {other.link.name} {other.link.mtu}: frames bigger than "
            f"the receiving end's MTU are dropped by the veth (the sender's tx drops)"
        )
        big = end if end.link.mtu > low else other
        fix.append(ip_in(big, host, "link", "set", "dev", big.link.name, "mtu", str(low)))
    if delta.dropped.tx > 0:
        evidence.append(
            "tx drops: the transmit queue overflows (txqueuelen, or a qdisc's limit: see tc -s qdisc) "
            "or the peer's backlog is full (net.core.netdev_max_backlog)"
        )
        fix.append(ip_in(end, host, "link", "set", "dev", name, "txqueuelen", "1000"))
    if delta.dropped.rx > 0:
        evidence.append(
            "rx drops: the receiving side cannot keep up; with XDP on a veth, GRO must be on (ethtool -k)"
        )
        fix.append(in_ns(end.ns, host, "ethtool", "-K", name, "gro", "on"))
    if delta.errors.total > 0:
        evidence.append("errors: often checksum or segmentation offloads (GSO/TSO) on a veth (ethtool -k)")
        fix.append(in_ns(end.ns, host, "ethtool", "-K", name, "tx", "off", "gso", "off", "tso", "off"))
    return evidence, fix


@check("drops-rising", "errors-rising")
def rising(report: Report, facts: Facts) -> Iterator[Finding]:
    """Drops or errors counted on either end of a pair during the sample."""
    if facts.samples is None:
        return
    older, newer = facts.samples
    seconds = newer.at - older.at
    seen: set[tuple[NsKey, int]] = set()
    for found in rates(facts.rows, older, newer):
        row = found.row
        for end, other, delta in ((row.end, row.peer, found.own), (row.peer, row.end, found.peer)):
            if end is None or delta is None or (end.ns.key, end.link.index) in seen:
                continue
            seen.add((end.ns.key, end.link.index))
            for kind, pair in (("drops", delta.dropped), ("errors", delta.errors)):
                if pair.total <= 0:
                    continue
                evidence, fix = _causes(end, other, delta, facts.host)
                counted = (
                    f"{pair.rx * seconds:.0f} rx and {pair.tx * seconds:.0f} tx {kind} in {seconds:.1f} s"
                )
                yield Finding(
                    f"{kind}-rising",
                    Severity.WARNING,
                    end,
                    f"{end.link.name} {kind} rising: {pair.rx:.1f} rx/s, {pair.tx:.1f} tx/s",
                    evidence=(counted, *evidence),
                    confirm=_confirm(end, facts.host),
                    fix=tuple(fix),
                    peer=other,
                )
