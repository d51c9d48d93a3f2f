"""Names known without asking any daemon: the host, `ip netns` names, bind mounts, processes."""

from __future__ import annotations

from ..model import Claim, Namespace, NsKey, SourceResult, SourceState, SourceStatus, Workload, WorkloadKind
from . import PRIORITY_NETNS, PRIORITY_PROCESS, Context

HOST = Workload(WorkloadKind.HOST, "host")


def names_of(ns: Namespace) -> list[Claim]:
    """Every kernel-level name of one (non-host) namespace, best first."""
    claims = [
        Claim(ns.key, Workload(WorkloadKind.NETNS, name, id=name), PRIORITY_NETNS) for name in ns.netns_names
    ]
    named = set(ns.netns_names)
    claims += [
        # A bind mount elsewhere (/run/docker/netns/ID, podman's netns-*): the path is the name.
        Claim(ns.key, Workload(WorkloadKind.NETNS, path, id=path), PRIORITY_PROCESS - 1)
        for path in ns.mounts
        if path.rsplit("/", 1)[1] not in named
    ]
    if ns.pids:
        pid = ns.pids[0]
        name = f"pid/{pid} ({ns.comm})" if ns.comm else f"pid/{pid}"
        claims.append(Claim(ns.key, Workload(WorkloadKind.PROCESS, name, id=str(pid)), PRIORITY_PROCESS))
    return claims


class KernelNames:
    """Always available; it only looks at what discovery already found.

    One instance asked again and again (the live walker's, each time namespaces come or go)
    makes a namespace's claims again only when what they name it by changed."""

    name = "kernel"

    def __init__(self) -> None:
        # per namespace: the object, what its claims name it by, its claims (discovery keeps a
        # namespace's object while nothing of it changed: then nothing is looked at)
        self._known: dict[NsKey, tuple[Namespace, tuple[object, ...], tuple[Claim, ...]]] = {}

    def collect(self, context: Context) -> SourceResult:
        known, self._known = self._known, {}
        claims: list[Claim] = []
        for ns in context.namespaces:
            if ns.is_host:
                continue
            kept = known.get(ns.key)
            if kept is None or kept[0] is not ns:
                face = (ns.key, ns.mounts, ns.pids[:1], ns.comm)
                found = kept[2] if kept is not None and kept[1] == face else tuple(names_of(ns))
                kept = ns, face, found
            self._known[ns.key] = kept
            claims += kept[2]
        return SourceResult(SourceStatus(self.name, SourceState.OK), tuple(claims))
