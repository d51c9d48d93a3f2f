"""The docker source's pure parts: parsing /containers/json, the cgroup join, the claims; and
the cgroup source's claims. No daemon here (tests/integration/test_docker.py has a real one)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from vethpeer import cgroup_path as cgroup
from vethpeer.model import NsKey, SourceResult, SourceState, WorkloadKind
from vethpeer.sources import PRIORITY_CGROUP, PRIORITY_RUNTIME, Context, Options, Paths
from vethpeer.sources import cgroup as cgroup_source
from vethpeer.sources import docker as docker_source
from vethpeer.sources.docker import PodRef, claims, parse_container, place

HOST = NsKey(4, 1)
NS_A = NsKey(4, 100)
NS_B = NsKey(4, 200)
A = "a" * 64
B = "b" * 64
J = "c" * 64
H = "d" * 64
SANDBOX = "e" * 64
APP = "f" * 64


def summary(
    cid: str,
    name: str,
    mode: str = "default",
    networks: tuple[str, ...] = ("bridge",),
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "Id": cid,
        "Names": [f"/{name}"],
        "Image": "vethpeer-test/busybox:1",
        "Labels": labels or {},
        "HostConfig": {"NetworkMode": mode},
        "NetworkSettings": {"Networks": {n: {"NetworkID": "x"} for n in networks}},
        "State": "running",
    }


def test_parse_container_strips_slash_and_prefers_own_name_over_link_alias() -> None:
    raw = summary(A, "web")
    raw["Names"] = ["/db/web-alias", "/web"]
    c = parse_container(raw)
    assert (c.id, c.name, c.image, c.network_mode, c.networks) == (
        A,
        "web",
        "vethpeer-test/busybox:1",
        "default",
        ("bridge",),
    )


def test_parse_container_tolerates_missing_fields() -> None:
    c = parse_container({"Id": A})
    assert (c.name, c.network_mode, c.networks, c.image) == (A[:12], "default", (), None)


def test_dockershim_names_and_labels() -> None:
    assert PodRef.from_name("k8s_POD_web-0_prod_0f7c2e1a-5b3d-4c6e-8f9a-1b2c3d4e5f60_3") == PodRef(
        "web-0", "prod", "0f7c2e1a-5b3d-4c6e-8f9a-1b2c3d4e5f60", "POD"
    )
    assert PodRef.from_name("k8s_nginx_web-0_prod_uid_0").container == "nginx"  # type: ignore[union-attr]
    assert PodRef.from_name("k8s_web") is None
    assert PodRef.from_name("my_k8s_a_b_c_d") is None
    labelled = parse_container(
        summary(
            A,
            "anything",
            labels={
                "io.kubernetes.pod.name": "web",
                "io.kubernetes.pod.namespace": "prod",
                "io.kubernetes.pod.uid": "u1",
                "io.kubernetes.docker.type": "podsandbox",
            },
        )
    )
    assert labelled.pod == PodRef("web", "prod", "u1", "POD") and labelled.is_sandbox


def test_join_through_cgroup_ids_host_and_container_modes() -> None:
    containers = [
        parse_container(summary(A, "a")),
        parse_container(summary(J, "joiner", mode=f"container:{A}", networks=())),
        parse_container(summary(H, "hostnet", mode="host", networks=("host",))),
        parse_container(summary(B, "lost")),
    ]
    placement = place(containers, {NS_A: [A, J]})
    assert placement.ns_of == {A: NS_A, J: NS_A}
    assert placement.host_network == {H}
    assert [c.name for c in placement.unplaced] == ["lost"]
    found = claims(containers, placement, HOST)
    by_ns = {(c.netns, c.workload.name): c for c in found}
    owner = by_ns[(NS_A, "a")]
    assert owner.priority == PRIORITY_RUNTIME
    assert owner.workload.containers == ("a", "joiner")
    assert owner.workload.container_ids == (A, J)
    assert owner.workload.networks == ("bridge",)
    assert (HOST, "hostnet") in by_ns and by_ns[(HOST, "hostnet")].workload.kind is WorkloadKind.DOCKER
    assert len(found) == 2  # the unplaced one is not claimed anywhere


def test_joiner_found_through_its_owner_and_by_name_reference() -> None:
    containers = [parse_container(summary(A, "a")), parse_container(summary(J, "j", mode="container:a"))]
    placement = place(containers, {NS_A: [A]})  # the joiner's processes were not seen
    assert placement.ns_of == {A: NS_A, J: NS_A}


def test_joiner_of_a_host_network_container_is_host_network() -> None:
    containers = [
        parse_container(summary(H, "h", mode="host")),
        parse_container(summary(J, "j", mode=f"container:{H[:12]}")),
    ]
    assert place(containers, {}).host_network == {H, J}


def test_dockershim_pod_claim() -> None:
    pod_labels = {
        "io.kubernetes.pod.name": "web",
        "io.kubernetes.pod.namespace": "prod",
        "io.kubernetes.pod.uid": "u1",
    }
    containers = [
        parse_container(
            summary(
                SANDBOX,
                "k8s_POD_web_prod_u1_0",
                labels={**pod_labels, "io.kubernetes.docker.type": "podsandbox"},
            )
        ),
        parse_container(
            summary(
                APP,
                "k8s_nginx_web_prod_u1_0",
                mode=f"container:{SANDBOX}",
                networks=(),
                labels={
                    **pod_labels,
                    "io.kubernetes.container.name": "nginx",
                    "io.kubernetes.docker.type": "container",
                },
            )
        ),
    ]
    found = claims(containers, place(containers, {NS_B: [SANDBOX, APP]}), HOST)
    assert len(found) == 1
    pod = found[0].workload
    assert (pod.kind, pod.name, pod.namespace, pod.uid, pod.id) == (
        WorkloadKind.POD,
        "web",
        "prod",
        "u1",
        SANDBOX,
    )
    assert pod.containers == ("nginx",) and pod.container_ids == (APP,) and pod.label == "pod/prod/web"


@pytest.mark.parametrize(
    ("option", "env", "expected"),
    [
        (None, None, "unix:///var/run/docker.sock"),
        (None, "unix:///run/user/1000/docker.sock", "unix:///run/user/1000/docker.sock"),
        ("/tmp/vpd.sock", "tcp://10.0.0.1:2375", "unix:///tmp/vpd.sock"),
        ("tcp://127.0.0.1:2375", None, "tcp://127.0.0.1:2375"),
    ],
)
def test_docker_host(option: str | None, env: str | None, expected: str) -> None:
    assert docker_source.docker_host(option, {"DOCKER_HOST": env} if env else {}) == expected
    assert docker_source.socket_path("tcp://x:1") is None


def test_no_socket_is_skipped_without_importing_docker(tmp_path: Any) -> None:
    """In a fresh interpreter, so that no other test has imported the SDK already."""
    code = f"""
import sys
from vethpeer.model import NsKey
from vethpeer.sources import Context, Options
from vethpeer.sources import docker as d
from vethpeer.sources import Paths
paths = Paths(docker_run_dir={str(tmp_path / "vpd-never")!r})
options = Options(docker_host={str(tmp_path / "vpd.sock")!r})
r = d.DockerNames().collect(Context(NsKey(1, 1), (), options, paths=paths))
print(r.status.state.value, "docker" in sys.modules, r.status.detail)
"""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split()[:2] == ["skipped", "False"], out.stdout
    assert "no socket at" in out.stdout


def test_no_socket_where_docker_ran_is_unavailable(tmp_path: Any) -> None:
    options = Options(docker_host=f"unix://{tmp_path}/vpd-none.sock")
    context = Context(HOST, (), options, paths=Paths(docker_run_dir=str(tmp_path)))
    assert docker_source.DockerNames().collect(context).status.state is SourceState.UNAVAILABLE


def test_refused_socket_is_unavailable(tmp_path: Any) -> None:
    import socket

    path = str(tmp_path / "vpd-dead.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)  # a socket file nobody listens on: what a crashed daemon leaves
    context = Context(HOST, (), Options(docker_host=f"unix://{path}", timeout=2))
    status = docker_source.DockerNames().collect(context).status
    assert status.state is SourceState.UNAVAILABLE, status
    assert "refused" in status.detail


def test_hung_daemon_is_a_timeout(tmp_path: Any) -> None:
    import socket
    import time

    path = str(tmp_path / "vpd-hung.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(8)  # accepts connections (kernel backlog) but never answers
        context = Context(HOST, (), Options(docker_host=f"unix://{path}", timeout=0.5))
        began = time.monotonic()
        status = docker_source.DockerNames().collect(context).status
        assert time.monotonic() - began < 2.0
    assert status.state is SourceState.TIMEOUT, status


# ---------------------------------------------------------------- the cgroup source's claims


def member(pid: int, runtime: str, cid: str | None, pod: str | None = None) -> cgroup_source.Member:
    return cgroup_source.Member(pid, cgroup.Identity(runtime, cid, pod_uid=pod))


GONE = 2**22 + 10  # no such PID: start times unknown, so PID order decides


def test_cgroup_docker_claim_shape() -> None:
    (claim,) = cgroup_source.claims_for(NS_A, [member(GONE, "docker", A)], host=False)
    w = claim.workload
    assert (w.kind, w.name, w.id, w.source, claim.priority) == (
        WorkloadKind.DOCKER,
        A[:12],
        A,
        "cgroup",
        PRIORITY_CGROUP,
    )


def test_cgroup_shared_namespace_owner_started_first() -> None:
    me = os.getpid()  # started long before the "joiner" (pid GONE: unknown start, sorts last)
    (claim,) = cgroup_source.claims_for(
        NS_A, [member(GONE, "docker", J), member(me, "docker", A)], host=False
    )
    assert claim.workload.id == A
    assert claim.workload.containers == (A[:12], J[:12])
    assert claim.workload.container_ids == (A, J)


def test_cgroup_pod_claim_shape_for_the_cri_fallback() -> None:
    uid = "0f7c2e1a-5b3d-4c6e-8f9a-1b2c3d4e5f60"
    found = cgroup_source.claims_for(
        NS_B,
        [member(GONE, "kubernetes", SANDBOX, uid), member(GONE + 1, "cri-containerd", APP, uid)],
        host=False,
    )
    (claim,) = found
    w = claim.workload
    assert (w.kind, w.name, w.uid, w.id, w.source, w.containers) == (
        WorkloadKind.POD,
        uid,
        uid,
        None,
        "cgroup",
        (),
    )
    assert w.container_ids == tuple(sorted((SANDBOX, APP)))
    assert claim.priority == PRIORITY_CGROUP


def test_cgroup_other_runtimes_are_containers() -> None:
    podman = cgroup_source.claims_for(NS_A, [member(GONE, "podman", A)], host=False)[0].workload
    assert (podman.kind, podman.name, podman.id) == (WorkloadKind.CONTAINER, f"podman:{A[:12]}", A)
    lxc = cgroup_source.claims_for(
        NS_B, [cgroup_source.Member(GONE, cgroup.Identity("lxc", "web1", name="web1"))], host=False
    )
    assert (lxc[0].workload.name, lxc[0].workload.label) == ("lxc:web1", "container/lxc:web1")


def test_cgroup_host_network_claims_skip_vms() -> None:
    found = cgroup_source.claims_for(
        HOST,
        [
            member(GONE, "docker", H),
            cgroup_source.Member(GONE + 1, cgroup.Identity("qemu", "vm1", name="vm1")),
        ],
        host=True,
    )
    assert [(c.netns, c.workload.name) for c in found] == [(HOST, H[:12])]


def answering_daemon(path: str, body: bytes) -> Any:
    """A unix socket that answers every request with ``body`` (HTTP/1.0, then closes)."""
    import socket
    import threading

    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_a_parsing_bug_reaches_the_bug_guard_with_its_traceback(tmp_path: Any) -> None:
    """Only the I/O is "unavailable": a KeyError while reading the answer is a bug, an ``error``."""
    from vethpeer.collect import guarded

    from .fakeproc import FakeProc

    path = str(tmp_path / "vqe-docker.sock")
    with answering_daemon(path, b'[{"Names": ["/vqe-no-id"]}]'):
        proc = str(FakeProc(tmp_path / "proc").root)
        context = Context(HOST, (), Options(docker_host=f"unix://{path}", timeout=2), proc=proc)
        source = docker_source.DockerNames(use_sdk=False)
        status = guarded("docker", lambda: source.collect(context), SourceResult, True).status
    assert status.state is SourceState.ERROR, status
    assert status.detail.startswith("KeyError: 'Id'") and "Traceback (most recent call last)" in status.detail


def test_the_variables_come_from_the_run_not_the_process(tmp_path: Any) -> None:
    """$DOCKER_HOST is read from the context's environ (the run's Environment), not os.environ:
    one named there is the only daemon asked, and an absent one is reported at its path."""
    environ = {"DOCKER_HOST": f"unix://{tmp_path}/vqe-env.sock"}
    paths = Paths(docker_run_dir=str(tmp_path / "vqe-never"))
    context = Context(HOST, (), Options(), proc=str(tmp_path / "vqe-proc"), environ=environ, paths=paths)
    status = docker_source.DockerNames().collect(context).status
    assert status.state is SourceState.SKIPPED and status.detail == f"no socket at {tmp_path}/vqe-env.sock"
