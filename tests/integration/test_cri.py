"""Kubernetes pods through CRI, against a real containerd with the CRI plugin and CNI bridge networking.

The crilab (tests/crilab/cri_lab.py) starts its own containerd (``/run/vpk-containerd``), imports a
locally built pause image, and creates real pod sandboxes and containers through CRI. Every
expectation about interfaces is checked against the kernel's own view (``ip -j -d link``
inside the pod's namespace, and on the host).

Needs (apt): containerd, runc, containernetworking-plugins, busybox-static, iproute2, util-linux
(nsenter). pip: h2, protobuf, kubernetes (runtime deps), grpcio (the lab's client and the oracle).
The Kubernetes API tests at the end use a loopback stand-in server (tests/lab/kube_api.py): no
kube-apiserver can run here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab import cri_lab
from tests.lab.cri_lab import Containerd, Lab, Pod, host_link, link_in
from tests.policy import need, need_files

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _have_lab() -> None:
    need_files(cri_lab.BINARIES, cri_lab.INSTALL)
    need_files([cri_lab.BUSYBOX], "apt-get install busybox-static")


@pytest.fixture(scope="module")
def crilab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        need(False, "needs root (containerd, network namespaces)")
    _have_lab()
    with cri_lab.cri_lab() as the_lab:
        yield the_lab
    left = cri_lab.leftovers()
    assert not left, f"the CRI crilab left traces behind: {left}"


@pytest.fixture(scope="module")
def pods(crilab: Lab) -> dict[str, Pod]:
    """Four pods on vpkcni0 (two namespaces, one name used twice) and one hostNetwork pod."""
    return {
        "web1": crilab.run_pod("vpk-web-1", "vpk-a", containers=("app", "sidecar")),
        "web2": crilab.run_pod("vpk-web-2", "vpk-a", containers=("app",)),
        "db": crilab.run_pod("vpk-db", "vpk-b", containers=("postgres",)),
        "twin": crilab.run_pod("vpk-web-1", "vpk-b", containers=("app",)),  # same name, other namespace
        "hostnet": crilab.run_pod("vpk-hostnet", "vpk-a", host_network=True, containers=("agent",)),
    }


def cli(
    *args: str, endpoint: str | None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI; returns the CompletedProcess (stdout/stderr as text)."""
    argv = [sys.executable, "-m", "vethpeer"]
    if endpoint is not None:
        argv += ["--runtime-endpoint", endpoint]
    full_env = {k: v for k, v in os.environ.items() if k not in ("CONTAINER_RUNTIME_ENDPOINT", "KUBECONFIG")}
    full_env["HOME"] = "/nonexistent-vpk-home"  # no ~/.kube/config: the kube source stays off
    full_env["NO_COLOR"] = "1"
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.run(
        argv + list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=full_env,
        check=False,
    )


def report(crilab: Lab, *args: str, endpoint: str | None = None) -> dict[str, Any]:
    done = cli("table", "--json", *args, endpoint=endpoint or crilab.containerd.endpoint)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def source(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in data["sources"] if s["name"] == name)


def rows_of(data: dict[str, Any], pod: Pod) -> list[dict[str, Any]]:
    return [i for i in data["interfaces"] if i["workload"]["kind"] == "pod" and i["workload"]["id"] == pod.id]


def container_ids(crilab: Lab, pod: Pod) -> list[str]:
    pb = crilab.client.pb
    reply = crilab.client.stub.ListContainers(
        pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pod.id)), timeout=10
    )
    return [c.id for c in reply.containers]


# --------------------------------------------------------------------------- the table


def test_every_pod_on_the_bridge_has_its_exact_peer(crilab: Lab, pods: dict[str, Pod]) -> None:
    data = report(crilab)
    assert source(data, "cri")["status"] == "ok", source(data, "cri")
    assert "containerd" in source(data, "cri")["detail"]
    peers = set()
    for key in ("web1", "web2", "db", "twin"):
        pod = pods[key]
        rows = rows_of(data, pod)
        assert [r["ifname"] for r in rows] == ["eth0"], rows
        row = rows[0]
        kernel = link_in(crilab.netns_paths[pod.id])  # ip -j -d link inside the pod
        assert row["ifindex"] == kernel["ifindex"] == 2  # every pod's eth0: the number says nothing
        host_peer = host_link(kernel["link_index"])
        assert host_peer is not None and host_peer["ifname"].startswith("veth")
        assert row["peer"]["ifname"] == host_peer["ifname"]
        assert row["peer"]["ifindex"] == kernel["link_index"]
        assert row["peer"]["master"] == cri_lab.BRIDGE == host_peer["master"]
        assert row["peer"]["netns"]["is_host"] is True
        assert row["mac"] == kernel["address"]
        peers.add(row["peer"]["ifname"])
        w = row["workload"]
        assert (w["name"], w["namespace"], w["uid"], w["source"]) == (pod.name, pod.namespace, pod.uid, "cri")
        assert row["netns"]["inode"] == os.stat(crilab.netns_paths[pod.id]).st_ino
    assert len(peers) == 4  # four pods, four different host veths
    web1 = rows_of(data, pods["web1"])[0]["workload"]
    assert web1["containers"] == ["app", "sidecar"]
    assert sorted(web1["container_ids"]) == sorted(container_ids(crilab, pods["web1"]))


def test_host_network_pod_is_listed_apart_never_on_a_row(crilab: Lab, pods: dict[str, Pod]) -> None:
    data = report(crilab)
    hostnet = pods["hostnet"]
    shared = [w for w in data["workloads"] if w["host_network"] and w["workload"]["id"] == hostnet.id]
    assert len(shared) == 1 and shared[0]["workload"]["name"] == "vpk-hostnet"
    assert not [i for i in data["interfaces"] if i["workload"]["id"] == hostnet.id]
    assert not [
        i for i in data["interfaces"] if (i["peer"] or {}).get("workload", {}).get("id") == hostnet.id
    ]
    done = cli("which", "vpk-hostnet", endpoint=crilab.containerd.endpoint)
    assert done.returncode == 0, done.stderr
    assert "pod/vpk-a/vpk-hostnet shares the host network namespace" in done.stdout


def test_table_has_kubectl_columns_and_namespace_filter(crilab: Lab, pods: dict[str, Pod]) -> None:
    done = cli("table", "-n", "vpk-b", endpoint=crilab.containerd.endpoint)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "POD"]
    body = [line for line in lines[1:] if line.startswith("vpk-")]
    assert sorted(line.split()[1] for line in body) == ["vpk-db", "vpk-web-1"]
    assert all(line.split()[0] == "vpk-b" for line in body)
    assert "vpk-hostnet" not in done.stdout  # a host-network pod of another namespace
    in_a = cli("table", "-n", "vpk-a", endpoint=crilab.containerd.endpoint)
    assert "sharing the host network namespace (no veth of their own): pod/vpk-a/vpk-hostnet" in in_a.stdout
    which = cli("which", "vpk-web-2", endpoint=crilab.containerd.endpoint)
    assert which.returncode == 0 and "vpk-hostnet" not in which.stdout  # not what was asked
    everything = cli("table", "-A", endpoint=crilab.containerd.endpoint)
    assert everything.returncode == 0
    for pod in ("vpk-web-1", "vpk-web-2", "vpk-db"):
        assert pod in everything.stdout


# --------------------------------------------------------------------------- which


def _host_veth(crilab: Lab, pod: Pod) -> str:
    peer = host_link(link_in(crilab.netns_paths[pod.id])["link_index"])
    assert peer is not None
    return str(peer["ifname"])


@pytest.mark.parametrize(
    ("target", "extra", "key"),
    [
        ("vpk-web-2", (), "web2"),  # a unique pod name, no namespace needed
        ("vpk-a/vpk-web-1", (), "web1"),  # NS/NAME
        ("pod/vpk-web-1", ("-n", "vpk-b"), "twin"),  # pod/NAME -n NS
        ("vpk-web-1", ("--namespace", "vpk-a"), "web1"),
        ("pod/vpk-b/vpk-db", (), "db"),  # the label
    ],
)
def test_which_by_name(
    crilab: Lab, pods: dict[str, Pod], target: str, extra: tuple[str, ...], key: str
) -> None:
    done = cli("which", target, "-q", *extra, endpoint=crilab.containerd.endpoint)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [_host_veth(crilab, pods[key])]


def test_which_by_sandbox_and_container_id(crilab: Lab, pods: dict[str, Pod]) -> None:
    db = pods["db"]
    expected = [_host_veth(crilab, db)]
    for target in (db.id, db.id[:10], *container_ids(crilab, db), container_ids(crilab, db)[0][:12]):
        done = cli("which", target, "-q", endpoint=crilab.containerd.endpoint)
        assert done.returncode == 0, (target, done.stderr)
        assert done.stdout.split() == expected, target


def test_which_ambiguous_name_lists_candidates(crilab: Lab, pods: dict[str, Pod]) -> None:
    done = cli("which", "vpk-web-1", endpoint=crilab.containerd.endpoint)
    assert done.returncode == 4, (done.stdout, done.stderr)
    assert "pod/vpk-a/vpk-web-1" in done.stderr and "pod/vpk-b/vpk-web-1" in done.stderr
    assert done.stderr.count("\n") == 1  # one line, no traceback


def test_which_json_has_the_pod(crilab: Lab, pods: dict[str, Pod]) -> None:
    done = cli("which", "vpk-db", "--json", endpoint=crilab.containerd.endpoint)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [i["workload"]["name"] for i in data["interfaces"]] == ["vpk-db"]
    assert data["interfaces"][0]["workload"]["label"] == "pod/vpk-b/vpk-db"


def test_which_pod_imports_no_protobuf(crilab: Lab, pods: dict[str, Pod]) -> None:
    """The messages are read by hand (vethpeer/cri/messages.py): protobuf's import was half the CPU
    of the thread `which POD` waits for last (docs/benchmarks.md); only the tests import it."""
    argv = [sys.executable, "-X", "importtime", "-m", "vethpeer", "--runtime-endpoint"]
    env = {k: v for k, v in os.environ.items() if k not in ("CONTAINER_RUNTIME_ENDPOINT", "KUBECONFIG")}
    env.update(HOME="/nonexistent-vpk-home", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [*argv, crilab.containerd.endpoint, "which", "vpk-db", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [_host_veth(crilab, pods["db"])]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "import time" in line}
    assert "h2.connection" in imported and "vethpeer.cri.messages" in imported
    assert not {m for m in imported if m.startswith("google")}, sorted(imported)


def _by_id(items: Any) -> dict[str, Any]:
    """A list reply's items by ID (the runtime lists them in no set order)."""
    return {item.id: item for item in items}


def test_our_grpc_client_agrees_with_grpcio(crilab: Lab, pods: dict[str, Pod]) -> None:
    """vethpeer's own unary gRPC client (vethpeer/cri/client.py, on h2) against grpcio, the oracle.

    The same calls on the same runtime give the same messages, and the same status codes
    when they fail.
    """
    import grpc

    from tests.lab import api_pb2 as pb
    from vethpeer.cri.client import Channel, RpcError
    from vethpeer.deadline import Deadline
    from vethpeer.sources.cri import MAX_MESSAGE, SERVICE

    path = crilab.containerd.socket
    with (
        cri_lab.CriClient(path) as oracle,
        Channel(path, Deadline(10), service=SERVICE, max_message=MAX_MESSAGE) as ours,
    ):
        assert ours.call("Version", pb.VersionRequest(version="v1"), pb.VersionResponse) == oracle.version()
        every = pb.ListPodSandboxRequest()
        sandboxes = oracle.stub.ListPodSandbox(every, timeout=10).items
        assert _by_id(ours.call("ListPodSandbox", every, pb.ListPodSandboxResponse).items) == _by_id(
            sandboxes
        )
        all_containers = pb.ListContainersRequest()
        got = ours.call("ListContainers", all_containers, pb.ListContainersResponse).containers
        assert _by_id(got) == _by_id(oracle.stub.ListContainers(all_containers, timeout=10).containers)
        ids = [s.id for s in sandboxes]
        assert len(ids) >= len(pods)
        requests = [pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True) for sid in ids]
        calls = [ours.start("PodSandboxStatus", r, pb.PodSandboxStatusResponse) for r in requests]  # at once
        for request, call in zip(requests, calls, strict=True):
            got, want = call.result(), oracle.stub.PodSandboxStatus(request, timeout=10)
            assert got.status == want.status
            assert {k: json.loads(v) for k, v in got.info.items()} == {
                k: json.loads(v) for k, v in want.info.items()
            }
        missing = pb.PodSandboxStatusRequest(pod_sandbox_id="vpk-no-such-sandbox")
        with pytest.raises(RpcError) as ours_failed:
            ours.call("PodSandboxStatus", missing, pb.PodSandboxStatusResponse)
        with pytest.raises(grpc.RpcError) as oracle_failed:
            oracle.stub.PodSandboxStatus(missing, timeout=10)
        assert ours_failed.value.code.name == oracle_failed.value.code().name == "NOT_FOUND"
        assert ours_failed.value.details == oracle_failed.value.details()


class Raw:
    """A reply type that keeps the bytes: each is then read by both ours and protobuf."""

    @staticmethod
    def FromString(data: bytes) -> bytes:  # protobuf's name
        return bytes(data)


def test_our_messages_read_the_runtimes_replies_as_protobuf_does(crilab: Lab, pods: dict[str, Pod]) -> None:
    """vethpeer/cri/messages.py against api_pb2, the oracle, on containerd's own replies
    (annotations, images, networks, container statuses: the fields ours skips are all there);
    and its requests are protobuf's bytes."""
    from tests.lab import api_pb2 as pb
    from tests.messages_oracle import same
    from vethpeer.cri import messages
    from vethpeer.cri.client import Channel
    from vethpeer.deadline import Deadline
    from vethpeer.sources.cri import MAX_MESSAGE, SERVICE

    ready = messages.PodSandboxFilter(state=messages.PodSandboxStateValue(state=messages.SANDBOX_READY))
    oracle_ready = pb.PodSandboxFilter(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY))
    requests = [
        ("Version", messages.VersionRequest(version="v1"), pb.VersionRequest(version="v1")),
        ("ListPodSandbox", messages.ListPodSandboxRequest(), pb.ListPodSandboxRequest()),
        (
            "ListPodSandbox",
            messages.ListPodSandboxRequest(filter=ready),
            pb.ListPodSandboxRequest(filter=oracle_ready),
        ),
        ("ListContainers", messages.ListContainersRequest(), pb.ListContainersRequest()),
    ]
    with Channel(crilab.containerd.socket, Deadline(10), service=SERVICE, max_message=MAX_MESSAGE) as channel:
        replies = []
        for method, mine, theirs in requests:
            assert mine.SerializeToString() == theirs.SerializeToString()
            replies.append((f"{method}Response", channel.call(method, mine, Raw)))
        sandboxes = pb.ListPodSandboxResponse.FromString(replies[1][1]).items
        assert len(sandboxes) >= len(pods)
        for sandbox in sandboxes:
            request = messages.PodSandboxStatusRequest(pod_sandbox_id=sandbox.id, verbose=True)
            oracle = pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox.id, verbose=True)
            assert request.SerializeToString() == oracle.SerializeToString()
            replies.append(("PodSandboxStatusResponse", channel.call("PodSandboxStatus", request, Raw)))
    assert any(pb.ListContainersResponse.FromString(replies[3][1]).containers)
    for name, raw in replies:
        same(getattr(messages, name).FromString(raw), getattr(pb, name).FromString(raw))


# ------------------------------------------------------------------ lifecycle


def test_stopped_and_recreated_pod_only_the_ready_sandbox_counts(crilab: Lab, pods: dict[str, Pod]) -> None:
    first = crilab.run_pod("vpk-again", "vpk-c", containers=("app",))
    crilab.client.stop_pod(first.id)  # NOTREADY; containerd still reports its old netns path
    assert crilab.client.pod_info(first.id)["pid"] == 0
    data = report(crilab)
    assert not [w for w in data["workloads"] if w["workload"]["id"] == first.id]
    assert not rows_of(data, first)
    which = cli("which", "vpk-again", endpoint=crilab.containerd.endpoint)
    assert which.returncode == 3, which.stdout  # not found: the stopped pod is gone

    second = crilab.run_pod("vpk-again", "vpk-c", containers=("app",))  # the pod "recreated"
    data = report(crilab)
    named = [w["workload"]["id"] for w in data["workloads"] if w["workload"]["name"] == "vpk-again"]
    assert named == [second.id]
    assert [r["ifname"] for r in rows_of(data, second)] == ["eth0"]
    crilab.remove_pod(first)
    crilab.remove_pod(second)
    data = report(crilab)
    assert not [w for w in data["workloads"] if w["workload"]["name"] == "vpk-again"]


# ------------------------------------------------------------------ failures are statuses


def test_wrong_runtime_endpoint_is_a_clear_status(crilab: Lab, pods: dict[str, Pod]) -> None:
    missing = "unix:///run/vpk-no-such.sock"
    started = time.monotonic()
    data = report(crilab, endpoint=missing)
    assert time.monotonic() - started < 10
    cri = source(data, "cri")
    assert cri["status"] == "error"  # the user named it: an error, with a warning on stderr
    assert cri["detail"] == "/run/vpk-no-such.sock (from --runtime-endpoint): no such socket"
    assert not [w for w in data["workloads"] if w["workload"]["source"] == "cri"]
    plain = cli("table", endpoint=missing)
    assert plain.returncode == 0
    assert (
        "warning: cri: error: /run/vpk-no-such.sock (from --runtime-endpoint): no such socket" in plain.stderr
    )
    strict = cli("table", "--strict", endpoint=missing)
    assert strict.returncode == 7, strict.stderr
    assert "cri" in strict.stderr and "Traceback" not in strict.stderr

    env_only = cli("table", "--json", endpoint=None, env={"CONTAINER_RUNTIME_ENDPOINT": missing})
    assert env_only.returncode == 0
    assert "$CONTAINER_RUNTIME_ENDPOINT" in source(json.loads(env_only.stdout), "cri")["detail"]

    tcp = cli("table", "--json", endpoint="tcp://127.0.0.1:1")
    assert tcp.returncode == 0
    assert "only unix sockets" in source(json.loads(tcp.stdout), "cri")["detail"]


def test_env_endpoint_is_used(crilab: Lab, pods: dict[str, Pod]) -> None:
    done = cli(
        "table", "--json", endpoint=None, env={"CONTAINER_RUNTIME_ENDPOINT": crilab.containerd.endpoint}
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert source(data, "cri")["status"] == "ok"
    assert rows_of(data, pods["db"])


def test_containerd_without_cri_like_dockers_is_a_clear_status(crilab: Lab) -> None:
    plain = Containerd(name="vpk-nocri", cri=False)
    try:
        plain.start()
        data = report(crilab, endpoint=plain.endpoint)
    finally:
        plain.destroy()
    cri = source(data, "cri")
    assert cri["status"] == "error"
    assert "not the CRI runtime.v1 API" in cri["detail"] and "CRI plugin disabled" in cri["detail"]


def test_hung_socket_times_out_within_the_timeout(crilab: Lab) -> None:
    path = f"/run/vpk-hung-{uuid.uuid4().hex[:8]}.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(16)  # accepts into the backlog, never answers
        started = time.monotonic()
        done = cli("--timeout", "1", "table", "--json", endpoint=path)
        elapsed = time.monotonic() - started
    finally:
        listener.close()
        os.unlink(path)
    assert done.returncode == 0, done.stderr
    cri = source(json.loads(done.stdout), "cri")
    assert cri["status"] == "timeout", cri
    assert elapsed < 6
    assert "warning: cri: timeout" in done.stderr


def test_refused_socket_is_unavailable(crilab: Lab) -> None:
    path = f"/run/vpk-dead-{uuid.uuid4().hex[:8]}.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # the file stays, nobody listens: ECONNREFUSED
    try:
        data = report(crilab, endpoint=path)
    finally:
        os.unlink(path)
    cri = source(data, "cri")
    assert cri["status"] == "error" and f"{path}: cannot connect: Connection refused" in cri["detail"], cri


def test_cri_socket_gone_cgroup_fallback_names_the_pod_uid(crilab: Lab, pods: dict[str, Pod]) -> None:
    """containerd stopped: the pods keep running (their shims do), and their cgroups still name them."""
    crilab.containerd.stop()
    try:
        assert not os.path.exists(crilab.containerd.socket) or not _answers(crilab.containerd.socket)
        data = report(crilab)
        cri = source(data, "cri")
        assert cri["status"] == "error" and "no such socket" in cri["detail"], cri
        for key in ("web1", "db"):
            pod = pods[key]
            inode = os.stat(crilab.netns_paths[pod.id]).st_ino
            rows = [i for i in data["interfaces"] if i["netns"]["inode"] == inode]
            assert [r["ifname"] for r in rows] == ["eth0"]
            w = rows[0]["workload"]
            assert (w["kind"], w["name"], w["uid"], w["source"]) == ("pod", pod.uid, pod.uid, "cgroup")
            done = cli("which", pod.uid, "-q", endpoint=crilab.containerd.endpoint)
            assert done.returncode == 0, done.stderr
            assert done.stdout.split() == [_host_veth(crilab, pod)]
    finally:
        crilab.containerd.start()  # same root and state: it finds its pods again
        crilab.reconnect()
    data = report(crilab)
    assert source(data, "cri")["status"] == "ok"
    assert rows_of(data, pods["db"])[0]["workload"]["source"] == "cri"


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def test_the_grpc_client_is_not_imported_without_a_socket() -> None:
    code = (
        "import sys; from vethpeer.sources import Context, Options, cri\n"
        "from vethpeer.netns import discover\n"
        "d = discover()\n"
        "o = Options(runtime_endpoint='/run/vpk-none.sock')\n"
        "r = cri.CriPods().collect(Context(d.host, d.namespaces, o))\n"
        "print(r.status.state.value, any(m in sys.modules for m in ('h2', 'google.protobuf', 'grpc')))\n"
    )
    with tempfile.TemporaryDirectory(prefix="vpk-") as tmp:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "HOME": tmp},
        )
    assert done.stdout.split() == ["error", "False"], done.stderr


# ------------------------------------------- the Kubernetes API (stand-in server, see below)
#
# No kube-apiserver can run on the machines these tests run on (no binary on any reachable
# package registry), so the API is a stand-in: tests/crilab/kube_api.py serves real-shaped v1
# Pod / PodList / ReplicaSet / Job / Status documents on loopback, reached through an
# ordinary kubeconfig by the real `kubernetes` client.

NODE = "vpk-node"


def _api_pods(crilab: Lab, pods: dict[str, Pod]) -> list[dict[str, Any]]:
    from tests.lab.kube_api import pod_json

    def ip(pod: Pod) -> str | None:
        if pod.host_network:
            return "192.0.2.10"
        out = subprocess.run(
            [
                "nsenter",
                f"--net={crilab.netns_paths[pod.id]}",
                "ip",
                "-j",
                "-4",
                "addr",
                "show",
                "dev",
                "eth0",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return str(json.loads(out.stdout)[0]["addr_info"][0]["local"])

    owners: dict[str, tuple[str, str] | None] = {
        "web1": ("ReplicaSet", "vpk-web-5d9f8c7b6"),
        "web2": None,
        "db": ("StatefulSet", "vpk-db"),
        "twin": ("Job", "vpk-job-28571234"),
        "hostnet": ("DaemonSet", "vpk-agent"),
    }
    found = []
    for key, pod in pods.items():
        names = [c.metadata.name for c in _containers(crilab, pod)]
        ids = {c.metadata.name: c.id for c in _containers(crilab, pod)}
        found.append(
            pod_json(
                pod.name,
                pod.namespace,
                pod.uid,
                node=NODE,
                pod_ip=ip(pod),
                containers={n: ids[n] for n in sorted(names)},
                owner=owners[key],
                host_network=pod.host_network,
            )
        )
    found.append(
        pod_json("vpk-elsewhere", "vpk-a", str(uuid.uuid4()), node="vpk-other-node", pod_ip="10.9.9.9")
    )
    return found


def _containers(crilab: Lab, pod: Pod) -> list[Any]:
    pb = crilab.client.pb
    return list(
        crilab.client.stub.ListContainers(
            pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pod.id)), timeout=10
        ).containers
    )


@pytest.fixture()
def api(crilab: Lab, pods: dict[str, Pod]) -> Iterator[Any]:
    need(
        importlib.util.find_spec("kubernetes") is not None,
        "needs the kubernetes client (pip install kubernetes)",
    )
    from tests.lab.kube_api import api_server, controller_json

    controllers = {
        ("vpk-a", "ReplicaSet", "vpk-web-5d9f8c7b6"): controller_json(
            "ReplicaSet", "vpk-web-5d9f8c7b6", "vpk-a", ("Deployment", "vpk-web")
        ),
        ("vpk-b", "Job", "vpk-job-28571234"): controller_json(
            "Job", "vpk-job-28571234", "vpk-b", ("CronJob", "vpk-job")
        ),
    }
    with api_server(pods=_api_pods(crilab, pods), controllers=controllers) as server:
        yield server


def test_kube_enrichment_node_pod_ip_owner(crilab: Lab, pods: dict[str, Pod], api: Any) -> None:
    with api.kubeconfig() as kubeconfig:
        # A generous deadline: the stand-in answers at once, but on a loaded machine importing the
        # kubernetes client alone (inside the source's deadline) has taken 1.8 s.
        done = cli(
            "--kube",
            "--timeout",
            "10",
            "table",
            "--json",
            endpoint=crilab.containerd.endpoint,
            env={"KUBECONFIG": kubeconfig},
        )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    kube = source(data, "kube")
    assert kube["status"] == "ok", kube
    assert kube["detail"].startswith(f"node {NODE}: 5 of its 5 pods found here")
    by_id = {i["workload"]["id"]: i["workload"] for i in data["interfaces"] if i["workload"]["kind"] == "pod"}
    api_pods = {p["metadata"]["uid"]: p for p in api.pods}
    for key, owner in (
        ("web1", "Deployment/vpk-web"),
        ("web2", None),
        ("db", "StatefulSet/vpk-db"),
        ("twin", "CronJob/vpk-job"),
    ):
        pod = pods[key]
        w = by_id[pod.id]  # still the sandbox ID, name, namespace from the runtime
        assert (w["source"], w["name"], w["namespace"], w["uid"]) == (
            "kube",
            pod.name,
            pod.namespace,
            pod.uid,
        )
        assert w["node"] == NODE and w["owner"] == owner
        assert w["pod_ip"] == api_pods[pod.uid]["status"]["podIP"]
        row = rows_of(data, pod)[0]
        assert row["addresses"][0].split("/")[0] == w["pod_ip"]  # the API and the kernel agree
    hostnet = [
        w["workload"] for w in data["workloads"] if w["host_network"] and w["workload"]["source"] == "kube"
    ]
    assert [(w["name"], w["owner"], w["id"]) for w in hostnet] == [
        ("vpk-hostnet", "DaemonSet/vpk-agent", pods["hostnet"].id)
    ]
    assert not [w for w in data["workloads"] if w["workload"]["name"] == "vpk-elsewhere"]
    # The hostname is not the node name here: the node was learnt from one local pod.
    assert api.requests[0].startswith("/api/v1/pods?fieldSelector=spec.nodeName%3D")
    assert any(r.startswith("/api/v1/namespaces/") for r in api.requests)
    assert f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE}" in api.requests
    assert set(api.authorizations) == {"Bearer vpk-token"}


def test_kube_node_name_from_env_and_auto_default(crilab: Lab, pods: dict[str, Pod], api: Any) -> None:
    with api.kubeconfig() as kubeconfig:  # no --kube: a kubeconfig and a CRI endpoint turn it on
        done = cli(
            "which",
            "vpk-web-2",
            "--json",
            endpoint=crilab.containerd.endpoint,
            env={"KUBECONFIG": kubeconfig, "NODE_NAME": NODE},
        )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert source(data, "kube")["status"] == "ok"
    assert [i["workload"]["node"] for i in data["interfaces"]] == [NODE]
    assert [r for r in api.requests if r.startswith("/api/v1/pods")] == [
        f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE}"
    ]
    api.requests.clear()
    with api.kubeconfig() as kubeconfig:
        off = cli(
            "--no-kube",
            "table",
            "--json",
            endpoint=crilab.containerd.endpoint,
            env={"KUBECONFIG": kubeconfig},
        )
    assert source(json.loads(off.stdout), "kube")["status"] == "skipped"
    assert api.requests == []
    nothing = cli("table", "--json", endpoint=crilab.containerd.endpoint)  # HOME without ~/.kube
    assert source(json.loads(nothing.stdout), "kube")["status"] == "skipped"
    forced = cli("--kube", "table", "--json", endpoint=crilab.containerd.endpoint)
    assert source(json.loads(forced.stdout), "kube")["status"] == "unavailable"
    assert "no kubeconfig" in source(json.loads(forced.stdout), "kube")["detail"]


@pytest.mark.parametrize("mode", ["unreachable", "forbidden", "hang"])
def test_kube_api_failure_is_a_status_and_changes_nothing_else(
    crilab: Lab, pods: dict[str, Pod], api: Any, mode: str
) -> None:
    baseline = report(crilab)
    if mode == "unreachable":
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()
        url = f"http://127.0.0.1:{port}"  # nobody listens there: connection refused
    else:
        api.mode = mode
        url = api.url
    with api.kubeconfig() as kubeconfig:
        Path(kubeconfig).write_text(Path(kubeconfig).read_text().replace(api.url, url))
        started = time.monotonic()
        # Only the hung API must time out; the others answer at once, and a generous deadline keeps
        # a loaded machine (the kubernetes import alone has taken 1.8 s) from turning them into timeouts.
        done = cli(
            "--kube",
            "--timeout",
            "1.5" if mode == "hang" else "6",
            "table",
            "--json",
            endpoint=crilab.containerd.endpoint,
            env={"KUBECONFIG": kubeconfig},
        )
        elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    kube = source(data, "kube")
    expected = {"unreachable": "unavailable", "forbidden": "unavailable", "hang": "timeout"}[mode]
    assert kube["status"] == expected, kube
    if mode == "forbidden":
        assert "403" in kube["detail"] and "forbidden" in kube["detail"]
    assert elapsed < 8

    def named(d: dict[str, Any]) -> list[tuple[str, str, str]]:  # our pods only: others come and go
        ours = [i for i in d["interfaces"] if (i["workload"]["namespace"] or "").startswith("vpk-")]
        return sorted((i["ifname"], i["workload"]["id"], i["workload"]["name"]) for i in ours)

    assert named(data) == named(baseline) and len(named(data)) == 4
    assert source(data, "cri")["status"] == "ok"
