"""A recorded ``/proc`` tree for running the real commands in-process, without root.

Namespaces are plain files here (each its own inode), so discovery works on them as
on nsfs files, and entering one fails the way entering a vanished namespace does: the
walk records it as unreadable and the command goes on. No daemon is asked: the tests
point every source at sockets that do not exist.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from vethpeer import cli
from vethpeer.environment import Environment

ALL_CAPS = "000001ffffffffff"
# Sources pointed at nothing, so no test ever talks to a daemon of the machine.
NO_DAEMONS = ("--docker-host", "unix:///nonexistent/vp-docker.sock", "--runtime-endpoint",
              "unix:///nonexistent/vp-cri.sock", "--no-kube")  # fmt: skip


@dataclass
class FakeProc:
    root: Path
    caps: str = ALL_CAPS
    next_pid: int = 100
    stdin: str = ""
    out: io.StringIO = field(default_factory=io.StringIO)
    err: io.StringIO = field(default_factory=io.StringIO)

    def __post_init__(self) -> None:
        self._write("self/status", f"Name:\tvethpeer\nCapEff:\t{self.caps}\n")
        self._write("self/mountinfo", "")
        self._write("self/ns/mnt", "")
        self._write("thread-self/ns/net", "")
        self._write("1/ns/net", "")  # the host's namespace
        self._write("1/comm", "init\n")
        (self.root / "1/ns/mnt").hardlink_to(self.root / "self/ns/mnt")  # same mount namespace

    def _write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def container(self, container_id: str, comm: str = "sleep") -> int:
        """A process in a namespace of its own, in Docker's cgroup for ``container_id``."""
        pid = self.next_pid
        self.next_pid += 1
        self._write(f"{pid}/ns/net", "")
        self._write(f"{pid}/comm", comm + "\n")
        self._write(f"{pid}/cgroup", f"12:pids:/docker/{container_id}\n0::/\n")
        self._write(f"{pid}/stat", f"{pid} ({comm}) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {pid} 0 0\n")
        return pid

    def env(self, stdout: io.StringIO | None = None) -> Environment:
        return Environment(
            stdout=stdout or self.out,
            stderr=self.err,
            environ={"PATH": os.defpath, "VETHPEER_JOURNAL": str(self.root.parent / "journal.sqlite")},
            proc=str(self.root),
        )

    def main(self, *argv: str, stdout: io.StringIO | None = None) -> int:
        return cli.main([*argv, *NO_DAEMONS], self.env(stdout))
