"""Talking to a Docker Engine: the API over a local unix socket with the standard library,
or through the docker SDK for tcp://, ssh:// and TLS; errors classified into statuses.

The standard-library client exists because ``import docker`` alone costs 0.1-0.2 s, more
than naming a hundred containers is allowed to take (docs/benchmarks.md); a test checks
that both clients give identical claims.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from typing import Any, Protocol

from ..model import SourceState
from . import HEAVY_IMPORTS

DEFAULT_HOST = "unix:///var/run/docker.sock"


def docker_host(option: str | None) -> str:
    """--docker-host, else $DOCKER_HOST, else the default socket. A bare path means a unix socket."""
    url = option or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    return f"unix://{url}" if url.startswith("/") else url


def socket_path(url: str) -> str | None:
    """The file behind a ``unix://`` URL (None for tcp://, ssh://, ...)."""
    if url.startswith("unix://"):
        return url[len("unix://") :] or None
    return None


class Timeout(Exception):
    pass


class ApiError(Exception):
    """The daemon answered with an HTTP error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Api(Protocol):
    """The two calls this source makes, whichever client makes them."""

    def containers(self, timeout: float) -> list[dict[str, Any]]: ...

    def inspect(self, container_id: str, timeout: float) -> dict[str, Any] | None: ...

    def close(self) -> None: ...


class BadResponse(Exception):
    """What came back was not an HTTP response."""


def _dechunk(body: bytes) -> bytes:
    """Transfer-Encoding: chunked (a server must not send it to HTTP/1.0; decoded anyway)."""
    out: list[bytes] = []
    rest = body
    while True:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            raise BadResponse("truncated chunked body")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(rest[:size])
        rest = rest[size + 2 :]


def parse_response(data: bytes) -> tuple[int, bytes]:
    """(status, body) of a complete HTTP/1.x response read until the server closed."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split(None, 2)
    if not sep or len(status) < 2 or not status[0].startswith(b"HTTP/") or not status[1].isdigit():
        raise BadResponse(f"not an HTTP response: {data[:60]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        body = _dechunk(body)
    return int(status[1]), body


class LocalApi:
    """The Engine API on a local unix socket: one HTTP/1.0 GET per call, on the socket module.

    Neither the docker SDK (0.1-0.2 s to import: requests, urllib3) nor http.client
    (40 ms: it imports ssl and email) is worth it for two GETs on a local socket; that
    is most of vethpeer's time on a host with a hundred containers. HTTP/1.0 keeps the
    exchange trivial: the daemon sends the body whole and closes the connection. Paths
    carry no API version, so the daemon answers in its own and neither an old engine
    (20.10: API 1.41) nor a new one (29: 1.44 and up) refuses the request; the fields
    read here are the same in all of them.
    """

    def __init__(self, path: str, remaining: Callable[[], float]) -> None:
        self.path = path
        self.remaining = remaining  # seconds left before the deadline; raises when none

    def _get(self, path: str) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.remaining())
            sock.connect(self.path)
            request = f"GET {path} HTTP/1.0\r\nHost: docker\r\nAccept: application/json\r\n\r\n"
            sock.sendall(request.encode())
            chunks = []
            while True:
                sock.settimeout(self.remaining())
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        status, body = parse_response(b"".join(chunks))
        if status != 200:
            try:
                message = str(json.loads(body).get("message", ""))
            except (ValueError, AttributeError):
                message = body[:200].decode(errors="replace")
            raise ApiError(status, message)
        return json.loads(body)

    def containers(self, timeout: float) -> list[dict[str, Any]]:
        found = self._get("/containers/json")
        return list(found) if isinstance(found, list) else []

    def networks(self) -> list[dict[str, Any]]:
        found = self._get("/networks")
        return list(found) if isinstance(found, list) else []

    def inspect(self, container_id: str, timeout: float) -> dict[str, Any] | None:
        try:
            info = self._get(f"/containers/{container_id}/json")
        except ApiError as error:
            if error.status == 404:
                return None  # removed since the list
            raise
        return info if isinstance(info, dict) else None

    def close(self) -> None:
        pass


class SdkApi:
    """The Engine API through the docker SDK: tcp:// with TLS (``DOCKER_TLS_VERIFY``,
    ``DOCKER_CERT_PATH``), ssh://, and whatever else ``DOCKER_HOST`` may say."""

    def __init__(self, url: str, timeout: float) -> None:
        with HEAVY_IMPORTS:  # not at the same time as kubernetes (both import requests)
            import docker  # heavy (requests, urllib3): only now that a daemon is to be asked
        self.errors = docker.errors
        kwargs = docker.utils.kwargs_from_env()
        kwargs.update(base_url=url, version="auto", timeout=timeout)
        self.client = docker.DockerClient(**kwargs)  # asks the daemon its API version

    def containers(self, timeout: float) -> list[dict[str, Any]]:
        self.client.api.timeout = timeout
        return list(self.client.api.containers())

    def inspect(self, container_id: str, timeout: float) -> dict[str, Any] | None:
        self.client.api.timeout = timeout
        try:
            return dict(self.client.api.inspect_container(container_id))
        except self.errors.NotFound:
            return None

    def close(self) -> None:
        self.client.close()


def classify(error: BaseException) -> tuple[SourceState, str]:
    """A socket / http.client / SDK error -> (timeout or unavailable, a one-line reason)."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    names = {type(e).__name__ for e in seen}
    timeouts = {"Timeout", "ReadTimeout", "ConnectTimeout", "ReadTimeoutError"}
    if isinstance(error, Timeout) or names & timeouts:
        return SourceState.TIMEOUT, "no answer"
    if any(isinstance(e, (socket.timeout, TimeoutError)) for e in seen):
        return SourceState.TIMEOUT, "no answer"
    if any(isinstance(e, PermissionError) for e in seen):
        return SourceState.UNAVAILABLE, "permission denied on the socket"
    if any(isinstance(e, ConnectionRefusedError) for e in seen):
        return SourceState.UNAVAILABLE, "connection refused (daemon not running)"
    if any(isinstance(e, FileNotFoundError) for e in seen):
        return SourceState.UNAVAILABLE, "socket vanished (daemon stopped)"
    if names & {"RemoteDisconnected", "ConnectionResetError", "BadStatusLine", "BrokenPipeError"}:
        return SourceState.UNAVAILABLE, "the daemon closed the connection"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return SourceState.UNAVAILABLE, text[:200]
