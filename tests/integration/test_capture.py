"""`vethpeer capture` end to end: a real tcpdump on the host veth sees a frame sent in our namespace.

The frame is an ARP request from inside ``vpo-c-*`` for an address nobody has
(10.236.0.1): it goes out of the namespace's eth0 onto our own host-side veth and
nowhere else (no bridge, no address on the host side). Needs root, tcpdump and
busybox (busybox-static).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.lab.vpo_net import ROOT, Net, busybox, vethpeer, wait_for
from tests.policy import need, need_binary

pytestmark = pytest.mark.integration


@pytest.fixture
def net() -> Iterator[Net]:
    need_binary("tcpdump")
    need(busybox() is not None, "needs busybox (busybox-static) for arping")
    n = Net()
    try:
        n.ns("vpo-c-one")
        n.veth_to_host("vpo-c-one", "vpoch-one")
        n.addr("vpo-c-one", "10.236.0.2/24", "eth0")
        n.ns("vpo-c-two")
        n.veth_to_host("vpo-c-two", "vpoch-two0", inner="eth0")
        n.veth_to_host("vpo-c-two", "vpoch-two1", inner="eth1")
        n.addr("vpo-c-two", "10.237.0.2/24", "eth0")
        n.addr("vpo-c-two", "10.238.0.2/24", "eth1")
        yield n
    finally:
        n.cleanup()


class Capture:
    """`vethpeer capture ...` running in the background; stderr is collected line by line."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, OVS_RUNDIR="/run/vpo-no-ovs")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vethpeer", "capture", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def wait_listening(self, timeout: float = 15) -> None:
        """tcpdump prints "listening on" after its signal handlers are set: then it is safe to go."""
        ok = wait_for(
            lambda: any("listening on" in x for x in self.err) or self.proc.poll() is not None, timeout
        )
        assert ok and self.proc.poll() is None, "".join(self.err)
        assert comm(self.proc.pid) == "tcpdump"  # exec'd: the very process we started is tcpdump now

    def finish(self, timeout: float = 15) -> tuple[int, str, str]:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        return self.proc.returncode, "".join(self.out), "".join(self.err)


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_capture_one_frame_through_exec(net: Net) -> None:
    cap = Capture("vpo-c-one", "--", "-n", "-l", "-c", "1", "arp")
    cap.wait_listening()
    net.arping("vpo-c-one", "eth0", "10.236.0.1")
    code, out, err = cap.finish()
    assert code == 0, err  # tcpdump's own exit status
    assert "ARP, Request who-has 10.236.0.1" in out and "tell 10.236.0.2" in out
    assert "vethpeer: capturing on vpoch-one (netns/vpo-c-one eth0)" in err
    assert "listening on vpoch-one" in err


def test_sigint_reaches_tcpdump(net: Net) -> None:
    cap = Capture("vpo-c-one", "--", "-n", "-l")
    cap.wait_listening()
    cap.proc.send_signal(signal.SIGINT)
    code, _out, err = cap.finish()
    assert code == 0 and "packets captured" in err  # tcpdump's clean exit on SIGINT, not Python's


def test_several_interfaces_need_a_choice(net: Net) -> None:
    done = vethpeer("capture", "vpo-c-two", "--", "-c", "1")
    assert done.returncode == 2
    assert "--interface" in done.stderr and "--all" in done.stderr
    assert "vpoch-two0" in done.stderr and "vpoch-two1" in done.stderr


def test_interface_by_the_workloads_name(net: Net) -> None:
    cap = Capture("vpo-c-two", "--interface", "eth1", "--", "-n", "-l", "-c", "1", "arp")
    cap.wait_listening()
    net.arping("vpo-c-two", "eth1", "10.238.0.1")
    code, out, err = cap.finish()
    assert code == 0, err
    assert "who-has 10.238.0.1" in out and "listening on vpoch-two1" in err


def test_all_interfaces_in_one_tcpdump(net: Net) -> None:
    cap = Capture("vpo-c-two", "--all", "--", "-n", "-l", "-c", "2", "arp")
    cap.wait_listening()
    net.arping("vpo-c-two", "eth0", "10.237.0.1")
    net.arping("vpo-c-two", "eth1", "10.238.0.1")
    code, out, err = cap.finish()
    assert code == 0, err
    lines = out.splitlines()
    assert any("vpoch-two0" in line and "who-has 10.237.0.1" in line for line in lines), out
    assert any("vpoch-two1" in line and "who-has 10.238.0.1" in line for line in lines), out
    assert len(lines) == 2  # nothing from any other interface of the host


def test_missing_tcpdump_is_a_clear_error(net: Net) -> None:
    done = vethpeer("capture", "vpo-c-one", env={"PATH": "/nonexistent-vpo"})
    assert done.returncode == 1
    assert done.stderr.startswith("vethpeer: tcpdump is not installed")
    assert "Traceback" not in done.stderr
