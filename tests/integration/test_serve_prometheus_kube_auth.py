"""The join with a bearer token: the real Prometheus scrapes `vethpeer serve --kube-auth` with its
token (``authorization: credentials_file``), the agent checks it with the stand-in API server
(tests/lab/kube_api.py: no kube-apiserver can run here), and the PromQL join with the real
node_exporter still returns one series per test veth. A second job without the token is refused.

Daemons are Debian's binaries on 127.0.0.1 (ports 21200-21299), config and data under /tmp/vqc-*,
stopped afterwards; traffic is UDP between the lab's own namespaces only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_serve_prometheus import JOIN, NODE, daemon, query, wait_for
from tests.lab.kube_api import api_server, kubeconfig_file, service_account
from tests.lab.serve_lab import BridgeLab, free_port, serve
from tests.policy import need_binary

pytestmark = pytest.mark.integration

PROMETHEUS = service_account("monitoring", "prometheus-k8s")


def port() -> int:
    return free_port(21200, 21299)


def config(node_port: int, serve_port: int, token_file: Path) -> str:
    relabel = [{"target_label": "instance", "replacement": NODE}]
    target = {"static_configs": [{"targets": [f"127.0.0.1:{serve_port}"]}], "relabel_configs": relabel}
    document = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "node",
                "static_configs": [{"targets": [f"127.0.0.1:{node_port}"]}],
                "relabel_configs": relabel,
            },
            {
                "job_name": "vethpeer",
                "honor_labels": True,
                "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                **target,
            },
            {"job_name": "vethpeer-anonymous", **target},
        ],
    }
    return json.dumps(document)


@pytest.fixture(scope="module")
def prometheus_lab() -> Iterator[tuple[BridgeLab, int]]:
    prometheus = need_binary("prometheus")
    node_exporter = need_binary("prometheus-node-exporter")
    tmp = Path(tempfile.mkdtemp(prefix="vqc-prom-"))
    stop = threading.Event()
    try:
        with (
            api_server(port=port()) as api,
            kubeconfig_file(api.url, "vqc-agent", "vqc") as kubeconfig,
            BridgeLab(3, prefix="vqc") as lab,
        ):
            api.reviews.tokens["vqc-prometheus-token"] = PROMETHEUS
            api.reviews.grant(PROMETHEUS.username, "get /metrics")
            (tmp / "token").write_text("vqc-prometheus-token\n")
            args = ("--kube-auth", "--kube-auth-kubeconfig", kubeconfig, "--min-interval", "1", "--no-kube")
            with serve(*args, port=port()) as served:
                node_port = port()
                exporter = [
                    node_exporter,
                    f"--web.listen-address=127.0.0.1:{node_port}",
                    "--collector.disable-defaults",
                    "--collector.netdev",
                ]
                with daemon(exporter, tmp / "node_exporter.log"):
                    prom_port = port()
                    (tmp / "prometheus.yml").write_text(config(node_port, served.port, tmp / "token"))
                    argv = [
                        prometheus,
                        f"--config.file={tmp / 'prometheus.yml'}",
                        f"--storage.tsdb.path={tmp / 'data'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                        "--log.level=warn",
                    ]
                    with daemon(argv, tmp / "prometheus.log"):

                        def keep_sending() -> None:
                            while not stop.is_set():
                                lab.traffic(count=10)

                        sender = threading.Thread(target=keep_sending, daemon=True)
                        sender.start()
                        try:
                            yield lab, prom_port
                        finally:
                            stop.set()
                            sender.join(10)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_join_with_a_bearer_token_returns_one_series_per_lab_veth(
    prometheus_lab: tuple[BridgeLab, int],
) -> None:
    lab, port = prometheus_lab
    devices = "|".join(m.host_veth for m in lab.members)
    restricted = JOIN.replace(
        "node_network_receive_bytes_total", f'node_network_receive_bytes_total{{device=~"{devices}"}}'
    ).replace("vethpeer_interface_info", 'vethpeer_interface_info{job="vethpeer"}')
    result = wait_for(port, restricted, len(lab.members))
    assert sorted(r["metric"]["device"] for r in result) == sorted(m.host_veth for m in lab.members)
    assert all(r["metric"]["instance"] == NODE for r in result)


def test_the_scrape_without_the_token_is_refused_and_counted(prometheus_lab: tuple[BridgeLab, int]) -> None:
    _lab, port = prometheus_lab
    assert wait_for(port, 'up{job="vethpeer"} == 1', 1)
    assert wait_for(port, 'up{job="vethpeer-anonymous"} == 0', 1)
    assert not query(port, 'vethpeer_interface_info{job="vethpeer-anonymous"}')
    assert wait_for(port, 'vethpeer_auth_requests_total{mode="kube", result="allowed"} > 0', 1)
    assert wait_for(port, 'vethpeer_auth_requests_total{mode="kube", result="denied"} > 0', 1)
