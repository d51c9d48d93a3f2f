"""Docker's ``/events`` stream, followed on a local socket: a container or network changed.

The kernel says when a namespace comes or goes, not when a container is renamed, or when
its name arrives a moment after its sandbox. This follower reads Docker's own event
stream (``GET /events`` with a type filter, HTTP/1.0 so the body is plain JSON lines)
and calls ``changed()`` for each container or network event; the live model then asks
its sources again. Reading it changes nothing in Docker.

It runs in its own daemon thread; a daemon that is absent, stops or answers nonsense
costs nothing but a retry every ``RETRY`` s. Only ``unix://`` Docker hosts are followed
(a remote daemon is polled by the model's naming interval instead).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import quote

from ..sources.docker_api import docker_host, socket_path

RETRY = 5.0  # seconds between attempts to reach the daemon
FILTERS = quote(json.dumps({"type": ["container", "network"]}), safe="")
MAX_LINE = 1 << 20  # an event larger than this is not Docker's: the stream is dropped and redialled


def _follow(path: str, changed: Callable[[], None], stopping: Callable[[], bool]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(RETRY)
        sock.connect(path)
        sock.sendall(f"GET /events?filters={FILTERS} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        sock.settimeout(1.0)  # a quiet stream is normal: the timeout only lets ``stopping`` be seen
        buffer = b""
        header = True
        while not stopping():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            buffer += data
            if header:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    continue
                status = buffer.split(b"\r\n", 1)[0].split()
                if len(status) < 2 or status[1] != b"200":
                    return
                buffer, header = buffer[end + 4 :], False
                changed()  # what happened while nobody listened
            *lines, buffer = buffer.split(b"\n")
            if len(buffer) > MAX_LINE:
                return
            if any(line.strip() for line in lines):
                changed()


def follow(
    host: str | None, environ: Mapping[str, str], changed: Callable[[], None], stopping: Callable[[], bool]
) -> threading.Thread:
    """Start following Docker at ``host`` (``--docker-host``, else DOCKER_HOST, else the default)."""
    path = socket_path(docker_host(host, environ))

    def run() -> None:
        while path is not None and not stopping():
            with contextlib.suppress(OSError):  # absent, refused, gone: tried again in a while
                _follow(path, changed, stopping)
            if not stopping():
                time.sleep(RETRY)

    thread = threading.Thread(target=run, name="vethpeer-docker-events", daemon=True)
    thread.start()
    return thread
