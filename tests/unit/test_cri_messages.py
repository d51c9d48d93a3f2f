"""vethpeer.cri.messages (protobuf's wire format by hand) against protobuf's generated api_pb2,
the oracle: the requests byte for byte, the replies field by field, on real-shaped messages,
edge cases of the format, and seeded random corruptions of them (both must fail, or agree)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.lab import api_pb2 as pb
from tests.messages_oracle import same
from vethpeer.cri import messages as ours

REPLIES = ("VersionResponse", "ListPodSandboxResponse", "ListContainersResponse", "PodSandboxStatusResponse")


def decode_both(name: str, data: bytes) -> tuple[Any, Any]:
    return getattr(ours, name).FromString(data), getattr(pb, name).FromString(data)


def sandbox(i: int) -> pb.PodSandbox:
    return pb.PodSandbox(
        id=f"{i:064x}",
        metadata=pb.PodSandboxMetadata(name=f"web-{i}", uid=f"uid-{i}", namespace="prod", attempt=i % 3),
        state=i % 2,
        created_at=1733350000000000000 + i,
        labels={"app": "web", "io.kubernetes.pod.name": f"web-{i}", "é": "ü" * (i % 200)},
        annotations={"kubernetes.io/config.seen": "2026-12-04T22:00:00Z", "long": "x" * 300},
        runtime_handler="runc",
    )


def container(i: int) -> pb.Container:
    return pb.Container(
        id=f"c{i:063x}",
        pod_sandbox_id=f"{i // 2:064x}",
        metadata=pb.ContainerMetadata(name="" if i % 5 == 0 else f"app-{i % 3}", attempt=2**32 - 1),
        image=pb.ImageSpec(image="sha256:" + "a" * 64, annotations={"a": "b"}),
        image_ref="sha256:" + "b" * 64,
        state=i % 4,
        created_at=-i,
        labels={"io.kubernetes.container.name": f"app-{i % 3}"},
        annotations={"io.kubernetes.container.hash": "123"},
        image_id="img",
    )


def status_reply(network: int) -> pb.PodSandboxStatusResponse:
    return pb.PodSandboxStatusResponse(
        status=pb.PodSandboxStatus(
            id="s" * 64,
            metadata=pb.PodSandboxMetadata(name="db", uid="u", namespace="prod", attempt=1),
            state=pb.SANDBOX_NOTREADY,
            created_at=5,
            network=pb.PodSandboxNetworkStatus(ip="10.0.0.5", additional_ips=[pb.PodIP(ip="fd00::5")]),
            linux=pb.LinuxPodSandboxStatus(
                namespaces=pb.Namespace(options=pb.NamespaceOption(network=network, pid=1, ipc=2))
            ),
            labels={"a": "b"},
            annotations={"c": "d"},
            runtime_handler="runc",
        ),
        info={"info": '{"pid": 42, "runtimeSpec": {}}', "other": ""},
        containers_statuses=[pb.ContainerStatus(id="c1")],
        timestamp=7,
    )


def examples() -> list[tuple[str, bytes]]:
    """Real-shaped replies, as containerd would send them (and empty ones)."""
    return [
        (
            "VersionResponse",
            pb.VersionResponse(version="0.1.0", runtime_name="containerd").SerializeToString(),
        ),
        (
            "VersionResponse",
            pb.VersionResponse(
                version="0.1.0", runtime_name="cri-o", runtime_version="1.31.0", runtime_api_version="v1"
            ).SerializeToString(),
        ),
        ("ListPodSandboxResponse", b""),
        (
            "ListPodSandboxResponse",
            pb.ListPodSandboxResponse(items=[sandbox(i) for i in range(40)]).SerializeToString(),
        ),
        ("ListContainersResponse", b""),
        (
            "ListContainersResponse",
            pb.ListContainersResponse(containers=[container(i) for i in range(40)]).SerializeToString(),
        ),
        ("PodSandboxStatusResponse", b""),
        ("PodSandboxStatusResponse", status_reply(pb.NODE).SerializeToString()),
        ("PodSandboxStatusResponse", status_reply(pb.POD).SerializeToString()),
    ]


@pytest.mark.parametrize(("name", "data"), examples())
def test_replies_read_as_protobuf_reads_them(name: str, data: bytes) -> None:
    mine, theirs = decode_both(name, data)
    same(mine, theirs)


def test_requests_are_the_bytes_protobuf_writes() -> None:
    for state in (pb.SANDBOX_READY, pb.SANDBOX_NOTREADY, -1):
        theirs = pb.ListPodSandboxRequest(
            filter=pb.PodSandboxFilter(state=pb.PodSandboxStateValue(state=state))
        )
        mine = ours.ListPodSandboxRequest(
            filter=ours.PodSandboxFilter(state=ours.PodSandboxStateValue(state=state))
        )
        assert mine.SerializeToString() == theirs.SerializeToString()
    assert ours.ListPodSandboxRequest().SerializeToString() == pb.ListPodSandboxRequest().SerializeToString()
    assert (
        ours.ListPodSandboxRequest(filter=ours.PodSandboxFilter(id="abc")).SerializeToString()
        == pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(id="abc")).SerializeToString()
    )
    for version in ("v1", "", "é" * 200):
        assert (
            ours.VersionRequest(version=version).SerializeToString()
            == pb.VersionRequest(version=version).SerializeToString()
        )
    assert ours.ListContainersRequest().SerializeToString() == pb.ListContainersRequest().SerializeToString()
    for sid, verbose in (("a" * 64, True), ("", False), ("x", False)):
        assert (
            ours.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=verbose).SerializeToString()
            == pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=verbose).SerializeToString()
        )
    with pytest.raises(TypeError):
        ours.VersionRequest(versions="v1")


def test_the_constants_are_protobufs() -> None:
    assert (ours.SANDBOX_READY, ours.SANDBOX_NOTREADY) == (pb.SANDBOX_READY, pb.SANDBOX_NOTREADY)
    assert (ours.POD, ours.CONTAINER, ours.NODE, ours.TARGET) == (pb.POD, pb.CONTAINER, pb.NODE, pb.TARGET)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return ours._tag(number, wire) + payload


def _length(number: int, payload: bytes) -> bytes:
    return _field(number, ours.LENGTH, ours._uvarint(len(payload)) + payload)


EDGES = [
    # a message field seen twice is merged, a scalar's last value wins
    ("ListPodSandboxResponse", _length(1, sandbox(1).SerializeToString() + sandbox(2).SerializeToString())),
    (
        "PodSandboxStatusResponse",
        status_reply(pb.NODE).SerializeToString() + status_reply(pb.POD).SerializeToString(),
    ),
    (
        "PodSandboxStatusResponse",
        _length(1, _length(2, _length(1, b"a"))) + _length(1, _length(2, _length(3, b"n"))),
    ),
    # a map's last entry for a key wins; an entry without key or value; value before key; extra fields
    (
        "PodSandboxStatusResponse",
        _length(2, _length(1, b"k") + _length(2, b"1")) + _length(2, _length(1, b"k")),
    ),
    ("PodSandboxStatusResponse", _length(2, _length(2, b"v")) + _length(2, b"")),
    ("PodSandboxStatusResponse", _length(2, _length(2, b"v") + _length(1, b"k") + _field(3, 0, b"\x05"))),
    # negative int64 and enum, a uint32 wider than 32 bits, a ten-byte varint
    ("ListContainersResponse", pb.ListContainersResponse(containers=[container(3)]).SerializeToString()),
    ("ListPodSandboxResponse", _length(1, _field(3, 0, ours._uvarint((1 << 64) - 2)))),
    ("ListPodSandboxResponse", _length(1, _length(2, _field(4, 0, ours._uvarint((1 << 40) + 7))))),
    ("ListPodSandboxResponse", _length(1, _field(3, 0, b"\xff" * 9 + b"\x01"))),
    # unknown fields of every wire type, groups included, and a known field of the wrong wire type
    ("VersionResponse", _field(9, 1, b"12345678") + _field(10, 5, b"1234") + _field(11, 0, b"\x96\x01")),
    (
        "VersionResponse",
        _field(12, 3, _field(1, 0, b"\x01") + _field(2, 3, _field(2, 4, b""))) + _field(12, 4, b""),
    ),
    ("VersionResponse", _field(2, 0, b"\x05") + _length(3, b"ok")),
    ("ListPodSandboxResponse", _length(1, _length(3, b"x") + _field(1, 5, b"abcd"))),
    ("PodSandboxStatusResponse", _field(1, 0, b"\x01") + _length(2, b"")),
]


@pytest.mark.parametrize(("name", "data"), EDGES)
def test_the_formats_edges_read_as_protobuf_reads_them(name: str, data: bytes) -> None:
    mine, theirs = decode_both(name, data)
    same(mine, theirs)


BROKEN = [
    ("VersionResponse", _length(2, b"\xff\xfe")),  # not UTF-8
    ("PodSandboxStatusResponse", _length(2, _length(1, b"\xc3"))),  # a map key that is not UTF-8
    ("VersionResponse", _length(2, b"abc")[:-1]),  # truncated
    ("VersionResponse", b"\x12"),  # a tag and nothing more
    ("ListPodSandboxResponse", _length(1, b"\x12\x05ab")),  # a field longer than its message
    ("VersionResponse", _field(11, 0, b"\xff" * 11 + b"\x01")),  # a varint of twelve bytes
    ("VersionResponse", _field(12, 3, b"")),  # a group never ended
    ("VersionResponse", _field(12, 4, b"")),  # an end of group never started
    ("VersionResponse", _field(0, 0, b"\x01")),  # field number 0
    ("VersionResponse", _field(9, 6, b"")),  # wire types 6 and 7 do not exist
]


@pytest.mark.parametrize(("name", "data"), BROKEN)
def test_what_protobuf_refuses_is_refused(name: str, data: bytes) -> None:
    with pytest.raises(Exception):  # noqa: B017 (protobuf's DecodeError: the oracle's any)
        getattr(pb, name).FromString(data)
    with pytest.raises(ours.DecodeError):
        getattr(ours, name).FromString(data)


def lean(message: Any, mine: type[ours.Message]) -> Any:
    """The protobuf message with only the fields ours reads: then both know the same fields,
    and whatever is corrupted, both must refuse it or read the same."""
    declared = {name: (kind, sub) for name, kind, sub in mine.FIELDS.values()}
    for field, value in message.ListFields():
        if field.name not in declared:
            message.ClearField(field.name)
            continue
        kind, sub = declared[field.name]
        if kind == ours.MESSAGE:
            lean(value, sub)
        elif kind == ours.REPEATED:
            for item in value:
                lean(item, sub)
    return message


def test_random_corruptions_fail_alike_or_read_alike() -> None:
    """Seeded: bytes flipped, cut, inserted, in real-shaped replies (of the fields ours reads:
    the others it skips unread, where protobuf checks them); both refuse, or both agree."""
    rng = random.Random(18)
    refused = agreed = 0
    for name, full in examples():
        if not full:
            continue
        # deterministic: maps in key order (else in the order of upb's hash, which varies by run)
        data = lean(getattr(pb, name).FromString(full), getattr(ours, name)).SerializeToString(
            deterministic=True
        )
        for _ in range(150):
            broken = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                at = rng.randrange(len(broken))
                action = rng.random()
                if action < 0.6:
                    broken[at] = rng.randrange(256)
                elif action < 0.8:
                    del broken[at:]
                else:
                    broken[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            try:
                theirs = getattr(pb, name).FromString(bytes(broken))
            except Exception:
                with pytest.raises(ours.DecodeError):
                    getattr(ours, name).FromString(bytes(broken))
                refused += 1
                continue
            same(getattr(ours, name).FromString(bytes(broken)), theirs)
            agreed += 1
    assert refused > 50 and agreed > 50  # both kinds of outcome were tried


def test_fields_not_read_are_skipped_unchecked() -> None:
    """The one difference, on the lenient side: protobuf refuses a reply for a string it does not
    need that is not UTF-8 (or a corrupt message in a field ours does not read); ours reads it."""
    bad = _length(1, _length(1, b"id") + _length(7, b"\xff") + _length(6, b"\x0a\x05ab"))
    with pytest.raises(Exception):  # noqa: B017 (protobuf's DecodeError)
        pb.ListPodSandboxResponse.FromString(bad)
    assert [s.id for s in ours.ListPodSandboxResponse.FromString(bad).items] == ["id"]


def test_the_source_reads_protobufs_messages_too() -> None:
    """The client and the source take either (the benchmarks swap protobuf's in)."""
    from vethpeer.sources import cri

    grouped = cri._containers_by_sandbox(ours.ListContainersResponse.FromString(examples()[5][1]).containers)
    oracle = cri._containers_by_sandbox(pb.ListContainersResponse.FromString(examples()[5][1]).containers)
    assert grouped == oracle and grouped


def test_every_field_is_api_protos_by_number_name_and_type() -> None:
    """The schema of each message ours has is api.proto's (through api_pb2's descriptors)."""
    from google.protobuf.descriptor import FieldDescriptor as F

    kinds = {
        ours.STRING: F.TYPE_STRING,
        ours.UINT: F.TYPE_UINT32,
        ours.INT: F.TYPE_INT64,
        ours.ENUM: F.TYPE_ENUM,
        ours.BOOL: F.TYPE_BOOL,
        ours.MESSAGE: F.TYPE_MESSAGE,
        ours.REPEATED: F.TYPE_MESSAGE,
        ours.MAP: F.TYPE_MESSAGE,
    }
    classes = [c for c in vars(ours).values() if isinstance(c, type) and issubclass(c, ours.Message)]
    assert len(classes) > 15
    for cls in classes:
        if cls is ours.Message:
            continue
        descriptor = getattr(pb, cls.__name__).DESCRIPTOR
        for number, (name, kind, sub) in cls.FIELDS.items():
            field = descriptor.fields_by_number[number]
            assert (field.name, field.type) == (name, kinds[kind]), (cls.__name__, name)
            repeated = field.is_repeated
            is_map = repeated and field.message_type.GetOptions().map_entry
            assert repeated == (kind in (ours.REPEATED, ours.MAP)) and bool(is_map) == (kind == ours.MAP)
            if kind in (ours.MESSAGE, ours.REPEATED):
                assert field.message_type.name == sub.__name__
