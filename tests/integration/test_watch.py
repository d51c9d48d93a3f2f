"""`vethpeer watch --json` against real changes: 200 namespaces with veths created and
removed, a veth moved between namespaces, Docker containers started and stopped.

Needs root and iproute2; the Docker test needs the system dockerd (never stopped here)
and the ``docker`` SDK. Every object is prefixed ``vpl`` and removed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.integration.conftest import ROOT
from tests.lab.live_lab import LiveLab, kill, wait_for
from tests.lab.netlab import HOST
from tests.policy import need

pytestmark = pytest.mark.integration


class Watch:
    """``vethpeer watch --json`` in a child process; its events collected by a thread."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vethpeer", "watch", "--json", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert "watching" in line, line
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            with self.lock:
                self.events.append(event)

    def matching(self, wanted: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if wanted(e)]

    def close(self) -> None:
        kill(self.proc)


@pytest.fixture
def watch() -> Iterator[Watch]:
    w = Watch()
    try:
        yield w
    finally:
        w.close()


def known_as(event: dict[str, Any], label: str) -> bool:
    """The namespace of ``label`` appeared, or was named so.

    ``ip netns add`` enters the new namespace before it bind-mounts it: a look in between
    finds it held by ``ip`` alone (``netns-appeared pid/N (ip)``), and the next look, with
    the mount, names it (``named``). Both are true, and watch says both.
    """
    return event["event"] in ("netns-appeared", "named") and event["workload"]["label"] == label


def _story(watch: Watch, missing: set[str]) -> list[tuple[str, str, bool]]:
    """Every event about the namespaces of these labels, by inode: what a missing event became."""
    inodes = {e["netns"]["inode"] for e in watch.events if e["workload"]["label"] in missing}
    return [
        (e["event"], e["workload"]["label"], e["resync"])
        for e in watch.events
        if e["netns"]["inode"] in inodes
    ]


def test_200_namespaces_each_reported_once(watch: Watch) -> None:
    """Every creation and deletion exactly once, with the workload and the peer `which` names."""
    count = 200
    with LiveLab() as lab:
        namespaces, hosts = lab.netns_with_host_peers([f"w{i:03d}" for i in range(count)], up=False)
        labels = {f"netns/{ns.name}": h for ns, h in zip(namespaces, hosts, strict=True)}

        def ours(kind: str) -> Callable[[dict[str, Any]], bool]:
            return lambda e: e["event"] == kind and e["workload"]["label"] in labels

        try:
            wait_for(lambda: len(watch.matching(ours("created"))) >= count, 60, "200 creations")
        except AssertionError:
            print(Counter(e["event"] for e in watch.matching(lambda e: "vpl-" in e["workload"]["label"])))
            print(watch.matching(lambda e: True)[:3], len(watch.events), watch.proc.poll())
            raise
        lab.delete_netns(namespaces)
        wait_for(lambda: len(watch.matching(ours("netns-gone"))) >= count, 60, "200 namespaces gone")
        wait_for(lambda: len(watch.matching(ours("deleted"))) >= count, 30, "200 deletions")
        time.sleep(1.5)  # anything late (a duplicate) would arrive now
    inode_of = {e["workload"]["label"]: e["netns"]["inode"] for e in watch.matching(ours("created"))}
    appeared = Counter(e["netns"]["inode"] for e in watch.matching(lambda e: e["event"] == "netns-appeared"))
    for label, inode in inode_of.items():
        assert appeared[inode] == 1, (label, _story(watch, {label}))
        assert [e for e in watch.events if e["netns"]["inode"] == inode and known_as(e, label)], label
    for kind in ("created", "deleted", "netns-gone"):
        seen = Counter(e["workload"]["label"] for e in watch.matching(ours(kind)))
        assert set(seen) == set(labels), (kind, len(seen), _story(watch, set(labels) - set(seen)))
        assert set(seen.values()) == {1}, (kind, [k for k, n in seen.items() if n > 1][:5])
    for kind in ("created", "deleted"):
        for event in watch.matching(ours(kind)):
            label = event["workload"]["label"]
            assert event["interface"]["ifname"] == "eth0"
            assert event["peer"] is not None, (event["message"], event["unresolved"], _story(watch, {label}))
            assert event["peer"]["ifname"] == labels[label], event
            assert event["peer"]["workload"] == "host"
            assert event["message"] == f"{label} eth0 <-> {labels[label]}: veth {kind}"
            assert event["schema"] == "vethpeer.watch" and event["schema_version"] == 1
            assert event["resync"] is False


def test_move_is_one_event(watch: Watch) -> None:
    """eth0 moved from namespace a to b: one ``moved`` event (b's, naming a), no create/delete."""
    with LiveLab() as lab:
        a, b = lab.netns_many(["ma", "mb"])
        host_end = lab.link_name("m")
        lab.veth(HOST, host_end, a, "eth0")
        label_a, label_b = f"netns/{a.name}", f"netns/{b.name}"
        wait_for(
            lambda: watch.matching(lambda e: e["event"] == "created" and e["workload"]["label"] == label_a),
            30,
            "creation",
        )
        try:
            wait_for(lambda: watch.matching(lambda e: known_as(e, label_b)), 30, "b")
        except AssertionError:
            print([(e["event"], e["workload"]["label"]) for e in watch.events[-20:]], watch.proc.poll())
            raise
        subprocess.run(["ip", "-n", a.name or "", "link", "set", "eth0", "netns", b.name or ""], check=True)
        try:
            wait_for(lambda: watch.matching(lambda e: e["event"] == "moved"), 30, "the move")
        except AssertionError:
            print([(e["event"], e["workload"]["label"], e["message"]) for e in watch.events[-20:]])
            raise
        time.sleep(0.5)
        moved = watch.matching(lambda e: e["event"] == "moved")
        assert len(moved) == 1, moved
        assert moved[0]["workload"]["label"] == label_b
        assert moved[0]["before"] == label_a
        assert moved[0]["peer"]["ifname"] == host_end
        assert moved[0]["message"].startswith(f"{label_b} eth0 <-> {host_end}: moved from {label_a}")
        mine = {label_a, label_b}
        assert not watch.matching(
            lambda e: (
                e["event"] in ("created", "deleted")
                and e["workload"]["label"] in mine
                and e is not None
                and e["time"] > moved[0]["time"]
            )
        )


@contextmanager
def docker_container(name: str) -> Iterator[Any]:
    """A container ``name`` (owner ``vpl``) on the system's dockerd when it runs (never stopped),
    else on the lab's own; the lab's containers removed and its daemon stopped afterwards."""
    from tests.lab import docker_lab

    need(os.access(docker_lab.DOCKERD, os.X_OK), f"needs {docker_lab.DOCKERD} (apt-get install docker.io)")
    daemon = docker_lab.ensure_dockerd()
    pytest.importorskip("docker")
    client = docker_lab.docker_client()
    try:
        docker_lab.ensure_image(client)
        docker_lab.run_container(client, name, owner="vpl")
        yield client
    finally:
        docker_lab.cleanup(client, "vpl")
        client.close()
        daemon.stop()  # only if the lab started it


def test_docker_containers_by_name(watch: Watch) -> None:
    """A container started and stopped on the system's dockerd: both reported with its name."""
    name = f"vpl-{os.getpid()}-c1"
    label = f"docker/{name}"
    with docker_container(name) as client:
        wait_for(
            lambda: watch.matching(
                lambda e: (
                    e["workload"]["label"] == label and e["event"] in ("created", "named", "netns-appeared")
                )
            ),
            15,
            "the start",
        )
        client.containers.get(name).stop(timeout=2)
        wait_for(
            lambda: watch.matching(lambda e: e["workload"]["label"] == label and e["event"] == "netns-gone"),
            15,
            "the stop",
        )
        # Docker moves eth0 back to the host (renamed) before deleting it: a move from the
        # container, or (if the kernel was quicker than one look) the deletion of its eth0
        left = watch.matching(
            lambda e: (
                (e["event"] == "moved" and e["before"] == label)
                or (e["event"] == "deleted" and e["workload"]["label"] == label)
            )
        )
        assert left, watch.matching(lambda e: label in e["message"])
        # its veth arrived with its name and the host-side device on docker0
        # (named by its runtime a moment later, possibly: matched by its netns)
        inodes = {e["netns"]["inode"] for e in watch.matching(lambda e: e["workload"]["label"] == label)}
        arrived = watch.matching(
            lambda e: e["netns"]["inode"] in inodes and e["event"] in ("created", "moved") and e["peer"]
        )
        assert arrived and arrived[0]["peer"]["master"] == "docker0", arrived


def test_overflow_resyncs_and_loses_nothing() -> None:
    """A receive buffer far too small for a burst of 60 new namespaces with veths: ENOBUFS,
    then a full walk whose events are marked resync; every creation is still reported once.
    (In-process, with the real event socket, its buffer shrunk on purpose.)"""
    from vethpeer.collect import Request
    from vethpeer.environment import Environment
    from vethpeer.live.walker import Walker
    from vethpeer.live.watcher import Watcher

    env = Environment(stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))  # noqa: SIM115
    with LiveLab() as lab, Walker(Request(ovs=False), env) as walker, Watcher(walker, rcvbuf=2048) as watcher:
        count = 60
        namespaces, _hosts = lab.netns_with_host_peers([f"o{i:02d}" for i in range(count)])
        time.sleep(0.5)  # the burst overflows the socket before anything is read
        labels = {f"netns/{ns.name}" for ns in namespaces}
        found = []
        deadline = time.monotonic() + 20
        while (
            time.monotonic() < deadline
            and len({e.workload.label for e in found if e.kind == "created"} & labels) < count
        ):
            found += watcher.wait(0.5)
        created = [e for e in found if e.kind == "created" and e.workload.label in labels]
        assert Counter(e.workload.label for e in created) == Counter(labels), len(created)
        assert any(e.resync for e in created), "the overflow was not noticed"


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_failed_model_is_one_line_and_its_status(json_lines: bool) -> None:
    """The live model's thread stops before the first report (--strict and a Docker socket that
    is not there): `watch` says why once, on one line, prints no event and exits 7."""
    from tests.integration.conftest import run_vethpeer
    from tests.integration.test_core import one_line_error

    argv = ("--json",) if json_lines else ()
    done = run_vethpeer(
        "watch", *argv, "--strict", "--docker-host", "unix:///nonexistent/vqc-docker.sock", timeout=60
    )
    assert done.returncode == 7, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "docker: unavailable" in one_line_error(done)


def test_without_privilege_exits_5() -> None:
    from tests.integration.conftest import run_vethpeer
    from tests.integration.test_core import one_line_error

    done = run_vethpeer("watch", no_capabilities=True, timeout=60)
    assert done.returncode == 5, done.stderr
    assert "CAP_SYS_ADMIN" in one_line_error(done)


def test_the_models_events_through_an_overflow() -> None:
    """`watch`'s engine, the live model with ``changes=True``, its socket's buffer shrunk on
    purpose: the burst overflows it, the full walk's events reach the subscriber marked resync,
    and every creation is still reported once (in-process, the real event socket)."""
    from vethpeer.collect import Request
    from vethpeer.environment import Environment
    from vethpeer.live.changes import Event
    from vethpeer.live.model import LiveModel
    from vethpeer.live.reading import first

    env = Environment(stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))  # noqa: SIM115
    found: list[Event] = []
    model = LiveModel(
        Request(ovs=False), env, env.warn, rcvbuf=2048, follow_docker=False, changes=True, gap=0.0
    )
    model.subscribe_changes(found.extend)
    with LiveLab() as lab:
        model.start()
        try:
            first(model)
            count = 60
            namespaces, _hosts = lab.netns_with_host_peers([f"q{i:02d}" for i in range(count)])
            labels = {f"netns/{ns.name}" for ns in namespaces}

            def created() -> list[Event]:
                return [e for e in list(found) if e.kind == "created" and e.workload.label in labels]

            wait_for(lambda: {e.workload.label for e in created()} == labels, 30, "every creation")
            time.sleep(1.0)  # anything late (a duplicate) would arrive now
            assert Counter(e.workload.label for e in created()) == Counter(labels)
            assert model.stats().overflows >= 1
            assert any(e.resync for e in created()), "the overflow's events were not marked resync"
        finally:
            model.stop()


def test_a_renamed_docker_container_is_one_named_event(watch: Watch) -> None:
    """`docker rename` changes no namespace and no link: Docker's own events stream (which the
    live model follows) has the sources asked again, and `watch` says ``named`` once, promptly."""
    name = f"vpl-{os.getpid()}-r1"
    renamed = f"{name}-renamed"
    with docker_container(name) as client:
        wait_for(
            lambda: watch.matching(
                lambda e: e["workload"]["label"] == f"docker/{name}" and e["event"] in ("created", "named")
            ),
            15,
            "the start",
        )
        time.sleep(3.5)  # the names asked for after a namespace appears (1 s and 3 s) are in
        client.containers.get(name).rename(renamed)
        renamed_at = time.monotonic()
        wait_for(
            lambda: watch.matching(
                lambda e: e["event"] == "named" and e["workload"]["label"] == f"docker/{renamed}"
            ),
            10,
            "the rename",
        )
        assert time.monotonic() - renamed_at < 5  # not the 30 s the names are asked for anyway
        time.sleep(1.0)  # a duplicate would arrive now
        named = watch.matching(
            lambda e: e["event"] == "named" and e["workload"]["label"] == f"docker/{renamed}"
        )
        assert len(named) == 1, named
        assert named[0]["before"] == f"docker/{name}"
        assert named[0]["message"] == f"docker/{renamed}: named (was docker/{name})"
