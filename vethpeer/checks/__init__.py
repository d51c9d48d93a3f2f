"""`vethpeer doctor`'s checks: pure functions over the report and the facts read for them.

Each finding carries its severity, the evidence, the commands that confirm it by hand
and the commands that would fix it; vethpeer never runs a fix. Severities: ``error``
(traffic is certainly broken), ``warning`` (broken or about to be, for the usual
setups), ``info`` (worth knowing, often benign: a quiet workload whose MAC has aged
out of the bridge). The checks live in :mod:`.pairs`, :mod:`.bridges`, :mod:`.routes`,
:mod:`.orphans` and :mod:`.counters` (two samples: `doctor --sample`), each registered
with the finding ids it produces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..model import NsKey, Report, Row
from . import bridges, counters, orphans, routes  # noqa: F401  (registers the checks)
from . import pairs as pair_checks  # noqa: F401
from .base import CHECKS, Facts, Finding, Severity, all_ids, ends, link_index, pairs
from .orphans import orphan_rows
from .routes import route_families

__all__ = ["Diagnosis", "Facts", "Finding", "Severity", "all_ids", "diagnose", "link_index", "orphan_rows"]


@dataclass(frozen=True, slots=True)
class Diagnosis:
    findings: tuple[Finding, ...]
    interfaces: int  # how many interfaces were checked
    namespaces: int
    skipped: tuple[str, ...] = field(default=())  # namespaces whose extra facts could not be read

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)


def wanted_facts(rows: Sequence[Row], host: NsKey) -> tuple[dict[NsKey, int], dict[NsKey, list[str]]]:
    """Which namespaces need their default routes, of which family (workloads with an address up),
    and which need sysctls (same-namespace pairs)."""
    routes_of = route_families(rows, host)
    conf: dict[NsKey, list[str]] = {}
    for row in pairs(rows):
        assert row.peer is not None
        if row.peer.ns.key == row.end.ns.key:
            conf.setdefault(row.end.ns.key, []).extend([row.end.link.name, row.peer.link.name])
    return routes_of, conf


def diagnose(report: Report, facts: Facts) -> Diagnosis:
    """Every registered check over ``facts.rows``, errors first."""
    findings = [finding for registered in CHECKS for finding in registered.run(report, facts)]
    findings.sort(key=lambda f: (-f.severity.rank, f.end.workload.label, f.end.link.name, f.check))
    skipped = tuple(f"netns {key.ino}: {f.error}" for key, f in facts.inside.items() if f.error)
    return Diagnosis(
        tuple(findings),
        interfaces=len(ends(facts.rows)),
        namespaces=len({row.end.ns.key for row in facts.rows}),
        skipped=skipped,
    )
