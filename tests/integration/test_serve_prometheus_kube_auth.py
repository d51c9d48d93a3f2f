"""The join with a bearer token: the real Prometheus scrapes `vethpeer serve --kube-auth` with its
token (``authorization: credentials_file``), the agent checks it with the stand-in API server
(tests/lab/kube_api.py: no kube-apiserver can run here), and the PromQL join with the real
node_exporter still returns one series per test veth; a scrape without the token is refused.

Daemons are Debian's binaries on 127.0.0.1 (ports 21200-21299); traffic is UDP between the lab's
own namespaces only.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_serve_prometheus import JOIN, NODE, prometheus_scraping, query, wait_for
from tests.lab.kube_api import api_server, kubeconfig_file, service_account
from tests.lab.serve_lab import BridgeLab, Served, free_port, get, serve

pytestmark = pytest.mark.integration

PROMETHEUS = service_account("monitoring", "prometheus-k8s")
PORTS = (21200, 21299)


@pytest.fixture(scope="module")
def prometheus_lab() -> Iterator[tuple[BridgeLab, int, Served]]:
    with (
        api_server(port=free_port(*PORTS)) as api,
        kubeconfig_file(api.url, "vqc-agent", "vqc") as kubeconfig,
        tempfile.TemporaryDirectory(prefix="vqc-token-") as folder,
        BridgeLab(3, prefix="vqc") as lab,
    ):
        api.reviews.tokens["vqc-prometheus-token"] = PROMETHEUS
        api.reviews.grant(PROMETHEUS.username, "get /metrics")
        token = Path(folder) / "token"
        token.write_text("vqc-prometheus-token\n")
        client = {"authorization": {"type": "Bearer", "credentials_file": str(token)}}
        args = ("--kube-auth", "--kube-auth-kubeconfig", kubeconfig, "--min-interval", "1", "--no-kube")
        with (
            serve(*args, port=free_port(*PORTS)) as served,
            prometheus_scraping(served, lab, client, ports=PORTS) as prom_port,
        ):
            yield lab, prom_port, served


def test_the_join_with_a_bearer_token_returns_one_series_per_lab_veth(
    prometheus_lab: tuple[BridgeLab, int, Served],
) -> None:
    lab, port, _served = prometheus_lab
    assert wait_for(port, 'up{job="vethpeer"} == 1', 1), "Prometheus scrapes with its token"
    veths = sorted(m.host_veth for m in lab.members)
    deadline = time.monotonic() + 60
    while True:  # the query exactly as users write it; the lab's veths each exactly once in its answer
        result = [r for r in query(port, JOIN) if r["metric"]["device"] in veths]
        if len(result) >= len(veths) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(r["metric"]["device"] for r in result) == veths
    assert {r["metric"]["instance"] for r in result} == {NODE}


def test_a_scrape_without_the_token_is_refused_and_counted(
    prometheus_lab: tuple[BridgeLab, int, Served],
) -> None:
    _lab, port, served = prometheus_lab
    assert get(served.port, "/metrics").status == 401
    assert wait_for(port, 'vethpeer_auth_requests_total{mode="kube", result="allowed"} > 0', 1)
    assert wait_for(port, 'vethpeer_auth_requests_total{mode="kube", result="denied"} > 0', 1)
