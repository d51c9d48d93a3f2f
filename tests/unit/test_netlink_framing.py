"""The netlink framing on constructed bytes: what a kernel (or a broken one) can send.

A datagram socketpair stands in for the kernel: the replies are queued on its other end
before the request (RtnlSocket numbers its requests 1, 2, ...), so no thread is needed.
The link bodies are the recorded ones of test_netlink_decoder.py (kernel 6.18).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from vethpeer import netlink, walk
from vethpeer.live import events
from vethpeer.model import Namespace, NsKey
from vethpeer.netlink import RtnlSocket
from vethpeer.netlink_wire import (
    DUMP_TRIES,
    NLM_F_DUMP_INTR,
    NLM_F_MULTI,
    NLMSG_DONE,
    NLMSG_ERROR,
    BadReply,
    DumpInterrupted,
    NetlinkError,
    frames,
)
from vethpeer.netns import Discovery

RECORDED = json.loads((Path(__file__).parent / "data" / "links-vpm-rec-a.json").read_text())
LINKS = [bytes.fromhex(text) for text in RECORDED["skip_stats"]]  # lo, eth0, br0, v2, v1


def nlmsg(rtype: int, body: bytes, *, flags: int = NLM_F_MULTI, seq: int = 1) -> bytes:
    padded = body + b"\0" * (-len(body) % 4)
    return struct.pack("=IHHII", 16 + len(body), rtype, flags, seq, 0) + padded


def done(seq: int = 1, code: int = 0, flags: int = NLM_F_MULTI) -> bytes:
    return nlmsg(NLMSG_DONE, struct.pack("=i", -code), flags=flags, seq=seq)


def error(seq: int, code: int) -> bytes:
    return nlmsg(NLMSG_ERROR, struct.pack("=i", -code) + b"\0" * 16, flags=0, seq=seq)


def newlink(i: int, *, seq: int = 1, flags: int = NLM_F_MULTI) -> bytes:
    return nlmsg(netlink.RTM_NEWLINK, LINKS[i], flags=flags, seq=seq)


class FakeKernel:
    """The other end of an RtnlSocket: datagrams queued for it, requests read back."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock = RtnlSocket(self.ours)
        self.theirs.setblocking(False)

    def queue(self, *datagrams: bytes) -> None:
        for datagram in datagrams:
            self.theirs.send(datagram)

    def requests(self) -> list[tuple[int, int, int]]:
        """(type, flags, seq) of each request the socket sent."""
        found = []
        while True:
            try:
                data = self.theirs.recv(1 << 16)
            except BlockingIOError:
                return found
            found.append(struct.unpack_from("=IHHII", data)[1:4])

    def close(self) -> None:
        self.sock.close()
        self.theirs.close()


@pytest.fixture
def kernel() -> Iterator[FakeKernel]:
    fake = FakeKernel()
    yield fake
    fake.close()


def test_a_dump_split_over_several_datagrams(kernel: FakeKernel) -> None:
    kernel.queue(newlink(0), newlink(1) + newlink(2), newlink(3) + newlink(4), done())
    assert [link.name for link in kernel.sock.links()] == ["lo", "eth0", "br0", "v2", "v1"]


def test_a_single_reply_after_a_stray_datagram(kernel: FakeKernel) -> None:
    """The reply of a request may come after what is left of an earlier one (another seq)."""
    kernel.queue(newlink(2, seq=0), newlink(1, flags=0))
    link = kernel.sock.link("eth0")
    assert link is not None and link.name == "eth0"


def test_an_interrupted_dump_is_asked_again(kernel: FakeKernel) -> None:
    """NLM_F_DUMP_INTR: the tables changed meanwhile; the first answer is not taken."""
    intr = NLM_F_MULTI | NLM_F_DUMP_INTR
    kernel.queue(newlink(0), newlink(1, flags=intr) + newlink(1, flags=intr), done(flags=intr))
    kernel.queue(newlink(0, seq=2), newlink(1, seq=2) + done(seq=2))
    assert [link.name for link in kernel.sock.links()] == ["lo", "eth0"]
    assert [seq for _type, _flags, seq in kernel.requests()] == [1, 2]


def test_the_interrupted_flag_on_done_alone_counts(kernel: FakeKernel) -> None:
    kernel.queue(newlink(0), done(flags=NLM_F_MULTI | NLM_F_DUMP_INTR), newlink(3, seq=2), done(seq=2))
    assert [link.name for link in kernel.sock.links()] == ["v2"]


def test_a_dump_interrupted_every_time_is_an_error_not_a_partial_answer(kernel: FakeKernel) -> None:
    for seq in range(1, DUMP_TRIES + 1):
        kernel.queue(newlink(0, seq=seq), done(seq, flags=NLM_F_MULTI | NLM_F_DUMP_INTR))
    with pytest.raises(DumpInterrupted) as raised:
        kernel.sock.links()
    assert raised.value.errno == errno.EINTR and f"{DUMP_TRIES} times" in str(raised.value.strerror)
    assert len(kernel.requests()) == DUMP_TRIES


def test_the_errno_in_done_is_raised(kernel: FakeKernel) -> None:
    """A dump that failed partway ends with NLMSG_DONE carrying the errno: not a success."""
    kernel.queue(newlink(0) + newlink(1), done(code=errno.EMSGSIZE))
    with pytest.raises(NetlinkError) as raised:
        kernel.sock.links()
    assert raised.value.errno == errno.EMSGSIZE


def test_a_truncated_datagram_is_an_error(kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netlink, "RECV_BYTES", 64)
    kernel.queue(newlink(0) + newlink(1), done())  # more than 64 bytes: MSG_TRUNC
    with pytest.raises(BadReply, match="MSG_TRUNC"):
        kernel.sock.links()


def test_a_message_longer_than_its_datagram_is_an_error(kernel: FakeKernel) -> None:
    whole = newlink(0) + newlink(1)
    kernel.queue(whole[:-8], done())  # eth0's nlmsg_len runs past the end
    with pytest.raises(BadReply, match="runs past"):
        kernel.sock.links()


def test_a_short_nlmsg_len_is_an_error_not_the_end_of_the_dump(kernel: FakeKernel) -> None:
    short = struct.pack("=IHHII", 8, netlink.RTM_NEWLINK, NLM_F_MULTI, 1, 0) + b"\0" * 8
    kernel.queue(newlink(0) + short + newlink(1), done())
    with pytest.raises(BadReply, match="shorter than its header"):
        kernel.sock.links()


def test_stray_bytes_after_the_last_message_are_an_error() -> None:
    with pytest.raises(BadReply, match="stray"):
        list(frames(newlink(0) + b"\0" * 8))


def test_link_none_only_for_no_such_device(kernel: FakeKernel) -> None:
    kernel.queue(error(1, errno.ENODEV), error(2, errno.EPERM), error(3, errno.EINVAL))
    assert kernel.sock.link("vqd-none") is None
    for code in (errno.EPERM, errno.EINVAL):
        with pytest.raises(NetlinkError) as raised:
            kernel.sock.link("vqd-x")
        assert raised.value.errno == code


def test_an_ack_ends_a_request(kernel: FakeKernel) -> None:
    kernel.queue(error(1, 0))
    assert kernel.sock.nsid_of(0) is None


# ------------------------------------------- links_carrying: the same framing, parsed where a needle is


def _mac(i: int) -> bytes:
    """The six bytes of recorded link i's MAC, read by the full parser."""
    kernel = FakeKernel()
    try:
        kernel.queue(newlink(i, flags=0))
        link = kernel.sock.link(index=1)
        assert link is not None and link.mac is not None
        return bytes.fromhex(link.mac.replace(":", ""))
    finally:
        kernel.close()


def test_links_carrying_parses_only_the_messages_that_carry_a_needle(kernel: FakeKernel) -> None:
    kernel.queue(newlink(0), newlink(1) + newlink(2), newlink(3) + newlink(4), done())
    found = kernel.sock.links_carrying((_mac(3), b"no such bytes"))
    assert [link.name for link in found] == ["v2"]
    kernel.queue(newlink(0, seq=2) + newlink(1, seq=2), done(seq=2))
    assert kernel.sock.links_carrying((b"no such bytes",)) == []


def test_links_carrying_and_links_agree_on_every_link(kernel: FakeKernel) -> None:
    """What is parsed out of a filtered dump is what the full dump parses (lo's MAC, six zero
    bytes, is in every message: not a needle here). Only lo, eth0 and br0 are sent."""
    kernel.queue(newlink(0), newlink(1) + newlink(2), newlink(3) + newlink(4), done())
    every = kernel.sock.links()
    for i, link in enumerate(every[1:], start=1):
        kernel.queue(newlink(0, seq=1 + i) + newlink(1, seq=1 + i), newlink(2, seq=1 + i), done(seq=1 + i))
        held = [other for other in every[:3] if other.mac == link.mac]  # br0 took v2's MAC
        assert kernel.sock.links_carrying((_mac(i),)) == held


def test_links_carrying_skips_stray_replies_and_asks_again_when_interrupted(kernel: FakeKernel) -> None:
    intr = NLM_F_MULTI | NLM_F_DUMP_INTR
    kernel.queue(newlink(3, seq=0), newlink(3, flags=intr), done(flags=intr))
    kernel.queue(newlink(3, seq=2) + done(seq=2))
    assert [link.name for link in kernel.sock.links_carrying((_mac(3),))] == ["v2"]
    assert [seq for _type, _flags, seq in kernel.requests()] == [1, 2]


def test_links_carrying_raises_what_a_dump_raises(kernel: FakeKernel) -> None:
    kernel.queue(newlink(3) + newlink(1), done(code=errno.EMSGSIZE))
    with pytest.raises(NetlinkError) as raised:
        kernel.sock.links_carrying((_mac(3),))
    assert raised.value.errno == errno.EMSGSIZE
    whole = newlink(0, seq=2) + newlink(3, seq=2)
    kernel.queue(whole[:-8], done(seq=2))
    with pytest.raises(BadReply, match="runs past"):
        kernel.sock.links_carrying((_mac(3),))
    short = struct.pack("=IHHII", 8, netlink.RTM_NEWLINK, NLM_F_MULTI, 3, 0) + b"\0" * 8
    kernel.queue(newlink(0, seq=3) + short, done(seq=3))
    with pytest.raises(BadReply, match="shorter than its header"):
        kernel.sock.links_carrying((_mac(3),))
    for seq in range(4, 4 + DUMP_TRIES):
        kernel.queue(newlink(3, seq=seq), done(seq, flags=NLM_F_MULTI | NLM_F_DUMP_INTR))
    with pytest.raises(DumpInterrupted):
        kernel.sock.links_carrying((_mac(3),))


# ---------------------------------------------------------------- the event socket


def test_events_parse_checks_lengths() -> None:
    short = struct.pack("=IHHII", 4, events.RTM_NEWLINK, 0, 0, 0)
    with pytest.raises(BadReply):
        events.parse(newlink(1, seq=0) + short, None)


def test_a_malformed_or_truncated_event_datagram_is_lost_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events that cannot be read are reported as an overflow: `watch` resynchronises."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    listener = events.EventSocket.__new__(events.EventSocket)
    listener._sock = ours
    try:
        theirs.send(nlmsg(events.RTM_NEWLINK, LINKS[1], flags=0, seq=0))
        batch = listener.drain()
        assert [(e.type, e.index, e.ifname) for e in batch.events] == [("newlink", 2, "eth0")]
        assert not batch.overflow
        theirs.send(nlmsg(events.RTM_NEWLINK, LINKS[1], flags=0, seq=0)[:-8])  # nlmsg_len runs past
        assert listener.drain().overflow
        monkeypatch.setattr(events, "RECV_BYTES", 32)
        theirs.send(nlmsg(events.RTM_NEWLINK, LINKS[1], flags=0, seq=0))  # MSG_TRUNC
        assert listener.drain().overflow
    finally:
        ours.close()
        theirs.close()


# ---------------------------------------------------------------- what the walk makes of them


def test_a_namespace_whose_dump_stays_interrupted_is_a_view_with_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The walk goes on; the namespace says why it has no links (json: views[].error)."""
    host = Namespace(NsKey(4, 1), is_host=True)
    busy = Namespace(NsKey(4, 2), mounts=("/run/netns/vqd-busy",))
    fakes: list[FakeKernel] = []

    def socket_in(ns: Namespace, _home: int, _proc: str = "/proc") -> tuple[int, RtnlSocket]:
        fake = FakeKernel()
        fakes.append(fake)
        if ns is busy:
            for seq in range(1, DUMP_TRIES + 1):
                fake.queue(newlink(0, seq=seq), done(seq, flags=NLM_F_MULTI | NLM_F_DUMP_INTR))
        else:
            fake.queue(newlink(0), done(), done(seq=2))  # links, then addresses
        return os.open(os.devnull, os.O_RDONLY), fake.sock

    monkeypatch.setattr(walk, "socket_in", socket_in)
    discovery = Discovery(host.key, "test", (host, busy), 0, 0)
    try:
        snap = walk._snapshot(discovery, -1, False, None, "/proc", False)
    finally:
        for fake in fakes:
            fake.theirs.close()
    views = {view.ns.key: view for view in snap.views}
    assert [link.name for link in views[host.key].links] == ["lo"] and views[host.key].error is None
    assert views[busy.key].links == () and "interrupted by changes" in str(views[busy.key].error)
