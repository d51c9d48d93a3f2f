"""A handler's bug is a 500 and a log line; with --debug the line carries the traceback. The
real stdlib server on loopback (a port of this test's own range), a router that raises."""

from __future__ import annotations

import contextlib
import http.client
from collections.abc import Iterator, Mapping

import pytest

from vethpeer.agent.api import Response
from vethpeer.agent.http import Server, serve_in_thread

PORTS = range(21400, 21420)


def broken(_method: str, _path: str, _headers: Mapping[str, str]) -> Response:
    raise KeyError("vqe-handler-bug")


@contextlib.contextmanager
def running(debug: bool, lines: list[str]) -> Iterator[int]:
    for port in PORTS:
        try:
            server = Server(("127.0.0.1", port), broken, lines.append, debug=debug)
        except OSError:
            continue
        break
    else:
        pytest.fail(f"no free port in {PORTS}")
    serve_in_thread(server, poll=0.05)
    try:
        yield port
    finally:
        server.stop()


@pytest.mark.parametrize("debug", [False, True])
def test_a_handler_bug_is_a_500_and_logged_with_the_traceback_under_debug(debug: bool) -> None:
    lines: list[str] = []
    with running(debug, lines) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/vqe")
        reply = connection.getresponse()
        assert reply.status == 500 and reply.read() == b"internal error\n"
        connection.close()
    assert len(lines) == 1 and "KeyError: 'vqe-handler-bug'" in lines[0], lines
    assert ("Traceback (most recent call last)" in lines[0]) is debug
