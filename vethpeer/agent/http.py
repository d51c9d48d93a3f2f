"""The HTTP server: the stdlib's ThreadingHTTPServer, bounded everywhere a client could hold it.

* request line <= 8 KiB (414 beyond), headers <= 16 KiB in all and <= 64 of them (431);
* a client has ``header_time`` seconds to send its request line and headers, however
  slowly it drips them (slowloris): a reaper thread shuts the socket at the deadline;
  each read or write also times out after ``io_timeout``;
* at most ``max_clients`` connections are served at once; one more waits a quarter of a
  second for a slot, then is answered 503 and closed, so a flood cannot stall the walk or
  pile up threads;
* at most ``per_client`` connections from one client address may be waiting for their request
  (handshake and headers not complete yet); one more is refused at once (a 503, or a close on a
  TLS port), so slow clients from one address cannot starve the others. Connections whose
  request has arrived do not count: a burst of quick scrapes from one address is served;
* with ``tls`` (a callable giving the current :class:`~.tls.Listener`, asked per connection so
  rotated certificates take effect at once) the handshake runs in the handler thread under the
  same header deadline: a handshake that never completes costs one thread for ``header_time``
  and never holds the accept loop; a plaintext request to the TLS port gets Go's 400 ("Client
  sent an HTTP request to an HTTPS server."); failed handshakes are logged at most once per
  ten seconds;
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
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from .api import Response
from .auth import PEER_HEADER
from .throttle import ThrottledLog
from .tls import Listener

MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 16384
MAX_HEADERS = 64
SLOT_WAIT = 0.25  # a connection beyond max_clients waits this long for a slot, then gets a 503
PLAINTEXT_TO_TLS = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
    b"Client sent an HTTP request to an HTTPS server.\n"
)  # Go's net/http answer, word for word
FIXED_HEADERS = ("Cache-Control", "X-Content-Type-Options")  # sent on every response unless it has its own
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
                    socket.socket.shutdown(conn, socket.SHUT_RDWR)  # the fd's, also under TLS


class _Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # no HTTP/0.9: an unparsable request still gets a status line
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def version_string(self) -> str:
        return "vethpeer"

    def setup(self) -> None:
        self._accepted = self.request  # the socket as accepted (TLS wraps it into another)
        self.request.settimeout(self.server.io_timeout)  # each read and write; the reaper bounds the whole
        self._tls = self.server.tls() if self.server.tls is not None else None
        if self._tls is not None:  # no I/O yet: the handshake is handle()'s, under the deadline
            self.request = self._tls.context.wrap_socket(
                self.request, server_side=True, do_handshake_on_connect=False
            )
        super().setup()
        self._token = self.server.reaper.watch(self.connection, time.monotonic() + self.server.header_time)

    def finish(self) -> None:
        self.server.reaper.release(self._token)
        with contextlib.suppress(OSError):
            super().finish()
        _linger(self.connection)
        if self._tls is not None:  # the server closes the plain socket it accepted, now detached
            self.connection.close()

    def handle(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client went away, stalled, or was cut off by the reaper
            if self._tls is None or self._handshake(self._tls):
                self._one_request()

    def _handshake(self, tls: Listener) -> bool:
        conn = self.connection
        assert isinstance(conn, ssl.SSLSocket)
        try:
            conn.do_handshake()
        except ssl.SSLError as error:
            if error.reason == "HTTP_REQUEST":
                _answer_plaintext(conn)
            else:
                self.server.throttled(
                    "tls",
                    f"vethpeer serve: TLS handshake with {self.client_address[0]} failed: {_reason(error)}",
                )
            return False
        if not tls.peer_allowed(conn):
            self.server.throttled(
                "tls",
                f"vethpeer serve: the client certificate of {self.client_address[0]} has no allowed SAN",
            )
            return False
        return True

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
        self.server.request_arrived(self._accepted)
        try:
            headers = _headers(self.headers)
            headers[PEER_HEADER] = str(self.client_address[0])  # for an Authenticator that asks where from
            response = self.server.router(self.command, self.path, headers)
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
        own = {name.lower() for name in response.headers}
        for name, value in zip(FIXED_HEADERS, ("no-store", "nosniff"), strict=True):
            if name.lower() not in own:
                self.send_header(name, value)
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
        per_client: int | None = None,
        header_time: float = 5.0,
        io_timeout: float = 10.0,
        access_log: bool = False,
        debug: bool = False,
        tls: Callable[[], Listener] | None = None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.router, self.log, self.tls = router, log, tls
        self.header_time, self.io_timeout, self.access_log = header_time, io_timeout, access_log
        self.debug = debug  # tracebacks in the log lines of handlers' bugs
        self.slots = threading.BoundedSemaphore(max_clients)
        self.per_client = per_client or default_per_client(max_clients)
        self.waiting: dict[str, int] = {}  # client address -> its connections still waiting for a request
        self.waiting_for: dict[int, str] = {}  # id of an accepted socket still waiting -> its client
        self.waiting_lock = threading.Lock()
        self.throttled = ThrottledLog(log)
        self.reaper = _Reaper()
        super().__init__(address, _Handler)
        self.reaper.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        client = client_address[0]
        with self.waiting_lock:
            count = self.waiting.get(client, 0)
            if count < self.per_client:
                self.waiting[client] = count + 1
                self.waiting_for[id(request)] = client
        if count >= self.per_client:
            self.throttled(
                "per-client",
                f"vethpeer serve: more than {self.per_client} connections from {client} waiting, refusing",
            )
            self._refuse(request)
            return
        if not self.slots.acquire(timeout=SLOT_WAIT):
            self.request_arrived(request)
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            self.request_arrived(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()
            self.request_arrived(request)

    def request_arrived(self, accepted: object) -> None:
        """The connection accepted as ``accepted`` waits no more (its request is in, or it is gone)."""
        with self.waiting_lock:
            client = self.waiting_for.pop(id(accepted), None)
            if client is not None:
                left = self.waiting.pop(client, 1) - 1
                if left > 0:
                    self.waiting[client] = left

    def _refuse(self, request: socket.socket) -> None:
        if self.tls is None:  # on a TLS port a plaintext 503 would be garbage: just close
            _refuse(request)
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        trace = "\n" + traceback.format_exc().rstrip() if self.debug else ""
        self.log(f"vethpeer serve: error serving {client_address}{trace}")

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.reaper.stop()


def default_per_client(max_clients: int) -> int:
    """Connections one client address may hold: an eighth of max_clients, at least 4 (a Prometheus
    pair, a kubectl, a probe from one address never need more)."""
    return max(4, max_clients // 8)


def _answer_plaintext(conn: ssl.SSLSocket) -> None:
    """Go's 400 to a plaintext request on the TLS port, written on the bare socket (then closed
    as every connection is: :func:`_linger`)."""
    with contextlib.suppress(OSError):
        socket.socket.sendall(conn, PLAINTEXT_TO_TLS)


LINGER_SECONDS, LINGER_BYTES = 0.2, 1 << 20


def _linger(conn: socket.socket) -> None:
    """Close gently: stop writing, then read and drop what the client still sends, until it hangs
    up, for at most LINGER_SECONDS and LINGER_BYTES. Closing a socket with unread bytes makes the
    kernel send a reset, which can destroy an answer the client has not read yet (a 405 to a POST
    whose body we never read; the client still sending it gets EPIPE instead). Go's net/http and
    Apache close so too ("lingering close", RFC 9112 section 9.6). Under TLS the answer is written
    by then, and the bytes dropped are the socket's own (the TLS session is over)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(conn, socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        for _ in range(LINGER_BYTES // 65536):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            conn.settimeout(left)
            if not socket.socket.recv(conn, 65536):
                break


def _reason(error: ssl.SSLError) -> str:
    return str(error.reason or error.strerror or error).replace("_", " ").lower()


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
