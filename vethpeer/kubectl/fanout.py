"""Which agent serves which node, and asking many of them at once, each under its own timeout."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .cluster import Cluster, ClusterError, proxy_path

AGENT_NAMESPACE = "vethpeer"
AGENT_SELECTOR = "app.kubernetes.io/name=vethpeer,app.kubernetes.io/component=node-agent"
AGENT_PORT = 10098  # = vethpeer serve's default (docs/cluster.md)
# the agent container's port, by name: the scheme the plugin asks it through the pod proxy with
PORT_SCHEMES = {"http-metrics": "http", "https-metrics": "https", "https": "https"}


@dataclass(frozen=True, slots=True)
class Agent:
    node: str
    namespace: str
    pod: str
    port: int
    ready: bool
    scheme: str = "http"  # "https": the agent serves TLS (its port is named https or https-metrics)


@dataclass(frozen=True, slots=True)
class NodeAnswer:
    """One node's part: ``status`` "ok" (``document`` set), "no agent", "unreachable", "unauthorized"
    or "forbidden" (``detail`` says what to grant), or "error"."""

    node: str
    status: str
    detail: str = ""
    document: dict[str, Any] | None = None


def _port(pod: dict[str, Any]) -> tuple[int, str]:
    """(port, scheme) of the agent's named container port; the default port over http without one."""
    for container in pod.get("spec", {}).get("containers", []):
        for port in container.get("ports", []) or []:
            scheme = PORT_SCHEMES.get(port.get("name"))
            if scheme and isinstance(port.get("containerPort"), int):
                return int(port["containerPort"]), scheme
    return AGENT_PORT, "http"


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions", []) or []}
    return bool(status.get("phase") == "Running" and conditions.get("Ready", "True") == "True")


def agents(
    cluster: Cluster, namespace: str, selector: str, timeout: float, node: str | None = None
) -> dict[str, Agent]:
    """The agent pod of each node (a running one preferred, when a rollout briefly has two)."""
    query = {"labelSelector": selector}
    if node is not None:
        query["fieldSelector"] = f"spec.nodeName={node}"
    path = f"/api/v1/namespaces/{namespace}/pods?{urlencode(query)}"
    found: dict[str, Agent] = {}
    for pod in cluster.get_json(path, timeout).get("items", []):
        where = pod.get("spec", {}).get("nodeName")
        if not where:
            continue
        port, scheme = _port(pod)
        agent = Agent(where, namespace, pod["metadata"]["name"], port, _ready(pod), scheme)
        if where not in found or (agent.ready and not found[where].ready):
            found[where] = agent
    return found


def node_names(cluster: Cluster, timeout: float) -> list[str] | None:
    """Every node's name; None when the API does not let us list nodes (the plugin then knows
    only the nodes that have an agent)."""
    try:
        document = cluster.get_json("/api/v1/nodes", timeout)
    except ClusterError:
        return None
    return sorted(n["metadata"]["name"] for n in document.get("items", []))


def agents_and_nodes(
    cluster: Cluster, namespace: str, selector: str, timeout: float, node: str | None
) -> tuple[dict[str, Agent], Sequence[str]]:
    """The agents to ask and the nodes to answer for: ``node``'s, or every node's."""
    if node is not None:
        return agents(cluster, namespace, selector, timeout, node=node), [node]
    found = agents(cluster, namespace, selector, timeout)
    return found, node_names(cluster, timeout) or list(found)


def ask(cluster: Cluster, agent: Agent, path: str, timeout: float) -> NodeAnswer:
    """One agent's JSON document, through the API server's pod proxy."""
    try:
        reply = cluster.get(proxy_path(agent.namespace, agent.pod, agent.port, path, agent.scheme), timeout)
    except ClusterError as error:
        return NodeAnswer(agent.node, "unreachable", f"no answer within {timeout:g} s ({error})")
    document = reply.json()
    if reply.status == 200 and isinstance(document, dict):
        return NodeAnswer(agent.node, "ok", document=document)
    refused = refusal(agent, reply.status, document, reply.message)
    if refused is not None:
        return refused
    if reply.status in (502, 503) and not (isinstance(document, dict) and "error" in document):
        return NodeAnswer(agent.node, "unreachable", f"agent {agent.pod}: {reply.message}")
    return NodeAnswer(agent.node, "error", f"agent {agent.pod}: {reply.status} {reply.message}", document)


def refusal(agent: Agent, status: int, document: Any, message: str) -> NodeAnswer | None:
    """A 401 or 403, from the API server (a v1 Status) or from the agent (``serve --kube-auth``),
    as a status line that says what to grant; None for any other answer."""
    if status not in (401, 403):
        return None
    from_api = isinstance(document, dict) and document.get("kind") == "Status"
    if from_api and status == 403:
        return NodeAnswer(
            agent.node,
            "forbidden",
            f"the API server refused the pod proxy to {agent.pod}: grant get on pods/proxy in namespace "
            f"{agent.namespace} ({message})",
        )
    if from_api:
        return NodeAnswer(
            agent.node, "unauthorized", f"the API server did not accept your credentials ({message})"
        )
    error = document.get("error") if isinstance(document, dict) else None
    if status == 403 and isinstance(error, dict) and "namespace" in error:
        return None  # `serve -n NS` asked for another namespace: the agent's own message says so
    if status == 401:
        return NodeAnswer(
            agent.node,
            "unauthorized",
            f"agent {agent.pod} wants a bearer token (serve --kube-auth), and the API server's pod proxy "
            "forwards none: run the agent with --kube-auth-proxy-cidr set to the API server's address "
            "(docs/cluster.md, security)",
        )
    return NodeAnswer(
        agent.node,
        "forbidden",
        f"agent {agent.pod} refused: grant get on nodes/proxy (node {agent.node}) to the caller",
    )


def fan_out(
    cluster: Cluster, found: dict[str, Agent], nodes: Iterable[str], path: str, timeout: float
) -> list[NodeAnswer]:
    """Ask every node's agent at once; nodes without one are answered here. Sorted by node."""
    wanted: Sequence[str] = sorted(set(nodes) | set(found))
    answers = {
        n: NodeAnswer(n, "no agent", "no vethpeer agent pod on this node") for n in wanted if n not in found
    }
    asked = [found[n] for n in wanted if n in found]
    if asked:
        with ThreadPoolExecutor(min(64, len(asked)), thread_name_prefix="vethpeer-node") as pool:
            for answer in pool.map(lambda a: ask(cluster, a, path, timeout), asked):
                answers[answer.node] = answer
    return [answers[n] for n in wanted]
