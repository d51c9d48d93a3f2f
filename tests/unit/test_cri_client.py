"""vethpeer's unary gRPC client (vethpeer/cri/client.py) against a real grpcio server on a unix socket.

grpcio is the other end here (and the oracle against containerd in tests/integration/test_cri.py):
what the runtime would say, said by the reference implementation. The server's handlers are
plain functions, so each test makes it slow, large, failing or limited as it needs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest

from vethpeer.cri import api_pb2 as pb
from vethpeer.cri.client import Channel, Code, RpcError
from vethpeer.deadline import Deadline
from vethpeer.sources.cri import SERVICE

grpc = pytest.importorskip("grpc")

Handler = Callable[[Any, Any], Any]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """serve(Method=handler, ..., options=[...]) -> the socket path of a running grpcio server."""
    servers: list[Any] = []

    def start(options: tuple[tuple[str, Any], ...] = (), **handlers: Handler) -> str:
        path = str(tmp_path / f"vpcc-{len(servers)}.sock")
        methods = {
            name: grpc.unary_unary_rpc_method_handler(
                handler,
                request_deserializer=_request_type(name).FromString,
                response_serializer=lambda message: message.SerializeToString(),
            )
            for name, handler in handlers.items()
        }
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=list(options))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
        server.add_insecure_port(f"unix://{path}")
        server.start()
        servers.append(server)
        return path

    yield start
    for server in servers:
        server.stop(None)


def _request_type(method: str) -> Any:
    return getattr(pb, f"{method}Request")


def _version(_request: Any, _context: Any) -> Any:
    return pb.VersionResponse(version="0.1.0", runtime_name="vpcc-runtime", runtime_version="1.2.3")


def channel(path: str, seconds: float = 5.0, max_message: int = 1 << 20) -> Channel:
    return Channel(path, Deadline(seconds), service=SERVICE, max_message=max_message)


def test_a_call_and_its_reply(serve: Callable[..., str]) -> None:
    path = serve(Version=_version)
    with channel(path) as ch:
        reply = ch.call("Version", pb.VersionRequest(version="v1"), pb.VersionResponse)
    assert (reply.runtime_name, reply.runtime_version) == ("vpcc-runtime", "1.2.3")


def test_status_codes_and_messages_come_through(serve: Callable[..., str]) -> None:
    def not_found(request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.NOT_FOUND, f"no sandbox {request.pod_sandbox_id!r} (100% gone)")

    path = serve(PodSandboxStatus=not_found)
    with channel(path) as ch:
        with pytest.raises(RpcError) as failed:
            ch.call(
                "PodSandboxStatus",
                pb.PodSandboxStatusRequest(pod_sandbox_id="x"),
                pb.PodSandboxStatusResponse,
            )
        assert (failed.value.code, failed.value.details) == (Code.NOT_FOUND, "no sandbox 'x' (100% gone)")
        with pytest.raises(RpcError) as unknown:  # a method the server does not have
            ch.call("ListPodSandbox", pb.ListPodSandboxRequest(), pb.ListPodSandboxResponse)
        assert unknown.value.code is Code.UNIMPLEMENTED


def test_more_calls_than_the_server_takes_at_once_all_arrive(serve: Callable[..., str]) -> None:
    """The server allows 2 streams; 100 calls started together wait their turn, none is refused."""
    running, most = 0, 0
    lock = threading.Lock()

    def status(request: Any, _context: Any) -> Any:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.005)
        with lock:
            running -= 1
        return pb.PodSandboxStatusResponse(status=pb.PodSandboxStatus(id=request.pod_sandbox_id))

    path = serve(options=(("grpc.max_concurrent_streams", 2),), PodSandboxStatus=status)
    with channel(path, seconds=20) as ch:
        ch.call(
            "PodSandboxStatus",
            pb.PodSandboxStatusRequest(pod_sandbox_id="first"),
            pb.PodSandboxStatusResponse,
        )
        calls = [
            ch.start(
                "PodSandboxStatus",
                pb.PodSandboxStatusRequest(pod_sandbox_id=f"s{i}"),
                pb.PodSandboxStatusResponse,
            )
            for i in range(100)
        ]
        assert [c.result().status.id for c in calls] == [f"s{i}" for i in range(100)]
    assert most <= 2


def test_a_large_reply_arrives_whole_and_a_too_large_one_is_refused(serve: Callable[..., str]) -> None:
    """Replies beyond HTTP/2's 64 KiB default window (credit is given back); beyond max_message: no."""

    def many(_request: Any, _context: Any) -> Any:
        return pb.ListContainersResponse(containers=[pb.Container(id=f"{i:064d}") for i in range(20_000)])

    path = serve(ListContainers=many)
    with channel(path, max_message=8 << 20) as ch:
        reply = ch.call("ListContainers", pb.ListContainersRequest(), pb.ListContainersResponse)
    assert len(reply.containers) == 20_000 and reply.containers[-1].id == f"{19_999:064d}"
    with channel(path, max_message=100_000) as ch, pytest.raises(RpcError) as failed:
        ch.call("ListContainers", pb.ListContainersRequest(), pb.ListContainersResponse)
    assert failed.value.code is Code.RESOURCE_EXHAUSTED


def test_a_slow_server_costs_the_deadline_and_no_more(serve: Callable[..., str]) -> None:
    release = threading.Event()

    def slow(_request: Any, _context: Any) -> Any:
        release.wait(10)
        return _version(None, None)

    path = serve(Version=slow)
    started = time.monotonic()
    try:
        with channel(path, seconds=0.5) as ch, pytest.raises(RpcError) as failed:
            ch.call("Version", pb.VersionRequest(), pb.VersionResponse)
    finally:
        release.set()
    assert failed.value.code is Code.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2


def test_no_socket_and_a_refused_one_are_unavailable(tmp_path: Path) -> None:
    import socket

    dead = str(tmp_path / "vpcc-dead.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(dead)  # bound, never listening: refused
    for path, reason in ((str(tmp_path / "vpcc-none.sock"), "No such file"), (dead, "Connection refused")):
        with channel(path) as ch, pytest.raises(RpcError) as failed:
            ch.call("Version", pb.VersionRequest(), pb.VersionResponse)
        assert failed.value.code is Code.UNAVAILABLE
        assert failed.value.details.startswith("cannot connect: " + reason)


def test_a_server_that_hangs_up_fails_every_call_in_flight(tmp_path: Path) -> None:
    """Not a gRPC server at all: it reads the preface and closes. No call waits for the deadline."""
    import socket

    path = str(tmp_path / "vpcc-rude.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def rude() -> None:
        conn, _ = listener.accept()
        conn.recv(100)
        conn.close()

    thread = threading.Thread(target=rude, daemon=True)
    thread.start()
    try:
        with channel(path, seconds=5) as ch:
            calls = [ch.start("Version", pb.VersionRequest(), pb.VersionResponse) for _ in range(3)]
            for call in calls:
                with pytest.raises(RpcError) as failed:
                    call.result()
                assert failed.value.code is Code.UNAVAILABLE
    finally:
        thread.join(5)
        listener.close()
