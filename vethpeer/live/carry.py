"""What a round of the :class:`~vethpeer.live.walker.Walker` carries over from the last one: pure.

* :func:`remember`: names — a namespace still there keeps a better name it had;
* :func:`restat`: rows — a round that read only counters keeps the rows, with the new links.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ..collect import Naming
from ..model import Claim, End, NsKey, Report, Row, Snapshot, SourceResult


def _best(results: Iterable[SourceResult]) -> dict[NsKey, Claim]:
    best: dict[NsKey, Claim] = {}
    for result in results:
        for claim in result.claims:
            if claim.netns not in best or claim.priority > best[claim.netns].priority:
                best[claim.netns] = claim
    return best


def remember(old: Naming, new: Naming, alive: Collection[NsKey]) -> Naming:
    """The new naming, but a namespace that is still there keeps a better name it had.

    A stopped container's namespace lingers a moment (its sandbox is torn down after the
    runtime stops listing it): it is still that container, not ``pid/42 (docker-init)``.
    The kept claims go back to the result of the source that made them.
    """
    before, now = _best(old.results), _best(new.results)
    kept = [
        claim
        for key, claim in before.items()
        if key in alive and (key not in now or now[key].priority < claim.priority)
    ]
    if not kept:
        return new
    names = {result.status.name for result in new.results}
    results = []
    for i, result in enumerate(new.results):
        mine = tuple(
            c
            for c in kept
            if c.workload.source == result.status.name or (i == 0 and c.workload.source not in names)
        )
        results.append(result._replace(claims=result.claims + mine) if mine else result)
    return Naming(tuple(results), new.ovs)


def restat(report: Report, snap: Snapshot) -> Report:
    """``report``'s rows with the links of ``snap`` — same namespaces, same links, new counters.

    A counters-only round changes nothing the correlator looks at: re-joining would give the
    same rows, so only each end's Link (its ``stats``) is swapped, at a tenth of the cost.
    """
    links = {(view.ns.key, link.index): link for view in snap.views for link in view.links}
    namespaces = {view.ns.key: view.ns for view in snap.views}

    def fresh(end: End) -> End:
        key = (end.ns.key, end.link.index)
        return End(namespaces.get(end.ns.key, end.ns), end.workload, links.get(key, end.link), end.master)

    rows = tuple(
        Row(fresh(row.end), row.relation, fresh(row.peer) if row.peer is not None else None, row.unresolved)
        for row in report.rows
    )
    return report._replace(rows=rows, snapshot=snap)
