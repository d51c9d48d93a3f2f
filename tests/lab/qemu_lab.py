"""QEMU guests that never boot (``-S``: the CPU is stopped, no KVM needed), each with a tap
QEMU creates itself (``-netdev tap,ifname=...``). Everything is named ``vpr*`` and removed:
the QEMU processes (by PID), their taps (gone with them: not persistent), our bridge
``vprqbr0``, and the ``/vpr/...`` cgroup folders a test put a guest in to look like a
libvirt domain (``machine-qemu\\x2dN\\x2dNAME.scope``, the path libvirt gives it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.lab.common import pid_alive

QEMU = "/usr/bin/qemu-system-x86_64"
BRIDGE = "vprqbr0"
CGROUP = "/sys/fs/cgroup/pids/vpr"  # v1 pids hierarchy (this machine); see cgroup_dir()


class QemuLabError(RuntimeError):
    pass


@dataclass
class Guest:
    name: str
    tap: str
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Lab:
    guests: list[Guest] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    bridge: bool = False

    def start(self, name: str, tap: str, *extra: str) -> Guest:
        argv = [
            QEMU, "-S", "-nographic", "-display", "none", "-monitor", "none", "-serial", "none",
            "-nodefaults", "-m", "32", "-name", name,
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", "virtio-net-pci,netdev=n0", *extra,
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        guest = Guest(name, tap, proc)
        self.guests.append(guest)
        for _ in range(100):
            if os.path.exists(f"/sys/class/net/{tap}"):
                return guest
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise QemuLabError(f"qemu exited with {proc.returncode}: {err}")
            time.sleep(0.05)
        raise QemuLabError(f"qemu made no {tap} within 5 s")

    def enslave(self, tap: str) -> None:
        """Put the tap on our bridge (made on first use) and bring both up."""
        if not self.bridge:
            subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
            self.bridge = True
        subprocess.run(["ip", "link", "set", tap, "master", BRIDGE, "up"], check=True)

    def as_libvirt_domain(self, guest: Guest, domain: str, number: int = 1) -> None:
        """Move the guest into a cgroup named as libvirt names a domain's (systemd escaping)."""
        escaped = f"machine-qemu\\x2d{number}\\x2d{domain.replace('-', chr(92) + 'x2d')}.scope"
        path = f"{CGROUP}/{escaped}"
        os.makedirs(path, exist_ok=True)
        self.cgroups.append(path)
        with open(f"{path}/cgroup.procs", "w") as f:
            f.write(str(guest.pid))


@contextlib.contextmanager
def qemu_lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        for guest in lab.guests:
            if guest.proc.poll() is None:
                guest.proc.send_signal(signal.SIGKILL)
            guest.proc.wait(10)
        for path in reversed(lab.cgroups):
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
        with contextlib.suppress(OSError):
            os.rmdir(CGROUP)
        if lab.bridge:
            subprocess.run(["ip", "link", "del", BRIDGE], check=False)


def leftovers(lab: Lab) -> list[str]:
    found = [f"qemu pid {g.pid}" for g in lab.guests if pid_alive(g.pid)]
    found += [f"tap {g.tap}" for g in lab.guests if os.path.exists(f"/sys/class/net/{g.tap}")]
    found += [p for p in (f"/sys/class/net/{BRIDGE}", CGROUP) if os.path.exists(p)]
    return found
