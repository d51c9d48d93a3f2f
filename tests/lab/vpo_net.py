"""Throw-away network topologies for the doctor / fdb / ovs / capture integration tests (root).

Everything is created with the ``vpo`` prefix and removed by :meth:`Net.cleanup`
(use it as a context manager or a fixture with ``finally``). Traffic is only ever
sent from inside namespaces created here (busybox ``arping``), onto veths and
bridges created here. ARP is used on purpose: it is not IP, so Docker's
``FORWARD DROP`` with ``bridge-nf-call-iptables=1`` does not touch it, and no
iptables rule has to be added; :meth:`Net.allow_forward` exists for tests that
send IP across one of our bridges, and removes its rule in cleanup.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "vpo"


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def busybox() -> str | None:
    return shutil.which("busybox")


@dataclass
class Net:
    """Namespaces, links and rules made by one test; ``cleanup`` removes them all."""

    netns: list[str] = field(default_factory=list)
    host_links: list[str] = field(default_factory=list)
    rules: list[list[str]] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def __enter__(self) -> Net:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.cleanup()

    @staticmethod
    def _check(name: str) -> None:
        assert name.startswith(PREFIX) and len(name) <= 15, name

    # ---------------------------------------------------------------- building

    def ns(self, name: str, *, ipv6: bool = False) -> str:
        """A named netns with lo up; IPv6 off by default so that nothing talks unasked (DAD, MLD)."""
        self._check(name)
        sh("ip", "netns", "add", name)
        self.netns.append(name)
        if not ipv6:
            for key in ("all", "default"):
                self.exec(name, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def exec(
        self, ns: str, *argv: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", ns, *argv, check=check, timeout=timeout)

    def veth_to_host(self, ns: str, host_name: str, *, inner: str = "eth0", up: bool = True) -> None:
        """``inner`` in ``ns`` <-> ``host_name`` in the host."""
        self._check(host_name)
        sh("ip", "link", "add", host_name, "type", "veth", "peer", "name", inner, "netns", ns)
        self.host_links.append(host_name)
        sh("sysctl", "-qw", f"net.ipv6.conf.{host_name}.disable_ipv6=1", check=False)
        if up:
            sh("ip", "link", "set", host_name, "up")
            sh("ip", "-n", ns, "link", "set", inner, "up")

    def bridge(self, name: str, *extra: str) -> str:
        self._check(name)
        sh("ip", "link", "add", name, "type", "bridge", *extra)
        self.host_links.append(name)
        sh("sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1", check=False)
        sh("ip", "link", "set", name, "up")
        return name

    def plug(self, port: str, bridge: str) -> None:
        sh("ip", "link", "set", port, "master", bridge)

    def addr(self, ns: str | None, address: str, dev: str) -> None:
        sh(*(["ip", "-n", ns] if ns else ["ip"]), "addr", "add", address, "dev", dev)

    def allow_forward(self, bridge: str) -> None:
        """ACCEPT IP forwarded within our bridge (Docker's FORWARD DROP + br_netfilter); undone in cleanup."""
        if shutil.which("iptables") is None:
            return
        rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
        sh("iptables", "-I", *rule)
        self.rules.append(rule)

    def hold_and_forget(self, ns: str) -> int:
        """Keep ``ns`` alive by an fd only, then `ip netns del` it: a leaked namespace."""
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        self.fds.append(fd)
        sh("ip", "netns", "del", ns)
        self.netns.remove(ns)
        return fd

    def arping(self, ns: str, dev: str, target: str, count: int = 1, *, check: bool = False) -> str:
        bb = busybox()
        assert bb is not None
        done = self.exec(ns, bb, "arping", "-c", str(count), "-w", "1", "-I", dev, target, check=check)
        return done.stdout

    # ---------------------------------------------------------------- reading

    def link(self, name: str, ns: str | None = None) -> dict[str, Any]:
        argv = (["ip", "-n", ns] if ns else ["ip"]) + ["-j", "-d", "link", "show", "dev", name]
        data: list[dict[str, Any]] = json.loads(sh(*argv).stdout)
        return data[0]

    def fdb(self, bridge: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json.loads(sh("bridge", "-j", "fdb", "show", "br", bridge).stdout)
        return data

    # ---------------------------------------------------------------- teardown

    def cleanup(self) -> None:
        for rule in reversed(self.rules):
            sh("iptables", "-D", *rule, check=False)
        self.rules.clear()
        for name in reversed(self.host_links):
            if Path(f"/sys/class/net/{name}").exists():
                sh("ip", "link", "del", name, check=False)
        self.host_links.clear()
        for name in reversed(self.netns):
            sh("ip", "netns", "del", name, check=False)
        self.netns.clear()
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


def vethpeer(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI, as a user would, from the repository."""
    full_env = dict(os.environ)
    full_env.setdefault("OVS_RUNDIR", "/run/vpo-no-ovs")  # never the host's OVS, unless a test says so
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "vethpeer", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=full_env,
        timeout=timeout,
    )


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
