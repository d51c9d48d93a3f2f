"""`which WORKLOAD` asks the sources first and reads only the namespace their names place the
target in (vethpeer/focus.py ``by_name``): its answer must be the full walk's, byte for byte.

A real containerd answering CRI (the CRI lab, CNI bridge) and a real Docker engine (the Docker
lab) run side by side, with names that collide between them. Every target runs through the
real CLI in this process twice: as shipped, and with the shortcut turned off (``focus.locate``
answers None: the full walk). Exit status, stdout and stderr must be the same (JSON: all but
``generated_at`` and ``namespaces.read``), and the shortcut must have read fewer namespaces.
Containers and pods are named ``vqd-...``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.lab import cri_lab
from tests.lab import docker_lab as dlab
from tests.lab.cri_lab import Lab, Pod
from tests.policy import need, need_files
from vethpeer import collect, focus
from vethpeer.cli import main
from vethpeer.environment import Environment
from vethpeer.errors import ExitStatus

pytestmark = pytest.mark.integration

PREFIX = "vqd"


@dataclass(frozen=True)
class World:
    endpoint: str
    pods: dict[str, Pod]
    containers: dict[str, Any]  # docker containers by name
    container_ids: dict[str, list[str]]  # pod key -> its CRI container IDs


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    need(os.geteuid() == 0, "needs root (containerd, Docker, network namespaces)")
    need_files(cri_lab.BINARIES, cri_lab.INSTALL)
    need_files([cri_lab.BUSYBOX], "apt-get install busybox-static")
    need(os.access(dlab.DOCKERD, os.X_OK), f"needs {dlab.DOCKERD} (apt-get install docker.io)")
    need(importlib.util.find_spec("docker") is not None, "needs the docker Python SDK")
    with cri_lab.cri_lab() as lab, dlab.docker_lab(PREFIX) as (_daemon, client):
        dlab.cleanup(client, PREFIX)
        pods = {
            "web-a": lab.run_pod(f"{PREFIX}-web", f"{PREFIX}-a", containers=("app", "sidecar")),
            "web-b": lab.run_pod(f"{PREFIX}-web", f"{PREFIX}-b", containers=("app",)),  # same name
            "db": lab.run_pod(f"{PREFIX}-db", f"{PREFIX}-b", containers=("postgres",)),
            "hostnet": lab.run_pod(f"{PREFIX}-hostnet", f"{PREFIX}-a", host_network=True),
        }
        containers = {
            name: dlab.run_container(client, name, owner=PREFIX, **extra)
            for name, extra in (
                (f"{PREFIX}-solo", {}),
                (f"{PREFIX}-db", {}),  # a Docker container named as a pod
                (f"{PREFIX}-host", {"network": "host"}),
            )
        }
        containers[f"{PREFIX}-join"] = dlab.run_container(
            client, f"{PREFIX}-join", network=f"container:{PREFIX}-solo", owner=PREFIX
        )
        ids = {key: _container_ids(lab, pod) for key, pod in pods.items()}
        yield World(lab.containerd.endpoint, pods, containers, ids)
    assert not cri_lab.leftovers()


def _container_ids(lab: Lab, pod: Pod) -> list[str]:
    pb = lab.client.pb
    reply = lab.client.stub.ListContainers(
        pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pod.id)), timeout=10
    )
    return [c.id for c in reply.containers]


def _targets(world: World) -> dict[str, list[str]]:
    """target -> extra arguments, for every kind of workload target."""
    web, db = world.pods["web-a"], world.pods["db"]
    solo = world.containers[f"{PREFIX}-solo"]
    app = world.container_ids["web-a"][0]
    found: dict[str, list[str]] = {
        f"{PREFIX}-web": [],  # two pods: ambiguous
        f"{PREFIX}-a/{PREFIX}-web": [],  # NS/NAME
        f"pod/{PREFIX}-a/{PREFIX}-web": [],  # the label
        f"pod/{PREFIX}-hostnet": [],  # pod/NAME: a hostNetwork pod
        f"{PREFIX}-db": [],  # a pod and a Docker container: ambiguous between sources
        "sidecar": [],  # a container name in one pod
        "app": [],  # ... in two
        web.id: [],
        web.id[:12]: [],
        db.id[:8]: [],
        app: [],
        app[:12]: [],
        f"{PREFIX}-solo": [],  # Docker only
        solo.id: [],
        solo.id[:12]: [],
        f"{PREFIX}-join": [],  # shares vqd-solo's namespace
        f"{PREFIX}-host": [],  # --network host
        f"{PREFIX}-nothing": [],  # nothing: exit 3
        "0": [],  # not a PID (no /proc/0), a hex prefix of nothing or of many
    }
    found[f"{PREFIX}-web "] = ["-n", f"{PREFIX}-b"]  # one of the two, by -n
    return found


def _run(argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(argv, Environment(stdout=out, stderr=err, environ=environ))
    return status, out.getvalue(), err.getvalue()


def _comparable(output: str, argv: list[str]) -> Any:
    if "--json" not in argv or not output:
        return output
    document = json.loads(output)
    document.pop("generated_at", None)
    document["namespaces"].pop("read", None)
    return document


def test_which_by_name_answers_as_the_full_walk(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {
        "CONTAINER_RUNTIME_ENDPOINT": world.endpoint,
        "HOME": "/nonexistent-vqd-home",  # no kubeconfig: the kube source stays off
        "NO_COLOR": "1",
        "PATH": os.environ.get("PATH", ""),
    }
    walked: list[int] = []
    real_snapshot = collect.snapshot

    def counted(discovery: Any, **kwargs: Any) -> Any:
        walked.append(len(discovery.namespaces))
        return real_snapshot(discovery, **kwargs)

    monkeypatch.setattr(collect, "snapshot", counted)
    real_locate: Callable[..., Any] = focus.locate
    shortcuts = 0
    statuses = set()
    for target, extra in _targets(world).items():
        for form in ([], ["-q"], ["--json"]):
            argv = ["which", target.strip(), *extra, *form]
            walked.clear()
            focused = _run(argv, environ)
            monkeypatch.setattr(focus, "locate", lambda *_a, **_k: None)
            full = _run(argv, environ)
            monkeypatch.setattr(focus, "locate", real_locate)
            assert focused[0] == full[0], (argv, focused, full)
            assert _comparable(focused[1], argv) == _comparable(full[1], argv), argv
            assert focused[2] == full[2], argv
            assert len(walked) == 2 and walked[0] < walked[1], (argv, walked)
            shortcuts += 1
            statuses.add(focused[0])
    assert shortcuts == 3 * len(_targets(world))
    # Found, ambiguous, not found, and -q with no host-side veth (host network) were all met.
    assert {ExitStatus.SUCCESS, ExitStatus.AMBIGUOUS, ExitStatus.NOT_FOUND} <= statuses


def test_which_pod_text_names_the_pod_and_its_host_veth(world: World) -> None:
    environ = {"CONTAINER_RUNTIME_ENDPOINT": world.endpoint, "HOME": "/nonexistent-vqd-home", "NO_COLOR": "1"}
    status, out, err = _run(["which", f"{PREFIX}-a/{PREFIX}-web"], environ)
    assert status == ExitStatus.SUCCESS, err
    assert f"{PREFIX}-web" in out and "eth0" in out and "vpkcni0" in out
    status, out, err = _run(["which", f"{PREFIX}-nothing"], environ)
    assert status == ExitStatus.NOT_FOUND and not out
    assert f"nothing named '{PREFIX}-nothing'" in err
    status, out, err = _run(["which", f"{PREFIX}-db"], environ)  # the pod and the Docker container
    assert status == ExitStatus.AMBIGUOUS, (out, err)
    assert f"docker/{PREFIX}-db" in err and f"pod/{PREFIX}-b/{PREFIX}-db" in err
    status, out, err = _run(["which", f"{PREFIX}-join"], environ)
    assert status == ExitStatus.SUCCESS, err
    assert f"{PREFIX}-join shares docker/{PREFIX}-solo's network namespace" in out
    status, out, err = _run(["which", "-q", f"{PREFIX}-web", "-n", f"{PREFIX}-b"], environ)
    assert status == ExitStatus.SUCCESS and out.startswith("veth"), err
