"""OVS bridges as masters of host-side veths, read from a real (private) Open vSwitch.

The tests start their own ovsdb-server + ovs-vswitchd (tests/lab/ovs_lab.py) with
their own run directory, and point vethpeer at it with OVS_RUNDIR, as ovs-vsctl
would be. Where the kernel has no ``openvswitch`` module (this CI machine: the
kernel is built without CONFIG_OPENVSWITCH, so a ``system`` bridge fails with
"failed to create datapath ovs-system"), the bridge uses the userspace datapath
(``datapath_type=netdev``): ovs-vswitchd then opens the port with a packet socket
and the kernel shows no master at all, which is exactly the case where only OVSDB
can say which bridge a veth is on. Needs root and Debian's openvswitch-switch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.lab.ovs_lab import (
    OvsLab,
    OvsUnavailable,
    ovs_binaries_available,
    start_ovs,
)
from tests.lab.vpo_net import Net, vethpeer
from tests.policy import need

pytestmark = pytest.mark.integration


@pytest.fixture
def ovs() -> Iterator[tuple[OvsLab, Net]]:
    need(ovs_binaries_available(), "needs openvswitch-switch (ovsdb-server, ovs-vswitchd, ovs-vsctl)")
    try:
        lab = start_ovs("vpo")
    except OvsUnavailable as error:
        need(False, f"cannot start a private OVS: {error}")
        raise
    net = Net()
    try:
        lab.add_bridge("vpoovs0")
        net.ns("vpo-o-a")
        net.veth_to_host("vpo-o-a", "vpooh-a")
        lab.add_port("vpoovs0", "vpooh-a")
        yield lab, net
    finally:
        try:
            lab.del_port("vpoovs0", "vpooh-a")
        finally:
            net.cleanup()
            lab.cleanup()


def test_ovs_bridge_is_the_master_of_its_port(ovs: tuple[OvsLab, Net]) -> None:
    lab, net = ovs
    kernel = net.link("vpooh-a")
    if lab.datapath_type == "netdev":
        assert "master" not in kernel  # the userspace datapath: the kernel knows nothing of the bridge
    else:
        assert kernel.get("master") == "ovs-system"
    done = vethpeer("which", "vpo-o-a", "--json", env={"OVS_RUNDIR": str(lab.run_dir)})
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    (entry,) = [i for i in data["interfaces"] if i["ifname"] == "eth0"]
    assert entry["peer"]["ifname"] == "vpooh-a" and entry["peer"]["master"] == "vpoovs0"
    assert entry["fdb"] is None  # not a Linux bridge: no kernel FDB to read
    (status,) = [s for s in data["sources"] if s["name"] == "ovs"]
    assert status["status"] == "ok"
    # the OVSDB view it relied on, for the record
    (iface,) = lab.vsctl_json("--columns=name,ifindex", "find", "Interface", "name=vpooh-a")
    assert iface["ifindex"] == kernel["ifindex"]


def test_table_shows_the_ovs_bridge(ovs: tuple[OvsLab, Net]) -> None:
    lab, _net = ovs
    done = vethpeer("which", "vpo-o-a", env={"OVS_RUNDIR": str(lab.run_dir)})
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()[:2]
    assert row[header.index("BRIDGE") :].split()[0] == "vpoovs0"


def test_without_ovs_nothing_changes(ovs: tuple[OvsLab, Net]) -> None:
    done = vethpeer("which", "vpo-o-a", "--json", env={"OVS_RUNDIR": "/run/vpo-no-ovs-here"})
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    (entry,) = [i for i in data["interfaces"] if i["ifname"] == "eth0"]
    assert entry["peer"]["master"] in (None, "ovs-system")
    (status,) = [s for s in data["sources"] if s["name"] == "ovs"]
    assert status["status"] == "skipped" and "/run/vpo-no-ovs-here/db.sock" in status["detail"]
    strict = vethpeer("--strict", "which", "vpo-o-a", env={"OVS_RUNDIR": "/run/vpo-no-ovs-here"})
    assert strict.returncode != 7 or "ovs" not in strict.stderr  # an absent OVS is not a failure
