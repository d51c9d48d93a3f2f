"""Names from the cgroups of the processes in each namespace: no daemon asked.

Docker, podman, LXC, libvirt and the Kubernetes runtimes leave the container's
identity in the cgroup path (see :mod:`vethpeer.cgroup_path`), so this source labels
namespaces even when the daemon is down, hung, or not ours to ask. It names what
the path says and nothing more: a Docker ID, not the container's name (the
``docker`` source, with a higher priority, adds that when the daemon answers);
a pod's UID, not its name (the CRI and Kubernetes sources add that).

A container process found in the *host* namespace means the container uses the
host network: that is a claim on the host key, listed apart by the correlator.
Virtual machines are the exception: qemu always runs in the host namespace and
reaches the network through tap devices, so it does not "share" the host's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from .. import cgroup_path as cgroup
from ..model import Claim, NsKey, SourceResult, SourceState, SourceStatus, Workload, WorkloadKind
from . import PRIORITY_CGROUP, Context


class Member(NamedTuple):
    """A process of a namespace and the container its cgroup names."""

    pid: int
    identity: cgroup.Identity


def members(pids: Iterable[int], proc: str = "/proc", texts: Mapping[int, str] | None = None) -> list[Member]:
    """The processes among ``pids`` that run in a container; vanished ones are skipped.
    ``texts``: their ``/proc/PID/cgroup`` already read (a pid missing there has vanished)."""
    found = []
    for pid in pids:
        text = cgroup.read(pid, proc) if texts is None else texts.get(pid)
        identity = cgroup.parse(text) if text is not None else None
        if identity is not None:
            found.append(Member(pid, identity))
    return found


def texts(context: Context) -> dict[int, str]:
    """``/proc/PID/cgroup`` of every process of every namespace, read once per run (the scan
    below and the nspawn source read the same files)."""

    def read() -> dict[int, str]:
        found = {}
        for ns in context.namespaces:
            for pid in ns.pids:
                text = cgroup.read(pid, context.proc)
                if text is not None:
                    found[pid] = text
        return found

    return context.memo.once("cgroup-texts", read)


def scan(context: Context) -> dict[NsKey, tuple[Member, ...]]:
    """Container processes of every namespace, read once per run.

    The cgroup, docker, cri and kube sources all need it and run at the same time: the
    first one reads /proc, the others wait for its answer (the run's memo).
    """

    def read() -> dict[NsKey, tuple[Member, ...]]:
        cgroups = texts(context)
        return {
            ns.key: tuple(found)
            for ns in context.namespaces
            if (found := members(ns.pids, context.proc, cgroups))
        }

    return context.memo.once("cgroup-scan", read)


def container_workload(
    identity: cgroup.Identity, containers: tuple[str, ...] = (), ids: tuple[str, ...] = ()
) -> Workload:
    """How a container known only from its cgroup path is named."""
    assert identity.id is not None
    if identity.runtime == cgroup.DOCKER:
        name = identity.id[:12]
        kind = WorkloadKind.DOCKER
    else:
        name = f"{identity.runtime}:{identity.name or identity.id[:12]}"
        kind = WorkloadKind.CONTAINER
    return Workload(kind, name, id=identity.id, containers=containers, source="cgroup", container_ids=ids)


def pod_workload(uid: str, container_ids: tuple[str, ...] = ()) -> Workload:
    """A pod known only from its cgroup path: its UID, and the IDs of the containers seen in it.

    The IDs are not names, so ``containers`` stays empty (the CRI source fills it);
    ``container_ids`` lets ``which`` find the pod by any of its containers' IDs.
    """
    return Workload(WorkloadKind.POD, uid, uid=uid, source="cgroup", container_ids=container_ids)


def _bare(identity: cgroup.Identity) -> cgroup.Identity:
    """The container alone, without the pod it may run in."""
    return cgroup.Identity(identity.runtime, identity.id, identity.name)


def _first_started(found: Sequence[Member], proc: str = "/proc") -> list[cgroup.Identity]:
    """Distinct containers, the one whose first process started earliest first.

    Containers share a namespace when one joins another's (``--network container:X``,
    a podman pod's infra container): the owner was running before anyone could join it.
    """
    distinct = list(dict.fromkeys(_bare(m.identity) for m in found))
    if len(distinct) < 2:
        return distinct  # nobody to order: no need to read /proc/PID/stat
    earliest: dict[cgroup.Identity, tuple[int, int]] = {}
    for member in found:
        started = cgroup.start_time(member.pid, proc)
        when = (started if started is not None else 1 << 62, member.pid)
        key = _bare(member.identity)
        if key not in earliest or when < earliest[key]:
            earliest[key] = when
    return sorted(earliest, key=lambda identity: earliest[identity])


def claims_for(key: NsKey, found: Sequence[Member], *, host: bool, proc: str = "/proc") -> list[Claim]:
    """Claims on one namespace from the containers its processes run in.

    A pod wins over the containers inside it. Where several containers share one
    namespace, the first started owns it and names it; the others are listed in
    ``containers`` / ``container_ids`` of that one claim.
    """
    pods: dict[str, set[str]] = {}
    for member in found:
        if member.identity.pod_uid is not None:
            in_pod = pods.setdefault(member.identity.pod_uid, set())
            if member.identity.id is not None:
                in_pod.add(member.identity.id)
    claims = [
        Claim(key, pod_workload(uid, tuple(sorted(ids))), PRIORITY_CGROUP)
        for uid, ids in sorted(pods.items())
    ]
    plain = [m for m in found if m.identity.pod_uid is None and m.identity.id is not None]
    if host:  # each host-network container is a workload of its own; VMs do not share the network
        ordered = _first_started([m for m in plain if not m.identity.is_vm], proc)
        return claims + [Claim(key, container_workload(i), PRIORITY_CGROUP) for i in ordered]
    ordered = _first_started(plain, proc)
    if ordered:
        names = tuple(container_workload(i).name for i in ordered)
        ids = tuple(str(i.id) for i in ordered)
        priority = PRIORITY_CGROUP - 1 if pods else PRIORITY_CGROUP
        claims.append(Claim(key, container_workload(ordered[0], names, ids), priority))
    return claims


def collect_claims(context: Context) -> list[Claim]:
    claims: list[Claim] = []
    for key, found in scan(context).items():
        claims += claims_for(key, found, host=key == context.host, proc=context.proc)
    return claims


class CgroupNames:
    """Always available where /proc is: it reads ``/proc/PID/cgroup`` of the namespaces' processes."""

    name = "cgroup"

    def collect(self, context: Context) -> SourceResult:
        claims = collect_claims(context)
        containers = len({c.netns for c in claims if c.netns != context.host})
        shared = sum(1 for c in claims if c.netns == context.host)
        detail = f"{containers} namespaces, {shared} host-network workloads"
        return SourceResult(SourceStatus(self.name, SourceState.OK, detail), tuple(claims))
