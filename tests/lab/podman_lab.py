"""Rootful Podman containers and pods for vethpeer's tests, all named ``vpr-*`` and removed afterwards.

Findings on this machine (Debian 12, podman 4.3.1, netavark, runc, cgroup v1, no systemd):
* no registry: containers run a busybox folder (``--rootfs DIR``); a pod's infra container
  uses the ``localhost/podman-pause`` image Podman builds itself from ``catatonit``
  (Debian package ``catatonit``), removed afterwards if the lab built it;
* runc refuses Podman's default open-files limit here ("error setting rlimit type 7"):
  our own ``containers.conf`` (``$CONTAINERS_CONF``) sets ``default_ulimits``, which also
  covers the infra container, where ``--ulimit`` cannot be given;
* our own network ``vpr-pnet`` (bridge ``vprpbr0``, 10.231.78.0/24), not ``podman0``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.lab.common import busybox_rootfs

PODMAN = "/usr/bin/podman"
BASE = "/tmp/vpr-podman"
NETWORK = "vpr-pnet"
BRIDGE = "vprpbr0"
SUBNET = "10.231.78.0/24"
PAUSE = "localhost/podman-pause"
NETWORK_FILE = f"/etc/containers/networks/{NETWORK}.json"


class PodmanLabError(RuntimeError):
    pass


def _env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": f"{BASE}/containers.conf"}


def podman(*args: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run([PODMAN, *args], capture_output=True, text=True, env=_env(), timeout=timeout)
    if check and done.returncode != 0:
        raise PodmanLabError(f"podman {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass
class Lab:
    rootfs: str
    containers: list[str] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)

    def run(self, name: str, *options: str) -> str:
        """Start a container running ``sleep`` on our network (unless options say otherwise)."""
        self.containers.append(name)
        net = (
            []
            if any(o.startswith("--network") or o.startswith("--pod") for o in options)
            else [f"--network={NETWORK}"]
        )
        return podman("run", "-d", "--name", name, *net, *options, "--rootfs", self.rootfs, "sleep", "900")

    def pod(self, name: str) -> str:
        self.pods.append(name)
        return podman("pod", "create", "--name", name, f"--network={NETWORK}")

    def inspect(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(podman("inspect", name))[0]
        return found


def _create_network() -> None:
    """Our netavark network: podman 4.3 has no --interface-name, so its file is written as
    ``podman network create`` writes it, with our bridge name (Podman reads the folder)."""
    config = {
        "name": NETWORK,
        "id": hashlib.sha256(NETWORK.encode()).hexdigest(),
        "driver": "bridge",
        "network_interface": BRIDGE,
        "created": "2026-01-01T00:00:00Z",
        "subnets": [{"subnet": SUBNET, "gateway": SUBNET.replace(".0/24", ".1")}],
        "ipv6_enabled": False,
        "internal": False,
        "dns_enabled": False,
        "ipam_options": {"driver": "host-local"},
    }
    os.makedirs(os.path.dirname(NETWORK_FILE), exist_ok=True)
    with open(NETWORK_FILE, "x") as f:
        json.dump(config, f, indent=5)


def _images() -> set[str]:
    out = podman("images", "--format", "{{.Repository}}", check=False)
    return set(out.split())


@contextlib.contextmanager
def podman_lab() -> Iterator[Lab]:
    os.makedirs(f"{BASE}/rootfs", exist_ok=True)
    with open(f"{BASE}/containers.conf", "w") as f:
        f.write('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n')
    busybox_rootfs(f"{BASE}/rootfs")
    had_pause = PAUSE in _images()
    lab = Lab(f"{BASE}/rootfs")
    try:
        _create_network()
        yield lab
    finally:
        for name in reversed(lab.containers):
            podman("rm", "-f", "-t", "0", name, check=False)
        for name in lab.pods:
            podman("pod", "rm", "-f", "-t", "0", name, check=False)
        podman("network", "rm", "-f", NETWORK, check=False)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(NETWORK_FILE)
        if not had_pause:
            for image in podman("images", "--format", "{{.ID}} {{.Repository}}", check=False).splitlines():
                if image.endswith(PAUSE):
                    podman("rmi", "-f", image.split()[0], check=False)
        shutil.rmtree(BASE, ignore_errors=True)


def leftovers() -> list[str]:
    found = []
    names = podman("ps", "-a", "--format", "{{.Names}}", check=False).split()
    found += [f"container {n}" for n in names if n.startswith("vpr-")]
    pods = podman("pod", "ps", "--format", "{{.Name}}", check=False).split()
    found += [f"pod {p}" for p in pods if p.startswith("vpr-")]
    if os.path.exists(f"/sys/class/net/{BRIDGE}"):
        found.append(f"bridge {BRIDGE}")
    found += [path for path in (BASE, NETWORK_FILE) if os.path.exists(path)]
    return found
