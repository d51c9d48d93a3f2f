"""`serve -n NS`: the walks are cut to Kubernetes namespace NS, so /metrics, /api/v1/table,
/api/v1/which and /api/v1/doctor only ever show NS's pods; ``?namespace=`` may repeat NS, and
another namespace is a 403. The routes run in-process (no sockets) with the real cache, walker,
doctor's checks and renderers; the walk itself is a hand-built report (the correlator's own
answer over a made-up topology), as unit tests cannot make pods. The real server with a real
pod is tests/integration/test_serve_scope.py."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vethpeer.agent.api import Response, Service, route
from vethpeer.agent.cache import WalkCache
from vethpeer.agent.engine import Walker
from vethpeer.collect import Request
from vethpeer.correlate import correlate
from vethpeer.environment import Environment
from vethpeer.model import Claim, LinkStats, NsKey, Report, Workload
from vethpeer.model import WorkloadKind as Kind
from vethpeer.targets import scoped

from .builders import HOST, Topo, answered
from .fakeproc import FakeProc

SHOP = Workload(Kind.POD, "web-1", id="a" * 64, namespace="shop", uid="u-shop", source="cri")
OTHER = Workload(Kind.POD, "db-1", id="b" * 64, namespace="team-b", uid="u-team-b", source="cri")
DOCKER = Workload(Kind.DOCKER, "cache", id="c" * 64, source="docker")
HOSTNET = Workload(Kind.POD, "agent", namespace="team-b", source="cri")  # a hostNetwork pod


@dataclass
class World:
    report: Report
    inodes: dict[str, int]  # workload name -> netns inode


def world() -> World:
    """Three workloads on one bridge, each with an MTU mismatch (a warning finding per veth)."""
    t = Topo()
    bridge = t.bridge(HOST, "vpscbr0")
    keys: dict[str, NsKey] = {}
    for i, (w, host_veth) in enumerate(((SHOP, "vpsch-a"), (OTHER, "vpsch-b"), (DOCKER, "vpsch-c"))):
        key = keys[w.name] = t.netns(f"vpsc-nonexistent-{i}")
        inside = {"addresses": (f"10.9.0.{i + 2}/24",), "mtu": 1400, "stats": LinkStats(rx_bytes=100 + i)}
        _eth, port = t.veth(key, "eth0", HOST, host_veth, a=inside)
        t.enslave(HOST, port, bridge)
    claims = [Claim(keys[w.name], w, 30) for w in (SHOP, OTHER, DOCKER)] + [Claim(HOST, HOSTNET, 30)]
    report = correlate(t.snapshot(), [answered("cri", claims)])
    return World(report, {name: key.ino for name, key in keys.items()})


@dataclass
class Server:
    service: Service
    world: World
    walks: list[int]

    def get(self, path: str) -> Response:
        return route(self.service, "GET", path, {})

    def json(self, path: str, status: int = 200) -> Any:
        reply = self.get(path)
        assert reply.status == status, reply.body
        return json.loads(reply.body)

    def metrics(self) -> dict[str, list[Any]]:
        text = self.get("/metrics").body.decode()
        found: dict[str, list[Any]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                found.setdefault(s.name, []).append(s)
        return found


def make_server(tmp_path: Path, namespace: str | None) -> Server:
    """The pieces `vethpeer serve` run() wires, with ``namespace`` as its ``-n``."""
    proc = str(FakeProc(tmp_path / "proc").root)  # the checks open nothing of this machine's
    built, walks = world(), []

    def walk_call(_request: Request, _env: Environment) -> Report:
        walks.append(1)
        return built.report

    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ={}, proc=proc)
    walker = Walker(Request(), env, lambda _line: None, walk_call, namespace=namespace)
    cache = WalkCache(walker, 60.0, then=walker.diagnose)
    service = Service(cache, wait=5.0, proc=proc, namespace=namespace, now=time.monotonic)
    cache.warm()
    return Server(service, built, walks)


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Server]:
    yield make_server(tmp_path, "shop")


@pytest.fixture
def everything(tmp_path: Path) -> Iterator[Server]:
    yield make_server(tmp_path, None)


def wait_for_findings(server: Server) -> None:
    deadline = time.monotonic() + 10
    while server.metrics()["vethpeer_doctor_up"][0].value != 1:
        assert time.monotonic() < deadline, "the doctor's checks never ran"
        time.sleep(0.01)


def workload_names(document: dict[str, Any]) -> set[str]:
    return {e["workload"]["name"] for e in document["interfaces"]} | {
        w["workload"]["name"] for w in document["workloads"]
    }


# ------------------------------------------------------------------ the one filter


def test_scoped_keeps_only_that_namespace_and_none_is_everything() -> None:
    report = world().report
    assert scoped(report, None) is report
    cut = scoped(report, "shop")
    assert {r.end.workload.name for r in cut.rows} == {"web-1"}
    assert [w.name for found in cut.workloads.values() for w in found] == ["web-1"]
    assert cut.host_network == ()
    assert [w.name for w in scoped(report, "team-b").host_network] == ["agent"]
    assert scoped(report, "nowhere").rows == () and not scoped(report, "nowhere").workloads
    assert cut.snapshot is report.snapshot and cut.sources == report.sources  # host facts stay


# ------------------------------------------------------------------ /metrics


def test_metrics_of_a_scoped_server_are_that_namespaces_pods_only(shop: Server) -> None:
    wait_for_findings(shop)
    series = shop.metrics()
    info = series["vethpeer_interface_info"]
    assert [(s.labels["device"], s.labels["namespace"], s.labels["pod"]) for s in info] == [
        ("vpsch-a", "shop", "web-1")
    ]
    received = series["vethpeer_workload_network_receive_bytes_total"]
    assert [s.labels["device"] for s in received] == ["vpsch-a"]
    findings = series["vethpeer_finding"]
    assert findings and {s.labels.get("namespace") for s in findings} == {"shop"}
    assert {s.labels["workload"] for s in findings} == {"pod/shop/web-1"}
    # The exporter's own health stays whole: it is about the walk, not about a namespace.
    assert series["vethpeer_walk_namespaces"][0].value == 4
    assert {s.labels["source"] for s in series["vethpeer_source_up"]} == {"cri"}


def test_metrics_of_an_unscoped_server_are_every_workload(everything: Server) -> None:
    wait_for_findings(everything)
    series = everything.metrics()
    devices = {s.labels["device"] for s in series["vethpeer_interface_info"]}
    assert devices == {"vpsch-a", "vpsch-b", "vpsch-c"}
    workloads = {s.labels["workload"] for s in series["vethpeer_finding"]}
    assert {"pod/shop/web-1", "pod/team-b/db-1", "docker/cache"} <= workloads


# ------------------------------------------------------------------ /api/v1/table


def test_table_of_a_scoped_server_is_its_namespace_and_served_from_the_cache(shop: Server) -> None:
    whole = shop.get("/api/v1/table")
    assert whole.status == 200
    document = json.loads(whole.body)
    assert workload_names(document) == {"web-1"}
    assert [e["netns"]["inode"] for e in document["interfaces"]] == [shop.world.inodes["web-1"]]
    assert shop.service.table, "the scoped server keeps the whole-table fast path"
    again = shop.get("/api/v1/table?namespace=shop")
    assert again.status == 200 and again.body == whole.body  # the same cached bytes
    assert shop.walks == [1]


def test_the_whole_table_is_kept_when_the_checks_settle_the_walk_meanwhile(
    shop: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache republishes a walk once the doctor's checks have run on it (same number, same
    report, a new value). A request answered from the walk before that, whose table is built
    after it, still keeps that table (a loaded machine hit this: `service.table` stayed None)."""
    latest = shop.service.cache.latest

    def settled_meanwhile() -> Any:
        walk = latest()
        return None if walk is None else replace(walk, value=replace(walk.value, diagnosed=True))

    monkeypatch.setattr(shop.service.cache, "latest", settled_meanwhile)
    assert shop.get("/api/v1/table").status == 200
    assert shop.service.table, "the table of that walk is kept"


def test_another_namespace_than_the_servers_is_a_403_on_every_endpoint(shop: Server) -> None:
    for path in (
        "/api/v1/table?namespace=team-b",
        "/api/v1/which/db-1?namespace=team-b",
        "/api/v1/doctor?namespace=team-b",
    ):
        error = shop.json(path, 403)["error"]
        assert error["namespace"] == "shop" and "serves only Kubernetes namespace 'shop'" in error["message"]
        assert "db-1" not in shop.get(path).body.decode()


def test_an_unscoped_server_still_narrows_by_query(everything: Server) -> None:
    assert workload_names(everything.json("/api/v1/table")) == {"web-1", "db-1", "cache", "agent"}
    assert workload_names(everything.json("/api/v1/table?namespace=team-b")) == {"db-1", "agent"}
    assert workload_names(everything.json("/api/v1/which/web-1?namespace=shop")) == {"web-1"}
    assert everything.get("/api/v1/which/web-1?namespace=team-b").status == 404


# ------------------------------------------------------------------ /api/v1/which, /api/v1/doctor


def test_which_on_a_scoped_server_finds_its_pods_and_nothing_else(shop: Server) -> None:
    for target in ("web-1", "shop%2Fweb-1", "vpsch-a", "10.9.0.2"):
        document = shop.json(f"/api/v1/which/{target}")
        assert [e["netns"]["inode"] for e in document["interfaces"]] == [shop.world.inodes["web-1"]], target
    # Another namespace's pod, its host veth, its IP, a Docker container: not found, nothing shown.
    for target in ("db-1", "team-b%2Fdb-1", "vpsch-b", "10.9.0.3", "cache", "vpsch-c"):
        reply = shop.get(f"/api/v1/which/{target}")
        assert reply.status == 404, (target, reply.body)
        message = json.loads(reply.body)["error"]["message"]
        assert "this server sees only Kubernetes namespace 'shop'" in message
        assert "in namespace" not in message  # said once, not twice


def test_doctor_on_a_scoped_server_checks_its_namespace_only(shop: Server) -> None:
    wait_for_findings(shop)
    for path in ("/api/v1/doctor", "/api/v1/doctor?namespace=shop", "/api/v1/doctor?target=web-1"):
        findings = shop.json(path)["findings"]
        assert findings and {f["interface"]["workload"] for f in findings} == {"pod/shop/web-1"}, path
    assert shop.get("/api/v1/doctor?target=db-1").status == 404
