"""The page put together from lines cached per host device is, byte for byte, what prometheus_client
renders for the whole walk (the oracle), across long random sequences of reports: devices added,
removed and renamed, counters moving, devices without counters, findings coming and going, hostile
and non-UTF-8 names, empty reports. Both exposition formats, and gzipped."""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass, replace

import pytest

from vethpeer.agent.cache import Answer, CacheStats, Walk
from vethpeer.agent.engine import Observation
from vethpeer.agent.live import still_there
from vethpeer.agent.metrics import Health, interface_families, render
from vethpeer.agent.page import EOF_LINE, FORMATS, DeviceLines, MetricsPage
from vethpeer.checks import Diagnosis, Finding, Severity
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
    Workload,
    WorkloadKind,
)

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
FORMATS_ASKED = ("", OPENMETRICS, "text/plain;version=1.0.0;escaping=allow-utf-8")

HOST_KEY = NsKey(4, 1)
HOST_NS = Namespace(HOST_KEY, is_host=True)
HOST = Workload(WorkloadKind.HOST, "host")
KINDS = [WorkloadKind.POD, WorkloadKind.DOCKER, WorkloadKind.NETNS, WorkloadKind.CONTAINER]
HOSTILE = (
    "web",
    'a"quote',
    "back\\slash",
    "new\nline",
    "\x1b]0;own\x07",
    "a\udcffb",  # the byte 0xff, read with surrogateescape
    "caf\u00e9",
    "\u2028sep",
    "# HELP not a header",
    '{x="y"}',
    "",
)


def oracle(observation: Observation, accept: str) -> bytes:
    """The walk's part as the library renders it whole (what the page must equal)."""
    return render(interface_families(observation), accept)[0].removesuffix(EOF_LINE)


@dataclass(frozen=True)
class Device:
    ino: int
    name: str
    workload: Workload
    stats: LinkStats | None
    bridge: str | None


class Host:
    """A host whose devices change at random, and whose checks find things now and then (the
    findings of the latest checks are kept, as `serve --live` keeps them, for the devices still
    there)."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.devices: list[Device] = []
        self.next_ino = 100
        self.rows: tuple[Row, ...] = ()
        self.diagnosis: Diagnosis | None = None
        # as the live model's Correlator keeps them from report to report: a workload side's End
        # while its device's workload and counters are the same, a host device's Link while its
        # name is; the host's End is new whenever the host's Namespace object is (host_ns)
        self.ends: dict[tuple[int, Workload, LinkStats | None], End] = {}
        self.links: dict[tuple[int, str], Link] = {}
        self.host_ns = HOST_NS

    def name(self) -> str:
        return self.random.choice(HOSTILE) + str(self.random.randrange(1000))

    def workload(self) -> Workload:
        kind = self.random.choice(KINDS)
        name = self.name()
        if kind is WorkloadKind.POD:
            return Workload(kind, name, namespace=self.random.choice(HOSTILE) or None, uid=self.name())
        return Workload(kind, name, id=self.name() if kind is WorkloadKind.CONTAINER else None)

    def stats(self) -> LinkStats | None:
        if self.random.random() < 0.1:
            return None
        return LinkStats(*(self.random.choice([0, 1, 7, 2**40, 2**64 - 1]) for _ in range(8)))

    def device(self) -> Device:
        self.next_ino += 1
        bridge = self.random.choice(["br0", None, self.name()])
        return Device(self.next_ino, self.name(), self.workload(), self.stats(), bridge)

    def step(self) -> None:
        for _ in range(self.random.randrange(6)):
            action = self.random.random()
            if action < 0.35 or not self.devices:
                self.devices.insert(self.random.randrange(len(self.devices) + 1), self.device())
            elif action < 0.5:
                self.devices.pop(self.random.randrange(len(self.devices)))
            elif action < 0.6:
                at = self.random.randrange(len(self.devices))
                self.devices[at] = replace(self.devices[at], name=self.name())
            elif action < 0.75:
                at = self.random.randrange(len(self.devices))
                self.devices[at] = replace(self.devices[at], stats=self.stats())
            elif action < 0.8:
                at = self.random.randrange(len(self.devices))
                self.devices[at] = replace(self.devices[at], bridge=self.random.choice(["br0", None]))
            elif action < 0.83:
                self.devices = []
            else:
                self.check()

    def check(self, how: str | None = None) -> None:
        """The checks ran on the latest report: failed, a few findings, or one for every device."""
        how = how or self.random.choice(["failed", "few", "every"])
        if how == "failed":
            self.diagnosis = None
            return
        rows = self.rows if how == "every" else self.random.sample(self.rows, min(3, len(self.rows)))
        found = [
            Finding(
                self.random.choice(["peer-down", "mtu-mismatch"]),
                self.random.choice([*Severity]),
                row.end,
                "message",
                peer=row.peer if self.random.random() < 0.8 else None,
            )
            for row in rows
        ]
        self.diagnosis = Diagnosis((*found, *found[:2]), len(rows), len(rows))  # and the same twice

    def observation(self) -> Observation:
        rows = []
        if self.random.random() < 0.5:  # a process started or ended in the host
            self.host_ns = HOST_NS._replace(pids=(self.random.randrange(9),))
        ends, links = self.ends, self.links
        self.ends, self.links = {}, {}
        for d in self.devices:
            ns = Namespace(NsKey(4, d.ino), pids=(d.ino,))
            inside = ends.get((d.ino, d.workload, d.stats)) or End(
                ns, d.workload, Link(2, "eth0", kind="veth", stats=d.stats), None
            )
            link = links.get((d.ino, d.name)) or Link(d.ino, d.name, kind="veth", master=1)
            self.ends[(d.ino, d.workload, d.stats)], self.links[(d.ino, d.name)] = inside, link
            rows.append(Row(inside, Relation.VETH, End(self.host_ns, HOST, link, d.bridge)))
        self.rows = tuple(rows)
        report = Report(self.rows, {}, (), (), Snapshot(HOST_KEY, (NsView(HOST_NS),)))
        return Observation(report, still_there(self.diagnosis, report))


@pytest.mark.parametrize("accept", FORMATS_ASKED)
@pytest.mark.parametrize("seed", range(12))
def test_the_kept_lines_make_the_page_the_library_renders(seed: int, accept: str) -> None:
    host, lines = Host(seed), DeviceLines(accept)
    for _ in range(40):
        host.step()
        observation = host.observation()
        assert lines.page(observation) == oracle(observation, accept)


def test_an_empty_report_and_devices_without_counters() -> None:
    host = Host(99)
    for accept in FORMATS_ASKED:
        empty = host.observation()
        assert DeviceLines(accept).page(empty) == oracle(empty, accept)
        host.devices = [Device(5, "veth5", Workload(WorkloadKind.NETNS, "blue"), None, None)]
        bare = host.observation()
        assert DeviceLines(accept).page(bare) == oracle(bare, accept)
        host.devices = []


def health(observation: Observation, number: int, complete: bool = True) -> Health:
    walk = Walk(observation, number, 100.0, 1.7e9, 0.25, complete)
    return Health(Answer(walk, stale=False, error=None), CacheStats(number, 0, False, None), 101.0)


@pytest.mark.parametrize("seed", range(4))
def test_the_served_page_plain_and_gzipped(seed: int) -> None:
    host, page = Host(seed), MetricsPage()
    for number in range(1, 25):
        host.step()
        observation = host.observation()
        for accept in FORMATS_ASKED[:2]:
            plain, kind = page.build(health(observation, number), accept)
            zipped, zipped_kind = page.build(health(observation, number), accept, compress=True)
            walk = oracle(observation, accept)
            assert kind == zipped_kind
            for body in (plain, gzip.decompress(zipped)):
                assert body.startswith(walk) and body[len(walk) :].startswith(b"# HELP vethpeer_build")
                assert body.count(b"# EOF") == body.endswith(EOF_LINE) == (accept == OPENMETRICS)


def test_a_walk_completed_by_its_checks_is_a_new_page() -> None:
    host, page = Host(7), MetricsPage()
    while not host.devices:
        host.step()
    host.observation()
    host.diagnosis = Diagnosis((Finding("peer-down", Severity.ERROR, host.rows[0].end, "down"),), 1, 1)
    observation = host.observation()
    unchecked = replace(observation, diagnosis=None)
    first, _ = page.build(health(unchecked, 1, complete=False), "")
    second, _ = page.build(health(observation, 1), "")
    assert first.startswith(oracle(unchecked, "")) and second.startswith(oracle(observation, ""))
    assert b"vethpeer_finding{" in second and b"vethpeer_finding{" not in first


def test_formats_kept_are_bounded() -> None:
    page, observation = MetricsPage(), Host(3).observation()
    for version in range(FORMATS + 3):
        page.build(health(observation, 1), f"application/openmetrics-text;version=1.{version}.0")
    assert len(page._formats) == FORMATS
