"""Checks on each workload's routing: a default route, and a gateway that answers."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence

from ..model import Link, NsKey, NsView, Report, Row
from ..netlink import IFF_LOWER_UP, IFF_UP
from ..netlink_routes import NUD_FAILED, NUD_INCOMPLETE, Neighbour, NextHop, Route
from ..shell import in_ns, ip_in
from .base import Facts, Finding, Severity, address, check, global_addresses, interface


def _reachable_on(gateway: str, links: Iterable[Link]) -> list[Link]:
    ip = address(gateway)
    return [link for link in links if any(ip in interface(a).network for a in link.addresses)]


def _up(row: Row) -> bool:
    return not row.end.link.is_loopback and bool(row.end.link.flags & IFF_UP)


def route_families(rows: Iterable[Row], host: NsKey) -> dict[NsKey, int]:
    """The workloads whose default routes :func:`default_route` looks at, each with the one family
    it looks at: IPv4 when an interface up has a global IPv4 address, else IPv6 when one has a
    global IPv6 address (dual stack is checked through IPv4). The doctor reads only these."""
    families: dict[NsKey, int] = {}
    for row in rows:
        key = row.end.ns.key
        if key == host or families.get(key) == socket.AF_INET or not _up(row):
            continue
        if global_addresses(row.end.link.addresses, socket.AF_INET):
            families[key] = socket.AF_INET
        elif global_addresses(row.end.link.addresses, socket.AF_INET6):
            families[key] = socket.AF_INET6
    return families


def _bridge_gateway(row: Row, facts: Facts) -> str | None:
    """An address of the peer's bridge inside a subnet of the workload interface."""
    if row.peer is None or row.peer.link.master is None:
        return None
    bridge = facts.link(row.peer.ns.key, row.peer.link.master)
    if bridge is None:
        return None
    for mine in global_addresses(row.end.link.addresses, socket.AF_INET):
        for theirs in global_addresses(bridge.addresses, socket.AF_INET):
            if theirs.ip in mine.network:
                return str(theirs.ip)
    return None


@check("no-default-route", "gateway-unreachable")
def default_route(report: Report, facts: Facts) -> Iterator[Finding]:
    """A workload with no default route, or one whose gateway is not reachable on any of its links."""
    host = facts.host
    by_ns: dict[NsKey, list[Row]] = {}
    for row in facts.rows:
        if row.end.ns.key != host:
            by_ns.setdefault(row.end.ns.key, []).append(row)
    views = {v.ns.key: v for v in report.snapshot.views}
    families = route_families(facts.rows, host)  # the one family checked in each (the reads' too)
    for key, ns_rows in by_ns.items():
        found = facts.inside.get(key)
        view = views.get(key)
        family = families.get(key)
        if found is None or found.error or view is None or family is None:
            continue
        addressed = [r for r in ns_rows if _up(r) and global_addresses(r.end.link.addresses, family)]
        defaults = [r for r in found.default_routes if r.family == family and r.is_default]
        yield from _default_findings(addressed, defaults, found.gateway_neighbours, view, facts, family)


def _default_findings(
    addressed: list[Row],
    defaults: list[Route],
    neighbours: Sequence[Neighbour],
    view: NsView,
    facts: Facts,
    family: int,
) -> Iterator[Finding]:
    host = facts.host
    first = addressed[0]
    v = "-4" if family == socket.AF_INET else "-6"

    def confirm() -> tuple[str, ...]:  # built for a finding only (serve checks a thousand workloads)
        return (
            ip_in(first.end, host, v, "route", "show", "table", "all", "default"),
            ip_in(first.end, host, v, "neigh", "show"),
        )

    if not defaults:
        gateway = _bridge_gateway(first, facts) or "GATEWAY"
        yield Finding(
            "no-default-route",
            Severity.WARNING,
            first.end,
            f"{first.end.workload.label} has {'IPv4' if family == socket.AF_INET else 'IPv6'} addresses "
            "but no default route: it reaches only its directly connected subnets",
            evidence=tuple(f"{r.end.link.name}: {', '.join(r.end.link.addresses)}" for r in addressed),
            confirm=confirm(),
            fix=(
                ip_in(first.end, host, "route", "add", "default", "via", gateway, "dev", first.end.link.name),
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
            hint = _bridge_gateway(row, facts)
            if hint and hint != hop.gateway:
                fix = (
                    ip_in(
                        row.end, host, "route", "replace", "default", "via", hint, "dev", row.end.link.name
                    ),
                )
            elif row.peer is not None and row.peer.master and hop.gateway:
                prefix = next(
                    (
                        str(interface(a).network.prefixlen)
                        for a in row.end.link.addresses
                        if hop.gateway and address(hop.gateway) in interface(a).network
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
                confirm=confirm(),
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
    if not hop.onlink and not address(hop.gateway).is_link_local:
        candidates = [oif] if oif is not None else list(links.values())
        if not _reachable_on(hop.gateway, candidates):
            return f"{hop.gateway} is in no subnet of {name} (and the route is not onlink)"
    for neighbour in neighbours:
        same = neighbour.address == hop.gateway and (hop.oif is None or neighbour.index == hop.oif)
        if same and neighbour.state & (NUD_FAILED | NUD_INCOMPLETE):
            state = "FAILED" if neighbour.state & NUD_FAILED else "INCOMPLETE"
            return f"nobody answers ARP/ND for {hop.gateway} on {name} (neighbour state {state})"
    return None
