"""OVSDB decoding, the JSON-RPC client against a fake server, and the report annotation."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vethpeer.model import SourceState, SourceStatus
from vethpeer.ovs import OvsPort, OvsResult, annotate, collect, db_socket, ports_from_rows

from .builders import HOST, Topo

BRIDGES = [
    {"_uuid": ["uuid", "b1"], "name": "vpoovs0", "ports": ["set", [["uuid", "p1"], ["uuid", "p2"]]]},
    {"_uuid": ["uuid", "b2"], "name": "vpoovs1", "ports": ["uuid", "p3"]},  # one element: a bare atom
]
PORTS = [
    {"_uuid": ["uuid", "p1"], "name": "vpoh-a", "interfaces": ["uuid", "i1"]},
    {"_uuid": ["uuid", "p2"], "name": "vpoovs0", "interfaces": ["uuid", "i2"]},
    {"_uuid": ["uuid", "p3"], "name": "bond0", "interfaces": ["set", [["uuid", "i3"], ["uuid", "i4"]]]},
]
INTERFACES = [
    {"_uuid": ["uuid", "i1"], "name": "vpoh-a", "type": "", "ofport": 1, "ifindex": 101,
     "error": ["set", []]},
    {"_uuid": ["uuid", "i2"], "name": "vpoovs0", "type": "internal", "ofport": 65534, "ifindex": 9,
     "error": ["set", []]},
    {"_uuid": ["uuid", "i3"], "name": "vpoh-b", "type": "", "ofport": ["set", []], "ifindex": ["set", []],
     "error": "could not open network device vpoh-b (No such device)"},
    {"_uuid": ["uuid", "i4"], "name": "vpoh-c", "type": "", "ofport": -1, "ifindex": 0, "error": ["set", []]},
]  # fmt: skip


def test_ports_from_rows_joins_bridge_port_interface() -> None:
    ports = ports_from_rows(BRIDGES, PORTS, INTERFACES)
    assert ports["vpoh-a"] == OvsPort("vpoovs0", "vpoh-a", "vpoh-a", "", 1, 101, None)
    assert ports["vpoovs0"].type == "internal"
    assert ports["vpoh-b"].bridge == "vpoovs1" and ports["vpoh-b"].port == "bond0"
    assert ports["vpoh-b"].ofport is None and ports["vpoh-b"].error is not None
    assert ports["vpoh-c"].ofport is None  # -1: OVS could not attach it


def test_db_socket_follows_ovs_rundir() -> None:
    assert db_socket({"OVS_RUNDIR": "/run/vpo-x"}) == "/run/vpo-x/db.sock"
    assert db_socket({}) == "/var/run/openvswitch/db.sock"


def test_missing_socket_is_skipped() -> None:
    result = collect(1.0, "/nonexistent/vpo/db.sock")
    assert result.status.state is SourceState.SKIPPED and result.ports == {}


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vpo-ovs-unit-") as d:
        yield Path(d)


def _serve(path: Path, handler: Callable[[socket.socket], None]) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def run() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                handler(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _read_request(conn: socket.socket) -> dict[str, object]:
    decoder = json.JSONDecoder()
    buffer = ""
    while True:
        buffer += conn.recv(65536).decode()
        try:
            message, _ = decoder.raw_decode(buffer)
            return message  # type: ignore[no-any-return]
        except ValueError:
            continue


def test_transact_against_a_fake_server_with_echo_and_split_reply(sock_dir: Path) -> None:
    path = sock_dir / "db.sock"
    seen: dict[str, object] = {}

    def handler(conn: socket.socket) -> None:
        request = _read_request(conn)
        seen.update(request)
        conn.sendall(json.dumps({"method": "echo", "params": ["x"], "id": "echo"}).encode())
        echo_reply = _read_request(conn)
        seen["echo_reply"] = echo_reply
        reply = json.dumps(
            {"id": request["id"], "error": None,
             "result": [{"rows": BRIDGES}, {"rows": PORTS}, {"rows": INTERFACES}]}
        ).encode()  # fmt: skip
        conn.sendall(reply[:50])
        conn.sendall(reply[50:])

    thread = _serve(path, handler)
    result = collect(3.0, str(path))
    thread.join(3)
    assert result.status.state is SourceState.OK, result.status
    assert result.ports["vpoh-a"].bridge == "vpoovs0"
    assert seen["method"] == "transact"
    params = seen["params"]
    assert isinstance(params, list) and params[0] == "Open_vSwitch"
    assert {op["op"] for op in params[1:]} == {"select"}  # read-only
    assert seen["echo_reply"] == {"result": ["x"], "error": None, "id": "echo"}


def test_operation_error_is_an_error_status(sock_dir: Path) -> None:
    path = sock_dir / "db.sock"

    def handler(conn: socket.socket) -> None:
        request = _read_request(conn)
        reply = {"id": request["id"], "error": None, "result": [{"error": "unknown table", "details": "x"}]}
        conn.sendall(json.dumps(reply).encode())

    thread = _serve(path, handler)
    result = collect(3.0, str(path))
    thread.join(3)
    assert result.status.state is SourceState.ERROR and "unknown table" in result.status.detail


def test_silent_server_is_a_timeout(sock_dir: Path) -> None:
    path = sock_dir / "db.sock"
    done = threading.Event()
    thread = _serve(path, lambda conn: done.wait(5))
    result = collect(0.3, str(path))
    done.set()
    thread.join(3)
    assert result.status.state is SourceState.TIMEOUT


def test_socket_without_a_daemon_is_unavailable(sock_dir: Path) -> None:
    path = sock_dir / "db.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.close()  # the file stays, nobody listens: ECONNREFUSED
    assert os.path.exists(path)
    assert collect(1.0, str(path)).status.state is SourceState.UNAVAILABLE


def test_annotate_sets_the_ovs_bridge_as_master_of_host_ports() -> None:
    t = Topo()
    a = t.netns("vpo-a")
    _eth, host_side = t.veth(a, "eth0", HOST, "vpoh-a")
    b = t.netns("vpo-b")
    t.veth(b, "eth0", HOST, "vpoh-b")
    report = t.report()
    ports = {
        "vpoh-a": OvsPort("vpoovs0", "vpoh-a", "vpoh-a", ifindex=host_side.index),
        "vpoh-b": OvsPort("vpoovs0", "vpoh-b", "vpoh-b", ifindex=999),  # stale row: another device
        "eth0": OvsPort("vpoovs0", "eth0", "eth0"),  # a host name, not the workload's eth0
    }
    status = SourceStatus("ovs", SourceState.OK)
    annotated = annotate(report, OvsResult(status, ports))
    masters = {(r.end.ns.key, r.end.link.name): r.peer.master for r in annotated.rows if r.peer is not None}
    assert masters[(a, "eth0")] == "vpoovs0"
    assert masters[(b, "eth0")] is None
    assert all(r.end.master is None for r in annotated.rows)
    assert annotated.sources[-1] == status


def test_a_character_split_across_two_reads(sock_dir: Path) -> None:
    """ovsdb-server writes UTF-8 as it is; a read may end in the middle of a character."""
    path = sock_dir / "db.sock"
    interfaces = [{**INTERFACES[0], "name": "vpoh-é", "error": "réseau ∅"}, *INTERFACES[1:]]
    ports = [{**PORTS[0], "name": "vpoh-é"}, *PORTS[1:]]

    def handler(conn: socket.socket) -> None:
        request = _read_request(conn)
        reply = json.dumps(
            {"id": request["id"], "error": None,
             "result": [{"rows": BRIDGES}, {"rows": ports}, {"rows": interfaces}]},
            ensure_ascii=False,
        ).encode()  # fmt: skip
        cut = reply.index("réseau".encode()) + 2  # between the two bytes of é
        conn.sendall(reply[:cut])
        threading.Event().wait(0.05)  # two reads, not one
        conn.sendall(reply[cut:])

    thread = _serve(path, handler)
    result = collect(3.0, str(path))
    thread.join(3)
    assert result.status.state is SourceState.OK, result.status
    assert result.ports["vpoh-é"].port == "vpoh-é" and result.ports["vpoh-é"].error == "réseau ∅"


def test_a_server_that_trickles_keepalives_is_still_a_timeout(sock_dir: Path) -> None:
    """An echo every 4 ms (for 3 s at most): the call ends at its deadline all the same."""
    path = sock_dir / "db.sock"
    done = threading.Event()

    def handler(conn: socket.socket) -> None:
        _read_request(conn)
        stop = time.monotonic() + 3
        while not done.wait(0.004) and time.monotonic() < stop:
            try:
                conn.sendall(json.dumps({"method": "echo", "params": [], "id": "e"}).encode())
                conn.recv(65536, socket.MSG_DONTWAIT)  # the client's echo replies
            except BlockingIOError:
                continue
            except OSError:
                return

    thread = _serve(path, handler)
    started = time.monotonic()
    result = collect(0.3, str(path))
    took = time.monotonic() - started
    done.set()
    thread.join(3)
    assert result.status.state is SourceState.TIMEOUT, result.status
    assert took < 1.0


def test_port_of_is_gone() -> None:
    import vethpeer.ovs

    assert not hasattr(vethpeer.ovs, "port_of")  # issue 19: dead code


def test_a_reply_without_end_is_refused_past_the_limit(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vethpeer.ovs

    monkeypatch.setattr(vethpeer.ovs, "MAX_REPLY", 10_000)
    path = sock_dir / "db.sock"

    def handler(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b'{"id": 0, "result": [')
        try:
            for _ in range(1000):
                conn.sendall(b'{"rows": []},' * 10)
        except OSError:  # the client gave up, as it should
            return

    thread = _serve(path, handler)
    result = collect(3.0, str(path))
    thread.join(3)
    assert result.status.state is SourceState.ERROR and "larger than 10000 characters" in result.status.detail
