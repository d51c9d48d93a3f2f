"""Checks on veth pairs themselves: both ends up with carrier, one MTU, ARP inside one namespace."""

from __future__ import annotations

import socket
from collections.abc import Iterator

from ..doctor_reads import NsFacts
from ..model import End, NsKey, Report
from ..netlink import IFF_LOWER_UP, IFF_UP
from ..shell import in_ns, ip_in, show_link
from .base import Facts, Finding, Severity, check, ends, global_addresses, link_flags, pairs


@check("link-down", "no-carrier")
def pair_state(report: Report, facts: Facts) -> Iterator[Finding]:
    """One end of a pair down, or up without carrier (NO-CARRIER, M-DOWN in `ip link`).

    A veth has carrier only while its peer is up: one end down shows the other as
    NO-CARRIER (and M-DOWN, when `ip link` lists both ends in one namespace).
    """
    host = facts.host
    for row in pairs(facts.rows):
        assert row.peer is not None
        both = (row.end, row.peer)
        down = [end for end in both if not end.link.flags & IFF_UP]
        if down:
            evidence, confirm = _pair_shown(both, host)
            first, other = (down[0], row.peer if down[0] is row.end else row.end)
            what = (
                f"both ends, {row.end.link.name} and {row.peer.link.name}, are administratively down"
                if len(down) == 2
                else f"{first.link.name} is administratively down, so its peer {other.link.name} has no "
                "carrier" + (" (M-DOWN)" if first.ns.key == other.ns.key else "")
            )
            yield Finding(
                "link-down",
                Severity.WARNING,
                first,
                what + ": the pair passes no traffic",
                evidence=evidence,
                confirm=confirm,
                fix=tuple(ip_in(end, host, "link", "set", "dev", end.link.name, "up") for end in down),
                peer=other,
            )
            continue
        for end, other in ((row.end, row.peer), (row.peer, row.end)):
            if not end.link.flags & IFF_LOWER_UP:
                evidence, confirm = _pair_shown(both, host)
                yield Finding(
                    "no-carrier",
                    Severity.WARNING,
                    end,
                    f"{end.link.name} is up but has no carrier although its peer {other.link.name} is up",
                    evidence=evidence,
                    confirm=confirm,
                    fix=(
                        ip_in(other, host, "link", "set", "dev", other.link.name, "down"),
                        ip_in(other, host, "link", "set", "dev", other.link.name, "up"),
                    ),
                    peer=other,
                )


def _pair_shown(both: tuple[End, End], host: NsKey) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A pair's evidence and confirm lines (for a finding only: `serve` checks a thousand pairs)."""
    evidence = tuple(f"{end.link.name}: {link_flags(end.link)} (state {end.link.operstate})" for end in both)
    return evidence, tuple(show_link(end, host) for end in both)


def _conf(facts: NsFacts, ifname: str, key: str) -> int | None:
    return facts.ipv4_conf.get((ifname, key))


@check("same-namespace-pair")
def same_namespace_pair(report: Report, facts: Facts) -> Iterator[Finding]:
    """A pair inside one namespace, with addresses: ARP across it needs accept_local and no strict rp_filter.

    An ARP request sent out of one end arrives at the other with a source address
    that is local to the namespace: the kernel drops it as a martian unless
    ``accept_local`` is on for the receiving interface (conf.all OR conf.<if>), and
    strict reverse-path filtering (max(conf.all, conf.<if>) == 1) drops it anyway,
    because the route back to a local address is ``lo``.
    """
    host = facts.host
    for row in pairs(facts.rows):
        assert row.peer is not None
        a, b = row.end, row.peer
        if a.ns.key != b.ns.key:
            continue
        if not global_addresses(a.link.addresses, socket.AF_INET) or not global_addresses(
            b.link.addresses, socket.AF_INET
        ):
            continue
        found = facts.inside.get(a.ns.key)
        if found is None or found.error:
            continue
        problems: list[str] = []
        fix: list[str] = []
        all_rp = _conf(found, "all", "rp_filter") or 0
        all_local = _conf(found, "all", "accept_local") or 0
        for end in (a, b):
            name = end.link.name
            rp = max(all_rp, _conf(found, name, "rp_filter") or 0)
            local = all_local or _conf(found, name, "accept_local") or 0
            if not local:
                problems.append(f"net.ipv4.conf.{name}.accept_local=0 (and conf.all is 0)")
                fix.append(in_ns(end.ns, host, "sysctl", "-w", f"net.ipv4.conf.{name}.accept_local=1"))
            if rp == 1:
                problems.append(
                    f"effective rp_filter on {name} is 1 (strict): all={all_rp}, "
                    f"{name}={_conf(found, name, 'rp_filter')}"
                )
                if (_conf(found, name, "rp_filter") or 0) == 1:
                    fix.append(in_ns(end.ns, host, "sysctl", "-w", f"net.ipv4.conf.{name}.rp_filter=2"))
        if all_rp == 1 and any("rp_filter" in p for p in problems):
            fix.append(in_ns(a.ns, host, "sysctl", "-w", "net.ipv4.conf.all.rp_filter=2"))
        if not problems:
            continue
        yield Finding(
            "same-namespace-pair",
            Severity.WARNING,
            a,
            f"both ends of the pair {a.link.name}/{b.link.name} are in one namespace with addresses: ARP "
            "between them goes unanswered (the source address is local, so it is dropped as a martian)",
            evidence=(
                f"{a.link.name}: {', '.join(a.link.addresses)}; {b.link.name}: {', '.join(b.link.addresses)}",
                *problems,
            ),
            confirm=(
                in_ns(
                    a.ns,
                    host,
                    "sysctl",
                    "net.ipv4.conf.all.rp_filter",
                    f"net.ipv4.conf.{a.link.name}.rp_filter",
                    f"net.ipv4.conf.{b.link.name}.rp_filter",
                    "net.ipv4.conf.all.accept_local",
                    f"net.ipv4.conf.{a.link.name}.accept_local",
                    f"net.ipv4.conf.{b.link.name}.accept_local",
                ),
            ),
            fix=tuple(dict.fromkeys(fix)),
            peer=b,
        )


@check("mtu-mismatch", "bridge-mtu-mismatch")
def mtu(report: Report, facts: Facts) -> Iterator[Finding]:
    """MTU differs between the two ends of a pair, or between a port and its bridge."""
    host = facts.host
    for row in pairs(facts.rows):
        assert row.peer is not None
        a, b = row.end, row.peer
        if a.link.mtu is None or b.link.mtu is None or a.link.mtu == b.link.mtu:
            continue
        big, small = (a, b) if a.link.mtu > b.link.mtu else (b, a)
        yield Finding(
            "mtu-mismatch",
            Severity.WARNING,
            a,
            f"MTU {a.link.mtu} on {a.link.name} but {b.link.mtu} on its peer {b.link.name}: "
            f"frames over {small.link.mtu} bytes from {big.link.name}'s side are dropped",
            evidence=(f"{a.link.name} mtu {a.link.mtu}", f"{b.link.name} mtu {b.link.mtu}"),
            confirm=(show_link(a, host), show_link(b, host)),
            fix=(ip_in(big, host, "link", "set", "dev", big.link.name, "mtu", str(small.link.mtu)),),
            peer=b,
        )
    for end in ends(facts.rows):
        if end.link.slave_kind != "bridge" or end.link.master is None or end.link.mtu is None:
            continue
        bridge = facts.link(end.ns.key, end.link.master)
        if bridge is None or bridge.mtu is None or bridge.mtu == end.link.mtu:
            continue
        yield Finding(
            "bridge-mtu-mismatch",
            Severity.WARNING,
            end,
            f"port {end.link.name} has MTU {end.link.mtu} but its bridge {bridge.name} has {bridge.mtu}",
            evidence=(f"{end.link.name} mtu {end.link.mtu}", f"{bridge.name} mtu {bridge.mtu}"),
            confirm=(
                show_link(end, host),
                in_ns(end.ns, host, "ip", "-d", "link", "show", "dev", bridge.name),
            ),
            fix=(ip_in(end, host, "link", "set", "dev", end.link.name, "mtu", str(bridge.mtu)),),
        )
