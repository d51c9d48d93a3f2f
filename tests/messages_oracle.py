"""vethpeer.cri.messages against protobuf's api_pb2, the oracle: every field ours reads has the
value protobuf reads (the unit tests, on made messages; the CRI lab's, on containerd's replies)."""

from __future__ import annotations

from typing import Any

from vethpeer.cri import messages


def same(mine: Any, theirs: Any) -> None:
    """Every field ``mine`` (one of ours) declares equals protobuf's ``theirs``, recursively."""
    for name, kind, _sub in mine.FIELDS.values():
        value, expected = getattr(mine, name), getattr(theirs, name)
        if kind == messages.MESSAGE:
            same(value, expected)
        elif kind == messages.REPEATED:
            assert len(value) == len(expected), name
            for item, other in zip(value, expected, strict=True):
                same(item, other)
        elif kind == messages.MAP:
            assert value == dict(expected), name
        else:
            assert value == expected and type(value) is type(expected), name
