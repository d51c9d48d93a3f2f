"""systemd-nspawn machines (``--network-veth``), named from their supervisor process; peers
exact even where the host-side ``ve-NAME`` names are cut to 15 characters and collide in
their prefix. No systemd runs as PID 1 here, so machines run with ``--register=no
--keep-unit`` (see tests/lab/nspawn_lab.py); the cgroup form is unit-tested."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import run_vethpeer
from tests.lab import nspawn_lab
from tests.lab.cri_lab import host_link, link_in
from tests.policy import need

pytestmark = pytest.mark.integration

LONG = ("vpr-machine-long-a", "vpr-machine-long-b")


@pytest.fixture(scope="module")
def lab() -> Iterator[nspawn_lab.Lab]:
    need(os.geteuid() == 0, "needs root (systemd-nspawn)")
    need(os.path.exists(nspawn_lab.NSPAWN), "needs systemd-nspawn (apt-get install systemd-container)")
    with nspawn_lab.nspawn_lab() as built:
        built.start("vpr-m1")
        for name in LONG:
            built.start(name)
        yield built
    left = nspawn_lab.leftovers(built)
    assert not left, left


def test_machines_named_with_exact_peers(lab: nspawn_lab.Lab) -> None:
    done = run_vethpeer("table", "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = done.json()
    peers = []
    for machine in lab.machines:
        rows = [r for r in data["interfaces"] if r["workload"]["label"] == f"machine/{machine.name}"]
        assert [r["ifname"] for r in rows] == ["host0"], [r["workload"]["label"] for r in data["interfaces"]]
        inside = link_in(f"/proc/{machine.init_pid()}/ns/net", "host0")
        peer = host_link(inside["link_index"])
        assert peer is not None and rows[0]["peer"]["ifname"] == peer["ifname"]
        assert len(peer["ifname"]) <= 15 and peer["ifname"].startswith("ve-")
        peers.append(peer["ifname"])
        which = run_vethpeer("which", machine.name, "--json")
        assert which.returncode == 0, which.stderr
        assert [r["peer"]["ifname"] for r in which.json()["interfaces"]] == [peer["ifname"]]
    assert len(set(peers)) == 3
    # The two long names share their first 12 characters: ve-NAME cannot be ve-vpr-machine-long-X.
    assert not any(p == f"ve-{name}" for p, name in zip(peers[1:], LONG, strict=True))
    status = next(s for s in data["sources"] if s["name"] == "nspawn")
    assert status["status"] == "ok" and status["detail"].startswith("3 machines")
