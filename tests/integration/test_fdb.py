"""FDB verdicts on a real Linux bridge after real frames, checked against `bridge -j fdb show`.

Frames are ARP, sent by busybox ``arping`` from inside our own namespaces onto our
own bridge (IPv6 is off in them, so nothing else is sent unasked and "not learned
yet" is really that). Needs root, iproute2, busybox (busybox-static).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.vpo_net import Net, busybox, sh, vethpeer
from tests.policy import need

pytestmark = pytest.mark.integration


@pytest.fixture
def lan() -> Iterator[Net]:
    need(busybox() is not None, "needs busybox (busybox-static) for arping")
    net = Net()
    try:
        net.bridge("vpofbr0")
        for name, address in (("a", "10.235.0.2/24"), ("b", "10.235.0.3/24")):
            net.ns(f"vpo-f-{name}")
            net.veth_to_host(f"vpo-f-{name}", f"vpofh-{name}")
            net.plug(f"vpofh-{name}", "vpofbr0")
            net.addr(f"vpo-f-{name}", address, "eth0")
        yield net
    finally:
        net.cleanup()


def interface(target: str) -> dict[str, Any]:
    done = vethpeer("which", target, "--json")
    assert done.returncode == 0, done.stderr
    (entry,) = [i for i in json.loads(done.stdout)["interfaces"] if i["ifname"] == "eth0"]
    return entry


def kernel_port_of(net: Net, bridge: str, mac: str) -> str | None:
    """Where the kernel's own FDB has learned ``mac`` (not local entries)."""
    for entry in net.fdb(bridge):
        if (
            entry["mac"] == mac
            and "permanent" not in entry.get("state", "")
            and entry.get("master") == bridge
        ):
            return str(entry["ifname"])
    return None


def test_not_learned_then_learned_after_real_frames(lan: Net) -> None:
    mac_a = lan.link("eth0", "vpo-f-a")["address"]
    assert kernel_port_of(lan, "vpofbr0", mac_a) is None
    before = interface("vpo-f-a")["fdb"]
    assert (
        before["state"] == "not-learned-yet" and before["bridge"] == "vpofbr0" and before["port"] == "vpofh-a"
    )

    assert "Unicast reply" in lan.arping("vpo-f-a", "eth0", "10.235.0.3")  # a frame from a; b answers
    assert kernel_port_of(lan, "vpofbr0", mac_a) == "vpofh-a"
    after = interface("vpo-f-a")["fdb"]
    assert after == {
        "state": "learned", "bridge": "vpofbr0", "port": "vpofh-a", "mac": mac_a,
        "learned_on": "vpofh-a", "vlans": [], "local": False, "static": False,
    }  # fmt: skip
    mac_b = lan.link("eth0", "vpo-f-b")["address"]
    assert kernel_port_of(lan, "vpofbr0", mac_b) == "vpofh-b"
    assert interface("vpo-f-b")["fdb"]["state"] == "learned"


def test_wide_table_and_which_evidence(lan: Net) -> None:
    lan.arping("vpo-f-a", "eth0", "10.235.0.3")
    wide = vethpeer("which", "vpo-f-a", "-o", "wide")
    assert wide.returncode == 0, wide.stderr
    header, row = wide.stdout.splitlines()[:2]
    assert header.split()[-1] == "FDB" and row.split()[-1] == "learned"
    text = vethpeer("which", "vpo-f-a")
    assert "fdb: netns/vpo-f-a eth0: bridge vpofbr0 has" in text.stdout
    assert "on port vpofh-a, the peer: the pairing is confirmed" in text.stdout
    quiet = vethpeer("which", "vpo-f-a", "-q")
    assert quiet.stdout == "vpofh-a\n"  # -q stays bare
    table = vethpeer("table")
    assert "FDB" not in table.stdout.splitlines()[0]


def test_duplicate_mac_is_elsewhere_and_a_doctor_error(lan: Net) -> None:
    mac_a = lan.link("eth0", "vpo-f-a")["address"]
    lan.ns("vpo-f-c")
    lan.veth_to_host("vpo-f-c", "vpofh-c", up=False)
    sh("ip", "-n", "vpo-f-c", "link", "set", "eth0", "address", mac_a)  # a cloned MAC
    sh("ip", "-n", "vpo-f-c", "link", "set", "eth0", "up")
    sh("ip", "link", "set", "vpofh-c", "up")
    lan.plug("vpofh-c", "vpofbr0")
    lan.addr("vpo-f-c", "10.235.0.4/24", "eth0")
    lan.arping("vpo-f-c", "eth0", "10.235.0.3")  # c speaks with a's MAC: the bridge learns it on c's port
    assert kernel_port_of(lan, "vpofbr0", mac_a) == "vpofh-c"

    verdict = interface("vpo-f-a")["fdb"]
    assert verdict["state"] == "elsewhere" and verdict["learned_on"] == "vpofh-c"
    wide = vethpeer("which", "vpo-f-a", "-o", "wide")
    assert wide.stdout.splitlines()[1].split()[-1] == "elsewhere(vpofh-c)"

    done = vethpeer("doctor", "vpo-f-a", "--json")
    assert done.returncode == 6, done.stderr
    findings = json.loads(done.stdout)["findings"]
    (dup,) = [f for f in findings if f["check"] == "duplicate-mac"]
    assert dup["severity"] == "error"
    assert any("vpofh-a, vpofh-c" in e for e in dup["evidence"])


def test_learned_elsewhere_without_a_clone_is_fdb_elsewhere(lan: Net) -> None:
    """A frame with a's MAC arriving on b's port (a mis-plugged or spoofing b): only the FDB shows it."""
    mac_a = lan.link("eth0", "vpo-f-a")["address"]
    mac_b = lan.link("eth0", "vpo-f-b")["address"]
    sh("ip", "-n", "vpo-f-b", "link", "set", "eth0", "address", mac_a)
    lan.arping("vpo-f-b", "eth0", "10.235.0.9")
    sh("ip", "-n", "vpo-f-b", "link", "set", "eth0", "address", mac_b)  # b looks innocent again
    assert kernel_port_of(lan, "vpofbr0", mac_a) == "vpofh-b"
    done = vethpeer("doctor", "vpo-f-a", "--json")
    assert done.returncode == 6
    (f,) = [f for f in json.loads(done.stdout)["findings"] if f["check"] == "fdb-elsewhere"]
    assert "vpofh-b" in f["message"] and f["interface"]["ifname"] == "eth0"


def test_not_learned_is_info_only(lan: Net) -> None:
    sh("ip", "-n", "vpo-f-a", "route", "add", "default", "via", "10.235.0.1")
    done = vethpeer("doctor", "vpo-f-a", "--json")
    findings = json.loads(done.stdout)["findings"]
    assert [(f["check"], f["severity"]) for f in findings] == [("fdb-not-learned", "info")]
    assert done.returncode == 0
