"""Pods from the node's container runtime, over the Kubernetes CRI (``runtime.v1``, gRPC).

This is the node's own truth: the runtime that made each pod sandbox knows its
name, namespace, UID, containers and network namespace, whether or not an API
server is reachable. Three kinds of call, each under the one deadline
``options.timeout``:

* ``Version`` (is this a CRI runtime at all? Docker's own containerd answers gRPC
  but runs with the CRI plugin disabled: UNIMPLEMENTED),
* ``ListPodSandbox`` (READY sandboxes only: a pod recreated several times leaves
  NOTREADY sandboxes behind whose namespace is closed) and ``ListContainers``
  (once, for the container names and IDs of every sandbox), the three sent at once,
* ``PodSandboxStatus(verbose=true)`` for every ready sandbox not placed by its cgroup, all in flight at once
  on one HTTP/2 connection (it is the only per-pod call; there is no batch form).
  Its ``info["info"]`` JSON (containerd and CRI-O alike) carries the sandbox's
  ``pid`` and ``runtimeSpec.linux.namespaces[type=network].path``.

The namespace is identified by stat()ing that path (or ``/proc/PID/ns/net``):
read-only, no setns. A pod with ``hostNetwork: true`` (network namespace mode
NODE, or a namespace that is the host's) is a claim on the host key, so the
correlator lists it apart. A runtime that gives no pid or path (cri-dockerd) is
matched through the pod UID in the cgroup path of the namespaces' processes.

The client (:mod:`vethpeer.cri.client`, on ``h2``) and the messages (:mod:`vethpeer.cri.messages`,
protobuf's wire format by hand: protobuf's own import cost more than the whole conversation) are
imported only once a socket is known to exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from ..deadline import Deadline
from ..model import Claim, NsKey, SourceResult, SourceState, SourceStatus, Workload, WorkloadKind
from . import HEAVY_IMPORTS, PRIORITY_RUNTIME, Context, procfs
from .cri_endpoints import EndpointError, candidates, discover, given

if TYPE_CHECKING:
    from ..cri import messages
    from ..cri.client import Channel, RpcError

CONTAINER_NAME_LABEL = "io.kubernetes.container.name"  # set by the kubelet
IN_FLIGHT = 64  # PodSandboxStatus calls outstanding at once
MAX_MESSAGE = 64 << 20  # ListContainers on a busy node can exceed gRPC's 4 MiB default


class PodSandbox(NamedTuple):
    """One READY sandbox and what its namespace resolved to (None: not readable)."""

    workload: Workload
    netns: NsKey | None
    host_network: bool


class Fetch(NamedTuple):
    """What the runtime said: a status, and the ready pods (possibly partial on timeout)."""

    status: SourceStatus
    pods: tuple[PodSandbox, ...] = ()


NAME = "cri"


def _status(state: SourceState, detail: str) -> SourceStatus:
    return SourceStatus(NAME, state, detail)


# ------------------------------------------------------------------------ namespaces


def netns_path(info: Mapping[str, Any]) -> str | None:
    """``runtimeSpec.linux.namespaces[type=network].path`` of the verbose info, if any."""
    spec = info.get("runtimeSpec")
    linux = spec.get("linux") if isinstance(spec, dict) else None
    namespaces = linux.get("namespaces") if isinstance(linux, dict) else None
    for ns in namespaces if isinstance(namespaces, list) else ():
        if isinstance(ns, dict) and ns.get("type") == "network":
            path = ns.get("path")
            return path if isinstance(path, str) and path else None
    return None


def has_network_namespace_entry(info: Mapping[str, Any]) -> bool | None:
    """Whether the spec asks for a network namespace at all (None: no spec to tell)."""
    spec = info.get("runtimeSpec")
    linux = spec.get("linux") if isinstance(spec, dict) else None
    namespaces = linux.get("namespaces") if isinstance(linux, dict) else None
    if not isinstance(namespaces, list):
        return None
    return any(isinstance(ns, dict) and ns.get("type") == "network" for ns in namespaces)


def sandbox_netns(info: Mapping[str, Any], root: str = "", proc: str = "/proc") -> NsKey | None:
    """The live sandbox's namespace: the spec's netns path, else the sandbox process's.

    A stopped sandbox still reports its old path; ``pid`` 0 or ``netNamespaceClosed``
    say it is gone, and then nothing is claimed. ``root``: the runtime runs in a node
    container (kind, k3d) and its paths are reached through ``/proc/PID/root``; its PIDs
    are then of another PID namespace and are not used.
    """
    try:
        pid = int(info.get("pid") or 0)
    except (TypeError, ValueError):
        pid = 0
    closed = info.get("netNamespaceClosed") is True
    path = netns_path(info)
    if path and not closed:
        key = procfs.netns_at(procfs.resolve_in_root(root, path))
        if key is not None:
            return key
    if pid > 0 and not root:
        return procfs.netns_of(pid, proc)
    return None


def parse_info(raw: Mapping[str, str]) -> dict[str, Any]:
    """The JSON under ``info["info"]`` ({} when absent or not JSON: cri-dockerd, non-verbose)."""
    try:
        info = json.loads(raw.get("info", "") or "{}")
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _pod_uids_by_namespace(context: Context, per_namespace: int = 8) -> dict[str, NsKey]:
    """Pod UID -> namespace, from the cgroup paths of (the first few) processes of each namespace."""
    from .cgroup import scan

    found: dict[str, NsKey] = {}
    for key, members in scan(context).items():
        for member in members[:per_namespace]:
            if member.identity.pod_uid:
                found.setdefault(member.identity.pod_uid, key)
    return found


def _pod_workload(
    sandbox: Any, metadata: Any, containers: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]
) -> Workload:
    """A ready sandbox as a pod: named by its labels (else its metadata), with its containers."""
    name, namespace, uid = _labels_name(sandbox.labels, metadata)
    names, ids = containers.get(sandbox.id, ((), ()))
    return Workload(
        WorkloadKind.POD,
        name,
        id=sandbox.id,
        namespace=namespace,
        uid=uid,
        containers=names,
        container_ids=ids,
        source=NAME,
    )


def _placed_by_cgroup(context: Context, ids: Iterable[str]) -> dict[str, NsKey]:
    """Sandbox ID -> namespace, for each sandbox whose ID the cgroup path of processes in exactly
    one namespace names (its pause process): no PodSandboxStatus call, no verbose info to
    parse, for those. From the run's cgroup scan, which the cgroup source makes anyway."""
    from .cgroup import scan

    wanted = set(ids)
    seen: dict[str, set[NsKey]] = {}
    for key, members in scan(context).items():
        for member in members:
            if member.identity.id in wanted:
                seen.setdefault(member.identity.id, set()).add(key)
    return {sid: next(iter(keys)) for sid, keys in seen.items() if len(keys) == 1}


# ---------------------------------------------------------------------------- gRPC

SERVICE = "runtime.v1.RuntimeService"


def _rpc_problem(error: RpcError, path: str, seconds: float) -> tuple[SourceState, str]:
    from ..cri.client import Code

    code, details = error.code, error.details or error.code.name
    if code is Code.UNIMPLEMENTED:
        return SourceState.UNAVAILABLE, (
            f"{path} answers gRPC but not the CRI runtime.v1 API ({details}); Docker's own containerd "
            "runs with the CRI plugin disabled: point --runtime-endpoint at the kubelet's runtime"
        )
    if code is Code.DEADLINE_EXCEEDED:
        return SourceState.TIMEOUT, f"{path}: no answer within {seconds:g} s"
    if code is Code.UNAVAILABLE:
        return SourceState.UNAVAILABLE, f"{path}: {details}"
    if code is Code.PERMISSION_DENIED:
        return SourceState.UNAVAILABLE, f"{path}: permission denied ({details})"
    return SourceState.ERROR, f"{path}: {code.name}: {details}"


def _labels_name(labels: Mapping[str, str], metadata: Any) -> tuple[str, str | None, str | None]:
    name = metadata.name or labels.get("io.kubernetes.pod.name", "")
    namespace = metadata.namespace or labels.get("io.kubernetes.pod.namespace") or None
    uid = metadata.uid or labels.get("io.kubernetes.pod.uid") or None
    return name, namespace, uid


def _containers_by_sandbox(containers: Iterable[Any]) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """sandbox ID -> (container names, container IDs): names once each, IDs newest first per name."""
    grouped: dict[str, list[Any]] = {}
    for c in containers:
        grouped.setdefault(c.pod_sandbox_id, []).append(c)
    result = {}
    for sandbox, found in grouped.items():
        found.sort(key=lambda c: (c.metadata.name, -c.created_at))
        names = dict.fromkeys(c.metadata.name or c.labels.get(CONTAINER_NAME_LABEL, "") for c in found)
        result[sandbox] = (tuple(n for n in names if n), tuple(c.id for c in found))
    return result


def _query(
    path: str, deadline: Deadline, context: Context, root: str = ""
) -> tuple[str, list[PodSandbox], int, int]:
    """(runtime description, pods, sandboxes without a namespace, statuses that did not arrive).

    Raises RpcError for a failure of the runtime as a whole.
    """
    from ..cri import messages as pb
    from ..cri.client import Channel

    with Channel(path, deadline, service=SERVICE, max_message=MAX_MESSAGE) as channel:
        # The three in one round trip: a runtime without CRI fails all three alike (Version's
        # error is the one raised), and each wake-up of this thread can wait for the GIL.
        version_call = channel.start("Version", pb.VersionRequest(version="v1"), pb.VersionResponse)
        ready = pb.PodSandboxFilter(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY))
        sandboxes_call = channel.start(
            "ListPodSandbox", pb.ListPodSandboxRequest(filter=ready), pb.ListPodSandboxResponse
        )
        containers_call = channel.start(
            "ListContainers", pb.ListContainersRequest(), pb.ListContainersResponse
        )
        version = version_call.result()
        runtime = f"{version.runtime_name} {version.runtime_version}".strip()
        sandboxes = [s for s in sandboxes_call.result().items if s.state == pb.SANDBOX_READY]
        containers = _containers_by_sandbox(containers_call.result().containers)
        # This host's runtime: a sandbox its pause process's cgroup places needs no status call.
        placed = _placed_by_cgroup(context, (s.id for s in sandboxes)) if not root else {}
        asked = [s.id for s in sandboxes if s.id not in placed]
        statuses, missing = _statuses(channel, asked, deadline)
        pods: list[PodSandbox] = []
        unresolved = 0
        uids: dict[str, NsKey] | None = None
        for sandbox in sandboxes:
            if sandbox.id in placed:
                where = placed[sandbox.id]
                workload = _pod_workload(sandbox, sandbox.metadata, containers)
                pods.append(PodSandbox(workload, where, where == context.host))
                continue
            reply = statuses.get(sandbox.id)
            if reply is None:
                continue
            status = reply.status
            if status.id and status.state != pb.SANDBOX_READY:
                continue  # stopped between the list and the status call
            workload = _pod_workload(sandbox, status.metadata if status.id else sandbox.metadata, containers)
            info = parse_info(reply.info)
            host_network = status.linux.namespaces.options.network == pb.NODE
            key = None if host_network else sandbox_netns(info, root, context.proc)
            uid = workload.uid
            if not host_network and key is None and uid and not info:
                # No verbose info (cri-dockerd): find the pod by its UID in the cgroup paths.
                uids = _pod_uids_by_namespace(context) if uids is None else uids
                key = uids.get(uid)
            if host_network or key == context.host:
                pods.append(PodSandbox(workload, context.host, True))
            elif key is not None:
                pods.append(PodSandbox(workload, key, False))
            else:
                unresolved += 1
        return runtime, pods, unresolved, missing


def _statuses(
    channel: Channel, ids: list[str], deadline: Deadline
) -> tuple[dict[str, messages.PodSandboxStatusResponse], int]:
    """PodSandboxStatus(verbose) for every id, IN_FLIGHT at a time; (replies, how many did not arrive)."""
    from ..cri import messages as pb
    from ..cri.client import Code, RpcError

    replies: dict[str, pb.PodSandboxStatusResponse] = {}
    missing = 0
    for start in range(0, len(ids), IN_FLIGHT):
        batch = ids[start : start + IN_FLIGHT]
        if deadline.expired():
            missing += len(batch)
            continue
        calls = {
            sid: channel.start(
                "PodSandboxStatus",
                pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True),
                pb.PodSandboxStatusResponse,
            )
            for sid in batch
        }
        for sid, call in calls.items():
            try:
                replies[sid] = call.result()
            except RpcError as error:
                if error.code is Code.NOT_FOUND:
                    continue  # removed since the list: not a pod any more
                if error.code in (Code.UNAVAILABLE, Code.UNIMPLEMENTED):
                    raise
                missing += 1
    return replies, missing


def fetch(context: Context) -> Fetch:
    """Ask the runtime for its ready pods; every failure is a status."""
    options = context.options
    explicit = given(context)[0] is not None
    try:
        found, why_none = candidates(context, discovered=() if explicit else discover(context))
    except EndpointError as error:
        return Fetch(_status(SourceState.ERROR, str(error)))
    if not found:
        if explicit:  # the user named a socket: its absence is an error worth a warning
            return Fetch(_status(SourceState.ERROR, why_none))
        seen = _pod_uids_by_namespace(context, per_namespace=1)
        if seen:  # a node whose runtime is down, or whose socket is somewhere unusual
            return Fetch(_status(SourceState.UNAVAILABLE, f"{why_none}; yet cgroups show {len(seen)} pods"))
        return Fetch(_status(SourceState.SKIPPED, why_none))  # not a Kubernetes node
    try:
        with HEAVY_IMPORTS:
            from ..cri.client import RpcError
    except ImportError as error:
        return Fetch(_status(SourceState.UNAVAILABLE, f"the CRI client needs h2: {error}"))

    deadline = Deadline(options.timeout)
    problems: list[tuple[SourceState, str]] = []
    answered: list[tuple[str, tuple[PodSandbox, ...], int]] = []  # (detail, pods, statuses missing)
    for candidate in found:
        if deadline.expired():
            problems.append((SourceState.TIMEOUT, f"{candidate.path}: not tried, no time left"))
            break
        try:
            runtime, pods, unresolved, missing = _query(candidate.path, deadline, context, candidate.root)
        except RpcError as error:
            problems.append(_rpc_problem(error, candidate.path, options.timeout))
            if problems[-1][0] is SourceState.TIMEOUT:
                break
            continue
        detail = (
            f"{runtime} at {candidate.path} ({candidate.origin}): "
            f"{len(pods)} ready pod{'' if len(pods) == 1 else 's'}"
        )
        if unresolved:
            detail += f", {unresolved} without a readable network namespace"
        if missing:
            detail += f", {missing} pod statuses failed or did not arrive within {options.timeout:g} s"
        answered.append((detail, tuple(pods), missing))
        if explicit:
            break
    if answered:
        # Every runtime that answers CRI is asked (a host can run several: the node's
        # containerd and a nested one, or Docker's containerd with CRI enabled next to
        # the kubelet's): their pods together.
        details = [detail for detail, _, _ in answered]
        details += [detail for state, detail in problems if state is SourceState.TIMEOUT]
        state = SourceState.TIMEOUT if any(missing for _, _, missing in answered) else SourceState.OK
        return Fetch(_status(state, "; ".join(details)), tuple(p for _, pods, _ in answered for p in pods))
    worst = next((p for p in problems if p[0] is SourceState.TIMEOUT), None) or problems[0]
    state = SourceState.ERROR if explicit and worst[0] is SourceState.UNAVAILABLE else worst[0]
    return Fetch(_status(state, "; ".join(detail for _, detail in problems)))


# -------------------------------------------------- one fetch for the cri and kube sources


def shared_fetch(context: Context, wait: float | None = None) -> Fetch | None:
    """:func:`fetch`, once per run however many sources ask (the kube source reuses it).

    Returns None if another thread's fetch did not finish within ``wait`` seconds.
    """
    try:
        return context.memo.once("cri-fetch", lambda: fetch(context), wait)
    except TimeoutError:
        return None


def claims(fetched: Fetch, host: NsKey) -> tuple[Claim, ...]:
    """One claim per pod: on its namespace, or on the host's for hostNetwork pods."""
    found = []
    for pod in fetched.pods:
        key = host if pod.host_network else pod.netns
        if key is not None:
            found.append(Claim(key, pod.workload, PRIORITY_RUNTIME))
    return tuple(found)


class CriPods:
    """Source "cri": every READY pod sandbox of the node's CRI runtime."""

    name = NAME

    def collect(self, context: Context) -> SourceResult:
        fetched = shared_fetch(context)
        assert fetched is not None  # no wait limit: this thread fetched, or waited for, the answer
        return SourceResult(fetched.status, claims(fetched, context.host))
