"""Sources name the namespaces: each one turns what some authority knows into claims.

A source is a small object with a ``name`` and a ``collect(context)`` method that
returns a :class:`~vethpeer.model.SourceResult`. It never raises for an expected
failure (daemon down, socket missing, timeout): that is a status with a reason.
Sources run in worker threads while the kernel walk runs, so they must not call
``setns`` and must honour ``context.timeout`` on every blocking call.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from ..model import Namespace, NsKey, SourceResult

# Higher wins when several sources claim one namespace.
PRIORITY_RUNTIME = 40  # docker, CRI: names given by the daemon that made it
PRIORITY_CGROUP = 30  # an ID read from /proc/PID/cgroup, no daemon asked
PRIORITY_NETNS = 20  # an `ip netns` name
PRIORITY_PROCESS = 10  # only a process holds it


class Options(NamedTuple):
    """What the command line asked the sources for. ``timeout`` is each source's deadline:
    the time it may take in all, whatever number of calls it makes."""

    timeout: float = 3.0
    docker_host: str | None = None  # None: DOCKER_HOST or the default socket
    runtime_endpoint: str | None = None  # None: CONTAINER_RUNTIME_ENDPOINT or probing
    kube: bool | None = None  # None: auto (kubeconfig present), True: --kube, False: --no-kube


class Paths(NamedTuple):
    """Where on this machine the sources look for runtimes' traces (tests point them elsewhere)."""

    docker_run_dir: str = "/run/docker"  # the daemon's runtime dir; /run is a tmpfs: "ran since boot"
    # CRI sockets probed in this order when no endpoint is given (crictl's, plus k3s/rke2, microk8s)
    cri_sockets: tuple[tuple[str, str], ...] = (
        ("containerd", "/run/containerd/containerd.sock"),
        ("CRI-O", "/var/run/crio/crio.sock"),
        ("CRI-O", "/run/crio/crio.sock"),
        ("cri-dockerd", "/var/run/cri-dockerd.sock"),
        ("k3s/rke2", "/run/k3s/containerd/containerd.sock"),
        ("microk8s", "/var/snap/microk8s/common/run/containerd.sock"),
    )
    host_root: str = "/host"  # `kubectl debug node/NAME` mounts the node's root file system here
    kubelet_dir: str = "/var/lib/kubelet"
    in_cluster_token: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"


T = TypeVar("T")


class _Pending:
    """One memo entry: set once, by the thread that computes it; waited for by the others."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class RunMemo:
    """Work that several sources of one run need, done once: the first caller computes it,
    the others (in other threads) wait for that answer. It lives on the run's Context,
    so nothing outlives the run. (An Event, not a concurrent.futures.Future: that module
    and the logging it imports cost every command ~3 ms at start.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Pending] = {}

    def once(self, key: str, compute: Callable[[], T], wait: float | None = None) -> T:
        """``compute()`` once per key; raises TimeoutError if another thread's took over ``wait``."""
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = self._entries[key] = _Pending()
        if owner:
            try:
                entry.value = compute()
            except BaseException as error:
                entry.error = error
                raise
            finally:
                entry.done.set()
        elif not entry.done.wait(wait):
            raise TimeoutError(f"{key}: still being computed by another thread")
        if entry.error is not None:
            raise entry.error
        result: T = entry.value
        return result


@dataclass(frozen=True, slots=True)
class Context:
    """What a source may look at: the namespaces discovered, the options, the procfs root, the
    environment variables and the machine's paths (passed: a source reads no globals), and the
    run's memo (work shared between sources)."""

    host: NsKey
    namespaces: tuple[Namespace, ...]
    options: Options = Options()  # noqa: RUF009 (a named tuple: immutable)
    proc: str = "/proc"  # where /proc is read (tests point it at a recorded tree)
    environ: Mapping[str, str] = field(default_factory=dict, compare=False)  # the run's (Environment)
    paths: Paths = Paths()  # noqa: RUF009 (a named tuple: immutable)
    memo: RunMemo = field(default_factory=RunMemo, compare=False)

    def by_key(self) -> dict[NsKey, Namespace]:
        return {ns.key: ns for ns in self.namespaces}


class Source(Protocol):
    name: str

    def collect(self, context: Context) -> SourceResult: ...


SourceFactory = Callable[[], Source]

# Hold this while importing a client library (docker, grpc, kubernetes) in a source:
#     with HEAVY_IMPORTS:
#         import docker
# Sources run in parallel threads, and those libraries share dependencies whose modules
# import each other (docker and kubernetes both pull in ``requests``): two threads
# importing them at once can meet a partially initialised module and fail with
# "cannot import name ... (most likely due to a circular import)". One lock around
# every such import means they never overlap.
HEAVY_IMPORTS = threading.RLock()


class Deferred:
    """A source whose module is imported only once its cheap first look (``absent``) finds
    something of its runtime: where it finds nothing, that look's answer is the source's, and its
    parsers and dataclasses are never imported (see :mod:`vethpeer.sources.absent`)."""

    def __init__(
        self, name: str, module: str, factory: str, absent: Callable[[Context], SourceResult | None]
    ) -> None:
        self.name, self.module, self.factory, self.absent = name, module, factory, absent
        self._source: Source | None = None
        self._lock = threading.Lock()

    def load(self) -> Source:
        """The source itself, its module imported once."""
        with self._lock:
            if self._source is None:
                module = importlib.import_module(f"{__name__}.{self.module}")
                self._source = getattr(module, self.factory)()
            return self._source

    def prepare(self, context: Context) -> None:
        if self.absent(context) is None:
            prepare = getattr(self.load(), "prepare", None)
            if prepare is not None:
                prepare(context)

    def collect(self, context: Context) -> SourceResult:
        skipped = self.absent(context)
        return skipped if skipped is not None else self.load().collect(context)


def all_sources() -> list[Source]:
    """Every source, cheapest first. Each imports its heavy libraries only in collect(); those
    that find nothing on most hosts (docker, kube, podman, lxc) import even their own module only
    then."""
    from . import absent, kernel

    sources: list[Source] = [kernel.KernelNames()]
    from . import cgroup  # /proc/PID/cgroup (no daemon)

    sources.append(cgroup.CgroupNames())
    sources.append(Deferred(absent.DOCKER, "docker", "DockerNames", absent.docker))  # the daemon
    from . import docker_sandboxes  # overlay/swarm sandboxes, after their Docker network

    sources.append(docker_sandboxes.DockerSandboxes())
    from . import cri  # CRI runtime (containerd, CRI-O, cri-dockerd): pods

    sources.append(cri.CriPods())
    sources.append(Deferred(absent.PODMAN, "podman", "PodmanNames", absent.podman))  # state files
    sources.append(Deferred(absent.LXC, "lxc", "LxcNames", absent.lxc))  # cgroups, monitors, configs
    from . import nspawn  # systemd-nspawn: cgroups, supervisor processes

    sources.append(nspawn.NspawnMachines())
    from . import taps  # who holds each tap/tun device (VMs)

    sources.append(taps.TapOwners())
    # Kubernetes API (optional): node, pod IP, owner of the CRI's pods
    sources.append(Deferred(absent.KUBE, "kube", "KubePods", absent.kube))
    return sources
