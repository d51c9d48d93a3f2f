"""`serve --live`: the routes answered from the live model instead of walks on demand.

:class:`LiveCache` has the :class:`~.cache.WalkCache` interface the routes use (``get``,
``latest``, ``stats``, ``warm``), so the routes do not know which one serves them. Each
report the model publishes is one :class:`~.cache.Walk` (its number is the model's
generation). A request never waits for the kernel: it is answered from the last report.

What changes without events is read on demand: while requests keep coming (within
``DEMAND`` s), a helper thread has the model read the counters and MAC tables again every
``min_interval`` s, then runs the doctor's checks on that report. A server nobody asks
reads nothing but events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..checks import Diagnosis
from ..live.model import LiveModel, ModelStats, State
from ..model import Report, SourceStatus
from ..targets import scoped
from .cache import Answer, CacheStats, Walk
from .engine import Observation, Walker, source_changes

DEMAND = 30.0  # seconds after the last request during which counters and checks are kept fresh


@dataclass(frozen=True, slots=True)
class _Diagnosed:
    generation: int
    observation: Observation


class LiveCache:
    """The live model, seen as a cache of walks."""

    def __init__(
        self,
        model: LiveModel,
        checks: Walker,
        log: Callable[[str], None],
        min_interval: float,
        *,
        namespace: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model, self._checks, self._log = model, checks, log
        self._min_interval, self._namespace, self._clock = min_interval, namespace, clock
        self._lock = threading.Lock()
        self._walk: Walk[Observation] | None = None
        self._diagnosed: _Diagnosed | None = None
        self._sources: dict[str, SourceStatus] = {}
        self._asked = float("-inf")  # monotonic: the latest request
        self._wanted = threading.Event()
        model.subscribe(self._on_report)

    # ---------------------------------------------------------------- the routes' interface

    def warm(self) -> None:
        """Start the model (its first full walk) and the helper that reads counters on demand."""
        self.model.start()
        threading.Thread(target=self._refresher, name="vethpeer-live-refresh", daemon=True).start()

    def get(self, wait: float) -> Answer[Observation]:
        self._asked = self._clock()
        self._wanted.set()
        walk = self.latest()
        if walk is None:
            self.model.wait(wait)
            walk = self.latest()
        error = self.model.stats().error
        return Answer(walk, stale=walk is None or error is not None, error=error)

    def latest(self) -> Walk[Observation] | None:
        state = self.model.latest()
        if state is None:
            return None
        with self._lock:
            walk = self._walk
            diagnosed = self._diagnosed
            if walk is not None and walk.number == state.generation and walk.complete == self._has(state):
                return walk
            if diagnosed is not None and diagnosed.generation == state.generation:
                observation, complete = diagnosed.observation, True
            else:
                report = scoped(state.report, self._namespace)
                previous = diagnosed.observation.diagnosis if diagnosed is not None else None
                observation, complete = Observation(report, still_there(previous, report)), False
            walk = Walk(
                observation,
                state.generation,
                state.changed,
                state.at,
                state.duration,
                complete,
                state.changed,
            )
            self._walk = walk
            return walk

    def stats(self) -> CacheStats:
        model = self.model.stats()
        return CacheStats(
            walks=model.generation,
            errors=1 if model.error is not None else 0,
            running=False,
            error=model.error,
            model=model,
        )

    def model_stats(self) -> ModelStats:
        return self.model.stats()

    # ---------------------------------------------------------------- behind the scenes

    def _has(self, state: State) -> bool:
        return self._diagnosed is not None and self._diagnosed.generation == state.generation

    def _on_report(self, report: Report, _at: float) -> None:
        """Each new report: log the sources whose state changed (as the walking server does)."""
        for line in source_changes(self._sources, report.sources):
            self._log(line)
        self._sources = {s.name: s for s in report.sources}

    def _refresher(self) -> None:
        """While asked: counters (and MAC tables) every min_interval, then the doctor's checks."""
        while self.model.stats().error is None:
            self._wanted.wait()
            if self._clock() - self._asked > DEMAND:
                self._wanted.clear()
                continue
            started = self._clock()
            state = self.model.latest() or self.model.wait(60.0)
            if state is None:
                continue
            self.model.refresh()
            fresh = self.model.newer(state.generation, timeout=10.0) or state
            report = scoped(fresh.report, self._namespace)
            observation = self._checks.diagnose(Observation(report))
            with self._lock:
                self._diagnosed = _Diagnosed(fresh.generation, observation)
            time.sleep(max(0.0, started + self._min_interval - self._clock()))


def still_there(diagnosis: Diagnosis | None, report: Report) -> Diagnosis | None:
    """The earlier checks' findings about interfaces this report still has (a veth gone since
    takes its findings with it, rather than keeping them until the next checks run)."""
    if diagnosis is None:
        return None
    present = {(end.ns.key, end.link.index) for row in report.rows for end in (row.end, row.peer) if end}
    kept = tuple(
        f
        for f in diagnosis.findings
        if all((e.ns.key, e.link.index) in present for e in (f.end, f.peer) if e is not None)
    )
    return diagnosis if len(kept) == len(diagnosis.findings) else replace(diagnosis, findings=kept)
