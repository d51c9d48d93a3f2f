"""Real things for the journal tests: a `serve --journal` on a port of the vqf range, the CLI
against that journal, the kernel's own log lines, and a lab of `ip netns` namespaces on a bridge.

Every object is named with the prefix ``vqf``: namespaces ``vqf-TAG-*``, links ``vqfTAG*``,
bridges ``vqfbrTAG*``, temporary folders ``vqf-*``; servers listen on 127.0.0.1:21500-21599.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.lab import serve_lab
from tests.lab.netlab import Lab
from tests.policy import need, need_binary

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "vqf"
PORTS = range(21500, 21600)


class JournalLab(Lab):
    prefix: ClassVar[str] = PREFIX


def free_port() -> int:
    return serve_lab.free_port(PORTS.start, PORTS.stop - 1)


@pytest.fixture
def lab() -> Iterator[JournalLab]:
    """A lab of `ip netns` namespaces named vqf-*, removed afterwards, pass or fail."""
    need(os.geteuid() == 0, "needs root (real network namespaces)")
    need_binary("ip")
    with JournalLab() as built:
        yield built


@contextlib.contextmanager
def temp_dir(stem: str = "journal") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{stem}-"))
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)


@contextlib.contextmanager
def serving(journal: Path, *args: str, min_interval: float = 0.5) -> Iterator[serve_lab.Served]:
    """`vethpeer serve --journal JOURNAL` on a port of ours, walking every ``min_interval``."""
    with serve_lab.serve(
        "--journal", str(journal), "--min-interval", str(min_interval), *args, port=free_port(), timeout=30
    ) as served:
        yield served


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli(*args: str, journal: Path | None = None, stdin: bytes | None = None, timeout: float = 60) -> Run:
    """The real CLI in a child interpreter (with ``--journal`` when given)."""
    argv = [sys.executable, "-m", "vethpeer", *args]
    if journal is not None:
        argv += ["--journal", str(journal)]
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    env.pop("VETHPEER_JOURNAL", None)
    done = subprocess.run(
        argv, input=stdin, capture_output=True, timeout=timeout, env=env, cwd=ROOT, check=False
    )
    return Run(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0, every: float = 0.3) -> Any:
    """Call ``probe`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def history(journal: Path, target: str) -> list[dict[str, Any]]:
    """The target's bindings in the journal (empty when none yet)."""
    done = cli("history", target, "--json", journal=journal)
    if done.returncode != 0:
        return []
    return list(done.json()["bindings"])


def gone(journal: Path, target: str) -> list[dict[str, Any]]:
    return [b for b in history(journal, target) if b["gone"] is not None]


def kernel_lines(*needles: str) -> bytes:
    """``dmesg`` as it prints (seconds since boot), only the lines naming one of ``needles``."""
    out = subprocess.run(["dmesg"], capture_output=True, check=True).stdout
    return b"".join(
        line for line in out.splitlines(keepends=True) if any(n.encode() in line for n in needles)
    )
