"""The host's netlink event socket: link and address changes in every namespace with an nsid.

One NETLINK_ROUTE socket, made in the host namespace, joins the groups RTNLGRP_LINK,
RTNLGRP_IPV4_IFADDR and RTNLGRP_IPV6_IFADDR (and RTNLGRP_NEIGH, for the bridges' MAC tables,
when asked) and sets ``NETLINK_LISTEN_ALL_NSID``: the
kernel then also delivers the events of every namespace the host has an nsid for
(it needs CAP_NET_BROADCAST), each with that nsid as ``SOL_NETLINK`` ancillary data;
events of the host itself carry none. Namespaces without an nsid in the host send
nothing here: `watch` finds them by rescanning processes and the mount table.

Listening allocates nothing and changes nothing; no nsid is ever assigned here.

A veth end moved out of a namespace arrives as ``RTM_DELLINK`` with
``IFLA_NEW_NETNSID`` (relative to the namespace it left) and ``IFLA_NEW_IFINDEX``.
A full receive buffer loses events and is reported as ``overflow`` (``ENOBUFS``): the
caller then resynchronises with a full walk. A datagram that arrives truncated
(``MSG_TRUNC``) or does not frame (:mod:`vethpeer.netlink_wire` checks every length) is
lost events too, and reported the same way, never read as fewer events. The buffer is raised to 4 MiB first.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

from ..netlink import IFLA_IFNAME
from ..netlink_wire import S32, NetlinkError, attrs, cstr, frames, receive

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_LISTEN_ALL_NSID = 8
SO_RCVBUFFORCE = 33
RTNLGRP_LINK = 1
RTNLGRP_NEIGH = 3
RTNLGRP_IPV4_IFADDR = 5
RTNLGRP_IPV6_IFADDR = 9
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR = 16, 17, 20, 21
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
AF_BRIDGE = 7
IFLA_NEW_NETNSID = 45
IFLA_NEW_IFINDEX = 49
RCVBUF = 4 << 20
RECV_BYTES = 1 << 16
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")
_TYPES = {
    RTM_NEWLINK: "newlink",
    RTM_DELLINK: "dellink",
    RTM_NEWADDR: "newaddr",
    RTM_DELADDR: "deladdr",
    RTM_NEWNEIGH: "fdb",
    RTM_DELNEIGH: "fdb",
}


@dataclass(frozen=True, slots=True)
class KernelEvent:
    """One notification: where it happened (``nsid`` as the host calls that namespace, None:
    the host itself), what (``type``: newlink, dellink, newaddr, deladdr; fdb: a bridge's MAC
    table learned or forgot an address) and to which ifindex."""

    type: str
    nsid: int | None
    index: int
    ifname: str | None = None
    new_nsid: int | None = None  # dellink of a move: the destination, as the source namespace calls it
    new_index: int | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    events: tuple[KernelEvent, ...]
    overflow: bool = False  # ENOBUFS: some events were lost


def parse(data: bytes, nsid: int | None) -> list[KernelEvent]:
    """Every link or address notification in one datagram (netlink_wire.frames: checked)."""
    found = []
    for rtype, _flags, _seq, body, end in frames(data):
        kind = _TYPES.get(rtype)
        if kind is None:
            continue
        if rtype in (RTM_NEWNEIGH, RTM_DELNEIGH):
            family, port, _state, _flags, _type = _NDMSG.unpack_from(data, body)
            if family == AF_BRIDGE:  # ARP and NDP neighbours are not ours to follow
                found.append(KernelEvent(kind, nsid, port))
            continue
        if rtype in (RTM_NEWADDR, RTM_DELADDR):
            found.append(KernelEvent(kind, nsid, _IFADDR.unpack_from(data, body)[4]))
            continue
        index = _IFINFO.unpack_from(data, body)[2]
        ifname = new_nsid = new_index = None
        for attr, start, stop in attrs(data, body + _IFINFO.size, end):
            if attr == IFLA_IFNAME:
                ifname = cstr(data, start, stop)
            elif attr == IFLA_NEW_NETNSID:
                new_nsid = S32.unpack_from(data, start)[0]
            elif attr == IFLA_NEW_IFINDEX:
                new_index = S32.unpack_from(data, start)[0]
        found.append(KernelEvent(kind, nsid, index, ifname, new_nsid, new_index))
    return found


class EventSocket:
    """The listening socket; make it in the host namespace (the walker's home or ``inside``)."""

    def __init__(self, rcvbuf: int = RCVBUF, *, fdb: bool = False) -> None:
        """``fdb``: the neighbour group too, for the bridges' MAC tables (learned, aged out)."""
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        try:
            for option, value in ((SO_RCVBUFFORCE, rcvbuf), (socket.SO_RCVBUF, rcvbuf)):
                try:
                    self._sock.setsockopt(socket.SOL_SOCKET, option, value)
                    break
                except OSError:
                    continue
            self._sock.bind((0, 0))
            groups = (
                RTNLGRP_LINK,
                RTNLGRP_IPV4_IFADDR,
                RTNLGRP_IPV6_IFADDR,
                *((RTNLGRP_NEIGH,) if fdb else ()),
            )
            for group in groups:
                self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
            self._sock.setsockopt(SOL_NETLINK, NETLINK_LISTEN_ALL_NSID, 1)
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def drain(self) -> Batch:
        """Everything queued now (never blocks)."""
        found: list[KernelEvent] = []
        overflow = False
        space = socket.CMSG_SPACE(4)
        while True:
            try:
                data, ancillary = receive(self._sock, RECV_BYTES, space)
            except BlockingIOError:
                break
            except NetlinkError:  # a datagram truncated (MSG_TRUNC): its events are lost
                overflow = True
                continue
            except OSError as error:
                if error.errno == errno.ENOBUFS:
                    overflow = True
                    continue
                raise
            nsid = None
            for level, kind, value in ancillary:
                if level == SOL_NETLINK and kind == NETLINK_LISTEN_ALL_NSID and len(value) >= 4:
                    nsid = S32.unpack_from(value)[0]
            try:
                found.extend(parse(data, nsid))
            except NetlinkError:  # a malformed datagram (netlink_wire.BadReply): lost as well
                overflow = True
        return Batch(tuple(found), overflow)
