"""Optional enrichment from the Kubernetes API: node name, pod IP and owner of each local pod.

The CRI source already names every pod from the node's runtime; the API adds what only
the control plane knows: the node the pod is scheduled on, ``status.podIP``, and its
controlling owner (a Deployment rather than its ReplicaSet, a CronJob rather than its
Job). Its claims carry the CRI source's workload plus those fields, one priority step
above it, so they win where both speak.

When it runs (``Options.kube``):

* ``--kube`` (True): always; a missing kubeconfig or client library is a status.
* ``--no-kube`` (False): never (SKIPPED).
* default (None): only where it can help and costs nothing elsewhere: a kubeconfig
  (``$KUBECONFIG`` or ``~/.kube/config``, as kubectl reads them) or an in-cluster
  service account exists, *and* this host runs pods (a CRI socket, --runtime-endpoint,
  or /var/lib/kubelet).
  A laptop with a kubeconfig for a remote cluster is never slowed down.

Which pods: those scheduled on this node (``fieldSelector=spec.nodeName=NODE``), NODE
being ``$NODE_NAME`` (the downward-API convention) or the hostname; when that lists none
of the pods found locally, the node is learnt from one local pod (``GET`` it, read
``spec.nodeName``) and the list is asked again. A pod is matched to its namespace by UID:
through the CRI source's answer (shared, not asked twice), else through the pod UID in
the cgroup paths of the namespaces' processes; ``hostNetwork`` pods are claims on the
host key.

Only the client's configuration and transport are used (kubeconfig, exec plugins,
certificates, tokens: what it does well); responses are read as JSON without building
its models, which is much faster for a node with many pods.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..deadline import Deadline
from ..model import Claim, NsKey, SourceResult, SourceState, SourceStatus, Workload, WorkloadKind
from . import HEAVY_IMPORTS, PRIORITY_RUNTIME, Context, absent, cri, cri_endpoints
from .absent import in_cluster, kubeconfig_files

NAME = absent.KUBE
PRIORITY_KUBE = PRIORITY_RUNTIME + 1  # the CRI workload plus the API's fields
NODE_ENV = ("NODE_NAME", "KUBE_NODE_NAME")  # set from the downward API in DaemonSets


def _status(state: SourceState, detail: str) -> SourceStatus:
    return SourceStatus(NAME, state, detail)


# ---------------------------------------------------------------- when to ask at all


def runs_pods(context: Context) -> bool:
    """Whether this host looks like a Kubernetes node (auto mode asks only then)."""
    if cri_endpoints.given(context)[0] or os.path.isdir(context.paths.kubelet_dir):
        return True
    return any(os.path.exists(path) for _, path in context.paths.cri_sockets)


def node_name(environ: Mapping[str, str]) -> str:
    for var in NODE_ENV:
        if environ.get(var):
            return environ[var]
    return socket.gethostname().lower()  # the kubelet's default --hostname-override


# ------------------------------------------------------------------ reading pods


@dataclass(frozen=True, slots=True)
class ApiPod:
    """The fields of a v1 Pod that vethpeer uses."""

    uid: str
    name: str
    namespace: str
    node: str | None
    pod_ip: str | None
    host_network: bool
    containers: tuple[str, ...]
    container_ids: tuple[str, ...]
    owner: tuple[str, str] | None  # (kind, name) of the controller


def _runtime_id(container_id: str) -> str:
    """``containerd://<id>`` / ``cri-o://<id>`` / ``docker://<id>`` -> ``<id>``."""
    return container_id.split("://", 1)[-1]


def parse_pod(item: Mapping[str, Any]) -> ApiPod | None:
    meta = item.get("metadata") or {}
    spec = item.get("spec") or {}
    status = item.get("status") or {}
    if not meta.get("uid") or not meta.get("name"):
        return None
    owner = _controller(meta)
    statuses = [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]
    names = [
        c.get("name", "") for c in (*(spec.get("initContainers") or ()), *(spec.get("containers") or ()))
    ]
    return ApiPod(
        uid=str(meta["uid"]),
        name=str(meta["name"]),
        namespace=str(meta.get("namespace") or "default"),
        node=spec.get("nodeName") or None,
        pod_ip=status.get("podIP") or None,
        host_network=bool(spec.get("hostNetwork")),
        containers=tuple(n for n in names if n),
        container_ids=tuple(_runtime_id(s["containerID"]) for s in statuses if s.get("containerID")),
        owner=owner,
    )


class _Api:
    """The few GETs vethpeer makes, through the client's typed calls, answers read as plain JSON.

    ``_preload_content=False`` returns the raw response (the same in every client
    generation) and skips building models; HTTP errors still raise ApiException.
    """

    def __init__(self, apis: tuple[Any, Any, Any], deadline: Deadline) -> None:
        self.core, self.apps, self.batch = apis
        self.deadline = deadline

    def _json(self, call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        left = self.deadline.left(0.05)
        response = call(*args, _preload_content=False, _request_timeout=(min(left, 2.0), left), **kwargs)
        data = json.loads(response.data)
        if not isinstance(data, dict):
            raise ValueError("the API answered something other than a JSON object")
        return data

    def pods(self, node: str | None) -> dict[str, Any]:
        if node:
            return self._json(self.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}")
        return self._json(self.core.list_pod_for_all_namespaces)

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self._json(self.core.read_namespaced_pod, name, namespace)

    def owner(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if kind == "ReplicaSet":
            return self._json(self.apps.read_namespaced_replica_set, name, namespace)
        if kind == "Job":
            return self._json(self.batch.read_namespaced_job, name, namespace)
        return None


def _list_pods(api: _Api, node: str | None) -> list[ApiPod]:
    data = api.pods(node)
    return [pod for item in data.get("items") or () if (pod := parse_pod(item)) is not None]


def _controller(metadata: Mapping[str, Any]) -> tuple[str, str] | None:
    refs = metadata.get("ownerReferences") or ()
    top = next((r for r in refs if r.get("controller") and r.get("kind") and r.get("name")), None)
    return (str(top["kind"]), str(top["name"])) if top is not None else None


OWNER_WORKERS = 8  # GETs of ReplicaSets/Jobs in flight at once


def _owners(api: _Api, pods: list[ApiPod], pods_to_claim: set[str]) -> dict[tuple[str, str, str], str]:
    """(namespace, kind, name) -> "KIND/NAME" of the top controller.

    A ReplicaSet made by a Deployment (or a Job made by a CronJob) is reported as the
    Deployment (CronJob): what people name. That takes one GET per distinct ReplicaSet
    or Job of the pods that will be claimed, a few at a time, within the deadline; an
    owner that cannot be read (forbidden, gone, slow) stays as the direct one.
    """
    from concurrent.futures import ThreadPoolExecutor, wait

    resolved: dict[tuple[str, str, str], str] = {}
    for pod in pods:
        if pod.owner is not None and pod.uid in pods_to_claim:
            resolved.setdefault((pod.namespace, *pod.owner), "/".join(pod.owner))
    lookups = [key for key in resolved if key[1] in ("ReplicaSet", "Job")]
    if not lookups:
        return resolved
    pool = ThreadPoolExecutor(max_workers=OWNER_WORKERS, thread_name_prefix="vethpeer-kube-owner")
    try:
        calls = {pool.submit(api.owner, kind, ns, name): (ns, kind, name) for ns, kind, name in lookups}
        done, _late = wait(calls, timeout=max(0.0, api.deadline.end - time.monotonic()))
        for call in done:
            if call.exception() is None:
                top = _controller((call.result() or {}).get("metadata") or {})
                if top is not None:
                    resolved[calls[call]] = "/".join(top)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return resolved


# ---------------------------------------------------------------- local matching


@dataclass(frozen=True, slots=True)
class Local:
    """A pod as found on this host: its namespace and (if known) the CRI workload."""

    netns: NsKey
    workload: Workload | None = None  # from the CRI source
    cgroup_ids: frozenset[str] = frozenset()  # container IDs seen in its processes' cgroups


def _local_from_cgroups(context: Context) -> dict[str, Local]:
    """Pod UID -> namespace, from /proc/PID/cgroup of the namespaces' processes (host's excluded)."""
    from .cgroup import scan

    found: dict[str, tuple[NsKey, set[str]]] = {}
    for key, members in scan(context).items():
        if key == context.host:
            continue
        for member in members[:64]:
            identity = member.identity
            if identity.pod_uid:
                where, ids = found.setdefault(identity.pod_uid, (key, set()))
                if identity.id and where == key:
                    ids.add(identity.id)
    return {uid: Local(key, None, frozenset(ids)) for uid, (key, ids) in found.items()}


def _local_pods(context: Context, wait: float) -> tuple[dict[str, Local], str]:
    """Pods on this host by UID, from the CRI answer (shared with the cri source) or cgroups."""
    fetched = cri.shared_fetch(context, wait=wait)
    local: dict[str, Local] = {}
    how = "cgroups"
    if fetched is not None and fetched.status.state in (SourceState.OK, SourceState.TIMEOUT):
        how = "CRI"
        for pod in fetched.pods:
            key = context.host if pod.host_network else pod.netns
            if key is not None and pod.workload.uid:
                local[pod.workload.uid] = Local(key, pod.workload)
    for uid, found in _local_from_cgroups(context).items():
        local.setdefault(uid, found)
    return local, how


def enriched(pod: ApiPod, local: Local, owner: str | None) -> Workload:
    """The CRI workload (or one built from the API) with node, pod IP and owner."""
    base = local.workload
    if base is None:
        sandbox = local.cgroup_ids - set(pod.container_ids)  # the pause container is not in the API
        base = Workload(
            WorkloadKind.POD,
            pod.name,
            id=next(iter(sandbox)) if len(sandbox) == 1 else None,
            namespace=pod.namespace,
            uid=pod.uid,
            containers=pod.containers,
            container_ids=pod.container_ids,
        )
    return base._replace(source=NAME, node=pod.node, pod_ip=pod.pod_ip, owner=owner)


# ---------------------------------------------------------------------- the source


def _problem(error: BaseException, timeout: float) -> SourceStatus:
    """An API failure as a status: unreachable, slow, refused by RBAC, or other."""
    import urllib3.exceptions as u3
    from kubernetes.client.exceptions import ApiException

    if isinstance(error, ApiException):
        reason = error.reason or ""
        message = ""
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(error.body or "{}").get("message", "")
        state = SourceState.UNAVAILABLE if error.status in (401, 403) else SourceState.ERROR
        return _status(state, f"API answered {error.status} {reason}: {message}".rstrip(": "))
    if isinstance(error, u3.NewConnectionError):
        return _status(SourceState.UNAVAILABLE, f"API unreachable: {error}")
    if isinstance(error, (u3.ReadTimeoutError, u3.ConnectTimeoutError)):
        return _status(SourceState.TIMEOUT, f"API did not answer within {timeout:g} s")
    if isinstance(error, u3.HTTPError):
        return _status(SourceState.UNAVAILABLE, f"API unreachable: {error}")
    return _status(SourceState.ERROR, f"{type(error).__name__}: {error}")


CLIENT = "kube.client"  # the run's configured API objects, in Context.memo


def _apis(files: Sequence[str]) -> tuple[Any, Any, Any]:
    """CoreV1, AppsV1 and BatchV1 over one configured client. Newer clients import each API
    class (and its pydantic models) on first use: ~1 s on a loaded node, so it is done here."""
    from kubernetes import client

    api_client = _client(files)
    return client.CoreV1Api(api_client), client.AppsV1Api(api_client), client.BatchV1Api(api_client)


def _client(files: Sequence[str]) -> Any:
    """A configured kubernetes ApiClient: the kubeconfig ``files`` merged, as kubectl does; with
    none, in-cluster (the service account)."""
    import kubernetes.client
    import kubernetes.config

    client: Any = kubernetes.client  # typed or not depending on the client's version
    config: Any = kubernetes.config
    configuration = client.Configuration()
    if files:
        config.load_kube_config(
            config_file=os.pathsep.join(files),  # several are merged, as from $KUBECONFIG
            client_configuration=configuration,
            persist_config=False,  # never write refreshed tokens back: vethpeer changes nothing
        )
    else:
        config.load_incluster_config(client_configuration=configuration)
    configuration.retries = False  # one attempt: the deadline is ours
    return client.ApiClient(configuration)


class KubePods:
    """Source "kube": node name, pod IP and owner for the pods on this node, from the API."""

    name = NAME

    def prepare(self, context: Context) -> None:
        """Import and configure the client (~0.3 s, seconds on a loaded node) before the deadline
        of the API calls starts: run first, beside the walk, off the --timeout clock."""
        files = kubeconfig_files(context.environ)
        if context.options.kube is False or not (files or in_cluster(context)):
            return
        with contextlib.suppress(Exception):  # collect() meets the same failure and says why
            with HEAVY_IMPORTS:
                import kubernetes.client
                import kubernetes.config  # noqa: F401
            context.memo.once(CLIENT, partial(_apis, files))  # the kubeconfig, the API classes

    def collect(self, context: Context) -> SourceResult:
        skipped = absent.kube(context)  # --no-kube; by default, no configuration
        if skipped is not None:
            return skipped
        wanted = context.options.kube
        files = kubeconfig_files(context.environ)
        configured = bool(files) or in_cluster(context)
        if wanted is None and not runs_pods(context):
            return SourceResult(
                _status(SourceState.SKIPPED, "this host runs no pods (--kube to ask the API anyway)")
            )
        if not configured:
            return SourceResult(
                _status(
                    SourceState.UNAVAILABLE,
                    "no kubeconfig ($KUBECONFIG, ~/.kube/config) and no in-cluster service account",
                )
            )
        try:
            with HEAVY_IMPORTS:  # never at the same time as the docker SDK: both import requests
                import kubernetes.client
                import kubernetes.config  # noqa: F401
        except ImportError as error:
            state = SourceState.UNAVAILABLE if wanted else SourceState.SKIPPED
            return SourceResult(_status(state, f"the kubernetes Python client cannot be imported: {error}"))
        timeout = context.options.timeout
        deadline = Deadline(timeout)  # the API calls' budget, from here: the import is not on it
        try:
            api = _Api(context.memo.once(CLIENT, partial(_apis, files)), deadline)
        except Exception as error:  # a broken kubeconfig, an exec plugin that failed, ...
            return SourceResult(
                _status(SourceState.UNAVAILABLE, f"cannot load the API configuration: {error}")
            )
        node = node_name(context.environ)
        try:
            pods = _list_pods(api, node)
            local, how = _local_pods(context, wait=deadline.left(0.05))
            if local and not any(p.uid in local for p in pods):
                learnt = self._node_of_a_local_pod(api, local)
                if learnt and learnt != node:
                    node, pods = learnt, _list_pods(api, learnt)
            places: dict[str, Local] = {}
            for pod in pods:
                place = local.get(pod.uid)
                if place is None and pod.host_network:  # on this node, in the host's namespace
                    place = Local(context.host)
                if place is not None:
                    places[pod.uid] = place
            owners = _owners(api, pods, set(places))
        except Exception as error:
            return SourceResult(_problem(error, timeout))
        found = []
        for pod in pods:
            if pod.uid not in places:
                continue
            owner = owners.get((pod.namespace, *pod.owner)) if pod.owner else None
            key = context.host if pod.host_network else places[pod.uid].netns
            found.append(Claim(key, enriched(pod, places[pod.uid], owner), PRIORITY_KUBE))
        detail = f"node {node}: {len(found)} of its {len(pods)} pods found here (via {how})"
        return SourceResult(_status(SourceState.OK, detail), tuple(found))

    @staticmethod
    def _node_of_a_local_pod(api: _Api, local: Mapping[str, Local]) -> str | None:
        """The node name, from the first local pod the CRI named (its namespace/name are known)."""
        for place in local.values():
            w = place.workload
            if w is not None and w.namespace and w.name:
                data = api.pod(w.namespace, w.name)
                node = (data.get("spec") or {}).get("nodeName")
                return str(node) if node else None
        return None
