"""Asking the journal: a target's history, its binding at a moment. Pure over a :class:`Store`.

A target is what ``which`` takes: a veth name, a MAC, an IP, a container or pod name or ID (or a
unique ID prefix), ``NS/NAME``, ``pod/NAME``. Names come back (a host interface name, an IP
after its pod is gone): the time picks the binding, and two different workloads bound at the
same moment is an ambiguity, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import Ambiguous, NotFound
from . import DEFAULT_TOLERANCE
from .binding import Recorded, normal_ip, normal_mac
from .store import Store

_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")
_ID_PREFIX = re.compile(r"^[0-9a-f]{3,64}$")


def keys_for(target: str) -> tuple[list[str], str | None]:
    """(exact keys to look up, an ID prefix to try when those find nothing)."""
    if _MAC.match(target):
        return [normal_mac(target)], None
    ip = normal_ip(target) if ("." in target or ":" in target) else None
    if ip is not None:
        return [ip], None
    keys = [target, target.removeprefix("pod/")]
    return keys, target if _ID_PREFIX.match(target) else None


def _lookup(store: Store, target: str, namespace: str | None) -> list[Recorded]:
    """The target's bindings; with ``namespace`` (``-n NS``), only those of Kubernetes namespace NS."""
    keys, prefix = keys_for(target)
    found = store.find(keys)
    if not found and prefix is not None:
        found = [r for r in store.find((), prefix) if _has_id_prefix(r, prefix)]
    if namespace is not None:
        found = [r for r in found if r.binding.kube_namespace == namespace]
    return found


def _has_id_prefix(r: Recorded, prefix: str) -> bool:
    b = r.binding
    return any(i.startswith(prefix) for i in (b.workload_id or "", *b.container_ids) if i)


def _until(r: Recorded) -> float:
    return r.gone if r.gone is not None else r.last_seen


def history(
    store: Store,
    target: str,
    since: float | None = None,
    until: float | None = None,
    namespace: str | None = None,
) -> list[Recorded]:
    """Every binding the target had whose lifetime overlaps [since, until], newest first; with
    ``namespace`` (``-n NS``), only bindings of Kubernetes namespace NS."""
    with store.snapshot():
        found = _lookup(store, target, namespace)
    if since is not None:
        found = [r for r in found if _until(r) >= since]
    if until is not None:
        found = [r for r in found if r.first_seen <= until]
    return sorted(found, key=lambda r: (r.first_seen, r.id), reverse=True)


def at(
    store: Store,
    target: str,
    moment: float,
    tolerance: float = DEFAULT_TOLERANCE,
    namespace: str | None = None,
) -> list[Recorded]:
    """The bindings of one workload the target named at ``moment``.

    Bindings alive at the moment win; failing those, the ones within ``tolerance`` of it, the
    closest first. Empty: nothing then. Two workloads at once: :class:`Ambiguous`.
    """
    with store.snapshot():
        found = _lookup(store, target, namespace)
    return pick(found, moment, tolerance, target)


def pick(found: Sequence[Recorded], moment: float, tolerance: float, target: str) -> list[Recorded]:
    """Of ``found``, the bindings alive at ``moment`` (see :func:`at`)."""
    alive = [r for r in found if r.alive_at(moment)]
    if not alive:
        near = [r for r in found if r.alive_at(moment, tolerance)]
        if near:
            distance = {r.id: min(abs(moment - r.first_seen), abs(moment - _until(r))) for r in near}
            closest = min(distance.values())
            alive = [r for r in near if distance[r.id] == closest]
    owners = {(r.binding.netns, r.binding.label) for r in alive}
    if len(owners) > 1:
        labels = sorted({label for _ns, label in owners})
        raise Ambiguous(f"{target!r} matched {len(owners)} workloads at that time", labels)
    return sorted(alive, key=lambda r: (r.binding.inner_name, r.id))


def last_binding(store: Store, target: str, namespace: str | None = None) -> list[Recorded]:
    """The target's most recent binding(s) (one workload's), for a target gone from the host."""
    found = history(store, target, namespace=namespace)
    if not found:
        raise NotFound(f"nothing named {target!r} in the journal either")
    newest = max(found, key=_until)
    return [
        r
        for r in found
        if (r.binding.netns, r.binding.label) == (newest.binding.netns, newest.binding.label)
        and _until(r) == _until(newest)
    ]
