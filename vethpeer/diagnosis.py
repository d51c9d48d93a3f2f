"""The doctor's diagnosis of a report: select the rows, read what the checks need, run them.

Engine work below every command: `doctor`, `serve` (its findings series and /api/v1/doctor)
and `graph` (findings on the picture) all diagnose through here. The checks themselves are
pure (:mod:`vethpeer.checks`); this module does the reads they need (:mod:`vethpeer.doctor_reads`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import doctor_reads
from .checks import Diagnosis, Facts, link_index, orphan_rows
from .checks import diagnose as run_checks
from .checks import wanted_facts as wanted
from .model import Report, Row
from .targets import resolve, scoped

if TYPE_CHECKING:
    from .live.rates import Sample


def facts_for(
    report: Report, rows: tuple[Row, ...], proc: str = "/proc", samples: tuple[Sample, Sample] | None = None
) -> Facts:
    """Collect what the checks need beyond the report: routes, sysctls, fd holders of orphans."""
    host = report.snapshot.host
    routes, conf = wanted(rows, host)
    namespaces = [view.ns for view in report.snapshot.views if not view.error]
    inside = doctor_reads.read(namespaces, routes=routes, conf=conf, proc=proc)
    orphans = orphan_rows(rows, report)
    nsids = {row.end.link.link_netnsid for row in orphans if row.end.link.link_netnsid is not None}
    # A namespace just deleted is unreachable for a moment (0.05-0.5 s) before the kernel's cleanup
    # removes its veths: not leaked, going away. Asked after the dump that named its nsid.
    dying = doctor_reads.dying(nsids) if nsids else frozenset()
    orphans = tuple(row for row in orphans if row.end.link.link_netnsid not in dying)
    alive = nsids - dying
    holders = doctor_reads.fd_holders(alive, host.dev, proc) if alive else {}
    return Facts(
        rows=rows,
        host=host,
        links=link_index(report),
        inside=inside,
        orphans=orphans,
        holders=holders,
        samples=samples,
    )


def diagnose(
    report: Report,
    target: str | None,
    namespace: str | None,
    proc: str = "/proc",
    samples: tuple[Sample, Sample] | None = None,
) -> Diagnosis:
    """The rows TARGET (or the namespace filter) selects, checked."""
    rows = report.rows
    if target:
        rows = resolve(report, target, namespace=namespace, proc=proc).rows
    elif namespace:
        rows = scoped(report, namespace).rows
    return run_checks(report, facts_for(report, rows, proc, samples))
