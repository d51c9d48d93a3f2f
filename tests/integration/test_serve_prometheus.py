"""The join users write, for real: a real Prometheus scrapes a real node_exporter and `vethpeer serve`.

Both daemons are Debian's binaries, started here on 127.0.0.1 with their own config and data
directories under /tmp/vps-prom-*, and stopped afterwards. Traffic is UDP between the lab's own
namespaces only. ``instance`` is relabelled to one node name on both jobs (as kube-prometheus
does), and the vethpeer job honours its labels (``namespace``, ``pod``, ``container``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.serve_lab import BridgeLab, Served, free_port, serve
from tests.lab.tls_lab import PORTS, htpasswd_hash, pki, secured
from tests.policy import need_binary

pytestmark = pytest.mark.integration

NODE = "vps-node-1"
JOIN = (
    "rate(node_network_receive_bytes_total[5m]) "
    "* on(instance, device) group_left(namespace, pod) vethpeer_interface_info"
)


def config(node_port: int, serve_port: int, client: dict[str, Any] | None = None) -> str:
    """Prometheus' config; ``client`` is the vethpeer job's client side (scheme, tls_config,
    basic_auth, authorization), as a secured agent is scraped."""
    relabel = [{"target_label": "instance", "replacement": NODE}]
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
                "static_configs": [{"targets": [f"127.0.0.1:{serve_port}"]}],
                "relabel_configs": relabel,
                **(client or {}),
            },
        ],
    }
    return json.dumps(document)  # JSON is YAML


@contextlib.contextmanager
def daemon(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def wait_for(port: int, promql: str, want: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            result = query(port, promql)
            if len(result) >= want:
                return result
        time.sleep(0.5)
    return result


@contextlib.contextmanager
def prometheus_scraping(
    served: Served,
    lab: BridgeLab,
    client: dict[str, Any] | None = None,
    ports: tuple[int, int] = (19400, 19499),
) -> Iterator[int]:
    """A real node_exporter and a real Prometheus scraping it and ``served`` (with ``client`` as the
    vethpeer job's client side), while the lab sends traffic; yields Prometheus' port."""
    prometheus = need_binary("prometheus")
    node_exporter = need_binary("prometheus-node-exporter")
    tmp = Path(tempfile.mkdtemp(prefix="vps-prom-"))
    stop = threading.Event()
    try:
        node_port = free_port(*ports)
        with daemon(
            [
                node_exporter,
                f"--web.listen-address=127.0.0.1:{node_port}",
                "--collector.disable-defaults",
                "--collector.netdev",
            ],
            tmp / "node_exporter.log",
        ):
            prom_port = free_port(node_port + 1, ports[1])
            (tmp / "prometheus.yml").write_text(config(node_port, served.port, client))
            with daemon(
                [
                    prometheus,
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--log.level=warn",
                ],
                tmp / "prometheus.log",
            ):

                def keep_sending() -> None:
                    while not stop.is_set():
                        lab.traffic(count=10)

                sender = threading.Thread(target=keep_sending, daemon=True)
                sender.start()
                try:
                    yield prom_port
                finally:
                    stop.set()
                    sender.join(10)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def prometheus_lab() -> Iterator[tuple[BridgeLab, int]]:
    with (
        BridgeLab(3) as lab,
        serve("--min-interval", "1", "--no-kube") as served,
        prometheus_scraping(served, lab) as prom_port,
    ):
        yield lab, prom_port


def one_series_per_lab_veth(lab: BridgeLab, port: int) -> list[dict[str, Any]]:
    """The join restricted to the lab's veths, once it has one series for each (asserted)."""
    devices = "|".join(m.host_veth for m in lab.members)
    restricted = JOIN.replace(
        "node_network_receive_bytes_total", f'node_network_receive_bytes_total{{device=~"{devices}"}}'
    )
    result = wait_for(port, restricted, len(lab.members))
    assert sorted(r["metric"]["device"] for r in result) == sorted(m.host_veth for m in lab.members)
    assert all(r["metric"]["instance"] == NODE for r in result)
    return result


def test_the_join_returns_one_series_per_lab_veth(prometheus_lab: tuple[BridgeLab, int]) -> None:
    lab, port = prometheus_lab
    result = one_series_per_lab_veth(lab, port)
    assert all(float(r["value"][1]) > 0 for r in result), "traffic flowed through every host veth"
    # The query exactly as users write it works too (no many-to-many error on this node).
    whole = query(port, JOIN)
    assert {m.host_veth for m in lab.members} <= {r["metric"]["device"] for r in whole}


def test_the_join_carries_the_right_workload(prometheus_lab: tuple[BridgeLab, int]) -> None:
    lab, port = prometheus_lab
    promql = JOIN.replace("group_left(namespace, pod)", "group_left(workload, workload_kind, netns_inode)")
    result = {r["metric"]["device"]: r["metric"] for r in wait_for(port, promql, len(lab.members))}
    for m in lab.members:
        labels = result[m.host_veth]
        assert labels["workload"] == f"netns/{m.netns}"
        assert labels["workload_kind"] == "netns"
        assert labels["netns_inode"] == str(m.inode)


def test_exporter_health_is_scraped(prometheus_lab: tuple[BridgeLab, int]) -> None:
    _lab, port = prometheus_lab
    up = wait_for(port, 'up{job="vethpeer"} == 1', 1)
    assert up and up[0]["metric"]["instance"] == NODE
    assert wait_for(port, 'vethpeer_source_up{source="kernel"} == 1', 1)
    assert wait_for(port, "vethpeer_result_stale == 0", 1)


def test_node_exporter_is_what_it_joins_with(prometheus_lab: tuple[BridgeLab, int]) -> None:
    """The other side of the join is node_exporter's own device label, unchanged."""
    lab, port = prometheus_lab
    devices = {r["metric"]["device"] for r in wait_for(port, "node_network_receive_bytes_total", 1)}
    assert {m.host_veth for m in lab.members} <= devices


# --- the same join, with the agent secured: TLS and basic auth (serve --web-config-file) -----------

PASSWORD = "vqb-prometheus-password"


@pytest.fixture(scope="module")
def prometheus_tls_lab() -> Iterator[tuple[BridgeLab, int]]:
    """Prometheus scrapes vethpeer with ``scheme: https``, ``tls_config.ca_file`` and
    ``basic_auth``; the hash in the web config is htpasswd's."""
    with pki() as made, BridgeLab(3, prefix="vqb") as lab:
        config = {
            "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
            "basic_auth_users": {"prometheus": htpasswd_hash("prometheus", PASSWORD)},
        }
        client = {
            "scheme": "https",
            "tls_config": {"ca_file": str(made.path("ca.crt"))},
            "basic_auth": {"username": "prometheus", "password": PASSWORD},
        }
        with (
            secured(made, config, "--min-interval", "1") as served,
            prometheus_scraping(served, lab, client, ports=PORTS) as prom_port,
        ):
            yield lab, prom_port
            assert "refused" not in served.stderr(), served.stderr()  # every scrape authenticated


def test_the_join_over_tls_with_basic_auth_returns_one_series_per_lab_veth(
    prometheus_tls_lab: tuple[BridgeLab, int],
) -> None:
    lab, port = prometheus_tls_lab
    assert wait_for(port, 'up{job="vethpeer"} == 1', 1), "Prometheus scrapes over TLS with basic auth"
    one_series_per_lab_veth(lab, port)
