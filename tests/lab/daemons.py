"""The labs' own daemons (containerd, dockerd, ``vethpeer serve``): start one with its output in a
log, wait until it answers, read the log's tail, stop it by its Popen handle (SIGTERM, then
SIGKILL), wait for a PID to go, and unmount and remove the folders it made. Never a process or
a mount the lab did not make.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.lab.common import pid_alive


def spawn(argv: Sequence[str], log_path: str) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log_path``, in a session of its own
    (a Ctrl-C of the test run does not hit it)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def wait_answering(
    proc: subprocess.Popen[Any], answers: Callable[[], bool], timeout: float, interval: float = 0.05
) -> str | None:
    """Poll ``answers()`` while ``proc`` runs: None once it answers, else what went wrong
    (``exited with N``, ``did not answer within T s``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with {proc.returncode}"
        if answers():
            return None
        time.sleep(interval)
    return f"did not answer within {timeout:g} s"


def log_tail(path: str, lines: int = 40) -> str:
    """The last ``lines`` lines of a daemon's log ('' if there is none)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def terminate(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM a process we started, SIGKILL it if it is still there after ``timeout`` s; reaped."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``pid`` to exit; True if it did."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def mounts_below(base: str) -> list[str]:
    """Mount points at or below ``base``, from /proc/self/mountinfo."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            point = line.split(" ")[4].replace("\\040", " ")
            if point == base or point.startswith(base.rstrip("/") + "/"):
                points.append(point)
    return points


def unmount_below(base: str) -> None:
    """Unmount everything at or below ``base``, deepest first (rm -rf must never cross a mount)."""
    for _ in range(3):
        points = mounts_below(base)
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", point], capture_output=True, check=False)
    for point in mounts_below(base):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def remove_tree(base: str) -> None:
    """Unmount what is below ``base``, then remove it, never crossing into another file system."""
    unmount_below(base)
    if Path(base).is_dir():
        subprocess.run(["rm", "-rf", "--one-file-system", base], check=False)
