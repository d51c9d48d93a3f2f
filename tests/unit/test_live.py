"""The live views' pure steps on hand-made snapshots: rates, the event diff, the screen's keys,
the event parser and the walker's name memory. No kernel here: the values are built by hand."""

from __future__ import annotations

import operator
import struct
from dataclasses import replace

import pytest

from vethpeer.collect import Naming
from vethpeer.correlate import correlate
from vethpeer.live import carry, changes, events, rates, view
from vethpeer.model import (
    Claim,
    Link,
    LinkStats,
    Namespace,
    NsKey,
    NsView,
    Report,
    Snapshot,
    Workload,
    WorkloadKind,
)
from vethpeer.netlink import IFF_UP
from vethpeer.sources import Context
from vethpeer.sources.kernel import KernelNames, names_of

from .builders import UP, answered

HOST = NsKey(4, 1)


def ns(ino: int, name: str | None = None) -> Namespace:
    return Namespace(NsKey(4, ino), is_host=ino == 1, mounts=(f"/run/netns/{name}",) if name else ())


def pod_pair(
    ino: int,
    host_index: int,
    *,
    stats: LinkStats | None = None,
    peer_stats: LinkStats | None = None,
    **inside: object,
) -> tuple[Link, Link]:
    """eth0 (ifindex 2) in namespace ``ino`` <-> vethN (host_index) in the host, nsids 0 both ways."""
    eth0 = Link(
        index=2,
        name="eth0",
        flags=UP,
        kind="veth",
        mac=f"02:00:00:00:00:{ino:02x}",
        mtu=1500,
        link=host_index,
        link_netnsid=0,
        stats=stats,
    )
    eth0 = replace(eth0, **inside)  # type: ignore[arg-type]
    veth = Link(
        index=host_index,
        name=f"veth{ino}",
        flags=UP,
        kind="veth",
        mac=f"0a:00:00:00:00:{ino:02x}",
        mtu=1500,
        link=2,
        link_netnsid=ino,
        stats=peer_stats,
    )
    return eth0, veth


def report(pods: dict[int, tuple[Link, Link]], claims: tuple[Claim, ...] = ()) -> Report:
    host_links = [veth for _eth0, veth in pods.values()]
    views = [NsView(ns(1), tuple(host_links), {ino: NsKey(4, ino) for ino in pods})]
    views += [NsView(ns(ino, f"n{ino}"), (eth0,), {0: HOST}) for ino, (eth0, _veth) in pods.items()]
    snap = Snapshot(host=HOST, views=tuple(views))
    named = tuple(c for view in views[1:] for c in names_of(view.ns))
    return correlate(snap, [answered("kernel", named + claims)])


# ---------------------------------------------------------------- rates


def test_rates_in_the_workloads_directions_with_the_peer_in_its_own() -> None:
    old = report(
        {5: pod_pair(5, 10, stats=LinkStats(rx_bytes=1000, tx_bytes=0), peer_stats=LinkStats(tx_bytes=1000))}
    )
    new = report(
        {
            5: pod_pair(
                5,
                10,
                stats=LinkStats(rx_bytes=3000, tx_bytes=500, tx_dropped=4),
                peer_stats=LinkStats(tx_bytes=3000, rx_bytes=500),
            )
        }
    )
    found = rates.rates(new.rows, rates.sample(old, 10.0), rates.sample(new, 12.0))
    (only,) = found
    assert only.own is not None and only.peer is not None
    assert (only.own.bytes.rx, only.own.bytes.tx) == (1000.0, 250.0)
    assert only.own.dropped.tx == 2.0
    assert (only.peer.bytes.tx, only.peer.bytes.rx) == (1000.0, 250.0)  # the host side: mirrored
    assert not only.own.reset


def test_reset_new_and_vanished_interfaces() -> None:
    old = report(
        {5: pod_pair(5, 10, stats=LinkStats(rx_bytes=9000)), 6: pod_pair(6, 11, stats=LinkStats(rx_bytes=1))}
    )
    new = report(
        {5: pod_pair(5, 10, stats=LinkStats(rx_bytes=100)), 7: pod_pair(7, 12, stats=LinkStats(rx_bytes=5))}
    )
    found = {
        r.row.end.workload.label: r
        for r in rates.rates(new.rows, rates.sample(old, 0.0), rates.sample(new, 1.0))
    }
    assert set(found) == {"netns/n5", "netns/n7"}  # n6 vanished: no row
    assert found["netns/n5"].own is not None and found["netns/n5"].own.reset
    assert found["netns/n5"].own.bytes.rx == 100.0  # counted from zero after the reset
    assert found["netns/n7"].new and found["netns/n7"].own is None


def test_a_namespace_that_died_mid_sample_has_no_row() -> None:
    old = report({5: pod_pair(5, 10, stats=LinkStats(rx_bytes=1))})
    dead = NsView(ns(5, "n5"), error="network namespace 5 is gone")
    snap = Snapshot(host=HOST, views=(NsView(ns(1), ()), dead))
    new = correlate(snap, [])
    assert rates.rates(new.rows, rates.sample(old, 0.0), rates.sample(new, 1.0)) == []
    with pytest.raises(ValueError):
        rates.rates(new.rows, rates.sample(old, 1.0), rates.sample(new, 1.0))


def test_stats64_by_length_reads_what_an_old_kernel_sends() -> None:
    from vethpeer.netlink import parse_stats64

    data = struct.pack("=4Q", 1, 2, 3, 4)  # rx/tx packets, rx/tx bytes only
    assert parse_stats64(data, 0, len(data)) == LinkStats(rx_packets=1, tx_packets=2, rx_bytes=3, tx_bytes=4)


# ---------------------------------------------------------------- the event diff


def kinds(found: list[changes.Event]) -> list[str]:
    return [e.kind for e in found]


def test_creation_and_deletion_once_each_with_workload_and_peer() -> None:
    empty, one = report({}), report({5: pod_pair(5, 10)})
    created = changes.diff(empty, one)
    assert kinds(created) == ["netns-appeared", "created"]
    assert created[1].message == "netns/n5 eth0 <-> veth5: veth created"
    gone = changes.diff(one, empty)
    assert kinds(gone) == ["deleted", "netns-gone"]
    assert gone[0].message == "netns/n5 eth0 <-> veth5: veth deleted"
    assert changes.diff(one, one) == []


def test_link_changes_on_both_ends() -> None:
    before = report({5: pod_pair(5, 10)})
    eth0, veth = pod_pair(5, 10, flags=IFF_UP, mtu=9000, addresses=("10.199.1.2/24",))
    after = report({5: (eth0, veth)})
    found = changes.diff(before, after)
    assert kinds(found) == ["carrier-off", "mtu", "address-added"]
    assert found[0].message == "netns/n5 eth0 <-> veth5: carrier off"
    bridge = Link(index=30, name="cni0", kind="bridge", flags=UP)
    enslaved = report({5: pod_pair(5, 10)})
    snap = enslaved.snapshot
    host = snap.views[0]
    moved_veth = replace(host.links[0], master=30)
    views = (NsView(host.ns, (moved_veth, bridge), host.nsids), *snap.views[1:])
    kernel = answered("kernel", names_of(views[1].ns))
    on_bridge = correlate(Snapshot(host=HOST, views=views), [kernel])
    found = changes.diff(before, on_bridge)
    assert [e.message for e in found] == ["netns/n5 eth0 <-> veth5 (cni0): veth5 enslaved to cni0"]


def test_a_move_reported_by_the_kernel_is_one_event() -> None:
    eth0, veth = pod_pair(5, 10)
    before = report({5: (eth0, veth)})
    moved_eth0 = replace(eth0, index=3, mac="02:99:00:00:00:01")
    after = report({6: (moved_eth0, replace(veth, link=3, link_netnsid=6))})
    hint = changes.Move(NsKey(4, 5), 2, NsKey(4, 6), 3)
    found = changes.diff(before, after, [hint])
    assert kinds(found) == ["netns-appeared", "moved", "netns-gone"]
    assert found[1].message == "netns/n6 eth0 <-> veth5: moved from netns/n5 (eth0, ifindex 2)"
    # without the kernel's word (and with a new MAC) it is a deletion and a creation
    assert kinds(changes.diff(before, after)) == ["netns-appeared", "created", "deleted", "netns-gone"]


def test_a_better_name_is_a_named_event() -> None:
    plain = report({5: pod_pair(5, 10)})
    web = Claim(NsKey(4, 5), Workload(WorkloadKind.DOCKER, "web", id="abc", source="docker"), 40)
    named = report({5: pod_pair(5, 10)}, (web,))
    found = changes.diff(plain, named)
    assert [e.message for e in found] == ["docker/web: named (was netns/n5)"]


def test_resync_marks_every_event() -> None:
    found = changes.diff(report({}), report({5: pod_pair(5, 10)}), resync=True)
    assert found and all(e.resync for e in found)


# ---------------------------------------------------------------- names kept when a runtime forgets


def test_a_lingering_namespace_keeps_its_runtime_name() -> None:
    key = NsKey(4, 5)
    web = Claim(key, Workload(WorkloadKind.DOCKER, "web", source="docker"), 40)
    pid = Claim(key, Workload(WorkloadKind.PROCESS, "pid/42 (docker-init)", source="kernel"), 10)
    old = Naming(
        (
            answered("kernel", (pid,)),
            answered("docker", (web,)),
        )
    )
    new = Naming(
        (
            answered("kernel", (pid,)),
            answered("docker"),
        )
    )
    kept = carry.remember(old, new, {key})
    assert kept.results[1].claims == (web,)
    assert carry.remember(old, new, set()).results[1].claims == ()  # gone: forgotten


# ---------------------------------------------------------------- the screen's keys


def test_keys() -> None:
    v = view.View()
    v = view.press(v, "s")
    assert v.sort == "rx"
    v = view.press(v, "d")
    assert v.sort == "drops"
    for key in ["/", "w", "e", "b", "x", "backspace", "enter"]:
        v = view.press(v, key)
    assert v.filter == "web" and not v.editing
    v = view.press(v, "q")  # not typed into the filter any more: quits
    assert v.quit
    assert view.press(view.press(view.View(), "p"), " ").paused is False
    assert view.press(view.View(filter="x"), "escape").filter == ""


def test_filter_matches_workload_interface_and_host_device() -> None:
    one = report({5: pod_pair(5, 10, stats=LinkStats())})
    sample = rates.sample(one, 0.0)
    found = rates.rates(one.rows, sample, rates.Sample(1.0, sample.counters))
    assert view.shown(found, view.View(filter="VETH5"))
    assert view.shown(found, view.View(filter="n5"))
    assert not view.shown(found, view.View(filter="nothing"))


# ---------------------------------------------------------------- the event parser


def _nlmsg(rtype: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), rtype, 0, 0, 0) + body


def _attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def test_parse_a_move_and_an_address() -> None:
    link = struct.pack("=BxHiII", 0, 1, 7, 0, 0) + _attr(3, b"eth0\0") + _attr(45, struct.pack("=i", 3))
    link += _attr(49, struct.pack("=i", 9))
    addr = struct.pack("=BBBBI", 2, 24, 0, 0, 7)
    parsed = events.parse(_nlmsg(events.RTM_DELLINK, link) + _nlmsg(events.RTM_NEWADDR, addr), nsid=4)
    assert parsed == [
        events.KernelEvent("dellink", 4, 7, "eth0", new_nsid=3, new_index=9),
        events.KernelEvent("newaddr", 4, 7),
    ]


def test_restat_swaps_the_counters_and_keeps_the_rows() -> None:
    old = report({5: pod_pair(5, 10, stats=LinkStats(rx_bytes=1), peer_stats=LinkStats(tx_bytes=1))})
    new = report({5: pod_pair(5, 10, stats=LinkStats(rx_bytes=7), peer_stats=LinkStats(tx_bytes=7))})
    fresh = carry.restat(old, new.snapshot)
    assert fresh.snapshot is new.snapshot
    assert [r.end.workload.label for r in fresh.rows] == [r.end.workload.label for r in old.rows]
    (row,) = fresh.rows
    assert row.end.link.stats == LinkStats(rx_bytes=7)
    assert row.peer is not None and row.peer.link.stats == LinkStats(tx_bytes=7)


def test_a_host_pair_end_moved_into_a_container_is_one_move_not_a_deletion() -> None:
    """Docker's way: a pair made in the host, one end moved into the container. The host end's own
    row ends (it is now the container's peer), but the device stays: no "deleted" for it."""
    a = Link(20, "vethA", flags=UP, kind="veth", mac="0a:00:00:00:00:20", mtu=1500, link=21)
    b = Link(21, "vethB", flags=UP, kind="veth", mac="0a:00:00:00:00:21", mtu=1500, link=20)
    before = correlate(
        Snapshot(host=HOST, views=(NsView(ns(1), (a, b), {}),)),
        [answered("kernel")],
    )
    eth0 = Link(2, "eth0", flags=UP, kind="veth", mac="0a:00:00:00:00:21", mtu=1500, link=20, link_netnsid=0)
    host_a = Link(
        20, "vethA", flags=UP, kind="veth", mac="0a:00:00:00:00:20", mtu=1500, link=2, link_netnsid=7
    )
    views = (NsView(ns(1), (host_a,), {7: NsKey(4, 7)}), NsView(ns(7, "c7"), (eth0,), {0: HOST}))
    after = correlate(
        Snapshot(host=HOST, views=views),
        [answered("kernel", names_of(views[1].ns))],
    )
    found = changes.diff(before, after, [changes.Move(HOST, 21, NsKey(4, 7), 2)])
    assert kinds(found) == ["netns-appeared", "moved"]
    back = changes.diff(after, before, [changes.Move(NsKey(4, 7), 2, HOST, 21)])
    assert kinds(back) == ["moved", "netns-gone"]  # and back: the host end's row returns, not "created"


def test_kernel_names_asked_again_make_only_what_changed_and_equal_a_fresh_answer() -> None:
    host = Namespace(NsKey(4, 1), is_host=True, pids=(1,))
    first = (
        host,
        Namespace(NsKey(4, 2), mounts=("/run/netns/a",)),
        Namespace(NsKey(4, 3), pids=(40, 41), comm="sleep"),
    )
    later = (
        host,
        first[1],  # unchanged: its claims are the ones made before
        Namespace(NsKey(4, 3), pids=(41,), comm="sh"),  # its first process exited
        Namespace(NsKey(4, 5), mounts=("/run/docker/netns/abc",)),  # new
    )
    kept = KernelNames()
    before = kept.collect(Context(host.key, first))
    again = kept.collect(Context(host.key, later))
    # another object, named by the same (a process that is not its first came)
    third = (*later[:2], later[2]._replace(pids=(41, 57)), later[3])
    once_more = kept.collect(Context(host.key, third))
    for namespaces, answer in ((first, before), (later, again), (third, once_more)):
        assert answer == KernelNames().collect(Context(host.key, namespaces))
    assert again.claims[0] is before.claims[0]
    assert all(map(operator.is_, once_more.claims, again.claims))
