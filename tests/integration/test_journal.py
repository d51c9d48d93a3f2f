"""The journal on real things: `ip netns` namespaces on a bridge, real Docker containers and a CRI
pod, started and removed while `serve --journal` runs; afterwards `history`, `which --at`, a plain
`which` and `dmesg | vethpeer annotate` (the kernel's own lines) name them; and a restart of
`serve` on the same journal keeps what it knew."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab import docker_lab, journal_lab
from tests.lab.journal_lab import JournalLab, cli, gone, history, kernel_lines, serving, temp_dir, wait_for
from tests.lab.netlab import Ns
from tests.policy import need, need_binary, need_files

pytestmark = pytest.mark.integration
lab = journal_lab.lab  # the fixture: `ip netns` namespaces named vqf-*


@pytest.fixture
def journal() -> Iterator[Path]:
    with temp_dir() as folder:
        yield folder / "journal.sqlite"


def on_bridge(lab: JournalLab, stems: list[str]) -> tuple[list[Ns], list[str]]:
    """Namespaces whose host-side veths are ports of a bridge of ours (so the kernel logs them)."""
    namespaces, hosts = lab.netns_with_host_peers(stems)
    bridge = lab.bridge(Ns(), lab.bridge_name())
    for host in hosts:
        lab.enslave(lab.end(Ns(), host), bridge)
    for i, ns in enumerate(namespaces):
        lab.addr(lab.end(ns, "eth0"), lab.ip4(1, 10 + i))
    return namespaces, hosts


def assert_annotated(journal: Path, veth: str, label: str) -> None:
    """The kernel's own "port N(veth) entered disabled state" line, through annotate, names ``label``."""
    need_binary("dmesg")
    lines = kernel_lines(f"({veth})")
    assert b"entered disabled state" in lines, f"dmesg has no line for {veth}: {lines!r}"
    done = cli("annotate", journal=journal, stdin=lines)
    assert done.returncode == 0, done.stderr
    disabled = [line for line in done.stdout.splitlines() if "entered disabled state" in line]
    assert disabled and all(f"({veth} [{label} eth0])" in line for line in disabled), done.stdout


def test_netns_bindings_are_recorded_and_answered_after_they_are_gone(lab: JournalLab, journal: Path) -> None:
    (stays, goes), (stays_veth, goes_veth) = on_bridge(lab, ["s", "g"])
    with serving(journal):
        wait_for(
            "both bindings", lambda: history(journal, stays.name or "") and history(journal, goes.name or "")
        )
        alive_at = time.time()
        lab.delete_netns([goes])
        lab.host_links.remove(goes_veth)
        (record,) = wait_for("the binding gone", lambda: gone(journal, goes.name or ""))
    assert record["workload"]["label"] == f"netns/{goes.name}"
    assert record["host_side"]["name"] == goes_veth and record["host_side"]["bridge"] == lab.bridge_name()

    at = cli("which", goes_veth, "--at", str(alive_at), "--json", journal=journal)
    assert at.returncode == 0, at.stderr
    assert [b["workload"]["label"] for b in at.json()["bindings"]] == [f"netns/{goes.name}"]

    past = cli("which", goes_veth, journal=journal)
    assert (
        past.returncode == 9
        and "is bound to no workload on this host now" in past.stdout
        and f"netns/{goes.name}" in past.stdout
    )
    quiet = cli("which", "-q", goes_veth, journal=journal)
    assert (quiet.returncode, quiet.stdout) == (9, "")
    ip = record["interface"]["addresses"][0].split("/")[0]
    assert cli("which", ip, "--at", str(alive_at), "-q", journal=journal).stdout == f"{goes_veth}\n"

    assert_annotated(journal, goes_veth, f"netns/{goes.name}")
    now = cli("which", "-q", stays_veth, journal=journal)
    assert (now.returncode, now.stdout) == (0, f"{stays_veth}\n"), "a present target is answered live"


def test_a_restarted_serve_keeps_the_history_and_carries_on(lab: JournalLab, journal: Path) -> None:
    (stays, goes), (_stays_veth, goes_veth) = on_bridge(lab, ["s", "g"])
    with serving(journal):
        wait_for(
            "both bindings", lambda: history(journal, stays.name or "") and history(journal, goes.name or "")
        )
    lab.delete_netns([goes])  # while serve is down
    lab.host_links.remove(goes_veth)
    with serving(journal) as served:
        (record,) = wait_for("the binding closed", lambda: gone(journal, goes.name or ""))
        assert record["gone"] == record["last_seen"], "gone during the restart: closed at its last seen"
        first = history(journal, stays.name or "")
        # walks every 0.5 s, last seen written within a second: polled, not slept on (a loaded CI
        # machine took longer than a fixed 1.5 s once)
        again = wait_for(
            "its last seen carried on",
            lambda: [r for r in history(journal, stays.name or "") if r["last_seen"] > first[0]["last_seen"]],
        )
        assert len(again) == 1 and again[0]["first_seen"] == first[0]["first_seen"], "one binding, carried on"
        assert again[0]["gone"] is None
        assert len(history(journal, stays.name or "")) == 1
        from tests.lab.serve_lab import get

        reply = get(served.port, f"/api/v1/history/{goes.name}")
        assert reply.status == 200 and f"netns/{goes.name}" in reply.body.decode()


# ---------------------------------------------------------------- Docker


@pytest.fixture
def docker() -> Iterator[Any]:
    need(os.geteuid() == 0, "needs root")
    need(os.access(docker_lab.DOCKERD, os.X_OK), f"needs {docker_lab.DOCKERD} (apt-get install docker.io)")
    need(os.access(docker_lab.BUSYBOX, os.X_OK), f"needs {docker_lab.BUSYBOX}")
    need(importlib.util.find_spec("docker") is not None, "needs the docker Python SDK")
    with docker_lab.docker_lab("vqf") as (_daemon, client):
        yield client


def test_docker_containers_started_and_removed_while_serve_records(docker: Any, journal: Path) -> None:
    name = f"vqf-api-{os.getpid() % 10000}"
    with serving(journal):
        docker_lab.run_container(docker, name, owner="vqf")
        (alive,) = wait_for("the container's binding", lambda: history(journal, name))
        alive_at = time.time()
        veth = alive["host_side"]["name"]
        docker.containers.get(name).remove(force=True)
        wait_for("the binding gone", lambda: gone(journal, name))
    (record,) = history(journal, name)
    assert record["workload"]["label"] == f"docker/{name}" and record["host_side"]["bridge"] == "docker0"
    at = cli("which", veth, "--at", str(alive_at), "--json", journal=journal)
    assert at.returncode == 0 and at.json()["bindings"][0]["workload"]["name"] == name, at.stderr
    by_id = history(journal, record["workload"]["id"][:12])
    assert [b["workload"]["name"] for b in by_id] == [name], "an ID prefix finds it too"
    assert cli("which", name, journal=journal).returncode == 9
    assert_annotated(journal, veth, f"docker/{name}")


# ---------------------------------------------------------------- CRI


@pytest.fixture
def crilab() -> Iterator[Any]:
    from tests.lab import cri_lab

    need(os.geteuid() == 0, "needs root (containerd, network namespaces)")
    need_files(cri_lab.BINARIES, cri_lab.INSTALL)
    need_files([cri_lab.BUSYBOX], "apt-get install busybox-static")
    with cri_lab.cri_lab() as the_lab:
        yield the_lab


def test_a_cri_pod_started_and_removed_while_serve_records(crilab: Any, journal: Path) -> None:
    with serving(journal, "--runtime-endpoint", crilab.containerd.endpoint):
        pod = crilab.run_pod("vqf-pod", "vqf-ns", containers=("app",))
        (alive,) = wait_for("the pod's binding", lambda: history(journal, "vqf-ns/vqf-pod"))
        alive_at = time.time()
        veth = alive["host_side"]["name"]
        crilab.remove_pod(pod)
        wait_for("the binding gone", lambda: gone(journal, "vqf-ns/vqf-pod"))
    (record,) = history(journal, "vqf-ns/vqf-pod")
    assert record["workload"]["label"] == "pod/vqf-ns/vqf-pod" and record["workload"]["uid"] == pod.uid
    at = cli("which", veth, "--at", str(alive_at), "--json", journal=journal)
    assert at.returncode == 0 and at.json()["bindings"][0]["workload"]["label"] == "pod/vqf-ns/vqf-pod"
    assert_annotated(journal, veth, "pod/vqf-ns/vqf-pod")
