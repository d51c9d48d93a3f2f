"""Private Open vSwitch instance for integration tests (stdlib only, needs root).

Starts its own ``ovsdb-server`` + ``ovs-vswitchd`` with run/db/log dirs of its
own (never the system ``/var/run/openvswitch``), so it neither uses nor disturbs
an OVS that may already be running on the host.

Facts this relies on (checked on Debian 12, OVS 3.1.0, kernel 6.18 firecracker):

* If the kernel has no ``openvswitch`` module (``CONFIG_OPENVSWITCH`` unset,
  ``/sys/module/openvswitch`` absent) a default ``system`` bridge fails with
  "failed to create datapath ovs-system: No such file or directory"; the
  userspace datapath (``datapath_type=netdev``) works.  ``datapath_type="auto"``
  picks ``system`` only if ``/sys/module/openvswitch`` exists.
* ``ovs-vswitchd`` puts ``<bridge>.mgmt``/``<bridge>.snoop`` sockets in
  ``$OVS_RUNDIR`` (default ``/var/run/openvswitch``), independent of
  ``--unixctl``; so ``OVS_RUNDIR`` (and friends) is set for the daemons.
* With ``--detach`` the launching process returns only once the daemon is
  ready; the daemon's PID is read from its ``--pidfile``.
* OVSDB JSON-RPC over the unix socket has no framing: messages are bare,
  concatenated JSON objects.  Sets with exactly one element are sent as the
  bare atom (``["uuid", "..."]``), otherwise ``["set", [...]]``; maps are
  ``["map", [[k, v], ...]]``.  Per-operation errors appear inside ``result``
  as ``{"error": ..., "details": ...}`` while the top-level ``error`` is null.

Usage::

    lab = start_ovs()            # or: with start_ovs() as lab: ...
    try:
        lab.add_bridge("vpoovs0")
        lab.add_port("vpoovs0", "vpoh-a")
        rows = lab.select("Interface", columns=["name", "ofport", "ifindex"])
    finally:
        lab.cleanup()            # del-br own bridges, stop own daemons, rm dirs
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from tests.lab.common import pid_alive

__all__ = [
    "OvsLab",
    "OvsUnavailable",
    "OvsdbError",
    "kernel_datapath_available",
    "ovs_binaries_available",
    "ovsdb_transact",
    "start_ovs",
]

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
_BINARIES = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl")

DatapathType = Literal["auto", "system", "netdev"]


class OvsUnavailable(RuntimeError):
    """OVS cannot be started here (missing binaries/schema, not root, ...)."""


class OvsdbError(RuntimeError):
    """An OVSDB JSON-RPC call or operation returned an error."""


def ovs_binaries_available() -> bool:
    return SCHEMA.is_file() and all(shutil.which(b) for b in _BINARIES)


def kernel_datapath_available() -> bool:
    """True if the openvswitch kernel module is loaded (or built in)."""
    return Path("/sys/module/openvswitch").exists()


def ovsdb_transact(
    db_socket: str | os.PathLike[str],
    ops: Sequence[Mapping[str, Any]],
    *,
    db: str = "Open_vSwitch",
    timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """Send one ``transact`` over the OVSDB unix socket; return the op results.

    Raises :class:`OvsdbError` on a top-level error or any per-op error.
    Answers server ``echo`` requests while waiting.
    """
    request = {"method": "transact", "params": [db, *ops], "id": 1}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(db_socket))
        sock.sendall(json.dumps(request).encode())
        decoder = json.JSONDecoder()
        buf = ""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise OvsdbError("ovsdb-server closed the connection")
            buf += chunk.decode()
            while buf:
                buf = buf.lstrip()
                try:
                    msg, end = decoder.raw_decode(buf)
                except ValueError:
                    break  # incomplete message; read more
                buf = buf[end:]
                if msg.get("method") == "echo":
                    reply = {"result": msg.get("params", []), "error": None, "id": msg.get("id")}
                    sock.sendall(json.dumps(reply).encode())
                    continue
                if msg.get("id") != 1 or "method" in msg:
                    continue  # unrelated notification
                if msg.get("error") is not None:
                    raise OvsdbError(f"transact failed: {msg['error']!r}")
                results: list[dict[str, Any]] = msg["result"]
                for res in results:
                    if isinstance(res, dict) and "error" in res:
                        raise OvsdbError(f"{res['error']}: {res.get('details', '')}")
                return results


def _pid_is(pid: int, exe_name: str) -> bool:
    """Guard against PID reuse: does ``pid`` still run ``exe_name``?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return bool(cmdline) and os.path.basename(cmdline[0].decode(errors="replace")) == exe_name


@dataclass
class OvsLab:
    """A private ovsdb-server + ovs-vswitchd pair.  Create with :func:`start_ovs`."""

    prefix: str
    base_dir: Path
    datapath_type: Literal["system", "netdev"]
    pids: dict[str, int] = field(default_factory=dict)
    bridges: list[str] = field(default_factory=list)

    # -- paths -------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.base_dir / "run"

    @property
    def db_dir(self) -> Path:
        return self.base_dir / "db"

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "log"

    @property
    def db_file(self) -> Path:
        return self.db_dir / "conf.db"

    @property
    def db_socket(self) -> Path:
        return self.run_dir / "db.sock"

    @property
    def db_remote(self) -> str:
        return f"unix:{self.db_socket}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            OVS_RUNDIR=str(self.run_dir),
            OVS_DBDIR=str(self.db_dir),
            OVS_LOGDIR=str(self.log_dir),
            OVS_SYSCONFDIR=str(self.db_dir),
        )
        return env

    # -- commands ----------------------------------------------------------
    def vsctl(self, *args: str, check: bool = True, timeout: float = 20.0) -> str:
        """Run ``ovs-vsctl --db=unix:<own socket> ARGS``; return stdout."""
        cmd = ["ovs-vsctl", f"--db={self.db_remote}", f"--timeout={int(timeout)}", *args]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout + 5)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc.stdout

    def vsctl_json(self, *args: str) -> list[dict[str, Any]]:
        """``ovs-vsctl --format=json ARGS`` as a list of {heading: cell} rows."""
        out = json.loads(self.vsctl("--format=json", *args))
        return [dict(zip(out["headings"], row, strict=False)) for row in out["data"]]

    def add_bridge(self, name: str) -> None:
        """Create bridge ``name`` (with this lab's datapath_type) and remember it."""
        self._check_name(name)
        self.vsctl(
            "add-br",
            name,
            "--",
            "set",
            "Bridge",
            name,
            f"datapath_type={self.datapath_type}",
        )
        self.bridges.append(name)
        err = self.vsctl("get", "Interface", name, "error").strip()
        if err not in ("[]", ""):
            raise OvsUnavailable(f"bridge {name} failed: {err}")

    def add_port(
        self,
        bridge: str,
        port: str,
        *,
        external_ids: Mapping[str, str] | None = None,
    ) -> None:
        """Attach existing netdev ``port`` (e.g. a host-side veth) to ``bridge``."""
        args = ["add-port", bridge, port]
        if external_ids:
            args += ["--", "set", "Interface", port] + [
                f"external_ids:{k}={v}" for k, v in external_ids.items()
            ]
        self.vsctl(*args)
        err = self.vsctl("get", "Interface", port, "error").strip()
        if err not in ("[]", ""):
            raise OvsdbError(f"port {port} on {bridge} failed: {err}")

    def del_port(self, bridge: str, port: str) -> None:
        self.vsctl("--if-exists", "del-port", bridge, port)

    def transact(self, *ops: Mapping[str, Any]) -> list[dict[str, Any]]:
        return ovsdb_transact(self.db_socket, ops)

    def select(
        self,
        table: str,
        *,
        columns: Sequence[str] | None = None,
        where: Sequence[Sequence[Any]] = (),
    ) -> list[dict[str, Any]]:
        """Read-only ``select`` over JSON-RPC; returns raw OVSDB-encoded rows."""
        op: dict[str, Any] = {"op": "select", "table": table, "where": [list(w) for w in where]}
        if columns is not None:
            op["columns"] = list(columns)
        return self.transact(op)[0]["rows"]

    @property
    def running(self) -> bool:
        return any(pid_alive(p) for p in self.pids.values())

    # -- teardown ----------------------------------------------------------
    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (then SIGKILL) only the daemons this lab started, by PID."""
        for name in ("ovs-vswitchd", "ovsdb-server"):
            pid = self.pids.get(name)
            if pid is None:
                continue
            if pid_alive(pid) and _pid_is(pid, name):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if pid_alive(pid) and _pid_is(pid, name):
                    os.kill(pid, signal.SIGKILL)
                    deadline = time.monotonic() + timeout
                    while pid_alive(pid) and time.monotonic() < deadline:
                        time.sleep(0.05)
            del self.pids[name]

    def cleanup(self) -> None:
        """Delete own bridges, stop own daemons, remove leftover links and dirs."""
        if self.running:
            for br in reversed(self.bridges):
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    self.vsctl("--if-exists", "del-br", br)
        self.stop()
        for br in self.bridges:
            # netdev internal ports are persistent taps; remove if still present
            if Path(f"/sys/class/net/{br}").exists():
                subprocess.run(["ip", "link", "del", "dev", br], capture_output=True)
        self.bridges.clear()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> OvsLab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def _check_name(self, name: str) -> None:
        if not name.startswith(self.prefix):
            raise ValueError(f"{name!r} does not start with prefix {self.prefix!r}")
        if len(name) > 15:
            raise ValueError(f"{name!r} is longer than IFNAMSIZ-1 (15)")


def start_ovs(
    prefix: str = "vpo",
    *,
    datapath_type: DatapathType = "auto",
    base_dir: str | os.PathLike[str] | None = None,
) -> OvsLab:
    """Start a private ovsdb-server + ovs-vswitchd; return an :class:`OvsLab`.

    ``base_dir`` defaults to a fresh ``/run/<prefix>-ovs-XXXX`` directory
    holding ``run/`` (sockets, pidfiles), ``db/`` (conf.db) and ``log/``.
    Raises :class:`OvsUnavailable` if OVS cannot be started.
    """
    if os.geteuid() != 0:
        raise OvsUnavailable("root required")
    if not ovs_binaries_available():
        raise OvsUnavailable(f"missing one of {_BINARIES} or {SCHEMA}")
    if datapath_type == "auto":
        dp: Literal["system", "netdev"] = "system" if kernel_datapath_available() else "netdev"
    else:
        dp = datapath_type

    if base_dir is None:
        parent = "/run" if os.access("/run", os.W_OK) else None
        base = Path(tempfile.mkdtemp(prefix=f"{prefix}-ovs-", dir=parent))
    else:
        base = Path(base_dir)
        base.mkdir(parents=True, exist_ok=True)
    lab = OvsLab(prefix=prefix, base_dir=base, datapath_type=dp)
    for d in (lab.run_dir, lab.db_dir, lab.log_dir):
        d.mkdir(parents=True, exist_ok=True)

    def run(cmd: list[str]) -> None:
        proc = subprocess.run(cmd, env=lab.env, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise OvsUnavailable(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")

    def pidfile(name: str) -> Path:
        return lab.run_dir / f"{name}.pid"

    try:
        run(["ovsdb-tool", "create", str(lab.db_file), str(SCHEMA)])
        run(
            [
                "ovsdb-server",
                str(lab.db_file),
                f"--remote=punix:{lab.db_socket}",
                f"--unixctl={lab.run_dir / 'ovsdb-server.ctl'}",
                f"--pidfile={pidfile('ovsdb-server')}",
                f"--log-file={lab.log_dir / 'ovsdb-server.log'}",
                "--detach",
                "--no-chdir",
            ]
        )
        lab.pids["ovsdb-server"] = int(pidfile("ovsdb-server").read_text().strip())
        lab.vsctl("--no-wait", "init")
        run(
            [
                "ovs-vswitchd",
                lab.db_remote,
                f"--unixctl={lab.run_dir / 'ovs-vswitchd.ctl'}",
                f"--pidfile={pidfile('ovs-vswitchd')}",
                f"--log-file={lab.log_dir / 'ovs-vswitchd.log'}",
                "--detach",
                "--no-chdir",
            ]
        )
        lab.pids["ovs-vswitchd"] = int(pidfile("ovs-vswitchd").read_text().strip())
    except BaseException:
        lab.cleanup()
        raise
    return lab
