"""Finding every network namespace on the host, and entering one for a moment.

A namespace is found three ways: the host's own (the one PID 1 is in), the
namespaces of processes (``/proc/PID/ns/net``), and nsfs bind mounts with no
process inside (``ip netns``, Docker, CNI, podman), read from
``/proc/self/mountinfo``. They are merged on (st_dev, st_ino).

Inside a container (a DaemonSet pod with hostPID) our own mount table is the
container's: the node's bind mounts are listed in PID 1's (``/proc/1/mountinfo``;
kthreadd's when PID 1 refuses us) and reached through ``/proc/1/root``. Both tables
are read when they differ; a mount is named as the node names it
(``Namespace.mounts``) and opened through the path that reaches it
(``Namespace.reachable``).
Everything is read below one procfs root (``proc``), so tests can point discovery
at a recorded tree.

Processes vanish and some refuse us (PID 1 can be protected even from root):
both are counted, never raised.
"""

from __future__ import annotations

import ctypes
import os
import re
import resource
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from .errors import NamespaceGone, NoPrivilege
from .model import Namespace, NsKey
from .proc_files import read_text
from .sources import procfs

CLONE_NEWNET = 0x40000000


def key_of(path: str) -> NsKey:
    """The identity of the namespace a path refers to (follows /proc symlinks)."""
    st = os.stat(path)
    return NsKey(st.st_dev, st.st_ino)


def _key_of_fd(fd: int) -> NsKey:
    st = os.fstat(fd)
    return NsKey(st.st_dev, st.st_ino)


def _unescape_mountinfo(field: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as \040 \011 \012 \134."""
    if "\\" not in field:
        return field
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _nsfs_mount(dev: int) -> re.Pattern[str]:
    r"""One nsfs mount of a network namespace in mountinfo, by the two fields that name it.

    A line is: id parent MAJOR:MINOR root mountpoint options [optional fields] - fstype source
    super-options. An nsfs mount's MAJOR:MINOR is the nsfs device (the one nsfs superblock: the
    ``st_dev`` of every namespace file, the host's own included) and its root is
    ``net:[INODE]`` (the namespace file's ``st_ino``), both printed from the mount itself, for a
    bind mount of a namespace file too: " MAJ:MIN net:[" is the key (st_dev, st_ino) itself.
    No other pair of fields can read so: the fields before are numbers, a mount point is a path
    ("/..."), options, optional fields and the fstype are the kernel's words, and a source (any
    text, spaces escaped) is followed by super options, which begin with "rw" or "ro". A literal
    search (no per-line anchor, no fstype to reach) keeps the parse to one ``findall`` over the
    table: at thousands of mounts it is most of discovery's own work (issue 18)."""
    return re.compile(rf" {os.major(dev)}:{os.minor(dev)} net:\[(\d++)\] (\S++) ")


def nsfs_mounts(mountinfo: str, dev: int) -> dict[str, list[str]]:
    """The namespace's inode (mountinfo's root field, ``net:[INODE]``, as text) -> its mount points,
    for the nsfs mounts on device ``dev`` (the nsfs device: the host namespace's ``st_dev``).

    A mount point mounted over names the later mount: the one on top, that opening the path
    reaches. Nothing is converted per mount (a node can have thousands): the caller turns each
    namespace's inode into a number."""
    found = _nsfs_mount(dev).findall(mountinfo)
    if "\\" in mountinfo:
        found = [(inode, _unescape_mountinfo(path)) for inode, path in found]
    if len({path for _inode, path in found}) != len(found):  # a mount point mounted over
        found = [(inode, path) for path, inode in {path: inode for inode, path in found}.items()]
    by_inode: dict[str, list[str]] = {}
    for inode, path in found:
        paths = by_inode.get(inode)
        if paths is None:
            by_inode[inode] = [path]
        else:
            paths.append(path)
    return by_inode


@dataclass(frozen=True, slots=True)
class Discovery:
    host: NsKey
    host_found_via: str
    namespaces: tuple[Namespace, ...]
    unreadable_pids: int
    vanished_pids: int


def _host_key(proc: str) -> tuple[NsKey, str]:
    """The initial network namespace.

    PID 1 is in it, but PID 1 may refuse even root (EACCES). Kernel threads
    always live in the initial namespace: kthreadd (PID 2) serves when it is one.
    """
    try:
        return key_of(f"{proc}/1/ns/net"), "pid 1"
    except PermissionError:
        pass
    if _is_kthreadd(proc):
        with suppress(OSError):
            return key_of(f"{proc}/2/ns/net"), "kthreadd (pid 2)"
    raise NoPrivilege(f"cannot read the host's network namespace ({proc}/1/ns/net)")


def _node_process(proc: str) -> str | None:
    """A process in the node's mount namespace when ours is another one (we run in a container
    that sees the node's processes): PID 1, or kthreadd (PID 2) when PID 1 refuses even root."""
    try:
        ours = os.stat(f"{proc}/self/ns/mnt").st_ino
    except OSError:
        return None
    for pid in ("1", "2"):
        try:
            theirs = os.stat(f"{proc}/{pid}/ns/mnt").st_ino
        except OSError:
            continue
        if pid == "2" and not _is_kthreadd(proc):
            return None
        return pid if theirs != ours else None
    return None


def _is_kthreadd(proc: str) -> bool:
    try:
        with open(f"{proc}/2/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return fields[1] == "0" and bool(int(fields[6]) & 0x00200000)  # ppid 0, PF_KTHREAD
    except (OSError, IndexError, ValueError):
        return False


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_mountinfo(path: str) -> str | None:
    """A mount table's text, or None if unreadable, read a page at a time.

    The kernel hands out mountinfo a page at a time (its seq_file buffer), whatever is asked;
    asking for a page, not 64 kB, spares allocating and shrinking 64 kB for each of the ~45
    reads of a table of 2,000 mounts (~0.15 ms of ~1 ms here)."""
    return read_text(path, chunk=_PAGE)


def mount_tables(proc: str) -> list[tuple[str, str]]:
    """(mountinfo text, prefix that reaches its paths from here): ours, and the node's if it differs.

    The node's table is read only when a process of the node's mount namespace (PID 1, or
    kthreadd) is in another mount namespace than ours, and it lets us.
    """
    tables = [(read_mountinfo(f"{proc}/self/mountinfo") or "", "")]
    pid = _node_process(proc)
    if pid is not None:
        node = read_mountinfo(f"{proc}/{pid}/mountinfo")
        if node is not None:
            tables.append((node, f"{proc}/{pid}/root"))
    return tables


def _node_mount_keys(
    inodes: dict[str, list[str]], prefix: str, ours: set[str]
) -> Iterator[tuple[str, tuple[int, int]]]:
    """(path, key) of each nsfs mount of the node's table that ours does not have.

    Our own table names each mount's namespace (its inode; every nsfs file has the one nsfs
    device): nothing is stat'ed for it. The node's, reached through another root, is stat'ed
    mount by mount, as only the paths that reach a namespace from here count."""
    for path in (path for paths in inodes.values() for path in paths):
        if path in ours:  # the node's mount, propagated into our table too (/run/netns)
            continue
        try:
            st = os.stat(prefix + path)
        except OSError:  # unmounted since, or not reachable from here
            continue
        yield path, (st.st_dev, st.st_ino)


def discover(proc: str = "/proc", previous: Discovery | None = None) -> Discovery:
    """Find every network namespace visible from here.

    ``previous``: an earlier discovery (the live model's), whose Namespace objects are kept where
    this one finds the same (a caller comparing two discoveries then compares mostly identities).
    """
    host, via = _host_key(proc)
    # Keyed by (st_dev, st_ino) tuples while counting (thousands of lookups), NsKey at the end.
    pids: dict[tuple[int, int], list[int]] = {(host.dev, host.ino): []}
    unreadable = vanished = 0
    for entry in os.scandir(proc):
        name = entry.name
        if not name.isdigit():
            continue
        try:
            st = os.stat(f"{proc}/{name}/ns/net")
        except PermissionError:
            unreadable += 1
            continue
        except OSError:  # gone, or a zombie with no namespaces left
            vanished += 1
            continue
        pids.setdefault((st.st_dev, st.st_ino), []).append(int(name))

    # The namespace -> its mounts as the node names them; and, for the node's table read through
    # /proc/PID/root, the path that reaches each from here (ours reach themselves).
    reach: dict[str, str] = {}
    (ours, _), *others = mount_tables(proc)
    own = nsfs_mounts(ours, host.dev)
    mounts = {(host.dev, int(inode)): paths for inode, paths in own.items()}  # all on the one nsfs
    for text, prefix in others:
        seen = {path for paths in own.values() for path in paths}
        for path, found_key in _node_mount_keys(nsfs_mounts(text, host.dev), prefix, seen):
            mounts.setdefault(found_key, []).append(path)
            reach[path] = prefix + path

    before = {(ns.key.dev, ns.key.ino): ns for ns in previous.namespaces} if previous is not None else {}
    namespaces = []
    for dev, ino in sorted(pids.keys() | mounts.keys()):
        members = tuple(sorted(pids.get((dev, ino), ())))
        paths = tuple(sorted(mounts.get((dev, ino), ())))
        reached = reach and not reach.keys().isdisjoint(paths)
        reachable = tuple(reach.get(p, p) for p in paths) if reached else ()
        old = before.get((dev, ino))
        key = old.key if old is not None else NsKey(dev, ino)
        comm = procfs.comm(members[0], proc) if members and key != host else None
        if old is not None and (old.pids, old.mounts, old.comm, old.reachable) == (
            members,
            paths,
            comm,
            reachable,
        ):
            namespaces.append(old)
        else:
            namespaces.append(Namespace(key, key == host, paths, members, comm, reachable))
    return Discovery(host, via, tuple(namespaces), unreadable, vanished)


def open_namespace(ns: Namespace, proc: str = "/proc") -> int:
    """An O_RDONLY fd on the namespace, checked to be the same one (no PID reuse race)."""
    candidates = [*(ns.reachable or ns.mounts), *(f"{proc}/{pid}/ns/net" for pid in ns.pids)]
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except PermissionError:
            continue
        except OSError:
            continue
        if _key_of_fd(fd) == ns.key:
            return fd
        os.close(fd)
    raise NamespaceGone(f"network namespace {ns.key.ino} is gone (its processes exited)")


_libc: ctypes.CDLL | None = None


def setns(fd: int) -> None:
    """Move the calling thread (only) into the network namespace behind fd."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def home_fd(proc: str = "/proc") -> int:
    """An fd on the calling thread's own network namespace, to come back to after setns."""
    return os.open(f"{proc}/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


@contextmanager
def home_namespace(proc: str = "/proc") -> Iterator[int]:
    """The calling thread's namespace fd for the duration of the body (closed afterwards)."""
    fd = home_fd(proc)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def inside(fd: int, home_fd: int) -> Iterator[None]:
    """Run the body in the namespace behind fd; always come back to home_fd."""
    setns(fd)
    try:
        yield
    finally:
        setns(home_fd)  # failing to come back must not go unnoticed: it raises


def raise_fd_limit(wanted: int) -> None:
    """Make room for one fd per namespace (plus netlink sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
