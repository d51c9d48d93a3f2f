"""parse_route / parse_neighbour, and the doctor's filtered reads, on hand-encoded rtnetlink messages
(kernel ABI layouts)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import TypeVar

from vethpeer.netlink_routes import (
    NUD_FAILED,
    RTA_DST,
    RTA_GATEWAY,
    RTA_MULTIPATH,
    RTA_OIF,
    RTA_TABLE,
    RTA_VIA,
    RTM_GETROUTE,
    RTN_UNICAST,
    RTNH_F_LINKDOWN,
    RTNH_F_ONLINK,
    default_routes,
    gateway_neighbours,
    parse_default_route,
    parse_neighbour,
    parse_route,
)

RTN_LOCAL = 2
T = TypeVar("T")


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


class _Kernel:
    """A :class:`~vethpeer.netlink_wire.Dumps` that answers every dump with these messages and
    keeps each request's payload."""

    def __init__(self, *messages: bytes) -> None:
        self.messages = messages
        self.asked: list[tuple[int, bytes]] = []

    def dump(
        self, msg_type: int, reply_type: int, payload: bytes, parse: Callable[[bytes, int, int], T | None]
    ) -> list[T]:
        self.asked.append((msg_type, payload))
        return [item for m in self.messages if (item := parse(m, 0, len(m))) is not None]


def test_default_routes_are_parsed_and_nothing_else() -> None:
    gateway = _attr(RTA_GATEWAY, socket.inet_aton("10.0.0.1"))
    default = _route(socket.AF_INET, 0, 254, RTN_UNICAST, 0, gateway, _attr(RTA_OIF, struct.pack("=I", 2)))
    table_100 = _route(
        socket.AF_INET, 0, 252, RTN_UNICAST, 0, _attr(RTA_TABLE, struct.pack("=I", 100)), gateway
    )
    connected = _route(socket.AF_INET, 24, 254, RTN_UNICAST, 0, _attr(RTA_DST, socket.inet_aton("10.0.0.0")))
    blackhole = _route(socket.AF_INET, 0, 254, 6, 0)  # RTN_BLACKHOLE: no way out, not a default route here
    local_table = _route(socket.AF_INET, 0, 252, RTN_UNICAST, 0, _attr(RTA_TABLE, struct.pack("=I", 255)))
    v6_gateway = _attr(RTA_GATEWAY, socket.inet_pton(socket.AF_INET6, "fe80::1"))
    v6 = _route(socket.AF_INET6, 0, 254, RTN_UNICAST, 0, v6_gateway)
    every = (default, table_100, connected, blackhole, local_table, v6)
    kernel = _Kernel(*every)
    found = default_routes(kernel)
    assert found == [r for m in every if (r := parse_route(m, 0, len(m))) is not None and r.is_default]
    assert [(r.dst, r.table) for r in found] == [("0.0.0.0/0", 254), ("0.0.0.0/0", 100), ("::/0", 254)]
    for message in (connected, blackhole, local_table):
        assert parse_default_route(message, 0, len(message)) is None


def test_default_routes_ask_the_kernel_for_unicast_routes_of_one_family() -> None:
    kernel = _Kernel()
    default_routes(kernel, socket.AF_INET6)
    ((msg_type, payload),) = kernel.asked
    family, dst_len, _src, _tos, table, _proto, _scope, rtype, _flags = struct.unpack("=BBBBBBBBI", payload)
    assert (msg_type, family, dst_len, table, rtype) == (RTM_GETROUTE, socket.AF_INET6, 0, 0, RTN_UNICAST)


def _neighbour(family: int, address: str, state: int, index: int = 2) -> bytes:
    return struct.pack("=BxxxiHBB", family, index, state, 0, 1) + _attr(1, socket.inet_pton(family, address))


def test_gateway_neighbours_are_the_gateways_entries_only() -> None:
    entries = (
        _neighbour(socket.AF_INET, "10.0.0.1", NUD_FAILED),
        _neighbour(socket.AF_INET, "10.0.0.7", NUD_FAILED),
        _neighbour(socket.AF_INET6, "fe80::1", NUD_FAILED),
        _neighbour(socket.AF_INET, "10.0.0.1", NUD_FAILED, index=3),
    )
    kernel = _Kernel(*entries)
    found = gateway_neighbours(kernel, {"10.0.0.1"})
    assert [(n.address, n.index) for n in found] == [("10.0.0.1", 2), ("10.0.0.1", 3)]
    assert [struct.unpack_from("=B", payload)[0] for _type, payload in kernel.asked] == [socket.AF_INET]
    both = _Kernel(*entries)
    assert {n.address for n in gateway_neighbours(both, {"10.0.0.1", "fe80::1"})} == {"10.0.0.1", "fe80::1"}
    assert struct.unpack_from("=B", both.asked[0][1])[0] == socket.AF_UNSPEC
    none = _Kernel(*entries)
    assert gateway_neighbours(none, ()) == [] and none.asked == []  # no gateway: nothing asked
