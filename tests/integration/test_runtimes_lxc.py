"""LXC containers (busybox template), named from their cgroup, monitor and config; peers exact."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration.conftest import run_vethpeer, table_json
from tests.lab import lxc_lab
from tests.lab.cri_lab import host_link, link_in
from tests.policy import need, need_binary

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[lxc_lab.Lab]:
    need(os.geteuid() == 0, "needs root (LXC)")
    need_binary("lxc-create")
    need(
        os.path.exists("/usr/share/lxc/templates/lxc-busybox"),
        "needs LXC's busybox template (apt-get install lxc)",
    )
    need(os.path.exists("/bin/busybox"), "needs /bin/busybox (apt-get install busybox-static)")
    with lxc_lab.lxc_lab() as built:
        built.start("vpr-lxc1", pair="vprl1h")
        built.start("vpr-lxc2", lxcpath=lxc_lab.CUSTOM_PATH)  # LXC picks the veth's name
        yield built
    left = lxc_lab.leftovers(built)
    assert not left, left


@pytest.mark.parametrize("index", [0, 1])
def test_container_named_with_exact_peer(lab: lxc_lab.Lab, index: int) -> None:
    container = lab.containers[index]
    data = table_json()
    rows = [r for r in data["interfaces"] if r["workload"]["label"] == f"lxc/{container.name}"]
    assert [r["ifname"] for r in rows] == ["eth0"], [r["workload"]["label"] for r in data["interfaces"]]
    row = rows[0]
    assert row["workload"]["kind"] == "lxc" and row["workload"]["source"] == "lxc"
    assert row["workload"]["networks"] == [lxc_lab.BRIDGE]  # from its config file (custom lxcpath too)
    eth0 = link_in(f"/proc/{container.pid()}/ns/net")
    peer = host_link(eth0["link_index"])
    assert peer is not None and row["peer"]["ifname"] == peer["ifname"]
    if container.pair:
        assert peer["ifname"] == container.pair
    assert row["peer"]["master"] == lxc_lab.BRIDGE
    which = run_vethpeer("which", container.name, "--json")
    assert which.returncode == 0, which.stderr
    assert [r["peer"]["ifname"] for r in which.json()["interfaces"]] == [peer["ifname"]]
    status = next(s for s in data["sources"] if s["name"] == "lxc")
    assert status == {"name": "lxc", "status": "ok", "detail": "2 containers"}
