"""/metrics as served: the walk's part put together from lines cached per host device, and the
exporter's health rendered for each request.

prometheus_client formats every line. What it costs to format them all is what a new report
must not cost: at N=1000 the walk's part is 9,000 samples, 70-110 ms to render, and under churn
`serve --live` publishes a new report several times a second. So each host device's lines (its
info sample and its eight counter samples) are kept, keyed by what they are made of (the labels
and the counter values), and a new report has the library render only the devices whose key is
new, all in one call. The page is then the library's own order rebuilt from the pieces: per family
its HELP and TYPE lines, then one sample per device. tests/unit/test_serve_page.py checks it
against the library's render of the whole page, byte for byte.
"""

from __future__ import annotations

import gzip
import threading
from operator import attrgetter

from ..checks import Finding
from ..model import End, Link, LinkStats, NsKey, Report
from .engine import Observation
from .metrics import (
    COUNTERS,
    Device,
    Health,
    Labels,
    LabelSet,
    device_families,
    finding_family,
    finding_series,
    findings,
    health_families,
    host_side_rows,
    interface_labels,
    render,
)

EOF_LINE = b"# EOF\n"
FORMATS = 4  # exposition formats kept at once (a client may ask for any OpenMetrics version)

Key = tuple[tuple[tuple[str, str], ...], tuple[int, ...] | None]  # labels, counter values
Lines = tuple[bytes, tuple[bytes, ...]]  # a device's info sample, its counter samples (8, or none)


def _key(device: Device) -> Key:
    labels, stats = device
    return tuple(labels.items()), _values(stats)


_COUNTED = attrgetter(*(field for _part, field, _doc in COUNTERS))


def _values(stats: LinkStats | None) -> tuple[int, ...] | None:
    return None if stats is None else _COUNTED(stats)


def sections(body: bytes) -> list[tuple[bytes, list[bytes]]]:
    """A rendered page cut into its families: (the header lines, the sample lines). Label values
    and HELP texts are escaped (a newline is ``\\n``), so a line is a line, and a sample line
    never starts with ``#``."""
    found: list[tuple[bytes, list[bytes]]] = []
    for line in body.removesuffix(EOF_LINE).split(b"\n")[:-1]:
        if line.startswith(b"# HELP "):
            found.append((line + b"\n", []))
        elif line.startswith(b"#") and found and not found[-1][1]:
            found[-1] = (found[-1][0] + line + b"\n", [])
        elif found:
            found[-1][1].append(line + b"\n")
        else:
            raise ValueError("a sample before any family")
    return found


class DeviceLines:
    """The walk's part of the page in one exposition format, kept device by device."""

    def __init__(self, accept: str) -> None:
        self._accept = accept
        empty = render([*device_families([]), finding_family([])], accept)[0]
        *self._headers, self._finding_header = [header for header, _samples in sections(empty)]
        self._lines: dict[Key, Lines] = {}
        # by id() of a row's workload End: what its device's key and series were made of, and them
        self._kept: dict[int, tuple[End, Link, str | None, tuple[Key, Device]]] = {}
        self._findings: dict[LabelSet, bytes] = {}  # a finding's line by its labels
        # by id(): the same findings come back with each report until the checks run again
        self._series: dict[int, tuple[Finding, NsKey, tuple[Labels, LabelSet]]] = {}

    def page(self, observation: Observation) -> bytes:
        """The walk's part of the page (no ``# EOF``): what the library renders for
        :func:`~.metrics.interface_families`."""
        found = self._devices(observation.report)
        keys = [key for key, _device in found]
        known, new = self._lines, {}
        for key, device in found:
            if key not in known and key not in new:
                new[key] = device
        if new:
            known = {**known, **self._render_lines(list(new.items()))}
        self._lines = lines = {key: known[key] for key in keys}  # only this report's devices are kept
        rows = [lines[key] for key in keys]
        parts = [self._headers[0], *(info for info, _counters in rows)]
        columns = list(zip(*(counters for _info, counters in rows if counters), strict=True))  # by family
        for header, column in zip(self._headers[1:], columns or [()] * len(COUNTERS), strict=True):
            parts.append(header)
            parts.extend(column)
        parts.append(self._finding_lines(observation))
        return b"".join(parts)

    def _devices(self, report: Report) -> list[tuple[Key, Device]]:
        """:func:`~.metrics.devices` with their keys, each made again only for a row whose
        workload side is another End object, or whose host device is another Link or on another
        bridge: what its labels and counters are made of. The live model's Correlator keeps a
        row's Ends from report to report, the host's End new whenever the host's Namespace is."""
        kept, seen = self._kept, {}
        found = []
        for row in host_side_rows(report):
            end, peer = row.end, row.peer
            assert peer is not None
            known = kept.get(id(end))
            if known is None or known[0] is not end or known[1] is not peer.link or known[2] != peer.master:
                device = (interface_labels(row), end.link.stats)
                known = end, peer.link, peer.master, (_key(device), device)
            seen[id(end)] = known
            found.append(known[3])
        self._kept = seen
        return found

    def _render(self, found: list[Device]) -> bytes:
        return render(device_families(found), self._accept)[0]

    def _render_lines(self, new: list[tuple[Key, Device]]) -> dict[Key, Lines]:
        """The new devices' lines, from one render of their families."""
        families = sections(self._render([device for _key, device in new]))
        infos = families[0][1]
        counters = [samples for _header, samples in families[1:]]
        with_counters = sum(1 for _key, (_labels, stats) in new if stats is not None)
        if len(infos) != len(new) or any(len(samples) != with_counters for samples in counters):
            raise ValueError("the library rendered another number of samples than asked for")
        lines: dict[Key, Lines] = {}
        counted = 0
        for (key, (_labels, stats)), info in zip(new, infos, strict=True):
            if stats is None:
                lines[key] = (info, ())
            else:
                lines[key] = (info, tuple(samples[counted] for samples in counters))
                counted += 1
        return lines

    def _finding_lines(self, observation: Observation) -> bytes:
        """The finding family, its lines kept like the devices' (a failing host can have a finding
        for every veth)."""
        kept, seen = self._series, {}

        def series(finding: Finding, host: NsKey) -> tuple[Labels, LabelSet]:
            known = kept.get(id(finding))
            if known is None or known[0] is not finding or known[1] != host:
                known = finding, host, finding_series(finding, host)
            seen[id(finding)] = known
            return known[2]

        found = findings(observation, series)
        self._series = seen
        lines = self._findings
        new = [(labels, key) for labels, key in found if key not in lines]
        if new:
            (_header, rendered), *_rest = sections(render([finding_family(new)], self._accept)[0])
            lines = {**lines, **dict(zip((key for _labels, key in new), rendered, strict=True))}
        self._findings = {key: lines[key] for _labels, key in found}
        return b"".join([self._finding_header, *self._findings.values()])


class MetricsPage:
    """/metrics: the walk's part built (and gzipped) once per walk and format, from the lines
    :class:`DeviceLines` keeps; the health part every request. Gzip members concatenate into one
    valid gzip stream (RFC 1952), which is what Prometheus' reader and Python's gzip read."""

    def __init__(self) -> None:
        self._walk: tuple[int, bool] | None = None
        self._bodies: dict[tuple[str, bool], bytes] = {}
        self._formats: dict[str, DeviceLines] = {}
        self._lock = threading.Lock()  # a storm right after a walk builds it once, not once per request

    def build(self, health: Health, accept: str, compress: bool = False) -> tuple[bytes, str]:
        dynamic, content_type = render(health_families(health), accept, process=True)
        if compress:
            dynamic = gzip.compress(dynamic, compresslevel=1, mtime=0)
        walk = health.answer.walk
        if walk is None:
            return dynamic, content_type
        with self._lock:
            if self._walk != (walk.number, walk.complete):
                self._walk, self._bodies = (walk.number, walk.complete), {}
            body = self._bodies.get((content_type, compress))
            if body is None:
                body = self._bodies.get((content_type, False))
                if body is None:
                    body = self._lines(content_type, accept).page(walk.value)
                    self._bodies[(content_type, False)] = body
                if compress:
                    body = gzip.compress(body, compresslevel=1, mtime=0)
                    self._bodies[(content_type, True)] = body
        return body + dynamic, content_type

    def _lines(self, content_type: str, accept: str) -> DeviceLines:
        """The lines kept for this format (the content type names the encoder: format, version,
        escaping); the least recently made one goes when a fifth is asked for."""
        lines = self._formats.get(content_type)
        if lines is None:
            if len(self._formats) >= FORMATS:
                del self._formats[next(iter(self._formats))]
            lines = self._formats[content_type] = DeviceLines(accept)
        return lines
