"""The FDB verdicts and duplicate-MAC detection, on hand-built snapshots."""

from __future__ import annotations

from vethpeer.fdb import FdbState, classify, duplicates, row_key
from vethpeer.render.json import report_json
from vethpeer.render.tables import columns, evidence

from .builders import HOST, Topo


def _setup() -> tuple[Topo, object, object, object]:
    t = Topo()
    a = t.netns("vpo-a")
    br = t.bridge(HOST, "vpobr0")
    _eth, host_side = t.veth(a, "eth0", HOST, "vpoh-a")
    host_side = t.enslave(HOST, host_side, br)
    return t, a, br, host_side


def _verdict(t: Topo, ns: object) -> object:
    report = t.report()
    rows = [r for r in report.rows if r.end.ns.key == ns and r.end.link.name == "eth0"]
    return classify(report).get(row_key(rows[0]))


def test_learned_on_the_peer_port() -> None:
    t, a, br, port = _setup()
    mac = t.links[a][-1].mac
    t.learn(HOST, br, port, mac)
    verdict = _verdict(t, a)
    assert verdict is not None and verdict.state is FdbState.LEARNED
    assert verdict.cell == "learned" and verdict.learned_on == "vpoh-a" and not verdict.static
    assert "confirmed" in verdict.evidence()


def test_static_entry_counts_as_learned_and_says_so() -> None:
    t, a, br, port = _setup()
    t.learn(HOST, br, port, t.links[a][-1].mac, state=0x40)
    verdict = _verdict(t, a)
    assert verdict.state is FdbState.LEARNED and verdict.static
    assert "static" in verdict.evidence()


def test_not_learned_yet() -> None:
    t, a, _br, _port = _setup()
    verdict = _verdict(t, a)
    assert verdict.state is FdbState.NOT_LEARNED and verdict.cell == "not-learned-yet"


def test_learned_elsewhere_names_the_port() -> None:
    t, a, br, _port = _setup()
    b = t.netns("vpo-b")
    _eth_b, port_b = t.veth(b, "eth0", HOST, "vpoh-b")
    port_b = t.enslave(HOST, port_b, br)
    t.learn(HOST, br, port_b, t.links[a][-1].mac)
    verdict = _verdict(t, a)
    assert verdict.state is FdbState.ELSEWHERE
    assert verdict.cell == "elsewhere(vpoh-b)" and not verdict.local


def test_local_entry_for_the_workload_mac_is_elsewhere_local() -> None:
    t, a, br, port = _setup()
    mac = t.links[a][-1].mac
    t.set(HOST, "vpoh-a", mac=mac)  # host side got the workload's MAC: a local entry on the bridge
    t.fdb[HOST].append(type(t.fdb[HOST][0])(port.index, mac, br.index, None, 0x80, 0))
    verdict = _verdict(t, a)
    assert verdict.state is FdbState.ELSEWHERE and verdict.local
    assert "LOCAL" in verdict.evidence()


def test_unread_fdb_gives_no_verdict() -> None:
    t, a, _br, _port = _setup()
    t.fdb.clear()  # the walk was not asked for the FDB
    assert _verdict(t, a) is None


def test_no_verdict_when_the_peer_is_not_a_bridge_port() -> None:
    t = Topo()
    a = t.netns("vpo-a")
    t.veth(a, "eth0", HOST, "vpoh-a")
    assert classify(t.report()) == {}


def test_duplicate_mac_from_two_workloads_on_one_bridge() -> None:
    t, a, br, _port = _setup()
    b = t.netns("vpo-b")
    mac = t.links[a][-1].mac
    _eth_b, port_b = t.veth(b, "eth0", HOST, "vpoh-b", a={"mac": mac})
    port_b = t.enslave(HOST, port_b, br)
    t.learn(HOST, br, port_b, mac)
    found = duplicates(t.report())
    assert len(found) == 1
    assert found[0].mac == mac and found[0].ports == ("vpoh-a", "vpoh-b") and found[0].bridge == "vpobr0"
    assert {r.end.ns.key for r in found[0].rows} == {a, b}


def test_duplicate_mac_from_fdb_entries_in_two_vlans() -> None:
    t, _a, br, port = _setup()
    b = t.netns("vpo-b")
    _eth_b, port_b = t.veth(b, "eth0", HOST, "vpoh-b")
    port_b = t.enslave(HOST, port_b, br)
    t.learn(HOST, br, port, "02:99:00:00:00:01", vlan=10)
    t.learn(HOST, br, port_b, "02:99:00:00:00:01", vlan=20)
    found = duplicates(t.report())
    assert [(d.mac, d.ports) for d in found] == [("02:99:00:00:00:01", ("vpoh-a", "vpoh-b"))]


def test_no_duplicates_on_a_healthy_bridge() -> None:
    t, a, br, port = _setup()
    t.learn(HOST, br, port, t.links[a][-1].mac)
    assert duplicates(t.report()) == []


def test_json_wide_and_which_show_the_verdict() -> None:
    t, a, br, port = _setup()
    t.learn(HOST, br, port, t.links[a][-1].mac)
    c = t.netns("vpo-c")
    t.veth(c, "eth0", HOST, "vpoh-c")  # not on a bridge: fdb null
    report = t.report()
    rows = [r for r in report.rows if r.end.ns.key == a and r.end.link.name == "eth0"]
    entry = next(i for i in report_json(report, rows)["interfaces"] if i["ifname"] == "eth0")
    assert entry["fdb"]["state"] == "learned" and entry["fdb"]["bridge"] == "vpobr0"
    header, table = columns(report, rows, wide=True)
    assert table[0][header.index("FDB")] == "learned"
    assert evidence(report, rows) == [
        f"fdb: netns/vpo-a eth0: {classify(report)[row_key(rows[0])].evidence()}"
    ]
    unbridged = [r for r in report.rows if r.end.ns.key == c]
    assert report_json(report, unbridged)["interfaces"][0]["fdb"] is None
    assert columns(report, unbridged, wide=True)[1][0][-1] == "-"
