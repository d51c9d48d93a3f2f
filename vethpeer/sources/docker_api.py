"""Talking to a Docker Engine: the API over a local unix socket with the standard library,
or through the docker SDK for tcp://, ssh:// and TLS; errors classified into statuses.

The standard-library client exists because ``import docker`` alone costs 0.1-0.2 s, more
than naming a hundred containers is allowed to take (docs/benchmarks.md); a test checks
that both clients give identical claims.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..model import SourceState
from . import HEAVY_IMPORTS

DEFAULT_HOST = "unix:///var/run/docker.sock"
MAX_HEAD = 64 << 10  # bytes of status line and headers at most
MAX_BODY = 64 << 20  # bytes of body at most: a thousand containers' list is ~2 MiB
RECV_BYTES = 1 << 16


def docker_host(option: str | None, environ: Mapping[str, str]) -> str:
    """--docker-host, else $DOCKER_HOST (of ``environ``, the run's), else the default socket.
    A bare path means a unix socket."""
    url = option or environ.get("DOCKER_HOST") or DEFAULT_HOST
    return f"unix://{url}" if url.startswith("/") else url


def socket_path(url: str) -> str | None:
    """The file behind a ``unix://`` URL (None for tcp://, ssh://, ...)."""
    if url.startswith("unix://"):
        return url[len("unix://") :] or None
    return None


class Timeout(Exception):
    """No answer in time (the source's deadline, or the call's own timeout)."""


class ApiError(Exception):
    """The daemon answered with an HTTP error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Api(Protocol):
    """The calls the Docker sources make, whichever client makes them. ``timeout``: the
    seconds this one call may take (the source's deadline bounds it as well)."""

    def containers(self, timeout: float) -> list[dict[str, Any]]: ...

    def inspect(self, container_id: str, timeout: float) -> dict[str, Any] | None: ...

    def networks(self, timeout: float) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class BadResponse(Exception):
    """What came back was not a whole HTTP response: a transport error, not a JSON one."""


def _dechunk(body: bytes) -> bytes:
    """Transfer-Encoding: chunked (a server must not send it to HTTP/1.0; decoded anyway),
    every size and CRLF checked."""
    out: list[bytes] = []
    pos = 0
    while True:
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            raise BadResponse("chunked body cut short (no last chunk)")
        size_text = body[pos:line_end].split(b";", 1)[0].strip()
        if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
            raise BadResponse(f"bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        pos = line_end + 2
        if size == 0:
            return b"".join(out)  # trailers, if any, are not read
        if pos + size + 2 > len(body):
            raise BadResponse(f"chunked body cut short ({len(body) - pos} of {size} bytes of a chunk)")
        if body[pos + size : pos + size + 2] != b"\r\n":
            raise BadResponse("chunk not followed by CRLF")
        out.append(body[pos : pos + size])
        pos += size + 2


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
    elif b"content-length" in headers:
        length = headers[b"content-length"]
        if not length.isdigit():
            raise BadResponse(f"bad Content-Length {length[:20]!r}")
        if len(body) < int(length):
            raise BadResponse(f"reply cut short: {len(body)} of {int(length)} bytes")
        body = body[: int(length)]
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

    Nothing the daemon sends is trusted: a call ends at its ``timeout`` or the source's
    deadline, whichever comes first, however slowly bytes keep arriving; the headers may
    take MAX_HEAD bytes and the whole reply MAX_HEAD + MAX_BODY; a body shorter than its
    Content-Length or chunked wrongly is :class:`BadResponse`.
    """

    def __init__(self, path: str, remaining: Callable[[], float]) -> None:
        self.path = path
        self.remaining = remaining  # seconds left before the deadline; raises when none

    def _get(self, path: str, timeout: float) -> Any:
        end = time.monotonic() + timeout

        def left() -> float:
            seconds = min(self.remaining(), end - time.monotonic())
            if seconds <= 0:
                raise Timeout()
            return seconds

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(left())
            sock.connect(self.path)
            request = f"GET {path} HTTP/1.0\r\nHost: docker\r\nAccept: application/json\r\n\r\n"
            sock.sendall(request.encode())
            data = bytearray()
            head_end = -1
            while True:
                sock.settimeout(left())
                chunk = sock.recv(RECV_BYTES)
                if not chunk:
                    break
                data += chunk
                if head_end < 0:
                    head_end = data.find(b"\r\n\r\n")
                    if head_end < 0 and len(data) > MAX_HEAD:
                        raise BadResponse(f"header section larger than {MAX_HEAD} bytes")
                if head_end >= 0 and len(data) - head_end - 4 > MAX_BODY:
                    raise BadResponse(f"reply larger than {MAX_BODY} bytes")
        status, body = parse_response(bytes(data))
        if status != 200:
            try:
                message = str(json.loads(body).get("message", ""))
            except (ValueError, AttributeError):
                message = body[:200].decode(errors="replace")
            raise ApiError(status, message)
        return json.loads(body)

    def containers(self, timeout: float) -> list[dict[str, Any]]:
        found = self._get("/containers/json", timeout)
        return list(found) if isinstance(found, list) else []

    def networks(self, timeout: float) -> list[dict[str, Any]]:
        found = self._get("/networks", timeout)
        return list(found) if isinstance(found, list) else []

    def inspect(self, container_id: str, timeout: float) -> dict[str, Any] | None:
        try:
            info = self._get(f"/containers/{container_id}/json", timeout)
        except ApiError as error:
            if error.status == 404:
                return None  # removed since the list
            raise
        return info if isinstance(info, dict) else None

    def close(self) -> None:
        pass


class SdkApi:
    """The Engine API through the docker SDK: tcp:// with TLS (``DOCKER_TLS_VERIFY``,
    ``DOCKER_CERT_PATH``, read from ``environ``), ssh://, and whatever else ``DOCKER_HOST``
    may say. The SDK's timeouts (requests') are raised as :class:`Timeout` from here, so that
    :func:`classify` knows only the standard library's exceptions."""

    def __init__(self, url: str, timeout: float, environ: Mapping[str, str]) -> None:
        with HEAVY_IMPORTS:  # not at the same time as kubernetes (both import requests)
            import docker  # heavy (requests, urllib3): only now that a daemon is to be asked
            import requests
        self.errors = docker.errors
        self.timeouts = (requests.exceptions.Timeout,)
        kwargs = docker.utils.kwargs_from_env(environment=dict(environ))
        kwargs.update(base_url=url, version="auto", timeout=timeout)
        self.client = self._translated(docker.DockerClient, **kwargs)  # asks the daemon its API version

    def _translated(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except Exception as error:
            if any(isinstance(e, self.timeouts) for e in _chain(error)):
                raise Timeout() from error
            raise

    def containers(self, timeout: float) -> list[dict[str, Any]]:
        self.client.api.timeout = timeout
        return list(self._translated(self.client.api.containers))

    def networks(self, timeout: float) -> list[dict[str, Any]]:
        self.client.api.timeout = timeout
        return list(self._translated(self.client.api.networks))

    def inspect(self, container_id: str, timeout: float) -> dict[str, Any] | None:
        self.client.api.timeout = timeout
        try:
            return dict(self._translated(self.client.api.inspect_container, container_id))
        except self.errors.NotFound:
            return None

    def close(self) -> None:
        self.client.close()


def open_api(
    url: str, remaining: Callable[[], float], environ: Mapping[str, str], *, use_sdk: bool = False
) -> Api:
    """The client for ``url``: the standard library's on a unix socket, else (or with
    ``use_sdk``) the SDK's, which asks the daemon its API version here. ImportError: no SDK."""
    path = socket_path(url)
    if path is not None and not use_sdk:
        return LocalApi(path, remaining)
    return SdkApi(url, remaining(), environ)


def _chain(error: BaseException) -> list[BaseException]:
    """The error and every error it was raised from or during."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify(error: BaseException) -> tuple[SourceState, str]:
    """A socket / HTTP / SDK error -> (timeout or unavailable, a one-line reason), by type:
    the SDK's own timeouts arrive as :class:`Timeout` (SdkApi), the rest are the standard
    library's (or carry one in their chain)."""
    seen = _chain(error)

    def found(*kinds: type[BaseException]) -> bool:
        return any(isinstance(e, kinds) for e in seen)

    if found(Timeout, TimeoutError):
        return SourceState.TIMEOUT, "no answer"
    if found(PermissionError):
        return SourceState.UNAVAILABLE, "permission denied on the socket"
    if found(ConnectionRefusedError):
        return SourceState.UNAVAILABLE, "connection refused (daemon not running)"
    if found(FileNotFoundError):
        return SourceState.UNAVAILABLE, "socket vanished (daemon stopped)"
    if found(ConnectionResetError, BrokenPipeError):  # http.client's RemoteDisconnected too
        return SourceState.UNAVAILABLE, "the daemon closed the connection"
    if isinstance(error, BadResponse):
        return SourceState.UNAVAILABLE, f"bad reply: {error}"[:200]
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return SourceState.UNAVAILABLE, text[:200]
