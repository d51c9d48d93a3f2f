"""The live views' lab: :class:`tests.lab.netlab.Lab` with the ``vpl`` prefix, traffic, forwarding.

Namespaces ``vpl-<tag>-*``, links ``vpl<tag>*``, bridges ``vplbr<tag>*``; addresses in
10.199.<n>.0/24 on the lab's own bridge, so traffic never leaves the lab's namespaces.
The FORWARD rule that lets frames cross the bridge while Docker's DROP policy is in place
carries the comment ``vpl-<tag>`` and is deleted afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tests.lab.daemons import terminate
from tests.lab.netlab import HOST, Lab, Ns, Pair

PREFIX = "vpl"


@dataclass
class LiveLab(Lab):
    """A netlab Lab whose names start with ``vpl``."""

    prefix = PREFIX

    def subnet(self) -> int:
        return 100 + int(self.tag, 16) % 150

    def address(self, host: int) -> str:
        return f"10.199.{self.subnet()}.{host}"


@dataclass(frozen=True)
class Member:
    ns: Ns
    pair: Pair  # a: the host end (on the bridge), b: eth0 inside
    address: str


def bridged_members(lab: LiveLab, stems: list[str]) -> tuple[str, list[Member]]:
    """A host bridge and one namespace per stem, each eth0 on it with 10.199.N.(2+i)/24."""
    bridge = lab.bridge(HOST, lab.bridge_name("0"))
    members = []
    for i, ns in enumerate(lab.netns_many(stems)):
        pair = lab.veth(HOST, lab.link_name(stems[i]), ns, "eth0")
        lab.enslave(pair.a, bridge)
        address = lab.address(2 + i)
        lab.addr(pair.b, f"{address}/24")
        members.append(Member(ns, pair, address))
    return bridge.ifname, members


@contextlib.contextmanager
def forwarding(bridge: str, comment: str) -> Iterator[None]:
    """``iptables -I FORWARD -i BR -o BR -m comment --comment C -j ACCEPT`` while Docker's
    FORWARD DROP policy would drop the lab's bridged frames; deleted afterwards."""
    iptables = shutil.which("iptables") or "/usr/sbin/iptables"
    rule = ["FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", comment, "-j", "ACCEPT"]
    subprocess.run([iptables, "-w", "-I", *rule], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run([iptables, "-w", "-D", *rule], check=False, capture_output=True)


def in_ns(ns: Ns, *argv: str) -> list[str]:
    assert ns.name is not None
    return ["ip", "netns", "exec", ns.name, *argv]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def kill(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """End a process this test started (by its Popen handle) and reap it."""
    terminate(proc, 5)
