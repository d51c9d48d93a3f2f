"""`vethpeer graph` with real Docker containers on two user-defined networks.

Uses the Docker engine that is running (or starts Debian's dockerd, and then stops it),
creates its own networks and containers named ``vpg-*`` and removes them afterwards.
The DOT output, parsed back by ``dot -Tjson``, must equal what the kernel reports in the
containers' namespaces and for their host veths and bridges (``ip -j -d link``).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.conftest import run_vethpeer
from tests.integration.graph_truth import Picture, kernel_truth, label_of
from tests.lab import docker_lab
from tests.lab.netlab import HOST, Ns
from tests.policy import need

pytestmark = pytest.mark.integration
PREFIX = "vpg"
NET_A, NET_B = "vpg-neta", "vpg-netb"
DOT = "/usr/bin/dot"


@dataclass
class Docker:
    client: Any
    spaces: dict[str, Ns]  # container name -> its namespace
    picture: Picture


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    need(os.path.exists(DOT), "needs Graphviz (Debian package graphviz)")
    need(os.access(docker_lab.DOCKERD, os.X_OK), f"needs {docker_lab.DOCKERD} (apt-get install docker.io)")
    need(os.access(docker_lab.BUSYBOX, os.X_OK), f"needs {docker_lab.BUSYBOX} (busybox-static)")
    need(importlib.util.find_spec("docker") is not None, "needs the docker Python SDK")
    with docker_lab.docker_lab(PREFIX) as (_daemon, client):
        docker_lab.cleanup(client, PREFIX)
        docker_lab.create_network(client, NET_A, "10.213.201.0/24")
        docker_lab.create_network(client, NET_B, "10.213.202.0/24")
        docker_lab.run_container(client, "vpg-two", network=NET_A, networks=[NET_B], owner=PREFIX)
        docker_lab.run_container(client, "vpg-one", network=NET_B, owner=PREFIX)
        spaces = {}
        for name in ("vpg-two", "vpg-one"):
            pid = docker_lab.container_pid(client, name)
            spaces[name] = Ns(pid=pid, inode=os.stat(f"/proc/{pid}/ns/net").st_ino)
        done = run_vethpeer("graph", "-o", "dot", "--no-collapse")
        assert done.returncode == 0, done.stderr
        yield Docker(client, spaces, Picture.parse(done.stdout, DOT))


def test_containers_on_two_networks_equal_the_kernel(docker: Docker) -> None:
    truth = kernel_truth(docker.spaces.values())
    pic = docker.picture
    inside = {
        n
        for n, c in pic.cluster_of.items()
        if c in {f"cluster_ns{ns.inode}" for ns in docker.spaces.values()}
    }
    host = {n for n in truth.nodes if n.startswith(f"n{HOST.inode}-")}
    assert inside == truth.nodes - host
    assert host <= set(pic.nodes)
    subset = inside | host
    assert pic.edge_keys(subset) == truth.edges
    assert len([e for e in truth.edges if e[0] == "veth"]) == 3
    assert len([e for e in truth.edges if e[0] == "port"]) == 3
    stray = [e for e in pic.edges_touching(subset) if e[1] not in subset or e[2] not in subset]
    assert not stray, stray
    for node in subset:
        assert label_of(pic, node) == truth.names[node]
    for name, ns in docker.spaces.items():
        assert pic.drawn_text(f"cluster_ns{ns.inode}")[0] == f"docker/{name}"


def test_target_is_a_container(docker: Docker) -> None:
    done = run_vethpeer("graph", "vpg-one", "-o", "json")
    assert done.returncode == 0, done.stderr
    graph = done.json()["graph"]
    two, one = docker.spaces["vpg-two"], docker.spaces["vpg-one"]
    assert {c["label"] for c in graph["clusters"]} == {"host", "docker/vpg-one", "docker/vpg-two"}
    shown = {(n["cluster"], n["name"]) for n in graph["nodes"]}
    # vpg-two's leg on the shared network is one hop beyond the bridge; its other leg is not
    assert (f"ns{two.inode}", "eth1") in shown and (f"ns{two.inode}", "eth0") not in shown
    assert (f"ns{one.inode}", "eth0") in shown
