"""Reports -> binding rows: what changed since the last observation, written in the background.

:meth:`Recorder.observe` is the one entry point (serve's walk calls it, through
:meth:`JournalWriter.observe`, which also wakes the writer; so can a live model):
it extracts the report's bindings (pure, :func:`bindings`), diffs them with the previous
observation and remembers what began and what ended. It does no I/O and takes a lock only
for the diff, so recording never slows serving. :class:`JournalWriter` is the thread that
writes: the changes at once, last-seen of every open binding at most once a second (one
statement, so a `kill -9` loses at most about a second), pruning every few minutes. A write
that fails (a full disk) keeps the changes for the next try and counts an error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..model import Relation, Report, Row, SourceState, SourceStatus, WorkloadKind
from .binding import Binding, Recorded
from .store import JournalTooNew, Start, Store

DEFAULT_RETENTION = 14 * 86400.0
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
PRUNE_EVERY = 300.0


def binding_of(row: Row) -> Binding | None:
    """The binding a row shows, None for the host's own interfaces."""
    end, peer, workload = row.end, row.peer, row.end.workload
    if workload.kind is WorkloadKind.HOST or (end.ns.is_host and row.relation is not Relation.TAP):
        return None
    if end.link.is_loopback:
        return None
    host = end if row.relation is Relation.TAP else peer
    return Binding(
        inner_name=end.link.name,
        inner_ifindex=end.link.index,
        inner_mac=end.link.mac,
        addresses=end.link.addresses,
        netns=end.ns.key.ino,
        host_name=host.link.name if host else None,
        host_ifindex=host.link.index if host else None,
        host_mac=host.link.mac if host else None,
        host_netns=host.ns.key.ino if host else None,
        bridge=host.master if host else None,
        kind=workload.kind.value,
        name=workload.name,
        label=workload.label,
        workload_id=workload.id,
        kube_namespace=workload.namespace,
        pod_uid=workload.uid,
        containers=workload.containers,
        container_ids=workload.container_ids,
    )


def bindings(report: Report) -> frozenset[Binding]:
    """Every binding in a report (pure)."""
    return frozenset(b for b in map(binding_of, report.rows) if b is not None)


class Bindings:
    """:func:`bindings`, remembered row by row between observations (pure otherwise).

    A live model publishes a report several times a second, and most of its rows are made of
    the very objects of the one before (the links not read again, the same workloads): a row
    whose inputs are the same as last time (compared by identity first, then by value) keeps
    the binding it had, so a report costs a look at each row, not a new binding each."""

    def __init__(self) -> None:
        self._known: dict[tuple[int, int], tuple[tuple[object, ...], Binding | None]] = {}

    def __call__(self, report: Report) -> frozenset[Binding]:
        known, self._known = self._known, {}
        found = []
        for row in report.rows:
            end, peer = row.end, row.peer
            inputs: tuple[object, ...] = (end.link, end.ns.key, end.workload, end.master, row.relation)
            if peer is not None:
                inputs += (peer.link, peer.ns.key, peer.master)
            key = (end.ns.key.ino, end.link.index)
            hit = known.get(key)
            binding = hit[1] if hit is not None and hit[0] == inputs else binding_of(row)
            self._known[key] = (inputs, binding)
            if binding is not None:
                found.append(binding)
        return frozenset(found)


def _interface(b: Binding) -> tuple[object, ...]:
    """A binding without its workload: the interfaces, their addresses and namespaces."""
    return (b.netns, b.inner_ifindex, b.inner_name, b.inner_mac, b.addresses, b.host_name, b.host_ifindex,
            b.host_mac, b.host_netns, b.bridge)  # fmt: skip


def steady(previous: Iterable[Binding], current: frozenset[Binding]) -> frozenset[Binding]:
    """``current``, where an interface that is unchanged keeps the workload ``previous`` named it
    by (pure). For a walk in which a source failed: a container the Docker source would have
    named is named only by its cgroup then, and that is not a new binding."""
    before = {_interface(b): b for b in previous}
    return frozenset(before.get(_interface(b), b) for b in current)


def degraded(before: Mapping[str, SourceState], after: Iterable[SourceStatus]) -> bool:
    """A source failed in this walk (timed out, erred, or went away after answering)."""
    for status in after:
        if status.state in (SourceState.TIMEOUT, SourceState.ERROR):
            return True
        if status.state is SourceState.UNAVAILABLE and before.get(status.name) is SourceState.OK:
            return True
    return False


class Recorder:
    """The diff between observations, kept until the writer has them on disk."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._written: dict[Binding, int] = {}  # open bindings on disk -> row id
        self._first: dict[Binding, float] = {}  # began, not yet on disk -> first seen
        # ended, not yet on disk -> (seen gone, last seen: the observation before)
        self._gone: dict[Binding, tuple[float, float]] = {}
        self._restored: dict[Binding, float] = {}  # open on disk from an earlier run -> its last seen
        self._current: frozenset[Binding] | None = None
        self._latest: float | None = None  # the latest observation
        self._unwritten = False  # the latest observation's time is not on disk yet
        self._sources: dict[str, SourceState] = {}  # each source's state in the latest good walk
        self._bindings = Bindings()

    def observe(self, report: Report, at: float) -> None:
        """Record that ``report`` is how things stood at ``at`` (Unix time). Cheap; no I/O."""
        found = self._bindings(report)
        if degraded(self._sources, report.sources):
            with self._lock:
                found = steady(self._current if self._current is not None else self._written, found)
        else:
            self._sources = {s.name: s.state for s in report.sources}
        self.observe_bindings(found, at)

    def still(self, at: float) -> None:
        """Things still stand as last observed, at ``at``: what a live model, which publishes every
        change, says between changes (the open bindings' last seen moves on; nothing else)."""
        with self._lock:
            if self._current is not None and (self._latest is None or at > self._latest):
                self._latest = at
                self._unwritten = True

    def observe_bindings(self, current: frozenset[Binding], at: float) -> None:
        with self._lock:
            previous = self._current if self._current is not None else frozenset(self._written)
            before = self._latest if self._latest is not None else at
            for b in current:
                if b in self._gone:
                    del self._gone[b]  # back before its end was written: it never ended
                elif b not in self._written and b not in self._first:
                    self._first[b] = at
            for b in previous - current:
                if b not in self._gone:
                    restored = self._restored.get(b)
                    self._gone[b] = (at, before) if restored is None else (restored, restored)
            self._restored.clear()
            self._current = current
            self._latest = at
            self._unwritten = True

    def restore(self, open_on_disk: Iterable[Recorded]) -> None:
        """Carry on with the bindings an earlier run left open (after the store is opened)."""
        with self._lock:
            for r in open_on_disk:
                b = r.binding
                self._written[b] = r.id
                self._first.pop(b, None)
                if self._current is None:
                    self._restored[b] = r.last_seen
                elif b not in self._current:
                    self._gone.setdefault(b, (r.last_seen, r.last_seen))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._first) + len(self._gone)

    def flush(self, store: Store, touch: bool = True) -> int:
        """Write what changed, and the last-seen time (with ``touch``, or along with a change); on
        failure everything stays for the next try."""
        with self._lock:
            gones = dict(self._gone)
            latest = self._latest
            starts = []
            for b, first in self._first.items():
                gone, last = gones.get(b, (None, latest if latest is not None else first))
                starts.append(Start(b, first, max(first, last), gone))
            ended = [(b, self._written[b], end) for b, end in gones.items() if b in self._written]
            seen_at = latest if self._unwritten else None
        if not starts and not ended and (seen_at is None or not touch):
            return 0
        ids = store.record(starts, [(id_, gone, last) for _b, id_, (gone, last) in ended], seen_at)
        with self._lock:
            for start, new in zip(starts, ids, strict=True):
                b = start.binding
                if self._first.get(b) == start.first_seen:
                    del self._first[b]
                if start.gone is None:
                    self._written[b] = new
                else:
                    self._settle_end(b, gones[b])
            for b, id_, end in ended:
                if self._written.get(b) == id_:
                    del self._written[b]
                self._settle_end(b, end)
            if self._latest == seen_at:
                self._unwritten = False
        return len(starts) + len(ended)

    def _settle_end(self, b: Binding, end: tuple[float, float]) -> None:
        """An end is on disk: forget it, unless the binding came back while it was written (then
        that return is a new binding)."""
        if self._gone.get(b) == end:
            del self._gone[b]
        elif self._current is not None and b in self._current and b not in self._first:
            self._first[b] = self._latest or end[0]


@dataclass(frozen=True, slots=True)
class JournalHealth:
    up: bool  # the journal is open and the latest write succeeded
    errors: int  # failed opens and writes
    path: str
    error: str | None  # the latest failure


class JournalWriter:
    """The background thread that owns the store: opens it, flushes the recorder, prunes."""

    def __init__(
        self,
        path: str,
        recorder: Recorder,
        log: Callable[[str], None],
        *,
        retention: float = DEFAULT_RETENTION,
        max_bytes: int = DEFAULT_MAX_BYTES,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.recorder = recorder
        self._recorder = recorder
        self._log = log
        self._retention = retention
        self._max_bytes = max_bytes
        self._interval = interval
        self._clock = clock
        self._store: Store | None = None
        self._refused = False
        self._up = False
        self._errors = 0
        self._error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vethpeer-journal", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def observe(self, report: Report, at: float) -> None:
        """The entry point for whoever keeps the present (serve's walk, a live model): the
        recorder's diff (cheap, no I/O), then a nudge to write it now."""
        self.recorder.observe(report, at)
        self._wake.set()

    def still(self, at: float) -> None:
        """Nothing changed since the last observation, as of ``at`` (:meth:`Recorder.still`)."""
        self.recorder.still(at)

    def wake(self) -> None:
        """Write now rather than at the next tick (after an observation with changes)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what is pending and close."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def health(self) -> JournalHealth:
        with self._lock:
            return JournalHealth(self._up, self._errors, self.path, self._error)

    def _failed(self, message: str) -> None:
        with self._lock:
            first = self._up or self._error != message
            self._up = False
            self._errors += 1
            self._error = message
        if first:
            resume = "serving goes on; recording resumes when it can"
            self._log(f"vethpeer serve: journal {self.path}: {message} ({resume})")

    def _ok(self) -> None:
        with self._lock:
            was = self._up
            self._up = True
            self._error = None
        if not was and self._errors:
            self._log(f"vethpeer serve: journal {self.path}: recording again")

    def _open(self) -> None:
        try:
            store = Store.open_writer(self.path, self._log, self._clock)
            self._recorder.restore(store.open_bindings())
        except JournalTooNew as error:
            self._refused = True
            hint = f" ({error.hint})" if error.hint else ""
            self._failed(f"{error}{hint}")
            return
        except Exception as error:  # any failure (JournalError, OSError, sqlite3.Error): not up; retry
            self._failed(_describe(error))
            return
        self._store = store
        self._ok()

    def _run(self) -> None:
        last_prune = last_touch = float("-inf")
        while True:
            stopping = self._stop.is_set()
            if self._store is None and not self._refused:
                self._open()
            store = self._store
            if store is not None:
                try:
                    touch = self._clock() - last_touch >= self._interval or stopping
                    self._recorder.flush(store, touch)
                    if touch:
                        last_touch = self._clock()
                    if self._clock() - last_prune >= PRUNE_EVERY:
                        last_prune = self._clock()
                        store.prune(self._clock() - self._retention, self._max_bytes)
                    self._ok()
                except Exception as error:  # a full disk, an I/O error: keep serving, retry
                    self._failed(_describe(error))
            if stopping:
                break
            self._wake.wait(self._interval if self._store is not None else max(self._interval, 5.0))
            self._wake.clear()
        if self._store is not None:
            self._store.close()


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
