"""Output formats: JSON (the public contract), a plain table for pipes, a rich one for people.

The JSON schema is documented in docs/json.md. Fields may be added, never
removed or renamed, without bumping SCHEMA_VERSION.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from . import __version__
from .model import End, Namespace, NsKey, Relation, Report, Row, SourceState, Workload, WorkloadKind

SCHEMA_VERSION = 1


# ---------------------------------------------------------------- JSON


def workload_json(w: Workload) -> dict[str, Any]:
    return {
        "kind": w.kind.value,
        "name": w.name,
        "id": w.id,
        "label": w.label,
        "namespace": w.namespace,
        "uid": w.uid,
        "image": w.image,
        "networks": list(w.networks),
        "containers": list(w.containers),
        "source": w.source,
        "container_ids": list(w.container_ids),
        "node": w.node,
        "pod_ip": w.pod_ip,
        "owner": w.owner,
    }


def netns_json(ns: Namespace) -> dict[str, Any]:
    return {
        "inode": ns.key.ino,
        "dev": ns.key.dev,
        "names": list(ns.netns_names),
        "mounts": list(ns.mounts),
        "pids": list(ns.pids[:1]),  # the lowest; all of them would bloat the host entry
        "is_host": ns.is_host,
    }


_Memo = dict[int, dict[str, Any]]


def _end_json(end: End, memo: _Memo | None = None) -> dict[str, Any]:
    """One end; with ``memo``, the workload and netns objects are built once per report
    (the host's appear on a thousand rows). The encoder writes shared dicts like any other."""
    link = end.link
    if memo is None:
        workload, netns = workload_json(end.workload), netns_json(end.ns)
    else:
        workload = memo.get(id(end.workload)) or memo.setdefault(
            id(end.workload), workload_json(end.workload)
        )
        netns = memo.get(id(end.ns)) or memo.setdefault(id(end.ns), netns_json(end.ns))
    return {
        "workload": workload,
        "netns": netns,
        "ifname": link.name,
        "ifindex": link.index,
        "kind": link.kind,
        "mac": link.mac,
        "mtu": link.mtu,
        "state": link.operstate,
        "addresses": list(link.addresses),
        "master": end.master,
    }


def row_json(row: Row, memo: _Memo | None = None) -> dict[str, Any]:
    entry = _end_json(row.end, memo)
    entry["peer"] = None
    if row.peer is not None and row.relation is not None:
        entry["peer"] = {"relation": row.relation.value, **_end_json(row.peer, memo)}
    entry["unresolved_peer"] = None
    if row.unresolved is not None:
        entry["unresolved_peer"] = {
            "link_netnsid": row.end.link.link_netnsid,
            "link_ifindex": row.end.link.link,
            "reason": row.unresolved,
        }
    return entry


def report_json(report: Report, rows: Sequence[Row] | None = None) -> dict[str, Any]:
    snap = report.snapshot
    workloads = [
        {"netns": {"inode": key.ino, "dev": key.dev}, "workload": workload_json(w), "host_network": False}
        for key, found in sorted(report.workloads.items())
        for w in found
    ]
    workloads += [
        {
            "netns": {"inode": snap.host.ino, "dev": snap.host.dev},
            "workload": workload_json(w),
            "host_network": True,
        }
        for w in report.host_network
    ]
    return {
        **header(report),
        "host_netns": {"inode": snap.host.ino, "dev": snap.host.dev, "found_via": snap.host_found_via},
        "namespaces": {
            "read": sum(1 for v in snap.views if not v.error),
            "unreadable": [{"inode": v.ns.key.ino, "reason": v.error} for v in snap.views if v.error],
            "unreadable_pids": snap.unreadable_pids,
            "vanished_pids": snap.vanished_pids,
        },
        "interfaces": _with_fdb(report, report.rows if rows is None else rows),
        "workloads": workloads,
    }


def _with_fdb(report: Report, rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Interface entries plus "fdb": the bridge MAC table's verdict (null: no Linux bridge, or not read)."""
    from .fdb import classify, row_key

    verdicts = classify(report, rows)
    entries = []
    memo: _Memo = {}
    for row in rows:
        entry = row_json(row, memo)
        verdict = verdicts.get(row_key(row))
        entry["fdb"] = verdict.as_json() if verdict is not None else None
        entries.append(entry)
    return entries


def header(report: Report) -> dict[str, Any]:
    """What every JSON document of vethpeer starts with (`table`, `which`, `doctor`)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "vethpeer_version": __version__,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources": [{"name": s.name, "status": s.state.value, "detail": s.detail} for s in report.sources],
    }


def dumps(document: dict[str, Any], out: TextIO) -> str:
    """Indented for people on a terminal; compact (and C-encoded, much faster) for programs."""
    if out.isatty():
        return json.dumps(document, indent=2)
    return json.dumps(document, separators=(",", ":"))


def write_json(report: Report, out: TextIO, rows: Sequence[Row] | None = None) -> None:
    out.write(dumps(report_json(report, rows), out) + "\n")


# ---------------------------------------------------------------- tables


def _addresses(end: End) -> str:
    return ",".join(a for a in end.link.addresses if not a.startswith("fe80:")) or "-"


def _peer_cell(row: Row) -> str:
    if row.peer is not None:
        suffix = "" if row.relation is Relation.VETH else " (parent)"
        return row.peer.link.name + suffix
    if row.unresolved is not None:
        return "?"
    return "-"


def _bridge(row: Row) -> str:
    if row.peer is not None and row.peer.master:
        return row.peer.master
    return row.end.master or "-"


def _state(row: Row) -> str:
    if row.peer is None:
        return row.end.link.operstate
    return f"{row.end.link.operstate}/{row.peer.link.operstate}"


def _workload_cell(w: Workload) -> str:
    if w.kind is WorkloadKind.POD:
        return w.name if w.namespace else w.label  # known only from its cgroup: pod/<uid>
    if w.kind is WorkloadKind.DOCKER:
        return f"docker/{w.name}"
    return w.label


def columns(report: Report, rows: Sequence[Row], wide: bool) -> tuple[list[str], list[list[str]]]:
    pods = any(r.end.workload.kind is WorkloadKind.POD for r in rows)
    only_pods = pods and all(r.end.workload.kind is WorkloadKind.POD for r in rows)
    header = (["NAMESPACE", "POD" if only_pods else "WORKLOAD"] if pods else ["WORKLOAD"]) + [
        "IF",
        "MAC",
        "ADDRESSES",
        "PEER",
        "PEER NETNS",
        "BRIDGE",
        "STATE",
    ]
    if wide:
        header += ["IFINDEX", "PEER IFINDEX", "MTU", "KIND", "NETNS", "FDB"]
    from .fdb import classify, row_key

    verdicts = classify(report, rows) if wide else {}
    table = []
    for row in rows:
        w = row.end.workload
        cells = ([w.namespace or "-"] if pods else []) + [
            _workload_cell(w),
            row.end.link.name,
            row.end.link.mac or "-",
            _addresses(row.end),
            _peer_cell(row),
            row.peer.workload.label if row.peer is not None else "-",
            _bridge(row),
            _state(row),
        ]
        if wide:
            peer = row.peer.link if row.peer is not None else None
            cells += [
                str(row.end.link.index),
                str(peer.index) if peer else (str(row.end.link.link) if row.end.link.link else "-"),
                str(row.end.link.mtu) + (f"/{peer.mtu}" if peer and peer.mtu != row.end.link.mtu else ""),
                (row.end.link.kind or "-")
                + (f"/{peer.kind}" if peer and peer.kind != row.end.link.kind else ""),
                str(row.end.ns.key.ino),
                verdicts[row_key(row)].cell if row_key(row) in verdicts else "-",
            ]
        table.append(cells)
    return header, table


def notes(report: Report, rows: Sequence[Row], host_network: Sequence[Workload] | None = None) -> list[str]:
    """Lines under the table: host-network workloads (all, or those given), unresolved peers."""
    lines = []
    shared = report.host_network if host_network is None else host_network
    if shared:
        names = ", ".join(w.label for w in shared)
        lines.append(f"sharing the host network namespace (no veth of their own): {names}")
    for row in rows:
        if row.unresolved:
            lines.append(f"{row.end.workload.label} {row.end.link.name}: peer unresolved: {row.unresolved}")
    return lines


def evidence(report: Report, rows: Sequence[Row]) -> list[str]:
    """For `which`: what the bridge's MAC table says about each row (independent of ifindex/iflink)."""
    from .fdb import classify, row_key

    verdicts = classify(report, rows)
    return [
        f"fdb: {row.end.workload.label} {row.end.link.name}: {verdicts[row_key(row)].evidence()}"
        for row in rows
        if row_key(row) in verdicts
    ]


def warnings(report: Report) -> list[str]:
    """For stderr: sources that were expected to answer and did not."""
    return [
        f"warning: {s.name}: {s.state.value}: {s.detail}"
        for s in report.sources
        if s.state in (SourceState.TIMEOUT, SourceState.ERROR)
    ]


def use_color(out: TextIO) -> bool:
    return out.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def write_table(
    report: Report,
    out: TextIO,
    rows: Sequence[Row] | None = None,
    *,
    wide: bool = False,
    host_network: Sequence[Workload] | None = None,  # None: all of report.host_network
) -> None:
    shown = report.rows if rows is None else rows
    header, table = columns(report, shown, wide)
    if not table:
        out.write("no interfaces found in any workload namespace\n")
    elif out.isatty():
        _rich_table(header, table, out, color=use_color(out))
    else:
        widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
        for cells in [header, *table]:
            out.write("   ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip() + "\n")
    for line in notes(report, shown, host_network):
        out.write(line + "\n")


def _rich_table(header: list[str], table: list[list[str]], out: TextIO, *, color: bool) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # Never shorten a name to fit the terminal ("veth1a…" is no answer): the table is as
    # wide as its content needs, and a narrow terminal wraps lines, as with kubectl.
    natural = sum(max(len(h), *(len(r[i]) for r in table)) + 3 for i, h in enumerate(header))
    console = Console(file=out, no_color=not color, highlight=False, soft_wrap=False)
    console.width = max(console.width, natural)
    t = Table(box=box.SIMPLE_HEAD, header_style="bold" if color else "", pad_edge=False)
    for name in header:
        t.add_column(name, no_wrap=True)
    for cells in table:
        t.add_row(*cells)
    console.print(t)


def host_veths(rows: Sequence[Row], host: NsKey) -> list[str]:
    """The host-side veth names of rows, once each, in order (for `which -q`)."""
    names: list[str] = []
    for row in rows:
        if row.peer is not None and row.relation is Relation.VETH and row.peer.ns.key == host:
            name = row.peer.link.name
        elif row.end.ns.key == host:
            name = row.end.link.name
        else:
            continue
        if name not in names:
            names.append(name)
    return names
