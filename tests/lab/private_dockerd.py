"""A Docker engine of the tests' own, for the tests that stop, freeze or break one.

A real host runs its ``dockerd`` as a service on ``/var/run/docker.sock``; a test must never
stop or freeze that one. :class:`PrivateDockerd` is a second engine beside it that shares
nothing with it:

* its own socket, ``--data-root`` (``/tmp/vpx-dockerd-<tag>``), ``--exec-root`` and
  ``--pidfile`` (``/run/vpx-d<tag>``), and ``--config-file`` (so ``/etc/docker/daemon.json``
  is not read);
* its own containerd (tests/lab/cri_lab.py's :class:`Containerd` with CRI off, as Docker's
  bundled one runs), passed with ``--containerd``. Without that flag Debian's dockerd 20.10
  uses the system containerd whenever ``/run/containerd/containerd.sock`` exists, and starts a
  child of its own only when it does not; either way, which one it used is not ours to choose;
* its own default bridge ``vpx-br<tag>`` (made here, ``--bridge``), and no iptables, NAT or
  ip_forward changes (``--iptables=false --ip-masq=false --ip-forward=false``): the system's
  chains and sysctls stay as they are. Nothing is routed: the tests send no traffic.
* ``--live-restore`` (unless ``live_restore=False``: swarm mode refuses it): stopping the
  engine leaves its containers running, as on a host whose daemon was stopped or crashed.

:meth:`PrivateDockerd.destroy` removes all of it, by PID and by the paths it made: the
containers and networks, the swarm if a test made one (``swarm = True``: it is left with
``--force``), dockerd, any child it left, containerd and its shims, the mounts under its
directories (overlay layers, netns bind mounts), the directories, the bridges, and the
``/docker/<id>`` cgroup folders of the containers it ran.

Self-check: ``python -m tests.lab.private_dockerd`` (from the repository root, as root).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab import docker_lab
from tests.lab.common import docker_cgroup_parents, pid_alive, remove_cgroup_parents
from tests.lab.cri_lab import Containerd
from tests.lab.daemons import log_tail, remove_tree, spawn, terminate, wait_answering, wait_gone

PREFIX = "vpx"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@dataclass
class PrivateDockerd:
    """dockerd + containerd of our own; ``tag`` makes every name and path unique."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: str = "10.213.210.1/24"  # the default bridge's address (--bridge uses it)
    live_restore: bool = True
    swarm: bool = False  # a test made it a swarm manager: destroy() leaves the swarm first
    pid: int | None = None
    containerd: Containerd = field(init=False)
    log_path: str = field(init=False)
    container_ids: set[str] = field(default_factory=set)  # every container created through us
    bridges: set[str] = field(default_factory=set)  # bridges of the networks made through us
    cgroup_parents_before: set[str] = field(default_factory=set)  # /sys/fs/cgroup/*/docker that existed
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.containerd = Containerd(name=f"{PREFIX}-d{self.tag}", cri=False)
        self.log_path = f"{self.base}/dockerd.log"

    @property
    def base(self) -> str:
        return f"/tmp/{PREFIX}-dockerd-{self.tag}"  # data root and config

    @property
    def exec_root(self) -> str:
        return f"/run/{PREFIX}-d{self.tag}"

    @property
    def socket(self) -> str:
        return f"{self.exec_root}/docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def bridge(self) -> str:
        return f"{PREFIX}-br{self.tag}"

    def argv(self) -> list[str]:
        return [
            docker_lab.DOCKERD,
            f"--host={self.url}",
            f"--data-root={self.base}/data",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.exec_root}/dockerd.pid",
            f"--config-file={self.base}/daemon.json",
            f"--containerd={self.containerd.socket}",
            f"--bridge={self.bridge}",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--userland-proxy=false",
            *(["--live-restore"] if self.live_restore else []),
        ]

    def is_running(self) -> bool:
        return docker_lab.docker_ping(self.socket)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def start(self, timeout: float = 60.0) -> None:
        """Bridge and containerd (first time), then dockerd; wait until it answers ``/_ping``."""
        if self.is_running():
            return
        if self.pid is None:  # the first start
            self.cgroup_parents_before = {str(p) for p in docker_cgroup_parents()}
        if not os.path.exists(f"/sys/class/net/{self.bridge}"):
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", self.subnet, "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        self.containerd.start()
        os.makedirs(self.base, exist_ok=True)
        Path(f"{self.base}/daemon.json").write_text(json.dumps({}))
        self._proc = spawn(self.argv(), self.log_path)
        self.pid = self._proc.pid
        problem = wait_answering(self._proc, self.is_running, timeout)
        if problem is not None:
            self.stop()
            raise docker_lab.DockerLabError(f"private dockerd {problem}:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM our dockerd (by PID), then SIGKILL; end any child it left. Containers stay
        (live restore), and so does our containerd."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            return
        children = docker_lab._children_of(proc.pid)
        terminate(proc, timeout)
        for child in children:  # none with --containerd; a containerd child if it started one
            if pid_alive(child) and not wait_gone(child, 5):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
                wait_gone(child, 5)
        self._proc = None

    def client(self, timeout: int = 60) -> Any:
        return docker_lab.docker_client(self.socket, timeout=timeout)

    def run(self, client: Any, name: str, **kwargs: Any) -> Any:
        """:func:`docker_lab.run_container`, remembering the ID for the clean-up."""
        container = docker_lab.run_container(client, name, owner=PREFIX, **kwargs)
        self.container_ids.add(str(container.id))
        return container

    def destroy(self) -> list[str]:
        """Remove everything this engine made; return what could not be removed."""
        problems: list[str] = []
        if self.is_running():
            client = self.client()
            try:
                docker_lab.cleanup(client, PREFIX)
                if self.swarm:
                    client.swarm.leave(force=True)
            finally:
                client.close()
        self.stop()
        self.containerd.destroy()  # containerd by PID, then the shims that name its socket
        for base in (self.exec_root, self.base):
            remove_tree(base)
            if os.path.exists(base):
                problems.append(f"{base} could not be removed")
        for bridge in {self.bridge, *self.bridges}:
            if os.path.exists(f"/sys/class/net/{bridge}"):
                _ip("link", "del", bridge)
        problems += self._remove_cgroups()
        return problems

    def network(self, client: Any, name: str, subnet: str) -> Any:
        """A user-defined network whose Linux bridge is named with our prefix, not ``br-<id>``."""
        types = docker_lab._docker().types
        bridge = f"{PREFIX}-n{self.tag}{len(self.bridges)}"
        self.bridges.add(bridge)
        return client.networks.create(
            name,
            driver="bridge",
            ipam=types.IPAMConfig(pool_configs=[types.IPAMPool(subnet=subnet)]),
            options={BRIDGE_NAME_OPTION: bridge},
        )

    def _remove_cgroups(self) -> list[str]:
        """``/docker/<id>`` folders of our containers that runc could not remove (killed shims),
        and the ``docker`` parents if they were made for us and are empty now."""
        problems = []
        parents = docker_cgroup_parents()
        for parent in parents:
            for cid in self.container_ids:
                folder = parent / cid
                if not folder.is_dir():
                    continue
                for _ in range(50):
                    try:
                        folder.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.05)  # processes still exiting
                else:
                    problems.append(f"cgroup {folder} could not be removed")
        remove_cgroup_parents(parents, self.cgroup_parents_before)
        return problems


BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"


@contextlib.contextmanager
def private_dockerd(*, live_restore: bool = True) -> Iterator[tuple[PrivateDockerd, Any]]:
    """A started private engine with the test image; destroyed on exit, pass or fail."""
    engine = PrivateDockerd(live_restore=live_restore)
    try:
        engine.start()
        client = engine.client()
        try:
            docker_lab.ensure_image(client)
            yield engine, client
        finally:
            client.close()
    finally:
        problems = engine.destroy()
        assert not problems, problems


def _selfcheck() -> int:
    with private_dockerd() as (engine, client):
        c = engine.run(client, f"{PREFIX}-selftest")
        pid = docker_lab.container_pid(client, c.name)
        peer = docker_lab.host_ifname(docker_lab.peer_ifindex_of(pid))
        print(f"private dockerd pid {engine.pid} on {engine.socket}; {c.name} pid {pid}, host veth {peer}")
        print(f"containerd pid {engine.containerd.pid}; shims {engine.containerd.shim_pids()}")
        if not (peer and Path(f"/sys/class/net/{peer}/master").resolve().name == engine.bridge):
            print(f"the host veth is not on {engine.bridge}")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_selfcheck())
