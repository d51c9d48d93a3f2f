"""Open vSwitch: which OVS bridge a host-side veth is a port of, read from OVSDB.

An OVS port's kernel master says little: ``ovs-system`` with the kernel datapath,
nothing at all with the userspace (``netdev``) datapath, where ovs-vswitchd just
opens the device with a packet socket. The bridge name lives only in OVSDB, so it
is read there: one read-only ``transact`` of three ``select`` operations over the
OVSDB JSON-RPC unix socket (RFC 7047), with the standard library — no fork of
``ovs-vsctl``, no python-ovs dependency.

The socket is ``$OVS_RUNDIR/db.sock`` when OVS_RUNDIR is set (as ovs-vsctl does),
else ``/var/run/openvswitch/db.sock``. No socket means no OVS: a ``skipped``
status, never an error. The port names are those of the namespace ovs-vswitchd
runs in, which this module takes to be the host's.
"""

from __future__ import annotations

import codecs
import json
import os
import socket
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from .model import End, Report, SourceState, SourceStatus

NAME = "ovs"
DEFAULT_RUNDIR = "/var/run/openvswitch"
KERNEL_MASTERS = (None, "ovs-system")  # what the kernel says an OVS port's master is


class OvsPort(NamedTuple):
    """One OVS Interface row, with the bridge and port that hold it."""

    bridge: str
    port: str
    interface: str
    type: str = ""  # "" (a system device: veth, tap...), "internal", "patch", "vxlan", ...
    ofport: int | None = None
    ifindex: int | None = None
    error: str | None = None  # why OVS could not use the device


class OvsResult(NamedTuple):
    status: SourceStatus
    ports: Mapping[str, OvsPort]  # by interface name


def db_socket(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return os.path.join(env.get("OVS_RUNDIR") or DEFAULT_RUNDIR, "db.sock")


class OvsdbError(Exception):
    pass


def _atom(value: Any) -> Any:
    """An OVSDB atom: ``["uuid", u]`` -> u; anything else as is."""
    if isinstance(value, list) and len(value) == 2 and value[0] in ("uuid", "named-uuid"):
        return value[1]
    return value


def _set(value: Any) -> list[Any]:
    """An OVSDB set: a bare atom when it has one element, else ``["set", [...]]``."""
    if isinstance(value, list) and len(value) == 2 and value[0] == "set":
        return [_atom(v) for v in value[1]]
    return [_atom(value)]


def _optional_int(value: Any) -> int | None:
    found = _set(value)
    return found[0] if found and isinstance(found[0], int) and found[0] >= 0 else None


def _optional_str(value: Any) -> str | None:
    found = _set(value)
    return found[0] if found and isinstance(found[0], str) and found[0] else None


def ports_from_rows(
    bridges: list[dict[str, Any]], ports: list[dict[str, Any]], interfaces: list[dict[str, Any]]
) -> dict[str, OvsPort]:
    """Join the Bridge, Port and Interface rows of one select into interface name -> OvsPort."""
    iface_by_uuid = {_atom(row["_uuid"]): row for row in interfaces}
    port_by_uuid = {_atom(row["_uuid"]): row for row in ports}
    found: dict[str, OvsPort] = {}
    for bridge in bridges:
        for port_uuid in _set(bridge.get("ports", ["set", []])):
            port = port_by_uuid.get(port_uuid)
            if port is None:
                continue
            for iface_uuid in _set(port.get("interfaces", ["set", []])):
                iface = iface_by_uuid.get(iface_uuid)
                if iface is None:
                    continue
                found[iface["name"]] = OvsPort(
                    bridge=bridge["name"],
                    port=port["name"],
                    interface=iface["name"],
                    type=iface.get("type", "") or "",
                    ofport=_optional_int(iface.get("ofport", ["set", []])),
                    ifindex=_optional_int(iface.get("ifindex", ["set", []])),
                    error=_optional_str(iface.get("error", ["set", []])),
                )
    return found


MAX_REPLY = 64 << 20  # characters of one reply at most (a thousand ports take ~1 MB)


def _select(table: str, columns: list[str]) -> dict[str, Any]:
    return {"op": "select", "table": table, "where": [], "columns": columns}


QUERY = [
    _select("Bridge", ["_uuid", "name", "ports"]),
    _select("Port", ["_uuid", "name", "interfaces"]),
    _select("Interface", ["_uuid", "name", "type", "ofport", "ifindex", "error"]),
]


def transact(path: str, ops: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """One JSON-RPC ``transact`` (select only: read-only). Messages are bare concatenated JSON."""
    deadline = time.monotonic() + timeout
    request = {"method": "transact", "params": ["Open_vSwitch", *ops], "id": 0}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(request).encode())
        decoder = json.JSONDecoder()
        text = codecs.getincrementaldecoder("utf-8")("replace")  # a character may span two reads
        buffer = ""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:  # keepalives alone do not keep a call alive past its deadline
                raise TimeoutError("no answer in time")
            sock.settimeout(left)
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise OvsdbError("ovsdb-server closed the connection")
            buffer += text.decode(chunk)
            if len(buffer) > MAX_REPLY:
                raise OvsdbError(f"reply larger than {MAX_REPLY} characters")
            while buffer.strip():
                buffer = buffer.lstrip()
                try:
                    message, end = decoder.raw_decode(buffer)
                except ValueError:
                    break  # incomplete: read more
                buffer = buffer[end:]
                if message.get("method") == "echo":  # the server's keepalive
                    reply = {"result": message.get("params", []), "error": None, "id": message.get("id")}
                    sock.sendall(json.dumps(reply).encode())
                    continue
                if message.get("id") != 0 or "method" in message:
                    continue
                if message.get("error") is not None:
                    raise OvsdbError(str(message["error"]))
                results: list[dict[str, Any]] = message["result"]
                for result in results:
                    if isinstance(result, dict) and "error" in result:
                        raise OvsdbError(f"{result['error']}: {result.get('details', '')}")
                return results


def collect(timeout: float = 3.0, path: str | None = None) -> OvsResult:
    """Read every OVS bridge's ports; an absent OVS is a status, not an error."""
    path = path or db_socket()
    if not os.path.exists(path):
        return OvsResult(SourceStatus(NAME, SourceState.SKIPPED, f"no OVSDB socket at {path}"), {})
    try:
        bridges, ports, interfaces = (result["rows"] for result in transact(path, QUERY, timeout))
    except TimeoutError:
        return OvsResult(
            SourceStatus(NAME, SourceState.TIMEOUT, f"{path}: no answer within {timeout:g} s"), {}
        )
    except (ConnectionRefusedError, FileNotFoundError) as error:
        return OvsResult(SourceStatus(NAME, SourceState.UNAVAILABLE, f"{path}: {error.strerror}"), {})
    except (OSError, OvsdbError, ValueError, KeyError) as error:
        return OvsResult(SourceStatus(NAME, SourceState.ERROR, f"{path}: {error}"), {})
    found = ports_from_rows(bridges, ports, interfaces)
    return OvsResult(SourceStatus(NAME, SourceState.OK, f"{len(found)} interfaces"), found)


def _end(end: End, ports: Mapping[str, OvsPort], host_ino: int, host_dev: int) -> End:
    port = ports.get(end.link.name)
    if (
        port is None
        or (end.ns.key.ino, end.ns.key.dev) != (host_ino, host_dev)
        or end.master not in KERNEL_MASTERS
        or (port.ifindex is not None and port.ifindex != end.link.index)  # a stale row for an old device
    ):
        return end
    return end._replace(master=port.bridge)


def annotate(report: Report, result: OvsResult) -> Report:
    """The report with OVS bridges as the master of host-side OVS ports, and the ovs status."""
    if not result.ports:  # no OVS here (most hosts): no row can change
        return report._replace(sources=(*report.sources, result.status))
    host = report.snapshot.host
    rows = []
    for row in report.rows:
        end = _end(row.end, result.ports, host.ino, host.dev)
        peer = _end(row.peer, result.ports, host.ino, host.dev) if row.peer is not None else None
        rows.append(row if (end is row.end and peer is row.peer) else row._replace(end=end, peer=peer))
    return report._replace(rows=tuple(rows), sources=(*report.sources, result.status))
