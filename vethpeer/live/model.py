"""One live model of the host, kept current by the kernel's events: what `serve --live` answers from.

A thread of its own owns a :class:`~.walker.Walker` and a :class:`~.watcher.Watcher`
(``setns`` moves only the calling thread, so every namespace read happens there):

* a full walk at start;
* then it sleeps until the kernel says something changed — link and address events of
  every namespace the host has an nsid for, the mount table, a process rescan each
  second, the namespaces without a host nsid read again each second (they send nothing)
  — and re-reads only the namespaces named, re-runs the pure correlator and publishes
  the new :class:`~vethpeer.model.Report` as one immutable :class:`State`;
* the runtimes' sources (Docker, CRI, Kubernetes, ...) are asked again when namespaces
  come or go (at most every 2 s, then 1 s and 3 s after), and every ``naming_every`` s;
* counters and the bridges' MAC tables change without events: :meth:`LiveModel.refresh`
  asks for them (a cheap RTM_GETSTATS per namespace), so a server reads them only while
  someone asks;
* a full walk again after ``ENOBUFS`` and every ``resync`` s; each resync compares the
  walk with the model (:mod:`.drift`), counts and logs every difference: a difference
  means an event was missed.

Readers never wait for the thread: :meth:`LiveModel.latest` is the last state published.
Subscribers (``subscribe(callback)``) are called on the model's thread with each new
report and its wall-clock time, in order; they must be quick, and what they raise is
logged and otherwise ignored. With ``changes=True`` the model also computes the events
between its reports (:mod:`.changes`, what `watch` prints), for ``subscribe_changes``.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from ..collect import Request
from ..environment import Environment
from ..errors import VethpeerError
from ..model import NsKey, Report
from . import docker_events
from .changes import Event, diff
from .drift import Drift, Excused, counts, drift
from .events import RCVBUF, Batch
from .walker import Walker
from .watcher import Watcher

Subscriber = Callable[[Report, float], None]
ChangeSubscriber = Callable[[list[Event]], None]
RESYNC = 300.0  # seconds between full walks that check the model
NAMING_EVERY = 30.0  # seconds between the sources' answers when nothing changes
GAP = 0.25  # seconds at least between two looks: a burst of events costs one
RENAME_GAP = 0.5  # seconds: a burst of a runtime's events asks the sources once
QUIET = 0.5  # seconds without a change before the model counts as settled
LOGGED_DRIFTS = 10  # differences logged one by one per resync (then a count)


@dataclass(frozen=True, slots=True)
class State:
    """One published report."""

    report: Report
    generation: int  # 1, 2, ...: each published report has its own
    changed: float  # monotonic: when it was published
    at: float  # the same moment, wall clock (time.time())
    duration: float  # seconds the update that made it took
    read_at: float = 0.0  # monotonic: when the round that made it read the counters (Walker.read_at)
    read: Mapping[NsKey, float] = field(default_factory=dict)  # when each namespace was last read


@dataclass(frozen=True, slots=True)
class ModelStats:
    generation: int
    resyncs: int
    drift: Mapping[str, int] = field(default_factory=dict)  # differences found by kind, since start
    overflows: int = 0  # ENOBUFS seen (each followed by a full walk)
    settled: bool = False  # nothing pending and nothing changed for QUIET s
    running: bool = False
    error: str | None = None  # why the model's thread stopped


class LiveModel:
    """The model and its thread. ``start()``, then read ``latest()``; ``stop()`` at the end."""

    def __init__(
        self,
        request: Request,
        env: Environment,
        log: Callable[[str], None],
        *,
        resync: float = RESYNC,
        naming_every: float = NAMING_EVERY,
        rcvbuf: int = RCVBUF,
        clock: Callable[[], float] = time.monotonic,
        follow_docker: bool = True,
        addresses: bool = True,
        changes: bool = False,
        gap: float = GAP,
    ) -> None:
        """``addresses``: read each interface's addresses (`top` without a target needs none);
        ``changes``: compute the events between reports for ``subscribe_changes`` (`watch`);
        ``gap``: at least this many seconds between two looks."""
        self.request, self.env, self.log = request, env, log
        self.follow_docker, self.addresses, self.changes, self.gap = follow_docker, addresses, changes, gap
        self.resync_every, self.naming_every, self.rcvbuf, self.clock = resync, naming_every, rcvbuf, clock
        self._lock = threading.Condition()
        self._state: State | None = None
        self._subscribers: list[Subscriber] = []
        self._change_subscribers: list[ChangeSubscriber] = []
        self._asks: set[str] = set()
        self._drift: dict[str, int] = {}
        self._resyncs = 0
        self._overflows = 0
        self._pending = True
        self._rename_due = math.inf  # monotonic: when the sources are to be asked again (a runtime's event)
        self._error: str | None = None
        self._failure: VethpeerError | None = None
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="vethpeer-model", daemon=True)

    # ---------------------------------------------------------------- for readers

    def start(self) -> None:
        self._thread.start()
        if self.follow_docker:
            docker_events.follow(
                self.request.options.docker_host, self.env.environ, self.renamed, lambda: self._stopping
            )

    def renamed(self) -> None:
        """A runtime said a container or network changed: have the sources asked again."""
        self._ask("rename")

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._ask("stop")
        self._thread.join(timeout)
        if not self._thread.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)

    def latest(self) -> State | None:
        return self._state

    def wait(self, timeout: float) -> State | None:
        """The first state, waiting at most ``timeout`` s for it (None: not yet, or the thread failed)."""
        with self._lock:
            self._lock.wait_for(lambda: self._state is not None or self._error is not None, timeout)
            return self._state

    def newer(self, generation: int, timeout: float) -> State | None:
        """The first state after ``generation``, waiting at most ``timeout`` s for it."""
        with self._lock:
            self._lock.wait_for(
                lambda: (
                    (self._state is not None and self._state.generation > generation)
                    or self._error is not None
                ),
                timeout,
            )
            state = self._state
        return state if state is not None and state.generation > generation else None

    def subscribe(self, callback: Subscriber) -> None:
        """``callback(report, at)`` with each new report, on the model's thread; the current one first."""
        with self._lock:
            self._subscribers.append(callback)
            state = self._state
        if state is not None:
            self._notify([callback], state)

    def subscribe_changes(self, callback: ChangeSubscriber) -> None:
        """``callback(events)`` with the events of each new report (``changes=True``), on the
        model's thread, in order, before the report's subscribers hear of it."""
        with self._lock:
            self._change_subscribers.append(callback)

    def failure(self) -> VethpeerError | None:
        """What stopped the model's thread, with its exit status (None: it did not stop)."""
        return self._failure

    def refresh(self) -> None:
        """Have the counters and MAC tables read again (soon, on the model's thread)."""
        self._ask("refresh")

    def resync(self) -> None:
        """Have a full walk check the model now."""
        self._ask("resync")

    def stats(self) -> ModelStats:
        state = self._state
        quiet = state is not None and self.clock() - state.changed >= QUIET
        return ModelStats(
            generation=state.generation if state is not None else 0,
            resyncs=self._resyncs,
            drift=dict(self._drift),
            overflows=self._overflows,
            settled=quiet and not self._pending,
            running=self._thread.is_alive(),
            error=self._error,
        )

    def _ask(self, what: str) -> None:
        with self._lock:
            self._asks.add(what)
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway; closed: stopped
            os.write(self._wake_w, b"x")

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        try:
            walker = Walker(
                self.request,
                self.env,
                addresses=self.addresses,
                naming_every=self.naming_every,
                links_every=math.inf,
            )
            with (
                walker,
                Watcher(
                    walker, self.clock, self.rcvbuf, wake=self._wake_r, changes=self.changes, gap=self.gap
                ) as watcher,
            ):
                self._publish(watcher, 0.0)
                self._loop(watcher)
        except VethpeerError as error:
            self._fail(str(error), error)
        except Exception as error:  # the bug guard: the server stays up and says the model failed
            self._fail(f"internal error: {type(error).__name__}: {error}")

    def _fail(self, message: str, error: VethpeerError | None = None) -> None:
        self.log(f"vethpeer: the live model stopped: {message}")
        with self._lock:
            self._error = message
            self._failure = error if error is not None else VethpeerError(message)
            self._lock.notify_all()

    def _loop(self, watcher: Watcher) -> None:
        due = self.clock() + self.resync_every
        renamed = float("-inf")
        while not self._stopping:
            before = watcher.report
            wake = min(due, self._rename_due)
            found = watcher.wait(max(0.0, wake - self.clock()))
            started = self.clock()
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
            with self._lock:
                asks, self._asks = self._asks, set()
            if watcher.overflows:
                self._overflows, watcher.overflows = self._overflows + watcher.overflows, 0
                self.log("vethpeer: netlink events were lost (ENOBUFS): the model was walked again")
            if "rename" in asks:  # a runtime's event: its answers again, at most every RENAME_GAP s
                self._rename_due = min(self._rename_due, max(self.clock(), renamed + RENAME_GAP))
            if "resync" in asks or self.clock() >= due:
                found += self._check(watcher)
                due = self.clock() + self.resync_every
            elif self.clock() >= self._rename_due:
                self._rename_due, renamed = math.inf, self.clock()
                watcher.walker.rename()
                found += self._round(watcher, set())
            elif "refresh" in asks:
                found += self._round(watcher, None)  # counters and MAC tables
            self._pending = watcher.pending or self._rename_due < math.inf
            if watcher.report is not before or found:
                self._publish(watcher, self.clock() - started, found)

    def _round(self, watcher: Watcher, dirty: set[NsKey] | None) -> list[Event]:
        """A round the watcher did not ask for; its events when they are wanted (then the host is
        read whole, as the watcher does for them: a namespace opened in this round may have a
        peer there that no event named yet, and a row without its peer is no event to print)."""
        old = watcher.report
        discovery = watcher.walker.discovery
        if dirty is not None and self.changes and discovery is not None:
            dirty = {*dirty, discovery.host}
        watcher.report = watcher.walker.round(dirty, rediscover=False)
        return diff(old, watcher.report) if self.changes else []

    def _check(self, watcher: Watcher) -> list[Event]:
        """A resync: the model brought up to date, a full walk, their differences counted."""
        found = watcher.settle()
        model = watcher.report
        self._pending = watcher.pending or self._rename_due < math.inf
        found += watcher.resync()  # with changes: what the full walk found, marked resync
        batch, mounts = watcher.pending_changes()
        excused = replace(self._excused(watcher, batch, mounts), names=watcher.pending or self._pending)
        missed = drift(model, watcher.report, excused)
        found += watcher.apply(batch, mounts)
        self._resyncs += 1
        self._count(missed)
        return found

    def _excused(self, watcher: Watcher, batch: Batch, mounts: bool) -> Excused:
        """What the kernel announced while the full walk ran: the model hears of it next."""
        if batch.overflow:
            return Excused(all=True)
        namespaces: set[NsKey] = set()
        devices: set[tuple[NsKey, int]] = set()
        host = watcher.walker.discovery.host if watcher.walker.discovery is not None else None
        unknown = False
        for event in batch.events:
            key = watcher.namespace_of(event.nsid)
            if key is None:
                unknown = True
            elif key == host:
                devices.add((key, event.index))
            else:
                namespaces.add(key)
            if event.new_nsid is not None and key is not None:
                target = watcher.walker.nsid_target(key, event.new_nsid)
                if target is not None:
                    namespaces.add(target)
        return Excused(frozenset(namespaces), frozenset(devices), churned=mounts or unknown)

    def _count(self, found: list[Drift]) -> None:
        for kind, number in counts(found).items():
            self._drift[kind] = self._drift.get(kind, 0) + number
        for item in found[:LOGGED_DRIFTS]:
            self.log(f"vethpeer: resync: the live model missed a change: {item.kind}: {item.subject}")
        if len(found) > LOGGED_DRIFTS:
            self.log(f"vethpeer: resync: ... and {len(found) - LOGGED_DRIFTS} more differences")

    def _publish(self, watcher: Watcher, duration: float, events: list[Event] | None = None) -> None:
        walker = watcher.walker
        with self._lock:
            number = self._state.generation + 1 if self._state is not None else 1
            state = State(
                watcher.report,
                number,
                self.clock(),
                time.time(),
                duration,
                walker.read_at,
                walker.read_times(),
            )
            self._state = state
            subscribers = list(self._subscribers)
            changes = list(self._change_subscribers)
            self._lock.notify_all()
        if events:
            for callback in changes:
                try:
                    callback(events)
                except Exception as error:
                    self.log(
                        f"vethpeer: a subscriber of the live model failed: {type(error).__name__}: {error}"
                    )
        self._notify(subscribers, state)

    def _notify(self, subscribers: list[Subscriber], state: State) -> None:
        for callback in subscribers:
            try:
                callback(state.report, state.at)
            except Exception as error:
                self.log(f"vethpeer: a subscriber of the live model failed: {type(error).__name__}: {error}")
