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

from tests.lab import api_pb2 as pb
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

    error, took = failing_call(serve(Version=slow), 0.5, release.set)
    assert error.code is Code.DEADLINE_EXCEEDED
    assert took < 2


def failing_call(path: str, seconds: float, cleanup: Callable[[], None]) -> tuple[RpcError, float]:
    """A Version call that must fail: its error and the seconds it took; ``cleanup`` after it."""
    started = time.monotonic()
    try:
        with channel(path, seconds=seconds) as ch, pytest.raises(RpcError) as failed:
            ch.call("Version", pb.VersionRequest(), pb.VersionResponse)
    finally:
        cleanup()
    return failed.value, time.monotonic() - started


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


def test_a_request_larger_than_the_window_and_a_frame(serve: Callable[..., str]) -> None:
    """200 KB: more than HTTP/2's 64 KiB initial window and its 16 KiB frames; sent as credit comes."""

    def status(request: Any, _context: Any) -> Any:
        return pb.PodSandboxStatusResponse(status=pb.PodSandboxStatus(id=str(len(request.pod_sandbox_id))))

    path = serve(PodSandboxStatus=status)
    big = pb.PodSandboxStatusRequest(pod_sandbox_id="x" * 200_000)
    with channel(path) as ch:
        calls = [ch.start("PodSandboxStatus", big, pb.PodSandboxStatusResponse) for _ in range(3)]
        assert [call.result().status.id for call in calls] == ["200000"] * 3


# ---------------------------------------------------------------- a raw HTTP/2 server, for what grpcio
# will not do on demand: trickle, refuse every stream, send GOAWAY between calls.


class RawServer:
    """One connection, served by ``handle(conn, event)`` and ``tick(conn)`` every 5 ms (h2, server side)."""

    def __init__(
        self,
        path: str,
        handle: Callable[[Any, Any], None],
        tick: Callable[[Any], None] = lambda conn: None,
    ) -> None:
        import socket

        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(path)
        self.listener.listen(1)
        self.handle, self.tick = handle, tick
        self.stop = threading.Event()
        self.raw: list[bytes] = []  # bytes to write before h2's own (frames h2 would not send)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import h2.config
        import h2.connection

        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        sock.settimeout(0.005)
        with sock:
            while not self.stop.is_set():
                try:
                    data = sock.recv(1 << 16)
                    if not data:
                        return
                    for event in conn.receive_data(data):
                        self.handle(conn, event)
                except TimeoutError:
                    self.tick(conn)
                except OSError:
                    return
                try:
                    while self.raw:
                        sock.sendall(self.raw.pop(0))
                    sock.sendall(conn.data_to_send())
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)


def _reply(conn: Any, stream: int, message: Any) -> None:
    body = message.SerializeToString()
    conn.send_headers(stream, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    conn.send_data(stream, b"\0" + len(body).to_bytes(4, "big") + body)
    conn.send_headers(stream, [(b"grpc-status", b"0")], end_stream=True)


def test_a_trickling_server_cannot_keep_a_call_past_its_deadline(tmp_path: Path) -> None:
    """Headers, then a byte of body every 5 ms, never the end: the deadline ends the call."""
    import h2.events

    path = str(tmp_path / "vqd-trickle.sock")
    open_streams: list[int] = []

    def handle(conn: Any, event: Any) -> None:
        if isinstance(event, h2.events.RequestReceived):
            conn.send_headers(event.stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc")])
            open_streams.append(event.stream_id)

    until = time.monotonic() + 3  # then silence (a client that waited that long has failed already)

    def tick(conn: Any) -> None:
        for stream in open_streams if time.monotonic() < until else ():
            conn.send_data(stream, b"\0")

    server = RawServer(path, handle, tick)
    error, took = failing_call(path, 0.3, server.close)
    assert error.code is Code.DEADLINE_EXCEEDED
    assert took < 0.3 + 0.2


def test_a_server_that_refuses_every_stream_fails_the_call_soon(tmp_path: Path) -> None:
    import h2.errors
    import h2.events

    path = str(tmp_path / "vqd-refuse.sock")
    refused: list[int] = []

    def handle(conn: Any, event: Any) -> None:
        if isinstance(event, h2.events.RequestReceived):
            refused.append(event.stream_id)
            conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)

    server = RawServer(path, handle)
    error, took = failing_call(path, 5, server.close)
    assert error.code is Code.UNAVAILABLE and "refused" in error.details
    assert 1 < len(refused) <= 10
    assert took < 2


def test_goaway_fails_only_the_calls_above_its_last_stream(tmp_path: Path) -> None:
    """RFC 9113 6.8: streams up to last_stream_id may still complete; those above were not processed."""
    import h2.events
    from hyperframe.frame import GoAwayFrame

    path = str(tmp_path / "vqd-goaway.sock")
    received: list[int] = []
    server: RawServer

    def handle(conn: Any, event: Any) -> None:
        if isinstance(event, h2.events.StreamEnded):
            received.append(event.stream_id)
            if len(received) == 3:  # streams 1, 3 and 5: stop at 3, then answer 1 and 3
                server.raw.append(conn.data_to_send() + GoAwayFrame(0, last_stream_id=3).serialize())
                for stream in received[:2]:
                    _reply(conn, stream, _version(None, None))

    server = RawServer(path, handle)
    try:
        with channel(path, seconds=5) as ch:
            calls = [ch.start("Version", pb.VersionRequest(), pb.VersionResponse) for _ in range(3)]
            assert calls[0].result().runtime_name == "vpcc-runtime"
            assert calls[1].result().runtime_name == "vpcc-runtime"
            with pytest.raises(RpcError) as failed:
                calls[2].result()
            assert failed.value.code is Code.UNAVAILABLE and "GOAWAY" in failed.value.details
            with pytest.raises(RpcError) as later:  # no new stream on a connection going away
                ch.call("Version", pb.VersionRequest(), pb.VersionResponse)
            assert later.value.code is Code.UNAVAILABLE
    finally:
        server.close()
    assert received == [1, 3, 5]


@pytest.mark.parametrize("raised", ["FlowControlError", "FrameTooLargeError", "NoAvailableStreamIDError"])
def test_an_error_of_the_http2_layer_is_the_calls_error(serve: Callable[..., str], raised: str) -> None:
    """Whatever h2 raises while sending (here made to) fails the calls with a status, never escapes."""
    import h2.exceptions

    path = serve(Version=_version)
    with channel(path) as ch:

        def broken(*_args: Any, **_kwargs: Any) -> None:
            raise getattr(h2.exceptions, raised)("vqd")

        ch._h2.send_data = broken  # type: ignore[method-assign]
        calls = [ch.start("Version", pb.VersionRequest(), pb.VersionResponse) for _ in range(2)]
        for call in calls:
            with pytest.raises(RpcError) as failed:
                call.result()
            expected = Code.UNAVAILABLE if raised == "NoAvailableStreamIDError" else Code.INTERNAL
            assert failed.value.code is expected and "vqd" in failed.value.details


def test_a_server_that_is_not_http2_fails_the_call_at_once(tmp_path: Path) -> None:
    """An HTTP/1 answer on a connection that stays open: an error now, not at the deadline."""
    import socket

    path = str(tmp_path / "vqd-http1.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    done = threading.Event()

    def http1() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1 << 16)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            done.wait(5)

    thread = threading.Thread(target=http1, daemon=True)
    thread.start()

    def cleanup() -> None:
        done.set()
        thread.join(5)
        listener.close()

    error, took = failing_call(path, 3, cleanup)
    assert error.code is Code.INTERNAL and took < 1
