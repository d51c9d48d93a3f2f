"""LXC containers from the busybox template (``/bin/busybox`` of busybox-static), named ``vpr-*``.

Each container's network is our bridge ``vprlbr0``; its config either fixes the host-side
veth name (``lxc.net.0.veth.pair``) or leaves LXC to pick a random ``vethXXXXXX``. A custom
lxcpath (``/tmp/vpr-lxc/path``) is used for some, so that finding the config through the
monitor's command line is tested. Everything is stopped and destroyed afterwards, with the
bridge, our folders and the ``lxc.pivot`` cgroups LXC leaves behind if it made them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

BRIDGE = "vprlbr0"
BASE = "/tmp/vpr-lxc"
CUSTOM_PATH = f"{BASE}/path"
DEFAULT_PATH = "/var/lib/lxc"
CGROUP_FS = "/sys/fs/cgroup"


class LxcLabError(RuntimeError):
    pass


def _run(*argv: str, check: bool = True, timeout: float = 60) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise LxcLabError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


@dataclass
class Container:
    name: str
    lxcpath: str
    pair: str | None

    def pid(self) -> int:
        out = _run("lxc-info", "-P", self.lxcpath, "-n", self.name, "-p", "-H")
        return int(out.strip())


@dataclass
class Lab:
    containers: list[Container] = field(default_factory=list)

    def start(self, name: str, *, pair: str | None = None, lxcpath: str = DEFAULT_PATH) -> Container:
        os.makedirs(lxcpath, exist_ok=True)
        conf = f"{BASE}/{name}.conf"
        lines = [
            "lxc.net.0.type = veth",
            f"lxc.net.0.link = {BRIDGE}",
            "lxc.net.0.flags = up",
            "lxc.net.0.name = eth0",
        ]
        if pair:
            lines.append(f"lxc.net.0.veth.pair = {pair}")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        container = Container(name, lxcpath, pair)
        self.containers.append(container)
        _run("lxc-create", "-P", lxcpath, "-t", "busybox", "-n", name, "-f", conf, timeout=120)
        _run("lxc-start", "-P", lxcpath, "-n", name, "-l", "INFO", "-o", f"{BASE}/{name}.log")
        _run("lxc-wait", "-P", lxcpath, "-n", name, "-s", "RUNNING", "-t", "10")
        return container


def _pivots() -> list[str]:
    return [
        f"{CGROUP_FS}/{h}/lxc.pivot"
        for h in (os.listdir(CGROUP_FS) if os.path.isdir(CGROUP_FS) else [])
        if os.path.isdir(f"{CGROUP_FS}/{h}/lxc.pivot")
    ]


@contextlib.contextmanager
def lxc_lab() -> Iterator[Lab]:
    if not os.path.exists("/bin/busybox"):
        raise LxcLabError("the busybox template needs /bin/busybox (apt-get install busybox-static)")
    pivots_before = set(_pivots())
    os.makedirs(BASE, exist_ok=True)
    lab = Lab()
    try:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "link", "set", BRIDGE, "up")
        yield lab
    finally:
        for c in reversed(lab.containers):
            _run("lxc-stop", "-P", c.lxcpath, "-n", c.name, "-k", check=False)
            _run("lxc-destroy", "-P", c.lxcpath, "-n", c.name, check=False)
        _run("ip", "link", "del", BRIDGE, check=False)
        for path in set(_pivots()) - pivots_before:
            with contextlib.suppress(OSError):
                os.rmdir(path)
        shutil.rmtree(BASE, ignore_errors=True)


def leftovers(lab: Lab) -> list[str]:
    found = [f"{c.lxcpath}/{c.name}" for c in lab.containers if os.path.exists(f"{c.lxcpath}/{c.name}")]
    found += [p for p in (f"/sys/class/net/{BRIDGE}", BASE) if os.path.exists(p)]
    return found
