"""`annotate`'s core: one log line in, the same line with workloads inserted out. Pure.

Tokens (interface names, MACs, IPv4/IPv6 addresses) are looked up in an :class:`Index` of the
journal; a token with bindings gets the one alive at the line's own time (:mod:`.times`), with a
tolerance around each lifetime: the kernel logs a new port before any listener hears of it,
and a removal before the agent sees it gone. After the token goes `` [docker/web eth0]``.
A line with nothing to attribute is returned as the very same bytes object.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import Ambiguous
from .binding import Recorded, normal_ip
from .query import pick

# A token: a run of bytes that are none of the separators log lines put around names.
TOKEN = re.compile(rb"[^\s()\[\]<>{},;'\"=/@|]+")
_TRAILING = b":.,"


@dataclass
class Index:
    """Every host-side name, MAC and address in the journal -> the bindings that had it."""

    by_token: dict[bytes, list[Recorded]]

    @classmethod
    def build(cls, records: Iterable[Recorded]) -> Index:
        by_token: dict[bytes, list[Recorded]] = {}
        for r in records:
            b = r.binding
            tokens = {b.host_name, b.host_mac, b.inner_mac, *(normal_ip(a) for a in b.addresses)}
            tokens.discard(None)
            tokens.discard("00:00:00:00:00:00")
            for token in tokens:
                assert token is not None
                by_token.setdefault(token.encode("utf-8", "surrogateescape"), []).append(r)
        return cls(by_token)

    def get(self, token: bytes) -> list[Recorded] | None:
        hits = self.by_token.get(token)
        if hits is not None or len(token) < 3:
            return hits
        if len(token) == 17 and token[2:3] in (b":", b"-"):  # a MAC in upper case or with dashes
            return self.by_token.get(token.lower().replace(b"-", b":"))
        if b":" in token:  # an IPv6 address written another way
            try:
                ip = normal_ip(token.decode("ascii"))
            except UnicodeDecodeError:
                return None
            return self.by_token.get(ip.encode()) if ip else None
        return None


def clean(text: str) -> bytes:
    """Untrusted text as inserted: control characters as escapes."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text.encode("utf-8", "backslashreplace")


def tag(r: Recorded) -> bytes:
    return b" [" + clean(r.binding.label) + b" " + clean(r.binding.inner_name) + b"]"


def annotate_line(line: bytes, index: Index, when: Callable[[bytes], float], tolerance: float) -> bytes:
    """``line`` with a tag after each token it can attribute; the same object when none."""
    parts: list[bytes] | None = None
    last = 0
    moment: float | None = None
    for m in TOKEN.finditer(line):
        token, end = m.group(), m.end()
        hits = index.get(token)
        if hits is None:
            stripped = token.rstrip(_TRAILING)
            if stripped == token or not stripped:
                continue
            hits = index.get(stripped)
            if hits is None:
                continue
            end = m.start() + len(stripped)
            token = stripped
        if moment is None:
            moment = when(line)
        try:
            chosen = pick(hits, moment, tolerance, token.decode("utf-8", "replace"))
        except Ambiguous:
            continue  # two workloads had it then: no answer beats a wrong one
        if not chosen:
            continue
        if parts is None:
            parts = []
        parts += [line[last:end], tag(chosen[0])]
        last = end
    if parts is None:
        return line
    parts.append(line[last:])
    return b"".join(parts)
