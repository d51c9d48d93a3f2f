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

import errno
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .model import FdbEntry, Link, LinkStats
from .netlink_wire import (
    DUMP_TRIES,
    NDA_LLADDR,
    NDMSG,
    NLA,
    NLA_F_MASK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG,
    S32,
    U16,
    U32,
    DumpInterrupted,
    NetlinkError,
    attrs,
    cstr,
    hex_mac,
    receive,
    replies,
)

T = TypeVar("T")

__all__ = ["DumpInterrupted", "NetlinkError", "RtnlSocket"]

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
RECV_BYTES = 1 << 17  # a dump datagram is at most 32 KiB; a single reply fits too

_IFINFO = struct.Struct("=BxHiII")
_IF_STATS_MSG = struct.Struct("=BBHII")  # family, pad, pad, ifindex, filter_mask
_IFADDR = struct.Struct("=BBBBI")
_RTGEN = struct.Struct("=Bxxx")

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
NDA_VLAN = 5
NDA_MASTER = 9
# NETNSA_* (linux/net_namespace.h)
NETNSA_NSID = 1
NETNSA_FD = 3
# sockopts (linux/netlink.h)
SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12  # Linux 4.20+: dump requests' headers are checked, and their filters honoured

AF_BRIDGE = 7
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_LOWER_UP = 0x10000

OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
BRPORT_STATES = ("disabled", "listening", "learning", "forwarding", "blocking")


@dataclass(frozen=True, slots=True)
class RawAddress:
    index: int
    address: str  # "10.0.0.2/24", "fe80::1/64"


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
_STATS_FIELDS = len(LinkStats._fields)
# A link dump's ifinfomsg and IFLA_EXT_MASK (what links() sends).
_LINK_DUMP_REQUEST = (
    _IFINFO.pack(0, 0, 0, 0, 0) + NLA.pack(8, IFLA_EXT_MASK) + U32.pack(RTEXT_FILTER_SKIP_STATS)
)


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
    # A flat loop, not attrs(): a link carries ~50 attributes and only 8 matter here.
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
            name = cstr(data, start, stop)
        elif attr == IFLA_ADDRESS:
            mac = hex_mac(data[start:stop])
        elif attr == IFLA_MTU:
            mtu = U32.unpack_from(data, start)[0]
        elif attr == IFLA_LINK:
            link = S32.unpack_from(data, start)[0]
        elif attr == IFLA_MASTER:
            master = U32.unpack_from(data, start)[0]
        elif attr == IFLA_OPERSTATE:
            value = data[start]
            operstate = OPERSTATES[value] if value < len(OPERSTATES) else str(value)
        elif attr == IFLA_LINK_NETNSID:
            link_netnsid = S32.unpack_from(data, start)[0]
        elif attr == IFLA_STATS64:
            stats = parse_stats64(data, start, stop)
        elif attr == IFLA_LINKINFO:
            for info, istart, istop in attrs(data, start, stop):
                if info == IFLA_INFO_KIND:
                    kind = cstr(data, istart, istop)
                elif info == IFLA_INFO_SLAVE_KIND:
                    slave_kind = cstr(data, istart, istop)
                elif info == IFLA_INFO_SLAVE_DATA:
                    for sattr, sstart, _sstop in attrs(data, istart, istop):
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
    for attr, start, stop in attrs(data, offset + _IF_STATS_MSG.size, end):
        if attr == IFLA_STATS_LINK_64:
            return index, parse_stats64(data, start, stop)
    return None


def parse_address(data: bytes, offset: int, end: int) -> RawAddress | None:
    family, prefixlen, _flags, _scope, index = _IFADDR.unpack_from(data, offset)
    address = local = None
    for attr, start, stop in attrs(data, offset + _IFADDR.size, end):
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


def parse_bridge_fdb(data: bytes, offset: int, end: int) -> FdbEntry | None:
    """:func:`parse_fdb` for the bridges' own tables only: an entry without NDA_MASTER (a device's
    own address lists, ``self``; two of three at a thousand ports) is dropped before it is built.
    A flat loop, as in :func:`parse_link`: the walk parses thousands."""
    _family, port, state, flags, _type = NDMSG.unpack_from(data, offset)
    raw = master = vlan = None
    unpack = NLA.unpack_from
    pos = offset + NDMSG.size
    while pos + 4 <= end:
        length, attr = unpack(data, pos)
        if length < 4:
            break
        attr &= NLA_F_MASK
        if attr == NDA_LLADDR:
            raw = data[pos + 4 : pos + length]
        elif attr == NDA_MASTER:
            master = U32.unpack_from(data, pos + 4)[0]
        elif attr == NDA_VLAN:
            vlan = U16.unpack_from(data, pos + 4)[0]
        pos += (length + 3) & ~3
    if raw is None or master is None:
        return None
    return FdbEntry(port=port, mac=hex_mac(raw), master=master, vlan=vlan, state=state, flags=flags)


def parse_fdb(data: bytes, offset: int, end: int) -> FdbEntry | None:
    _family, port, state, flags, _type = NDMSG.unpack_from(data, offset)
    mac = None
    master = vlan = None
    for attr, start, stop in attrs(data, offset + NDMSG.size, end):
        if attr == NDA_LLADDR:
            mac = hex_mac(data[start:stop])
        elif attr == NDA_MASTER:
            master = U32.unpack_from(data, start)[0]
        elif attr == NDA_VLAN:
            vlan = U16.unpack_from(data, start)[0]
    if mac is None:
        return None
    return FdbEntry(port=port, mac=mac, master=master, vlan=vlan, state=state, flags=flags)


class RtnlSocket:
    """A NETLINK_ROUTE socket in the network namespace current at creation.

    ``sock``: a socket to speak over instead (tests hand one end of a datagram socketpair)."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
            )
            try:
                sock.bind((0, 0))
            except OSError:
                sock.close()
                raise
        self._sock = sock
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RtnlSocket:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _recv(self) -> bytes:
        return receive(self._sock, RECV_BYTES)[0]

    def _request(self, msg_type: int, flags: int, payload: bytes) -> Iterator[tuple[int, bytes, int, int]]:
        """Send one request; yield (type, buffer, body offset, body end) per reply (netlink_wire.replies)."""
        self._seq += 1
        self._sock.send(NLMSG.pack(NLMSG.size + len(payload), msg_type, flags, self._seq, 0) + payload)
        return replies(self._recv, self._seq, f"netlink request {msg_type}")

    def link(self, name: str | None = None, index: int = 0, stats: bool = False) -> Link | None:
        """One link by name or ifindex (a single RTM_GETLINK, no dump); None if there is none.

        Only ENODEV means "no such link"; any other error (EPERM, EINVAL, ...) is raised."""
        attrs = b""
        if name is not None:
            raw = name.encode() + b"\0"
            attrs = NLA.pack(4 + len(raw), IFLA_IFNAME) + raw + b"\0" * (-len(raw) % 4)
        payload = (
            _IFINFO.pack(0, 0, index, 0, 0)
            + attrs
            + NLA.pack(8, IFLA_EXT_MASK)
            + U32.pack(RTEXT_FILTER_SKIP_STATS)
        )
        try:
            for rtype, data, body, end in self._request(RTM_GETLINK, NLM_F_REQUEST, payload):
                if rtype == RTM_NEWLINK:
                    return parse_link(data, body, end, stats)
        except NetlinkError as error:
            if error.errno == errno.ENODEV:
                return None
            raise
        return None

    def bridge_fdb(self) -> list[FdbEntry]:
        """The bridges' own MAC tables: :meth:`fdb` without the entries that name no bridge."""
        return self.dump(RTM_GETNEIGH, RTM_NEWNEIGH, NDMSG.pack(AF_BRIDGE, 0, 0, 0, 0), parse_bridge_fdb)

    def links_holding(self, raw: bytes) -> list[Link]:
        """The links whose message carries these bytes (a MAC's six), out of one dump: only those
        are parsed (`which MAC` scans every namespace); the caller checks the field it meant."""
        return self.links_carrying((raw,))

    def links_carrying(self, needles: tuple[bytes, ...]) -> list[Link]:
        """:meth:`links_holding` for any of several byte strings, in one dump: a message that
        carries none of them is only checked for its framing, never parsed."""

        def parse(data: bytes, body: int, end: int) -> Link | None:
            for needle in needles:
                if data.find(needle, body, end) >= 0:
                    return parse_link(data, body, end)
            return None

        return self.dump(RTM_GETLINK, RTM_NEWLINK, _LINK_DUMP_REQUEST, parse)

    def dump(
        self, msg_type: int, reply_type: int, payload: bytes, parse: Callable[[bytes, int, int], T | None]
    ) -> list[T]:
        """A dump request, each reply of ``reply_type`` parsed; replies the parser rejects dropped.

        A dump the kernel marks interrupted (NLM_F_DUMP_INTR) is asked again, DUMP_TRIES times
        in all; then :class:`DumpInterrupted` is raised, never a partial list."""
        for _try in range(DUMP_TRIES):
            try:
                found = (
                    parse(data, body, end)
                    for rtype, data, body, end in self._request(msg_type, NLM_F_REQUEST | NLM_F_DUMP, payload)
                    if rtype == reply_type
                )
                return [item for item in found if item is not None]
            except DumpInterrupted:
                continue
        raise DumpInterrupted(DUMP_TRIES)

    def links(self, stats: bool = False) -> list[Link]:
        """Every link; with ``stats`` their IFLA_STATS64 counters decoded too.

        The counters are in every dump (RTEXT_FILTER_SKIP_STATS only drops SR-IOV VF
        stats): asking for them costs their decoding, nothing more."""
        if stats:
            return self.dump(RTM_GETLINK, RTM_NEWLINK, _LINK_DUMP_REQUEST, _parse_link_with_stats)
        return self.dump(RTM_GETLINK, RTM_NEWLINK, _LINK_DUMP_REQUEST, parse_link)

    def addresses(self, index: int = 0) -> list[RawAddress]:
        """Every address; with ``index``, only that link's (the kernel filters the dump by ifindex
        under strict checking, Linux 4.20+; older kernels send all, filtered here). A link gone
        meanwhile has none."""
        payload = _IFADDR.pack(0, 0, 0, 0, index)
        if not index:
            return self.dump(RTM_GETADDR, RTM_NEWADDR, payload, parse_address)
        strict = self.strict(True)
        try:
            found = self.dump(RTM_GETADDR, RTM_NEWADDR, payload, parse_address)
        except NetlinkError as error:
            if error.errno == errno.ENODEV:
                return []
            raise
        finally:
            if strict:
                self.strict(False)
        return [address for address in found if address.index == index]

    def strict(self, on: bool) -> bool:
        """Strict checking on or off for the next requests; False if the kernel has none."""
        try:
            self._sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, int(on))
        except OSError:
            return False
        return True

    def fdb(self, port: int = 0) -> list[FdbEntry]:
        """The bridges' MAC tables (AF_BRIDGE neighbours); with ``port``, only the entries of that
        device (a bridge port's, or a bridge's own), asked as `bridge fdb show brport` does: an
        ifinfomsg naming it, which every kernel since 4.12 filters by."""
        if not port:
            return self.dump(RTM_GETNEIGH, RTM_NEWNEIGH, NDMSG.pack(AF_BRIDGE, 0, 0, 0, 0), parse_fdb)
        payload = _IFINFO.pack(AF_BRIDGE, 0, port, 0, 0)
        return [e for e in self.dump(RTM_GETNEIGH, RTM_NEWNEIGH, payload, parse_fdb) if e.port == port]

    def nsid_of(self, ns_fd: int) -> int | None:
        """The nsid this socket's namespace has assigned to the namespace behind ns_fd.

        RTM_GETNSID never allocates one: None means "not assigned".
        """
        payload = _RTGEN.pack(socket.AF_UNSPEC) + NLA.pack(8, NETNSA_FD) + U32.pack(ns_fd)
        for rtype, data, body, end in self._request(RTM_GETNSID, NLM_F_REQUEST, payload):
            if rtype != RTM_NEWNSID:
                continue
            for attr, start, _stop in attrs(data, body + _RTGEN.size, end):
                if attr == NETNSA_NSID:
                    nsid = S32.unpack_from(data, start)[0]
                    return None if nsid < 0 else nsid
        return None

    def nsid_alive(self, nsid: int) -> bool:
        """Whether the nsid this socket's namespace assigned still names a live namespace.

        RTM_GETNSID by NETNSA_NSID (Linux 4.20) takes a reference to the namespace it names, which
        a namespace being destroyed no longer gives (its nsid stays assigned until the kernel's
        cleanup reaches it, its veths a little longer): ENOENT then, as for an nsid not assigned.
        Nothing is allocated."""
        payload = _RTGEN.pack(socket.AF_UNSPEC) + NLA.pack(8, NETNSA_NSID) + S32.pack(nsid)
        try:
            replies = self._request(RTM_GETNSID, NLM_F_REQUEST, payload)
            return any(rtype == RTM_NEWNSID for rtype, *_ in replies)
        except NetlinkError as error:
            if error.errno == errno.ENOENT:
                return False
            raise

    def stats(self) -> dict[int, LinkStats]:
        """Every link's counters only (RTM_GETSTATS, IFLA_STATS_LINK_64), by ifindex: about a
        tenth of a full link dump to read and parse, for `top`'s rounds between link dumps."""
        payload = _IF_STATS_MSG.pack(0, 0, 0, 0, 1 << (IFLA_STATS_LINK_64 - 1))
        return dict(self.dump(RTM_GETSTATS, RTM_NEWSTATS, payload, parse_stats_msg))
