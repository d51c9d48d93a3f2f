"""Docker containers' names, images and networks, from the Docker daemon.

One ``GET /containers/json`` gives every running container's ID, name, image,
network mode and networks, but not its PID or namespace. The join goes through
the cgroup instead: each process of a namespace names its container ID in
``/proc/PID/cgroup`` (:mod:`vethpeer.cgroup_path`), so the namespaces are labelled with
no call per container. Only containers still unplaced after that (a cgroup layout
not recognised, processes hidden from us) are inspected, one call each
(``State.Pid`` -> ``/proc/PID/ns/net``, else ``NetworkSettings.SandboxKey``).

Clients: on a local unix socket (the usual case) a plain HTTP/1.0 GET on the socket
module (see :class:`LocalApi` for why); the ``docker`` SDK, whose import alone costs
0.1-0.2 s, more than the rest of a 100-container table, for every other
``DOCKER_HOST`` (tcp:// with TLS, ssh://), or everywhere with ``VETHPEER_DOCKER_SDK=1``.
Nothing is imported until a socket is there to talk to. Status: no socket and no sign
that Docker ran since boot -> ``skipped``; socket missing although Docker ran, refused,
or daemon down -> ``unavailable``; no answer within ``--timeout`` -> ``timeout``.

Network modes: ``host`` containers become host-network claims (they have no
namespace or veth of their own); ``container:X`` joins X's namespace, which is
named after X with both in ``containers``; ``none`` has its own namespace with
loopback only. Containers made by Kubernetes through dockershim / cri-dockerd
(``io.kubernetes.pod.*`` labels, names ``k8s_<container>_<pod>_<ns>_<uid>_<n>``)
are claimed as their pod, named after the pod sandbox (``k8s_POD_...``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import cgroup_path as cgroup
from ..deadline import Deadline
from ..model import Claim, NsKey, SourceResult, SourceState, SourceStatus, Workload, WorkloadKind
from ..netns import key_of
from . import PRIORITY_RUNTIME, Context, absent
from .absent import other_daemons
from .cgroup import scan
from .docker_api import Api, LocalApi, SdkApi, Timeout, classify, docker_host, socket_path

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
DOCKER_TYPE = "io.kubernetes.docker.type"  # "podsandbox" or "container"


# ---------------------------------------------------------------- the daemon's facts, parsed


@dataclass(frozen=True, slots=True)
class Container:
    """One running container, as ``GET /containers/json`` lists it."""

    id: str
    name: str
    image: str | None = None
    network_mode: str = "default"
    networks: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def joins(self) -> str | None:
        """The container (ID or name) whose namespace this one joins (``--network container:X``)."""
        mode = self.network_mode
        return mode.split(":", 1)[1] if mode.startswith("container:") else None

    @property
    def pod(self) -> PodRef | None:
        """The Kubernetes pod it belongs to (dockershim / cri-dockerd), or None."""
        labels = self.labels
        if POD_UID in labels and POD_NAME in labels:
            container = labels.get(CONTAINER_NAME) or (
                "POD" if labels.get(DOCKER_TYPE) == "podsandbox" else ""
            )
            return PodRef(labels[POD_NAME], labels.get(POD_NAMESPACE), labels[POD_UID], container)
        return PodRef.from_name(self.name)

    @property
    def is_sandbox(self) -> bool:
        pod = self.pod
        return pod is not None and pod.container == "POD"


@dataclass(frozen=True, slots=True)
class PodRef:
    name: str
    namespace: str | None
    uid: str
    container: str  # "POD" for the sandbox

    @staticmethod
    def from_name(name: str) -> PodRef | None:
        """``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>``: none of the parts has ``_`` in it."""
        parts = name.split("_")
        if len(parts) != 6 or parts[0] != "k8s" or not parts[5].isdigit():
            return None
        return PodRef(parts[2], parts[3], parts[4], parts[1])


def parse_container(summary: Mapping[str, Any]) -> Container:
    """A ``GET /containers/json`` entry -> Container (missing fields tolerated)."""
    names = [str(n).lstrip("/") for n in summary.get("Names") or ()]
    own = [n for n in names if "/" not in n]  # legacy links add "/other/alias" names
    cid = str(summary["Id"])
    networks = (summary.get("NetworkSettings") or {}).get("Networks") or {}
    return Container(
        id=cid,
        name=(own or names or [cid[:12]])[0],
        image=summary.get("Image") or None,
        network_mode=str((summary.get("HostConfig") or {}).get("NetworkMode") or "default"),
        networks=tuple(sorted(networks)),
        labels=dict(summary.get("Labels") or {}),
    )


# ---------------------------------------------------------------- the join (pure)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the containers were found: the namespace of each, and who is left to inspect."""

    ns_of: Mapping[str, NsKey]  # container ID -> namespace
    host_network: frozenset[str]  # IDs of containers in the host's namespace
    unplaced: tuple[Container, ...]


def owners(containers: Sequence[Container]) -> dict[str, Container]:
    """Container ID -> the container whose namespace it uses (itself, or X of ``container:X``)."""
    by_id = {c.id: c for c in containers}
    by_name = {c.name: c for c in containers}

    def find(ref: str) -> Container | None:
        if ref in by_id:
            return by_id[ref]
        if ref in by_name:
            return by_name[ref]
        hits = [c for c in containers if c.id.startswith(ref)]
        return hits[0] if len(hits) == 1 else None

    result: dict[str, Container] = {}
    for container in containers:
        current, seen = container, {container.id}
        while current.joins is not None:
            target = find(current.joins)
            if target is None or target.id in seen:
                break  # X is not running (then neither is this one, really) or a loop
            seen.add(target.id)
            current = target
        result[container.id] = current
    return result


def place(containers: Sequence[Container], ids_in: Mapping[NsKey, Iterable[str]]) -> Placement:
    """Join containers to namespaces through the container IDs their processes' cgroups name."""
    ns_of_id: dict[str, NsKey] = {}
    for key, ids in ids_in.items():
        for cid in ids:
            ns_of_id.setdefault(cid, key)
    owner = owners(containers)
    ns_of: dict[str, NsKey] = {}
    host: set[str] = set()
    unplaced: list[Container] = []
    for container in containers:
        root = owner[container.id]
        if root.network_mode == "host":
            host.add(container.id)
        elif container.id in ns_of_id:
            ns_of[container.id] = ns_of_id[container.id]
        elif root.id in ns_of_id:
            ns_of[container.id] = ns_of_id[root.id]
        else:
            unplaced.append(container)
    return Placement(ns_of, frozenset(host), tuple(unplaced))


def _workload(container: Container, sharing: Sequence[Container] = ()) -> Workload:
    together = sharing or (container,)
    return Workload(
        WorkloadKind.DOCKER,
        container.name,
        id=container.id,
        image=container.image,
        networks=container.networks,
        containers=tuple(c.name for c in together),
        source="docker",
        container_ids=tuple(c.id for c in together),
    )


def _pod_claims(key: NsKey, found: Sequence[Container], priority: int) -> list[Claim]:
    by_uid: dict[str, list[Container]] = {}
    for container in found:
        pod = container.pod
        assert pod is not None
        by_uid.setdefault(pod.uid, []).append(container)
    claims = []
    for uid, group in sorted(by_uid.items()):
        sandbox = next((c for c in group if c.is_sandbox), None)
        pod = (sandbox or group[0]).pod
        assert pod is not None
        apps = sorted((c for c in group if not c.is_sandbox), key=lambda c: c.name)
        names = tuple(dict.fromkeys(c.pod.container for c in apps if c.pod is not None))
        workload = Workload(
            WorkloadKind.POD,
            pod.name,
            id=sandbox.id if sandbox else None,
            namespace=pod.namespace,
            uid=uid,
            networks=sandbox.networks if sandbox else (),
            containers=names,
            source="docker",
            container_ids=tuple(c.id for c in apps),
        )
        claims.append(Claim(key, workload, priority))
    return claims


def claims(containers: Sequence[Container], placement: Placement, host: NsKey) -> list[Claim]:
    """Claims for every placed container: pods first, then plain containers by namespace owner."""
    owner = owners(containers)
    groups: dict[NsKey, list[Container]] = {}
    for container in containers:
        if container.id in placement.host_network:
            groups.setdefault(host, []).append(container)
        elif container.id in placement.ns_of:
            groups.setdefault(placement.ns_of[container.id], []).append(container)
    result: list[Claim] = []
    for key, found in groups.items():
        in_pods = [c for c in found if c.pod is not None]
        plain = [c for c in found if c.pod is None]
        result += _pod_claims(key, in_pods, PRIORITY_RUNTIME)
        if key == host:  # each host-network container is a workload of its own
            result += [Claim(key, _workload(c), PRIORITY_RUNTIME) for c in plain]
        elif plain:
            # Named after the one that owns the network; those that joined it are listed with it.
            plain.sort(key=lambda c: (owner[c.id].id != c.id, c.name))
            priority = PRIORITY_RUNTIME - 1 if in_pods else PRIORITY_RUNTIME
            result.append(Claim(key, _workload(plain[0], plain), priority))
    return result


def ids_by_namespace(context: Context) -> dict[NsKey, list[str]]:
    """Container IDs named by the cgroups of each (non-host) namespace's processes, in PID order."""
    found: dict[NsKey, list[str]] = {}
    for key, members in scan(context).items():
        if key == context.host:
            continue
        ids = [m.identity.id for m in members if m.identity.id and cgroup.HEX_ID.match(m.identity.id)]
        if ids:
            found[key] = list(dict.fromkeys(ids))
    return found


def _namespace_of(info: Mapping[str, Any], proc: str = "/proc") -> NsKey | None:
    """The namespace of an inspected container: its init's, else its sandbox's bind mount."""
    pid = int((info.get("State") or {}).get("Pid") or 0)
    paths = [f"{proc}/{pid}/ns/net"] if pid > 0 else []
    sandbox = (info.get("NetworkSettings") or {}).get("SandboxKey")
    if sandbox:
        paths.append(str(sandbox))
    for path in paths:
        try:
            return key_of(path)
        except OSError:
            continue
    return None


class DockerNames:
    """Names Docker containers (and dockershim pods) through the Docker Engine API."""

    name = absent.DOCKER

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, use_sdk: bool | None = None) -> None:
        self.clock = clock
        # None: the SDK only where the standard library cannot go (tcp:// with TLS, ssh://, ...),
        # or everywhere with VETHPEER_DOCKER_SDK=1.
        self.use_sdk = use_sdk

    def collect(self, context: Context) -> SourceResult:
        """The daemon the user named; else the default one and every other dockerd listening."""
        skipped = absent.docker(context)  # no socket, no other dockerd listening
        if skipped is not None:
            return skipped
        named = context.options.docker_host or context.environ.get("DOCKER_HOST") or None
        url = docker_host(named, context.environ)
        others = [] if named else other_daemons(context, url)
        path = socket_path(url)
        default_there = path is None or os.path.exists(path)
        deadline = Deadline(context.options.timeout, self.clock)
        sdk = self.use_sdk if self.use_sdk is not None else context.environ.get("VETHPEER_DOCKER_SDK") == "1"
        if not others:
            return self._one(url, context, deadline, sdk)
        targets = [(url, url)] if default_there else []
        targets += [(f"unix://{e.path}", f"unix://{e.path} ({e.why})") for e in others]
        details: list[str] = []
        claims_found: list[Claim] = []
        state = SourceState.OK
        for target, label in targets:
            result = self._one(target, context, deadline, sdk)
            detail = result.status.detail.removeprefix(f"{target}: ")
            details.append(f"{label}: {detail}")
            claims_found += result.claims
            if state is SourceState.OK:
                state = result.status.state  # the first daemon that failed decides (--strict)
        return SourceResult(SourceStatus(self.name, state, "; ".join(details)), tuple(claims_found))

    def _one(self, url: str, context: Context, deadline: Deadline, sdk: bool) -> SourceResult:
        path = socket_path(url)

        def remaining() -> float:
            if deadline.expired():
                raise Timeout()
            return deadline.left()

        def unavailable(error: Exception) -> SourceResult:
            state, reason = classify(error)
            return SourceResult(SourceStatus(self.name, state, f"{url}: {reason}"))

        # Each try holds only the I/O (socket, http.client, requests, urllib3 and SDK errors
        # alike): a bug in reading the answers reaches the bug guard (collect.guarded) as one.
        api: Api
        if path is not None and not sdk:
            api = LocalApi(path, remaining)
        else:
            try:
                api = SdkApi(url, remaining(), context.environ)  # asks the daemon its API version
            except ImportError:
                return SourceResult(
                    SourceStatus(
                        self.name, SourceState.UNAVAILABLE, "the docker Python package is not installed"
                    )
                )
            except Exception as error:
                return unavailable(error)
        try:
            try:
                listed = api.containers(remaining())
            except Exception as error:
                return unavailable(error)
            containers = [parse_container(s) for s in listed]
            placement = place(containers, ids_by_namespace(context))
            try:  # only those the cgroups did not place
                infos = [(c.id, api.inspect(c.id, remaining())) for c in placement.unplaced]
            except Exception as error:
                return unavailable(error)
        finally:
            api.close()
        placed = dict(placement.ns_of)
        for container_id, info in infos:
            key = _namespace_of(info, context.proc) if info is not None else None
            if key is not None:
                placed[container_id] = key
        placement = Placement(placed, placement.host_network, ())
        found = claims(containers, placement, context.host)
        unplaced = len(containers) - len(placement.ns_of) - len(placement.host_network)
        detail = f"{len(containers)} containers" + (f", {unplaced} without a namespace" if unplaced else "")
        return SourceResult(SourceStatus(self.name, SourceState.OK, detail), tuple(found))
