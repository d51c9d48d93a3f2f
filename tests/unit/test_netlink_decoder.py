"""The netlink decoder on recorded RTM_NEWLINK bytes (no root, no kernel needed).

tests/unit/data/links-vpm-rec-a.json holds one namespace's link dump, recorded from a
real kernel 6.18 (as root: `ip netns add`; eth0 of a veth pair whose peer, also called
eth0 and also ifindex 2, is in another namespace; a bridge br0 with port v1, whose peer
v2 is in the same namespace; 10.250.0.1/24 on eth0), once with RTEXT_FILTER_SKIP_STATS
and once with the counters.
"""

from __future__ import annotations

import json
from pathlib import Path

from vethpeer.model import Link
from vethpeer.netlink import _IFINFO, IFF_LOOPBACK, IFF_UP, IFLA_LINK, IFLA_LINK_NETNSID, parse_link
from vethpeer.netlink_wire import attrs

RECORDED = json.loads((Path(__file__).parent / "data" / "links-vpm-rec-a.json").read_text())


def _links(key: str, with_stats: bool = False) -> dict[str, Link]:
    found = {}
    for text in RECORDED[key]:
        data = bytes.fromhex(text)
        link = parse_link(data, 0, len(data), with_stats)
        found[link.name] = link
    return found


def test_every_field_of_a_recorded_dump() -> None:
    links = _links("skip_stats")
    assert list(links) == ["lo", "eth0", "br0", "v2", "v1"]
    lo, eth0, br0, v2, v1 = links.values()
    assert lo.index == 1 and lo.flags & IFF_LOOPBACK and lo.mac == "00:00:00:00:00:00"
    assert (eth0.index, eth0.kind, eth0.link_netnsid, eth0.operstate) == (2, "veth", 0, "up")
    assert eth0.flags & IFF_UP
    assert (br0.kind, br0.master) == ("bridge", None)
    assert (v1.kind, v1.master, v1.slave_kind, v1.link, v1.link_netnsid) == ("veth", 3, "bridge", 4, None)
    assert v1.brport_state in ("disabled", "listening", "learning", "forwarding", "blocking")
    assert (v2.kind, v2.link, v2.link_netnsid, v2.brport_state) == ("veth", 5, None, None)
    assert all(link.stats is None for link in links.values())


def _without(data: bytes, wanted: int) -> bytes:
    """The message with one top-level attribute cut out."""
    kept = data[: _IFINFO.size]
    for attr, start, stop in attrs(data, _IFINFO.size, len(data)):
        if attr != wanted:
            kept += data[start - 4 : start + ((stop - start + 4 + 3) & ~3) - 4]
    return kept


def test_missing_ifla_link_next_to_a_netnsid_means_my_own_index() -> None:
    """Older kernels omit IFLA_LINK when it equals the device's own ifindex (eth0, 2, whose peer is
    ifindex 2 in another namespace); kernel 6.18, which recorded this dump, sends it. The recorded
    message with IFLA_LINK cut out is what the older ones send."""
    data = bytes.fromhex(RECORDED["skip_stats"][1])
    assert parse_link(data, 0, len(data)).link == 2  # as recorded: IFLA_LINK = 2 is there
    old = _without(data, IFLA_LINK)
    top_level = {attr for attr, _start, _stop in attrs(old, _IFINFO.size, len(old))}
    assert IFLA_LINK_NETNSID in top_level and IFLA_LINK not in top_level
    eth0 = parse_link(old, 0, len(old))
    assert (eth0.name, eth0.index, eth0.link, eth0.link_netnsid, eth0.kind) == ("eth0", 2, 2, 0, "veth")


def test_stats_are_parsed_by_length() -> None:
    links = _links("with_stats", with_stats=True)
    assert all(link.stats is not None for link in links.values())
    assert _links("with_stats")["eth0"].stats is None  # not asked: not decoded


def test_a_shorter_stats64_from_an_older_kernel() -> None:
    from vethpeer.netlink import parse_stats64

    data = (7).to_bytes(8, "little") + (9).to_bytes(8, "little")
    stats = parse_stats64(data, 0, len(data))  # two counters only: rx_packets, tx_packets
    assert (stats.rx_packets, stats.tx_packets, stats.rx_bytes, stats.rx_otherhost_dropped) == (7, 9, 0, 0)
