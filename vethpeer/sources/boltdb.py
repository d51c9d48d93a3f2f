"""A minimal read-only reader of BoltDB files (Podman's ``libpod/bolt_state.db``).

Only what naming needs: walk the bucket tree of the newest consistent transaction and
return the keys and values of one bucket. The file is read whole into memory (Podman's
state file is small), nothing is locked or written; a writer that is busy meanwhile
cannot hurt us because Bolt never rewrites live pages: the meta page with the highest
transaction ID whose checksum is right points at a complete tree.

Layout (go.etcd.io/bbolt, little-endian): page header ``id u64, flags u16, count u16,
overflow u32``; meta ``magic u32 (0xED0CDAED), version u32, page_size u32, flags u32,
root {pgid u64, sequence u64}, freelist u64, pgid u64, txid u64, checksum u64`` (FNV-1a
64 of the fields before it); branch elements ``pos u32, ksize u32, pgid u64``; leaf
elements ``flags u32, pos u32, ksize u32, vsize u32`` (``pos`` from the element itself,
flag 1: the value is a sub-bucket ``{root u64, sequence u64}``, inline when root is 0).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

MAGIC = 0xED0CDAED
BRANCH, LEAF, META = 0x01, 0x02, 0x04
BUCKET_LEAF = 0x01
_HEADER = 16
_META = struct.Struct("<IIII QQ QQQ Q")


class BoltError(ValueError):
    """The file is not a Bolt database we can read."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """A (sub-)bucket: its root page, or its inline page bytes."""

    root: int
    inline: bytes | None = None


Entry = bytes | Bucket


def _fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class Bolt:
    def __init__(self, data: bytes) -> None:
        self.data = data
        first = self._meta(0)
        # The second meta page is one page further; if the first is torn, assume the usual size.
        second = self._meta(first[1] if first else 4096)
        metas = [m for m in (first, second) if m is not None]
        if not metas:
            raise BoltError("no valid meta page")
        _txid, self.page_size, self.root = max(metas)

    def _meta(self, offset: int) -> tuple[int, int, int] | None:
        """(txid, page size, root pgid) of the meta page at ``offset``, if it is valid."""
        head = self.data[offset + _HEADER : offset + _HEADER + _META.size]
        if len(head) < _META.size:
            return None
        magic, _version, size, _flags, root, _seq, _free, _pgid, txid, checksum = _META.unpack(head)
        if magic != MAGIC or _fnv1a64(head[:-8]) != checksum or size < 512:
            return None
        return txid, size, root

    def _page(self, pgid: int) -> bytes:
        start = pgid * self.page_size
        if start + _HEADER > len(self.data):
            raise BoltError(f"page {pgid} is past the end of the file")
        overflow = struct.unpack_from("<I", self.data, start + 12)[0]
        return self.data[start : start + (overflow + 1) * self.page_size]

    def _entries(self, page: bytes, out: dict[bytes, Entry], depth: int = 0) -> None:
        if depth > 64:
            raise BoltError("tree too deep")
        flags, count = struct.unpack_from("<HH", page, 8)
        if flags & BRANCH:
            for i in range(count):
                at = _HEADER + 16 * i
                child = struct.unpack_from("<Q", page, at + 8)[0]
                self._entries(self._page(child), out, depth + 1)
        elif flags & LEAF:
            for i in range(count):
                at = _HEADER + 16 * i
                eflags, pos, ksize, vsize = struct.unpack_from("<IIII", page, at)
                key = page[at + pos : at + pos + ksize]
                value = page[at + pos + ksize : at + pos + ksize + vsize]
                if eflags & BUCKET_LEAF:
                    root = struct.unpack_from("<Q", value, 0)[0]
                    out[key] = Bucket(root, value[16:] if root == 0 else None)
                else:
                    out[key] = value
        else:
            raise BoltError(f"unexpected page flags {flags:#x}")

    def items(self, bucket: Bucket | None = None) -> dict[bytes, Entry]:
        """Keys and values (bytes or sub-bucket) of ``bucket`` (None: the top level)."""
        out: dict[bytes, Entry] = {}
        if bucket is None:
            self._entries(self._page(self.root), out)
        elif bucket.inline is not None:
            self._entries(bucket.inline, out)
        else:
            self._entries(self._page(bucket.root), out)
        return out

    def bucket(self, path: Sequence[bytes]) -> dict[bytes, Entry] | None:
        """The items of the bucket at ``path`` (names from the top), or None if it is not there."""
        current: Bucket | None = None
        for name in path:
            found = self.items(current).get(name)
            if not isinstance(found, Bucket):
                return None
            current = found
        return self.items(current)


def read(path: str) -> Bolt:
    """Open a Bolt file read-only (raises OSError, BoltError)."""
    with open(path, "rb") as f:
        return Bolt(f.read())
