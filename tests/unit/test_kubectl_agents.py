"""`kubectl vethpeer`'s way to an agent: the scheme from the port's name, the https pod-proxy path,
and 401/403 answers as status lines that say what to grant (pure: no API server)."""

from __future__ import annotations

import json

import pytest

from tests.lab.kube_api import status_json
from tests.lab.kube_cluster import agent_pod
from vethpeer.kubectl.cluster import proxy_path
from vethpeer.kubectl.fanout import Agent, _port, refusal

AGENT = Agent("node-1", "vethpeer", "vethpeer-x1", 10098, True, "https")


@pytest.mark.parametrize(
    ("name", "scheme"), [("http-metrics", "http"), ("https-metrics", "https"), ("https", "https")]
)
def test_the_ports_name_says_the_scheme(name: str, scheme: str) -> None:
    assert _port(agent_pod("node-1", 1, port_name=name)) == (10098, scheme)


def test_an_agent_without_a_named_port_is_asked_on_the_default_port_over_http() -> None:
    pod = agent_pod("node-1", 1)
    pod["spec"]["containers"][0]["ports"] = []
    assert _port(pod) == (10098, "http")


def test_the_https_pod_proxy_path() -> None:
    assert proxy_path("vethpeer", "vethpeer-x1", 10098, "/api/v1/table") == (
        "/api/v1/namespaces/vethpeer/pods/vethpeer-x1:10098/proxy/api/v1/table"
    )
    assert proxy_path("vethpeer", "vethpeer-x1", 10098, "metrics", "https") == (
        "/api/v1/namespaces/vethpeer/pods/https:vethpeer-x1:10098/proxy/metrics"
    )


def test_the_api_servers_403_says_to_grant_pods_proxy() -> None:
    document = status_json(403, "Forbidden", 'pods "vethpeer-x1" is forbidden')
    answer = refusal(AGENT, 403, document, document["message"])
    assert answer is not None and answer.status == "forbidden"
    assert "grant get on pods/proxy in namespace vethpeer" in answer.detail


def test_the_agents_401_says_the_proxy_forwards_no_credentials() -> None:
    answer = refusal(AGENT, 401, None, "unauthorized")
    assert answer is not None and answer.status == "unauthorized"
    assert "--kube-auth-proxy-cidr" in answer.detail


def test_the_agents_403_says_to_grant_nodes_proxy() -> None:
    answer = refusal(AGENT, 403, None, "forbidden")
    assert answer is not None and "grant get on nodes/proxy (node node-1)" in answer.detail


def test_other_answers_are_not_refusals() -> None:
    scoped = json.loads('{"error": {"status": 403, "message": "only team-a", "namespace": "team-a"}}')
    assert refusal(AGENT, 403, scoped, "only team-a") is None  # serve -n: the agent's own message
    assert refusal(AGENT, 500, None, "boom") is None
