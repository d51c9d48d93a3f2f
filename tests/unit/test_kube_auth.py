"""`serve --kube-auth`: KubeAuth and the guard, against the stand-in API server's TokenReview and
SubjectAccessReview (tests/lab/kube_api.py; no kube-apiserver can run here), through the real
``kubernetes`` client (kubeconfig loading, transport, timeouts). Loopback only, ports 21200-21299."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.kube_api import ApiServer, User, api_server, kubeconfig_file, service_account
from tests.lab.serve_lab import free_port
from vethpeer.agent.api import Response
from vethpeer.agent.auth import PEER_HEADER, AuthCounts, guard
from vethpeer.agent.kubeauth import KubeAuth, attributes, bearer, from_options
from vethpeer.agent.metrics import auth_family

PROMETHEUS = service_account("monitoring", "prometheus-k8s")
ALICE = User("alice", ("oncall", "system:authenticated"))
NODE = "node-7"


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with api_server(port=free_port(21200, 21299)) as server:
        server.reviews.tokens.update({"prom-token": PROMETHEUS, "alice-token": ALICE, "nobody": User("eve")})
        server.reviews.grant(PROMETHEUS.username, "get /metrics")
        server.reviews.grant("oncall", f"get nodes/proxy {NODE}")
        yield server


@pytest.fixture
def auth(api: ApiServer) -> Iterator[KubeAuth]:
    with kubeconfig_file(api.url, "the-agents-own-token", "vqc") as kubeconfig:
        built = from_options(kubeconfig, ["127.0.0.3/32"], {"NODE_NAME": NODE})
        built.timeout = 0.5
        yield built


def check(auth: KubeAuth, path: str, authorization: str | None = None, peer: str = "127.0.0.1") -> Any:
    headers = {PEER_HEADER: peer}
    if authorization is not None:
        headers["authorization"] = authorization
    return auth.check("GET", path, headers)


def test_what_a_request_asks_for() -> None:
    assert attributes("GET", "/metrics?x=1", NODE) == {
        "nonResourceAttributes": {"path": "/metrics", "verb": "get"}
    }
    assert attributes("HEAD", "/api/v1/table", NODE) == {
        "resourceAttributes": {"verb": "get", "resource": "nodes", "subresource": "proxy", "name": NODE}
    }
    assert "name" not in attributes("GET", "/api/v1/doctor", None)["resourceAttributes"]


@pytest.mark.parametrize(
    "value", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer two words", "Token abc", "Bearer\ta b"]
)
def test_a_missing_or_malformed_authorization_header_is_401_without_asking(
    api: ApiServer, auth: KubeAuth, value: str
) -> None:
    assert bearer({"authorization": value}) is None
    decision = check(auth, "/metrics", value)
    assert (decision.allowed, decision.status) == (False, 401)
    assert decision.challenge and decision.challenge.startswith("Bearer")
    assert api.reviews.calls == []


def test_no_authorization_header_at_all_is_401(api: ApiServer, auth: KubeAuth) -> None:
    decision = check(auth, "/metrics")
    assert (decision.status, decision.result) == (401, "denied") and api.reviews.calls == []


def test_a_token_the_tokenreview_rejects_is_401(api: ApiServer, auth: KubeAuth) -> None:
    decision = check(auth, "/metrics", "Bearer forged")
    assert (decision.allowed, decision.status, decision.result) == (False, 401, "denied")
    assert api.reviews.calls == ["TokenReview"]


def test_a_valid_token_without_the_grant_is_403(api: ApiServer, auth: KubeAuth) -> None:
    decision = check(auth, "/api/v1/table", "Bearer prom-token")  # Prometheus may scrape, not read the API
    assert (decision.allowed, decision.status, decision.user) == (False, 403, PROMETHEUS.username)
    assert "get nodes/proxy node-7" in decision.reason
    assert api.reviews.calls == ["TokenReview", "SubjectAccessReview"]
    assert check(auth, "/metrics", "Bearer nobody").status == 403


def test_granted_requests_are_allowed_through_a_user_or_a_group(auth: KubeAuth) -> None:
    assert check(auth, "/metrics", "Bearer prom-token").allowed
    decision = check(auth, "/api/v1/which/shop%2Fweb-1", "Bearer alice-token")
    assert (decision.allowed, decision.user) == (True, "alice")
    assert not check(auth, "/metrics", "Bearer alice-token").allowed  # a grant is for what it names


def test_the_grant_names_this_node(api: ApiServer, auth: KubeAuth) -> None:
    auth.node = "node-8"
    assert check(auth, "/api/v1/table", "Bearer alice-token").status == 403


def test_decisions_are_cached_briefly(api: ApiServer, auth: KubeAuth) -> None:
    now = [100.0]
    auth.clock = auth._cache.clock = lambda: now[0]
    for _ in range(3):
        assert check(auth, "/metrics", "Bearer prom-token").allowed
        assert check(auth, "/api/v1/table", "Bearer prom-token").status == 403
    assert api.reviews.calls == ["TokenReview", "SubjectAccessReview"] * 2  # each decision asked once
    now[0] += auth._cache.ttl + 0.1
    assert check(auth, "/metrics", "Bearer prom-token").allowed
    assert len(api.reviews.calls) == 6  # expired: asked again


def test_the_cache_is_bounded(api: ApiServer, auth: KubeAuth) -> None:
    auth._cache.size = 4
    for i in range(10):
        check(auth, f"/metrics{i}", "Bearer prom-token")
    assert len(auth._cache._entries) == 4


def test_an_api_server_that_times_out_denies_fast(api: ApiServer, auth: KubeAuth) -> None:
    api.reviews.mode = "hang"
    start = time.monotonic()
    decision = check(auth, "/metrics", "Bearer prom-token")
    took = time.monotonic() - start
    assert (decision.allowed, decision.status, decision.result) == (False, 503, "error")
    assert took < 2.0, took  # the review's timeout (0.5 s here) bounds the worker, not the API server
    api.reviews.mode = "ok"
    assert check(auth, "/metrics", "Bearer prom-token").allowed  # errors are not cached


def test_an_api_server_that_drops_the_connection_denies(api: ApiServer, auth: KubeAuth) -> None:
    api.reviews.mode = "down"
    decision = check(auth, "/metrics", "Bearer prom-token")
    assert (decision.status, decision.result) == (503, "error")
    assert "could not decide" in decision.reason


def test_an_api_server_that_is_gone_denies(api: ApiServer, auth: KubeAuth) -> None:
    api.stop()
    start = time.monotonic()
    decision = check(auth, "/metrics", "Bearer prom-token")
    assert (decision.status, decision.result) == (503, "error") and time.monotonic() - start < 2.0


def test_the_api_servers_proxy_is_told_apart_by_its_address_only(api: ApiServer, auth: KubeAuth) -> None:
    assert check(auth, "/api/v1/table", peer="127.0.0.3").allowed  # no credentials: the API server's proxy
    assert check(auth, "/metrics", peer="127.0.0.3").status == 401  # never /metrics that way
    assert check(auth, "/api/v1/table", peer="127.0.0.1").status == 401  # from elsewhere: who are you?
    assert check(auth, "/api/v1/table", "Bearer nobody", peer="127.0.0.3").status == 403  # credentials count
    assert api.reviews.calls == ["TokenReview", "SubjectAccessReview"]


def test_the_guard_keeps_probes_open_counts_and_hides_reasons(api: ApiServer, auth: KubeAuth) -> None:
    counts, logged = AuthCounts(), []

    def router(method: str, path: str, headers: Any) -> Response:
        return Response(200, b"answered\n")

    guarded = guard(router, auth, counts, logged.append)
    assert guarded("GET", "/healthz", {}).status == 200 and guarded("GET", "/readyz", {}).status == 200
    assert guarded("GET", "/metrics", {"authorization": "Bearer prom-token"}).body == b"answered\n"
    refused = guarded("GET", "/metrics", {"authorization": "Bearer forged"})
    assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"TokenReview" not in refused.body and b"forged" not in refused.body
    assert guarded("GET", "/api/v1/table", {"authorization": "Bearer prom-token"}).status == 403
    api.reviews.mode = "down"
    assert guarded("GET", "/metrics", {"authorization": "Bearer alice-token"}).status == 503
    assert counts.snapshot() == {"allowed": 1, "denied": 2, "error": 1}
    family = auth_family("kube", counts.snapshot())
    samples = {s.labels["result"]: s.value for s in family.samples}
    assert samples == {"allowed": 1, "denied": 2, "error": 1}
    assert {s.name for s in family.samples} == {"vethpeer_auth_requests_total"}
    assert logged and all(line.startswith("vethpeer serve: refused GET") for line in logged)
    before = len(logged)
    for _ in range(5):  # a client that keeps failing cannot flood the log
        guarded("GET", "/metrics", {})
    assert len(logged) == before


def test_a_configuration_that_does_not_load_is_one_line(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="cannot load the Kubernetes configuration for --kube-auth"):
        from_options(str(tmp_path / "none.yaml"), [], {})
