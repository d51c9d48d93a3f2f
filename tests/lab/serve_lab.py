"""Real things for the `serve` tests: namespaces on a bridge, a running `vethpeer serve`, a hung socket.

Everything is named with the prefix ``vps`` (namespaces ``vps-<tag>-<i>``, host veths
``vps<tag>h<i>``, bridge ``vpsbr<tag>``, temp dirs ``/tmp/vps-*``) and removed on exit,
pass or fail. Servers listen on 127.0.0.1, ports 19400-19499 only. Traffic stays between
the lab's own namespaces (198.18.0.0/15, the benchmarking range).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab.daemons import terminate

ROOT = Path(__file__).resolve().parents[2]
PYTHON = os.environ.get("VETHPEER_PYTHON", sys.executable)
PREFIX = "vps"
PIDS_CGROUP = Path("/sys/fs/cgroup/pids")  # the cgroup v1 hierarchy pod_process() makes its cgroups in


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def ip_batch(lines: Sequence[str], netns: str | None = None) -> None:
    where = ["-n", netns] if netns else []
    done = subprocess.run(
        ["ip", *where, "-force", "-batch", "-"],
        input="\n".join(lines) + "\n",
        text=True,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ip -batch: {done.stderr.strip()[:400]}")


@dataclass
class Member:
    netns: str
    host_veth: str
    address: str  # 198.18.x.y, inside the namespace on eth0
    inode: int = 0


@dataclass
class BridgeLab:
    """N namespaces, each with eth0 whose veth peer is on one host bridge."""

    count: int
    inside: bool = True  # bring eth0 up with an address (one `ip -n` per namespace: small labs)
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    members: list[Member] = field(default_factory=list)
    prefix: str = PREFIX  # of every name (a test with its own prefix passes it)

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br{self.tag}"

    def __enter__(self) -> BridgeLab:
        try:
            self._build()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.cleanup()

    def _build(self) -> None:
        third = int(self.tag, 16) % 254
        lines = [f"link add {self.bridge} type bridge", f"link set {self.bridge} up"]
        inside: dict[str, list[str]] = {}
        for i in range(self.count):
            ns, veth = f"{self.prefix}-{self.tag}-{i}", f"{self.prefix}{self.tag}h{i}"
            address = f"198.{18 + (i // 250) % 2}.{third}.{i % 250 + 2}"
            self.members.append(Member(ns, veth, address))
            lines += [
                f"netns add {ns}",
                f"link add {veth} type veth peer name eth0 netns {ns}",
                f"link set {veth} master {self.bridge} up",
            ]
            inside[ns] = ["link set lo up", "link set eth0 up", f"addr add {address}/15 dev eth0"]
        ip_batch(lines)
        if self.inside:
            for ns, commands in inside.items():
                ip_batch(commands, netns=ns)
        for m in self.members:
            m.inode = os.stat(f"/run/netns/{m.netns}").st_ino

    def traffic(self, count: int = 20) -> None:
        """UDP datagrams from each namespace to the next one's address (to port 9, discard).

        They leave eth0 and enter the host veth, so both sides count them, whatever the
        host's firewall then does with bridged traffic (Docker's FORWARD policy drops it).
        """
        script = (
            "import socket,sys,time\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "for _ in range(int(sys.argv[2])):\n"
            "    try: s.sendto(b'v'*200,(sys.argv[1],9))\n"
            "    except OSError: pass\n"
            "    time.sleep(0.01)\n"
        )
        senders = [
            subprocess.Popen(
                ["ip", "netns", "exec", a.netns, sys.executable, "-c", script, b.address, str(count)]
            )
            for a, b in zip(self.members, self.members[1:] + self.members[:1], strict=True)
        ]
        for sender in senders:
            sender.wait(30)

    def cleanup(self) -> None:
        for m in self.members:
            _ip("netns", "del", m.netns, check=False)
        _ip("link", "del", self.bridge, check=False)
        for m in self.members:
            _ip("link", "del", m.host_veth, check=False)


_HANDED_OUT: set[int] = set()  # ports given to servers that may not have bound them yet


def free_port(start: int = 19400, end: int = 19499) -> int:
    """A free port in this helper's range, on 127.0.0.1, not handed out before by this process."""
    for port in range(start, end + 1):
        if port in _HANDED_OUT:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    _HANDED_OUT.clear()  # every port was handed out once: those servers are long gone
    return free_port(start, end)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def get(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    timeout: float = 15.0,
    source: str | None = None,
) -> Reply:
    """One request; ``source`` is the client's address (127.0.0.2: another client than the tests')."""
    bind = (source, 0) if source else None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=bind)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def raw(port: int, data: bytes, timeout: float = 10.0, pause: float = 0.0) -> bytes:
    """Send bytes as they are and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if pause:
            time.sleep(pause)
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextlib.contextmanager
def serve(
    *args: str,
    port: int | None = None,
    ready: bool = True,
    timeout: float = 20.0,
    env: dict[str, str] | None = None,
    root: Path = ROOT,
) -> Iterator[Served]:
    """`vethpeer serve` as a real process on 127.0.0.1:PORT; stopped (SIGTERM, then SIGKILL) on exit.
    ``root``: the source tree it runs from (a benchmark may run an older checkout beside this one).

    Without a fixed ``port``, a port that turns out to be taken when the server binds it is
    replaced by another (a few times), so many servers can start at once.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-serve-"))
    err = tmp / "stderr"
    # Each server keeps its journal in its own folder unless the test names one.
    environ = {
        **os.environ,
        "PYTHONPATH": str(root),
        "VETHPEER_JOURNAL": str(tmp / "journal.sqlite"),
        **(env or {}),
    }
    for _attempt in range(5):
        chosen = port or free_port()
        with err.open("wb") as stderr:
            process = subprocess.Popen(
                [PYTHON, "-m", "vethpeer", "serve", "--listen", f"127.0.0.1:{chosen}", *args],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=environ,
                cwd=root,
            )
        served = Served(process, chosen, err)
        if port is not None or _listening(served, timeout):
            break
    else:
        raise RuntimeError(f"vethpeer serve could not listen: {served.stderr()}")
    try:
        if ready:
            wait_ready(served, timeout)
        yield served
    finally:
        terminate(process, 5)
        shutil.rmtree(tmp, ignore_errors=True)


def _listening(served: Served, timeout: float) -> bool:
    """True once the server accepts connections; False if it exited because the port was taken."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            if "cannot listen" in served.stderr():
                return False
            raise RuntimeError(f"vethpeer serve exited {served.process.returncode}: {served.stderr()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", served.port), timeout=1):
            return True
        time.sleep(0.05)
    raise RuntimeError(f"vethpeer serve did not listen within {timeout} s: {served.stderr()}")


def wait_ready(served: Served, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"vethpeer serve exited {served.process.returncode}: {served.stderr()}")
        with contextlib.suppress(OSError):
            if get(served.port, "/readyz", timeout=2).status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"vethpeer serve not ready within {timeout} s: {served.stderr()}")


@contextlib.contextmanager
def hung_unix_socket() -> Iterator[str]:
    """A Unix socket that accepts connections and never answers (a daemon stuck mid-request).

    A stand-in for a hung Docker daemon: a real dockerd cannot be made to hang on demand.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-hung-"))
    path = str(tmp / "docker.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def pod_process(netns: str, uid: str, prefix: str = PREFIX) -> Iterator[int]:
    """A process in ``netns``, in a kubelet-style (cgroupfs) cgroup of pod ``uid`` under
    /sys/fs/cgroup/pids/<prefix>-*; killed, and its cgroups removed, on exit."""
    top = PIDS_CGROUP / f"{prefix}-{secrets.token_hex(2)}"
    leaf = top / "kubepods" / "besteffort" / f"pod{uid}" / secrets.token_hex(32)
    leaf.mkdir(parents=True)
    process = subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "600"])
    try:
        time.sleep(0.2)
        (leaf / "cgroup.procs").write_text(str(process.pid))
        yield process.pid
    finally:
        process.kill()
        process.wait()
        time.sleep(0.2)
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            directory.rmdir()
        top.rmdir()
