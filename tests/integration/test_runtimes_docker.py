"""Docker engines found without being told: a private dockerd of our own on a socket that is
not the default one (tests/lab/private_dockerd.py: ``/run/vpx-d<tag>/docker.sock``), with no
``--docker-host`` or ``$DOCKER_HOST``; its containers are named next to the system engine's (if
one runs)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import run_vethpeer, table_json
from tests.lab import docker_lab
from tests.lab.cri_lab import host_link, link_in
from tests.lab.private_dockerd import BRIDGE_NAME_OPTION, PREFIX, PrivateDockerd, private_dockerd
from tests.policy import IN_CI, need, need_binary

pytestmark = pytest.mark.integration

NETWORK, CONTAINER = f"{PREFIX}-dnet", f"{PREFIX}-d1"
Engine = tuple[PrivateDockerd, Any]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """The private engine with one container on a network of its own; removed afterwards, pass or
    fail (private_dockerd() asserts that nothing was left). No live restore: swarm refuses it."""
    need(os.geteuid() == 0, "needs root (dockerd)")
    need(os.path.exists(docker_lab.DOCKERD), "needs dockerd (apt-get install docker.io)")
    need_binary("containerd")
    with private_dockerd(live_restore=False) as (daemon, client):
        daemon.network(client, NETWORK, "10.231.79.0/24")
        daemon.run(client, CONTAINER, network=NETWORK)
        yield daemon, client


def table() -> dict[str, Any]:
    """The table with nothing telling vethpeer where the engine is."""
    return table_json(env={"DOCKER_HOST": ""})


def test_private_dockerd_found_by_its_listening_socket(engine: Engine) -> None:
    daemon, client = engine
    data = table()
    status = next(s for s in data["sources"] if s["name"] == "docker")
    assert status["status"] == "ok", status
    expected = f"unix://{daemon.socket} (listening socket of dockerd pid {daemon.pid}): 1 containers"
    assert expected in status["detail"], status
    [row] = [r for r in data["interfaces"] if r["workload"]["label"] == f"docker/{CONTAINER}"]
    container = client.containers.get(CONTAINER)
    assert row["workload"]["id"] == container.id and row["workload"]["networks"] == [NETWORK]
    bridge = client.networks.get(NETWORK).attrs["Options"][BRIDGE_NAME_OPTION]
    eth0 = link_in(f"/proc/{container.attrs['State']['Pid']}/ns/net")
    peer = host_link(eth0["link_index"])
    assert peer is not None and row["peer"]["ifname"] == peer["ifname"] and row["peer"]["master"] == bridge
    which = run_vethpeer("which", CONTAINER, "--json", env={"DOCKER_HOST": ""})
    assert which.returncode == 0, which.stderr
    assert [r["peer"]["ifname"] for r in which.json()["interfaces"]] == [peer["ifname"]]


def test_swarm_overlay_sandboxes_named_after_their_network(engine: Engine) -> None:
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
    daemon, client = engine
    client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:19177", data_path_port=19178)
    daemon.swarm = True
    overlay_name = f"{PREFIX}-ov"  # removed with the engine's other networks (its prefix)
    network = client.networks.create(overlay_name, driver="overlay", attachable=True)
    daemon.run(client, f"{PREFIX}-ov1", network=overlay_name)
    data = table()
    labels = {r["workload"]["label"] for r in data["interfaces"]}
    assert f"docker-network/{overlay_name}" in labels and "docker-network/ingress-sbox" in labels, labels
    overlay = [r for r in data["interfaces"] if r["workload"]["label"] == f"docker-network/{overlay_name}"]
    assert all(r["workload"]["id"] == network.id for r in overlay)
    [row] = [
        r
        for r in data["interfaces"]
        if r["workload"]["label"] == f"docker/{PREFIX}-ov1" and r["ifname"] == "eth0"
    ]
    assert (
        row["peer"]["workload"]["label"] == f"docker-network/{overlay_name}"
    )  # its veth's other end is in the sandbox
    status = next(s for s in data["sources"] if s["name"] == "docker-sandboxes")
    assert status["status"] == "ok", status
