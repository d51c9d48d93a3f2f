"""A small unary gRPC client over HTTP/2 on a unix socket, for the CRI calls vethpeer makes.

grpcio was the client until a benchmark showed its import alone (about 150 ms: its
Cython core imports asyncio) was most of what the CRI source cost every command on a
node (docs/benchmarks.md). This client does only what the source needs, on the
well-kept ``h2`` library for HTTP/2 and HPACK:

* unary calls, many in flight at once on one connection (as many as the server's
  ``SETTINGS_MAX_CONCURRENT_STREAMS`` allows; the rest wait their turn),
* one deadline for the whole conversation (also sent as ``grpc-timeout``),
* failures as :class:`RpcError` with the gRPC status code, never an exception of
  the transport: a refused or missing socket is UNAVAILABLE, no answer in time is
  DEADLINE_EXCEEDED, a reply too large is RESOURCE_EXHAUSTED.

Requests are sent as the server's flow-control window and frame size allow (a request
larger than both waits for credit); replies get a large window up front and their credit
back as they arrive. The server is not trusted to behave:

* the deadline is checked on every turn, so a server that trickles frames cannot keep a
  call alive past it;
* a stream the server refuses (``REFUSED_STREAM``: not processed) is sent again after a
  short pause that doubles, :data:`REFUSALS` times at most, then fails UNAVAILABLE;
* any error of the HTTP/2 layer (flow control, frame size, stream IDs, protocol) fails the
  calls as INTERNAL (UNAVAILABLE when the connection ran out of stream IDs), never escapes;
* a GOAWAY fails only the calls on streams above its ``last_stream_id`` (and those not yet
  sent); the ones below it may still complete (RFC 9113, 6.8).

grpcio stays in the tests as the other end and the cross-check.
"""

from __future__ import annotations

import enum
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from ..deadline import Deadline


class Message(Protocol):
    """What the client needs of a message: :mod:`vethpeer.cri.messages`' (what vethpeer sends and
    reads), or protobuf's generated ones (the tests' oracle)."""

    def SerializeToString(self) -> bytes: ...  # protobuf's name


M = TypeVar("M", bound=Message)
Read = TypeVar("Read", covariant=True)


class ReplyType(Protocol[Read]):
    """A message class: it reads its message from the bytes of a reply."""

    def FromString(self, data: bytes, /) -> Read: ...  # protobuf's name


WINDOW = 1 << 24  # credit given to the server up front, per stream and for the connection
RECV_BYTES = 1 << 16
USER_AGENT = b"vethpeer-cri/1"
GOAWAY = 0x7  # the HTTP/2 frame type
REFUSALS = 6  # times a refused stream is sent again, after 1, 2, 4, ... ms


class Code(enum.IntEnum):
    """gRPC status codes (grpc/doc/statuscodes.md)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# grpc/doc/http-grpc-status-mapping.md: a reply without grpc-status, by its HTTP status
_HTTP_CODES = {
    400: Code.INTERNAL,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.UNIMPLEMENTED,
}
_HTTP_CODES.update(dict.fromkeys((429, 502, 503, 504), Code.UNAVAILABLE))


class RpcError(Exception):
    def __init__(self, code: Code, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def _code(value: bytes | None) -> Code:
    try:
        return Code(int(value or b""))
    except ValueError:
        return Code.UNKNOWN


class Pending(Generic[M]):
    """One call: sent when the connection has a stream for it, done when its stream ends."""

    def __init__(self, channel: Channel, method: str, request: bytes, reply_type: ReplyType[M]) -> None:
        self._channel = channel
        self.path = f"/{channel.service}/{method}".encode()
        self.request = request
        self.reply_type = reply_type
        self.headers: dict[bytes, bytes] = {}  # response headers, then trailers
        self.body = bytearray()
        self.outcome: M | RpcError | None = None
        self.unsent = memoryview(b"")  # the framed request, as far as flow control held it back
        self.refused = 0  # REFUSED_STREAM answers so far
        self.not_before = 0.0  # after a refusal: not sent again before this (deadline's clock)

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def fail(self, error: RpcError) -> None:
        if self.outcome is None:
            self.outcome = error

    def finish(self) -> None:
        """The stream ended: decide from its trailers (or headers alone) and the one message."""
        if self.outcome is not None:
            return
        status = self.headers.get(b"grpc-status")
        if status is None:
            http = int(self.headers.get(b":status", b"0") or 0)
            code = Code.UNKNOWN if http == 200 else _HTTP_CODES.get(http, Code.UNKNOWN)
            self.outcome = RpcError(code, f"reply without grpc-status (HTTP {http})")
            return
        code = _code(status)
        if code is not Code.OK:
            self.outcome = RpcError(
                code, unquote(self.headers.get(b"grpc-message", b"").decode(errors="replace"))
            )
            return
        if len(self.body) < 5:
            self.outcome = RpcError(Code.INTERNAL, "reply without a message")
            return
        compressed, length = struct.unpack_from(">BI", self.body)
        if compressed or length != len(self.body) - 5:
            self.outcome = RpcError(Code.INTERNAL, "reply is compressed or not one whole message")
            return
        try:
            self.outcome = self.reply_type.FromString(bytes(self.body[5:]))
        except Exception as error:  # protobuf's DecodeError, and whatever a bad message raises
            self.outcome = RpcError(
                Code.INTERNAL, f"the reply to {self.path.decode()} is not its message: {error}"
            )

    def result(self) -> M:
        """The reply, driving the connection until it is here; raises :class:`RpcError`."""
        self._channel.run_until(lambda: self.done)
        assert self.outcome is not None
        if isinstance(self.outcome, RpcError):
            raise self.outcome
        return self.outcome


class Channel:
    """One HTTP/2 connection to ``path``, under one deadline; close it (or use ``with``)."""

    def __init__(self, path: str, deadline: Deadline, *, service: str, max_message: int) -> None:
        self.service = service
        self.deadline = deadline
        self.max_message = max_message
        self._waiting: deque[Pending[Message]] = deque()
        self._streams: dict[int, Pending[Message]] = {}
        self._broken: RpcError | None = None  # the connection is of no use: every call fails
        self._going_away: RpcError | None = None  # GOAWAY: no new streams, the open ones go on
        self._inbox = b""  # the start of a frame not read whole yet
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self._h2 = h2.connection.H2Connection(config)
        try:
            self._sock.settimeout(deadline.left())
            self._sock.connect(path)
        except TimeoutError:
            self._broken = RpcError(Code.DEADLINE_EXCEEDED, "no connection in time")
        except PermissionError as error:
            self._broken = RpcError(Code.PERMISSION_DENIED, error.strerror or str(error))
        except OSError as error:
            self._broken = RpcError(Code.UNAVAILABLE, f"cannot connect: {error.strerror or error}")
        else:
            codes = h2.settings.SettingCodes
            self._h2.local_settings = h2.settings.Settings(
                client=True, initial_values={codes.INITIAL_WINDOW_SIZE: WINDOW, codes.ENABLE_PUSH: 0}
            )
            self._h2.initiate_connection()  # the preface and those settings
            self._h2.increment_flow_control_window(WINDOW)

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def start(self, method: str, request: Message, reply_type: ReplyType[M]) -> Pending[M]:
        """Queue one call; it is sent on the next :meth:`run_until` (any call's ``result()``)."""
        call = Pending(self, method, request.SerializeToString(), reply_type)
        reason = self._broken or self._going_away
        if reason is not None:
            call.fail(reason)
        else:
            self._waiting.append(call)  # type: ignore[arg-type]  # Pending is invariant in M
        return call

    def call(self, method: str, request: Message, reply_type: ReplyType[M]) -> M:
        return self.start(method, request, reply_type).result()

    # ------------------------------------------------------------------ the connection

    def run_until(self, done: Callable[[], bool]) -> None:
        while not done() and self._broken is None:
            if self.deadline.expired():  # checked each turn: frames trickling in do not extend it
                self._break(RpcError(Code.DEADLINE_EXCEEDED, "no answer in time"))
                return
            try:
                self._turn(done)
            except h2.exceptions.NoAvailableStreamIDError as error:
                self._break(RpcError(Code.UNAVAILABLE, f"HTTP/2: out of stream IDs ({error})"))
            except h2.exceptions.H2Error as error:  # flow control, frame size, protocol, ...
                self._break(RpcError(Code.INTERNAL, f"HTTP/2 protocol error: {error}"))

    def _turn(self, done: Callable[[], bool]) -> None:
        """Send what can be sent, then read once (until the deadline or a refused call's retry)."""
        self._open_streams()
        try:
            self._sock.settimeout(self.deadline.left())
            self._sock.sendall(self._h2.data_to_send())
        except TimeoutError:
            self._break(RpcError(Code.DEADLINE_EXCEEDED, "the runtime does not read"))
            return
        except OSError as error:
            self._break(RpcError(Code.UNAVAILABLE, f"connection failed: {error.strerror or error}"))
            return
        if done():
            return
        wait = self.deadline.left()
        if self._waiting:
            wait = min(wait, max(0.0005, min(c.not_before for c in self._waiting) - self.deadline.clock()))
        try:
            self._sock.settimeout(wait)
            data = self._sock.recv(RECV_BYTES)
        except TimeoutError:
            return  # the next turn checks the deadline, or sends a refused call again
        except OSError as error:
            self._break(RpcError(Code.UNAVAILABLE, f"connection failed: {error.strerror or error}"))
            return
        if not data:
            self._break(RpcError(Code.UNAVAILABLE, "the runtime closed the connection"))
            return
        for chunk in self._until_goaway(data):
            for event in self._h2.receive_data(chunk):
                self._on(event)

    def _until_goaway(self, data: bytes) -> list[bytes]:
        """The bytes read, cut after each GOAWAY frame (and a frame's incomplete tail kept for
        the next read): h2 must see the GOAWAY alone to be kept open for the frames after it.
        A frame longer than allowed (an HTTP/1 answer reads as one) is an error at once."""
        inbox = self._inbox + data
        chunks: list[bytes] = []
        start = offset = 0
        while offset + 9 <= len(inbox):
            length = int.from_bytes(inbox[offset : offset + 3], "big")
            if length > self._h2.max_inbound_frame_size:  # h2 would wait for it, to the deadline
                raise h2.exceptions.FrameTooLargeError(
                    f"a frame of {length} bytes (over {self._h2.max_inbound_frame_size}): not HTTP/2?"
                )
            if offset + 9 + length > len(inbox):
                break
            offset += 9 + length
            if inbox[offset - 6 - length] == GOAWAY:
                chunks.append(inbox[start:offset])
                start = offset
        chunks.append(inbox[start:offset])
        self._inbox = inbox[offset:]
        return chunks

    def _open_streams(self) -> None:
        limit = self._h2.remote_settings.max_concurrent_streams
        now = self.deadline.clock()
        while self._waiting and self._h2.open_outbound_streams < limit and self._going_away is None:
            if self._waiting[0].not_before > now:
                return  # refused a moment ago: its turn comes after its pause
            call = self._waiting.popleft()
            stream = self._h2.get_next_available_stream_id()
            millis = max(1, min(99_999_999, int(self.deadline.left() * 1000)))
            self._h2.send_headers(
                stream,
                [
                    (b":method", b"POST"),
                    (b":scheme", b"http"),
                    (b":path", call.path),
                    (b":authority", b"localhost"),
                    (b"content-type", b"application/grpc"),
                    (b"te", b"trailers"),
                    (b"grpc-timeout", b"%dm" % millis),
                    (b"user-agent", USER_AGENT),
                ],
            )
            call.unsent = memoryview(struct.pack(">BI", 0, len(call.request)) + call.request)
            self._streams[stream] = call
            self._send_body(stream, call)

    def _send_body(self, stream: int, call: Pending[Message]) -> None:
        """As much of the request as the stream's and the connection's windows allow, in frames
        no larger than the server takes; the rest when a WINDOW_UPDATE comes."""
        while call.unsent:
            size = min(len(call.unsent), self._h2.local_flow_control_window(stream))
            size = min(size, self._h2.max_outbound_frame_size)
            if size <= 0:
                return
            chunk, call.unsent = call.unsent[:size], call.unsent[size:]
            self._h2.send_data(stream, chunk.tobytes(), end_stream=not call.unsent)

    def _send_bodies(self) -> None:
        for stream, call in list(self._streams.items()):
            if call.unsent:
                self._send_body(stream, call)

    def _on(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ConnectionTerminated):
            self._go_away(event)
            return
        if isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._send_bodies()  # credit came (for one stream, or all of them)
            return
        stream: int | None = getattr(event, "stream_id", None)
        call = self._streams.get(stream) if stream is not None else None
        if stream is None or call is None:
            return
        if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            call.headers.update((bytes(k), bytes(v)) for k, v in event.headers or ())
        elif isinstance(event, h2.events.DataReceived):
            call.body += event.data or b""
            self._h2.acknowledge_received_data(event.flow_controlled_length or 0, stream)
            if len(call.body) > self.max_message + 5:
                call.fail(RpcError(Code.RESOURCE_EXHAUSTED, f"reply larger than {self.max_message} bytes"))
                self._h2.reset_stream(stream)
                del self._streams[stream]
        elif isinstance(event, h2.events.StreamEnded):
            call.finish()
            del self._streams[stream]
        elif isinstance(event, h2.events.StreamReset):
            if event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM and not call.headers:
                # Not processed (RFC 9113 8.7): send it again, as gRPC's transparent retry does
                # (grpcio's server refuses a stream over its limit until it has let go of the
                # last), after a pause that doubles; a server that refuses everything fails it.
                call.refused += 1
                if self._going_away is not None:
                    call.fail(self._going_away)
                elif call.refused > REFUSALS:
                    call.fail(
                        RpcError(Code.UNAVAILABLE, f"the runtime refused the call {call.refused} times")
                    )
                else:
                    call.body.clear()
                    call.not_before = self.deadline.clock() + 0.001 * 2 ** (call.refused - 1)
                    self._waiting.appendleft(call)
            else:
                call.fail(RpcError(Code.INTERNAL, f"stream reset ({event.error_code!r})"))
            del self._streams[stream]

    def _go_away(self, event: h2.events.ConnectionTerminated) -> None:
        """GOAWAY: calls on streams above ``last_stream_id`` were not processed and fail, as do
        those not sent yet; the ones below it may still complete (RFC 9113, 6.8)."""
        last = event.last_stream_id if event.last_stream_id is not None else 0
        error = RpcError(
            Code.UNAVAILABLE, f"the runtime is ending the connection (GOAWAY {event.error_code!r})"
        )
        self._going_away = error
        for stream in [s for s in self._streams if s > last]:
            self._streams.pop(stream).fail(error)
        for call in self._waiting:
            call.fail(error)
        self._waiting.clear()
        if not self._streams:
            self._break(error)
            return
        # h2 closes its side on GOAWAY and would reject the frames of the streams still open
        # (python-hyper/h2#1181): keep it open for them; no new stream is started here.
        self._h2.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN

    def _break(self, error: RpcError) -> None:
        """The connection is of no more use: every call not yet answered gets this error."""
        self._broken = error
        for call in [*self._streams.values(), *self._waiting]:
            call.fail(error)
        self._streams.clear()
        self._waiting.clear()
