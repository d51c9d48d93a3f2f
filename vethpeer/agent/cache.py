"""One walk at a time, shared by every request: single flight, a minimum interval, the last good result.

A request asks :meth:`WalkCache.get` with how long it may wait. If the last good walk is
younger than ``min_interval`` it is the answer. Otherwise a walk is started unless one
is already running (walks never overlap), and the request waits for it — every request
that arrives meanwhile waits for the same walk, so a scrape storm costs one walk. A
walk that overruns the request's wait keeps running in its own thread; the request is
answered from the last good result, marked stale. A walk that fails is a value (its
message), never an exception in a request thread; failed walks are retried at most
once per ``min_interval``.

``then`` is an optional second step on a walk's result (the doctor's checks): the result is
published as soon as the walk ends, and replaced by ``then``'s when that ends. The walk
counts as running until then, so no walk starts meanwhile (the second step reads the
namespaces too); requests are not held up by it.

A bug in either step (any exception but a :class:`VethpeerError`) goes to ``log``, with its
traceback when ``debug``; an expected failure is only the walk's answer (``/readyz`` says it).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Generic, TypeVar

from ..errors import VethpeerError

if TYPE_CHECKING:
    from ..live.model import ModelStats

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Walk(Generic[T]):
    """A finished, successful walk."""

    value: T
    number: int  # 1, 2, ...: identifies the walk (render caches key on it)
    finished: float  # monotonic clock
    finished_at: float  # wall clock (time.time()), for the timestamp metric
    duration: float  # seconds
    complete: bool = True  # False between the walk and its follow-up step (see WalkCache's ``then``)
    settled: float = 0.0  # monotonic: when the follow-up step ended (= finished without one)


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """What a request gets: the walk to answer from (None: none has succeeded yet)."""

    walk: Walk[T] | None
    stale: bool  # the walk this request wanted did not finish in time, or failed
    error: str | None  # why the latest walk failed, if it did


@dataclass(frozen=True, slots=True)
class CacheStats:
    walks: int  # walks finished, good or not
    errors: int  # walks that failed
    running: bool
    error: str | None  # why the latest walk failed (None: it succeeded, or none finished)
    model: ModelStats | None = None  # `serve --live`: the live model's own figures


class WalkCache(Generic[T]):
    def __init__(
        self,
        walk: Callable[[], T],
        min_interval: float,
        clock: Callable[[], float] = time.monotonic,
        then: Callable[[T], T] | None = None,
        log: Callable[[str], None] = lambda _line: None,
        debug: bool = False,
    ) -> None:
        self._walk = walk
        self._then = then
        self._log, self._debug = log, debug
        self._min_interval = min_interval
        self._clock = clock
        self._cond = threading.Condition()
        self._good: Walk[T] | None = None
        self._error: str | None = None
        self._running = False
        self._started = 0  # number of the latest walk started
        self._finished = 0  # number of the latest walk finished
        self._last_attempt_end = float("-inf")
        self._walks = 0
        self._errors = 0

    def get(self, wait: float) -> Answer[T]:
        """The answer for a request that may wait ``wait`` seconds for a fresh walk."""
        with self._cond:
            now = self._clock()
            good = self._good
            if good is not None and now - max(good.finished, good.settled) < self._min_interval:
                return Answer(good, stale=False, error=None)
            if not self._running and now - self._last_attempt_end < self._min_interval:
                return Answer(good, stale=True, error=self._error)  # the walk failed just now
            if not self._running:
                self._start()
            wanted = self._started
            deadline = now + wait
            while self._finished < wanted:
                left = deadline - self._clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            fresh = self._finished >= wanted and self._good is not None and self._good.number == wanted
            return Answer(self._good, stale=not fresh, error=None if fresh else self._error)

    def warm(self) -> None:
        """Start a walk now if none is running (at startup, so /readyz turns ready without a scrape)."""
        with self._cond:
            if not self._running:
                self._start()

    def latest(self) -> Walk[T] | None:
        with self._cond:
            return self._good

    def stats(self) -> CacheStats:
        with self._cond:
            return CacheStats(
                walks=self._walks, errors=self._errors, running=self._running, error=self._error
            )

    def _start(self) -> None:
        self._running = True
        self._started += 1
        thread = threading.Thread(
            target=self._run, args=(self._started,), name=f"vethpeer-walk-{self._started}", daemon=True
        )
        thread.start()

    def _run(self, number: int) -> None:
        start = self._clock()
        value: T | None = None
        error = None
        try:
            value = self._walk()
        except VethpeerError as failure:
            error = str(failure)
        except Exception as failure:  # the bug guard: a walk's bug is a failed walk, not a dead server
            error = f"internal error: {type(failure).__name__}: {failure}"
            self._bug("the walk failed", failure)
        end = self._clock()
        then = self._then if error is None else None
        with self._cond:
            self._walks += 1
            if error is None:
                assert value is not None
                self._good = Walk(value, number, end, time.time(), end - start, then is None, end)
                self._error = None
            else:
                self._errors += 1
                self._error = error
            self._finished = number
            self._last_attempt_end = end
            if then is None:
                self._running = False
            self._cond.notify_all()
        if then is None:
            return
        assert value is not None
        try:
            followed = then(value)
        except Exception as failure:  # the second step's bug costs its own part; the walk stands
            self._bug("the step after the walk failed", failure)
            followed = value
        with self._cond:
            if self._good is not None and self._good.number == number:
                self._good = replace(self._good, value=followed, complete=True, settled=self._clock())
            self._running = False
            self._last_attempt_end = self._clock()
            self._cond.notify_all()

    def _bug(self, what: str, failure: Exception) -> None:
        """Log a bug (called inside its ``except``): one line, and the traceback under --debug."""
        line = f"vethpeer serve: {what}: {type(failure).__name__}: {failure}"
        self._log(line + ("\n" + traceback.format_exc().rstrip() if self._debug else ""))
