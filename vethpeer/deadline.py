"""One deadline for a run: every source and every blocking call asks it how long is left."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Deadline:
    seconds: float
    clock: Callable[[], float] = time.monotonic  # injectable, for tests of what happens at the end
    end: float = field(init=False)

    def __post_init__(self) -> None:
        self.end = self.clock() + self.seconds

    def left(self, floor: float = 0.01) -> float:
        """Seconds left, at least ``floor`` (a socket timeout of 0 would mean non-blocking)."""
        return max(floor, self.end - self.clock())

    def expired(self) -> bool:
        return self.clock() >= self.end
