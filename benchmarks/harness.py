"""What the benchmarks share: a node full of pods built in one ``ip -batch``, children timed
from fork to exit with their own peak memory, and a teardown that neither Ctrl-C nor SIGTERM
cuts short.

Imported by the benchmark scripts, which put the repository root on ``sys.path`` first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TypeVar

from tests.lab import netlab
from tests.lab.netlab import HOST, Lab, Ns
from tests.tools import search_path

ROOT = Path(__file__).resolve().parents[1]
LabT = TypeVar("LabT", bound=Lab)


@dataclass(frozen=True)
class Pods:
    """What :func:`pods_on_bridges` built: the host bridges, the host ends, the namespaces."""

    bridges: list[str]
    host_veths: list[str]
    namespaces: list[Ns]

    @property
    def inodes(self) -> set[int]:
        return {ns.inode for ns in self.namespaces}


def pods_on_bridges(lab: Lab, count: int, bridges: int = 1) -> Pods:
    """count namespaces, eth0 in each, the host ends spread over ``bridges`` host bridges
    (``bridge_name("0")``, ``"1"``, ...): a node full of pods.

    The pairs are not registered as the lab's host links: deleting the namespaces removes them,
    in one kernel batch. The eth0s stay down."""
    made = [lab.bridge(HOST, lab.bridge_name(str(b))).ifname for b in range(bridges)]
    stems = [f"{i:04d}" for i in range(count)]
    namespaces = lab.netns_many(stems)
    names = [lab.link_name(stem) for stem in stems]
    netlab.ip_batch(
        line
        for i, (name, ns) in enumerate(zip(names, namespaces, strict=True))
        for line in (
            f"link add {name} type veth peer name eth0 netns {ns.name}",
            f"link set {name} master {made[i % bridges]} up",
        )
    )
    return Pods(made, names, namespaces)


@dataclass(frozen=True)
class Run:
    wall: float
    maxrss_kb: int
    returncode: int
    stdout: str


def run_once(argv: Sequence[str], code: Path = ROOT) -> Run:
    """One child, timed from fork to exit; its own peak RSS from wait4 (not the other children's).

    ``code``: the tree whose ``vethpeer`` package runs (another revision with ``--before``)."""
    # As installed: pip byte-compiles, and stdout is a buffered pipe. A shell that sets
    # PYTHONDONTWRITEBYTECODE / PYTHONUNBUFFERED would time the compiler and one write per token.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        # cwd: the same tree. `python -m` puts the working directory first on sys.path, ahead of
        # PYTHONPATH: run from ROOT, another revision's run would import ROOT's vethpeer.
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=code)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return Run(wall, usage.ru_maxrss, proc.returncode, out.read().decode("utf-8", "replace"))


def best(argvs: Sequence[Sequence[str]], repeat: int, code: Path = ROOT) -> tuple[float, int, list[Run]]:
    """Best total wall over repeat runs of the argvs in sequence; max RSS; the last runs."""
    walls, rss, last = [], 0, []
    for _ in range(repeat):
        last = [run_once(argv, code) for argv in argvs]
        for run in last:
            if run.returncode != 0:
                raise SystemExit(f"{' '.join(argvs[last.index(run)])}: exit {run.returncode}")
        walls.append(sum(run.wall for run in last))
        rss = max(rss, *(run.maxrss_kb for run in last))
    return min(walls), rss, last


def wait_gone(prefix: str, timeout: float = 60) -> None:
    """Namespace teardown is asynchronous in the kernel: wait for the host ends to vanish."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        links = json.loads(
            subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
        )
        if not any(link["ifname"].startswith(prefix) for link in links):
            return
        time.sleep(0.2)


@contextmanager
def cleanup_guard() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C; while cleaning up, neither interrupts the cleanup."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def teardown(lab: Lab) -> None:
    """Remove the lab and wait until its host ends are gone, with Ctrl-C ignored meanwhile."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        lab.cleanup()
        wait_gone(lab.prefix + lab.tag)
    finally:
        signal.signal(signal.SIGINT, old)


@contextmanager
def torn_down(lab: LabT) -> Iterator[LabT]:
    """``lab`` for the block, then removed (:func:`teardown`); meanwhile SIGTERM acts as Ctrl-C."""
    with cleanup_guard():
        try:
            yield lab
        finally:
            teardown(lab)


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def as_root(name: str) -> bool:
    """PATH as the install put the tools (tests/tools.py); False, said on stderr, unless root."""
    os.environ["PATH"] = search_path()
    if os.geteuid() != 0:
        print(f"{name}: needs root", file=sys.stderr)
        return False
    return True
