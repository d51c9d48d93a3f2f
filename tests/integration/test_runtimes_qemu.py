"""QEMU guests and their taps: the tap lives in the host namespace with no peer device; its
row's workload is the VM holding ``/dev/net/tun`` for it (``iff:`` in the fd's fdinfo).

The guests are real QEMU processes that never boot (``-S``), each with a tap QEMU made
itself. The libvirt case moves a real guest into a cgroup named the way libvirt names a
domain's (no libvirtd runs here: it is not what vethpeer reads).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import run_vethpeer, table_json
from tests.lab import qemu_lab
from tests.policy import need

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[qemu_lab.Lab]:
    need(os.geteuid() == 0, "needs root (taps)")
    need(os.path.exists(qemu_lab.QEMU), "needs qemu-system-x86_64 (apt-get install qemu-system-x86)")
    need(os.path.exists("/dev/net/tun"), "needs /dev/net/tun")
    with qemu_lab.qemu_lab() as built:
        built.start("vpr-vm1", "vprtap0")
        two = built.start(
            "guest=vpr-vm2,debug-threads=on", "vprtap1", "-uuid", "5a1e0000-0000-4000-8000-000000000002"
        )
        built.enslave("vprtap1")
        three = built.start("vpr-vm3", "vprtap2")
        built.as_libvirt_domain(three, "vpr-dom3")
        assert two.pid and three.pid
        yield built
    left = qemu_lab.leftovers(built)
    assert not left, left


def rows_of(data: dict[str, Any], label: str) -> list[dict[str, Any]]:
    return [r for r in data["interfaces"] if r["workload"]["label"] == label]


def kernel_link(name: str) -> dict[str, Any]:
    out = subprocess.run(
        ["ip", "-j", "-d", "link", "show", "dev", name], capture_output=True, text=True, check=True
    )
    found: dict[str, Any] = json.loads(out.stdout)[0]
    return found


def test_tap_row_names_the_vm(lab: qemu_lab.Lab) -> None:
    data = table_json()
    [row] = rows_of(data, "vm/vpr-vm1")
    kernel = kernel_link("vprtap0")
    assert kernel["linkinfo"]["info_data"]["type"] == "tap"
    assert row["ifname"] == "vprtap0" and row["ifindex"] == kernel["ifindex"] and row["kind"] == "tun"
    assert row["netns"]["is_host"] is True
    assert row["peer"] is None and row["unresolved_peer"] is None  # a tap has no peer device
    assert row["workload"]["kind"] == "vm" and row["workload"]["id"] == str(lab.guests[0].pid)
    status = next(s for s in data["sources"] if s["name"] == "taps")
    assert status["status"] == "ok" and "held by a virtual machine" in status["detail"]


def test_libvirt_style_name_and_bridge(lab: qemu_lab.Lab) -> None:
    data = table_json()
    [row] = rows_of(data, "vm/vpr-vm2")  # from -name guest=vpr-vm2,debug-threads=on
    assert row["ifname"] == "vprtap1" and row["master"] == qemu_lab.BRIDGE
    assert row["workload"]["id"] == "5a1e0000-0000-4000-8000-000000000002"  # -uuid
    [domain] = rows_of(data, "vm/vpr-dom3")  # the libvirt domain of its cgroup beats -name
    assert domain["ifname"] == "vprtap2" and domain["workload"]["source"] == "libvirt cgroup"
    assert not rows_of(data, "vm/vpr-vm3")


def test_which_vm_and_which_tap(lab: qemu_lab.Lab) -> None:
    for target in ("vpr-vm1", "vm/vpr-vm1", "vprtap0"):
        done = run_vethpeer("which", target, "--json")
        assert done.returncode == 0, (target, done.stderr)
        assert [(r["workload"]["label"], r["ifname"]) for r in done.json()["interfaces"]] == [
            ("vm/vpr-vm1", "vprtap0")
        ]
    quiet = run_vethpeer("which", "-q", "vpr-dom3")
    assert quiet.returncode == 0 and quiet.stdout.split() == ["vprtap2"], quiet
