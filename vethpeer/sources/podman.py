"""Podman containers and pods, from Podman's own state on disk (no daemon: Podman has none).

Podman keeps every container's and pod's record in ``<graphroot>/libpod/bolt_state.db``
(BoltDB, read here by :mod:`.boltdb`, read-only): bucket ``ctr`` holds per container its
``config`` (JSON: ``name``, ``pod``, ``rootfsImageName``, ``networkMode``), its
``state`` (JSON: ``state`` 3 = running, ``pid``), its ``netns`` path and its
``networks``; bucket ``pod`` holds each pod's ``config`` (``name``) and ``state``
(``InfraContainerID``). The graphroots looked at are the rootful default and every one a
running ``conmon`` names (its ``-b <graphroot>/overlay-containers/<id>/userdata``), so
rootless users' and custom stores are found too.

Where no state file can be read, each running ``conmon`` still says its container's ID
(``-c``) and name (``-n``), and the container's processes name the ID in their cgroup
(``libpod-<id>``): the namespace is named from those, without the pod.

A pod's namespace (its infra container's) is named after the pod (``podman/POD``) with
its containers listed; a container alone is ``podman/NAME``; containers that joined
another's network (``--network container:X``) are listed with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import cgroup_path as cgroup
from ..model import Claim, NsKey, SourceResult, SourceState, SourceStatus, Workload, WorkloadKind
from . import PRIORITY_RUNTIME, Context, absent, boltdb, endpoints, procfs
from .absent import ROOTFUL_GRAPHROOT, SQLITE_FILE, STATE_FILE
from .cgroup import scan

NAME = absent.PODMAN
RUNNING = 3  # libpod's ContainerStateRunning


@dataclass(frozen=True, slots=True)
class Container:
    id: str
    name: str
    pod: str | None = None
    image: str | None = None
    pid: int = 0
    netns_path: str | None = None
    joins: str | None = None  # the container whose network namespace it uses
    networks: tuple[str, ...] = ()
    host_network: bool = False


@dataclass(frozen=True, slots=True)
class Pod:
    id: str
    name: str
    infra: str | None = None


@dataclass(frozen=True, slots=True)
class State:
    """The running containers and the pods of one Podman store."""

    containers: tuple[Container, ...] = ()
    pods: Mapping[str, Pod] = field(default_factory=dict)
    backend: str | None = None


def _json(raw: boltdb.Entry | None) -> dict[str, Any]:
    if not isinstance(raw, bytes):
        return {}
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def parse_container(db: boltdb.Bolt, cid: str, bucket: boltdb.Bucket) -> Container | None:
    """One ``ctr`` entry -> Container, or None when it is not running."""
    items = db.items(bucket)
    config, state = _json(items.get(b"config")), _json(items.get(b"state"))
    if state.get("state") != RUNNING:
        return None
    netns = items.get(b"netns")
    networks = items.get(b"networks")
    mode = config.get("networkMode")
    return Container(
        id=cid,
        name=str(config.get("name") or cid[:12]),
        pod=config.get("pod") or None,
        image=config.get("rootfsImageName") or None,
        pid=int(state.get("pid") or 0),
        netns_path=netns.decode(errors="replace") if isinstance(netns, bytes) and netns else None,
        joins=config.get("netNsCtr") or None,
        networks=tuple(sorted(k.decode(errors="replace") for k in db.items(networks)))
        if isinstance(networks, boltdb.Bucket)
        else (),
        host_network=mode == "host",
    )


def read_state(path: str) -> State:
    """Running containers and pods from one bolt_state.db (raises OSError, BoltError)."""
    db = boltdb.read(path)
    containers = []
    for key, entry in (db.bucket([b"ctr"]) or {}).items():
        if isinstance(entry, boltdb.Bucket):
            found = parse_container(db, key.decode(errors="replace"), entry)
            if found is not None:
                containers.append(found)
    pods = {}
    for key, entry in (db.bucket([b"pod"]) or {}).items():
        if isinstance(entry, boltdb.Bucket):
            items = db.items(entry)
            pid = key.decode(errors="replace")
            config, state = _json(items.get(b"config")), _json(items.get(b"state"))
            pods[pid] = Pod(pid, str(config.get("name") or pid[:12]), state.get("InfraContainerID") or None)
    return State(tuple(sorted(containers, key=lambda c: c.name)), pods)


def read_sqlite(path: str) -> State:
    """Running containers and pods from Podman's SQLite state (raises OSError, sqlite3.Error).

    Tables ``ContainerConfig(ID, Name, PodID, JSON)``, ``ContainerState(ID, State, JSON)``,
    ``PodConfig(ID, Name, JSON)``, ``PodState(ID, InfraContainerID, JSON)``; the JSON columns
    hold the same documents as the BoltDB file's ``config`` and ``state`` values. Opened
    read-only (``mode=ro``): nothing is written to Podman's database.
    """
    import sqlite3

    if not os.path.exists(path):
        raise FileNotFoundError(path)
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)) as db:
        rows = db.execute(
            "SELECT c.ID, c.Name, c.PodID, c.JSON, s.State, s.JSON"
            " FROM ContainerConfig c JOIN ContainerState s ON s.ID = c.ID"
        ).fetchall()
        pods = db.execute(
            "SELECT p.ID, p.Name, s.InfraContainerID FROM PodConfig p LEFT JOIN PodState s ON s.ID = p.ID"
        ).fetchall()
    containers = []
    for cid, name, pod, config_text, state, state_text in rows:
        if state != RUNNING:
            continue
        config, status = _json(str(config_text).encode()), _json(str(state_text).encode())
        mode = config.get("networkMode")
        raw_networks = config.get("newNetworks")
        networks: dict[str, Any] = raw_networks if isinstance(raw_networks, dict) else {}
        containers.append(
            Container(
                id=str(cid),
                name=str(name),
                pod=str(pod) if pod else None,
                image=config.get("rootfsImageName") or None,
                pid=int(status.get("pid") or 0),
                netns_path=status.get("netNS") or None,
                joins=config.get("netNsCtr") or None,
                networks=tuple(sorted(networks)),
                host_network=mode == "host",
            )
        )
    found = {str(pid): Pod(str(pid), str(name), str(infra) if infra else None) for pid, name, infra in pods}
    return State(tuple(sorted(containers, key=lambda c: c.name)), found)


# ------------------------------------------------------------------ conmon (the fallback)


@dataclass(frozen=True, slots=True)
class Conmon:
    pid: int
    id: str
    name: str | None
    graphroot: str | None
    backend: str | None


def parse_conmon(pid: int, argv: Sequence[str]) -> Conmon | None:
    """conmon's ``-c ID -n NAME -b BUNDLE`` and Podman's ``--network-backend`` (exit command)."""
    values: dict[str, str] = {}
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-c", "--cid", "-n", "--name", "-b", "--bundle"):
            values.setdefault(arg.lstrip("-")[0], argv[i + 1])
    backend = None
    for i, arg in enumerate(argv[:-2]):
        if arg == "--exit-command-arg" and argv[i + 1] == "--network-backend":
            backend = argv[i + 3] if i + 3 < len(argv) else None
    cid = values.get("c")
    if not cid or not cgroup.HEX_ID.match(cid):
        return None
    bundle = values.get("b", "")
    # <graphroot>/<driver>-containers/<id>/userdata
    parts = bundle.rstrip("/").rsplit("/", 3)
    graphroot = parts[0] if len(parts) == 4 and parts[-1] == "userdata" and parts[-2] == cid else None
    return Conmon(pid, cid, values.get("n"), graphroot, backend)


# ------------------------------------------------------------------------- the join


def namespaces(containers: Sequence[Container], proc: str) -> dict[str, NsKey]:
    """Container ID -> its network namespace: its netns file, else its process's, else its owner's."""
    found: dict[str, NsKey] = {}
    for c in containers:
        key = procfs.netns_at(c.netns_path) if c.netns_path else None
        if key is None and c.pid > 0:
            key = procfs.netns_of(c.pid, proc)
        if key is not None:
            found[c.id] = key
    for c in containers:
        if c.id not in found and c.joins in found:
            found[c.id] = found[c.joins]
    return found


def _workload(name: str, wid: str, members: Sequence[Container], image: str | None = None) -> Workload:
    networks = tuple(sorted({n for c in members for n in c.networks}))
    return Workload(
        WorkloadKind.PODMAN,
        name,
        id=wid,
        image=image,
        networks=networks,
        containers=tuple(c.name for c in members),
        source=NAME,
        container_ids=tuple(c.id for c in members),
    )


def claims(state: State, ns_of: Mapping[str, NsKey], host: NsKey) -> list[Claim]:
    """One claim per namespace (per container for the host's): a pod's after the pod."""
    groups: dict[NsKey, list[Container]] = {}
    for c in state.containers:
        if c.id in ns_of:
            groups.setdefault(ns_of[c.id], []).append(c)
    result = []
    for key, members in groups.items():
        if key == host:  # --network host: each is a workload of its own
            result += [Claim(key, _workload(c.name, c.id, [c], c.image), PRIORITY_RUNTIME) for c in members]
            continue
        pod_ids = {c.pod for c in members if c.pod}
        if len(pod_ids) == 1 and (pod := state.pods.get(next(iter(pod_ids)))) is not None:
            # The pod's own containers first, its infra container last.
            ordered = sorted(members, key=lambda c: (c.id == pod.infra, c.name))
            result.append(Claim(key, _workload(pod.name, pod.id, ordered), PRIORITY_RUNTIME))
            continue
        owner = next((c for c in members if c.joins is None), members[0])
        ordered = [owner] + [c for c in members if c is not owner]
        result.append(Claim(key, _workload(owner.name, owner.id, ordered, owner.image), PRIORITY_RUNTIME))
    return result


def _from_conmon(found: Iterable[Conmon], context: Context) -> tuple[State, dict[str, NsKey]]:
    """Containers named by conmon, placed through the libpod-<id> cgroups of the namespaces' processes."""
    names = {c.id: c.name or c.id[:12] for c in found}
    ns_of: dict[str, NsKey] = {}
    for key, members in scan(context).items():
        for m in members:
            if m.identity.runtime == cgroup.PODMAN and m.identity.id in names:
                ns_of.setdefault(m.identity.id, key)
    containers = tuple(Container(cid, name) for cid, name in sorted(names.items(), key=lambda t: t[1]))
    return State(containers), ns_of


def sqlite_error() -> type[Exception]:
    import sqlite3

    return sqlite3.Error


class PodmanNames:
    """Source "podman": containers and pods from Podman's state files, else from conmon."""

    name = NAME

    def __init__(self, graphroots: Sequence[str] = (ROOTFUL_GRAPHROOT,)) -> None:
        self.graphroots = tuple(graphroots)

    def collect(self, context: Context) -> SourceResult:
        skipped = absent.podman(context, self.graphroots)  # no conmon, no state file
        if skipped is not None:
            return skipped
        table = procfs.process_table(context)
        parsed = (
            parse_conmon(p.pid, procfs.cmdline(p.pid, context.proc))
            for p in procfs.named(table, (absent.CONMON,))
        )
        monitors = [m for m in parsed if m is not None]
        backend = next((m.backend for m in monitors if m.backend), None)
        roots = dict.fromkeys([*self.graphroots, *(m.graphroot for m in monitors if m.graphroot)])
        read: list[str] = []
        problems: list[str] = []
        containers: list[Container] = []
        pods: dict[str, Pod] = {}
        for root, name in ((r, n) for r in roots for n in (STATE_FILE, SQLITE_FILE)):
            path = os.path.join(root, name)
            if not os.path.exists(path):
                continue
            try:
                state = read_state(path) if name == STATE_FILE else read_sqlite(path)
            except (OSError, boltdb.BoltError, struct.error, sqlite_error()) as error:  # struct: a torn file
                problems.append(f"{path}: {error}")
                continue
            read.append(path)
            containers += state.containers
            pods.update(state.pods)
        if read:
            unique = {c.id: c for c in reversed(containers)}  # both files after an upgrade: the first wins
            state = State(tuple(sorted(unique.values(), key=lambda c: c.name)), pods)
            ns_of = namespaces(state.containers, context.proc)
            origin = ", ".join(read)
        elif monitors:
            state, ns_of = _from_conmon(monitors, context)
            origin = "conmon command lines" + (f" ({'; '.join(problems)})" if problems else "")
        else:
            looked = ", ".join(os.path.join(r, STATE_FILE) for r in roots)
            detail = "; ".join(problems) or f"no Podman state ({looked}) and no conmon running"
            status = SourceState.UNAVAILABLE if problems else SourceState.SKIPPED
            return SourceResult(SourceStatus(self.name, status, detail))
        found = claims(state, ns_of, context.host)
        in_pods = len({c.pod for c in state.containers if c.pod})
        detail = f"{len(state.containers)} running containers"
        detail += f" in {in_pods} pods" if in_pods else ""
        detail += f" from {origin}"
        if backend:
            detail += f"; network backend {backend}"
        for api in endpoints.podman_service(context.proc, table):  # not needed: said, not asked
            detail += f"; API socket {api.path} ({api.why})"
        return SourceResult(SourceStatus(self.name, SourceState.OK, detail), tuple(found))
