"""`vethpeer doctor`: turn what the walk found into findings an on-call engineer can act on.

Every check is a pure function over the report (and, for routes and sysctls, the
:class:`~vethpeer.nsfacts.NsFacts` read inside the namespaces concerned). A finding
carries its severity, the evidence, the commands that confirm it by hand and the
command that would fix it. vethpeer never runs a fix: it only prints it.

Severities: ``error`` (traffic is certainly broken), ``warning`` (broken or about to
be, for the usual setups) and ``info`` (worth knowing, often benign: a quiet
workload whose MAC has aged out of the bridge). ``doctor`` exits with
:attr:`~vethpeer.errors.ExitStatus.FINDINGS` when any finding is a warning or worse.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TextIO

from . import fdb as fdbmod
from .model import End, Link, Namespace, NsKey, NsView, Relation, Report, Row
from .netlink import IFF_LOWER_UP, IFF_UP, NUD_FAILED, NUD_INCOMPLETE, Neighbour, NextHop, Route
from .nsfacts import Holder, NsFacts


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


# ---------------------------------------------------------------- commands


def in_ns(ns: Namespace, host: NsKey, *argv: str) -> str:
    """A command line that runs ``argv`` in ``ns``, the way a person would type it."""
    if ns.key == host:
        return shlex.join(argv)
    names = ns.netns_names
    if names:
        if argv[0] == "ip":
            return shlex.join(["ip", "-n", names[0], *argv[1:]])
        if argv[0] == "bridge":
            return shlex.join(["bridge", "-n", names[0], *argv[1:]])
        return shlex.join(["ip", "netns", "exec", names[0], *argv])
    if ns.pids:
        return shlex.join(["nsenter", "-t", str(ns.pids[0]), "-n", *argv])
    if ns.mounts:
        return shlex.join(["nsenter", f"--net={ns.mounts[0]}", *argv])
    return shlex.join(argv) + f"  # inside netns inode {ns.key.ino}"


def _ip(end: End, host: NsKey, *argv: str) -> str:
    return in_ns(end.ns, host, "ip", *argv)


def _show(end: End, host: NsKey) -> str:
    return _ip(end, host, "-d", "link", "show", "dev", end.link.name)


# ---------------------------------------------------------------- helpers


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


def _flags(link: Link) -> str:
    names = []
    if link.flags & IFF_UP and not link.flags & IFF_LOWER_UP:
        names.append("NO-CARRIER")
    names.append("UP" if link.flags & IFF_UP else "DOWN (admin)")
    if link.flags & IFF_LOWER_UP:
        names.append("LOWER_UP")
    return ",".join(names)


def _global(
    addresses: Iterable[str], family: int | None = None
) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    found = []
    for text in addresses:
        iface = ipaddress.ip_interface(text)
        if iface.ip.is_link_local or iface.ip.is_loopback:
            continue
        if family is not None and (iface.version == 4) != (family == socket.AF_INET):
            continue
        found.append(iface)
    return found


def _view_links(report: Report) -> dict[NsKey, dict[int, Link]]:
    return {view.ns.key: {link.index: link for link in view.links} for view in report.snapshot.views}


# ---------------------------------------------------------------- checks


def check_pair_state(rows: Sequence[Row], host: NsKey) -> Iterator[Finding]:
    """One end of a pair down, or up without carrier (NO-CARRIER, M-DOWN in `ip link`).

    A veth has carrier only while its peer is up: one end down shows the other as
    NO-CARRIER (and M-DOWN, when `ip link` lists both ends in one namespace).
    """
    for row in pairs(rows):
        assert row.peer is not None
        both = (row.end, row.peer)
        down = [end for end in both if not end.link.flags & IFF_UP]
        evidence = tuple(f"{end.link.name}: {_flags(end.link)} (state {end.link.operstate})" for end in both)
        confirm = tuple(_show(end, host) for end in both)
        if down:
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
                fix=tuple(_ip(end, host, "link", "set", "dev", end.link.name, "up") for end in down),
                peer=other,
            )
            continue
        for end, other in ((row.end, row.peer), (row.peer, row.end)):
            if not end.link.flags & IFF_LOWER_UP:
                yield Finding(
                    "no-carrier",
                    Severity.WARNING,
                    end,
                    f"{end.link.name} is up but has no carrier although its peer {other.link.name} is up",
                    evidence=evidence,
                    confirm=confirm,
                    fix=(
                        _ip(other, host, "link", "set", "dev", other.link.name, "down"),
                        _ip(other, host, "link", "set", "dev", other.link.name, "up"),
                    ),
                    peer=other,
                )


def check_address_on_port(rows: Sequence[Row], report: Report) -> Iterator[Finding]:
    """An IP address on a bridge port: the bridge takes the frames, the address never answers."""
    host = report.snapshot.host
    links = _view_links(report)
    for end in ends(rows):
        if end.link.slave_kind != "bridge":
            continue
        addresses = _global(end.link.addresses)
        if not addresses:
            continue
        bridge = end.master or f"if{end.link.master}"
        bridge_link = links.get(end.ns.key, {}).get(end.link.master or -1)
        fix: list[str] = []
        for address in addresses:
            fix.append(_ip(end, host, "addr", "del", str(address), "dev", end.link.name))
            if bridge_link is None or str(address) not in bridge_link.addresses:
                fix.append(_ip(end, host, "addr", "add", str(address), "dev", bridge))
        yield Finding(
            "address-on-bridge-port",
            Severity.WARNING,
            end,
            f"{end.link.name} is a port of bridge {bridge} but has address "
            f"{', '.join(map(str, addresses))}: frames arriving on it are handed to the bridge, "
            "so that address is never answered; it belongs on the bridge",
            evidence=(f"{end.link.name}: master {bridge}, addresses {', '.join(map(str, addresses))}",),
            confirm=(_ip(end, host, "-d", "addr", "show", "dev", end.link.name),),
            fix=tuple(fix),
        )


def _conf(facts: NsFacts, ifname: str, key: str) -> int | None:
    return facts.ipv4_conf.get((ifname, key))


def check_same_namespace_pair(
    rows: Sequence[Row], host: NsKey, facts: Mapping[NsKey, NsFacts]
) -> Iterator[Finding]:
    """A pair inside one namespace, with addresses: ARP across it needs accept_local and no strict rp_filter.

    An ARP request sent out of one end arrives at the other with a source address
    that is local to the namespace: the kernel drops it as a martian unless
    ``accept_local`` is on for the receiving interface (conf.all OR conf.<if>), and
    strict reverse-path filtering (max(conf.all, conf.<if>) == 1) drops it anyway,
    because the route back to a local address is ``lo``.
    """
    for row in pairs(rows):
        assert row.peer is not None
        a, b = row.end, row.peer
        if a.ns.key != b.ns.key:
            continue
        if not _global(a.link.addresses, socket.AF_INET) or not _global(b.link.addresses, socket.AF_INET):
            continue
        found = facts.get(a.ns.key)
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


def check_mtu(rows: Sequence[Row], report: Report) -> Iterator[Finding]:
    """MTU differs between the two ends of a pair, or between a port and its bridge."""
    host = report.snapshot.host
    for row in pairs(rows):
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
            confirm=(_show(a, host), _show(b, host)),
            fix=(_ip(big, host, "link", "set", "dev", big.link.name, "mtu", str(small.link.mtu)),),
            peer=b,
        )
    links = _view_links(report)
    for end in ends(rows):
        if end.link.slave_kind != "bridge" or end.link.master is None or end.link.mtu is None:
            continue
        bridge = links.get(end.ns.key, {}).get(end.link.master)
        if bridge is None or bridge.mtu is None or bridge.mtu == end.link.mtu:
            continue
        yield Finding(
            "bridge-mtu-mismatch",
            Severity.WARNING,
            end,
            f"port {end.link.name} has MTU {end.link.mtu} but its bridge {bridge.name} has {bridge.mtu}",
            evidence=(f"{end.link.name} mtu {end.link.mtu}", f"{bridge.name} mtu {bridge.mtu}"),
            confirm=(_show(end, host), in_ns(end.ns, host, "ip", "-d", "link", "show", "dev", bridge.name)),
            fix=(_ip(end, host, "link", "set", "dev", end.link.name, "mtu", str(bridge.mtu)),),
        )


def check_port_state(rows: Sequence[Row], host: NsKey) -> Iterator[Finding]:
    """A bridge port that is up but not forwarding (STP listening, learning or blocking)."""
    for end in ends(rows):
        state = end.link.brport_state
        if state is None or state == "forwarding":
            continue
        if not end.link.flags & IFF_UP or not end.link.flags & IFF_LOWER_UP:
            continue  # a down port is "disabled": link-down says why
        bridge = end.master or f"if{end.link.master}"
        why = {
            "listening": "STP is still listening (it forwards after 2 x forward_delay)",
            "learning": "STP is still learning (it forwards after forward_delay)",
            "blocking": "STP blocks it: the bridge sees a loop, or a better path, through this port",
            "disabled": "the port is disabled",
        }.get(state, f"state {state}")
        yield Finding(
            "bridge-port-not-forwarding",
            Severity.WARNING,
            end,
            f"{end.link.name} is a port of {bridge} in state {state}: it forwards no frames; {why}",
            evidence=(f"{end.link.name}: bridge port state {state}",),
            confirm=(
                in_ns(end.ns, host, "bridge", "link", "show", "dev", end.link.name),
                in_ns(end.ns, host, "ip", "-d", "link", "show", "dev", bridge),
            ),
            fix=(
                (in_ns(end.ns, host, "ip", "link", "set", "dev", bridge, "type", "bridge", "stp_state", "0"),)
                if state != "disabled"
                else (in_ns(end.ns, host, "bridge", "link", "set", "dev", end.link.name, "state", "3"),)
            ),
        )


def check_orphans(
    rows: Sequence[Row], report: Report, holders: Mapping[int, Sequence[Holder]] | None = None
) -> Iterator[Finding]:
    """A host veth whose peer's namespace no process and no bind mount holds (leaked by a runtime).

    Discovery finds namespaces through processes and bind mounts; a peer namespace
    found by neither, yet alive, is held by something else (an fd, a kernel
    reference): nobody will ever use it, and the veth leaks with it.
    """
    host = report.snapshot.host
    host_view = next((v for v in report.snapshot.views if v.ns.key == host), None)
    unreadable = sum(1 for v in report.snapshot.views if v.error)
    for row in rows:
        end = row.end
        link = end.link
        if (
            end.ns.key != host
            or link.kind not in ("veth", "netkit")
            or row.unresolved is None
            or link.link_netnsid is None
            or (host_view is not None and link.link_netnsid in host_view.nsids)
        ):
            continue
        evidence = [
            f"{link.name}: peer ifindex {link.link} in the namespace the host calls nsid {link.link_netnsid}",
            "no process is in that namespace and no nsfs bind mount (ip netns, runtime) refers to it",
        ]
        held = list((holders or {}).get(link.link_netnsid, ()))
        if held:
            evidence.append("kept alive only by an open file descriptor: " + "; ".join(map(str, held)))
        if unreadable:
            evidence.append(f"({unreadable} namespaces could not be read: it may be one of those)")
        yield Finding(
            "orphaned-veth",
            Severity.WARNING,
            end,
            f"{link.name}'s peer lives in a namespace that nothing uses any more (leaked by a runtime?)",
            evidence=tuple(evidence),
            confirm=(_show(end, host), "ip netns list-id", "lsns -t net"),
            fix=(_ip(end, host, "link", "del", "dev", link.name),),
        )


def _random_mac(seed: str) -> str:
    digest = bytearray(hashlib.sha256(seed.encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02  # locally administered, unicast
    return digest.hex(":")


def check_fdb(rows: Sequence[Row], report: Report) -> Iterator[Finding]:
    """The workload's MAC on its bridge port: never learned (info), elsewhere or on two ports (error)."""
    host = report.snapshot.host
    verdicts = fdbmod.classify(report, rows)
    # duplicates are found among all rows (the twin may be outside TARGET), reported if they touch ours
    chosen = {fdbmod.row_key(r) for r in rows}
    ports = {(r.peer.ns.key, r.peer.link.name): r for r in rows if r.peer is not None}
    dups: list[tuple[fdbmod.Duplicate, Row]] = []
    for dup in fdbmod.duplicates(report):
        mine = [r for r in dup.rows if fdbmod.row_key(r) in chosen]
        mine += [ports[(dup.netns, p)] for p in dup.ports if (dup.netns, p) in ports]
        if mine:
            dups.append((dup, mine[0]))
    in_dup = {fdbmod.row_key(r) for dup, _subject in dups for r in dup.rows} | {
        fdbmod.row_key(subject) for _dup, subject in dups
    }
    for dup, subject in dups:
        last = dup.rows[-1] if dup.rows else subject
        fix: tuple[str, ...] = ()
        if len(dup.rows) > 1:
            new = _random_mac(f"{last.end.ns.key.ino}/{last.end.link.name}")
            fix = (_ip(last.end, host, "link", "set", "dev", last.end.link.name, "address", new),)
        yield Finding(
            "duplicate-mac",
            Severity.ERROR,
            subject.end,
            f"{dup.mac} is on {len(dup.ports)} ports of bridge {dup.bridge} ({', '.join(dup.ports)}): "
            "the bridge delivers its frames to one of them only",
            evidence=(
                dup.evidence(),
                *(f"{r.end.workload.label} {r.end.link.name} has MAC {dup.mac}" for r in dup.rows),
            ),
            confirm=(
                in_ns(
                    subject.peer.ns if subject.peer else subject.end.ns,
                    host,
                    "bridge",
                    "fdb",
                    "show",
                    "br",
                    dup.bridge,
                ),
            ),
            fix=fix,
            peer=subject.peer,
        )
    for row in rows:
        verdict = verdicts.get(fdbmod.row_key(row))
        if verdict is None or row.peer is None or fdbmod.row_key(row) in in_dup:
            continue
        confirm = (in_ns(row.peer.ns, host, "bridge", "fdb", "show", "br", verdict.bridge),)
        if verdict.state is fdbmod.FdbState.NOT_LEARNED:
            yield Finding(
                "fdb-not-learned",
                Severity.INFO,
                row.end,
                f"bridge {verdict.bridge} has not learned {verdict.mac} on {verdict.port}: the workload has "
                "sent no frame lately (normal for an idle one; its entry ages out after 300 s)",
                evidence=(verdict.evidence(),),
                confirm=confirm,
                peer=row.peer,
            )
        elif verdict.state is fdbmod.FdbState.ELSEWHERE:
            new = _random_mac(f"{row.end.ns.key.ino}/{row.end.link.name}")
            yield Finding(
                "fdb-elsewhere",
                Severity.ERROR,
                row.end,
                f"bridge {verdict.bridge} has {verdict.mac} on {verdict.learned_on}, not on {verdict.port}: "
                "a duplicate MAC or a mis-plugged veth; frames for the workload go to the wrong port",
                evidence=(verdict.evidence(),),
                confirm=confirm,
                fix=(_ip(row.end, host, "link", "set", "dev", row.end.link.name, "address", new),),
                peer=row.peer,
            )


def _reachable_on(gateway: str, links: Iterable[Link]) -> list[Link]:
    address = ipaddress.ip_address(gateway)
    return [
        link for link in links if any(address in ipaddress.ip_interface(a).network for a in link.addresses)
    ]


def _bridge_gateway(row: Row, report: Report) -> str | None:
    """An address of the peer's bridge inside a subnet of the workload interface."""
    if row.peer is None or row.peer.link.master is None:
        return None
    bridge = _view_links(report).get(row.peer.ns.key, {}).get(row.peer.link.master)
    if bridge is None:
        return None
    for mine in _global(row.end.link.addresses, socket.AF_INET):
        for theirs in _global(bridge.addresses, socket.AF_INET):
            if theirs.ip in mine.network:
                return str(theirs.ip)
    return None


def check_default_route(
    rows: Sequence[Row], report: Report, facts: Mapping[NsKey, NsFacts]
) -> Iterator[Finding]:
    """A workload with no default route, or one whose gateway is not reachable on any of its links."""
    host = report.snapshot.host
    by_ns: dict[NsKey, list[Row]] = {}
    for row in rows:
        if row.end.ns.key != host:
            by_ns.setdefault(row.end.ns.key, []).append(row)
    views = {v.ns.key: v for v in report.snapshot.views}
    for key, ns_rows in by_ns.items():
        found = facts.get(key)
        view = views.get(key)
        if found is None or found.error or view is None:
            continue
        up = [r for r in ns_rows if not r.end.link.is_loopback and r.end.link.flags & IFF_UP]
        for family in (socket.AF_INET, socket.AF_INET6):
            addressed = [r for r in up if _global(r.end.link.addresses, family)]
            if not addressed:
                continue
            if family == socket.AF_INET6 and any(_global(r.end.link.addresses, socket.AF_INET) for r in up):
                continue  # dual stack: IPv4 is checked; IPv6 defaults come from RAs and come and go
            defaults = [r for r in found.routes if r.family == family and r.is_default]
            yield from _default_findings(addressed, defaults, found.neighbours, view, report, family)


def _default_findings(
    addressed: list[Row],
    defaults: list[Route],
    neighbours: Sequence[Neighbour],
    view: NsView,
    report: Report,
    family: int,
) -> Iterator[Finding]:
    host = report.snapshot.host
    first = addressed[0]
    v = "-4" if family == socket.AF_INET else "-6"
    confirm = (
        _ip(first.end, host, v, "route", "show", "table", "all", "default"),
        _ip(first.end, host, v, "neigh", "show"),
    )
    if not defaults:
        gateway = _bridge_gateway(first, report) or "GATEWAY"
        yield Finding(
            "no-default-route",
            Severity.WARNING,
            first.end,
            f"{first.end.workload.label} has {'IPv4' if family == socket.AF_INET else 'IPv6'} addresses "
            "but no default route: it reaches only its directly connected subnets",
            evidence=tuple(f"{r.end.link.name}: {', '.join(r.end.link.addresses)}" for r in addressed),
            confirm=confirm,
            fix=(
                _ip(first.end, host, "route", "add", "default", "via", gateway, "dev", first.end.link.name),
            ),
            peer=first.peer,
        )
        return
    links = {link.index: link for link in view.links}
    for route in defaults:
        if route.nexthop_id is not None:
            continue  # nexthop objects: not decoded
        for hop in route.nexthops:
            problem = _unreachable(hop, links, neighbours)
            if problem is None:
                continue
            row = next((r for r in addressed if r.end.link.index == hop.oif), first)
            gateway = hop.gateway or "-"
            fix: tuple[str, ...] = ()
            hint = _bridge_gateway(row, report)
            if hint and hint != hop.gateway:
                fix = (
                    _ip(row.end, host, "route", "replace", "default", "via", hint, "dev", row.end.link.name),
                )
            elif row.peer is not None and row.peer.master and hop.gateway:
                prefix = next(
                    (
                        str(ipaddress.ip_interface(a).network.prefixlen)
                        for a in row.end.link.addresses
                        if hop.gateway
                        and ipaddress.ip_address(hop.gateway) in ipaddress.ip_interface(a).network
                    ),
                    None,
                )
                if prefix:
                    fix = (
                        in_ns(
                            row.peer.ns,
                            host,
                            "ip",
                            "addr",
                            "add",
                            f"{hop.gateway}/{prefix}",
                            "dev",
                            row.peer.master,
                        ),
                    )
            yield Finding(
                "gateway-unreachable",
                Severity.WARNING,
                row.end,
                f"the default route's gateway {gateway} is not reachable: {problem}",
                evidence=(
                    f"default via {gateway}" + (f" dev {links[hop.oif].name}" if hop.oif in links else ""),
                    problem,
                ),
                confirm=confirm,
                fix=fix,
                peer=row.peer,
            )


def _unreachable(hop: NextHop, links: Mapping[int, Link], neighbours: Sequence[Neighbour]) -> str | None:
    oif = links.get(hop.oif) if hop.oif is not None else None
    name = oif.name if oif is not None else f"if{hop.oif}"
    if hop.linkdown or (oif is not None and not oif.flags & IFF_LOWER_UP):
        return f"its interface {name} has no carrier (the route is marked linkdown)"
    if hop.gateway is None:
        return None  # a device route: no gateway to reach
    gateway = ipaddress.ip_address(hop.gateway)
    if not hop.onlink and not gateway.is_link_local:
        candidates = [oif] if oif is not None else list(links.values())
        if not _reachable_on(hop.gateway, candidates):
            return f"{hop.gateway} is in no subnet of {name} (and the route is not onlink)"
    for neighbour in neighbours:
        same = neighbour.address == hop.gateway and (hop.oif is None or neighbour.index == hop.oif)
        if same and neighbour.state & (NUD_FAILED | NUD_INCOMPLETE):
            state = "FAILED" if neighbour.state & NUD_FAILED else "INCOMPLETE"
            return f"nobody answers ARP/ND for {hop.gateway} on {name} (neighbour state {state})"
    return None


# ---------------------------------------------------------------- the whole run


@dataclass(frozen=True, slots=True)
class Diagnosis:
    findings: tuple[Finding, ...]
    interfaces: int  # how many interfaces were checked
    namespaces: int
    skipped: tuple[str, ...] = field(default=())  # namespaces whose extra facts could not be read

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)


def wanted_facts(rows: Sequence[Row], host: NsKey) -> tuple[set[NsKey], dict[NsKey, list[str]]]:
    """Which namespaces need routes (workloads) and which sysctls (same-namespace pairs)."""
    routes = {row.end.ns.key for row in rows if row.end.ns.key != host}
    conf: dict[NsKey, list[str]] = {}
    for row in pairs(rows):
        assert row.peer is not None
        if row.peer.ns.key == row.end.ns.key:
            conf.setdefault(row.end.ns.key, []).extend([row.end.link.name, row.peer.link.name])
    return routes, conf


def diagnose(
    report: Report,
    rows: Sequence[Row] | None = None,
    facts: Mapping[NsKey, NsFacts] | None = None,
    holders: Mapping[int, Sequence[Holder]] | None = None,
) -> Diagnosis:
    """Run every check over ``rows`` (default: all), errors first."""
    chosen = list(report.rows if rows is None else rows)
    host = report.snapshot.host
    facts = facts or {}
    findings = [
        *check_pair_state(chosen, host),
        *check_address_on_port(chosen, report),
        *check_same_namespace_pair(chosen, host, facts),
        *check_mtu(chosen, report),
        *check_port_state(chosen, host),
        *check_orphans(chosen, report, holders),
        *check_fdb(chosen, report),
        *check_default_route(chosen, report, facts),
    ]
    findings.sort(key=lambda f: (-f.severity.rank, f.end.workload.label, f.end.link.name, f.check))
    skipped = tuple(f"netns {key.ino}: {f.error}" for key, f in facts.items() if f.error)
    return Diagnosis(
        tuple(findings),
        interfaces=len(ends(chosen)),
        namespaces=len({row.end.ns.key for row in chosen}),
        skipped=skipped,
    )


def orphan_nsids(rows: Iterable[Row], report: Report) -> set[int]:
    """nsids of host veth peers that discovery could not place (for :func:`nsfacts.fd_holders`)."""
    return {
        f.end.link.link_netnsid
        for f in check_orphans(list(rows), report)
        if f.end.link.link_netnsid is not None
    }


# ---------------------------------------------------------------- output


def finding_json(f: Finding) -> dict[str, object]:
    def where(end: End) -> dict[str, object]:
        return {
            "workload": end.workload.label,
            "netns": {"inode": end.ns.key.ino, "dev": end.ns.key.dev, "names": list(end.ns.netns_names)},
            "ifname": end.link.name,
            "ifindex": end.link.index,
        }

    return {
        "check": f.check,
        "severity": f.severity.value,
        "interface": where(f.end),
        "peer": where(f.peer) if f.peer is not None else None,
        "message": f.message,
        "evidence": list(f.evidence),
        "confirm": list(f.confirm),
        "fix": list(f.fix),
    }


def summary(d: Diagnosis) -> str:
    counts = {s: sum(1 for f in d.findings if f.severity is s) for s in Severity}
    checked = f"checked {d.interfaces} interfaces in {d.namespaces} workload namespaces"
    if not d.findings:
        return f"no findings ({checked})"
    parts = ", ".join(
        f"{n} {s.value}{'s' if n != 1 and s is not Severity.INFO else ''}" for s, n in counts.items()
    )
    return f"{len(d.findings)} findings: {parts} ({checked})"


def write_text(d: Diagnosis, stream: TextIO) -> None:
    for f in d.findings:
        stream.write(f"{f.severity.value.upper():8} {f.check}  {f.subject}\n")
        stream.write(f"    {f.message}\n")
        for line in f.evidence:
            stream.write(f"    evidence: {line}\n")
        for line in f.confirm:
            stream.write(f"    confirm:  {line}\n")
        for line in f.fix:
            stream.write(f"    fix:      {line}\n")
        stream.write("\n")
    for line in d.skipped:
        stream.write(f"not checked: {line}\n")
    stream.write(summary(d) + "\n")
