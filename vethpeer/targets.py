"""Targets: turn whatever the user has in hand (a name, ID, PID, path, veth, MAC or IP) into rows.

TARGET is tried, in order, as an IP address, a MAC address, a PID, a path to a
namespace file, a host interface name, a host ifindex (``ifN``: what ``eth0@ifN`` inside a
container says), an `ip netns` name, and finally a workload (name, label, ID or unique ID
prefix, container name, `NS/NAME`, `pod/NAME`).
More than one namespace matching is an error listing the candidates: a guess
would be worse than no answer.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .correlate import HOST
from .errors import Ambiguous, NoPrivilege, NotFound
from .model import Link, NsKey, Relation, Report, Row, Workload, WorkloadKind
from .netns import key_of

_MAC = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$")
_IFINDEX = re.compile(r"^if([1-9][0-9]{0,9})$")  # `ip link` prints a peer as eth0@if23
_ID_PREFIX = re.compile(r"^[0-9a-f]{1,64}$")  # any unique prefix, as the docker CLI accepts


@dataclass(frozen=True, slots=True)
class Match:
    """What a target resolved to."""

    target: str
    how: str  # "ip", "mac", "pid", "path", "host interface", "host ifindex", "netns", "workload"
    rows: tuple[Row, ...]
    host_network: tuple[Workload, ...] = ()  # the target shares the host's namespace


def _one_namespace(target: str, how: str, rows: Iterable[Row], report: Report) -> Match:
    found = tuple(rows)
    spaces = {row.end.ns.key for row in found}
    if len(spaces) > 1:
        labels = sorted({row.end.workload.label for row in found})
        raise Ambiguous(f"'{target}' matches interfaces in {len(spaces)} namespaces", labels)
    return Match(target, how, found)


def _rows_in(report: Report, key: NsKey) -> tuple[Row, ...]:
    return tuple(row for row in report.rows if row.end.ns.key == key)


def _by_namespace(report: Report, target: str, how: str, key: NsKey) -> Match:
    if key == report.snapshot.host:
        return Match(target, how, (), host_network=(HOST,))
    known = any(view.ns.key == key for view in report.snapshot.views)
    if not known:
        raise NotFound(f"'{target}' is not a network namespace that was found (inode {key.ino})")
    return Match(target, how, _rows_in(report, key))


def _ip(report: Report, target: str) -> Match | None:
    try:
        wanted = ipaddress.ip_interface(target).ip
    except ValueError:
        return None
    rows = [
        row
        for row in report.rows
        if any(ipaddress.ip_interface(a).ip == wanted for a in row.end.link.addresses)
    ]
    if not rows:
        raise NotFound(f"no workload interface has the address {wanted}")
    return _one_namespace(target, "ip", rows, report)


def _mac(report: Report, target: str) -> Match | None:
    if not _MAC.match(target.lower()):
        return None
    mac = target.lower().replace("-", ":")
    rows = [
        row
        for row in report.rows
        if row.end.link.mac == mac or (row.peer is not None and row.peer.link.mac == mac)
    ]
    if not rows:
        raise NotFound(f"no workload interface or peer has the MAC address {mac}")
    return _one_namespace(target, "mac", rows, report)


def _pid(report: Report, target: str, proc: str = "/proc") -> Match | None:
    if not target.isdigit() or not os.path.exists(f"{proc}/{target}"):
        return None
    try:
        key = key_of(f"{proc}/{target}/ns/net")
    except PermissionError as error:
        raise NoPrivilege(f"cannot read the network namespace of PID {target}: {error.strerror}") from None
    except OSError:
        raise NotFound(f"PID {target} exited") from None
    return _by_namespace(report, target, "pid", key)


def _path(report: Report, target: str) -> Match | None:
    if not target.startswith(("/", "./")):
        return None
    try:
        key = key_of(target)
    except PermissionError as error:
        raise NoPrivilege(f"cannot read {target}: {error.strerror}") from None
    except OSError as error:
        raise NotFound(f"{target}: {error.strerror}") from None
    return _by_namespace(report, target, "path", key)


def _host_link(report: Report, target: str, how: str, is_it: Callable[[Link], bool]) -> Match | None:
    """The rows of the host interface ``is_it`` picks (itself in the host, or the peer of a row);
    one that is in the host with nothing behind it is NotFound; none at all: not this kind."""
    host = report.snapshot.host
    rows = [
        row
        for row in report.rows
        if (row.end.ns.key == host and is_it(row.end.link))
        or (row.peer is not None and row.peer.ns.key == host and is_it(row.peer.link))
    ]
    if rows:
        return _one_namespace(target, how, rows, report)
    for view in report.snapshot.views:
        for link in view.links if view.ns.key == host else ():
            if is_it(link):
                which = "a host interface" if link.name == target else f"host interface {link.name},"
                raise NotFound(f"{target} is {which} with no workload namespace behind it")
    return None


def _host_interface(report: Report, target: str) -> Match | None:
    return _host_link(report, target, "host interface", lambda link: link.name == target)


def ifindex(target: str) -> int | None:
    """N of an ``ifN`` target (an ifindex is a positive 32-bit int), else None."""
    found = _IFINDEX.match(target)
    index = int(found.group(1)) if found else 0
    return index if 0 < index < 2**31 else None


def _host_ifindex(report: Report, target: str) -> Match | None:
    """``ifN``: the host interface with ifindex N (a host that has none: not this kind of target)."""
    index = ifindex(target)
    if index is None:
        return None
    return _host_link(report, target, "host ifindex", lambda link: link.index == index)


def _netns_name(report: Report, target: str) -> Match | None:
    for view in report.snapshot.views:
        if target in view.ns.netns_names:
            return Match(target, "netns", _rows_in(report, view.ns.key))
    return None


def workload_matchers(target: str, namespace: str | None) -> tuple[Callable[[Workload], bool], ...]:
    """Exact matchers first, then the ID prefix one."""
    kube_ns, _, kube_name = target.partition("/")
    name = target[4:] if target.startswith("pod/") else target

    def in_namespace(w: Workload) -> bool:
        return namespace is None or w.namespace == namespace

    def exact(w: Workload) -> bool:
        return in_namespace(w) and (
            target in (w.name, w.label, w.id)
            or name == w.name
            or target in w.containers
            or target in w.container_ids
            or (bool(kube_name) and w.namespace == kube_ns and w.name == kube_name)
        )

    def prefix(w: Workload) -> bool:
        ids = (w.id, *w.container_ids)  # a pod answers to its sandbox ID and its containers' IDs
        hit = any(i and i.startswith(target) for i in ids)
        return in_namespace(w) and bool(_ID_PREFIX.match(target)) and hit

    return exact, prefix


def joined_container(w: Workload, target: str) -> str | None:
    """The container ``target`` names when it is not ``w`` itself but shares its namespace
    (``docker run --network container:WEB``): ``join`` for ``which join``; else None."""
    if w.kind is WorkloadKind.POD or target in (w.name, w.label) or (w.id and w.id.startswith(target)):
        return None
    names = dict(zip(w.container_ids, w.containers, strict=False))
    for cid in w.container_ids:
        name = names.get(cid) or cid[:12]
        if name != w.name and (target == name or cid.startswith(target)):
            return name
    return None


def _candidate(w: Workload, target: str) -> str:
    """How an ambiguity names ``w``: by the container the target matched, when that is not ``w``.

    A container joined to another's namespace (``--network container:X``) is listed under its
    own name, with the namespace it shares: ``docker/join (shares docker/web's netns)``.
    """
    if target in (w.name, w.label) or (w.id is not None and w.id.startswith(target)):
        return w.label
    names = dict(zip(w.container_ids, w.containers, strict=False))
    for cid in w.container_ids:
        name = names.get(cid) or cid[:12]
        if target == name or cid.startswith(target):
            if w.kind is WorkloadKind.DOCKER:
                return f"docker/{name} (shares {w.label}'s netns)"
            return f"{w.label} (container {name})"
    return w.label


def _candidates(report: Report) -> list[tuple[NsKey, Workload]]:
    """Every workload the sources named, on its namespace (the host's for host-network ones)."""
    candidates = [(key, w) for key, found in report.workloads.items() for w in found]
    return candidates + [(report.snapshot.host, w) for w in report.host_network]


def workload_namespaces(report: Report, target: str, namespace: str | None) -> frozenset[NsKey]:
    """Where :func:`resolve` finds a workload target among the sources' names, by its own
    matchers: one namespace is its answer (the host's: it shares the host network), several an
    ambiguity, none not found. Taps (a VM holding a host interface) are not looked at."""
    candidates = _candidates(report)
    for matcher in workload_matchers(target, namespace):
        keys = frozenset(key for key, w in candidates if matcher(w))
        if keys:
            return keys
    return frozenset()


def _workload(report: Report, target: str, namespace: str | None) -> Match | None:
    candidates = _candidates(report)
    # Workloads that own single interfaces of the host (a VM and its taps), not a namespace.
    taps = [
        row for row in report.rows if row.relation is Relation.TAP and row.end.ns.key == report.snapshot.host
    ]
    for matcher in workload_matchers(target, namespace):
        held = tuple(row for row in taps if matcher(row.end.workload))
        keys = {key for key, w in candidates if matcher(w)}
        if held and not keys:
            owners = {row.end.workload.label for row in held}
            if len(owners) > 1:
                raise Ambiguous(f"'{target}' matches {len(owners)} workloads", sorted(owners))
            return Match(target, "workload", held)
        if held:
            labels = sorted(
                {row.end.workload.label for row in held} | {w.label for _, w in candidates if matcher(w)}
            )
            raise Ambiguous(f"'{target}' matches {len(labels)} workloads", labels)
        if len(keys) > 1:
            # Per namespace the best-ranked claim that matched (candidates are best first); every
            # host-network workload that matched, as each is a namespace's only claim there.
            best: dict[tuple[NsKey, str], Workload] = {}
            for key, w in candidates:
                if matcher(w):
                    best.setdefault((key, w.label if key == report.snapshot.host else ""), w)
            labels = sorted({_candidate(w, target) for w in best.values()})
            raise Ambiguous(f"'{target}' matches {len(keys)} workloads", labels)
        if keys:
            key = keys.pop()
            if key == report.snapshot.host:
                hits = tuple(w for _, w in candidates if matcher(w))
                return Match(target, "workload", (), host_network=hits)
            return Match(target, "workload", _rows_in(report, key))
    return None


def scoped(report: Report, namespace: str | None) -> Report:
    """The report as ``-n NAMESPACE`` sees it: only the rows and workloads of that Kubernetes
    namespace (host veths, Docker containers and other workloads outside Kubernetes are in none).
    ``None`` (``-A``): the report itself. The one filter behind every command's ``-n``."""
    if namespace is None:
        return report
    claims = {
        key: tuple(w for w in found if in_scope(w, namespace)) for key, found in report.workloads.items()
    }
    return report._replace(
        rows=tuple(row for row in report.rows if in_scope(row.end.workload, namespace)),
        workloads={key: found for key, found in claims.items() if found},
        host_network=tuple(w for w in report.host_network if in_scope(w, namespace)),
    )


def in_scope(workload: Workload, namespace: str | None) -> bool:
    """Whether ``-n NAMESPACE`` keeps this workload (``None``, ``-A``: every one). :func:`scoped`
    applies it to a report; `watch` to each event's workload."""
    return namespace is None or workload.namespace == namespace


def resolve(report: Report, target: str, *, namespace: str | None = None, proc: str = "/proc") -> Match:
    """Find what TARGET names; raises NotFound or Ambiguous."""
    target = target.strip()

    def pid(report: Report, target: str) -> Match | None:
        return _pid(report, target, proc)

    for attempt in (_ip, _mac, pid, _path, _host_interface, _host_ifindex, _netns_name):
        found = attempt(report, target)
        if found is not None:
            return found
    found = _workload(report, target, namespace)
    if found is not None:
        return found
    where = f" in namespace '{namespace}'" if namespace else ""
    raise NotFound(
        f"nothing named '{target}'{where}",
        hint="try an IP, MAC, PID, netns name or path, host interface (or ifN), container or pod name or ID",
    )


def host_sides(rows: Iterable[Row], host: NsKey) -> list[tuple[Link, Row]]:
    """The host-side interface of each row (its veth peer in the host, or itself when it is in
    the host), once each, in order: what `which -q` prints and `capture` listens on."""
    found: list[tuple[Link, Row]] = []
    seen: set[int] = set()
    for row in rows:
        if row.peer is not None and row.relation is Relation.VETH and row.peer.ns.key == host:
            link = row.peer.link
        elif row.end.ns.key == host:
            link = row.end.link
        else:
            continue
        if link.index not in seen:
            seen.add(link.index)
            found.append((link, row))
    return found
