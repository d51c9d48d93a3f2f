"""Who a process belongs to, read from the path of its cgroup (``/proc/PID/cgroup``).

Container runtimes put each container's processes in a cgroup whose path carries the
container's identity, so a namespace can be named without asking any daemon (a host
whose Docker daemon is down still shows container IDs). Patterns recognised, with
cgroup v1 (one line per hierarchy) and v2 (``0::/path``):

* Docker: ``/docker/<id>`` (cgroupfs driver), ``docker-<id>.scope`` (systemd driver)
* podman: ``libpod-<id>.scope`` (systemd), ``libpod-<id>`` (cgroupfs, under ``libpod_parent``)
* LXC / LXD: ``lxc.payload.<name>`` (LXC 4+), ``lxc.payload/<name>``, ``/lxc/<name>`` (older)
* libvirt: ``machine-qemu\\x2d<n>\\x2d<name>.scope`` (systemd), ``<name>.libvirt-qemu`` (cgroupfs)
* Kubernetes: ``/kubepods[/<qos>]/pod<uid>/<id>`` (cgroupfs) and
  ``kubepods[-<qos>]-pod<uid_with_underscores>.slice/{cri-containerd,crio,docker}-<id>.scope``

Helper processes that sit next to a container but are not in it (``libpod-conmon-``,
``crio-conmon-``, ``lxc.monitor``) name nothing: conmon runs in the host's network
namespace, and taking it for a container would claim a host-network container that is not.

Only the path is parsed here (pure, no I/O) except in :func:`read` / :func:`of_pid`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from .proc_files import read_text

HEX_ID = re.compile(r"^[0-9a-f]{64}$")

_DOCKER_SCOPE = re.compile(r"^docker-([0-9a-f]{64})\.scope$")
_LIBPOD = re.compile(r"^libpod-([0-9a-f]{64})(?:\.scope)?$")
# Inside a pod: systemd scopes, or CRI-O's cgroupfs "crio-<id>" (no .scope).
_CRI_SCOPE = re.compile(r"^(cri-containerd|crio|docker)-([0-9a-f]{64})(?:\.scope)?$")
_LXC_PAYLOAD = re.compile(r"^lxc\.payload\.(.+)$")
_QEMU_SCOPE = re.compile(r"^machine-qemu-(?:(\d+)-)?(.+)\.scope$")
_QEMU_CGROUPFS = re.compile(r"^(?:qemu-(\d+)-)?(.+)\.libvirt-qemu$")
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32}"
_POD_DIR = re.compile(rf"^pod({_UID})$")  # cgroupfs: pod<uid> (static pods: 32 hex, no dashes)
_POD_SLICE = re.compile(rf"^(?:.+-)?kubepods-(?:(?:burstable|besteffort)-)?pod({_UID})\.slice$")
_QOS = frozenset({"burstable", "besteffort"})
_NOT_A_CONTAINER = re.compile(r"^(?:libpod-conmon-.*|crio-conmon-.*|lxc\.monitor(?:[./].*)?)$")
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")

# Values of Identity.runtime
DOCKER = "docker"
PODMAN = "podman"
LXC = "lxc"
QEMU = "qemu"
CRI_CONTAINERD = "cri-containerd"
CRIO = "crio"
KUBERNETES = "kubernetes"  # a pod found by its cgroupfs path: the runtime is not in the path


class Identity(NamedTuple):
    """The innermost container a cgroup path names.

    ``id`` is the container ID (64 hex) for Docker, podman and Kubernetes, or the
    name for LXC and libvirt guests; ``pod_uid`` (with dashes) when it runs in a
    Kubernetes pod. A pod-level cgroup with no container below it has ``id=None``.
    """

    runtime: str
    id: str | None
    name: str | None = None  # LXC container or libvirt domain name
    pod_uid: str | None = None

    @property
    def is_vm(self) -> bool:
        """A virtual machine: its process lives in the host namespace and uses taps, not veths."""
        return self.runtime == QEMU


def unescape(component: str) -> str:
    r"""systemd escapes unit-name characters as ``\xNN`` (``machine-qemu\x2d1\x2dvm.scope``)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), component)


def _pod_uid(raw: str) -> str:
    return raw.replace("_", "-")


@lru_cache(maxsize=8192)
def parse_path(path: str) -> Identity | None:
    """The innermost container named by one cgroup path, or None (cached: pure, and
    every process of a container, in every v1 hierarchy, repeats the same path).

    Nested containers (Docker in Docker, a kind node) read as
    ``/docker/<outer>/docker/<inner>``: the innermost one holds the process, so it wins.
    """
    parts = [unescape(p) for p in path.split("/") if p]
    found: Identity | None = None
    pod: str | None = None
    after_pod = False  # the component right after pod<uid> (cgroupfs) is the container ID
    for i, part in enumerate(parts):
        previous = parts[i - 1] if i else ""
        if _NOT_A_CONTAINER.match(part):
            return None
        if after_pod:
            after_pod = False
            if HEX_ID.match(part):
                found = Identity(KUBERNETES, part, pod_uid=pod)
                continue
        if m := _POD_SLICE.match(part):
            pod = _pod_uid(m.group(1))
            found = Identity(KUBERNETES, None, pod_uid=pod)
        elif (m := _POD_DIR.match(part)) and (previous == "kubepods" or previous in _QOS):
            pod = _pod_uid(m.group(1))
            found = Identity(KUBERNETES, None, pod_uid=pod)
            after_pod = True
        elif pod is not None and (m := _CRI_SCOPE.match(part)):
            runtime = m.group(1)
            found = Identity(DOCKER if runtime == "docker" else runtime, m.group(2), pod_uid=pod)
        elif m := _DOCKER_SCOPE.match(part):
            found, pod = Identity(DOCKER, m.group(1)), None
        elif previous == "docker" and HEX_ID.match(part):
            found, pod = Identity(DOCKER, part), None
        elif m := _LIBPOD.match(part):
            found, pod = Identity(PODMAN, m.group(1)), None
        elif m := _LXC_PAYLOAD.match(part):
            found, pod = Identity(LXC, m.group(1), name=m.group(1)), None
        elif previous in ("lxc", "lxc.payload"):
            found, pod = Identity(LXC, part, name=part), None
        elif (m := _QEMU_SCOPE.match(part)) or (m := _QEMU_CGROUPFS.match(part)):
            found, pod = Identity(QEMU, m.group(2), name=m.group(2)), None
    return found


def _preference(controllers: str) -> int:
    """Which hierarchy to believe first: the unified one, then systemd's, then the rest."""
    if controllers == "":
        return 0
    if controllers == "name=systemd":
        return 1
    return 2


def parse(text: str) -> Identity | None:
    """The container named by ``/proc/PID/cgroup`` text (``ID:CONTROLLERS:PATH`` lines).

    Hierarchies can disagree (cgroup v1 lets each controller place a process
    elsewhere); the unified hierarchy is believed first, then ``name=systemd``, then
    the others in file order.
    """
    best: tuple[int, Identity] | None = None
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        identity = parse_path(fields[2])
        if identity is not None:
            rank = _preference(fields[1])
            if best is None or rank < best[0]:
                best = (rank, identity)
    return best[1] if best is not None else None


def read(pid: int, proc: str = "/proc") -> str | None:
    """The text of ``/proc/PID/cgroup``, or None if the process is gone or hidden."""
    return read_text(f"{proc}/{pid}/cgroup")


def of_pid(pid: int, proc: str = "/proc") -> Identity | None:
    """The container process ``pid`` runs in, or None (not in one, or gone)."""
    text = read(pid, proc)
    return parse(text) if text is not None else None


def start_time(pid: int, proc: str = "/proc") -> int | None:
    """When ``pid`` started (clock ticks since boot, field 22 of /proc/PID/stat), or None."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None
