"""`vethpeer serve -n shop` as a real process over real namespaces: two pods, `shop/web-1` and
`team-b/db-1`, each a process in a lab namespace, in a cgroup named the way kubelet's cgroupfs
driver names a pod's (under a ``vpsc-`` cgroup), named from the Kubernetes API by its UID. The API
is the loopback stand-in of tests/lab/kube_api.py: no kube-apiserver can run here.

Everything is named ``vpsc*`` (namespaces, veths, bridge, cgroups) and removed afterwards; the
servers listen on 127.0.0.1, ports 10340-10359.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.lab.kube_api import ApiServer, pod_json
from tests.lab.serve_lab import PIDS_CGROUP, BridgeLab, Served, get, pod_process, serve
from tests.policy import need, need_binary, need_root

pytestmark = pytest.mark.integration
PREFIX = "vpsc"
PORTS = range(10340, 10360)
NODE = "vpsc-node"


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind(("127.0.0.1", port))
            return port
    raise RuntimeError(f"no free port in {PORTS}")


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[BridgeLab, Served]]:
    need_root()
    need_binary("ip")
    need(PIDS_CGROUP.is_dir(), "needs the cgroup v1 pids hierarchy for the pods' cgroups")
    shop, other = str(uuid.uuid4()), str(uuid.uuid4())
    api = ApiServer(port=free_port())
    api.start()
    try:
        with BridgeLab(2, prefix=PREFIX) as lab:
            api.pods += [
                pod_json("web-1", "shop", shop, node=NODE, pod_ip=lab.members[0].address),
                pod_json("db-1", "team-b", other, node=NODE, pod_ip=lab.members[1].address),
            ]
            with (
                api.kubeconfig() as kubeconfig,
                pod_process(lab.members[0].netns, shop, PREFIX),
                pod_process(lab.members[1].netns, other, PREFIX),
                serve(
                    "-n",
                    "shop",
                    "--kube",
                    "--min-interval",
                    "60",
                    "--timeout",
                    "15",  # the kubernetes client's import and first request alone take 2 s, more under load
                    "--docker-host",
                    "unix:///nonexistent/vpsc-docker.sock",
                    port=free_port(),
                    env={"KUBECONFIG": kubeconfig, "NODE_NAME": NODE},
                ) as served,
            ):
                yield lab, served
    finally:
        api.stop()


def samples(text: str, name: str) -> list[Any]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def test_a_server_scoped_to_one_namespace_shows_only_its_pod(world: tuple[BridgeLab, Served]) -> None:
    lab, served = world
    shop, other = lab.members
    text = get(served.port, "/metrics").body.decode()
    assert {s.labels["source"]: s.value for s in samples(text, "vethpeer_source_up")}["kube"] == 1, text
    info = {s.labels["device"]: s.labels for s in samples(text, "vethpeer_interface_info")}
    assert set(info) == {shop.host_veth}, "only shop's pod, not team-b's nor any other namespace on the host"
    assert (info[shop.host_veth]["namespace"], info[shop.host_veth]["pod"]) == ("shop", "web-1")
    received = samples(text, "vethpeer_workload_network_receive_packets_total")
    assert {s.labels["device"] for s in received} == {shop.host_veth}
    assert {s.labels.get("namespace") for s in samples(text, "vethpeer_finding")} <= {"shop"}
    assert samples(text, "vethpeer_walk_namespaces")[0].value >= 3  # the walk itself read every namespace

    table = get(served.port, "/api/v1/table").json()
    assert [e["netns"]["inode"] for e in table["interfaces"] if e["ifname"] == "eth0"] == [shop.inode]
    assert {w["workload"]["namespace"] for w in table["workloads"]} == {"shop"}
    assert get(served.port, "/api/v1/table?namespace=shop").json()["interfaces"] == table["interfaces"]

    which = get(served.port, f"/api/v1/which/{shop.host_veth}")
    assert which.status == 200
    assert {e["workload"]["label"] for e in which.json()["interfaces"]} == {"pod/shop/web-1"}
    for target in (other.host_veth, other.address, "team-b%2Fdb-1"):
        assert get(served.port, f"/api/v1/which/{target}").status == 404, target
    for path in ("/api/v1/table", "/api/v1/which/db-1", "/api/v1/doctor"):
        refused = get(served.port, f"{path}?namespace=team-b")
        assert refused.status == 403 and refused.json()["error"]["namespace"] == "shop", path
        assert b"db-1" not in refused.body
    assert "only Kubernetes namespace shop" in served.stderr()
