"""Read-only facts about processes from /proc, for the runtime resolvers.

Everything takes the /proc root as an argument (``Context.proc``) so tests can point
it at a recorded tree, and turns an unreadable or vanished process into "nothing"
(None, empty): processes come and go during a walk, and some are protected.

* :func:`processes`: PIDs with their command name (``/proc/PID/comm``)
* :func:`cmdline`, :func:`parent`, :func:`cgroup_text`
* :func:`listening_sockets`: the unix sockets a process listens on — the socket inodes
  of ``/proc/PID/fd/*`` matched against ``/proc/PID/net/unix`` (the table of the
  process's own network namespace, so a daemon in a container is seen too)
* :func:`path_in_root`: a path as that process sees it, reachable from here
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from ..model import NsKey
from ..proc_files import read_text
from . import Context

SO_ACCEPTCON = 0x10000  # __SO_ACCEPTCON in /proc/net/unix "Flags": a listening socket


class Process(NamedTuple):
    pid: int
    comm: str


_read = read_text  # os.read: a run reads several small files of every process


def pids(proc: str = "/proc") -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir(proc) if name.isdigit())
    except OSError:
        return []


def comm(pid: int, proc: str = "/proc") -> str | None:
    text = _read(f"{proc}/{pid}/comm")
    return text.rstrip("\n") if text is not None else None


def processes(proc: str = "/proc") -> list[Process]:
    """Every process with its command name, by PID (vanished ones left out)."""
    found = []
    for pid in pids(proc):
        name = comm(pid, proc)
        if name is not None:
            found.append(Process(pid, name))
    return found


def process_table(context: Context) -> tuple[Process, ...]:
    """Every process with its comm, read once per run (the run's memo) however many resolvers
    ask for it at the same time."""
    return context.memo.once("process-table", lambda: tuple(processes(context.proc)))


def named(table: Iterable[Process], names: Iterable[str] = (), prefixes: Iterable[str] = ()) -> list[Process]:
    wanted, starts = frozenset(names), tuple(prefixes)
    return [p for p in table if p.comm in wanted or (starts and p.comm.startswith(starts))]


def cmdline(pid: int, proc: str = "/proc") -> list[str]:
    text = _read(f"{proc}/{pid}/cmdline")
    if not text:
        return []
    return text.rstrip("\0").split("\0")


def parent(pid: int, proc: str = "/proc") -> int | None:
    """The parent PID (field 4 of /proc/PID/stat), or None."""
    text = _read(f"{proc}/{pid}/stat")
    if text is None:
        return None
    try:
        return int(text.rsplit(")", 1)[1].split()[1])
    except (IndexError, ValueError):
        return None


def children(pid: int, proc: str = "/proc") -> list[int]:
    """The direct children of ``pid`` (its main thread's), or [] when it is gone."""
    try:
        with open(f"{proc}/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def netns_at(path: str) -> NsKey | None:
    """The namespace a path names (a netns mount, ``/proc/PID/ns/net``), or None when unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return NsKey(st.st_dev, st.st_ino)


def netns_of(pid: int, proc: str = "/proc") -> NsKey | None:
    """The network namespace ``pid`` is in, or None when it is gone or hidden."""
    return netns_at(f"{proc}/{pid}/ns/net")


def cgroup_text(pid: int, proc: str = "/proc") -> str | None:
    return _read(f"{proc}/{pid}/cgroup")


def fd_targets(pid: int, proc: str = "/proc") -> Iterator[tuple[str, str]]:
    """(fd number, what it links to) for every open fd of ``pid``."""
    base = f"{proc}/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        try:
            yield name, os.readlink(f"{base}/{name}")
        except OSError:
            continue


def socket_inodes(pid: int, proc: str = "/proc") -> set[int]:
    found = set()
    for _fd, target in fd_targets(pid, proc):
        if target.startswith("socket:[") and target.endswith("]"):
            try:
                found.add(int(target[8:-1]))
            except ValueError:
                continue
    return found


def parse_unix_table(text: str) -> dict[int, str]:
    """Inode -> path of the *listening* unix sockets with a path, from /proc/net/unix text.

    Columns: ``Num RefCount Protocol Flags Type St Inode [Path]``; abstract sockets
    (path starting with ``@``) are left out: they cannot be reached as a file.
    """
    found: dict[int, str] = {}
    for line in text.splitlines()[1:]:
        fields = line.split(None, 7)
        if len(fields) < 8:
            continue
        try:
            flags, inode = int(fields[3], 16), int(fields[6])
        except ValueError:
            continue
        path = fields[7]
        if flags & SO_ACCEPTCON and path.startswith("/"):
            found[inode] = path
    return found


def listening_sockets(pid: int, proc: str = "/proc") -> list[str]:
    """Paths of the unix sockets ``pid`` listens on (as the process sees them), sorted."""
    inodes = socket_inodes(pid, proc)
    if not inodes:
        return []
    table = _read(f"{proc}/{pid}/net/unix")
    if table is None:
        return []
    listening = parse_unix_table(table)
    return sorted({listening[i] for i in inodes if i in listening})


def same_root(pid: int, proc: str = "/proc") -> bool:
    """Whether ``pid`` sees the same files as we do: same mount namespace and root (not in a
    container, or in a node container of kind/k3d, whose own /run we cannot see directly)."""
    try:
        theirs = os.stat(f"{proc}/{pid}/root")
        ours = os.stat("/")
        their_mounts = os.stat(f"{proc}/{pid}/ns/mnt")
        our_mounts = os.stat("/proc/self/ns/mnt")
    except OSError:
        return True  # cannot tell: take its paths as ours
    return (theirs.st_dev, theirs.st_ino, their_mounts.st_ino) == (
        ours.st_dev,
        ours.st_ino,
        our_mounts.st_ino,
    )


def root_of(pid: int, proc: str = "/proc") -> str:
    """The prefix that makes ``pid``'s absolute paths reachable from here: "" or /proc/PID/root."""
    return "" if same_root(pid, proc) else f"{proc}/{pid}/root"


def resolve_in_root(root: str, path: str) -> str:
    """``root + path`` with the symlinks on the way resolved inside ``root``.

    Through ``/proc/PID/root`` an absolute symlink (``/var/run`` -> ``/run``) would be
    followed in *our* file system, not the process's: each one is read and re-rooted here.
    """
    if not root:
        return path
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        try:
            target = os.readlink(root + "/" + "/".join([*resolved, part]))
        except OSError:  # not a symlink (or not there): keep it as it is
            resolved.append(part)
            continue
        hops += 1
        if hops > 40:  # a loop: give up resolving, as the kernel would (ELOOP)
            return root + path
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p] + parts
    return root + "/" + "/".join(resolved)


def path_in_root(pid: int, path: str, proc: str = "/proc") -> str:
    """``path`` as process ``pid`` sees it, reachable from here (through /proc/PID/root if needed)."""
    return resolve_in_root(root_of(pid, proc), path)
