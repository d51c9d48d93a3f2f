"""One deadline for a run: every source and every blocking call asks it how long is left."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Deadline:
    seconds: float
    end: float = field(init=False)

    def __post_init__(self) -> None:
        self.end = time.monotonic() + self.seconds

    def left(self, floor: float = 0.01) -> float:
        """Seconds left, at least ``floor`` (a socket timeout of 0 would mean non-blocking)."""
        return max(floor, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end
