"""A private Docker engine of our own, never the system one: its own socket, data root, exec
root, pidfile and containerd (``/run/vpr-docker``, ``/var/lib/vpr-docker``), no iptables
rules, and a default bridge of its own, ``vprd0`` (made here first). Never ``--bridge=none``:
a dockerd started with it deletes the host's ``docker0`` at start-up
(``removeDefaultBridgeInterface``), which belongs to the system engine. Containers run the
busybox image imported into it; networks get bridges named ``vprd*``. Everything is
removed afterwards: containers, networks, a swarm if one was made (``leave --force``), the
daemon (by PID), its bridge and its folders.

Swarm needs TCP/UDP 7946 for its gossip (not configurable in Docker) besides the ports
that can be chosen (``--listen-addr``, ``--data-path-port``): see tests that use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.lab.common import busybox_rootfs_tar

DOCKERD = "/usr/sbin/dockerd"
RUN = "/run/vpr-docker"
SOCKET = f"{RUN}/docker.sock"
EXEC_ROOT = f"{RUN}/exec"
DATA_ROOT = "/var/lib/vpr-docker"
IMAGE = "vpr-busybox:1"
BRIDGE = "vprd0"  # the engine's default bridge (never docker0: that is the system engine's)
BRIDGE_ADDRESS = "10.231.80.1/24"


class PrivateDockerError(RuntimeError):
    pass


def _mounts_below(base: str) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        points = [line.split(" ")[4].replace("\\040", " ") for line in f]
    return [p for p in points if p == base or p.startswith(base + "/")]


@dataclass
class Engine:
    proc: subprocess.Popen[bytes]
    client: Any
    networks: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    swarm: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def network(self, name: str, bridge: str, subnet: str) -> Any:
        self.networks.append(name)
        import docker

        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
        return self.client.networks.create(
            name, driver="bridge", ipam=ipam, options={"com.docker.network.bridge.name": bridge}
        )

    def run(self, name: str, network: str) -> Any:
        self.containers.append(name)
        container = self.client.containers.run(
            IMAGE, "sleep 900", name=name, detach=True, init=True, network=network
        )
        container.reload()
        return container


@contextlib.contextmanager
def private_dockerd(timeout: float = 60) -> Iterator[Engine]:
    import docker

    os.makedirs(RUN, exist_ok=True)
    subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE], check=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
    argv = [
        DOCKERD, "--host", f"unix://{SOCKET}", "--data-root", DATA_ROOT, "--exec-root", EXEC_ROOT,
        "--pidfile", f"{RUN}/docker.pid", "--iptables=false", "--ip-masq=false", "--bridge", BRIDGE,
        "--containerd-namespace", "vpr-moby", "--containerd-plugins-namespace", "vpr-plugins",
    ]  # fmt: skip
    log = open(f"{RUN}/dockerd.log", "ab")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    engine: Engine | None = None
    try:
        client = (
            docker.DockerClient(base_url=f"unix://{SOCKET}", version="auto", timeout=60)
            if _wait(proc, timeout)
            else None
        )
        if client is None:
            raise PrivateDockerError(f"dockerd did not answer on {SOCKET}: {_tail()}")
        engine = Engine(proc, client)
        client.api.import_image_from_data(busybox_rootfs_tar(), repository=IMAGE.split(":")[0], tag="1")
        yield engine
    finally:
        if engine is not None:
            for name in reversed(engine.containers):
                with contextlib.suppress(Exception):
                    engine.client.containers.get(name).remove(force=True)
            for name in engine.networks:
                with contextlib.suppress(Exception):
                    engine.client.networks.get(name).remove()
            if engine.swarm:
                with contextlib.suppress(Exception):
                    engine.client.swarm.leave(force=True)
            engine.client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        for base in (RUN, DATA_ROOT):
            for point in sorted(_mounts_below(base), key=len, reverse=True):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
            if os.path.isdir(base):
                subprocess.run(["rm", "-rf", "--one-file-system", base], check=False)


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(SOCKET)
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            if b" 200 " in s.recv(100):
                return True
        time.sleep(0.1)
    return False


def _tail() -> str:
    try:
        with open(f"{RUN}/dockerd.log", errors="replace") as f:
            return "".join(f.readlines()[-20:])
    except OSError:
        return ""


def leftovers() -> list[str]:
    return [p for p in (RUN, DATA_ROOT) if os.path.exists(p)] + [
        f"bridge {b}" for b in os.listdir("/sys/class/net") if b.startswith("vprd")
    ]


def cleanup_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
