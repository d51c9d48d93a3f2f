"""Each doctor check as a pure function over hand-built reports and namespace facts."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence

import pytest

from vethpeer import checks as doctor_checks
from vethpeer.checks import Diagnosis, Facts, Severity, link_index, orphan_rows, wanted_facts
from vethpeer.checks.base import global_addresses
from vethpeer.doctor_reads import Holder, NsFacts
from vethpeer.model import Namespace, NsKey, Report, Row
from vethpeer.netlink import IFF_UP
from vethpeer.netlink_routes import NUD_FAILED, NUD_REACHABLE, Neighbour, NextHop, Route
from vethpeer.render.findings import summary
from vethpeer.shell import in_ns

from .builders import HOST, Topo

DEFAULT_OK = Route(socket.AF_INET, "0.0.0.0/0", 254, 1, (NextHop("10.0.0.1", 101),))


def diagnose(
    report: Report,
    rows: Sequence[Row] | None = None,
    facts: Mapping[NsKey, NsFacts] | None = None,
    holders: Mapping[int, Sequence[Holder]] | None = None,
) -> Diagnosis:
    """The checks as `doctor` runs them: the facts built once, then every registered check."""
    chosen = tuple(report.rows if rows is None else rows)
    built = Facts(
        rows=chosen,
        host=report.snapshot.host,
        links=link_index(report),
        inside=dict(facts or {}),
        orphans=orphan_rows(chosen, report),
        holders=dict(holders or {}),
    )
    return doctor_checks.diagnose(report, built)


def healthy() -> tuple[Topo, NsKey]:
    """netns vpo-a, eth0 10.0.0.2/24 <-> vpoh-a on bridge vpobr0 (10.0.0.1/24), MAC learned."""
    t = Topo()
    a = t.netns("vpo-a", pid=4242)
    br = t.bridge(HOST, "vpobr0", addresses=("10.0.0.1/24",))
    eth, port = t.veth(a, "eth0", HOST, "vpoh-a", a={"addresses": ("10.0.0.2/24", "fe80::1/64")})
    port = t.enslave(HOST, port, br)
    t.learn(HOST, br, port, eth.mac or "")
    return t, a


def facts_for(a: NsKey, routes: tuple[Route, ...] = (DEFAULT_OK,), **kw: object) -> dict[NsKey, NsFacts]:
    return {a: NsFacts(default_routes=routes, **kw)}  # type: ignore[arg-type]


def checks(t: Topo, facts: dict[NsKey, NsFacts] | None = None, **kw: object) -> list[tuple[str, Severity]]:
    d = diagnose(t.report(**kw), facts=facts)  # type: ignore[arg-type]
    return [(f.check, f.severity) for f in d.findings]


def test_healthy_topology_is_silent() -> None:
    t, a = healthy()
    d = diagnose(t.report(), facts=facts_for(a))
    assert d.findings == () and d.worst is None
    assert summary(d).startswith("no findings")


def test_link_down_one_end() -> None:
    t, a = healthy()
    t.set(a, "eth0", flags=0, operstate="down")
    t.set(HOST, "vpoh-a", flags=IFF_UP, operstate="lowerlayerdown")  # NO-CARRIER
    d = diagnose(t.report(), facts=facts_for(a))
    (f,) = [f for f in d.findings if f.check == "link-down"]
    assert f.severity is Severity.WARNING and f.end.link.name == "eth0"
    assert f.fix == ("ip -n vpo-a link set dev eth0 up",)
    assert any("NO-CARRIER" in e for e in f.evidence)
    assert "no-carrier" not in [x.check for x in d.findings]


def test_link_down_both_ends_one_finding_two_fixes() -> None:
    t, a = healthy()
    t.set(a, "eth0", flags=0)
    t.set(HOST, "vpoh-a", flags=0)
    found = [f for f in diagnose(t.report(), facts=facts_for(a)).findings if f.check == "link-down"]
    assert len(found) == 1
    assert set(found[0].fix) == {"ip -n vpo-a link set dev eth0 up", "ip link set dev vpoh-a up"}


def test_no_carrier_with_both_ends_up() -> None:
    t, a = healthy()
    t.set(a, "eth0", flags=IFF_UP)
    assert ("no-carrier", Severity.WARNING) in checks(t, facts_for(a))


def test_address_on_bridge_port() -> None:
    t, a = healthy()
    t.set(HOST, "vpoh-a", addresses=("10.0.0.254/24", "fe80::2/64"))
    d = diagnose(t.report(), facts=facts_for(a))
    (f,) = [f for f in d.findings if f.check == "address-on-bridge-port"]
    assert f.end.link.name == "vpoh-a" and "10.0.0.254/24" in f.message and "fe80" not in f.message
    assert f.fix == ("ip addr del 10.0.0.254/24 dev vpoh-a", "ip addr add 10.0.0.254/24 dev vpobr0")


def _same_ns_pair(conf: dict[tuple[str, str], int]) -> tuple[Topo, dict[NsKey, NsFacts]]:
    t = Topo()
    a = t.netns("vpo-s")
    t.veth(a, "vpox", a, "vpoy", a={"addresses": ("10.9.0.1/24",)}, b={"addresses": ("10.9.0.2/24",)})
    return t, {a: NsFacts(default_routes=(), ipv4_conf=conf)}


def test_same_namespace_pair_without_accept_local() -> None:
    conf = {("all", "rp_filter"): 0, ("all", "accept_local"): 0, ("vpox", "accept_local"): 0,
            ("vpoy", "accept_local"): 0, ("vpox", "rp_filter"): 0, ("vpoy", "rp_filter"): 0}  # fmt: skip
    t, facts = _same_ns_pair(conf)
    found = [f for f in diagnose(t.report(), facts=facts).findings if f.check == "same-namespace-pair"]
    assert len(found) == 1  # one per pair, not per row
    assert set(found[0].fix) == {
        "ip netns exec vpo-s sysctl -w net.ipv4.conf.vpox.accept_local=1",
        "ip netns exec vpo-s sysctl -w net.ipv4.conf.vpoy.accept_local=1",
    }


def test_same_namespace_pair_with_strict_rp_filter_from_all() -> None:
    conf = {
        ("all", "rp_filter"): 1,
        ("all", "accept_local"): 1,
        ("vpox", "rp_filter"): 0,
        ("vpoy", "rp_filter"): 2,
    }
    t, facts = _same_ns_pair(conf)
    (f,) = [f for f in diagnose(t.report(), facts=facts).findings if f.check == "same-namespace-pair"]
    assert f.fix == ("ip netns exec vpo-s sysctl -w net.ipv4.conf.all.rp_filter=2",)


def test_same_namespace_pair_that_works_is_silent() -> None:
    conf = {
        ("all", "rp_filter"): 2,
        ("all", "accept_local"): 1,
        ("vpox", "rp_filter"): 0,
        ("vpoy", "rp_filter"): 0,
    }
    t, facts = _same_ns_pair(conf)
    assert [c for c, _ in checks(t, facts) if c == "same-namespace-pair"] == []


def test_mtu_mismatch_between_ends_and_with_bridge() -> None:
    t, a = healthy()
    t.set(a, "eth0", mtu=9000)
    assert ("mtu-mismatch", Severity.WARNING) in checks(t, facts_for(a))
    t2, a2 = healthy()
    t2.set(HOST, "vpobr0", mtu=1400)
    d = diagnose(t2.report(), facts=facts_for(a2))
    (f,) = [f for f in d.findings if f.check == "bridge-mtu-mismatch"]
    assert f.fix == ("ip link set dev vpoh-a mtu 1400",)


def test_bridge_port_not_forwarding() -> None:
    t, a = healthy()
    t.set(HOST, "vpoh-a", brport_state="listening")
    d = diagnose(t.report(), facts=facts_for(a))
    (f,) = [f for f in d.findings if f.check == "bridge-port-not-forwarding"]
    assert "listening" in f.message and f.fix == ("ip link set dev vpobr0 type bridge stp_state 0",)


def orphaned() -> tuple[NsKey, Report, int]:
    """:func:`healthy` and a host veth vpoh-gone whose peer's namespace discovery did not find:
    the workload's key, the report, the nsid the host gives that namespace."""
    t, a = healthy()
    gone = t.netns("vpo-gone")
    t.veth(gone, "eth0", HOST, "vpoh-gone")
    report = t.report(hide={gone})
    nsid = next(
        link.link_netnsid for v in report.snapshot.views for link in v.links if link.name == "vpoh-gone"
    )
    assert nsid is not None
    return a, report, nsid


def test_orphaned_host_veth() -> None:
    a, report, nsid = orphaned()
    d = diagnose(report, facts=facts_for(a), holders={nsid: [Holder(77, 5, "leaky")]})
    (f,) = [f for f in d.findings if f.check == "orphaned-veth"]
    assert f.end.link.name == "vpoh-gone" and f.fix == ("ip link del dev vpoh-gone",)
    assert any("pid 77 (leaky) fd 5" in e for e in f.evidence)


def test_a_veth_whose_namespace_is_being_destroyed_is_no_orphan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The doctor's facts leave out a host veth whose namespace the kernel says is being destroyed
    (``doctor_reads.dying``: asked only for the orphans' nsids), and look for no fd holder of it."""
    from vethpeer import diagnosis, doctor_reads

    a, report, nsid = orphaned()
    asked: list[set[int]] = []
    monkeypatch.setattr(doctor_reads, "read", lambda *_a, **_k: facts_for(a))
    monkeypatch.setattr(doctor_reads, "fd_holders", lambda nsids, *_a: asked.append(set(nsids)) or {})
    for dying, orphans in ((frozenset(), ("vpoh-gone",)), (frozenset({nsid}), ())):
        monkeypatch.setattr(doctor_reads, "dying", lambda nsids, d=dying: d & set(nsids))
        built = diagnosis.facts_for(report, report.rows)
        assert tuple(row.end.link.name for row in built.orphans) == orphans
    assert asked == [{nsid}]  # only while it was not dying


def test_fdb_not_learned_is_only_info() -> None:
    t, a = healthy()
    t.fdb[HOST] = [e for e in t.fdb[HOST] if e.state & 0x80]  # only local entries
    d = diagnose(t.report(), facts=facts_for(a))
    assert [(f.check, f.severity) for f in d.findings] == [("fdb-not-learned", Severity.INFO)]
    assert d.worst is Severity.INFO


def test_fdb_elsewhere_is_an_error() -> None:
    t, a = healthy()
    b = t.netns("vpo-b")
    _eth_b, port_b = t.veth(b, "eth0", HOST, "vpoh-b", a={"addresses": ("10.0.0.3/24",)})
    port_b = t.enslave(HOST, port_b, next(x for x in t.links[HOST] if x.name == "vpobr0"))
    mac_a = next(x.mac for x in t.links[a] if x.name == "eth0")
    t.fdb[HOST] = [e for e in t.fdb[HOST] if e.mac != mac_a]
    t.learn(HOST, next(x for x in t.links[HOST] if x.name == "vpobr0"), port_b, mac_a or "")
    mac_b = next(x.mac for x in t.links[b] if x.name == "eth0")
    t.learn(HOST, next(x for x in t.links[HOST] if x.name == "vpobr0"), port_b, mac_b or "", vlan=None)
    d = diagnose(t.report(), facts={**facts_for(a), **facts_for(b)})
    found = [(f.check, f.end.ns.key) for f in d.findings if f.check.startswith("fdb")]
    assert found == [("fdb-elsewhere", a)]
    assert d.findings[0].severity is Severity.ERROR


def test_duplicate_mac_is_one_error() -> None:
    t, a = healthy()
    b = t.netns("vpo-b")
    mac_a = next(x.mac for x in t.links[a] if x.name == "eth0")
    br = next(x for x in t.links[HOST] if x.name == "vpobr0")
    _eth_b, port_b = t.veth(b, "eth0", HOST, "vpoh-b", a={"mac": mac_a, "addresses": ("10.0.0.3/24",)})
    t.enslave(HOST, port_b, br)
    d = diagnose(t.report(), facts={**facts_for(a), **facts_for(b)})
    found = [f for f in d.findings if f.check in ("duplicate-mac", "fdb-elsewhere")]
    assert [f.check for f in found] == ["duplicate-mac"]
    (fix,) = found[0].fix
    assert fix.startswith("ip -n vpo-b link set dev eth0 address ")
    assert int(fix.rsplit(" ", 1)[1][:2], 16) & 3 == 2  # locally administered, unicast


def test_no_default_route_suggests_the_bridge_address() -> None:
    t, a = healthy()
    d = diagnose(t.report(), facts=facts_for(a, routes=()))
    (f,) = [f for f in d.findings if f.check == "no-default-route"]
    assert f.fix == ("ip -n vpo-a route add default via 10.0.0.1 dev eth0",)


def test_no_default_route_not_reported_without_addresses() -> None:
    t = Topo()
    a = t.netns("vpo-bare")
    t.veth(a, "eth0", HOST, "vpoh-bare")
    assert checks(t, {a: NsFacts()}) == []


def test_gateway_outside_every_subnet() -> None:
    t, a = healthy()
    route = Route(socket.AF_INET, "0.0.0.0/0", 254, 1, (NextHop("10.9.9.9", 101),))
    d = diagnose(t.report(), facts=facts_for(a, routes=(route,)))
    (f,) = [f for f in d.findings if f.check == "gateway-unreachable"]
    assert "in no subnet" in f.message
    assert f.fix == ("ip -n vpo-a route replace default via 10.0.0.1 dev eth0",)


def test_gateway_onlink_outside_subnets_is_fine() -> None:
    t, a = healthy()
    route = Route(socket.AF_INET, "0.0.0.0/0", 254, 1, (NextHop("169.254.1.1", 101, 4),))
    assert checks(t, facts_for(a, routes=(route,))) == []


def test_gateway_that_does_not_answer_arp() -> None:
    t, a = healthy()
    t.set(HOST, "vpobr0", addresses=())  # nobody owns 10.0.0.1
    neighbours = (Neighbour(101, "10.0.0.1", None, NUD_FAILED),)
    d = diagnose(t.report(), facts=facts_for(a, gateway_neighbours=neighbours))
    (f,) = [f for f in d.findings if f.check == "gateway-unreachable"]
    assert "FAILED" in f.message
    assert f.fix == ("ip addr add 10.0.0.1/24 dev vpobr0",)
    ok = (Neighbour(101, "10.0.0.1", "02:00:00:00:00:01", NUD_REACHABLE),)
    assert checks(t, facts_for(a, gateway_neighbours=ok)) == []


def test_gateway_on_a_linkdown_route() -> None:
    t, a = healthy()
    route = Route(socket.AF_INET, "0.0.0.0/0", 254, 1, (NextHop("10.0.0.1", 101, 16),))
    d = diagnose(t.report(), facts=facts_for(a, routes=(route,)))
    assert any(f.check == "gateway-unreachable" and "no carrier" in f.message for f in d.findings)


def test_target_rows_only() -> None:
    t, a = healthy()
    b = t.netns("vpo-b")
    t.veth(b, "eth0", HOST, "vpoh-b", a={"flags": 0})
    report = t.report()
    rows_a = [r for r in report.rows if r.end.ns.key == a]
    assert diagnose(report, rows_a, facts=facts_for(a)).findings == ()
    assert diagnose(report, facts=facts_for(a)).worst is Severity.WARNING


def test_in_ns_forms() -> None:
    named = Namespace(NsKey(4, 5), mounts=("/run/netns/x y",))
    assert in_ns(named, HOST, "ip", "link") == "ip -n 'x y' link"
    assert in_ns(named, HOST, "sysctl", "a=1") == "ip netns exec 'x y' sysctl a=1"
    assert in_ns(Namespace(NsKey(4, 6), pids=(42,)), HOST, "ip", "link") == "nsenter -t 42 -n ip link"
    docker = Namespace(NsKey(4, 7), mounts=("/run/docker/netns/abc",))
    assert in_ns(docker, HOST, "ip", "a") == "nsenter --net=/run/docker/netns/abc ip a"
    assert in_ns(Namespace(HOST, is_host=True), HOST, "ip", "a") == "ip a"


def test_duplicate_mac_found_when_the_twin_is_outside_the_target() -> None:
    t, a = healthy()
    b = t.netns("vpo-b")
    mac_a = next(x.mac for x in t.links[a] if x.name == "eth0")
    br = next(x for x in t.links[HOST] if x.name == "vpobr0")
    _eth_b, port_b = t.veth(b, "eth0", HOST, "vpoh-b", a={"mac": mac_a, "addresses": ("10.0.0.3/24",)})
    t.enslave(HOST, port_b, br)
    report = t.report()
    rows_a = [r for r in report.rows if r.end.ns.key == a]
    d = diagnose(report, rows_a, facts=facts_for(a))
    assert [f.check for f in d.findings] == ["duplicate-mac"]
    assert d.findings[0].end.ns.key == a


def test_routes_are_read_only_where_the_route_check_looks() -> None:
    """wanted_facts names the workloads (and the one family) whose default routes the checks look
    at: with facts for those only, the findings are the ones facts for every namespace give."""
    t = Topo()
    added: dict[str, NsKey] = {}
    for name, eth0 in (
        ("v4", {"addresses": ("10.0.0.2/24", "fe80::2/64")}),
        ("dual", {"addresses": ("fd00::3/64", "10.0.0.3/24")}),
        ("v6", {"addresses": ("fd00::4/64", "fe80::4/64")}),
        ("down", {"addresses": ("10.0.0.5/24",), "flags": 0}),
        ("bare", {}),
        ("link-local", {"addresses": ("169.254.0.6/16", "fe80::6/64")}),
    ):
        added[name] = t.netns(f"vpo-{name}")
        t.veth(added[name], "eth0", HOST, f"vpoh-{name}", a=eth0)
    report = t.report()
    routes, _conf = wanted_facts(report.rows, HOST)
    assert routes == {
        added["v4"]: socket.AF_INET,
        added["dual"]: socket.AF_INET,
        added["v6"]: socket.AF_INET6,
    }
    no_routes = {key: NsFacts() for key in added.values()}
    every = diagnose(report, facts=no_routes).findings
    assert every == diagnose(report, facts={key: no_routes[key] for key in routes}).findings
    missing = {f.end.ns.key for f in every if f.check == "no-default-route"}
    assert missing == set(routes)  # not vacuous: each of them is checked


def test_parsed_addresses_are_remembered_and_handed_out_afresh() -> None:
    addresses = ("10.0.0.2/24", "fe80::1/64")
    first = global_addresses(addresses)
    assert first == [ipaddress.ip_interface("10.0.0.2/24")]
    first.clear()  # a caller's list is its own
    assert global_addresses(list(addresses), socket.AF_INET) == [ipaddress.ip_interface("10.0.0.2/24")]
    assert global_addresses(addresses) == [ipaddress.ip_interface("10.0.0.2/24")]
    assert global_addresses(addresses, socket.AF_INET6) == []
