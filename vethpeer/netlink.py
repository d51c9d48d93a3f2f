"""A minimal, read-only rtnetlink client for the few messages vethpeer needs.

pyroute2 is the project's reference netlink library, but importing it costs about
0.2 s, more than the whole walk of a thousand namespaces is allowed to take. This
module decodes only RTM_NEWLINK, RTM_NEWADDR, RTM_NEWNSID and (AF_BRIDGE)
RTM_NEWNEIGH, with :mod:`struct`. ``tests/integration/test_netlink_vs_pyroute2.py``
cross-checks every field against pyroute2 on real links.

It only ever sends GET requests: dumps of links, addresses, counters and FDB entries,
and RTM_GETNSID, which (unlike a link dump) never allocates an nsid.

A netlink socket belongs to the network namespace it was created in, for its
whole life: open it after ``setns()`` and it keeps answering for that namespace.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .model import FdbEntry, Link, LinkStats

if TYPE_CHECKING:
    from .netlink_routes import Neighbour, Route

T = TypeVar("T")

# nlmsghdr and message types (linux/netlink.h, linux/rtnetlink.h)
_NLMSG = struct.Struct("=IHHII")
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWNEIGH = 28
RTM_GETNEIGH = 30
RTM_NEWNSID = 88
RTM_GETNSID = 90
RTM_NEWSTATS = 92
RTM_GETSTATS = 94
IFLA_STATS_LINK_64 = 1

_IFINFO = struct.Struct("=BxHiII")
_IF_STATS_MSG = struct.Struct("=BBHII")  # family, pad, pad, ifindex, filter_mask
_IFADDR = struct.Struct("=BBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")
_RTGEN = struct.Struct("=Bxxx")
_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")
_U16 = struct.Struct("=H")

# IFLA_* (linux/if_link.h)
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_STATS64 = 23
IFLA_EXT_MASK = 29
IFLA_LINK_NETNSID = 37
IFLA_INFO_KIND = 1
IFLA_INFO_SLAVE_KIND = 4
IFLA_INFO_SLAVE_DATA = 5
IFLA_BRPORT_STATE = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3
# IFA_* (linux/if_addr.h)
IFA_ADDRESS = 1
IFA_LOCAL = 2
# NDA_* (linux/neighbour.h)
NDA_LLADDR = 2
NDA_VLAN = 5
NDA_MASTER = 9
# NETNSA_* (linux/net_namespace.h)
NETNSA_NSID = 1
NETNSA_FD = 3

NLA_F_MASK = 0x3FFF  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER
AF_BRIDGE = 7
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_LOWER_UP = 0x10000

OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
BRPORT_STATES = ("disabled", "listening", "learning", "forwarding", "blocking")


class NetlinkError(OSError):
    """The kernel answered a request with an error."""


@dataclass(frozen=True, slots=True)
class RawAddress:
    index: int
    address: str  # "10.0.0.2/24", "fe80::1/64"


def _mac(data: bytes) -> str:
    return data.hex(":")


def _attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield (type, start, stop) for each attribute between offset and end."""
    unpack = _NLA.unpack_from
    while offset + 4 <= end:
        length, kind = unpack(data, offset)
        if length < 4:
            return
        yield kind & NLA_F_MASK, offset + 4, offset + length
        offset += (length + 3) & ~3


def _cstr(data: bytes, start: int, stop: int) -> str:
    """A name as the kernel has it: bytes that are not UTF-8 kept by ``surrogateescape``
    (as ``os.fsdecode`` does), so the name round-trips; text output shows them escaped."""
    return data[start:stop].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


_LINK_ATTRS = frozenset(
    {
        IFLA_IFNAME,
        IFLA_ADDRESS,
        IFLA_MTU,
        IFLA_LINK,
        IFLA_MASTER,
        IFLA_OPERSTATE,
        IFLA_LINK_NETNSID,
        IFLA_LINKINFO,
    }
)
_LOOPBACK_ATTRS = frozenset({IFLA_IFNAME, IFLA_MTU, IFLA_OPERSTATE})
_LINK_ATTRS_STATS = _LINK_ATTRS | {IFLA_STATS64}
_LOOPBACK_ATTRS_STATS = _LOOPBACK_ATTRS | {IFLA_STATS64}
_STATS_FIELDS = len(LinkStats.__dataclass_fields__)


def parse_stats64(data: bytes, start: int, stop: int) -> LinkStats:
    """IFLA_STATS64 by its length: as many u64 counters as the kernel sent (at most the known ones)."""
    count = min((stop - start) // 8, _STATS_FIELDS)
    return LinkStats(*struct.unpack_from(f"={count}Q", data, start))


def parse_link(data: bytes, offset: int, end: int, with_stats: bool = False) -> Link:
    _family, _type, index, flags, _change = _IFINFO.unpack_from(data, offset)
    name = ""
    kind = slave_kind = mac = brport_state = None
    mtu = master = link = link_netnsid = None
    stats = None
    operstate = "unknown"
    # A flat loop, not _attrs(): a link carries ~50 attributes and only 8 matter here.
    # Attribute headers are 4-aligned (u16 length, u16 type): read them as halfwords.
    halves = memoryview(data).cast("H")
    # A loopback device has no kind, master, peer or MAC: once its name, MTU and state are
    # read, the other ~35 attributes are not walked (one lo per namespace adds up).
    loopback = bool(flags & IFF_LOOPBACK)
    if with_stats:
        wanted = _LOOPBACK_ATTRS_STATS if loopback else _LINK_ATTRS_STATS
    else:
        wanted = _LOOPBACK_ATTRS if loopback else _LINK_ATTRS
    left = len(wanted)
    pos = offset + _IFINFO.size
    while pos + 4 <= end:
        length = halves[pos >> 1]
        if length < 4:
            break
        attr = halves[(pos >> 1) + 1] & NLA_F_MASK
        start, stop = pos + 4, pos + length
        pos += (length + 3) & ~3
        if attr not in wanted:
            continue
        if attr == IFLA_IFNAME:
            name = _cstr(data, start, stop)
        elif attr == IFLA_ADDRESS:
            mac = _mac(data[start:stop])
        elif attr == IFLA_MTU:
            mtu = _U32.unpack_from(data, start)[0]
        elif attr == IFLA_LINK:
            link = _S32.unpack_from(data, start)[0]
        elif attr == IFLA_MASTER:
            master = _U32.unpack_from(data, start)[0]
        elif attr == IFLA_OPERSTATE:
            value = data[start]
            operstate = OPERSTATES[value] if value < len(OPERSTATES) else str(value)
        elif attr == IFLA_LINK_NETNSID:
            link_netnsid = _S32.unpack_from(data, start)[0]
        elif attr == IFLA_STATS64:
            stats = parse_stats64(data, start, stop)
        elif attr == IFLA_LINKINFO:
            for info, istart, istop in _attrs(data, start, stop):
                if info == IFLA_INFO_KIND:
                    kind = _cstr(data, istart, istop)
                elif info == IFLA_INFO_SLAVE_KIND:
                    slave_kind = _cstr(data, istart, istop)
                elif info == IFLA_INFO_SLAVE_DATA:
                    for sattr, sstart, _sstop in _attrs(data, istart, istop):
                        if sattr == IFLA_BRPORT_STATE:  # the first of ~40 port attributes
                            value = data[sstart]
                            brport_state = BRPORT_STATES[value] if value < len(BRPORT_STATES) else str(value)
                            break
        if loopback:
            left -= 1
            if not left:
                break
    if loopback:
        mac = mac or "00:00:00:00:00:00"
    if link is None and link_netnsid is not None:
        # The kernel omits IFLA_LINK when it equals the device's own ifindex, which
        # happens across namespaces: eth0 (ifindex 2) whose peer is ifindex 2 elsewhere.
        link = index
    return Link(
        index=index,
        name=name,
        flags=flags,
        kind=kind,
        mac=mac,
        mtu=mtu,
        operstate=operstate,
        master=master,
        link=link,
        link_netnsid=link_netnsid,
        slave_kind=slave_kind,
        brport_state=brport_state if slave_kind == "bridge" else None,
        stats=stats,
    )


def _parse_link_with_stats(data: bytes, offset: int, end: int) -> Link:
    return parse_link(data, offset, end, True)


def parse_stats_msg(data: bytes, offset: int, end: int) -> tuple[int, LinkStats] | None:
    """One RTM_NEWSTATS reply: (ifindex, its IFLA_STATS_LINK_64 counters)."""
    index = _IF_STATS_MSG.unpack_from(data, offset)[3]
    for attr, start, stop in _attrs(data, offset + _IF_STATS_MSG.size, end):
        if attr == IFLA_STATS_LINK_64:
            return index, parse_stats64(data, start, stop)
    return None


def parse_address(data: bytes, offset: int, end: int) -> RawAddress | None:
    family, prefixlen, _flags, _scope, index = _IFADDR.unpack_from(data, offset)
    address = local = None
    for attr, start, stop in _attrs(data, offset + _IFADDR.size, end):
        if attr == IFA_ADDRESS:
            address = data[start:stop]
        elif attr == IFA_LOCAL:
            local = data[start:stop]
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    # point-to-point links, and the only one IPv6 sends.
    raw = local if local is not None else address
    if raw is None:
        return None
    return RawAddress(index, f"{socket.inet_ntop(family, raw)}/{prefixlen}")


def parse_fdb(data: bytes, offset: int, end: int) -> FdbEntry | None:
    _family, port, state, flags, _type = _NDMSG.unpack_from(data, offset)
    mac = None
    master = vlan = None
    for attr, start, stop in _attrs(data, offset + _NDMSG.size, end):
        if attr == NDA_LLADDR:
            mac = _mac(data[start:stop])
        elif attr == NDA_MASTER:
            master = _U32.unpack_from(data, start)[0]
        elif attr == NDA_VLAN:
            vlan = _U16.unpack_from(data, start)[0]
    if mac is None:
        return None
    return FdbEntry(port=port, mac=mac, master=master, vlan=vlan, state=state, flags=flags)


class RtnlSocket:
    """A NETLINK_ROUTE socket in the network namespace current at creation."""

    def __init__(self) -> None:
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RtnlSocket:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, msg_type: int, flags: int, payload: bytes) -> Iterator[tuple[int, bytes, int, int]]:
        """Send one request; yield (type, buffer, body offset, body end) per reply."""
        self._seq += 1
        seq = self._seq
        self._sock.send(_NLMSG.pack(_NLMSG.size + len(payload), msg_type, flags, seq, 0) + payload)
        unpack = _NLMSG.unpack_from
        while True:
            data = self._sock.recv(1 << 17)
            offset = 0
            size = len(data)
            while offset + _NLMSG.size <= size:
                length, rtype, _flags, rseq, _pid = unpack(data, offset)
                if length < _NLMSG.size:
                    return
                body, end = offset + _NLMSG.size, offset + length
                offset += (length + 3) & ~3
                if rseq != seq:
                    continue
                if rtype == NLMSG_DONE:
                    return
                if rtype == NLMSG_ERROR:
                    errno = -_S32.unpack_from(data, body)[0]
                    if errno:
                        raise NetlinkError(errno, f"netlink request {msg_type} failed")
                    return
                yield rtype, data, body, end
            if not flags & NLM_F_DUMP:
                return

    def link(self, name: str | None = None, index: int = 0, stats: bool = False) -> Link | None:
        """One link by name or ifindex (a single RTM_GETLINK, no dump); None if there is none."""
        attrs = b""
        if name is not None:
            raw = name.encode() + b"\0"
            attrs = _NLA.pack(4 + len(raw), IFLA_IFNAME) + raw + b"\0" * (-len(raw) % 4)
        payload = (
            _IFINFO.pack(0, 0, index, 0, 0)
            + attrs
            + _NLA.pack(8, IFLA_EXT_MASK)
            + _U32.pack(RTEXT_FILTER_SKIP_STATS)
        )
        try:
            for rtype, data, body, end in self._request(RTM_GETLINK, NLM_F_REQUEST, payload):
                if rtype == RTM_NEWLINK:
                    return parse_link(data, body, end, stats)
        except NetlinkError:  # ENODEV
            return None
        return None

    def _dump(
        self, msg_type: int, reply_type: int, payload: bytes, parse: Callable[[bytes, int, int], T | None]
    ) -> list[T]:
        """A dump request, each reply of ``reply_type`` parsed; replies the parser rejects dropped."""
        found = (
            parse(data, body, end)
            for rtype, data, body, end in self._request(msg_type, NLM_F_REQUEST | NLM_F_DUMP, payload)
            if rtype == reply_type
        )
        return [item for item in found if item is not None]

    def links(self, stats: bool = False) -> list[Link]:
        """Every link; with ``stats`` their IFLA_STATS64 counters decoded too.

        The counters are in every dump (RTEXT_FILTER_SKIP_STATS only drops SR-IOV VF
        stats): asking for them costs their decoding, nothing more."""
        payload = (
            _IFINFO.pack(0, 0, 0, 0, 0) + _NLA.pack(8, IFLA_EXT_MASK) + _U32.pack(RTEXT_FILTER_SKIP_STATS)
        )
        if stats:
            return self._dump(RTM_GETLINK, RTM_NEWLINK, payload, _parse_link_with_stats)
        return self._dump(RTM_GETLINK, RTM_NEWLINK, payload, parse_link)

    def addresses(self) -> list[RawAddress]:
        return self._dump(RTM_GETADDR, RTM_NEWADDR, _IFADDR.pack(0, 0, 0, 0, 0), parse_address)

    def fdb(self) -> list[FdbEntry]:
        return self._dump(RTM_GETNEIGH, RTM_NEWNEIGH, _NDMSG.pack(AF_BRIDGE, 0, 0, 0, 0), parse_fdb)

    def nsid_of(self, ns_fd: int) -> int | None:
        """The nsid this socket's namespace has assigned to the namespace behind ns_fd.

        RTM_GETNSID never allocates one: None means "not assigned".
        """
        payload = _RTGEN.pack(socket.AF_UNSPEC) + _NLA.pack(8, NETNSA_FD) + _U32.pack(ns_fd)
        for rtype, data, body, end in self._request(RTM_GETNSID, NLM_F_REQUEST, payload):
            if rtype != RTM_NEWNSID:
                continue
            for attr, start, _stop in _attrs(data, body + _RTGEN.size, end):
                if attr == NETNSA_NSID:
                    nsid = _S32.unpack_from(data, start)[0]
                    return None if nsid < 0 else nsid
        return None

    def stats(self) -> dict[int, LinkStats]:
        """Every link's counters only (RTM_GETSTATS, IFLA_STATS_LINK_64), by ifindex: about a
        tenth of a full link dump to read and parse, for `top`'s rounds between link dumps."""
        payload = _IF_STATS_MSG.pack(0, 0, 0, 0, 1 << (IFLA_STATS_LINK_64 - 1))
        return dict(self._dump(RTM_GETSTATS, RTM_NEWSTATS, payload, parse_stats_msg))

    # ---------------------------------------------------------------- for `vethpeer doctor`
    # (added after the walk's methods; only `doctor` asks these, per namespace it checks)

    def routes(self, family: int = socket.AF_UNSPEC) -> list[Route]:
        """Every route of every table (RTM_GETROUTE dump), IPv4 and IPv6 unless ``family`` says."""
        from .netlink_routes import _RTMSG, RTM_GETROUTE, RTM_NEWROUTE, parse_route

        return self._dump(
            RTM_GETROUTE, RTM_NEWROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0), parse_route
        )

    def neighbours(self, family: int = socket.AF_UNSPEC) -> list[Neighbour]:
        """The ARP / NDP tables (RTM_GETNEIGH dump of AF_INET and AF_INET6)."""
        from .netlink_routes import parse_neighbour

        return self._dump(RTM_GETNEIGH, RTM_NEWNEIGH, _NDMSG.pack(family, 0, 0, 0, 0), parse_neighbour)
