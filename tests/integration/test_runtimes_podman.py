"""Rootful Podman (netavark backend, as Debian 12's podman 4.3 uses): containers and pods
named from Podman's own state file, peers checked against the kernel's own view."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import run_vethpeer, table_json
from tests.lab import podman_lab
from tests.lab.cri_lab import host_link, link_in
from tests.policy import need
from vethpeer.model import NsKey, SourceState, WorkloadKind
from vethpeer.netns import discover
from vethpeer.sources import Context, podman

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[podman_lab.Lab]:
    need(os.geteuid() == 0, "needs root (rootful Podman)")
    need(os.path.exists(podman_lab.PODMAN), "needs podman (apt-get install podman)")
    need(shutil.which("catatonit") is not None, "needs catatonit for pods (apt-get install catatonit)")
    with podman_lab.podman_lab() as built:
        built.run("vpr-pm-a")
        built.pod("vpr-pod1")
        built.run("vpr-pm-b", "--pod", "vpr-pod1")
        built.run("vpr-pm-c", "--network", "container:vpr-pm-a")
        built.run("vpr-pm-h", "--network", "host")
        yield built
    assert not podman_lab.leftovers(), podman_lab.leftovers()


def kernel_peer(lab: podman_lab.Lab, container: str) -> str:
    pid = lab.inspect(container)["State"]["Pid"]
    eth0 = link_in(f"/proc/{pid}/ns/net")
    peer = host_link(eth0["link_index"])
    assert peer is not None
    return str(peer["ifname"])


def test_backend_is_netavark(lab: podman_lab.Lab) -> None:
    assert podman_lab.podman("info", "--format", "{{.Host.NetworkBackend}}") == "netavark"
    status = next(s for s in table_json()["sources"] if s["name"] == "podman")
    assert status["status"] == "ok", status
    assert "from /var/lib/containers/storage/libpod/bolt_state.db" in status["detail"]
    assert status["detail"].endswith("network backend netavark")


def test_container_named_with_exact_peer(lab: podman_lab.Lab) -> None:
    data = table_json()
    rows = [r for r in data["interfaces"] if r["workload"]["label"] == "podman/vpr-pm-a"]
    assert [r["ifname"] for r in rows] == ["eth0"], [r["workload"]["label"] for r in data["interfaces"]]
    row = rows[0]
    workload = row["workload"]
    assert workload["kind"] == "podman" and workload["source"] == "podman"
    assert workload["id"] == lab.inspect("vpr-pm-a")["Id"]
    assert workload["containers"] == ["vpr-pm-a", "vpr-pm-c"]  # vpr-pm-c joined its network
    assert workload["networks"] == [podman_lab.NETWORK]
    assert row["peer"]["ifname"] == kernel_peer(lab, "vpr-pm-a")
    assert row["peer"]["master"] == podman_lab.BRIDGE
    for target in ("vpr-pm-a", "vpr-pm-c", workload["id"][:12]):
        which = run_vethpeer("which", target, "--json")
        assert which.returncode == 0, which.stderr
        assert [r["peer"]["ifname"] for r in which.json()["interfaces"]] == [row["peer"]["ifname"]]


def test_pod_named_after_the_pod(lab: podman_lab.Lab) -> None:
    data = table_json()
    [row] = [r for r in data["interfaces"] if r["workload"]["label"] == "podman/vpr-pod1"]
    infra = lab.inspect("vpr-pm-b")["Pod"]
    assert row["workload"]["id"] == infra
    assert row["workload"]["containers"][0] == "vpr-pm-b"
    assert row["workload"]["containers"][1].endswith("-infra")
    assert row["peer"]["ifname"] == kernel_peer(lab, "vpr-pm-b")
    which = run_vethpeer("which", "vpr-pm-b", "--json")
    assert which.returncode == 0, which.stderr
    assert [r["workload"]["label"] for r in which.json()["interfaces"]] == ["podman/vpr-pod1"]


def test_host_network_container_listed_apart(lab: podman_lab.Lab) -> None:
    data = table_json()
    host = [w["workload"]["label"] for w in data["workloads"] if w["host_network"]]
    assert "podman/vpr-pm-h" in host


def test_without_the_state_file_conmon_names_them(
    lab: podman_lab.Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Podman's state unreadable: the conmon command lines and libpod-<id> cgroups still name them."""
    monkeypatch.setattr(podman, "STATE_FILE", "libpod/vpr-no-such-state.db")
    discovery = discover()
    result = podman.PodmanNames().collect(Context(discovery.host, discovery.namespaces))
    assert result.status.state is SourceState.OK and "conmon" in result.status.detail, result.status
    named = {c.workload.name: c.netns for c in result.claims}
    pid = lab.inspect("vpr-pm-a")["State"]["Pid"]
    st = os.stat(f"/proc/{pid}/ns/net")
    assert named["vpr-pm-a"] == NsKey(st.st_dev, st.st_ino)
    assert all(c.workload.kind is WorkloadKind.PODMAN for c in result.claims)


def test_api_socket_of_podman_service_is_found(lab: podman_lab.Lab) -> None:
    """``podman system service`` on a socket of our own: found by its listening socket and
    named in the status (the containers are still named from Podman's own records)."""
    path = "/run/vpr-podman-api.sock"
    proc = subprocess.Popen(
        [podman_lab.PODMAN, "system", "service", "--time=0", f"unix://{path}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=podman_lab._env(),
    )
    try:
        for _ in range(100):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        status = next(s for s in table_json()["sources"] if s["name"] == "podman")
    finally:
        proc.terminate()
        proc.wait(10)
        if os.path.exists(path):
            os.unlink(path)
    assert f"API socket {path} (listening socket of podman system service pid {proc.pid})" in status["detail"]
