"""The series of a walk, from hand-built reports: one info series per host device, labels as
documented, no empty labels, counters labelled alike, OpenMetrics and gzip framing."""

from __future__ import annotations

import gzip

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from vethpeer.agent.cache import Answer, CacheStats, Walk
from vethpeer.agent.engine import Observation
from vethpeer.agent.metrics import Health, accepts_gzip, host_side_rows, interface_families
from vethpeer.agent.page import MetricsPage
from vethpeer.model import (
    End,
    Link,
    LinkStats,
    Namespace,
    NsKey,
    NsView,
    Relation,
    Report,
    Row,
    Snapshot,
    SourceState,
    SourceStatus,
    Workload,
    WorkloadKind,
)

HOST_KEY = NsKey(4, 1)
HOST_NS = Namespace(HOST_KEY, is_host=True)
HOST = Workload(WorkloadKind.HOST, "host")


def row(
    ino: int, workload: Workload, host_name: str, *, bridge: str | None = "br0", inside_host: bool = False
) -> Row:
    ns = Namespace(NsKey(4, ino), pids=(ino,))
    inside = End(
        ns, workload, Link(2, "eth0", kind="veth", stats=LinkStats(rx_bytes=ino, tx_packets=7)), None
    )
    peer = End(HOST_NS, HOST, Link(ino, host_name, kind="veth", master=1), bridge)
    if inside_host:
        inside = End(HOST_NS, HOST, Link(ino + 1, "vethx", kind="veth"), None)
    return Row(inside, Relation.VETH, peer)


def report(*rows: Row) -> Report:
    views = (NsView(HOST_NS), *(NsView(r.end.ns) for r in rows))
    status = (
        SourceStatus("kernel", SourceState.OK),
        SourceStatus("docker", SourceState.TIMEOUT, "no answer"),
    )
    return Report(rows, {}, (), status, Snapshot(HOST_KEY, views))


POD = Workload(WorkloadKind.POD, "web-1", namespace="shop", uid="a-b-c", containers=("app",), source="cri")
DOCKER = Workload(WorkloadKind.DOCKER, "db", id="f" * 64, image="postgres", source="docker")
NETNS = Workload(WorkloadKind.NETNS, "blue")


def samples(text: str, name: str) -> list:  # type: ignore[type-arg]
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def render_text(r: Report) -> str:
    from vethpeer.agent.metrics import render

    body, _type = render(interface_families(Observation(r)), "")
    return body.decode()


def test_one_info_series_per_host_device_with_the_workload_labels() -> None:
    r = report(row(10, POD, "veth10"), row(11, DOCKER, "veth11", bridge=None), row(12, NETNS, "veth12"))
    info = {s.labels["device"]: s.labels for s in samples(render_text(r), "vethpeer_interface_info")}
    assert info["veth10"] == {
        "device": "veth10",
        "interface": "eth0",
        "netns_inode": "10",
        "workload_kind": "pod",
        "workload": "pod/shop/web-1",
        "namespace": "shop",
        "pod": "web-1",
        "uid": "a-b-c",
        "bridge": "br0",
    }
    assert info["veth11"] == {
        "device": "veth11",
        "interface": "eth0",
        "netns_inode": "11",
        "workload_kind": "docker",
        "workload": "docker/db",
        "container": "db",
    }
    assert info["veth12"]["workload"] == "netns/blue" and "namespace" not in info["veth12"]


def test_no_empty_labels_and_no_addresses_images_or_ids() -> None:
    text = render_text(report(row(10, POD, "veth10"), row(11, DOCKER, "veth11", bridge=None)))
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert "" not in s.labels.values()
            assert "postgres" not in s.labels.values() and "f" * 64 not in s.labels.values()


def test_rows_without_a_host_side_are_not_series_and_devices_are_unique() -> None:
    dup = row(13, NETNS, "veth10")  # the same host device twice: counted once
    r = report(row(10, POD, "veth10"), dup, row(14, NETNS, "veth14", inside_host=True))
    assert [x.peer.link.name for x in host_side_rows(r) if x.peer] == ["veth10"]


def test_counters_come_from_the_workload_side_labelled_like_the_info() -> None:
    text = render_text(report(row(10, POD, "veth10")))
    (rx,) = samples(text, "vethpeer_workload_network_receive_bytes_total")
    (info,) = samples(text, "vethpeer_interface_info")
    assert rx.value == 10 and rx.labels == info.labels
    assert samples(text, "vethpeer_workload_network_transmit_packets_total")[0].value == 7


def health(r: Report, stale: bool = False) -> Health:
    walk = Walk(Observation(r), 1, 100.0, 1.7e9, 0.25)
    return Health(Answer(walk, stale=stale, error=None), CacheStats(1, 0, False, None), 102.0)


def test_the_page_in_both_formats_and_gzipped() -> None:
    page = MetricsPage()
    h = health(report(row(10, POD, "veth10")), stale=True)
    text, kind = page.build(h, "")
    assert kind.startswith("text/plain; version=0.0.4")
    values = {s.name: s for f in text_string_to_metric_families(text.decode()) for s in f.samples}
    assert values["vethpeer_result_stale"].value == 1 and values["vethpeer_result_age_seconds"].value == 2
    up = {s.labels["source"]: s.value for s in samples(text.decode(), "vethpeer_source_up")}
    assert up == {"kernel": 1, "docker": 0}
    om, kind = page.build(h, "application/openmetrics-text;version=1.0.0")
    assert kind.startswith("application/openmetrics-text") and om.decode().count("# EOF") == 1
    assert {f.name for f in parse_openmetrics(om.decode())} >= {"vethpeer_interface", "vethpeer_result_stale"}
    zipped, _kind = page.build(h, "", compress=True)

    def steady(body: bytes) -> list[bytes]:  # the process_* values move between two calls
        return [line for line in body.splitlines() if b"process_" not in line]

    assert steady(gzip.decompress(zipped)) == steady(page.build(h, "")[0])


def test_accept_encoding() -> None:
    assert accepts_gzip("gzip") and accepts_gzip("br, gzip;q=0.5") and accepts_gzip("GZIP")
    assert not accepts_gzip("") and not accepts_gzip("gzip;q=0") and not accepts_gzip("identity")
