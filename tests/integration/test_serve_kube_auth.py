"""`vethpeer serve --kube-auth` as a real process, its reviews answered by the stand-in API server
(tests/lab/kube_api.py: no kube-apiserver can run here) through the real `kubernetes` client.
Every bad request gets its status, the probes stay open, the counts reach /metrics, and the
process stays up. Loopback only, ports 21200-21299."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.lab.kube_api import ApiServer, User, api_server, kubeconfig_file, service_account
from tests.lab.serve_lab import PYTHON, ROOT, Served, free_port, get, serve

pytestmark = pytest.mark.integration

PROMETHEUS = service_account("monitoring", "prometheus-k8s")
NODE = "vqc-node"


def port() -> int:
    return free_port(21200, 21299)


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[ApiServer, Served]]:
    with api_server(port=port()) as api, kubeconfig_file(api.url, "vqc-agent", "vqc") as kubeconfig:
        api.reviews.tokens.update({"prom": PROMETHEUS, "alice": User("alice", ("oncall",))})
        api.reviews.grant(PROMETHEUS.username, "get /metrics")
        api.reviews.grant("oncall", f"get nodes/proxy {NODE}")
        args = ("--kube-auth", "--kube-auth-kubeconfig", kubeconfig, "--no-kube", "--min-interval", "30")
        with serve(*args, port=port(), env={"NODE_NAME": NODE}) as served:
            yield api, served


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_probes_need_no_credentials(world: tuple[ApiServer, Served]) -> None:
    _api, served = world
    assert get(served.port, "/healthz").status == 200
    assert get(served.port, "/readyz").status == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": ""}, {"Authorization": "Basic YTpi"}])
def test_no_or_a_malformed_authorization_header_is_401(
    world: tuple[ApiServer, Served], headers: dict[str, str]
) -> None:
    _api, served = world
    reply = get(served.port, "/metrics", headers)
    assert reply.status == 401 and reply.headers["www-authenticate"].startswith("Bearer")
    assert b"vethpeer_interface_info" not in reply.body


def test_a_token_the_api_server_rejects_is_401(world: tuple[ApiServer, Served]) -> None:
    _api, served = world
    assert get(served.port, "/metrics", bearer("forged")).status == 401


def test_a_valid_token_without_the_grant_is_403(world: tuple[ApiServer, Served]) -> None:
    _api, served = world
    assert get(served.port, "/api/v1/table", bearer("prom")).status == 403
    assert get(served.port, "/metrics", bearer("alice")).status == 403


def test_granted_requests_are_answered(world: tuple[ApiServer, Served]) -> None:
    _api, served = world
    scrape = get(served.port, "/metrics", bearer("prom"))
    assert scrape.status == 200 and b"vethpeer_build_info" in scrape.body
    table = get(served.port, "/api/v1/table", bearer("alice"))
    assert table.status == 200 and table.json()["schema_version"] == 1


def test_a_cached_decision_does_not_ask_the_api_server_again(world: tuple[ApiServer, Served]) -> None:
    api, served = world
    assert get(served.port, "/api/v1/doctor", bearer("alice")).status == 200
    asked = len(api.reviews.calls)
    assert get(served.port, "/api/v1/doctor", bearer("alice")).status == 200
    assert len(api.reviews.calls) == asked


def test_an_api_server_that_hangs_fails_closed_within_the_bound(world: tuple[ApiServer, Served]) -> None:
    api, served = world
    api.reviews.mode = "hang"
    try:
        start = time.monotonic()
        reply = get(served.port, "/metrics", bearer("hang-token"))
        took = time.monotonic() - start
    finally:
        api.reviews.mode = "ok"
    assert reply.status == 503 and took < 4.0, took  # the reviews' 2 s, not the API server's silence
    assert get(served.port, "/healthz").status == 200


def test_an_api_server_that_is_down_fails_closed(world: tuple[ApiServer, Served]) -> None:
    api, served = world
    api.reviews.mode = "down"
    try:
        assert get(served.port, "/metrics", bearer("down-token")).status == 503
    finally:
        api.reviews.mode = "ok"


def test_the_results_are_counted_and_the_process_stays_up(world: tuple[ApiServer, Served]) -> None:
    _api, served = world
    get(served.port, "/metrics", bearer("forged"))
    get(served.port, "/api/v1/table", bearer("prom"))
    scrape = get(served.port, "/metrics", bearer("prom")).body.decode()
    counts = {
        line.split('result="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in scrape.splitlines()
        if line.startswith('vethpeer_auth_requests_total{mode="kube"')
    }
    assert set(counts) == {"allowed", "denied", "error"}
    assert counts["allowed"] >= 1 and counts["denied"] >= 2
    assert served.process.poll() is None
    assert "vethpeer serve: refused GET" in served.stderr()  # refusals are logged (throttled)


def serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "vethpeer", "serve", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_kube_auth_options_without_kube_auth_are_a_usage_error() -> None:
    done = serve_cli("--kube-auth-proxy-cidr", "10.0.0.1")
    assert done.returncode == 2 and "go with --kube-auth" in done.stderr
    bad = serve_cli("--kube-auth", "--kube-auth-proxy-cidr", "nope")
    assert bad.returncode == 2 and "not an IP network" in bad.stderr
    unloadable = serve_cli("--kube-auth", "--kube-auth-kubeconfig", "/nonexistent/vqc")
    assert unloadable.returncode == 1, unloadable.stderr
    assert "cannot load the Kubernetes configuration for --kube-auth" in unloadable.stderr
    assert "Traceback" not in done.stderr + bad.stderr + unloadable.stderr
