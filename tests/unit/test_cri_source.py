"""The CRI source's pure parts, and its statuses against real (non-CRI) unix sockets. No root needed."""

from __future__ import annotations

import filecmp
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from pathlib import Path

import pytest

from tests.lab import api_pb2 as pb
from tests.policy import need, need_binary
from vethpeer.model import NsKey, SourceState, SourceStatus, Workload, WorkloadKind
from vethpeer.sources import PRIORITY_RUNTIME, Context, Options, Paths, cri, cri_endpoints

ROOT = Path(__file__).resolve().parents[2]
HOST = NsKey(1, 1)


NO_PROC = "/nonexistent-vpr-proc"  # no processes: no kubelet or daemon sockets are discovered


def context(
    environ: dict[str, str] | None = None, sockets: Sequence[tuple[str, str]] | None = None, **options: object
) -> Context:
    """A run's context: no processes, the variables ``environ`` (none by default), the CRI
    sockets probed ``sockets`` (by default the usual ones) and nothing under /host."""
    paths = Paths(host_root="/nonexistent-vpr-host")
    if sockets is not None:
        paths = paths._replace(cri_sockets=tuple(sockets))
    return Context(HOST, (), Options(**options), proc=NO_PROC, environ=environ or {}, paths=paths)  # type: ignore[arg-type]


# ----------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [
        ("unix:///run/containerd/containerd.sock", "/run/containerd/containerd.sock"),
        ("unix:/run/crio/crio.sock", "/run/crio/crio.sock"),
        ("/var/run/cri-dockerd.sock", "/var/run/cri-dockerd.sock"),
        ("  unix:///x.sock ", "/x.sock"),
    ],
)
def test_socket_path(endpoint: str, path: str) -> None:
    assert cri_endpoints.socket_path(endpoint) == path


@pytest.mark.parametrize(
    "endpoint", ["tcp://127.0.0.1:1234", "npipe:////./pipe/x", "run/x.sock", "unix://x.sock"]
)
def test_socket_path_rejects(endpoint: str) -> None:
    with pytest.raises(cri_endpoints.EndpointError):
        cri_endpoints.socket_path(endpoint)


@pytest.fixture
def sockets(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Two bound unix sockets and a symlink to the first (like /var/run -> /run)."""
    made = {}
    listeners = []
    for name in ("a", "b"):
        path = str(tmp_path / f"{name}.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        listeners.append(s)
        made[name] = path
    os.symlink(tmp_path, tmp_path / "link")
    made["a-link"] = str(tmp_path / "link" / "a.sock")
    (tmp_path / "file").write_text("")
    made["file"] = str(tmp_path / "file")
    yield made
    for s in listeners:
        s.close()


def test_probe_order_dedupe_and_absent(sockets: dict[str, str]) -> None:
    table = [
        ("x", "/nonexistent/vpk.sock"),
        ("A", sockets["a"]),
        ("A again", sockets["a-link"]),
        ("B", sockets["b"]),
    ]
    found, why = cri_endpoints.candidates(context(sockets=table))
    assert [(c.path, c.why) for c in found] == [(sockets["a"], "A"), (sockets["b"], "B")]
    assert why == ""
    none, why = cri_endpoints.candidates(context(sockets=[("x", "/nonexistent/vpk.sock")]))
    assert none == [] and "no CRI socket found" in why and "/nonexistent/vpk.sock" in why


def test_explicit_endpoint_is_the_only_candidate(sockets: dict[str, str]) -> None:
    probed = [("A", sockets["a"])]
    found, _ = cri_endpoints.candidates(context(sockets=probed, runtime_endpoint=f"unix://{sockets['b']}"))
    assert [c.path for c in found] == [sockets["b"]]
    missing, why = cri_endpoints.candidates(context(sockets=probed, runtime_endpoint="/nonexistent/vpk.sock"))
    assert missing == [] and why == "/nonexistent/vpk.sock (from --runtime-endpoint): no such socket"
    _, why = cri_endpoints.candidates(context(runtime_endpoint=sockets["file"]))
    assert why.endswith("not a socket")
    environ = {cri_endpoints.ENV: f"unix://{sockets['a']}"}
    found, _ = cri_endpoints.candidates(context(environ, sockets=[("B", sockets["b"])]))
    assert [(c.path, c.why) for c in found] == [(sockets["a"], "$CONTAINER_RUNTIME_ENDPOINT")]
    found, _ = cri_endpoints.candidates(context(environ, runtime_endpoint=sockets["b"]))  # the flag wins
    assert [c.path for c in found] == [sockets["b"]]


# ----------------------------------------------------------------------- namespaces


def _info(path: str | None, pid: int, closed: bool = False) -> dict[str, object]:
    namespaces: list[dict[str, str]] = [{"type": "pid"}, {"type": "mount"}]
    if path is not None:
        namespaces.append({"type": "network", "path": path})
    return {
        "pid": pid,
        "netNamespaceClosed": closed,
        "runtimeSpec": {"linux": {"namespaces": namespaces}},
    }


def _key(path: str) -> NsKey:
    st = os.stat(path)
    return NsKey(st.st_dev, st.st_ino)


def test_sandbox_netns_prefers_the_path_then_the_pid() -> None:
    mine = _key("/proc/self/ns/net")
    assert cri.sandbox_netns(_info("/proc/self/ns/net", 0)) == mine
    assert cri.sandbox_netns(_info("/nonexistent/netns", os.getpid())) == mine
    assert cri.sandbox_netns(_info(None, os.getpid())) == mine  # hostNetwork-like spec: the process's
    # Stopped: containerd still reports the old path, with pid 0 and the namespace closed.
    assert cri.sandbox_netns(_info("/proc/self/ns/net", 0, closed=True)) is None
    assert cri.sandbox_netns({}) is None
    assert cri.sandbox_netns({"pid": "x", "runtimeSpec": []}) is None


def test_parse_info_tolerates_missing_and_bad_json() -> None:
    assert cri.parse_info({"info": '{"pid": 7}'}) == {"pid": 7}
    assert cri.parse_info({}) == {}
    assert cri.parse_info({"info": "not json"}) == {}
    assert cri.parse_info({"info": "[1]"}) == {}
    assert cri.netns_path(_info("/run/netns/cni-1", 1)) == "/run/netns/cni-1"
    assert cri.netns_path(_info(None, 1)) is None
    assert cri.has_network_namespace_entry(_info(None, 1)) is False
    assert cri.has_network_namespace_entry({}) is None


def test_containers_by_sandbox_names_once_ids_newest_first() -> None:
    def c(cid: str, sandbox: str, name: str, created: int) -> pb.Container:
        return pb.Container(
            id=cid, pod_sandbox_id=sandbox, metadata=pb.ContainerMetadata(name=name), created_at=created
        )

    grouped = cri._containers_by_sandbox(
        [
            c("c1", "s1", "app", 1),
            c("c2", "s1", "app", 5),
            c("c3", "s1", "sidecar", 2),
            c("c4", "s2", "db", 1),
        ]
    )
    assert grouped == {"s1": (("app", "sidecar"), ("c2", "c1", "c3")), "s2": (("db",), ("c4",))}


def test_claims_host_network_pods_claim_the_host() -> None:
    pod = Workload(WorkloadKind.POD, "p", id="s", namespace="n", source="cri")
    fetched = cri.Fetch(
        SourceStatus("cri", SourceState.OK),
        (
            cri.PodSandbox(pod, NsKey(1, 9), False),
            cri.PodSandbox(pod, None, True),
            cri.PodSandbox(pod, None, False),
        ),
    )
    assert [(c.netns, c.priority) for c in cri.claims(fetched, HOST)] == [
        (NsKey(1, 9), PRIORITY_RUNTIME),
        (HOST, PRIORITY_RUNTIME),
    ]


# --------------------------------------------------- statuses against real sockets


def test_no_socket(tmp_path: Path) -> None:
    result = cri.CriPods().collect(context(runtime_endpoint="/nonexistent/vpk.sock"))
    assert result.status.state is SourceState.ERROR  # named by the user: worth a warning
    assert result.claims == ()
    result = cri.CriPods().collect(context(sockets=[("containerd", str(tmp_path / "none.sock"))]))
    assert result.status.state is SourceState.SKIPPED  # probed, nothing, no pods: not a node
    assert result.status.detail.startswith("no CRI socket found (probed ")


def test_hung_socket_times_out(tmp_path: Path) -> None:
    path = str(tmp_path / "hung.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(8)  # the kernel accepts; nobody speaks HTTP/2
        started = time.monotonic()
        result = cri.fetch(context(runtime_endpoint=path, timeout=0.5))
        elapsed = time.monotonic() - started
    assert result.status.state is SourceState.TIMEOUT, result.status
    assert "no answer within 0.5 s" in result.status.detail
    assert elapsed < 3


def test_refused_socket_is_unavailable(tmp_path: Path) -> None:
    path = str(tmp_path / "dead.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()
    result = cri.fetch(context(runtime_endpoint=path, timeout=2))
    assert result.status.state is SourceState.ERROR
    assert result.status.detail == f"{path}: cannot connect: Connection refused"


def test_grpc_server_without_cri_is_unavailable_with_a_hint(tmp_path: Path) -> None:
    grpc = pytest.importorskip("grpc")
    path = str(tmp_path / "plain.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_insecure_port(f"unix://{path}")
    server.start()
    try:
        result = cri.fetch(context(runtime_endpoint=path, timeout=3))
    finally:
        server.stop(None)
    assert result.status.state is SourceState.ERROR
    assert "not the CRI runtime.v1 API" in result.status.detail
    assert "Docker's own containerd" in result.status.detail


def test_probing_tries_every_socket_found(tmp_path: Path) -> None:
    grpc = pytest.importorskip("grpc")
    dead = str(tmp_path / "dead.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(dead)
    s.close()
    plain = str(tmp_path / "plain.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_insecure_port(f"unix://{plain}")
    server.start()
    probed = [("containerd", dead), ("CRI-O", str(tmp_path / "none")), ("x", plain)]
    try:
        result = cri.fetch(context(sockets=probed, timeout=3))
    finally:
        server.stop(None)
    assert result.status.state is SourceState.UNAVAILABLE
    detail = result.status.detail
    assert detail.startswith(f"{dead}: cannot connect")
    assert f"; {plain} answers gRPC but not the CRI runtime.v1 API" in detail


def test_shared_fetch_asks_once_per_context(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    gate = threading.Event()

    def slow_fetch(ctx: Context) -> cri.Fetch:
        calls.append(ctx)
        gate.wait(5)
        return cri.Fetch(SourceStatus("cri", SourceState.OK, "fake"))

    monkeypatch.setattr(cri, "fetch", slow_fetch)
    ctx = context()
    results: list[cri.Fetch | None] = []
    threads = [threading.Thread(target=lambda: results.append(cri.shared_fetch(ctx))) for _ in range(3)]
    for t in threads:
        t.start()
    assert cri.shared_fetch(ctx, wait=0.05) is None  # still running elsewhere: do not wait past the budget
    gate.set()
    for t in threads:
        t.join(5)
    assert len(calls) == 1
    assert [r.status.detail if r else None for r in results] == ["fake"] * 3
    cri.shared_fetch(context())  # another gather(): asked again
    assert len(calls) == 2


# ------------------------------------------------------------------ generated code


GRPC_STUBS = ("tests/lab/api_pb2_grpc.py", "tests/lab/api_pb2_grpc.pyi")  # grpcio's: the tests' only


def test_generated_bindings_are_reproducible(tmp_path: Path) -> None:
    """`sh vethpeer/cri/regen.sh` regenerates byte-identical files from api.proto.

    The plugins are found next to this interpreter (the venv's bin), which need not be on PATH.
    """
    need(importlib.util.find_spec("grpc_tools") is not None, "needs grpcio-tools (test extra)")
    plugins = {
        "PROTOC_GEN_MYPY": need_binary("protoc-gen-mypy", python_tool=True),
        "PROTOC_GEN_MYPY_GRPC": need_binary("protoc-gen-mypy_grpc", python_tool=True),
    }
    copy = tmp_path / "vethpeer" / "cri"
    shutil.copytree(ROOT / "vethpeer" / "cri", copy, ignore=shutil.ignore_patterns("__pycache__"))
    generated = ("tests/lab/api_pb2.py", "tests/lab/api_pb2.pyi", *GRPC_STUBS)
    for name in generated:
        (tmp_path / name).unlink(missing_ok=True)
    env = {**os.environ, "PYTHON": sys.executable, **plugins}
    sh = need_binary("sh")
    done = subprocess.run([sh, str(copy / "regen.sh")], capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr
    for name in generated:
        assert filecmp.cmp(tmp_path / name, ROOT / name, shallow=False), (
            f"{name} differs from what regen.sh makes: run `sh vethpeer/cri/regen.sh` and commit"
        )


def test_the_package_ships_no_grpcio_stubs() -> None:
    """grpcio is a test dependency: its generated stubs live with the tests, not in the wheel."""
    assert not list((ROOT / "vethpeer").rglob("*_grpc.py*"))
    assert all((ROOT / name).is_file() for name in GRPC_STUBS)


def test_sandboxes_placed_by_their_pause_process_cgroup_need_no_status() -> None:
    """A sandbox ID named by the cgroups of one namespace's processes is placed there; named in
    two namespaces (a shim in the sandbox's cgroup, say), it is left to PodSandboxStatus."""
    from vethpeer.cgroup_path import Identity
    from vethpeer.sources.cgroup import Member

    pod_ns, other = NsKey(4, 500), NsKey(4, 501)
    ctx = context()
    scan = {
        HOST: (Member(10, Identity("containerd", "b" * 64)), Member(11, Identity("containerd", "c" * 64))),
        pod_ns: (Member(20, Identity("containerd", "a" * 64)),),
        other: (Member(30, Identity("containerd", "c" * 64)),),
    }
    ctx.memo.once("cgroup-scan", lambda: scan)
    placed = cri._placed_by_cgroup(ctx, ["a" * 64, "b" * 64, "c" * 64, "d" * 64])
    assert placed == {"a" * 64: pod_ns, "b" * 64: HOST}  # b: a host-network pod's pause
