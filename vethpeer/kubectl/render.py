"""The plugin's output: one table with a NODE column merged from the agents' documents, findings,
and a status line per node that did not answer. Pure: documents in, lines out.

An agent's document is untrusted (names from its node, or anything a fake agent sends): every
string from it is shown through :mod:`vethpeer.render.safe`, as the local commands do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..environment import Environment
from ..render import json as jsonrender
from ..render.safe import command_line, shown
from ..render.tables import write_columns
from .fanout import NodeAnswer

SCHEMA_VERSION = 1


def _workload(entry: dict[str, Any]) -> tuple[str, str]:
    w = entry["workload"]
    if w["kind"] == "pod" and w.get("namespace"):
        return w["namespace"], w["name"]
    return "-", w["label"]


def _peer(entry: dict[str, Any]) -> tuple[str, str]:
    peer = entry.get("peer")
    if peer is None:
        return ("?" if entry.get("unresolved_peer") else "-"), "-"
    suffix = "" if peer["relation"] == "veth" else " (parent)"
    return peer["ifname"] + suffix, peer.get("master") or entry.get("master") or "-"


def table_rows(answers: Sequence[NodeAnswer], wide: bool) -> tuple[list[str], list[list[str]]]:
    header = ["NODE", "NAMESPACE", "WORKLOAD", "IF", "PEER", "BRIDGE", "STATE"]
    if wide:
        header += ["ADDRESSES", "MAC", "MTU", "NETNS"]
    rows = []
    for answer in answers:
        for entry in (answer.document or {}).get("interfaces", []) if answer.status == "ok" else []:
            namespace, name = _workload(entry)
            peer, bridge = _peer(entry)
            state = entry["state"] + (f"/{entry['peer']['state']}" if entry.get("peer") else "")
            cells = [answer.node, namespace, name, entry["ifname"], peer, bridge, state]
            if wide:
                addresses = (
                    ",".join(a for a in entry.get("addresses", []) if not a.startswith("fe80:")) or "-"
                )
                cells += [
                    addresses,
                    entry.get("mac") or "-",
                    str(entry.get("mtu") or "-"),
                    str(entry["netns"]["inode"]),
                ]
            rows.append(cells)
    return header, rows


def status_lines(answers: Sequence[NodeAnswer]) -> list[str]:
    return [f"node {a.node}: {a.status}: {a.detail}" for a in answers if a.status != "ok"]


def cluster_document(kind: str, answers: Sequence[NodeAnswer]) -> dict[str, Any]:
    """The plugin's own JSON for many nodes: each node's status and the agent's document as served."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "nodes": [
            {"node": a.node, "status": a.status, "detail": a.detail, "document": a.document} for a in answers
        ],
    }


def write_table(answers: Sequence[NodeAnswer], env: Environment, *, wide: bool) -> None:
    header, rows = table_rows(answers, wide)
    if rows:
        write_columns(header, rows, env)
    elif not status_lines(answers):
        env.stdout.write("no workload interfaces found\n")
    for line in status_lines(answers):
        env.warn(line)


def write_findings(answers: Sequence[NodeAnswer], env: Environment, *, show_info: bool = False) -> None:
    out = env.stdout
    for answer in answers:
        if answer.status != "ok" or answer.document is None:
            continue
        document = answer.document
        for f in document.get("findings", []):
            if f["severity"] == "info" and not show_info:
                continue
            where = f["interface"]
            subject = f"{where['workload']} {where['ifname']}"
            if f.get("peer"):
                subject += f" <-> {f['peer']['ifname']}"
            head = f"{str(f['severity']).upper():8} {f['check']}  {answer.node}  {subject}"
            out.write(f"{shown(head)}\n    {shown(str(f['message']))}\n")
            for line in f.get("evidence", []):
                out.write(f"    evidence: {shown(str(line))}\n")
            for line in f.get("fix", []):
                out.write(f"    fix:      {command_line(str(line))}  (on node {shown(answer.node)})\n")
            out.write("\n")
        out.write(shown(f"{answer.node}: {document.get('summary', '')}") + "\n")
    for line in status_lines(answers):
        env.warn(line)


def write_json(document: dict[str, Any], env: Environment) -> None:
    jsonrender.write(document, env)
