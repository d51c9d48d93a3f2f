"""The real `kubectl`: plugin discovery (`kubectl vethpeer ...` finds `kubectl-vethpeer` on PATH) and
`kubectl get --raw` through the pod proxy, against the stand-in API server (tests/lab/kube_cluster.py:
no kube-apiserver can run here) forwarding to real `vethpeer serve` agents, so the kubeconfig,
context and proxy handling are kubectl's own.

The agents: node-a runs ``--kube-auth --kube-auth-proxy-cidr 127.0.0.3/32`` (the stand-in's proxy
address), node-b ``--kube-auth`` trusting no proxy, node-c no authentication. The stand-in serves
https with a certificate made for the test (kubectl sends a bearer token only over TLS); its
proxy, like kube-apiserver's, forwards without the user's Authorization header. Loopback only, ports
21200-21299, names prefixed ``vqc``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.kube_api import self_signed
from tests.lab.kube_cluster import PROXY_SOURCE, Cluster, agent_pod, cluster
from tests.lab.serve_lab import BridgeLab, free_port, serve
from tests.policy import need_binary
from tests.tools import find_tool

pytestmark = pytest.mark.integration


def port() -> int:
    return free_port(21200, 21299)


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[BridgeLab, Cluster, str, dict[str, str]]]:
    kubectl = need_binary("kubectl")
    plugin = find_tool("kubectl-vethpeer", python_tool=True)
    assert plugin is not None, "kubectl-vethpeer is not installed in the test environment (scripts/install)"
    with (
        tempfile.TemporaryDirectory(prefix="vqc-plugin-") as bin_dir,
        BridgeLab(1, prefix="vqc") as lab,
        self_signed("vqc") as tls,
        cluster(nodes=["node-a", "node-b", "node-c"], port=port(), tls=tls) as api,
        api.kubeconfig() as kubeconfig,
    ):
        os.symlink(plugin, Path(bin_dir) / "kubectl-vethpeer")
        api.pods += [agent_pod(node, i) for i, node in enumerate(("node-a", "node-b", "node-c"))]
        auth = ("--kube-auth", "--kube-auth-kubeconfig", kubeconfig)
        common = ("--no-kube", "--min-interval", "60")
        with (
            serve(*auth, "--kube-auth-proxy-cidr", f"{PROXY_SOURCE}/32", *common, port=port()) as a,
            serve(*auth, *common, port=port()) as b,
            serve(*common, port=port()) as c,
        ):
            api.backends = {"vethpeer-00000": a.port, "vethpeer-00001": b.port, "vethpeer-00002": c.port}
            env = {
                **os.environ,
                "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                "KUBECONFIG": kubeconfig,
                "HOME": bin_dir,  # kubectl's cache, not the machine's ~/.kube
            }
            yield lab, api, kubectl, env


def kubectl(world: Any, *args: str) -> subprocess.CompletedProcess[str]:
    _lab, _api, binary, env = world
    return subprocess.run([binary, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_kubectl_finds_the_plugin_on_path(world: Any) -> None:
    done = kubectl(world, "plugin", "list")
    assert "kubectl-vethpeer" in done.stdout, done.stdout + done.stderr


def test_kubectl_vethpeer_table_through_the_proxy_of_a_kube_auth_agent(world: Any) -> None:
    lab, _api, _kubectl, _env = world
    done = kubectl(world, "vethpeer", "table", "-A", "--context", "vps")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    veth = lab.members[0].host_veth
    assert any(r[0] == "node-a" and veth in r for r in rows), done.stdout  # --kube-auth, proxy trusted
    assert any(r[0] == "node-c" and veth in r for r in rows), done.stdout  # no authentication
    # node-b trusts no proxy: its 401 is a line that says what to do, not a traceback
    assert "node node-b: unauthorized: agent vethpeer-00001 wants a bearer token" in done.stderr
    assert "--kube-auth-proxy-cidr" in done.stderr and "Traceback" not in done.stderr


def test_a_user_without_pods_proxy_gets_told_what_to_grant(world: Any) -> None:
    _lab, api, _kubectl, _env = world
    api.proxy_forbidden = True
    try:
        done = kubectl(world, "vethpeer", "table", "--node", "node-c")
    finally:
        api.proxy_forbidden = False
    assert done.returncode == 7, done.stderr
    assert "node node-c: forbidden: the API server refused the pod proxy" in done.stderr
    assert "grant get on pods/proxy in namespace vethpeer" in done.stderr


def test_kubectl_get_raw_reaches_an_agents_metrics_through_the_pod_proxy(world: Any) -> None:
    lab, _api, _kubectl, _env = world
    done = kubectl(
        world, "get", "--raw", "/api/v1/namespaces/vethpeer/pods/vethpeer-00002:10098/proxy/metrics"
    )
    assert done.returncode == 0, done.stderr
    assert f'device="{lab.members[0].host_veth}"' in done.stdout


def test_kubectl_get_raw_and_a_kube_auth_agent(world: Any) -> None:
    lab, _api, _kubectl, _env = world
    base = "/api/v1/namespaces/vethpeer/pods/vethpeer-00000:10098/proxy"
    table = kubectl(world, "get", "--raw", f"{base}/api/v1/table")
    assert table.returncode == 0, table.stderr
    assert lab.members[0].host_veth in table.stdout
    # /metrics is never open to the proxy's address: a scrape needs a token of its own
    metrics = kubectl(world, "get", "--raw", f"{base}/metrics")
    assert metrics.returncode != 0 and "vethpeer_interface_info" not in metrics.stdout
    # (kubectl words the agent's 401, passed through by the proxy, as its own: docs/cluster.md says so)
    assert "You must be logged in to the server" in metrics.stderr, metrics.stderr


def test_the_stand_in_proxy_does_not_forward_the_users_token(world: Any) -> None:
    _lab, api, _kubectl, _env = world
    before = len(api.reviews.calls)
    assert kubectl(world, "vethpeer", "table", "--node", "node-a").returncode == 0
    # the agent got no token to review (the user's went to the API server only) and took the
    # request by the proxy's address
    assert len(api.reviews.calls) == before


def test_a_closed_pipe_is_silent(world: Any) -> None:
    _lab, _api, _kubectl, env = world
    env = {k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}  # buffered, as in a user's shell
    done = subprocess.run(
        "kubectl-vethpeer table --node node-c | head -c 0",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.stderr == "", done.stderr


def test_debug_shows_the_traceback_and_without_it_one_line(world: Any) -> None:
    plain = kubectl(world, "vethpeer", "table", "-A", "--kubeconfig", "/nonexistent/vqc.yaml")
    assert plain.returncode == 1 and plain.stderr.count("\n") == 1, plain.stderr
    assert plain.stderr.startswith("kubectl vethpeer: cannot load the Kubernetes configuration")
    debug = kubectl(world, "vethpeer", "table", "-A", "--kubeconfig", "/nonexistent/vqc.yaml", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
