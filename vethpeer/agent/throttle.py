"""Log lines an attacker can cause, rate-limited: one per kind per interval, with a count of the rest."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ThrottledLog:
    def __init__(
        self, log: Callable[[str], None], interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ):
        self._log, self._interval, self._clock = log, interval, clock
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, kind: str, line: str) -> None:
        """Log ``line`` unless a line of ``kind`` went out less than the interval ago."""
        now = self._clock()
        with self._lock:
            if now < self._next.get(kind, 0.0):
                self._held[kind] = self._held.get(kind, 0) + 1
                return
            self._next[kind] = now + self._interval
            held = self._held.pop(kind, 0)
        more = f" (and {held} more like it since the last such line)" if held else ""
        self._log(line + more)
