"""CRI endpoints found without being told: a real containerd with CRI on a socket path outside
vethpeer's fixed probe list (``/run/vpr-containerd/containerd.sock``), and no
``--runtime-endpoint`` or ``$CONTAINER_RUNTIME_ENDPOINT`` saying where it is.

The containerd, its pods and the CNI bridge are the CRI lab's (tests/lab/cri_lab.py), run
under this module's own names (prefix ``vpr``: bridge ``vprcni0``, cgroups under ``/vpr``).
The kubelet test uses a stand-in process whose command name is ``kubelet`` (a shell script
of that name: no kubelet binary is installable here); what vethpeer reads from it — its
command line and its ``--config`` file — is exactly what a real kubelet shows.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Cli, run_vethpeer
from tests.lab import cri_lab
from tests.lab.cri_lab import Lab, Pod, host_link, link_in
from tests.policy import need, need_files
from vethpeer.sources import Paths

pytestmark = pytest.mark.integration

NAME = "vpr"
SOCKET = f"/run/{NAME}-containerd/containerd.sock"


def _have_lab() -> None:
    need(os.geteuid() == 0, "needs root (containerd, network namespaces)")
    need_files(cri_lab.BINARIES, cri_lab.INSTALL)
    need_files([cri_lab.BUSYBOX], "apt-get install busybox-static")


@pytest.fixture(scope="module")
def crilab() -> Iterator[Lab]:
    _have_lab()
    with pytest.MonkeyPatch.context() as patch:
        # The lab's own names, so that this module never meets another run of the CRI tests.
        patch.setattr(cri_lab, "Containerd", functools.partial(cri_lab.Containerd, name=NAME))
        patch.setattr(cri_lab, "BRIDGE", f"{NAME}cni0")
        patch.setattr(cri_lab, "CNI_NETWORK", f"{NAME}-net")
        patch.setattr(cri_lab, "SUBNET", "10.231.77.0/24")
        patch.setattr(cri_lab, "CGROUP_ROOT", NAME)
        with cri_lab.cri_lab() as lab:
            assert lab.containerd.socket == SOCKET
            yield lab
        # leftovers() also lists the CRI lab's own vpk paths: another session's run, not ours.
        left = [x for x in cri_lab.leftovers() if "vpk" not in x]
        left += [p for p in (f"/run/{NAME}-containerd", f"/var/lib/{NAME}-containerd") if os.path.exists(p)]
    assert not left, f"the CRI lab left traces behind: {left}"


@pytest.fixture(scope="module")
def pod(crilab: Lab) -> Pod:
    return crilab.run_pod("vpr-web", "vpr-a", containers=("app",))


def table(*args: str) -> Cli:
    """The CLI with nothing telling it where the runtime is."""
    env = {"CONTAINER_RUNTIME_ENDPOINT": "", "HOME": "/nonexistent-vpr-home", "KUBECONFIG": ""}
    return run_vethpeer(*args, env=env)


def cri_status(data: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in data["sources"] if s["name"] == "cri")
    return found


def rows_of(data: dict[str, Any], label: str) -> list[dict[str, Any]]:
    return [i for i in data["interfaces"] if i["workload"]["label"] == label]


def test_socket_outside_the_fixed_list_is_found(crilab: Lab, pod: Pod) -> None:
    assert SOCKET not in [path for _, path in Paths().cri_sockets]
    done = table("table", "--json")
    assert done.returncode == 0, done.stderr
    data = done.json()
    status = cri_status(data)
    assert status["status"] == "ok", status
    assert (
        f"at {SOCKET} (listening socket of containerd pid {crilab.containerd.pid}): 1 ready pod"
        in status["detail"]
    )
    rows = rows_of(data, "pod/vpr-a/vpr-web")
    assert [r["ifname"] for r in rows] == ["eth0"], data["interfaces"]
    row = rows[0]
    assert row["workload"]["source"] == "cri" and row["workload"]["containers"] == ["app"]
    eth0 = link_in(crilab.netns_paths[pod.id])  # the kernel's own view
    peer = host_link(eth0["link_index"])
    assert peer is not None
    assert row["peer"]["ifname"] == peer["ifname"] and row["peer"]["relation"] == "veth"
    assert row["peer"]["master"] == f"{NAME}cni0"

    which = table("which", "vpr-a/vpr-web", "--json")
    assert which.returncode == 0, which.stderr
    [hit] = which.json()["interfaces"]
    assert hit["peer"]["ifname"] == peer["ifname"]


def test_docker_containerd_without_cri_is_passed_over(crilab: Lab, pod: Pod) -> None:
    """Several containerds listen; the one that answers CRI names the pods, others are skipped."""
    plain = cri_lab.Containerd(name=f"{NAME}-nocri", cri=False)
    try:
        plain.start()
        data = table("table", "--json").json()
    finally:
        plain.destroy()
    status = cri_status(data)
    assert status["status"] == "ok", status
    assert plain.socket not in status["detail"]  # UNIMPLEMENTED: not a CRI runtime, not an error
    assert rows_of(data, "pod/vpr-a/vpr-web")


@pytest.fixture
def kubelet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    """A process named ``kubelet`` whose --config file names our socket (a stand-in, see above)."""
    base = Path(f"/tmp/{NAME}-kubelet")
    base.mkdir(exist_ok=True)
    config = base / "config.yaml"
    config.write_text(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
        f'containerRuntimeEndpoint: "unix://{SOCKET}"\ncgroupDriver: cgroupfs\n'
    )
    script = base / "kubelet"
    script.write_text("#!/bin/sh\nsleep 600\n")
    script.chmod(0o755)
    proc = subprocess.Popen([str(script), f"--config={config}", "--v=2"], start_new_session=True)
    try:
        for _ in range(50):
            if Path(f"/proc/{proc.pid}/comm").read_text().strip() == "kubelet":
                break
            time.sleep(0.02)
        yield proc
    finally:
        os.killpg(proc.pid, 9)  # the script and its sleep: a process group we made
        proc.wait(5)
        for path in (script, config):
            path.unlink(missing_ok=True)
        base.rmdir()


def test_kubelet_config_names_the_endpoint(crilab: Lab, pod: Pod, kubelet: subprocess.Popen[bytes]) -> None:
    data = table("table", "--json").json()
    status = cri_status(data)
    expected = (
        f"at {SOCKET} (from kubelet config /tmp/{NAME}-kubelet/config.yaml (kubelet pid {kubelet.pid}))"
    )
    assert expected in status["detail"], status
    assert rows_of(data, "pod/vpr-a/vpr-web")
