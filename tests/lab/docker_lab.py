"""A real Docker engine for vethpeer's tests.

Stdlib only; the ``docker`` SDK (PyPI ``docker``) is imported lazily, only by the
helpers that take or return a client.  Every Docker object is typed ``Any``.

Public API
----------
* :func:`ensure_dockerd` -> :class:`DockerDaemon` (``.pid``, ``.started_by_us``,
  ``.start()``, ``.stop()``, ``.is_running()``, ``.log_tail()``, ``.client()``)
* :func:`docker_ping`, :func:`docker_client`
* :func:`ensure_image` (builds ``vethpeer-test/busybox:1`` with ``docker import``),
  :func:`make_rootfs_tar`
* :func:`create_network`, :func:`run_container`, :func:`container_pid`,
  :func:`container_id`, :func:`exec_in`, :func:`cleanup`
* Oracles for tests: :func:`peer_ifindex_of` (``nsenter ... cat iflink``),
  :func:`host_ifname` (ifindex -> host-side name)
* :func:`allow_bridge_forwarding`: iptables ACCEPT for a bridge not managed by Docker
* :func:`docker_lab`: context manager = engine + image + cleanup (+ stop engine)

Self-check: ``python -m tests.lab.docker_lab`` (from the repository root, as root).

Findings on this machine (Debian 12, kernel 6.x, cgroup v1 hybrid, no systemd, root)
-----------------------------------------------------------------------------------
* Debian's ``/usr/sbin/dockerd`` (20.10.24+dfsg1) needs nothing special: no
  daemon.json, no flags.  It starts its own containerd child
  (``/var/run/docker/containerd/containerd.toml``), picks overlay2, the cgroupfs
  driver and cgroup v1, and answers ``/_ping`` about 0.7-0.8 s after exec.
  ``/usr/local/bin/docker`` is a standalone v28 client (API 1.50, newer than the
  engine's 1.41); ``/usr/bin/docker`` is Debian's 20.10 client.  This module uses
  neither: it talks HTTP over the unix socket (ping) and the SDK (auto API version).
* iptables is iptables-nft 1.8.9 and works.  On start dockerd sets the filter
  FORWARD policy to DROP and adds its DOCKER* chains; ``net.bridge.
  bridge-nf-call-iptables`` is already 1 on this kernel (br_netfilter built in), so
  frames switched by ANY Linux bridge go through FORWARD: two plain netns joined by a
  bridge not managed by Docker cannot ping each other while Docker runs (they can
  before dockerd first starts; the rules and policy stay after dockerd stops).  Tests
  that send traffic across their own bridge use :func:`allow_bridge_forwarding`
  (inserts ``-i BR -o BR -j ACCEPT`` at the top of FORWARD, removes it afterwards).
* Each container's netns is a bind mount ``/run/docker/netns/<12 hex sandbox id>``
  (``nsfs`` in /proc/self/mountinfo; ``/var/run`` is a symlink to ``/run``); host
  network is ``/run/docker/netns/default``; ``--network none`` still gets its own
  sandbox file; ``--network container:X`` gets none (it shares X's).
* ``/proc/<pid>/cgroup`` of a container process shows ``/docker/<64 hex id>`` in
  every v1 hierarchy (cgroupfs driver) and ``0::/`` for the unified one.
* Stopping the engine (SIGTERM) with running containers stops them: ``sleep`` as
  PID 1 ignores SIGTERM, so each one costs the 10 s stop timeout unless the
  container was started with ``init=True`` (docker-init = tini), which
  :func:`run_container` does by default.  ``docker0`` and the iptables rules are
  left behind after the engine stops; that is normal Docker behaviour.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.lab.common import busybox_rootfs_tar, docker_cgroup_parents, pid_alive, remove_cgroup_parents

SOCKET_PATH = "/var/run/docker.sock"
SYSTEM_CONTAINERD_SOCKET = "/run/containerd/containerd.sock"  # where dockerd looks for a system containerd
DOCKERD = "/usr/sbin/dockerd"
BUSYBOX = "/bin/busybox"
TEST_IMAGE = "vethpeer-test/busybox:1"
PREFIX = "vpd"
ROOTFS_LABEL = "vethpeer.rootfs-sha256"
# Every container run_container() makes carries OWNER_LABEL=<prefix>: names that must follow
# another scheme (dockershim's "k8s_<container>_<pod>_..." ) are still found and removed.
OWNER_LABEL = "vethpeer.test-owner"

# Docker SDK objects (DockerClient, Container, Network) are untyped.
DockerClient = Any
Container = Any
Network = Any


class DockerLabError(RuntimeError):
    """The lab could not provide a working Docker engine or object."""


def _docker() -> ModuleType:
    try:
        return importlib.import_module("docker")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DockerLabError("the 'docker' Python SDK is not installed (pip install docker)") from exc


# --------------------------------------------------------------------------- engine


def docker_ping(socket_path: str = SOCKET_PATH, timeout: float = 1.0) -> bool:
    """True if an engine answers ``GET /_ping`` with 200 on ``socket_path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = b""
            while len(data) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    status = data.split(b"\r\n", 1)[0].split()
    return len(status) >= 2 and status[1] == b"200"


def _unix_answers(path: str) -> bool:
    """True if something accepts connections on the unix socket ``path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(path)
        return True
    except OSError:
        return False


def _children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (e.g. the containerd that dockerd started)."""
    kids: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ..." -- comm may contain spaces and parentheses.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            kids.append(int(entry.name))
    return kids


def _remove_stale_netns_files(directory: str = "/run/docker/netns") -> None:
    """Empty files that the stopped engine left where sandbox namespaces were mounted.

    Debian's 20.10 engine unmounts a removed container's ``/run/docker/netns/<id>`` but
    leaves the empty file behind. Only regular, empty files that are not mount points are
    removed (``default``, the host namespace's bind mount, stays as Docker left it).
    """
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            with contextlib.suppress(OSError):
                empty = (
                    entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_size == 0
                )
                if empty and not os.path.ismount(entry.path):
                    os.unlink(entry.path)


@dataclass
class DockerDaemon:
    """Handle on the engine behind ``socket_path``.

    ``started_by_us`` is False for an engine that was already running: ``stop()`` and
    ``start()`` then do nothing to it. Tests that stop or freeze an engine use one of their
    own (tests/lab/private_dockerd.py), never this one.
    """

    socket_path: str = SOCKET_PATH
    started_by_us: bool = False
    binary: str = DOCKERD
    extra_args: tuple[str, ...] = ()
    pid: int | None = None
    log_path: str | None = None
    startup_seconds: float | None = None
    cgroup_parents_before: set[str] = field(default_factory=set)  # docker cgroup folders before start
    containerd: Any = None  # our own containerd, when the system's socket is there but dead
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def is_running(self) -> bool:
        """True if the engine answers ``/_ping``."""
        return docker_ping(self.socket_path)

    def log_tail(self, lines: int = 40) -> str:
        """Last ``lines`` lines of our dockerd's log ('' if none)."""
        if not self.log_path:
            return ""
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self, timeout: float = 60.0) -> None:
        """Start dockerd (again) and wait until it answers.

        No-op if the engine already answers.  Raises :class:`DockerLabError` if the
        handle is for a foreign engine that went away, or if dockerd exits or does not
        answer within ``timeout`` (the message carries the log tail).
        """
        if self.is_running():
            return
        if not self.started_by_us:
            raise DockerLabError(
                f"the Docker engine on {self.socket_path} was not started by this lab "
                "and does not answer; not starting another one"
            )
        if self._proc is not None and self._proc.poll() is None:
            # Our process is still alive but not answering: wait for it below.
            proc = self._proc
        else:
            if not os.access(self.binary, os.X_OK):
                raise DockerLabError(f"{self.binary} not found (apt-get install docker.io)")
            self.cgroup_parents_before = {str(p) for p in docker_cgroup_parents()}
            if self.log_path is None:
                fd, self.log_path = tempfile.mkstemp(prefix="vpd-dockerd-", suffix=".log")
                os.close(fd)
            argv = [
                self.binary,
                "--host",
                f"unix://{self.socket_path}",
                *self._containerd_args(),
                *self.extra_args,
            ]
            with open(self.log_path, "ab") as log:
                log.write(f"--- vpd lab: exec {' '.join(argv)}\n".encode())
                log.flush()
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C of the test run does not hit it
                    close_fds=True,
                )
            self._proc = proc
            self.pid = proc.pid
        began = time.monotonic()
        deadline = began + timeout
        while time.monotonic() < deadline:
            if docker_ping(self.socket_path, timeout=0.5):
                self.startup_seconds = time.monotonic() - began
                return
            rc = proc.poll()
            if rc is not None:
                raise DockerLabError(
                    f"dockerd exited with status {rc} before answering; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise DockerLabError(
            f"dockerd (pid {proc.pid}) did not answer on {self.socket_path} within "
            f"{timeout:.0f} s; log {self.log_path}:\n{tail}"
        )

    def _containerd_args(self) -> list[str]:
        """``--containerd`` for a containerd of our own when the system's socket is stale.

        Debian's dockerd 20.10 uses ``/run/containerd/containerd.sock`` whenever that file
        exists, and fails after a minute when nothing listens there (a containerd that was
        killed leaves its socket behind). The file is not ours to remove, so our engine gets a
        containerd of its own instead (CRI off, as Docker's bundled one runs).
        """
        if not os.path.exists(SYSTEM_CONTAINERD_SOCKET) or _unix_answers(SYSTEM_CONTAINERD_SOCKET):
            return []
        if self.containerd is None:
            from tests.lab.cri_lab import Containerd  # cri_lab is the containerd lab

            self.containerd = Containerd(name="vpd-ctd", cri=False)
        self.containerd.start()
        return [f"--containerd={self.containerd.socket}"]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM our dockerd, wait up to ``timeout``, then SIGKILL it (and its
        containerd child, or the containerd of our own).  No-op unless ``started_by_us``."""
        if not self.started_by_us or self.pid is None:
            return
        pid = self.pid
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            self._destroy_containerd()
            return
        children = _children_of(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            proc.wait()
        # dockerd's containerd child (under the exec-root, when no system containerd runs) exits
        # with it; give it a moment, then end it by PID, as after a SIGKILLed dockerd.
        deadline = time.monotonic() + 5
        while any(pid_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        for child in children:
            if pid_alive(child):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
        self._proc = None
        self._destroy_containerd()
        _remove_stale_netns_files()
        remove_cgroup_parents(docker_cgroup_parents(), self.cgroup_parents_before)
        if self.log_path and os.environ.get("VPD_KEEP_DOCKERD_LOG") != "1":
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)
            self.log_path = None

    def _destroy_containerd(self) -> None:
        if self.containerd is not None:
            self.containerd.destroy()
            self.containerd = None

    def client(self, timeout: int = 60) -> DockerClient:
        """A ``docker.DockerClient`` for this engine."""
        return docker_client(self.socket_path, timeout=timeout)


def ensure_dockerd(
    timeout: float = 60.0,
    *,
    socket_path: str = SOCKET_PATH,
    binary: str = DOCKERD,
    extra_args: Sequence[str] = (),
) -> DockerDaemon:
    """Return a handle on a running engine, starting Debian's dockerd if none answers.

    The log of a dockerd started here goes to a ``/tmp/vpd-dockerd-*.log`` file.
    Raises :class:`DockerLabError` (with the log tail) if it cannot start.
    """
    if docker_ping(socket_path):
        return DockerDaemon(socket_path=socket_path, started_by_us=False, binary=binary)
    daemon = DockerDaemon(
        socket_path=socket_path,
        started_by_us=True,
        binary=binary,
        extra_args=tuple(extra_args),
    )
    daemon.start(timeout=timeout)
    return daemon


def docker_client(socket_path: str = SOCKET_PATH, timeout: int = 60) -> DockerClient:
    """``docker.DockerClient`` on ``socket_path`` (API version negotiated)."""
    return _docker().DockerClient(base_url=f"unix://{socket_path}", version="auto", timeout=timeout)


# --------------------------------------------------------------------------- image


def make_rootfs_tar(busybox: str = BUSYBOX) -> bytes:
    """The test image's rootfs: busybox with the applets the tests run inside containers."""
    return busybox_rootfs_tar(busybox, ("sh", "sleep", "ip", "cat", "ls", "ping", "ifconfig", "nsenter"))


def ensure_image(client: DockerClient, tag: str = TEST_IMAGE, busybox: str = BUSYBOX) -> str:
    """Import ``tag`` from :func:`make_rootfs_tar` unless an identical one exists.

    Idempotent: the image carries the rootfs sha256 as a label; a matching image is
    reused.  Returns ``tag``.
    """
    errors = _docker().errors
    data = make_rootfs_tar(busybox)
    digest = hashlib.sha256(data).hexdigest()
    old_id: str | None = None
    try:
        image = client.images.get(tag)
    except errors.ImageNotFound:
        image = None
    if image is not None:
        labels = (image.attrs.get("Config") or {}).get("Labels") or {}
        if labels.get(ROOTFS_LABEL) == digest:
            return tag
        old_id = str(image.id)
    repository, _, version = tag.rpartition(":")
    if not repository or "/" in version:
        repository, version = tag, "latest"
    client.api.import_image_from_data(
        data,
        repository=repository,
        tag=version,
        changes=[f"LABEL {ROOTFS_LABEL}={digest}", 'CMD ["sh"]', "ENV PATH=/bin"],
    )
    if old_id is not None:  # the stale image is now untagged; drop it if unused
        with contextlib.suppress(errors.APIError):
            client.images.remove(old_id)
    return tag


# --------------------------------------------------------------------------- objects


def create_network(
    client: DockerClient,
    name: str,
    subnet: str | None = None,
    *,
    driver: str = "bridge",
    internal: bool = False,
) -> Network:
    """Create a user-defined network (``docker network create [--subnet S] NAME``)."""
    ipam = None
    if subnet is not None:
        types = _docker().types
        ipam = types.IPAMConfig(pool_configs=[types.IPAMPool(subnet=subnet)])
    return client.networks.create(name, driver=driver, ipam=ipam, internal=internal, check_duplicate=True)


def run_container(
    client: DockerClient,
    name: str,
    network: str | None = None,
    networks: Sequence[str] = (),
    command: str | Sequence[str] = "sleep 3600",
    *,
    image: str = TEST_IMAGE,
    init: bool = True,
    labels: dict[str, str] | None = None,
    owner: str = PREFIX,
    **kwargs: Any,
) -> Container:
    """``docker run -d --name NAME [--network N] IMAGE COMMAND``, then
    ``docker network connect`` each of ``networks``.

    ``network``: None = default bridge, or ``"host"``, ``"none"``,
    ``"container:OTHER"``, or a network name.  ``init=True`` (docker-init) makes the
    container stop at once on SIGTERM.  Extra ``kwargs`` go to ``containers.run``.
    Returns the reloaded container object.
    """
    params: dict[str, Any] = dict(kwargs)
    if network is not None:
        if network.startswith("container:") or network in (
            "host",
            "none",
            "bridge",
            "default",
        ):
            params["network_mode"] = network
        else:
            params["network"] = network
    labels = {OWNER_LABEL: owner, **(labels or {})}
    container = client.containers.run(
        image, command, name=name, detach=True, init=init, labels=labels, **params
    )
    for extra in networks:
        client.networks.get(extra).connect(container)
    container.reload()
    return container


def container_pid(client: DockerClient, name: str) -> int:
    """``docker inspect -f '{{.State.Pid}}' NAME`` (0 if not running)."""
    return int(client.api.inspect_container(name)["State"]["Pid"])


def container_id(client: DockerClient, name: str) -> str:
    """Full 64-hex id of a container."""
    return str(client.api.inspect_container(name)["Id"])


def exec_in(client: DockerClient, name: str, cmd: str | Sequence[str]) -> str:
    """Run ``cmd`` inside the container; return its output; raise if it fails."""
    code, output = client.containers.get(name).exec_run(cmd)
    text = output.decode(errors="replace") if isinstance(output, bytes) else str(output)
    if code != 0:
        raise DockerLabError(f"exec {cmd!r} in {name} exited {code}: {text}")
    return text


def cleanup(
    client: DockerClient,
    prefix: str = PREFIX,
    *,
    remove_image: bool = False,
    image: str = TEST_IMAGE,
) -> tuple[list[str], list[str]]:
    """Force-remove containers, then networks, whose names start with ``prefix``, and
    containers labelled ``OWNER_LABEL=prefix`` (see :func:`run_container`).

    Other objects are never touched.  ``remove_image`` also removes the
    test image.  Returns (removed container names, removed network names).
    """
    if not prefix:
        raise ValueError("cleanup() needs a non-empty prefix")
    errors = _docker().errors
    gone_containers: list[str] = []
    gone_networks: list[str] = []
    named = client.containers.list(all=True, filters={"name": prefix})
    labelled = client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={prefix}"})
    for c in {c.id: c for c in [*named, *labelled]}.values():
        cname = str(c.name)
        mine = (c.labels or {}).get(OWNER_LABEL) == prefix
        if not (cname.startswith(prefix) or mine):  # the name filter is a substring match
            continue
        try:
            c.remove(force=True, v=True)
        except errors.NotFound:
            continue
        except errors.APIError as error:  # 409: another removal of it is under way
            if error.status_code != 409:
                raise
        gone_containers.append(cname)
    for n in client.networks.list(names=[prefix]):
        nname = str(n.name)
        if not nname.startswith(prefix):
            continue
        with contextlib.suppress(errors.NotFound):
            n.reload()
            for c in n.containers:  # not ours, or created meanwhile: just detach
                with contextlib.suppress(errors.APIError):
                    n.disconnect(c, force=True)
            n.remove()
            gone_networks.append(nname)
    if remove_image:
        with contextlib.suppress(errors.ImageNotFound):
            client.images.remove(image, force=True)
    return gone_containers, gone_networks


# --------------------------------------------------------------------------- oracles


def peer_ifindex_of(pid: int, ifname: str = "eth0") -> int:
    """Host-side peer's ifindex (``iflink``) of ``ifname`` in the netns of ``pid``.

    Uses ``nsenter -t PID -n ip -j link show dev IF`` (netlink).  NOT
    ``nsenter -t PID -n cat /sys/class/net/IF/iflink``: ``nsenter -n`` keeps the host
    mount namespace, and the host's sysfs shows the HOST netns's interfaces, so that
    reads the host's own ``IF`` (or fails) instead of the container's.
    """
    out = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "ip", "-j", "link", "show", "dev", ifname],
        capture_output=True,
        text=True,
        check=True,
    )
    link = json.loads(out.stdout)[0]
    # ip omits link_index when iflink == ifindex (not a veth/peer device).
    return int(link.get("link_index", link["ifindex"]))


def host_ifname(ifindex: int) -> str | None:
    """Name of the interface with ``ifindex`` in the current (host) netns, or None."""
    for entry in os.scandir("/sys/class/net"):
        try:
            if int(Path(entry.path, "ifindex").read_text()) == ifindex:
                return entry.name
        except (OSError, ValueError):
            continue
    return None


@contextlib.contextmanager
def allow_bridge_forwarding(bridge: str) -> Iterator[None]:
    """Let frames between ports of ``bridge`` pass Docker's FORWARD DROP policy.

    With ``bridge-nf-call-iptables=1`` (default here) bridged IPv4 traffic traverses
    the iptables FORWARD chain, whose policy dockerd sets to DROP.  Inserts
    ``-i BRIDGE -o BRIDGE -j ACCEPT`` at the top of FORWARD and deletes it on exit.
    """
    rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
    subprocess.run(["iptables", "-w", "-I", *rule[:1], "1", *rule[1:]], check=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-w", "-D", *rule], check=False, capture_output=True)


@contextlib.contextmanager
def docker_lab(
    prefix: str = PREFIX, *, timeout: float = 60.0, remove_image: bool = False
) -> Iterator[tuple[DockerDaemon, DockerClient]]:
    """Engine + test image; on exit remove ``prefix`` objects and stop the engine if
    this lab started it."""
    daemon = ensure_dockerd(timeout)
    client = daemon.client()
    try:
        ensure_image(client)
        yield daemon, client
    finally:
        try:
            if daemon.is_running():
                cleanup(client, prefix, remove_image=remove_image)
        finally:
            client.close()
            daemon.stop()


# --------------------------------------------------------------------------- self-check


def _selfcheck() -> int:
    t0 = time.monotonic()
    daemon = ensure_dockerd()
    t_engine = time.monotonic() - t0
    print(
        f"engine: started_by_us={daemon.started_by_us} pid={daemon.pid} "
        f"log={daemon.log_path} ready in {t_engine:.2f} s"
    )
    client = daemon.client()
    try:
        cleanup(client, "vpd-selftest")
        t1 = time.monotonic()
        tag = ensure_image(client)
        print(f"image: {tag} in {time.monotonic() - t1:.2f} s")
        t2 = time.monotonic()
        run_container(client, "vpd-selftest")
        pid = container_pid(client, "vpd-selftest")
        print(
            f"container vpd-selftest: pid={pid} run in {time.monotonic() - t2:.2f} s "
            f"(lab total {time.monotonic() - t0:.2f} s)"
        )
        iflink = peer_ifindex_of(pid)
        link = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
        lines = [ln for ln in link.stdout.splitlines() if ln.startswith(f"{iflink}:")]
        print(f"eth0 iflink={iflink} host side={host_ifname(iflink)}")
        for ln in lines:
            print("  " + ln)
        if not lines:
            print("host-side veth NOT FOUND")
            return 1
    finally:
        cleanup(client, "vpd-selftest")
        client.close()
        t3 = time.monotonic()
        daemon.stop()
        if daemon.started_by_us:
            print(f"engine stopped in {time.monotonic() - t3:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(_selfcheck())
