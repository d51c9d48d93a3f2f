"""The HTTP server: the stdlib's ThreadingHTTPServer, bounded everywhere a client could hold it.

* request line <= 8 KiB (414 beyond), headers <= 16 KiB in all and <= 64 of them (431);
* a client has ``header_time`` seconds to send its request line and headers, however
  slowly it drips them (slowloris): a reaper thread shuts the socket at the deadline;
  each read or write also times out after ``io_timeout``;
* at most ``max_clients`` connections are served at once; one more waits a quarter of a
  second for a slot, then is answered 503 and closed, so a flood cannot stall the walk or
  pile up threads;
* one request per connection (``Connection: close``); bodies are never read;
* a handler's failure is a 500 and a log line (with its traceback when ``debug``), never a
  dead server.

Shutdown: :meth:`Server.stop` returns within the poll interval; handler threads are
daemons and are not waited for.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import socket
import socketserver
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from .api import Response

MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 16384
MAX_HEADERS = 64
SLOT_WAIT = 0.25  # a connection beyond max_clients waits this long for a slot, then gets a 503
Router = Callable[[str, str, Mapping[str, str]], Response]


class _Lines(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


class _HeaderBudget:
    """Wraps the request stream: reading past the header budget raises LineTooLong (a 431)."""

    def __init__(self, stream: _Lines, budget: int) -> None:
        self._stream, self._left = stream, budget

    def readline(self, limit: int = -1) -> bytes:
        wanted = self._left + 1 if limit < 0 else min(limit, self._left + 1)
        line = self._stream.readline(wanted)
        self._left -= len(line)
        if self._left < 0:
            raise http.client.LineTooLong(f"headers longer than {MAX_HEADER_BYTES} bytes")
        return line


class _Reaper(threading.Thread):
    """Shuts connections whose request has not arrived by their deadline (one thread for all)."""

    def __init__(self) -> None:
        super().__init__(name="vethpeer-reaper", daemon=True)
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, socket.socket] = {}
        self._tokens = itertools.count()
        self._stopped = False

    def watch(self, conn: socket.socket, deadline: float) -> int:
        with self._cond:
            token = next(self._tokens)
            self._live[token] = conn
            heapq.heappush(self._heap, (deadline, token))
            self._cond.notify()
            return token

    def release(self, token: int) -> bool:
        """Stop watching; False if the connection was already cut off."""
        with self._cond:
            return self._live.pop(token, None) is not None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def run(self) -> None:
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                conn = self._live.pop(token, None)
                if conn is None:
                    continue
                with contextlib.suppress(OSError):  # the handler's read fails; it closes the socket
                    conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # no HTTP/0.9: an unparsable request still gets a status line
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def version_string(self) -> str:
        return "vethpeer"

    def setup(self) -> None:
        self.request.settimeout(self.server.io_timeout)  # each read and write; the reaper bounds the whole
        super().setup()
        self._token = self.server.reaper.watch(self.connection, time.monotonic() + self.server.header_time)

    def finish(self) -> None:
        self.server.reaper.release(self._token)
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client went away, stalled, or was cut off by the reaper
            self._one_request()

    def _one_request(self) -> None:
        self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if not self.raw_requestline:
            return
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
            self.send_error(414)
            return
        original = self.rfile
        self.rfile = _HeaderBudget(original, MAX_HEADER_BYTES)  # type: ignore[assignment]
        try:
            parsed = self.parse_request()
        finally:
            self.rfile = original
        if not parsed:
            return
        if len(self.headers) > MAX_HEADERS:
            self.send_error(431, "too many headers")
            return
        if not self.server.reaper.release(self._token):
            return  # cut off while dripping its headers: what was parsed is not a request
        try:
            response = self.server.router(self.command, self.path, _headers(self.headers))
        except Exception as error:  # the bug guard: a 500 and a log line, the server lives on
            what = f"{self.command} {self.path!r}: {type(error).__name__}: {error}"
            line = f"vethpeer serve: internal error on {what}"
            self.server.log(line + ("\n" + traceback.format_exc().rstrip() if self.server.debug else ""))
            response = Response(500, b"internal error\n")
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Connection", "close")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.access_log:
            self.server.log(f"{self.address_string()} {format % args}")

    def log_error(self, format: str, *args: Any) -> None:
        pass  # malformed requests are the client's problem; they got their 4xx


def _headers(message: Message) -> dict[str, str]:
    """Header names in lower case (first occurrence wins), values as latin-1 text."""
    out: dict[str, str] = {}
    for name, value in message.items():
        out.setdefault(name.lower(), value)
    return out


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        router: Router,
        log: Callable[[str], None],
        *,
        max_clients: int = 128,
        header_time: float = 5.0,
        io_timeout: float = 10.0,
        access_log: bool = False,
        debug: bool = False,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.router, self.log = router, log
        self.header_time, self.io_timeout, self.access_log = header_time, io_timeout, access_log
        self.debug = debug  # tracebacks in the log lines of handlers' bugs
        self.slots = threading.BoundedSemaphore(max_clients)
        self.reaper = _Reaper()
        super().__init__(address, _Handler)
        self.reaper.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(timeout=SLOT_WAIT):
            _refuse(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        trace = "\n" + traceback.format_exc().rstrip() if self.debug else ""
        self.log(f"vethpeer serve: error serving {client_address}{trace}")

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.reaper.stop()


def _refuse(request: socket.socket) -> None:
    try:
        request.settimeout(0.5)
        request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    except OSError:
        pass


def serve_in_thread(server: socketserver.BaseServer, poll: float = 0.2) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, args=(poll,), name="vethpeer-http", daemon=True)
    thread.start()
    return thread
