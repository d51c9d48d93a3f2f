"""The node agent for real: the image built here (no registry), run by this machine's Docker engine
the way the DaemonSet runs it — host PIDs, all capabilities dropped but SYS_ADMIN and SYS_PTRACE,
read-only root filesystem, /run/netns with HostToContainer (rslave) propagation, the runtime
socket read-only — must show what the host's own `vethpeer table --json` shows: bind-mount-only
namespaces (`ip netns add`) and Docker containers included.

The only thing the DaemonSet has that this does not is the kubelet; the Kubernetes objects are
checked against the API schemas in tests/unit/test_deploy_manifests.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import table_json
from tests.lab.agent_image import agent_image
from tests.lab.common import busybox_rootfs_tar
from tests.lab.serve_lab import BridgeLab, free_port, get
from tests.policy import need, need_binary

pytestmark = pytest.mark.integration
BUSYBOX_IMAGE = "vethpeer-test/vps-busybox:1"
FLAGS = (  # what deploy/kubernetes/daemonset.yaml gives the container
    "--pid=host",
    "--cap-drop=ALL",
    "--cap-add=SYS_ADMIN",
    "--cap-add=SYS_PTRACE",
    "--read-only",
    "--tmpfs=/tmp",
    "--tmpfs=/var/lib/vethpeer:mode=0700",  # the DaemonSet's hostPath for the journal
    "--security-opt=no-new-privileges",
    "--mount=type=bind,source=/run/netns,target=/run/netns,readonly,bind-propagation=rslave",
    "--mount=type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock,readonly",
)


def docker(*args: str, stdin: bytes | None = None, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], input=stdin, capture_output=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:4])}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode(errors="replace")


def busybox_image() -> str:
    if subprocess.run(["docker", "image", "inspect", BUSYBOX_IMAGE], capture_output=True).returncode != 0:
        docker("import", "-", BUSYBOX_IMAGE, stdin=busybox_rootfs_tar())
    return BUSYBOX_IMAGE


@pytest.fixture(scope="module")
def engine() -> Iterator[None]:
    """The machine's Docker engine: the system's when it runs (never stopped here), else one the
    docker lab starts for this module and stops afterwards (CI starts with no engine running)."""
    from tests.lab import docker_lab

    need_binary("docker")
    need(os.access(docker_lab.DOCKERD, os.X_OK), f"needs {docker_lab.DOCKERD} (apt-get install docker.io)")
    daemon = docker_lab.ensure_dockerd()
    try:
        need(
            subprocess.run(["docker", "info"], capture_output=True).returncode == 0,
            "needs a running Docker engine",
        )
        yield
    finally:
        daemon.stop()


@contextlib.contextmanager
def containers(tag: str, count: int) -> Iterator[list[str]]:
    names = [f"vps-ct-{tag}-{i}" for i in range(count)]
    try:
        for name in names:
            docker("run", "-d", "--name", name, busybox_image(), "sleep", "3600")
        yield names
    finally:
        for name in names:
            docker("rm", "-f", name, check=False)


@contextlib.contextmanager
def agent(image: str, tag: str) -> Iterator[int]:
    port = free_port()
    name = f"vps-agent-{tag}"
    try:
        docker(
            "run", "-d", "--name", name, *FLAGS, "-p", f"127.0.0.1:{port}:10098",
            image, "--listen", "0.0.0.0:10098", "--no-kube", "--min-interval", "1",
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if get(port, "/readyz", timeout=2).status == 200:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("agent not ready: " + docker("logs", name, check=False))
        yield port
    finally:
        logs = docker("logs", name, check=False)
        docker("rm", "-f", name, check=False)
        assert "Traceback" not in logs, logs


def host_table() -> dict[str, Any]:
    return table_json("--no-kube")


def ours(document: dict[str, Any], inodes: set[int]) -> list[dict[str, Any]]:
    return sorted(
        (e for e in document["interfaces"] if e["netns"]["inode"] in inodes),
        key=lambda e: (e["netns"]["inode"], e["ifname"]),
    )


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Paths where two JSON values differ (a readable assertion)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(a.keys() | b.keys())
        return [d for k in keys for d in differences(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def inode_of_container(name: str) -> int:
    pid = docker("inspect", "-f", "{{.State.Pid}}", name).strip()
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def test_the_agent_in_a_container_sees_what_the_host_sees(engine: None) -> None:
    image = agent_image()
    tag = secrets.token_hex(2)
    with BridgeLab(2) as lab, containers(tag, 2) as names, agent(image, tag) as port:
        inodes = {m.inode for m in lab.members} | {inode_of_container(n) for n in names}
        for _attempt in range(3):  # other labs on this machine mount and unmount the host netns meanwhile
            time.sleep(1.1)  # past --min-interval: the agent walks again
            served = get(port, "/api/v1/table").json()
            host = host_table()
            mine, theirs = ours(served, inodes), ours(host, inodes)
            if not differences(mine, theirs):
                break
        assert served["schema_version"] == host["schema_version"]
        assert len(mine) == 4, [e["workload"]["label"] for e in mine]
        assert differences(mine, theirs) == []
        labels = {e["workload"]["label"] for e in mine}
        assert labels == {f"netns/{m.netns}" for m in lab.members} | {f"docker/{n}" for n in names}
        bind_only = [e for e in mine if e["workload"]["kind"] == "netns"]
        assert all(e["netns"]["pids"] == [] and e["netns"]["names"] for e in bind_only)

        text = get(port, "/metrics").body.decode()
        info = {
            s.labels["device"]: s.labels
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "vethpeer_interface_info"
        }
        for entry in theirs:
            device = entry["peer"]["ifname"]
            assert info[device]["workload"] == entry["workload"]["label"]
            assert info[device]["netns_inode"] == str(entry["netns"]["inode"])
        for n in names:
            (row,) = [s for s in info.values() if s.get("container") == n]
            assert row["workload_kind"] == "docker"


def test_the_image_build_is_cached_by_its_inputs(engine: None) -> None:
    first = agent_image()
    start = time.monotonic()
    assert agent_image() == first
    assert time.monotonic() - start < 120  # wheels are rebuilt (cheap), the image is not
