"""A nested runtime: containerd with CRI running in a mount namespace of its own, as inside a
kind/k3d node container, its socket and its pods' netns files on a tmpfs the host cannot
see. vethpeer finds the pods through their processes, the runtime through its listening
socket, and reaches both through ``/proc/PID/root`` (no flag, no environment variable).

What is not a kind node here: the node's network namespace (the containerd shares the
host's, so the pods' veths are on a bridge in the host namespace) and its image (no
registry: the CRI lab's containerd, config and pause image are reused).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import run_vethpeer
from tests.lab import cri_lab
from tests.lab.cri_lab import CriLabError, Lab, Pod, host_link, link_in
from tests.lab.daemons import spawn, wait_answering
from tests.policy import need, need_files

pytestmark = pytest.mark.integration

NAME = "vpr-nest"
INSIDE = f"/run/{NAME}-containerd/containerd.sock"  # what the nested containerd itself sees


class NestedContainerd(cri_lab.Containerd):
    """The lab's containerd, started by ``unshare --mount`` over a private tmpfs of its state dir."""

    def start(self, timeout: float = 30.0) -> None:
        if self.is_running():
            return
        net_d = f"{self.etc}/net.d"
        os.makedirs(net_d, exist_ok=True)
        os.makedirs(self.state, exist_ok=True)
        Path(f"{net_d}/10-{cri_lab.CNI_NETWORK}.conflist").write_text(cri_lab._cni_conflist())
        config = f"{self.etc}/config.toml"
        Path(config).write_text(cri_lab._config_toml(self.root, self.state, INSIDE, net_d, self.cri))
        script = (
            f"mount -t tmpfs {NAME} {self.state} && mkdir -p /run/netns && "
            f"mount -t tmpfs {NAME}-netns /run/netns && exec {cri_lab.CONTAINERD} --config {config}"
        )
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        self._proc = spawn(argv, self.log_path)
        self.pid = self._proc.pid  # sh execs containerd: same PID
        problem = wait_answering(self._proc, self._up, timeout, interval=0.1)
        if problem is not None:
            self.stop()
            raise CriLabError(f"nested containerd {problem}: {self.log_tail()}")

    @property
    def socket(self) -> str:
        return f"/proc/{self.pid}/root{INSIDE}" if self.pid else INSIDE


@pytest.fixture(scope="module")
def nested() -> Iterator[Lab]:
    need(os.geteuid() == 0, "needs root (containerd, mount namespaces)")
    need_files(cri_lab.BINARIES, cri_lab.INSTALL)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cri_lab, "Containerd", functools.partial(NestedContainerd, name=NAME))
        patch.setattr(cri_lab, "BRIDGE", "vprncni0")
        patch.setattr(cri_lab, "CNI_NETWORK", "vpr-nest-net")
        patch.setattr(cri_lab, "SUBNET", "10.231.81.0/24")
        patch.setattr(cri_lab, "CGROUP_ROOT", "vprnest")
        with cri_lab.cri_lab() as lab:
            yield lab
        left = [p for p in (f"/run/{NAME}-containerd", f"/var/lib/{NAME}-containerd") if os.path.exists(p)]
        left += [x for x in cri_lab.leftovers() if "vpk" not in x]  # vpk: the CRI lab's own runs
    assert not left, left


@pytest.fixture(scope="module")
def pod(nested: Lab) -> Pod:
    return nested.run_pod("vpr-inner", "vpr-kind", containers=("app",))


def test_pod_of_a_nested_runtime_is_named(nested: Lab, pod: Pod) -> None:
    assert not os.path.exists(INSIDE)  # the host cannot see the nested runtime's socket
    inner_path = nested.client.netns_path(pod.id)
    assert inner_path and not os.path.exists(inner_path)  # nor its pods' netns files
    done = run_vethpeer("table", "--json", env={"CONTAINER_RUNTIME_ENDPOINT": "", "HOME": "/nonexistent-vpr"})
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = done.json()
    status = next(s for s in data["sources"] if s["name"] == "cri")
    pid = nested.containerd.pid
    assert (
        f"at /proc/{pid}/root{INSIDE} (listening socket of containerd pid {pid}): 1 ready pod"
        in status["detail"]
    )
    [row] = [r for r in data["interfaces"] if r["workload"]["label"] == "pod/vpr-kind/vpr-inner"]
    eth0 = link_in(f"/proc/{pid}/root/run/{inner_path.removeprefix('/var/run/')}")  # the kernel's own view
    peer = host_link(eth0["link_index"])
    assert peer is not None and row["peer"]["ifname"] == peer["ifname"]
    assert row["workload"]["containers"] == ["app"]
