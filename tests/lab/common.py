"""What every lab needs: is a process still alive, and a busybox rootfs to make images from."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

BUSYBOX = "/bin/busybox"  # Debian's busybox-static
CGROUP_FS = "/sys/fs/cgroup"


def docker_cgroup_parents() -> list[Path]:
    """Docker's ``docker`` cgroup folders (cgroupfs driver): one per v1 hierarchy, or the v2 one."""
    base = Path(CGROUP_FS)
    tops = [base, *(h for h in base.iterdir() if h.is_dir())] if base.is_dir() else []
    return [top / "docker" for top in tops if (top / "docker").is_dir()]


def remove_cgroup_parents(parents: Iterable[Path], existed: Iterable[str]) -> None:
    """rmdir the ``parents`` that did not exist before (``existed``); one still in use is not empty
    and stays."""
    before = set(existed)
    for parent in parents:
        if str(parent) not in before:
            with contextlib.suppress(OSError):
                parent.rmdir()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie has already exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # the state follows "(comm)"


def busybox_rootfs_tar(busybox: str = BUSYBOX, needed: Iterable[str] = ("sleep",)) -> bytes:
    """Deterministic rootfs tar: ``/bin/busybox``, a symlink per applet, a few dirs.

    Fixed mtimes and owners, so the tar (and an image digest made from it) is reproducible.
    """
    binary = Path(busybox).read_bytes()
    listed = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    applets = sorted({a for a in listed.stdout.split() if a and "/" not in a} - {"busybox"})
    for applet in needed:
        if applet not in applets:
            raise RuntimeError(f"{busybox} has no '{applet}' applet")
    mtime = 946684800  # 2000-01-01
    buf = io.BytesIO()

    def add(
        tar: tarfile.TarFile, name: str, kind: bytes, mode: int, data: bytes = b"", target: str = ""
    ) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, mtime
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.linkname = target
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data) if data else None)

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in ("bin", "dev", "etc", "proc", "root", "sys", "usr", "var", "run"):
            add(tar, d, tarfile.DIRTYPE, 0o755)
        add(tar, "tmp", tarfile.DIRTYPE, 0o1777)
        add(tar, "bin/busybox", tarfile.REGTYPE, 0o755, binary)
        for applet in applets:
            add(tar, f"bin/{applet}", tarfile.SYMTYPE, 0o777, target="busybox")
        add(tar, "etc/passwd", tarfile.REGTYPE, 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        add(tar, "etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\n")
    return buf.getvalue()


def busybox_rootfs(path: str, needed: Iterable[str] = ("sleep",)) -> None:
    """A busybox folder (the tar of :func:`busybox_rootfs_tar`, unpacked) at ``path``.

    The tar is ours, so it is unpacked with the "tar" filter where this Python has one
    (3.11.4 and later; Debian 12's own python3 is 3.11.2, which has not).
    """
    Path(path).mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(busybox_rootfs_tar(needed=needed))) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(path, filter="tar")
        else:
            tar.extractall(path)


@contextlib.contextmanager
def busy(loops: int) -> Iterator[None]:
    """``loops`` busy loops (other work on the node) for the block, then ended by PID."""
    started = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(loops)]
    try:
        yield
    finally:
        for proc in started:
            proc.kill()
            proc.wait()
