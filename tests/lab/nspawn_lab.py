"""systemd-nspawn machines on a busybox folder, named ``vpr-*``, removed afterwards.

This machine has no systemd as PID 1 and no D-Bus: ``systemd-nspawn`` then fails with
"Failed to open system bus" unless told not to register with machined and not to make a
scope of its own (``--register=no --keep-unit``). So the machines have no
``systemd-nspawn@NAME.service`` / ``machine-NAME.scope`` cgroup here: they are found
through their supervisor process, and the cgroup form is unit-tested on the paths systemd
documents. The runtime folder nspawn makes (``/run/systemd/nspawn``) is removed if the lab
made it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.lab.common import busybox_rootfs, pid_alive
from tests.lab.daemons import terminate

NSPAWN = "/usr/bin/systemd-nspawn"
BASE = "/tmp/vpr-nspawn"
RUNTIME_DIR = "/run/systemd/nspawn"


class NspawnLabError(RuntimeError):
    pass


@dataclass
class Machine:
    name: str
    proc: subprocess.Popen[bytes]

    def init_pid(self) -> int:
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            return int(f.read().split()[0])


def _rootfs(path: str) -> None:
    busybox_rootfs(path)
    with open(f"{path}/etc/os-release", "w") as f:  # nspawn wants to see an OS tree
        f.write("ID=busybox\nNAME=busybox\n")


@dataclass
class Lab:
    machines: list[Machine] = field(default_factory=list)

    def start(self, name: str) -> Machine:
        """A machine on a folder of its own (nspawn locks the folder a machine runs on)."""
        rootfs = f"{BASE}/{name}"
        _rootfs(rootfs)
        argv = [NSPAWN, "-q", "-D", rootfs, "--network-veth", "-M", name,
                "--register=no", "--keep-unit", "/bin/sleep", "900"]  # fmt: skip
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        machine = Machine(name, proc)
        self.machines.append(machine)
        for _ in range(100):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise NspawnLabError(f"systemd-nspawn exited with {proc.returncode}: {err.strip()}")
            try:
                pid = machine.init_pid()
                with open(f"/proc/{pid}/comm") as f:
                    if (
                        f.read().strip() == "sleep"
                        and os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
                    ):
                        time.sleep(0.2)  # the veth is made before the payload runs; give it a moment
                        return machine
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.05)
        raise NspawnLabError(f"machine {name} did not come up within 5 s")


@contextlib.contextmanager
def nspawn_lab() -> Iterator[Lab]:
    made_runtime_dir = not os.path.exists(RUNTIME_DIR)
    lab = Lab()
    try:
        yield lab
    finally:
        for machine in lab.machines:
            terminate(machine.proc, 10)  # on SIGTERM nspawn stops its machine
        shutil.rmtree(BASE, ignore_errors=True)
        if made_runtime_dir:
            shutil.rmtree(RUNTIME_DIR, ignore_errors=True)


def leftovers(lab: Lab) -> list[str]:
    found = [f"systemd-nspawn pid {m.proc.pid}" for m in lab.machines if pid_alive(m.proc.pid)]
    return found + [p for p in (BASE,) if os.path.exists(p)]
