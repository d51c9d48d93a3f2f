"""The CRI messages vethpeer sends and reads, in protobuf's wire format, by hand.

protobuf's import (its upb extension, the descriptor pool and the generated ``api_pb2``) took
about 13 ms of CPU in every command on a CRI node, on the CRI source's thread: the thread every
other source had finished before, and that `which POD` waits for (docs/benchmarks.md, "CRI with
100 pods"). These are the four calls of :mod:`vethpeer.sources.cri`, with the same names,
fields, defaults and attribute access as the generated classes, so either can be passed to the
client: four requests to encode, four replies to decode, the fields the source reads and
nothing else (the others, and fields unknown to us, are skipped as protobuf skips unknown
fields). ``api_pb2`` stays the oracle: ``tests/unit/test_cri_messages.py`` checks both agree,
byte for byte on the requests and field by field on the replies (docs/development.md, "Protocols
spoken by hand").

proto3 as protobuf reads it: a field absent is its default ("", 0, an empty message, an empty
map); the last value of a scalar wins; a message field seen twice is merged; a map's last entry
for a key wins; a field whose wire type is not the one declared is skipped, as an unknown field;
a string that is not UTF-8, a truncated field or a varint longer than ten bytes raises
:class:`DecodeError` (the client turns it into INTERNAL, as protobuf's own error). One difference,
on the lenient side: the strings of fields not read here (annotations, images, ...) are skipped
unchecked, where protobuf refuses a whole reply for one that is not UTF-8.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

VARINT, FIXED64, LENGTH, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5
M = TypeVar("M", bound="Message")
Schema = Mapping[int, tuple[str, int, Any]]  # field number -> (name, kind, message type)

# PodSandboxState and NamespaceMode, as api_pb2 names them
SANDBOX_READY, SANDBOX_NOTREADY = 0, 1
POD, CONTAINER, NODE, TARGET = 0, 1, 2, 3


class DecodeError(ValueError):
    """Bytes that are not the message they should be."""


# The kinds of field: how each is read, and its default.
STRING, UINT, INT, ENUM, BOOL, MESSAGE, REPEATED, MAP = range(8)  # INT: int64; ENUM, UINT: 32 bits


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """(value, next offset): the unsigned varint at ``at``."""
    value = shift = 0
    while True:
        if at >= len(data):
            raise DecodeError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, at
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than ten bytes")


def _skip(data: bytes, at: int, wire: int, number: int) -> int:
    """The offset after a field of this wire type (a group's to its END_GROUP)."""
    if wire == VARINT:
        return _varint(data, at)[1]
    if wire == FIXED64:
        end = at + 8
    elif wire == FIXED32:
        end = at + 4
    elif wire == LENGTH:
        size, at = _varint(data, at)
        end = at + size
    elif wire == START_GROUP:
        while True:
            key, at = _varint(data, at)
            if key & 7 == END_GROUP:
                if key >> 3 != number:
                    raise DecodeError("mismatched end of group")
                return at
            at = _skip(data, at, key & 7, key >> 3)
    else:
        raise DecodeError(f"wire type {wire}")
    if end > len(data):
        raise DecodeError("truncated field")
    return end


def _text(data: bytes, start: int, end: int) -> str:
    try:
        return data[start:end].decode()
    except UnicodeDecodeError as error:
        raise DecodeError(f"a string field is not UTF-8: {error}") from None


def _map_entry(data: bytes, start: int, end: int) -> tuple[str, str] | None:
    """One entry of a ``map<string, string>``: (key, value), "" when absent; None for an entry
    with any other field (protobuf keeps such an entry aside, as an unknown field, not in the map)."""
    # Nearly every entry is key then value, each shorter than 128 bytes: read at once.
    if end - start >= 4 and data[start] == 0x0A and data[start + 1] < 0x80:
        middle = start + 2 + data[start + 1]
        if middle + 2 <= end and data[middle] == 0x12 and middle + 2 + data[middle + 1] == end:
            return _text(data, start + 2, middle), _text(data, middle + 2, end)
    key = value = ""
    at = start
    other = False
    while at < end:
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise DecodeError("field number 0")
        if wire == LENGTH and number in (1, 2):
            size, at = _varint(data, at)
            if at + size > end:
                raise DecodeError("truncated field")
            if number == 1:
                key = _text(data, at, at + size)
            else:
                value = _text(data, at, at + size)
            at += size
        else:
            at = _skip(data, at, wire, number)
            other = True
    if at != end:
        raise DecodeError("truncated field")
    return None if other else (key, value)


_DEFAULTS = {STRING: "", UINT: 0, INT: 0, ENUM: 0, BOOL: False}
_SCALARS: dict[type, dict[str, Any]] = {}


def _scalars(cls: type[Message]) -> dict[str, Any]:
    """The class's scalar fields and their defaults (made once a class)."""
    found = _SCALARS.get(cls)
    if found is None:
        found = _SCALARS[cls] = {
            name: _DEFAULTS[kind] for name, kind, _ in cls.FIELDS.values() if kind < MESSAGE
        }
    return found


class Message:
    """A message of this subset: ``FIELDS`` is its schema (number -> (name, kind, message type))."""

    FIELDS: ClassVar[Schema] = {}

    def __init__(self, **given: Any) -> None:
        fields = self.__dict__
        fields.update(_scalars(type(self)))
        for name, kind, sub in self.FIELDS.values():  # containers: one of its own for each message
            if kind >= MESSAGE:
                fields[name] = sub() if kind == MESSAGE else [] if kind == REPEATED else {}
        self._present: set[str] = set()  # message fields given or read (encoded even when empty)
        if given:
            self._give(given)

    def _give(self, given: dict[str, Any]) -> None:
        for name, kind, _sub in self.FIELDS.values():
            if name in given:
                value = given.pop(name)
                if kind == MESSAGE:
                    self._present.add(name)
                elif kind in (REPEATED, MAP):
                    value = list(value) if kind == REPEATED else dict(value)
                setattr(self, name, value)
        if given:
            raise TypeError(f"{type(self).__name__} has no field {next(iter(given))!r}")

    # ------------------------------------------------------------------ reading

    @classmethod
    def FromString(cls: type[M], data: bytes) -> M:  # protobuf's name
        message = cls()
        message._merge(bytes(data), 0, len(data))
        return message

    def _merge(self, data: bytes, at: int, end: int) -> None:
        fields = self.FIELDS
        while at < end:
            tag = data[at]
            if tag < 0x80:  # one byte: every field of this subset
                at += 1
            else:
                tag, at = _varint(data, at)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise DecodeError("field number 0")
            field = fields.get(number)
            if field is None:
                if wire == LENGTH and at < end and data[at] < 0x80:
                    at += 1 + data[at]
                else:
                    at = _skip(data, at, wire, number)
                continue
            name, kind, sub = field
            if kind in (UINT, INT, ENUM, BOOL):
                if wire != VARINT:
                    at = _skip(data, at, wire, number)
                    continue
                value, at = _varint(data, at)
                if kind == INT and value >= 1 << 63:
                    value -= 1 << 64
                elif kind == UINT:
                    value &= 0xFFFFFFFF
                elif kind == ENUM:
                    value &= 0xFFFFFFFF
                    value = value - (1 << 32) if value >= 1 << 31 else value
                setattr(self, name, bool(value) if kind == BOOL else value)
                continue
            if wire != LENGTH:
                at = _skip(data, at, wire, number)
                continue
            size = data[at] if at < end else 0x80
            if size < 0x80:
                at += 1
            else:
                size, at = _varint(data, at)
            stop = at + size
            if stop > end:
                raise DecodeError("truncated field")
            if kind == STRING:
                setattr(self, name, _text(data, at, stop))
            elif kind == MESSAGE:
                getattr(self, name)._merge(data, at, stop)  # a message seen twice is merged
                self._present.add(name)
            elif kind == REPEATED:
                item = sub()
                item._merge(data, at, stop)
                getattr(self, name).append(item)
            else:  # MAP
                entry = _map_entry(data, at, stop)
                if entry is not None:
                    getattr(self, name)[entry[0]] = entry[1]
            at = stop
        if at != end:
            raise DecodeError("truncated field")

    # ------------------------------------------------------------------ writing

    def SerializeToString(self) -> bytes:  # protobuf's name
        out = bytearray()
        for number, (name, kind, _sub) in sorted(self.FIELDS.items()):
            value = getattr(self, name)
            if kind == STRING:
                if value:
                    raw = value.encode()
                    out += _tag(number, LENGTH) + _uvarint(len(raw)) + raw
            elif kind in (UINT, INT, ENUM, BOOL):
                if value:
                    out += _tag(number, VARINT) + _uvarint(int(value) & 0xFFFFFFFFFFFFFFFF)
            elif kind == MESSAGE:
                if name in self._present:
                    raw = value.SerializeToString()
                    out += _tag(number, LENGTH) + _uvarint(len(raw)) + raw
            else:
                raise NotImplementedError(f"{type(self).__name__}.{name}: only requests are encoded")
        return bytes(out)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, name) == getattr(other, name) for name, _, _ in self.FIELDS.values()
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, as protobuf's messages

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name, _, _ in self.FIELDS.values())
        return f"{type(self).__name__}({shown})"


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _uvarint(number << 3 | wire)


# ---------------------------------------------------------------------- requests


class VersionRequest(Message):
    version: str
    FIELDS: ClassVar[Schema] = {1: ("version", STRING, None)}


class PodSandboxStateValue(Message):
    state: int
    FIELDS: ClassVar[Schema] = {1: ("state", ENUM, None)}


class PodSandboxFilter(Message):
    id: str
    state: PodSandboxStateValue
    FIELDS: ClassVar[Schema] = {1: ("id", STRING, None), 2: ("state", MESSAGE, PodSandboxStateValue)}


class ListPodSandboxRequest(Message):
    filter: PodSandboxFilter
    FIELDS: ClassVar[Schema] = {1: ("filter", MESSAGE, PodSandboxFilter)}


class ListContainersRequest(Message):
    FIELDS: ClassVar[Schema] = {}  # no filter: every container


class PodSandboxStatusRequest(Message):
    pod_sandbox_id: str
    verbose: bool
    FIELDS: ClassVar[Schema] = {1: ("pod_sandbox_id", STRING, None), 2: ("verbose", BOOL, None)}


# ---------------------------------------------------------------------- replies


class VersionResponse(Message):
    version: str
    runtime_name: str
    runtime_version: str
    runtime_api_version: str
    FIELDS: ClassVar[Schema] = {
        1: ("version", STRING, None),
        2: ("runtime_name", STRING, None),
        3: ("runtime_version", STRING, None),
        4: ("runtime_api_version", STRING, None),
    }


class PodSandboxMetadata(Message):
    name: str
    uid: str
    namespace: str
    attempt: int
    FIELDS: ClassVar[Schema] = {
        1: ("name", STRING, None),
        2: ("uid", STRING, None),
        3: ("namespace", STRING, None),
        4: ("attempt", UINT, None),
    }


class PodSandbox(Message):
    id: str
    metadata: PodSandboxMetadata
    state: int
    created_at: int
    labels: dict[str, str]
    FIELDS: ClassVar[Schema] = {
        1: ("id", STRING, None),
        2: ("metadata", MESSAGE, PodSandboxMetadata),
        3: ("state", ENUM, None),
        4: ("created_at", INT, None),
        5: ("labels", MAP, None),
    }


class ListPodSandboxResponse(Message):
    items: list[PodSandbox]
    FIELDS: ClassVar[Schema] = {1: ("items", REPEATED, PodSandbox)}


class ContainerMetadata(Message):
    name: str
    attempt: int
    FIELDS: ClassVar[Schema] = {1: ("name", STRING, None), 2: ("attempt", UINT, None)}


class Container(Message):
    id: str
    pod_sandbox_id: str
    metadata: ContainerMetadata
    state: int
    created_at: int
    labels: dict[str, str]
    FIELDS: ClassVar[Schema] = {
        1: ("id", STRING, None),
        2: ("pod_sandbox_id", STRING, None),
        3: ("metadata", MESSAGE, ContainerMetadata),
        6: ("state", ENUM, None),
        7: ("created_at", INT, None),
        8: ("labels", MAP, None),
    }


class ListContainersResponse(Message):
    containers: list[Container]
    FIELDS: ClassVar[Schema] = {1: ("containers", REPEATED, Container)}


class NamespaceOption(Message):
    network: int
    FIELDS: ClassVar[Schema] = {1: ("network", ENUM, None)}


class Namespace(Message):
    options: NamespaceOption
    FIELDS: ClassVar[Schema] = {2: ("options", MESSAGE, NamespaceOption)}


class LinuxPodSandboxStatus(Message):
    namespaces: Namespace
    FIELDS: ClassVar[Schema] = {1: ("namespaces", MESSAGE, Namespace)}


class PodSandboxStatus(Message):
    id: str
    metadata: PodSandboxMetadata
    state: int
    linux: LinuxPodSandboxStatus
    FIELDS: ClassVar[Schema] = {
        1: ("id", STRING, None),
        2: ("metadata", MESSAGE, PodSandboxMetadata),
        3: ("state", ENUM, None),
        6: ("linux", MESSAGE, LinuxPodSandboxStatus),
    }


class PodSandboxStatusResponse(Message):
    status: PodSandboxStatus
    info: dict[str, str]
    FIELDS: ClassVar[Schema] = {1: ("status", MESSAGE, PodSandboxStatus), 2: ("info", MAP, None)}
