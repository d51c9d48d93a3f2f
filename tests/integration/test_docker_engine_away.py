"""The Docker engine hung or stopped: the table still comes, from the kernel and the cgroups.

These tests freeze (SIGSTOP) and stop an engine, so they never use the one on
/var/run/docker.sock (a Debian host runs it as a service): they start a private one of their
own (tests/lab/private_dockerd.py: its own socket, data and exec roots, pidfile, containerd,
bridge ``vpx-br*``, no iptables changes, ``--live-restore``), act only on it by PID, point
vethpeer at it with ``--docker-host``, and remove all of it at the end, pass or fail.

Every veth is checked against the kernel's own answer for the container's init PID
(tests/lab/docker_lab.py: peer_ifindex_of, host_ifname).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Cli, run_vethpeer
from tests.lab import docker_lab as lab
from tests.lab.private_dockerd import PREFIX, PrivateDockerd, private_dockerd
from tests.policy import need, need_binary

pytestmark = pytest.mark.integration

Containers = dict[str, Any]


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[PrivateDockerd, Any]]:
    need(os.geteuid() == 0, "needs root")
    need(os.access(lab.DOCKERD, os.X_OK), f"needs {lab.DOCKERD} (apt-get install docker.io)")
    need_binary("containerd")
    need(os.access(lab.BUSYBOX, os.X_OK), f"needs {lab.BUSYBOX} (apt-get install busybox-static)")
    need(importlib.util.find_spec("docker") is not None, "needs the docker Python SDK")
    with private_dockerd() as started:
        yield started


@pytest.fixture(scope="module")
def containers(engine: tuple[PrivateDockerd, Any]) -> Containers:
    daemon, client = engine
    daemon.network(client, f"{PREFIX}-net1", "10.213.211.0/24")
    return {
        "bridge": daemon.run(client, f"{PREFIX}-bridge"),
        "user": daemon.run(client, f"{PREFIX}-user", network=f"{PREFIX}-net1"),
        "host": daemon.run(client, f"{PREFIX}-host", network="host"),
    }


def kernel_peer(client: Any, container: Any) -> str:
    """The host-side veth of the container's eth0, as the kernel says."""
    pid = lab.container_pid(client, container.name)
    assert pid > 0, f"{container.name} is not running"
    found = lab.host_ifname(lab.peer_ifindex_of(pid))
    assert found is not None, f"the kernel shows no host peer for {container.name}'s eth0"
    return found


def table(daemon: PrivateDockerd, *extra: str) -> Cli:
    return run_vethpeer("table", "--docker-host", daemon.url, *extra)


def docker_status(data: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in data["sources"] if s["name"] == "docker")


def test_private_engine_answers_first(engine: tuple[PrivateDockerd, Any], containers: Containers) -> None:
    """The baseline the next two tests break: with the engine up, docker names the containers."""
    daemon, client = engine
    done = table(daemon, "--json")
    assert done.returncode == 0, done.stderr
    data = done.json()
    assert docker_status(data)["status"] == "ok"
    for key in ("bridge", "user"):
        c = containers[key]
        (row,) = [i for i in data["interfaces"] if i["workload"]["id"] == c.id]
        assert (row["workload"]["name"], row["workload"]["source"]) == (c.name, "docker")
        assert row["peer"]["ifname"] == kernel_peer(client, c)
    (bridged,) = [i for i in data["interfaces"] if i["workload"]["id"] == containers["bridge"].id]
    assert bridged["peer"]["master"] == daemon.bridge  # our own bridge, not the system's docker0


def test_daemon_hung_times_out_and_the_table_still_comes(
    engine: tuple[PrivateDockerd, Any], containers: Containers
) -> None:
    """A frozen engine costs at most the deadline: the run takes no more than a run with the engine
    answering, measured just before on the same machine (so a loaded machine does not fail it),
    plus the 1 s deadline and a margin."""
    daemon, client = engine
    expected = kernel_peer(client, containers["bridge"])
    assert daemon.pid is not None
    began = time.monotonic()
    answered = table(daemon, "--json", "--timeout", "1")
    baseline = time.monotonic() - began
    assert answered.returncode == 0 and docker_status(answered.json())["status"] == "ok", answered.stderr
    os.kill(daemon.pid, signal.SIGSTOP)  # our private dockerd, by PID
    try:
        began = time.monotonic()
        done = table(daemon, "--json", "--timeout", "1")
        took = time.monotonic() - began
        strict = table(daemon, "--json", "--timeout", "1", "--strict")
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    assert done.returncode == 0, done.stderr
    assert took < baseline + 1.0 + 1.5, (took, baseline)
    data = done.json()
    assert docker_status(data)["status"] == "timeout"
    (row,) = [i for i in data["interfaces"] if i["workload"]["id"] == containers["bridge"].id]
    assert row["peer"]["ifname"] == expected
    assert strict.returncode == 7


def test_daemon_stopped_table_from_kernel_and_cgroups(
    engine: tuple[PrivateDockerd, Any], containers: Containers
) -> None:
    daemon, client = engine
    expected = {key: kernel_peer(client, containers[key]) for key in ("bridge", "user")}
    daemon.stop()  # live restore: the containers keep running
    try:
        assert not daemon.is_running()
        done = table(daemon, "--json")
        strict = table(daemon, "--strict")
        assert done.returncode == 0, done.stderr
        data = done.json()
        docker = docker_status(data)
        assert docker["status"] == "unavailable" and "socket" in docker["detail"], docker
        for key, veth in expected.items():
            cid = containers[key].id
            (row,) = [i for i in data["interfaces"] if i["workload"]["id"] == cid]
            assert row["workload"]["name"] == cid[:12] and row["workload"]["source"] == "cgroup"
            assert row["peer"]["ifname"] == veth
        shared = [w["workload"]["id"] for w in data["workloads"] if w["host_network"]]
        assert containers["host"].id in shared
        assert strict.returncode == 7 and "docker" in strict.stderr
    finally:
        daemon.start()
    again = table(daemon, "--json")  # the same containers, named by the engine again
    assert again.returncode == 0, again.stderr
    assert docker_status(again.json())["status"] == "ok"
