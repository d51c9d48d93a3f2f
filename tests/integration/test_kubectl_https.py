"""`kubectl vethpeer` over https: the real kubectl, the stand-in API server's pod proxy (a fake:
no kube-apiserver binary can run here, see tests/lab/kube_api.py), and a real `vethpeer serve`
with `--kube-auth` and a TLS-only web config, as the DaemonSet would run it with TLS."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.lab.kube_api import self_signed
from tests.lab.kube_cluster import PROXY_SOURCE, agent_pod, cluster
from tests.lab.serve_lab import PYTHON, ROOT, BridgeLab, free_port
from tests.lab.tls_lab import htpasswd_hash, pki, secured
from tests.policy import need_binary
from tests.tools import find_tool

pytestmark = pytest.mark.integration

AGENT = "vethpeer-00000"
PROXY = f"/api/v1/namespaces/vethpeer/pods/https:{AGENT}:10098/proxy"


def test_kubectl_vethpeer_reaches_a_tls_agent_through_the_pod_proxy() -> None:
    kubectl = need_binary("kubectl")
    plugin = find_tool("kubectl-vethpeer", python_tool=True)
    assert plugin, "kubectl-vethpeer is installed beside the interpreter (scripts/install --test)"
    with (
        tempfile.TemporaryDirectory(prefix="vqc-plugin-") as bin_dir,
        pki() as made,
        BridgeLab(1, prefix="vqc") as lab,
        self_signed("vqc") as tls,
        cluster(nodes=["node-t"], port=free_port(21200, 21299), tls=tls) as api,
        api.kubeconfig() as kubeconfig,
    ):
        os.symlink(plugin, Path(bin_dir) / "kubectl-vethpeer")  # plugin discovery through PATH
        api.pods.append(agent_pod("node-t", 0, port_name="https-metrics"))
        config = {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"}}
        checked = ("--kube-auth", "--kube-auth-kubeconfig", kubeconfig)
        proxy = ("--kube-auth-proxy-cidr", f"{PROXY_SOURCE}/32")
        with secured(made, config, *checked, *proxy, "--min-interval", "60") as agent:
            api.backends = {AGENT: agent.port}
            env = {
                **os.environ,
                "PATH": f"{bin_dir}:{os.environ['PATH']}",
                "KUBECONFIG": kubeconfig,
                "HOME": bin_dir,
            }
            table = subprocess.run(
                [kubectl, "vethpeer", "table", "--node", "node-t"],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            assert table.returncode == 0, table.stderr
            assert lab.members[0].host_veth in table.stdout
            assert any(f"{PROXY}/" in r for r in api.requests), "the plugin went through https:NAME:PORT"
            raw = subprocess.run(
                [kubectl, "get", "--raw", f"{PROXY}/api/v1/table"],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            assert raw.returncode == 0, raw.stderr
            assert lab.members[0].host_veth in raw.stdout


def test_basic_auth_users_with_kube_auth_is_refused_at_start() -> None:
    with pki() as made:
        config = {
            "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
            "basic_auth_users": {"prometheus": htpasswd_hash("prometheus", "x")},
        }
        path = made.write_config(config, "users.yml")
        both = subprocess.run(
            [PYTHON, "-m", "vethpeer", "serve", "--kube-auth", "--web-config-file", str(path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    assert both.returncode == 2, both.stderr
    assert len(both.stderr.strip().splitlines()) == 1, both.stderr
