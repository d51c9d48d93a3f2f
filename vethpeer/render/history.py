"""Bindings from the journal as text and JSON (`history`, `which --at`, a gone `which`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from .. import __version__
from ..environment import Environment
from ..journal.binding import Recorded
from ..journal.times import rfc3339
from . import json as jsonrender
from .tables import write_columns

SCHEMA_VERSION = 1


def binding_json(r: Recorded) -> dict[str, Any]:
    b = r.binding
    host = None
    if b.host_name is not None:
        host = {
            "name": b.host_name,
            "ifindex": b.host_ifindex,
            "mac": b.host_mac,
            "netns_inode": b.host_netns,
            "bridge": b.bridge,
        }
    return {
        "workload": {
            "kind": b.kind,
            "name": b.name,
            "label": b.label,
            "id": b.workload_id,
            "namespace": b.kube_namespace,
            "uid": b.pod_uid,
            "containers": list(b.containers),
            "container_ids": list(b.container_ids),
        },
        "interface": {
            "name": b.inner_name,
            "ifindex": b.inner_ifindex,
            "mac": b.inner_mac,
            "addresses": list(b.addresses),
        },
        "netns_inode": b.netns,
        "host_side": host,
        "first_seen": rfc3339(r.first_seen),
        "last_seen": rfc3339(r.last_seen),
        "gone": None if r.gone is None else rfc3339(r.gone),
    }


def document(
    kind: str, target: str, records: Sequence[Recorded], journal: str, **extra: Any
) -> dict[str, Any]:
    """``{"schema_version": 1, "kind": "history"|"which-at"|"which-past", ...}``; see docs/json.md."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "vethpeer_version": __version__,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "target": target,
        "journal": journal,
        **extra,
        "bindings": [binding_json(r) for r in records],
    }


HEADER = ("FIRST SEEN", "GONE", "WORKLOAD", "INTERFACE", "HOST SIDE", "BRIDGE", "ADDRESSES")


def _cells(r: Recorded) -> list[str]:
    b = r.binding
    gone = rfc3339(r.gone) if r.gone is not None else f"(bound; last seen {rfc3339(r.last_seen)})"
    cells = [b.label, b.inner_name, b.host_name or "-", b.bridge or "-", ",".join(b.addresses) or "-"]
    return [rfc3339(r.first_seen), gone, *cells]  # write_columns shows each cell safely


def write_table(records: Sequence[Recorded], env: Environment) -> None:
    write_columns(HEADER, [_cells(r) for r in records], env)


def write(document_: dict[str, Any], records: Sequence[Recorded], env: Environment, as_json: bool) -> None:
    if as_json:
        jsonrender.write(document_, env)
    else:
        write_table(records, env)
