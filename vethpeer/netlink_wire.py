"""The rtnetlink wire: framing, attributes and errors shared by every netlink reader here.

:mod:`vethpeer.netlink` (links, addresses, FDB, nsids), :mod:`vethpeer.netlink_routes`
(routes, neighbours) and :mod:`vethpeer.live.events` (the event socket) all read
datagrams through :func:`receive` and cut them into messages with :func:`frames`; the
request/reply logic of a dump is :func:`replies`. Nothing here trusts the other side:

* a datagram the buffer could not hold (``MSG_TRUNC``), a message shorter than its header
  or longer than what is left of the datagram, are :class:`BadReply` (``EBADMSG``), never
  a quiet end of the dump;
* the errno an ``NLMSG_DONE`` carries (a dump that failed partway) is raised as
  :class:`NetlinkError`, like the one of ``NLMSG_ERROR``;
* a dump the kernel marks ``NLM_F_DUMP_INTR`` (the tables changed while it was read:
  entries may be missing or twice) is read to its end and then raised as
  :class:`DumpInterrupted`, for the caller to ask again;
* a reply may span several datagrams: only ``NLMSG_DONE`` (or the end of a reply without
  ``NLM_F_MULTI``) ends it; stray messages of an earlier request are skipped by sequence.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

T = TypeVar("T")

# nlmsghdr, its types and flags (linux/netlink.h)
NLMSG = struct.Struct("=IHHII")  # length, type, flags, seq, pid
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300

NLA = struct.Struct("=HH")
NLA_F_MASK = 0x3FFF  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER
U16 = struct.Struct("=H")
U32 = struct.Struct("=I")
S32 = struct.Struct("=i")

# ndmsg (linux/neighbour.h): the FDB (AF_BRIDGE) and the ARP / NDP tables share it
NDMSG = struct.Struct("=BxxxiHBB")
NDA_LLADDR = 2

DUMP_TRIES = 5  # an interrupted dump is asked again this many times in all


class NetlinkError(OSError):
    """The kernel answered a request with an error, or with something unreadable."""


class DumpInterrupted(NetlinkError):
    """The dump was interrupted by changes (``NLM_F_DUMP_INTR``) every time it was asked."""

    def __init__(self, tries: int) -> None:
        super().__init__(errno.EINTR, f"dump interrupted by changes {tries} times in a row")


class BadReply(NetlinkError):
    """A datagram or message that does not hold together (truncated, wrong lengths)."""

    def __init__(self, what: str) -> None:
        super().__init__(errno.EBADMSG, f"bad netlink reply: {what}")


class Dumps(Protocol):
    """What asks the kernel for a dump (:class:`vethpeer.netlink.RtnlSocket`)."""

    def dump(
        self, msg_type: int, reply_type: int, payload: bytes, parse: Callable[[bytes, int, int], T | None]
    ) -> list[T]: ...


_MSG_TRUNC = int(socket.MSG_TRUNC)  # an int: socket's IntFlag ``&`` costs ~2 us a datagram


def receive(sock: socket.socket, size: int, ancillary: int = 0) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """One datagram and its ancillary data; :class:`BadReply` if ``size`` could not hold it."""
    data, ancdata, flags, _address = sock.recvmsg(size, ancillary)
    if flags & _MSG_TRUNC:
        raise BadReply(f"datagram larger than the {size}-byte buffer (MSG_TRUNC)")
    return data, ancdata


def frames(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, seq, body offset, body end) of each message in one datagram, checked."""
    unpack = NLMSG.unpack_from
    header = NLMSG.size
    size = len(data)
    offset = 0
    while offset < size:
        if offset + header > size:
            raise BadReply(f"{size - offset} stray bytes after the last message")
        length, rtype, flags, seq, _pid = unpack(data, offset)
        if length < header:
            raise BadReply(f"nlmsg_len {length} shorter than its header")
        if offset + length > size:
            raise BadReply(f"nlmsg_len {length} runs past the datagram ({size - offset} bytes left)")
        yield rtype, flags, seq, offset + header, offset + length
        offset += (length + 3) & ~3


def _errno(data: bytes, body: int, end: int) -> int:
    """The errno an NLMSG_ERROR or NLMSG_DONE carries (0: none, an ack or a clean end)."""
    if end - body < S32.size:
        raise BadReply("error or done message without its errno")
    return -int(S32.unpack_from(data, body)[0])


def replies(recv: Callable[[], bytes], seq: int, what: str) -> Iterator[tuple[int, bytes, int, int]]:
    """(type, datagram, body offset, body end) of each reply to request ``seq``, to its end."""
    interrupted = False
    while True:
        data = recv()
        for rtype, flags, rseq, body, end in frames(data):
            if rseq != seq:
                continue  # what is left of an earlier request
            interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
            if rtype in (NLMSG_DONE, NLMSG_ERROR):
                code = _errno(data, body, end)
                if code:
                    raise NetlinkError(code, f"{what}: {os.strerror(code)}")
                if interrupted:
                    raise DumpInterrupted(1)
                return
            yield rtype, data, body, end
            if not flags & NLM_F_MULTI:
                return  # a single answer (RTM_GETLINK of one link, RTM_GETNSID)


def attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield (type, start, stop) for each attribute between offset and end."""
    unpack = NLA.unpack_from
    while offset + 4 <= end:
        length, kind = unpack(data, offset)
        if length < 4:
            return
        yield kind & NLA_F_MASK, offset + 4, offset + length
        offset += (length + 3) & ~3


def cstr(data: bytes, start: int, stop: int) -> str:
    """A name as the kernel has it: bytes that are not UTF-8 kept by ``surrogateescape``
    (as ``os.fsdecode`` does), so the name round-trips; text output shows them escaped."""
    return data[start:stop].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def hex_mac(data: bytes) -> str:
    return data.hex(":")
