"""Routes and neighbours for `vethpeer doctor`: :func:`routes` and :func:`neighbours` dump
them through a :class:`vethpeer.netlink.RtnlSocket`, with the RTM_NEWROUTE and (AF_INET/AF_INET6)
RTM_NEWNEIGH decoders here. The doctor reads only what its checks look at, in every workload at
each round of `serve`: :func:`default_routes` (a dump the kernel filters to unicast routes, whose
other routes are dropped by their header, before any attribute is decoded) and
:func:`gateway_neighbours` (the entries of those routes' gateways only).

Apart from :mod:`vethpeer.netlink` because only `doctor` asks for them, per namespace it checks;
both build on :mod:`vethpeer.netlink_wire`, and neither imports the other.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from .netlink_wire import NDA_LLADDR, NDMSG, U16, U32, Dumps, attrs, hex_mac

# rtmsg and RTA_* (linux/rtnetlink.h), for routes()
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTM_NEWNEIGH = 28
RTM_GETNEIGH = 30
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTNH = struct.Struct("=HBBi")
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_MULTIPATH = 9
RTA_TABLE = 15
RTA_VIA = 18
RTA_NH_ID = 30
RTN_UNICAST = 1
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255
RTNH_F_DEAD = 1
RTNH_F_ONLINK = 4
RTNH_F_LINKDOWN = 16
NDA_DST = 1
# neighbour states (linux/neighbour.h)
NUD_INCOMPLETE = 0x01
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_DELAY = 0x08
NUD_PROBE = 0x10
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80


@dataclass(frozen=True, slots=True)
class NextHop:
    """One way out of a route: a gateway (or none: on-link) through an interface."""

    gateway: str | None
    oif: int | None
    flags: int = 0  # RTNH_F_*: ONLINK, LINKDOWN, DEAD

    @property
    def onlink(self) -> bool:
        return bool(self.flags & RTNH_F_ONLINK)

    @property
    def linkdown(self) -> bool:
        return bool(self.flags & (RTNH_F_LINKDOWN | RTNH_F_DEAD))


@dataclass(frozen=True, slots=True)
class Route:
    family: int
    dst: str  # "0.0.0.0/0", "10.0.0.0/24", "::/0"
    table: int
    type: int  # RTN_UNICAST, RTN_LOCAL, ...
    nexthops: tuple[NextHop, ...] = ()
    metric: int | None = None
    nexthop_id: int | None = None  # RTA_NH_ID: the nexthop lives in a nexthop object

    @property
    def is_default(self) -> bool:
        return self.dst.endswith("/0") and self.type == RTN_UNICAST and self.table != RT_TABLE_LOCAL


@dataclass(frozen=True, slots=True)
class Neighbour:
    index: int
    address: str
    mac: str | None
    state: int  # NUD_*


def _ip(family: int, raw: bytes) -> str:
    return socket.inet_ntop(family, raw)


def parse_route(data: bytes, offset: int, end: int) -> Route | None:
    family, dst_len, _src_len, _tos, table, _proto, _scope, rtype, flags = _RTMSG.unpack_from(data, offset)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    dst = gateway = None
    oif = metric = nh_id = None
    nexthops: list[NextHop] = []
    for attr, start, stop in attrs(data, offset + _RTMSG.size, end):
        if attr == RTA_DST:
            dst = _ip(family, data[start:stop])
        elif attr == RTA_TABLE:
            table = U32.unpack_from(data, start)[0]
        elif attr == RTA_GATEWAY:
            gateway = _ip(family, data[start:stop])
        elif attr == RTA_VIA:  # IPv4 route through an IPv6 gateway: u16 family + address
            via_family = U16.unpack_from(data, start)[0]
            gateway = _ip(via_family, data[start + 2 : stop])
        elif attr == RTA_OIF:
            oif = U32.unpack_from(data, start)[0]
        elif attr == RTA_PRIORITY:
            metric = U32.unpack_from(data, start)[0]
        elif attr == RTA_NH_ID:
            nh_id = U32.unpack_from(data, start)[0]
        elif attr == RTA_MULTIPATH:
            nexthops.extend(_parse_multipath(family, data, start, stop))
    if not nexthops and (gateway is not None or oif is not None):
        nexthops.append(NextHop(gateway, oif, flags & 0xFF))
    if dst is None:
        dst = "0.0.0.0" if family == socket.AF_INET else "::"
    return Route(family, f"{dst}/{dst_len}", table, rtype, tuple(nexthops), metric, nh_id)


def _parse_multipath(family: int, data: bytes, offset: int, end: int) -> Iterator[NextHop]:
    while offset + _RTNH.size <= end:
        length, flags, _hops, ifindex = _RTNH.unpack_from(data, offset)
        if length < _RTNH.size:
            return
        gateway = None
        for attr, start, stop in attrs(data, offset + _RTNH.size, offset + length):
            if attr == RTA_GATEWAY:
                gateway = _ip(family, data[start:stop])
            elif attr == RTA_VIA:
                gateway = _ip(U16.unpack_from(data, start)[0], data[start + 2 : stop])
        yield NextHop(gateway, ifindex or None, flags)
        offset += (length + 3) & ~3


def parse_neighbour(data: bytes, offset: int, end: int) -> Neighbour | None:
    family, index, state, _flags, _type = NDMSG.unpack_from(data, offset)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    address = mac = None
    for attr, start, stop in attrs(data, offset + NDMSG.size, end):
        if attr == NDA_DST:
            address = _ip(family, data[start:stop])
        elif attr == NDA_LLADDR:
            mac = hex_mac(data[start:stop])
    if address is None:
        return None
    return Neighbour(index, address, mac, state)


def parse_default_route(data: bytes, offset: int, end: int) -> Route | None:
    """:func:`parse_route` for the default routes only (:attr:`Route.is_default`): any other route
    is dropped by its header (a prefix length, a type other than unicast) before its attributes
    are decoded; the local table is known after them (RTA_TABLE holds ids over 255)."""
    _family, dst_len, _src_len, _tos, _table, _proto, _scope, rtype, _flags = _RTMSG.unpack_from(data, offset)
    if dst_len or rtype != RTN_UNICAST:
        return None
    route = parse_route(data, offset, end)
    return route if route is not None and route.is_default else None


def default_routes(sock: Dumps, family: int = socket.AF_UNSPEC) -> list[Route]:
    """The default routes of every table but the local one (what the doctor's checks look at).

    The request asks for unicast routes only (``rtm_type``): under strict checking
    (``NETLINK_GET_STRICT_CHK``, Linux 4.20+, which the caller turns on) the kernel sends no
    other; without it, it sends every route, and the parser drops them."""
    request = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, RTN_UNICAST, 0)
    return sock.dump(RTM_GETROUTE, RTM_NEWROUTE, request, parse_default_route)


def gateway_neighbours(sock: Dumps, gateways: Collection[str]) -> list[Neighbour]:
    """The ARP / NDP entries of these addresses (any interface), out of a dump of the families
    they are in: an entry for another address is dropped by its destination's bytes, unparsed."""
    wanted = {_packed(address) for address in gateways}
    if not wanted:
        return []
    families = {len(raw) for raw in wanted}
    family = socket.AF_UNSPEC if len(families) > 1 else (socket.AF_INET if 4 in families else socket.AF_INET6)

    def parse(data: bytes, offset: int, end: int) -> Neighbour | None:
        for attr, start, stop in attrs(data, offset + NDMSG.size, end):
            if attr == NDA_DST:
                return parse_neighbour(data, offset, end) if data[start:stop] in wanted else None
        return None

    return sock.dump(RTM_GETNEIGH, RTM_NEWNEIGH, NDMSG.pack(family, 0, 0, 0, 0), parse)


def _packed(address: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)


def routes(sock: Dumps, family: int = socket.AF_UNSPEC) -> list[Route]:
    """Every route of every table (RTM_GETROUTE dump), IPv4 and IPv6 unless ``family`` says."""
    return sock.dump(RTM_GETROUTE, RTM_NEWROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0), parse_route)


def neighbours(sock: Dumps, family: int = socket.AF_UNSPEC) -> list[Neighbour]:
    """The ARP / NDP tables (RTM_GETNEIGH dump of AF_INET and AF_INET6)."""
    return sock.dump(RTM_GETNEIGH, RTM_NEWNEIGH, NDMSG.pack(family, 0, 0, 0, 0), parse_neighbour)
