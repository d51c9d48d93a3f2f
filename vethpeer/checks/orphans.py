"""Host veths whose peer lives in a namespace that nothing uses any more."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..model import Report, Row
from ..shell import ip_in, show_link
from .base import Facts, Finding, Severity, check


def orphan_rows(rows: Iterable[Row], report: Report) -> tuple[Row, ...]:
    """Host veths whose peer's namespace discovery could not place: found neither through a
    process nor through a bind mount, and not known to the host by a resolved nsid."""
    host = report.snapshot.host
    host_view = next((v for v in report.snapshot.views if v.ns.key == host), None)
    known = host_view.nsids if host_view is not None else {}
    return tuple(
        row
        for row in rows
        if row.end.ns.key == host
        and row.end.link.kind in ("veth", "netkit")
        and row.unresolved is not None
        and row.end.link.link_netnsid is not None
        and row.end.link.link_netnsid not in known
    )


@check("orphaned-veth")
def orphans(report: Report, facts: Facts) -> Iterator[Finding]:
    """A host veth whose peer's namespace no process and no bind mount holds (leaked by a runtime).

    Discovery finds namespaces through processes and bind mounts; a peer namespace
    found by neither, yet alive, is held by something else (an fd, a kernel
    reference): nobody will ever use it, and the veth leaks with it.
    """
    host = facts.host
    unreadable = sum(1 for v in report.snapshot.views if v.error)
    for row in facts.orphans:
        end, link = row.end, row.end.link
        evidence = [
            f"{link.name}: peer ifindex {link.link} in the namespace the host calls nsid {link.link_netnsid}",
            "no process is in that namespace and no nsfs bind mount (ip netns, runtime) refers to it",
        ]
        held = list(facts.holders.get(link.link_netnsid, ())) if link.link_netnsid is not None else []
        if held:
            evidence.append("kept alive only by an open file descriptor: " + "; ".join(map(str, held)))
        if unreadable:
            evidence.append(f"({unreadable} namespaces could not be read: it may be one of those)")
        yield Finding(
            "orphaned-veth",
            Severity.WARNING,
            end,
            f"{link.name}'s peer lives in a namespace that nothing uses any more (leaked by a runtime?)",
            evidence=tuple(evidence),
            confirm=(show_link(end, host), "ip netns list-id", "lsns -t net"),
            fix=(ip_in(end, host, "link", "del", "dev", link.name),),
        )
