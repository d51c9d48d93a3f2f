"""The CLI on hand-built reports: `which` targets, the JSON contract, the plain table."""

from __future__ import annotations

import io
import json

import pytest

from tests import contract
from vethpeer.correlate import correlate
from vethpeer.environment import Environment
from vethpeer.errors import Ambiguous, NotFound
from vethpeer.model import (
    Claim,
    Link,
    Namespace,
    NsKey,
    NsView,
    Snapshot,
    SourceResult,
    SourceState,
    SourceStatus,
    Workload,
    WorkloadKind,
)
from vethpeer.render import json as jsonrender
from vethpeer.render import tables as tablerender
from vethpeer.targets import resolve

HOST = NsKey(4, 1)


# ---------------------------------------------------------------- which, on a hand-built report


def _report() -> tuple[Snapshot, list[SourceResult]]:
    lo = Link(1, "lo", mac="00:00:00:00:00:00")
    host_links = [lo, Link(3, "br0", kind="bridge", mac="02:00:00:00:00:03")]
    views = []
    claims = []
    for i, (name, ns_name) in enumerate([("web", "shop"), ("web", "blog"), ("db", "shop")]):
        key = NsKey(4, 100 + i)
        host_links.append(
            Link(
                10 + i, f"veth{i}", kind="veth", mac=f"02:00:00:00:01:0{i}", master=3, link=2, link_netnsid=i
            )
        )
        eth0 = Link(
            2,
            "eth0",
            kind="veth",
            mac=f"02:00:00:00:02:0{i}",
            link=10 + i,
            link_netnsid=0,
            addresses=(f"10.0.0.{i + 2}/24",),
        )
        views.append(NsView(Namespace(key, mounts=(f"/run/netns/cni-{i}",)), (lo, eth0), {0: HOST}))
        pod = Workload(WorkloadKind.POD, name, id=f"abc{i}0000", namespace=ns_name, source="cri")
        claims.append(Claim(key, pod, 40))
    views.append(
        NsView(Namespace(HOST, is_host=True), tuple(host_links), {i: NsKey(4, 100 + i) for i in range(3)})
    )
    snapshot = Snapshot(HOST, tuple(views))
    return snapshot, [SourceResult(SourceStatus("cri", SourceState.OK), tuple(claims))]


def test_which_targets() -> None:
    report = correlate(*_report())
    assert [r.end.workload.label for r in resolve(report, "10.0.0.3").rows] == ["pod/blog/web"]
    assert [r.peer.link.name for r in resolve(report, "02:00:00:00:02:02").rows if r.peer] == ["veth2"]
    assert [r.end.workload.label for r in resolve(report, "veth0").rows] == ["pod/shop/web"]
    assert [r.end.workload.label for r in resolve(report, "shop/web").rows] == ["pod/shop/web"]
    assert [r.end.workload.label for r in resolve(report, "pod/web", namespace="blog").rows] == [
        "pod/blog/web"
    ]
    assert [r.end.workload.label for r in resolve(report, "db").rows] == ["pod/shop/db"]
    assert [r.end.workload.label for r in resolve(report, "abc2").rows] == ["pod/shop/db"]
    assert [r.end.workload.label for r in resolve(report, "cni-1").rows] == ["pod/blog/web"]
    with pytest.raises(Ambiguous) as many:
        resolve(report, "web")
    assert many.value.candidates == ["pod/blog/web", "pod/shop/web"]
    with pytest.raises(Ambiguous):
        resolve(report, "abc")  # a prefix of all three sandbox IDs
    with pytest.raises(NotFound):
        resolve(report, "10.9.9.9")
    with pytest.raises(NotFound):
        resolve(report, "br0")  # a host interface, but nothing behind it
    with pytest.raises(NotFound):
        resolve(report, "nope")


def test_json_contract_fields() -> None:
    report = correlate(*_report())
    out = io.StringIO()
    jsonrender.write(jsonrender.report_json(report), Environment(stdout=out))
    data = json.loads(out.getvalue())
    assert data["schema_version"] == 1
    assert contract.TOP_FIELDS | {"workloads"} <= data.keys()
    entry = data["interfaces"][0]
    assert entry.keys() >= contract.INTERFACE_FIELDS
    assert entry["workload"].keys() >= contract.WORKLOAD_FIELDS
    assert entry["netns"].keys() >= contract.NETNS_FIELDS
    assert entry["peer"].keys() >= contract.PEER_FIELDS
    assert entry["peer"]["relation"] == "veth" and entry["peer"]["master"] == "br0"


def test_plain_table_when_not_a_tty() -> None:
    report = correlate(*_report())
    out = io.StringIO()
    tablerender.write_table(report, Environment(stdout=out))
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["NAMESPACE", "POD", "IF"] or lines[0].split()[:2] == [
        "NAMESPACE",
        "WORKLOAD",
    ]
    assert "\x1b[" not in out.getvalue()
    assert len(lines) == 4
