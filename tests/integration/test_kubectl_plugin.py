"""`kubectl vethpeer` against a stand-in API server (tests/lab/kube_cluster.py — no kube-apiserver
can run here) whose pod proxy forwards to real `vethpeer serve` processes, one per simulated node,
walking this machine's real namespaces. Node "node-2"'s agent accepts connections and never
answers; "node-3" has no agent pod: both must be status lines, not failures of the whole table.

The pod for `which` is real too, as far as this machine allows: a process in a lab namespace,
in a cgroup named the way kubelet's cgroupfs driver names a pod's (under a ``vps-`` cgroup),
which the agent (with the kube source pointed at the stand-in) names from the API by its UID.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.kube_api import pod_json
from tests.lab.kube_cluster import Cluster, agent_pod, cluster
from tests.lab.serve_lab import (
    PIDS_CGROUP,
    PYTHON,
    ROOT,
    BridgeLab,
    Served,
    free_port,
    get,
    pod_process,
    serve,
)

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts (the kernel completes the handshake) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", free_port()))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[BridgeLab, Cluster, str, dict[str, Served]]]:
    if not PIDS_CGROUP.is_dir():
        pytest.skip("needs the cgroup v1 pids hierarchy for the pod's cgroup")  # (this machine has it)
    uid = str(uuid.uuid4())
    with BridgeLab(2) as lab, cluster(nodes=["node-0", "node-1", "node-2", "node-3"]) as api:
        api.pods += [agent_pod(f"node-{i}", i) for i in range(3)]
        api.pods.append(pod_json("web-1", "shop", uid, node="node-0", pod_ip=lab.members[0].address))
        with (
            api.kubeconfig(namespace="shop") as kubeconfig,
            pod_process(lab.members[0].netns, uid),
            silent_listener() as hung,
        ):
            env = {"KUBECONFIG": kubeconfig, "NODE_NAME": "node-0"}
            with (
                # the kube source's budget includes importing the kubernetes client: seconds
                # on a loaded machine, and this one walk (60 s reuse) must name the pod
                serve("--kube", "--min-interval", "60", "--timeout", "15", env=env) as node0,
                serve("--no-kube", "--min-interval", "60") as node1,
            ):
                api.backends = {
                    "vethpeer-00000": node0.port,
                    "vethpeer-00001": node1.port,
                    "vethpeer-00002": hung,
                }
                yield lab, api, kubeconfig, {"node-0": node0, "node-1": node1}


def plugin(kubeconfig: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "vethpeer.kubectl.plugin", *args, "--kubeconfig", kubeconfig],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=timeout,
        check=False,
    )


def test_table_across_every_node_with_per_node_status_lines(world: Any) -> None:
    lab, _api, kubeconfig, _agents = world
    start = time.monotonic()
    done = plugin(kubeconfig, "table", "-A", "--timeout", "2")
    took = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["NODE", "NAMESPACE", "WORKLOAD"]
    for node in ("node-0", "node-1"):
        for m in lab.members:
            assert any(line.split()[0] == node and m.host_veth in line.split() for line in lines), (node, m)
    assert "node node-2: unreachable: no answer within 2 s" in done.stderr
    assert "node node-3: no agent" in done.stderr
    assert took < 10, took  # the silent node costs one per-node timeout, concurrently


def test_table_of_one_node_as_json_is_the_agents_document(world: Any) -> None:
    _lab, _api, kubeconfig, agents = world
    done = plugin(kubeconfig, "table", "--node", "node-1", "-o", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["kind"] == "table" and [n["node"] for n in document["nodes"]] == ["node-1"]
    assert document["nodes"][0]["document"] == get(agents["node-1"].port, "/api/v1/table").json()


def test_wide_output_has_the_addresses(world: Any) -> None:
    lab, _api, kubeconfig, _agents = world
    done = plugin(kubeconfig, "table", "--node", "node-1", "-o", "wide")
    assert done.returncode == 0 and "ADDRESSES" in done.stdout.splitlines()[0]
    assert f"{lab.members[1].address}/15" in done.stdout


def test_which_pod_finds_its_node_and_host_veth(world: Any) -> None:
    lab, api, kubeconfig, _agents = world
    for args in (["which", "pod/web-1", "-n", "shop"], ["which", "shop/web-1"], ["which", "web-1"]):
        done = plugin(kubeconfig, *args)
        assert done.returncode == 0, (args, done.stderr)
        (row,) = [line.split() for line in done.stdout.splitlines()[1:]]
        assert row[:5] == ["node-0", "shop", "web-1", "eth0", lab.members[0].host_veth], row
    assert any("/pods/vethpeer-00000:10098/proxy/api/v1/which/" in r for r in api.requests)
    done = plugin(kubeconfig, "which", "shop/web-1", "-o", "json")
    document = json.loads(done.stdout)
    assert document["schema_version"] == 1
    assert document["interfaces"][0]["workload"]["uid"] == api.pods[-1]["metadata"]["uid"]


def test_which_a_missing_pod_is_not_found(world: Any) -> None:
    _lab, _api, kubeconfig, _agents = world
    done = plugin(kubeconfig, "which", "pod/nope", "-n", "shop")
    assert done.returncode == 3 and 'pod "nope" not found in namespace "shop"' in done.stderr


def test_doctor_of_one_node(world: Any) -> None:
    lab, _api, kubeconfig, _agents = world
    deadline = time.monotonic() + 20
    while True:  # the agent's checks follow its first walk
        done = plugin(kubeconfig, "doctor", "--node", "node-1")
        if "no-default-route" in done.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert done.returncode == 0, done.stderr
    assert any(
        f"netns/{lab.members[1].netns}" in line and "node-1" in line for line in done.stdout.splitlines()
    )


def test_no_agent_answering_is_an_error(world: Any) -> None:
    _lab, _api, kubeconfig, _agents = world
    done = plugin(kubeconfig, "table", "--node", "node-3")
    assert done.returncode == 7 and "node node-3: no agent" in done.stderr


def test_usage_and_configuration_errors_are_one_line(world: Any, tmp_path: Path) -> None:
    _lab, _api, kubeconfig, _agents = world
    done = plugin(kubeconfig, "table")
    assert done.returncode == 2 and "--node NODE, or -A" in done.stderr
    missing = plugin(str(tmp_path / "none.yaml"), "table", "-A")
    assert missing.returncode == 1 and "cannot load the Kubernetes configuration" in missing.stderr
    assert "Traceback" not in done.stderr + missing.stderr
