"""Docker engines found without being told: a private dockerd of our own on a socket that is
not the default one (``/run/vpr-docker/docker.sock``), with no ``--docker-host`` or
``$DOCKER_HOST``; its containers are named next to the system engine's (if one runs)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import run_vethpeer
from tests.lab import dockerd_private
from tests.lab.cri_lab import host_link, link_in
from tests.policy import IN_CI, need

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine() -> Iterator[dockerd_private.Engine]:
    need(os.geteuid() == 0, "needs root (dockerd)")
    need(os.path.exists(dockerd_private.DOCKERD), "needs dockerd (apt-get install docker.io)")
    with dockerd_private.private_dockerd() as built:
        built.network("vpr-dnet", "vprdbr0", "10.231.79.0/24")
        built.run("vpr-d1", "vpr-dnet")
        yield built
    left = dockerd_private.leftovers()
    assert not left, left


def table() -> dict[str, Any]:
    done = run_vethpeer("table", "--json", env={"DOCKER_HOST": ""})
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = done.json()
    return data


def test_private_dockerd_found_by_its_listening_socket(engine: dockerd_private.Engine) -> None:
    data = table()
    status = next(s for s in data["sources"] if s["name"] == "docker")
    assert status["status"] == "ok", status
    expected = f"unix://{dockerd_private.SOCKET} (listening socket of dockerd pid {engine.pid}): 1 containers"
    assert expected in status["detail"], status
    [row] = [r for r in data["interfaces"] if r["workload"]["label"] == "docker/vpr-d1"]
    container = engine.client.containers.get("vpr-d1")
    assert row["workload"]["id"] == container.id and row["workload"]["networks"] == ["vpr-dnet"]
    eth0 = link_in(f"/proc/{container.attrs['State']['Pid']}/ns/net")
    peer = host_link(eth0["link_index"])
    assert peer is not None and row["peer"]["ifname"] == peer["ifname"] and row["peer"]["master"] == "vprdbr0"
    which = run_vethpeer("which", "vpr-d1", "--json", env={"DOCKER_HOST": ""})
    assert which.returncode == 0, which.stderr
    assert [r["peer"]["ifname"] for r in which.json()["interfaces"]] == [peer["ifname"]]


def test_swarm_overlay_sandboxes_named_after_their_network(engine: dockerd_private.Engine) -> None:
    """A single-node swarm on the private engine: its ingress sandbox and an overlay network's
    namespaces are named after their networks, and a container on the overlay gets its peer.

    Not run on this development machine unless asked (``VETHPEER_TEST_SWARM=1``; always in CI):
    swarm's gossip binds TCP and UDP 7946 on the advertise address, a port Docker does not let
    anyone choose, outside the ports this machine's sessions may use.
    """
    need(
        IN_CI or os.environ.get("VETHPEER_TEST_SWARM") == "1",
        "swarm binds port 7946 (not configurable); set VETHPEER_TEST_SWARM=1 where that is allowed",
    )
    engine.client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:19177", data_path_port=19178)
    engine.swarm = True
    engine.networks.append("vpr-ov")
    network = engine.client.networks.create("vpr-ov", driver="overlay", attachable=True)
    engine.run("vpr-ov1", "vpr-ov")
    data = table()
    labels = {r["workload"]["label"] for r in data["interfaces"]}
    assert "docker-network/vpr-ov" in labels and "docker-network/ingress-sbox" in labels, labels
    overlay = [r for r in data["interfaces"] if r["workload"]["label"] == "docker-network/vpr-ov"]
    assert all(r["workload"]["id"] == network.id for r in overlay)
    [row] = [
        r for r in data["interfaces"] if r["workload"]["label"] == "docker/vpr-ov1" and r["ifname"] == "eth0"
    ]
    assert (
        row["peer"]["workload"]["label"] == "docker-network/vpr-ov"
    )  # its veth's other end is in the sandbox
    status = next(s for s in data["sources"] if s["name"] == "docker-sandboxes")
    assert status["status"] == "ok", status
