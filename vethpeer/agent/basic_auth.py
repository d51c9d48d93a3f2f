"""``basic_auth_users``: HTTP basic authentication against bcrypt hashes, as exporter-toolkit does it.

* The users are the web config's as it is now (re-read when the file changes).
* An unknown user is checked against a dummy hash of the same cost, so the answer takes as
  long as for a known one (no user enumeration by timing); bcrypt's own comparison is
  constant-time.
* Checked (user, hash, password) triples are cached for :data:`CACHE_SECONDS` under a SHA-256
  of the three (the password itself is not kept), so a scrape does not pay bcrypt's ~70 ms
  (cost 10) each time; at most :data:`CACHE_SIZE` entries.
* One bcrypt at a time (CPU-heavy: a flood of wrong passwords costs one core, not all).
* ``bcrypt`` is imported on the first check, only when a web config with users is given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from .auth import Decision

CACHE_SECONDS = 300.0
CACHE_SIZE = 100
CHALLENGE = 'Basic realm="vethpeer"'
MAX_PASSWORD = 72  # bcrypt uses at most 72 bytes; longer ones are refused, not silently cut


def credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic ...`` header; None if absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class BasicAuth:
    name = "web-config"

    def __init__(
        self,
        users: Callable[[], Mapping[str, str]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users, self._clock = users, clock
        self._cache: OrderedDict[bytes, tuple[float, bool]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()
        self._dummies: dict[bytes, bytes] = {}  # cost prefix ("$2y$10$") -> a hash of the same cost

    def check(self, method: str, path: str, headers: Mapping[str, str]) -> Decision:
        users = self._users()
        if not users:
            return Decision(True)
        given = credentials(headers.get("authorization"))
        if given is None:
            why = "no credentials" if not headers.get("authorization") else "a malformed Authorization header"
            return Decision(False, 401, reason=why, challenge=CHALLENGE)
        user, password = given
        hashed = users.get(user)
        known = hashed is not None
        target = (hashed or self._dummy(next(iter(users.values())))).encode()
        if self._verified(user, target, password.encode()) and known:
            return Decision(True, user=user)
        why = f"wrong password for user {user!r}" if known else f"unknown user {user!r}"
        return Decision(False, 401, reason=why, challenge=CHALLENGE)

    def _verified(self, user: str, hashed: bytes, password: bytes) -> bool:
        key = hashlib.sha256(b"\0".join((user.encode(), hashed, password))).digest()
        now = self._clock()
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > now:
                return cached[1]
        with self._bcrypt_lock:
            ok = _bcrypt_check(hashed, password)
        with self._cache_lock:
            self._cache[key] = (now + CACHE_SECONDS, ok)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return ok

    def _dummy(self, like: str) -> str:
        """A hash of the same cost as ``like`` (made once per cost), to check unknown users against."""
        prefix = like[:7].encode()
        dummy = self._dummies.get(prefix)
        if dummy is None:
            import bcrypt

            rounds = int(like[4:6])
            dummy = self._dummies.setdefault(prefix, bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds)))
        return dummy.decode()


def _bcrypt_check(hashed: bytes, password: bytes) -> bool:
    """bcrypt's own check (its final comparison is constant-time)."""
    import bcrypt

    if len(password) > MAX_PASSWORD:
        bcrypt.checkpw(b"", hashed)  # the same work, so the length does not show in the timing
        return False
    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:
        return False
