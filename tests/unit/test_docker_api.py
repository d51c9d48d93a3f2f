"""The Docker Engine clients (sources/docker_api.py) against a fake engine on a unix socket.

The real engine is in tests/integration/test_docker.py; here a small server says what an
engine (or something broken pretending to be one) can say: bodies cut short, endless
replies, bad chunking, silence, and the network list docker-sandboxes asks for.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vethpeer.model import Namespace, NsKey, SourceState
from vethpeer.sources import Context, Options, docker_api
from vethpeer.sources.docker_api import BadResponse, LocalApi, Timeout, classify, docker_host, open_api
from vethpeer.sources.docker_sandboxes import DockerSandboxes

HOST = NsKey(4, 1)
NETWORKS = [{"Name": "vqd-over", "Id": "a1b2c3d4e5f60718293a4b5c6d7e8f90"}]
Script = Callable[[socket.socket], None]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Callable[[Script], str]]:
    """engine(script) -> the path of a unix socket whose every connection ``script`` answers."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(script: Script) -> str:
        path = str(tmp_path / f"vqd-engine-{len(listeners)}.sock")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen(8)
        listeners.append(listener)

        def run() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(65536)  # the request (one small GET)
                    with contextlib.suppress(OSError):
                        script(conn)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return path

    yield start
    for listener in listeners:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
    for thread in threads:
        thread.join(5)


def reply(body: bytes, head: str = "") -> Script:
    def script(conn: socket.socket) -> None:
        conn.sendall(f"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n{head}\r\n".encode() + body)

    return script


def api(path: str, seconds: float = 5.0) -> LocalApi:
    end = time.monotonic() + seconds

    def remaining() -> float:
        left = end - time.monotonic()
        if left <= 0:
            raise Timeout()
        return left

    return LocalApi(path, remaining)


def test_a_whole_reply(engine: Callable[[Script], str]) -> None:
    body = json.dumps(NETWORKS).encode()
    path = engine(reply(body, f"Content-Length: {len(body)}\r\n"))
    assert api(path).networks(5) == NETWORKS


def test_a_body_shorter_than_its_content_length_is_a_transport_error(engine: Callable[[Script], str]) -> None:
    body = json.dumps(NETWORKS).encode()
    path = engine(reply(body[:20], f"Content-Length: {len(body)}\r\n"))
    with pytest.raises(BadResponse) as raised:
        api(path).containers(5)
    state, reason = classify(raised.value)
    assert state is SourceState.UNAVAILABLE and "cut short" in reason and "JSON" not in reason


def test_a_reply_larger_than_the_limit_is_refused(
    engine: Callable[[Script], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker_api, "MAX_BODY", 1000)

    def endless(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n[")
        for _ in range(100):
            conn.sendall(b'"vqd",' * 100)

    path = engine(endless)
    with pytest.raises(BadResponse, match="larger than 1000 bytes"):
        api(path).containers(5)


def test_an_endless_header_section_is_refused(engine: Callable[[Script], str]) -> None:
    def endless(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\n")
        for i in range(10_000):
            conn.sendall(b"X-Vqd-%d: y\r\n" % i)

    path = engine(endless)
    with pytest.raises(BadResponse, match="header section"):
        api(path).containers(5)


@pytest.mark.parametrize(
    ("chunked", "why"),
    [
        (b"zz\r\n[]\r\n0\r\n\r\n", "chunk size"),
        (b"2\r\n[]XX0\r\n\r\n", "CRLF"),
        (b"9\r\n[]\r\n", "cut short"),
        (b"2\r\n[]\r\n", "cut short"),  # no last chunk
        (b"-2\r\n[]\r\n0\r\n\r\n", "chunk size"),
    ],
)
def test_bad_chunking_is_a_protocol_error(engine: Callable[[Script], str], chunked: bytes, why: str) -> None:
    path = engine(reply(chunked, "Transfer-Encoding: chunked\r\n"))
    with pytest.raises(BadResponse, match=why):
        api(path).containers(5)


def test_good_chunking(engine: Callable[[Script], str]) -> None:
    path = engine(
        reply(b"1;ext=1\r\n[\r\n1\r\n]\r\n0\r\nTrailer: x\r\n\r\n", "Transfer-Encoding: chunked\r\n")
    )
    assert api(path).containers(5) == []


def test_the_timeout_of_a_call_is_kept(engine: Callable[[Script], str]) -> None:
    """A call's ``timeout`` bounds it even when the source's deadline is further away."""
    release = threading.Event()
    path = engine(lambda conn: release.wait(5) and None)
    started = time.monotonic()
    try:
        with pytest.raises((Timeout, TimeoutError)):  # the socket's own, or ours between reads
            api(path, seconds=10).containers(0.2)
    finally:
        release.set()
    assert time.monotonic() - started < 1.0


def test_a_trickling_engine_is_a_timeout(engine: Callable[[Script], str]) -> None:
    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n[")
        for _ in range(300):
            time.sleep(0.005)
            conn.sendall(b" ")

    path = engine(trickle)
    started = time.monotonic()
    with pytest.raises((Timeout, TimeoutError)):
        api(path, seconds=10).containers(0.3)
    assert time.monotonic() - started < 1.0


def test_classify_looks_at_types_not_names() -> None:
    class RemoteDisconnected(Exception):
        pass

    class ReadTimeout(Exception):
        pass

    assert classify(RemoteDisconnected("vqd went wrong")) == (SourceState.UNAVAILABLE, "vqd went wrong")
    assert classify(ReadTimeout("vqd slow"))[0] is SourceState.UNAVAILABLE
    import http.client

    assert classify(http.client.RemoteDisconnected("x")) == (
        SourceState.UNAVAILABLE,
        "the daemon closed the connection",
    )
    assert classify(Timeout())[0] is SourceState.TIMEOUT


def test_the_sdk_translates_its_timeouts(engine: Callable[[Script], str]) -> None:
    """requests' ReadTimeout (inside docker's own errors) becomes a timeout at the SDK's edge."""
    pytest.importorskip("docker")
    release = threading.Event()
    path = engine(lambda conn: release.wait(5) and None)
    try:
        with pytest.raises(Exception) as raised:
            open_api(f"unix://{path}", lambda: 0.3, {}, use_sdk=True)
    finally:
        release.set()
    assert classify(raised.value) == (SourceState.TIMEOUT, "no answer")


# ---------------------------------------------------------------- the environment, passed


def test_docker_host_reads_the_environment_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///vqd/not-this.sock")
    assert docker_host(None, {}) == "unix:///var/run/docker.sock"
    assert docker_host(None, {"DOCKER_HOST": "/vqd/d.sock"}) == "unix:///vqd/d.sock"
    assert docker_host("tcp://127.0.0.1:21301", {"DOCKER_HOST": "/vqd/d.sock"}) == "tcp://127.0.0.1:21301"


def _sandbox_context(environ: dict[str, str], docker_host: str | None = None) -> Context:
    overlay = Namespace(NsKey(4, 7), mounts=("/run/docker/netns/1-a1b2c3d4e5",))
    return Context(
        HOST,
        (Namespace(HOST, is_host=True), overlay),
        Options(timeout=3, docker_host=docker_host),
        proc="/nonexistent/vqd-proc",
        environ=environ,
    )


def test_sandboxes_are_named_through_the_engine_the_context_names(
    engine: Callable[[Script], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = json.dumps(NETWORKS).encode()
    path = engine(reply(body, f"Content-Length: {len(body)}\r\n"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///vqd/not-this.sock")
    result = DockerSandboxes().collect(_sandbox_context({"DOCKER_HOST": f"unix://{path}"}))
    assert result.status.state is SourceState.OK, result.status
    assert [claim.workload.name for claim in result.claims] == ["vqd-over"]


def test_sandboxes_are_named_through_a_tcp_engine_too() -> None:
    """docker-sandboxes asks whichever client the URL needs (here the SDK, over tcp://)."""
    pytest.importorskip("docker")
    import http.server

    class Engine(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(NETWORKS if "/networks" in self.path else {"ApiVersion": "1.41"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 21311), Engine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = DockerSandboxes().collect(_sandbox_context({}, docker_host="tcp://127.0.0.1:21311"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert result.status.state is SourceState.OK, result.status
    assert [claim.workload.name for claim in result.claims] == ["vqd-over"]
