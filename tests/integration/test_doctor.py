"""`vethpeer doctor` on real broken topologies: each check fires on its own breakage, and only then.

Needs root, iproute2 and busybox (``arping``, from Debian's busybox-static) for the
ARP-based checks. Every namespace and link is prefixed ``vpo`` and removed after.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.vpo_net import Net, busybox, sh, vethpeer, wait_for
from tests.policy import need

pytestmark = pytest.mark.integration


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net()
    try:
        yield n
    finally:
        n.cleanup()


def doctor(target: str) -> tuple[int, list[dict[str, Any]]]:
    done = vethpeer("doctor", target, "--json")
    assert done.returncode in (0, 6), done.stderr
    data = json.loads(done.stdout)
    assert data["schema_version"] == 1
    return done.returncode, data["findings"]


def checks(findings: list[dict[str, Any]]) -> list[str]:
    return sorted(f["check"] for f in findings)


def healthy(net: Net, name: str, host: str, bridge: str, address: str, gateway: str) -> None:
    """A workload the way Docker makes one: veth to a bridge that owns the gateway, default route."""
    net.ns(name)
    net.veth_to_host(name, host)
    net.plug(host, bridge)
    net.addr(name, address, "eth0")
    sh("ip", "-n", name, "route", "add", "default", "via", gateway)


@pytest.fixture
def lan(net: Net) -> Net:
    need(busybox() is not None, "needs busybox (busybox-static) for arping")
    net.bridge("vpodbr0")
    net.addr(None, "10.231.0.1/24", "vpodbr0")
    healthy(net, "vpo-d-a", "vpodh-a", "vpodbr0", "10.231.0.2/24", "10.231.0.1")
    healthy(net, "vpo-d-b", "vpodh-b", "vpodbr0", "10.231.0.3/24", "10.231.0.1")
    # real frames so that the bridge learns both MACs (ARP only: no iptables involved)
    net.arping("vpo-d-a", "eth0", "10.231.0.3")
    net.arping("vpo-d-b", "eth0", "10.231.0.2")
    return net


def test_healthy_topology_is_silent(lan: Net) -> None:
    for target in ("vpo-d-a", "vpo-d-b", "vpodh-a"):
        code, findings = doctor(target)
        assert findings == [], findings
        assert code == 0
    text = vethpeer("doctor", "vpo-d-a")
    assert text.returncode == 0 and "no findings" in text.stdout


def test_link_down_and_no_carrier(lan: Net) -> None:
    sh("ip", "-n", "vpo-d-a", "link", "set", "eth0", "down")
    assert "NO-CARRIER" in lan.link("vpodh-a")["flags"]  # the kernel's view of the peer
    code, findings = doctor("vpo-d-a")
    assert code == 6
    (f,) = [f for f in findings if f["check"] == "link-down"]
    assert f["severity"] == "warning" and f["interface"]["ifname"] == "eth0"
    assert f["peer"]["ifname"] == "vpodh-a"
    assert any("NO-CARRIER" in e and "vpodh-a" in e for e in f["evidence"])
    assert f["fix"] == ["ip -n vpo-d-a link set dev eth0 up"]
    assert doctor("vpo-d-b") == (0, [])  # the neighbour is not concerned


def test_address_on_a_bridge_port(net: Net) -> None:
    """Built inside a "switch" namespace of ours, so that the proof by ping stays in our namespaces."""
    need(busybox() is not None, "needs busybox (busybox-static) for ping")
    sw, ws = net.ns("vpo-d-sw"), net.ns("vpo-d-ws")
    sh("ip", "-n", sw, "link", "add", "vpodbr2", "type", "bridge")
    sh("ip", "-n", sw, "link", "add", "vpodp-a", "type", "veth", "peer", "name", "eth0", "netns", ws)
    sh("ip", "-n", sw, "link", "set", "vpodp-a", "master", "vpodbr2")
    for ns, dev in ((sw, "vpodbr2"), (sw, "vpodp-a"), (ws, "eth0")):
        sh("ip", "-n", ns, "link", "set", dev, "up")
    net.addr(sw, "10.234.0.1/24", "vpodp-a")  # the mistake: on the port, not on the bridge
    net.addr(ws, "10.234.0.2/24", "eth0")
    ping = [busybox() or "busybox", "ping", "-c", "1", "-W", "1", "10.234.0.2"]
    assert net.exec(sw, *ping, check=False).returncode != 0  # the kernel agrees: it does not work
    code, findings = doctor(ws)
    assert code == 6
    (f,) = [f for f in findings if f["check"] == "address-on-bridge-port"]
    assert f["interface"]["ifname"] == "vpodp-a"
    assert f["fix"] == [
        "ip -n vpo-d-sw addr del 10.234.0.1/24 dev vpodp-a",
        "ip -n vpo-d-sw addr add 10.234.0.1/24 dev vpodbr2",
    ]
    for fix in f["fix"]:  # the printed fix, applied by the test (vethpeer never runs it)
        sh(*fix.split())
    assert net.exec(sw, *ping, check=False).returncode == 0
    assert [x for x in doctor(ws)[1] if x["check"] == "address-on-bridge-port"] == []


def test_same_namespace_pair_needs_accept_local(net: Net) -> None:
    need(busybox() is not None, "needs busybox (busybox-static) for arping")
    ns = net.ns("vpo-d-same")
    sh("ip", "-n", ns, "link", "add", "vpox", "type", "veth", "peer", "name", "vpoy")
    net.addr(ns, "10.232.0.1/24", "vpox")
    net.addr(ns, "10.232.0.2/24", "vpoy")
    for dev in ("vpox", "vpoy"):
        sh("ip", "-n", ns, "link", "set", dev, "up")
    net.exec(ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
    code, findings = doctor(ns)
    assert code == 6
    (f,) = [f for f in findings if f["check"] == "same-namespace-pair"]
    assert any("accept_local=0" in e for e in f["evidence"])
    assert any("rp_filter on vpox is 1" in e for e in f["evidence"])
    assert "Unicast reply" not in net.arping(ns, "vpox", "10.232.0.2")  # the kernel agrees: no answer
    for fix in f["fix"]:  # the printed fix, applied by the test (vethpeer never runs it)
        sh(*fix.split())
    assert "Unicast reply" in net.arping(ns, "vpox", "10.232.0.2")
    assert [x for x in doctor(ns)[1] if x["check"] == "same-namespace-pair"] == []


def test_mtu_mismatch_between_the_ends(lan: Net) -> None:
    sh("ip", "-n", "vpo-d-a", "link", "set", "eth0", "mtu", "1400")
    code, findings = doctor("vpo-d-a")
    assert code == 6
    (f,) = [f for f in findings if f["check"] == "mtu-mismatch"]
    assert f["fix"] == ["ip link set dev vpodh-a mtu 1400"]


def test_mtu_mismatch_between_port_and_bridge(lan: Net) -> None:
    sh("ip", "link", "set", "vpodbr0", "mtu", "1400")  # set by hand: the bridge stops following its ports
    assert lan.link("vpodh-a")["mtu"] == 1500
    code, findings = doctor("vpo-d-a")
    assert code == 6
    (f,) = [f for f in findings if f["check"] == "bridge-mtu-mismatch"]
    assert f["interface"]["ifname"] == "vpodh-a" and f["fix"] == ["ip link set dev vpodh-a mtu 1400"]


def test_bridge_port_not_forwarding(net: Net) -> None:
    net.bridge("vpodbr1", "stp_state", "1", "forward_delay", "3000")  # 30 s in listening, then learning
    net.ns("vpo-d-stp")
    net.veth_to_host("vpo-d-stp", "vpodh-stp")
    net.plug("vpodh-stp", "vpodbr1")
    assert wait_for(lambda: net.link("vpodh-stp").get("linkinfo", {}).get("info_slave_data", {}).get("state")
                    in ("listening", "learning"), 5)  # fmt: skip
    code, findings = doctor("vpo-d-stp")
    assert code == 6
    (f,) = [f for f in findings if f["check"] == "bridge-port-not-forwarding"]
    assert f["interface"]["ifname"] == "vpodh-stp"
    assert f["fix"] == ["ip link set dev vpodbr1 type bridge stp_state 0"]


def test_orphaned_host_veth(net: Net) -> None:
    net.ns("vpo-d-orph")
    net.veth_to_host("vpo-d-orph", "vpodh-orph")
    fd = net.hold_and_forget("vpo-d-orph")  # no process, no bind mount: only this fd keeps it
    assert os.fstat(fd).st_ino
    code, findings = doctor("vpodh-orph")
    assert code == 6
    (f,) = [f for f in findings if f["check"] == "orphaned-veth"]
    assert f["interface"]["ifname"] == "vpodh-orph"
    assert any(f"pid {os.getpid()} " in e and f"fd {fd}" in e for e in f["evidence"]), f["evidence"]
    assert f["fix"] == ["ip link del dev vpodh-orph"]


def _ip_batch(lines: list[str]) -> None:
    subprocess.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", text=True, check=True)


def test_a_veth_whose_namespace_is_being_destroyed_is_not_an_orphan() -> None:
    """After `ip netns del` nothing holds a namespace, but the kernel's cleanup removes its nsid and
    its veths only a moment later (0.05 s for these 200 here, ~0.5 s under churn): meanwhile its host
    veth looks orphaned, and the doctor called it leaked. RTM_GETNSID by that nsid says it is being
    destroyed (``doctor_reads.dying``), while a live namespace's nsid, before, is not."""
    from vethpeer.doctor_reads import dying
    from vethpeer.netlink import RtnlSocket

    names = [f"vpo-dd{i}" for i in range(200)]
    try:
        _ip_batch([f"netns add {name}" for name in names])
        _ip_batch([f"link add vpoddh{i} type veth peer name eth0 netns {n}" for i, n in enumerate(names)])
        with RtnlSocket() as sock:
            nsids = [link.link_netnsid for link in sock.links() if link.name.startswith("vpoddh")]
            assert len(nsids) == len(names) and None not in nsids
            assert dying(n for n in nsids if n is not None) == frozenset()
            _ip_batch([f"netns del {name}" for name in names])
            looks = 0
            while left := {link.link_netnsid for link in sock.links() if link.name.startswith("vpoddh")}:
                looks += 1
                assert dying(n for n in left if n is not None) == left - {None}
        assert looks, "the namespaces' cleanup was over before the first look: nothing was shown"
    finally:
        subprocess.run(
            ["ip", "-force", "-batch", "-"],
            input="".join(f"netns del {n}\n" for n in names),
            text=True,
            stderr=subprocess.DEVNULL,
        )


def test_no_default_route(lan: Net) -> None:
    sh("ip", "-n", "vpo-d-a", "route", "del", "default")
    code, findings = doctor("vpo-d-a")
    assert code == 6
    (f,) = [f for f in findings if f["check"] == "no-default-route"]
    assert f["fix"] == ["ip -n vpo-d-a route add default via 10.231.0.1 dev eth0"]


def test_gateway_that_nobody_answers_for(lan: Net) -> None:
    sh("ip", "-n", "vpo-d-a", "route", "replace", "default", "via", "10.231.0.77")
    # off-subnet, so via the gateway: its ARP goes unanswered (no IP packet leaves), the entry FAILs
    lan.exec("vpo-d-a", busybox() or "busybox", "ping", "-c", "1", "-W", "1", "10.231.99.9", check=False)
    assert wait_for(lambda: "FAILED" in sh("ip", "-n", "vpo-d-a", "neigh", "show", "10.231.0.77").stdout, 10)
    code, findings = doctor("vpo-d-a")
    assert code == 6
    (f,) = [f for f in findings if f["check"] == "gateway-unreachable"]
    assert "FAILED" in f["message"]
    assert f["fix"] == ["ip -n vpo-d-a route replace default via 10.231.0.1 dev eth0"]


def test_gateway_outside_every_subnet(lan: Net) -> None:
    # the address the default route was added through is gone; the route stays
    lan.addr("vpo-d-a", "10.233.0.2/24", "eth0")
    sh("ip", "-n", "vpo-d-a", "addr", "del", "10.231.0.2/24", "dev", "eth0")
    assert "default via 10.231.0.1" in sh("ip", "-n", "vpo-d-a", "route").stdout
    code, findings = doctor("vpo-d-a")
    assert code == 6
    (f,) = [f for f in findings if f["check"] == "gateway-unreachable"]
    assert "in no subnet" in f["message"]


def test_routes_match_the_kernel(lan: Net) -> None:
    """netlink_routes.routes() (read by doctor inside the namespace) against `ip -j route show table all`."""
    from vethpeer.netlink import RtnlSocket
    from vethpeer.netlink_routes import routes
    from vethpeer.netns import inside

    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open("/run/netns/vpo-d-a", os.O_RDONLY)
    try:
        with inside(target, home):
            sock = RtnlSocket()
        with sock:
            ours = {
                (r.dst, r.nexthops[0].gateway if r.nexthops else None) for r in routes(sock) if r.table == 254
            }
    finally:
        os.close(target)
        os.close(home)
    kernel = json.loads(sh("ip", "-n", "vpo-d-a", "-j", "-4", "route", "show", "table", "main").stdout)
    theirs = {("0.0.0.0/0" if r["dst"] == "default" else r["dst"], r.get("gateway")) for r in kernel}
    assert {x for x in ours if ":" not in x[0]} == theirs


def test_default_routes_and_gateway_neighbours_are_the_full_reads_filtered(net: Net) -> None:
    """What the doctor reads at each round (the default routes, out of a dump the kernel filters under
    strict checking, and the gateways' neighbour entries) against the full dumps, and against `ip`."""
    from vethpeer.netlink import RtnlSocket
    from vethpeer.netlink_routes import default_routes, gateway_neighbours, neighbours, routes
    from vethpeer.netns import inside

    name = net.ns("vpo-d-r", ipv6=True)
    net.veth_to_host(name, "vpodh-r")
    net.addr(name, "10.232.0.2/24", "eth0")
    sh("ip", "-n", name, "-6", "addr", "add", "fd00:232::2/64", "dev", "eth0", "nodad")
    for route in (
        ("default", "via", "10.232.0.1"),
        ("default", "via", "10.232.0.9", "table", "100"),
        ("blackhole", "default", "table", "101"),
        ("unreachable", "default", "metric", "900"),
        ("10.9.0.0/16", "via", "10.232.0.1"),
    ):
        sh("ip", "-n", name, "route", "add", *route)
    sh("ip", "-n", name, "-6", "route", "add", "default", "via", "fd00:232::1")
    for address, mac in (("10.232.0.1", "02:00:00:00:e8:01"), ("10.232.0.5", "02:00:00:00:e8:05")):
        sh("ip", "-n", name, "neigh", "add", address, "lladdr", mac, "dev", "eth0", "nud", "permanent")
    sh("ip", "-n", name, "-6", "neigh", "add", "fd00:232::1", "lladdr", "02:00:00:00:e8:06", "dev", "eth0")
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        with inside(target, home):
            sock = RtnlSocket()
        with sock:
            assert sock.strict(True)  # this kernel has strict checking (4.20+): the filter is the kernel's
            every, ours = routes(sock), default_routes(sock)
            ipv4 = default_routes(sock, socket.AF_INET)
            gateways = {hop.gateway for route in ours for hop in route.nexthops if hop.gateway}
            all_neighbours, gateway_entries = neighbours(sock), gateway_neighbours(sock, gateways)
    finally:
        os.close(target)
        os.close(home)
    assert ours == [r for r in every if r.is_default]
    assert ipv4 == [r for r in ours if r.family == socket.AF_INET]
    kernel = json.loads(sh("ip", "-n", name, "-j", "route", "show", "table", "all").stdout)
    kernel += json.loads(sh("ip", "-n", name, "-j", "-6", "route", "show", "table", "all").stdout)
    unicast_defaults = {
        (r["dst"], r.get("table", "main"), r.get("gateway"))
        for r in kernel
        if r["dst"] == "default" and r.get("type", "unicast") == "unicast" and r.get("table") != "local"
    }
    tables = {254: "main"}
    assert {
        ("default", tables.get(r.table, str(r.table)), r.nexthops[0].gateway) for r in ours
    } == unicast_defaults
    assert gateways == {"10.232.0.1", "10.232.0.9", "fd00:232::1"}
    assert gateway_entries == [n for n in all_neighbours if n.address in gateways]
    assert {n.address for n in gateway_entries} == {"10.232.0.1", "fd00:232::1"}


def test_text_output_and_exit_status(lan: Net) -> None:
    sh("ip", "-n", "vpo-d-b", "link", "set", "eth0", "mtu", "1400")
    done = vethpeer("doctor", "vpo-d-b")
    assert done.returncode == 6, done.stderr
    assert "WARNING  mtu-mismatch  netns/vpo-d-b eth0 <-> vpodh-b (host)" in done.stdout
    assert "    fix:      ip link set dev vpodh-b mtu 1400" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("1 findings: 0 errors, 1 warning")


def test_doctor_never_changes_anything(lan: Net) -> None:
    sh("ip", "-n", "vpo-d-a", "link", "set", "eth0", "down")
    before = subprocess.run(["ip", "-n", "vpo-d-a", "-d", "link"], capture_output=True, text=True).stdout
    doctor("vpo-d-a")
    after = subprocess.run(["ip", "-n", "vpo-d-a", "-d", "link"], capture_output=True, text=True).stdout
    assert before == after


def test_vethpeer_never_names_itself_as_a_holder(net: Net) -> None:
    """The live model (serve --live, top, watch) holds every namespace open; the doctor it runs
    must not name vethpeer's own process as what keeps an orphaned namespace alive."""
    from vethpeer.doctor_reads import fd_holders

    net.ns("vpo-d-self")
    net.veth_to_host("vpo-d-self", "vpodh-self")
    net.hold_and_forget("vpo-d-self")  # held by this process alone: here, vethpeer's
    nsid = net.link("vpodh-self")["link_netnsid"]
    assert fd_holders({nsid}, os.stat("/proc/self/ns/net").st_dev) == {}
