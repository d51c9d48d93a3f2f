"""The Prometheus series of one walk, and of the exporter's own health (pure, then prometheus_client).

* ``vethpeer_interface_info{device, ...} 1``: one per host-side veth whose peer is in a
  workload; ``device`` is the host interface name as node_exporter labels it, so
  ``node_network_* * on(instance, device) group_left(...) vethpeer_interface_info`` joins.
* ``vethpeer_workload_network_{receive,transmit}_{bytes,packets,drop,errs}_total``: the
  workload side's own IFLA_STATS64 counters, labelled like the info series.
* ``vethpeer_finding{check, severity, ...} 1``: doctor findings at warning and above.
* health: ``vethpeer_source_up``, ``vethpeer_walk_*``, ``vethpeer_result_*``.

A label whose value is unknown is left out, never ``""`` (Prometheus treats both alike,
but an empty label in the output only confuses people reading it). No addresses, MACs
or user labels become labels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from .. import __version__
from ..checks import Finding, Severity
from ..journal.record import JournalHealth
from ..live.drift import KINDS as DRIFT_KINDS
from ..live.model import ModelStats
from ..model import End, LinkStats, NsKey, Relation, Report, Row, SourceState, Workload, WorkloadKind
from .cache import Answer, CacheStats
from .engine import Observation

Labels = dict[str, str]

COUNTERS = (  # (metric name part, LinkStats field, help)
    ("receive_bytes", "rx_bytes", "Bytes received by the workload's interface."),
    ("transmit_bytes", "tx_bytes", "Bytes sent by the workload's interface."),
    ("receive_packets", "rx_packets", "Packets received by the workload's interface."),
    ("transmit_packets", "tx_packets", "Packets sent by the workload's interface."),
    ("receive_drop", "rx_dropped", "Received packets dropped by the workload's interface."),
    ("transmit_drop", "tx_dropped", "Packets the workload's interface dropped on send."),
    ("receive_errs", "rx_errors", "Receive errors on the workload's interface."),
    ("transmit_errs", "tx_errors", "Transmit errors on the workload's interface."),
)


def _utf8(labels: Labels) -> Labels:
    """Label values as Prometheus takes them, valid UTF-8: a byte of a name that is not UTF-8
    (kept by ``surrogateescape``) becomes the text ``\\xNN``, instead of failing the scrape."""
    if all(value.isascii() for value in labels.values()):
        return labels
    return {name: _valid(value) for name, value in labels.items()}


def _valid(text: str) -> str:
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # another lone surrogate (not a byte read from the system)
        return text.encode("utf-8", "replace").decode("utf-8")


def _put(labels: Labels, name: str, value: object) -> None:
    if value is not None and value != "":
        labels[name] = str(value)


def workload_labels(w: Workload) -> Labels:
    """Who: kind and label always; Kubernetes namespace/pod/uid for pods; container for Docker."""
    labels: Labels = {"workload_kind": w.kind.value, "workload": w.label}
    if w.kind is WorkloadKind.POD:
        _put(labels, "namespace", w.namespace)
        _put(labels, "pod", w.name)
        _put(labels, "uid", w.uid)
    elif w.kind is WorkloadKind.DOCKER:
        _put(labels, "container", w.name)
    elif w.kind is WorkloadKind.CONTAINER:
        _put(labels, "container_id", w.id)
    return labels


def interface_labels(row: Row) -> Labels:
    """The labels of a workload interface whose veth peer is in the host: the join key first."""
    assert row.peer is not None
    labels: Labels = {"device": row.peer.link.name, "interface": row.end.link.name}
    _put(labels, "netns_inode", row.end.ns.key.ino)
    labels.update(workload_labels(row.end.workload))
    _put(labels, "bridge", row.peer.master)
    return _utf8(labels)


def host_side_rows(report: Report) -> list[Row]:
    """Rows whose workload interface has its veth peer in the host namespace, once per host device."""
    host = report.snapshot.host
    seen: set[str] = set()
    found = []
    for row in report.rows:
        peer = row.peer
        if peer is None or row.relation is not Relation.VETH or peer.ns.key != host or row.end.ns.key == host:
            continue
        if peer.link.name not in seen:
            seen.add(peer.link.name)
            found.append(row)
    return found


def _where(end: End, prefix: str) -> Labels:
    labels: Labels = {f"{prefix}interface": end.link.name}
    _put(labels, f"{prefix}netns_inode", end.ns.key.ino)
    return labels


Device = tuple[Labels, LinkStats | None]  # one host device's series: its labels, the workload side's counters


def devices(report: Report) -> list[Device]:
    """The labels and counters of every host device's series, in the page's order."""
    return [(interface_labels(row), row.end.link.stats) for row in host_side_rows(report)]


def device_families(found: Iterable[Device]) -> list[Metric]:
    """The info family, then one family per counter: a sample per device in each."""
    info = Metric("vethpeer_interface", "A host-side interface and the workload it belongs to.", "info")
    counters = {
        part: Metric(f"vethpeer_workload_network_{part}", doc, "counter") for part, _field, doc in COUNTERS
    }
    for labels, stats in found:
        info.add_sample("vethpeer_interface_info", labels, 1)
        if stats is None:
            continue
        for part, field, _doc in COUNTERS:
            family = counters[part]
            family.add_sample(f"{family.name}_total", labels, getattr(stats, field))
    return [info, *counters.values()]


def interface_families(observation: Observation) -> list[Metric]:
    """Everything that depends only on the walk (agent/page.py renders it row by row; this whole
    render is its oracle)."""
    return [*device_families(devices(observation.report)), finding_family(findings(observation))]


def finding_labels(finding: Finding, host: NsKey) -> Labels:
    """One finding's labels: the check, the severity, the host device, both ends, the workload."""
    labels: Labels = {"check": finding.check, "severity": finding.severity.value}
    ends = (finding.end, finding.peer)
    _put(labels, "device", next((e.link.name for e in ends if e is not None and e.ns.key == host), None))
    labels.update(_where(finding.end, ""))
    labels.update(workload_labels(finding.end.workload))
    if finding.peer is not None:
        labels.update(_where(finding.peer, "peer_"))
    return _utf8(labels)


LabelSet = tuple[tuple[str, str], ...]  # labels in name order: one series


def finding_series(finding: Finding, host: NsKey) -> tuple[Labels, LabelSet]:
    labels = finding_labels(finding, host)
    return labels, tuple(sorted(labels.items()))


def findings(
    observation: Observation,
    series: Callable[[Finding, NsKey], tuple[Labels, LabelSet]] = finding_series,
) -> list[tuple[Labels, LabelSet]]:
    """The finding series: findings at warning and above, each label set once."""
    diagnosis = observation.diagnosis
    if diagnosis is None:
        return []
    host = observation.report.snapshot.host
    seen: set[LabelSet] = set()
    found = []
    for f in diagnosis.findings:
        if f.severity is Severity.INFO:
            continue
        labels, key = series(f, host)
        if key not in seen:
            seen.add(key)
            found.append((labels, key))
    return found


def finding_family(found: Iterable[tuple[Labels, LabelSet]]) -> Metric:
    family = Metric(
        "vethpeer_finding", "A doctor finding at warning level or above (1 while it holds).", "gauge"
    )
    for labels, _key in found:
        family.add_sample("vethpeer_finding", labels, 1)
    return family


@dataclass(frozen=True, slots=True)
class Health:
    answer: Answer[Observation]
    stats: CacheStats
    now: float  # monotonic clock, like Walk.finished
    auth: tuple[str, Mapping[str, int]] | None = None  # (mode, decisions by result) when requests are checked
    journal: JournalHealth | None = None  # None: serve --no-journal


def _gauge(name: str, doc: str, value: float, labels: Mapping[str, str] | None = None) -> Metric:
    family = Metric(name, doc, "gauge")
    family.add_sample(name, dict(labels or {}), value)
    return family


def _counter(name: str, doc: str, value: float) -> Metric:
    family = Metric(name, doc, "counter")
    family.add_sample(f"{name}_total", {}, value)
    return family


def health_families(health: Health) -> list[Metric]:
    """The exporter's own state at this request: sources, the walk it answers from, staleness."""
    walk = health.answer.walk
    build = Metric("vethpeer_build", "The vethpeer version serving.", "info")
    build.add_sample("vethpeer_build_info", {"version": __version__}, 1)
    families = [
        build,
        _counter("vethpeer_walks", "Walks finished (good or failed).", health.stats.walks),
        _counter("vethpeer_walk_errors", "Walks that failed.", health.stats.errors),
        _gauge(
            "vethpeer_result_stale",
            "1 when this answer comes from an older walk: the latest did not finish in time, or failed.",
            1 if health.answer.stale else 0,
        ),
    ]
    if health.stats.model is not None:
        families += model_families(health.stats.model)
    if health.auth is not None:
        families.append(auth_family(*health.auth))
    if health.journal is not None:
        families += [
            _gauge(
                "vethpeer_journal_up",
                "1 when the journal is open and its latest write succeeded (0: full disk, refused, ...).",
                1 if health.journal.up else 0,
            ),
            _counter(
                "vethpeer_journal_errors", "Journal opens and writes that failed.", health.journal.errors
            ),
        ]
    if walk is None:
        return families
    report = walk.value.report
    up = Metric(
        "vethpeer_source_up", "1 when the source answered in the walk served (skipped: absent).", "gauge"
    )
    for status in report.sources:
        if status.state is not SourceState.SKIPPED:
            up.add_sample(
                "vethpeer_source_up", {"source": status.name}, 1 if status.state is SourceState.OK else 0
            )
    views = report.snapshot.views
    families += [
        up,
        _gauge("vethpeer_walk_duration_seconds", "How long the walk served took.", walk.duration),
        _gauge(
            "vethpeer_walk_namespaces",
            "Network namespaces read in the walk served.",
            sum(1 for v in views if not v.error),
        ),
        _gauge(
            "vethpeer_walk_namespaces_unreadable",
            "Network namespaces found but not read (vanished, refused) in the walk served.",
            sum(1 for v in views if v.error),
        ),
        _gauge(
            "vethpeer_walk_timestamp_seconds", "When the walk served finished (Unix time).", walk.finished_at
        ),
        _gauge(
            "vethpeer_result_age_seconds", "Age of the walk served.", max(0.0, health.now - walk.finished)
        ),
        _gauge(
            "vethpeer_doctor_up",
            "1 when the doctor's checks ran (the findings served come from them), 0 when they failed.",
            1 if walk.value.diagnosis is not None else 0,
        ),
        _gauge(
            "vethpeer_findings_lag_walks",
            "0 when the findings served are from the walk served, 1 when from the walk before "
            "(the checks run after each walk, and a scrape does not wait for them).",
            0 if walk.value.diagnosed else 1,
        ),
    ]
    return families


def model_families(model: ModelStats) -> list[Metric]:
    """`serve --live`: the live model's generation, whether it settled, and its resyncs' drift."""
    drift = Metric(
        "vethpeer_resync_drift",
        "Differences a resync's full walk found in the live model, by kind (each is a missed event).",
        "counter",
    )
    for kind in sorted({*DRIFT_KINDS, *model.drift}):
        drift.add_sample("vethpeer_resync_drift_total", {"kind": kind}, model.drift.get(kind, 0))
    return [
        _gauge("vethpeer_model_generation", "Reports the live model has published.", model.generation),
        _gauge(
            "vethpeer_model_settled",
            "1 when the live model has nothing pending and did not change for half a second.",
            1 if model.settled else 0,
        ),
        _gauge("vethpeer_model_up", "1 while the live model's thread runs.", 1 if model.error is None else 0),
        _counter("vethpeer_resyncs", "Full walks that checked the live model.", model.resyncs),
        _counter(
            "vethpeer_netlink_overflows",
            "Netlink event overflows (ENOBUFS), each a full walk.",
            model.overflows,
        ),
        drift,
    ]


def auth_family(mode: str, counts: Mapping[str, int]) -> Metric:
    """``vethpeer_auth_requests_total{mode, result}``: every result present, 0 until it happens."""
    family = Metric(
        "vethpeer_auth_requests",
        "Requests checked for credentials, by result: allowed, denied (401, 403), error (could not decide).",
        "counter",
    )
    for result in ("allowed", "denied", "error"):
        family.add_sample(
            "vethpeer_auth_requests_total", {"mode": mode, "result": result}, counts.get(result, 0)
        )
    return family


class _Families:
    """A collector that yields fixed families; describe() returns [] so registering costs nothing."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)

    def describe(self) -> list[Metric]:
        return []


@functools.cache
def _process_collector() -> ProcessCollector:
    """One, made when first asked (it reads the boot time when made)."""
    return ProcessCollector(registry=None)


def render(families: Iterable[Metric], accept: str, process: bool = False) -> tuple[bytes, str]:
    """The exposition (text 0.0.4, or OpenMetrics when ``accept`` asks) and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    if process:
        registry.register(_process_collector())
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding value allows gzip (and does not give it q=0)."""
    for item in header.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        if name.lower() in ("gzip", "x-gzip"):
            return not any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params)
    return False
