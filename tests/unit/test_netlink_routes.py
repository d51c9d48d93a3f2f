"""parse_route / parse_neighbour on hand-encoded rtnetlink messages (kernel ABI layouts)."""

from __future__ import annotations

import socket
import struct

from vethpeer.netlink_routes import (
    NUD_FAILED,
    RTA_DST,
    RTA_GATEWAY,
    RTA_MULTIPATH,
    RTA_OIF,
    RTA_TABLE,
    RTA_VIA,
    RTN_UNICAST,
    RTNH_F_LINKDOWN,
    RTNH_F_ONLINK,
    parse_neighbour,
    parse_route,
)

RTN_LOCAL = 2


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _route(family: int, dst_len: int, table: int, rtype: int, flags: int, *attrs: bytes) -> bytes:
    return struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, table, 4, 0, rtype, flags) + b"".join(attrs)


def test_ipv4_default_route_with_gateway() -> None:
    msg = _route(
        socket.AF_INET, 0, 254, RTN_UNICAST, 0,
        _attr(RTA_TABLE, struct.pack("=I", 254)),
        _attr(RTA_GATEWAY, socket.inet_aton("10.0.0.1")),
        _attr(RTA_OIF, struct.pack("=I", 7)),
    )  # fmt: skip
    route = parse_route(msg, 0, len(msg))
    assert route is not None and route.is_default and route.dst == "0.0.0.0/0"
    (hop,) = route.nexthops
    assert (hop.gateway, hop.oif, hop.onlink, hop.linkdown) == ("10.0.0.1", 7, False, False)


def test_onlink_and_linkdown_flags() -> None:
    msg = _route(
        socket.AF_INET, 0, 254, RTN_UNICAST, RTNH_F_ONLINK | RTNH_F_LINKDOWN,
        _attr(RTA_GATEWAY, socket.inet_aton("169.254.1.1")),
        _attr(RTA_OIF, struct.pack("=I", 3)),
    )  # fmt: skip
    route = parse_route(msg, 0, len(msg))
    assert route is not None
    assert route.nexthops[0].onlink and route.nexthops[0].linkdown


def test_connected_route_and_local_table() -> None:
    msg = _route(
        socket.AF_INET, 24, 254, RTN_UNICAST, 0,
        _attr(RTA_DST, socket.inet_aton("10.1.2.0")),
        _attr(RTA_OIF, struct.pack("=I", 2)),
    )  # fmt: skip
    route = parse_route(msg, 0, len(msg))
    assert route is not None and route.dst == "10.1.2.0/24" and not route.is_default
    assert route.nexthops[0].gateway is None
    local = _route(socket.AF_INET, 0, 255, RTN_LOCAL, 0)
    parsed = parse_route(local, 0, len(local))
    assert parsed is not None and not parsed.is_default


def test_ipv6_multipath_default() -> None:
    def hop(ifindex: int, gateway: str) -> bytes:
        attrs = _attr(RTA_GATEWAY, socket.inet_pton(socket.AF_INET6, gateway))
        return struct.pack("=HBBi", 8 + len(attrs), 0, 0, ifindex) + attrs

    hops = hop(2, "fe80::1") + hop(3, "fe80::2")
    msg = _route(socket.AF_INET6, 0, 254, RTN_UNICAST, 0, _attr(RTA_MULTIPATH, hops))
    route = parse_route(msg, 0, len(msg))
    assert route is not None and route.dst == "::/0" and route.is_default
    assert [(h.gateway, h.oif) for h in route.nexthops] == [("fe80::1", 2), ("fe80::2", 3)]


def test_ipv4_route_via_ipv6_gateway() -> None:
    via = struct.pack("=H", socket.AF_INET6) + socket.inet_pton(socket.AF_INET6, "fe80::9")
    msg = _route(
        socket.AF_INET, 0, 254, RTN_UNICAST, 0, _attr(RTA_VIA, via), _attr(RTA_OIF, struct.pack("=I", 4))
    )
    route = parse_route(msg, 0, len(msg))
    assert route is not None and route.nexthops[0].gateway == "fe80::9"


def test_other_families_are_ignored() -> None:
    msg = _route(socket.AF_PACKET, 0, 254, RTN_UNICAST, 0)
    assert parse_route(msg, 0, len(msg)) is None


def test_neighbour() -> None:
    msg = struct.pack("=BxxxiHBB", socket.AF_INET, 5, NUD_FAILED, 0, 1) + _attr(
        1, socket.inet_aton("10.0.0.1")
    )
    neighbour = parse_neighbour(msg, 0, len(msg))
    assert neighbour is not None
    assert (neighbour.index, neighbour.address, neighbour.mac, neighbour.state) == (
        5,
        "10.0.0.1",
        None,
        NUD_FAILED,
    )
    mac = _attr(2, bytes.fromhex("020000000001"))
    msg6 = (
        struct.pack("=BxxxiHBB", socket.AF_INET6, 2, 2, 0, 1)
        + _attr(1, socket.inet_pton(socket.AF_INET6, "fd00::1"))
        + mac
    )
    n6 = parse_neighbour(msg6, 0, len(msg6))
    assert n6 is not None and n6.address == "fd00::1" and n6.mac == "02:00:00:00:00:01"
