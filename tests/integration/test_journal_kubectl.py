"""`kubectl vethpeer history` and `which --at` through a stand-in API server (tests/lab/kube_cluster.py:
no kube-apiserver can run here) whose pod proxy forwards to a real `vethpeer serve --journal`
that recorded a real `ip netns` namespace, now gone. The node's agent answers from its journal;
a second node whose agent does not know the target answers 404, which is not a failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab import journal_lab, kube_cluster
from tests.lab.journal_lab import JournalLab, gone, history, serving, temp_dir, wait_for
from tests.policy import need, need_binary

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, str, float]]:
    """(kubeconfig, the gone namespace's name, its host veth, a moment it was bound)."""
    need(os.geteuid() == 0, "needs root (real network namespaces)")
    need_binary("ip")
    monkeypatch.setattr(kube_cluster, "free_port", journal_lab.free_port)  # our port range
    with JournalLab() as lab, temp_dir() as folder:
        journal, other = folder / "node-0.sqlite", folder / "node-1.sqlite"
        (ns,), (veth,) = lab.netns_with_host_peers(["k"])
        with serving(journal) as node0:
            wait_for("the binding", lambda: history(journal, ns.name or ""))
            bound_at = time.time()
            lab.delete_netns([ns])
            lab.host_links.remove(veth)
            wait_for("the binding gone", lambda: gone(journal, ns.name or ""))
            # node-1's agent walks this same machine: started now, it never saw the namespace
            with serving(other) as node1, kube_cluster.cluster(nodes=["node-0", "node-1"]) as api:
                api.pods += [kube_cluster.agent_pod("node-0", 0), kube_cluster.agent_pod("node-1", 1)]
                api.backends = {"vethpeer-00000": node0.port, "vethpeer-00001": node1.port}
                with api.kubeconfig(namespace="default") as kubeconfig:
                    yield kubeconfig, ns.name or "", veth, bound_at


def plugin(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vethpeer.kubectl.plugin", *args, "--kubeconfig", kubeconfig],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )


def test_kubectl_vethpeer_history_and_which_at(world: Any) -> None:
    kubeconfig, name, veth, bound_at = world
    done = plugin(kubeconfig, "history", name)
    assert done.returncode == 0, done.stderr
    (row,) = [line.split() for line in done.stdout.splitlines()[1:]]
    assert row[0] == "node-0" and f"netns/{name}" in row and veth in row
    assert done.stderr == "", "node-1 knowing nothing of it is not a failure"

    done = plugin(kubeconfig, "which", veth, "--at", str(bound_at), "-o", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    (node,) = document["nodes"]
    assert (
        node["node"] == "node-0" and node["document"]["bindings"][0]["workload"]["label"] == f"netns/{name}"
    )

    done = plugin(kubeconfig, "which", veth, "--at=-1h")  # long before it was made
    assert done.returncode == 3 and "no node's journal has" in done.stderr
    done = plugin(kubeconfig, "history", "nothing-vqf")
    assert done.returncode == 3
    done = plugin(kubeconfig, "history", name, "--since", "soon")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
