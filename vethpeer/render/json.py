"""The JSON documents (the public contract) and the one writer every command uses.

The schema is documented in docs/json.md. Fields may be added, never removed or
renamed, without bumping SCHEMA_VERSION. One pipe policy for every command:
indented for people on a terminal, compact (and C-encoded, much faster) for programs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .. import __version__
from ..environment import Environment
from ..model import End, Namespace, Report, Row, Workload

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
        workload = _shared_workload(end.workload, memo)
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


def _shared_workload(w: Workload, memo: _Memo) -> dict[str, Any]:
    """``w``'s JSON object, built once per report: the rows and the workloads list share it."""
    return memo.get(id(w)) or memo.setdefault(id(w), workload_json(w))


def row_json(row: Row, memo: _Memo | None = None) -> dict[str, Any]:
    entry = _end_json(row.end, memo)
    entry["peer"] = None
    if row.peer is not None and row.relation is not None:
        entry["peer"] = {"relation": row.relation.value, **_end_json(row.peer, memo)}
    entry["relation"] = row.relation.value if row.relation is not None else None
    entry["unresolved_peer"] = None
    if row.unresolved is not None:
        entry["unresolved_peer"] = {
            "link_netnsid": row.end.link.link_netnsid,
            "link_ifindex": row.end.link.link,
            "reason": row.unresolved,
        }
    return entry


def report_json(
    report: Report, rows: Sequence[Row] | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """The `table` / `which` document; ``namespace`` keeps only that Kubernetes namespace's workloads."""
    snap = report.snapshot

    def wanted(w: Workload) -> bool:
        return namespace is None or w.namespace == namespace

    memo: _Memo = {}  # the workload objects of the rows and of the workloads list, built once
    workloads = [
        {
            "netns": {"inode": key.ino, "dev": key.dev},
            "workload": _shared_workload(w, memo),
            "host_network": False,
        }
        for key, found in sorted(report.workloads.items())
        for w in found
        if wanted(w)
    ]
    workloads += [
        {
            "netns": {"inode": snap.host.ino, "dev": snap.host.dev},
            "workload": _shared_workload(w, memo),
            "host_network": True,
        }
        for w in report.host_network
        if wanted(w)
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
        "interfaces": _with_fdb(report, report.rows if rows is None else rows, memo),
        "workloads": workloads,
    }


def _with_fdb(report: Report, rows: Sequence[Row], memo: _Memo) -> list[dict[str, Any]]:
    """Interface entries plus "fdb": the bridge MAC table's verdict (null: no Linux bridge, or not read)."""
    from ..fdb import classify, row_key

    verdicts = classify(report, rows)
    entries = []
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
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),  # no datetime import
        "sources": [{"name": s.name, "status": s.state.value, "detail": s.detail} for s in report.sources],
    }


def dumps(document: Mapping[str, Any], pretty: bool) -> str:
    # Documents are trees built here (shared dicts, never cycles): the encoder's cycle check
    # (an id() set entry per container, ~15% of a big table's encoding) is skipped.
    if pretty:
        return json.dumps(document, indent=2, check_circular=False)
    return json.dumps(document, separators=(",", ":"), check_circular=False)


def write(document: Mapping[str, Any], env: Environment) -> None:
    """The one JSON writer: indented on a terminal, compact on a pipe."""
    env.stdout.write(dumps(document, env.stdout_isatty) + "\n")
