"""vethpeer.cgroup_path: container identities from /proc/PID/cgroup text, as real hosts write it."""

from __future__ import annotations

import os

import pytest

from vethpeer import cgroup_path as cgroup
from vethpeer.cgroup_path import Identity

DID = "3f1c9a0d5b7e2c4a6f8e0d1b3c5a7e9f1d3b5c7a9e1f3d5b7c9a1e3f5d7b9c1a"
DID2 = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"
UID = "0f7c2e1a-5b3d-4c6e-8f9a-1b2c3d4e5f60"
UID_ = UID.replace("-", "_")
STATIC_UID = "5e8e2c2b0b1a4d7b9e3f6a8c1d2e4f60"

# Debian 12 with cgroup v1 hybrid and Docker's cgroupfs driver (this project's lab).
DOCKER_V1 = f"""\
12:rdma:/
11:pids:/docker/{DID}
10:perf_event:/docker/{DID}
9:net_cls,net_prio:/docker/{DID}
8:blkio:/docker/{DID}
7:memory:/docker/{DID}
6:devices:/docker/{DID}
5:freezer:/docker/{DID}
4:cpuset:/docker/{DID}
3:cpu,cpuacct:/docker/{DID}
2:hugetlb:/docker/{DID}
1:name=systemd:/docker/{DID}
0::/
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(DOCKER_V1, Identity("docker", DID), id="docker-cgroupfs-v1"),
        pytest.param(f"0::/docker/{DID}\n", Identity("docker", DID), id="docker-cgroupfs-v2"),
        pytest.param(
            f"0::/system.slice/docker-{DID}.scope\n", Identity("docker", DID), id="docker-systemd-v2"
        ),
        pytest.param(
            f"1:name=systemd:/system.slice/docker-{DID}.scope\n"
            f"4:memory:/system.slice/docker-{DID}.scope\n0::/system.slice/docker-{DID}.scope\n",
            Identity("docker", DID),
            id="docker-systemd-v1",
        ),
        pytest.param(
            f"0::/docker/{DID2}/docker/{DID}\n", Identity("docker", DID), id="docker-in-docker-innermost"
        ),
        pytest.param(f"0::/machine.slice/libpod-{DID}.scope\n", Identity("podman", DID), id="podman-rootful"),
        pytest.param(
            f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{DID}.scope/container\n",
            Identity("podman", DID),
            id="podman-rootless-with-container-subgroup",
        ),
        pytest.param(
            f"0::/machine.slice/machine-libpod_pod_{DID2}.slice/libpod-{DID}.scope\n",
            Identity("podman", DID),
            id="podman-pod",
        ),
        pytest.param(
            f"7:memory:/libpod_parent/libpod-{DID}\n", Identity("podman", DID), id="podman-cgroupfs"
        ),
        pytest.param("0::/lxc.payload.web1\n", Identity("lxc", "web1", name="web1"), id="lxc4"),
        pytest.param(
            "0::/lxc.payload.web1/system.slice/nginx.service\n",
            Identity("lxc", "web1", name="web1"),
            id="lxc4-systemd-inside",
        ),
        pytest.param("4:memory:/lxc/old-box\n", Identity("lxc", "old-box", name="old-box"), id="lxc-legacy"),
        pytest.param(
            "0::/machine.slice/machine-qemu\\x2d3\\x2ddebian\\x2dvm.scope/libvirt/emulator\n",
            Identity("qemu", "debian-vm", name="debian-vm"),
            id="libvirt-qemu-systemd",
        ),
        pytest.param(
            "3:cpu,cpuacct:/machine/qemu-1-vm1.libvirt-qemu/vcpu0\n",
            Identity("qemu", "vm1", name="vm1"),
            id="libvirt-qemu-cgroupfs",
        ),
        pytest.param(
            f"11:pids:/kubepods/besteffort/pod{UID}/{DID}\n1:name=systemd:/kubepods/besteffort/pod{UID}/{DID}\n",
            Identity("kubernetes", DID, pod_uid=UID),
            id="k8s-cgroupfs-besteffort",
        ),
        pytest.param(
            f"0::/kubepods/pod{UID}/{DID}\n",
            Identity("kubernetes", DID, pod_uid=UID),
            id="k8s-cgroupfs-guaranteed",
        ),
        pytest.param(
            f"0::/kubepods/burstable/pod{STATIC_UID}/{DID}\n",
            Identity("kubernetes", DID, pod_uid=STATIC_UID),
            id="k8s-static-pod-uid",
        ),
        pytest.param(
            f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/"
            f"cri-containerd-{DID}.scope\n",
            Identity("cri-containerd", DID, pod_uid=UID),
            id="k8s-systemd-containerd",
        ),
        pytest.param(
            f"0::/kubepods.slice/kubepods-pod{UID_}.slice/crio-{DID}.scope\n",
            Identity("crio", DID, pod_uid=UID),
            id="k8s-systemd-crio-guaranteed",
        ),
        pytest.param(
            f"1:name=systemd:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/"
            f"docker-{DID}.scope\n",
            Identity("docker", DID, pod_uid=UID),
            id="k8s-systemd-cri-dockerd",
        ),
        pytest.param(
            f"0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
            f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{DID}.scope\n",
            Identity("cri-containerd", DID, pod_uid=UID),
            id="kind-node-systemd",
        ),
        pytest.param(
            f"0::/docker/{DID2}/kubepods/besteffort/pod{UID}/{DID}\n",
            Identity("kubernetes", DID, pod_uid=UID),
            id="kind-node-cgroupfs-no-cgroupns",
        ),
        pytest.param(
            f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice\n",
            Identity("kubernetes", None, pod_uid=UID),
            id="k8s-pod-level-only",
        ),
    ],
)
def test_identities(text: str, expected: Identity) -> None:
    assert cgroup.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("0::/\n", id="root"),
        pytest.param("0::/init.scope\n", id="systemd-pid1"),
        pytest.param("0::/system.slice/docker.service\n", id="dockerd-itself"),
        pytest.param("0::/system.slice/containerd.service\n", id="containerd"),
        pytest.param("4:memory:/process_api/6cafa1e9ed5e42e40c2562d1df662180\n", id="other-32hex"),
        pytest.param(f"0::/machine.slice/libpod-conmon-{DID}.scope\n", id="podman-conmon"),
        pytest.param(
            f"0::/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{DID}.scope\n", id="crio-conmon"
        ),
        pytest.param("0::/lxc.monitor.web1\n", id="lxc-monitor"),
        pytest.param(f"0::/user.slice/{DID}\n", id="bare-hex-without-context"),
        pytest.param(f"0::/docker/{DID[:12]}\n", id="short-id"),
        pytest.param("0::/docker/buildkit\n", id="buildkit"),
        pytest.param("garbage\n\n", id="garbage"),
        pytest.param("", id="empty"),
    ],
)
def test_not_a_container(text: str) -> None:
    assert cgroup.parse(text) is None


def test_unified_hierarchy_wins_over_v1_controllers() -> None:
    text = f"4:memory:/docker/{DID2}\n1:name=systemd:/docker/{DID2}\n0::/system.slice/docker-{DID}.scope\n"
    assert cgroup.parse(text) == Identity("docker", DID)


def test_name_systemd_wins_over_other_controllers() -> None:
    text = f"4:memory:/docker/{DID2}\n1:name=systemd:/docker/{DID}\n0::/\n"
    assert cgroup.parse(text) == Identity("docker", DID)


def test_vm_flag() -> None:
    assert Identity("qemu", "vm", name="vm").is_vm
    assert not Identity("docker", DID).is_vm


def test_unescape() -> None:
    assert cgroup.unescape("machine-qemu\\x2d1\\x2dvm\\x5cx.scope") == "machine-qemu-1-vm\\x.scope"


def test_reader_on_this_process_and_a_vanished_one() -> None:
    assert cgroup.read(os.getpid()) is not None
    assert cgroup.start_time(os.getpid()) is not None
    gone = 2**22 + 1  # above pid_max's ceiling: never a live process
    assert cgroup.read(gone) is None
    assert cgroup.of_pid(gone) is None
    assert cgroup.start_time(gone) is None
