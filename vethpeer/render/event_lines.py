"""`vethpeer watch`'s output: one line per event, for people or as JSON Lines.

The JSON Lines schema (docs/live.md) is versioned by ``schema_version`` (WATCH_SCHEMA_VERSION):
fields may be added, never removed or renamed, without bumping it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from ..live.changes import Event
from ..model import End, NsKey
from .safe import shown

WATCH_SCHEMA = "vethpeer.watch"
WATCH_SCHEMA_VERSION = 1


def _netns(key: NsKey, names: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"inode": key.ino, "dev": key.dev, "names": list(names)}


def _end(end: End) -> dict[str, Any]:
    link = end.link
    return {
        "ifname": link.name,
        "ifindex": link.index,
        "kind": link.kind,
        "mac": link.mac,
        "mtu": link.mtu,
        "master": end.master,
    }


def event_json(event: Event, at: datetime) -> dict[str, Any]:
    w = event.workload
    row = event.row
    peer = None
    if row is not None and row.peer is not None:
        peer = {
            "workload": row.peer.workload.label,
            "netns": _netns(row.peer.ns.key, row.peer.ns.netns_names),
            "relation": row.relation.value if row.relation is not None else None,
            **_end(row.peer),
        }
    return {
        "schema": WATCH_SCHEMA,
        "schema_version": WATCH_SCHEMA_VERSION,
        "time": at.isoformat(timespec="milliseconds"),
        "event": event.kind,
        "resync": event.resync,
        "message": event.message,
        "workload": {
            "label": w.label,
            "kind": w.kind.value,
            "name": w.name,
            "id": w.id,
            "namespace": w.namespace,
        },
        "netns": _netns(event.netns, event.names),
        "interface": _end(row.end) if row is not None else None,
        "peer": peer,
        "unresolved": row.unresolved if row is not None else None,  # why peer is null, when it is
        "before": event.before,
        "after": event.after,
    }


def line(event: Event, at: datetime) -> str:
    """``HH:MM:SS.mmm MESSAGE`` (and ``[resync]`` when a full walk found it); the names in
    MESSAGE shown by :func:`.safe.shown`."""
    stamp = at.astimezone().strftime("%H:%M:%S.%f")[:-3]
    return f"{stamp} {shown(event.message)}" + (" [resync]" if event.resync else "")


def write(events: list[Event], as_json: bool, out: Any) -> None:
    """Every event of one wake-up, then a flush: a pipe reader gets each batch at once."""
    at = datetime.now(timezone.utc)
    for event in events:
        text = json.dumps(event_json(event, at), separators=(",", ":")) if as_json else line(event, at)
        out.write(text + "\n")
    out.flush()
