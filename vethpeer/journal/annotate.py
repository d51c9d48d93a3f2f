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

from ..errors import Ambiguous
from ..render.safe import shown  # a leaf module: the one way names are shown
from .binding import Binding, Recorded, normal_ip
from .query import pick

# A token: a run of bytes that are none of the separators log lines put around names.
TOKEN = re.compile(rb"[^\s()\[\]<>{},;'\"=/@|]+")
_TRAILING = b":.,"
_MAYBE = re.compile(rb"[:.,-]|^[0-9a-fA-F]{2}(?:-[0-9a-fA-F]{2}){5}$")  # a MAC, an IPv6, a trailing ":"
_IPV6 = re.compile(rb"^[0-9a-fA-F:.]{2,45}$")


def tokens_of(b: Binding) -> set[str]:
    """The strings of a binding a log line may carry: the host-side name, the MACs, the addresses."""
    found = {b.host_name, b.host_mac, b.inner_mac, *(a.split("/")[0] for a in b.addresses)}
    found.discard(None)
    found.discard("00:00:00:00:00:00")
    return {t for t in found if t}


class Index:
    """Which tokens the journal knows (a set, loaded once), and their bindings (looked up when a
    line has one, then kept in a bounded cache)."""

    CACHE = 4096

    def __init__(self, tokens: set[bytes], lookup: Callable[[str], list[Recorded]]) -> None:
        self.tokens = tokens
        self._lookup = lookup
        self._cache: dict[bytes, list[Recorded]] = {}

    @classmethod
    def build(cls, records: Iterable[Recorded]) -> Index:
        """From bindings in memory (the tests, small journals)."""
        by_token: dict[str, list[Recorded]] = {}
        for r in records:
            for token in tokens_of(r.binding):
                by_token.setdefault(token, []).append(r)
        return cls({t.encode("utf-8", "surrogateescape") for t in by_token}, lambda t: by_token.get(t, []))

    def _hits(self, token: bytes) -> list[Recorded] | None:
        if token not in self.tokens:
            return None
        hits = self._cache.get(token)
        if hits is None:
            text = token.decode("utf-8", "surrogateescape")
            hits = [r for r in self._lookup(text) if text in tokens_of(r.binding)]
            if len(self._cache) >= self.CACHE:
                self._cache.clear()
            self._cache[token] = hits
        return hits or None

    def get(self, token: bytes) -> list[Recorded] | None:
        hits = self._hits(token)
        if hits is not None or len(token) < 3:
            return hits
        if len(token) == 17 and token[2:3] in (b":", b"-"):  # a MAC in upper case or with dashes
            return self._hits(token.lower().replace(b"-", b":"))
        if token.count(b":") >= 2 and _IPV6.match(token):  # an IPv6 address written another way
            try:
                ip = normal_ip(token.decode("ascii"))
            except UnicodeDecodeError:
                return None
            return self._hits(ip.encode()) if ip else None
        return None


def clean(text: str) -> bytes:
    """Untrusted text as inserted: shown as every text output shows names (render/safe.py)."""
    return shown(text).encode()


def tag(r: Recorded) -> bytes:
    return b" [" + clean(r.binding.label) + b" " + clean(r.binding.inner_name) + b"]"


def annotate_line(line: bytes, index: Index, when: Callable[[bytes], float], tolerance: float) -> bytes:
    """``line`` with a tag after each token it can attribute; the same object when none."""
    parts: list[bytes] | None = None
    last = 0
    moment: float | None = None
    known = index.tokens
    for m in TOKEN.finditer(line):
        token, end = m.group(), m.end()
        if token in known:
            hits = index.get(token)
        elif _MAYBE.search(token) is None:
            continue  # the common case: a word the journal does not know, and no other spelling of one
        else:
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
