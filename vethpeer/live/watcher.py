"""`watch`'s loop: wait for the kernel (or the clock), look again where it points, report the difference.

Three things wake it, and nothing else (idle, it sleeps in ``poll``):

* the host's netlink event socket (:mod:`.events`): link and address changes in the host
  and in every namespace the host has an nsid for; those namespaces (and the host) are
  re-dumped, and the kernel's word that a device *moved* is kept for the diff;
* the mount table (``/proc/self/mountinfo`` is pollable): `ip netns add/del`, Docker,
  CNI and podman bind-mount their namespaces, so those appear and go at once;
* a rescan once a second of the processes' namespaces (a ``/proc`` scan: a namespace
  held by a process alone, without an nsid, sends nothing); a full rediscovery only
  when that set changed.

Names from the runtimes come a moment after their namespaces (Docker mounts the sandbox
before the container runs): after a namespace appears the sources are asked again one
and three seconds later, and a better name is reported as a ``named`` event.

An overflow of the event socket (``ENOBUFS``) triggers a full walk; the events its diff
reveals are marked ``resync``.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Collection, Iterator
from types import TracebackType

from ..model import NsKey
from .changes import Event, Move, diff
from .events import RCVBUF, Batch, EventSocket
from .walker import Walker

RESCAN = 1.0  # seconds between process rescans (never faster)
COALESCE = 0.01  # seconds to let a burst of notifications arrive before looking
RENAME_AFTER = (1.0, 3.0)  # ask the sources again this long after namespaces appeared


def process_namespaces(proc: str) -> dict[tuple[int, int], int]:
    """The namespaces processes are in, as (st_dev, st_ino), each with its lowest PID (a report
    shows it): a /proc scan, no mount table."""
    found: dict[tuple[int, int], int] = {}
    for entry in os.scandir(proc):
        if entry.name.isdigit():
            try:
                st = os.stat(f"{proc}/{entry.name}/ns/net")
            except OSError:
                continue
            pid, key = int(entry.name), (st.st_dev, st.st_ino)
            if pid < found.get(key, pid + 1):
                found[key] = pid
    return found


class Watcher:
    """Events since the previous call, from one walker (its thread only)."""

    def __init__(
        self,
        walker: Walker,
        clock: Callable[[], float] = time.monotonic,
        rcvbuf: int = RCVBUF,
        *,
        wake: int | None = None,
        changes: bool = True,
        gap: float = 0.0,
    ) -> None:
        """``wake``: a readable fd (a pipe) that ends :meth:`wait` early; the caller drains it.
        ``changes``: compute the events (False: only keep ``report`` current, as the live model
        does). ``gap``: at least this many seconds between two looks (a burst is one look)."""
        self.walker, self.clock, self.wake, self.changes, self.gap = walker, clock, wake, changes, gap
        self._looked = float("-inf")
        self.report = walker.round()
        self.sock = walker.in_host(lambda: EventSocket(rcvbuf, fdb=walker.request.fdb))
        self._mounts = open(f"{walker.env.proc}/self/mountinfo", "rb")  # noqa: SIM115  (polled while we run)
        self._mounts.read()
        self._poll = select.poll()
        self._poll.register(self.sock.fileno(), select.POLLIN)
        self._poll.register(self._mounts.fileno(), select.POLLPRI | select.POLLERR)
        if wake is not None:
            self._poll.register(wake, select.POLLIN)
        self._nsids = walker.host_nsids()
        self._rescan_at = clock() + RESCAN
        self._held = process_namespaces(walker.env.proc)
        self._renames: list[float] = []
        self.overflows = 0  # ENOBUFS seen (each answered by a full walk)

    def __enter__(self) -> Watcher:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()
        self._mounts.close()

    def events(self) -> Iterator[list[Event]]:
        """Forever: the events of each wake-up that found some."""
        while True:
            found = self.wait()
            if found:
                yield found

    def wait(self, limit: float | None = None) -> list[Event]:
        """Sleep until something may have changed (at most ``limit`` s), look, return what did."""
        naming = self.walker.naming_due()
        due = min([self._rescan_at, *self._renames, *((naming,) if naming is not None else ())])
        timeout = max(0.0, due - self.clock())
        if limit is not None:
            timeout = min(timeout, limit)
        ready = dict(self._poll.poll(timeout * 1000))
        mounts = self._mounts.fileno() in ready
        heard = self.sock.fileno() in ready
        if heard or (mounts and self.gap):  # a burst (events, namespaces mounted) is one look
            time.sleep(max(COALESCE if heard else 0.0, self._looked + self.gap - self.clock()))
        if mounts:
            self._mounts.seek(0)
            self._mounts.read()  # re-arms the mount table's poll
        now = self.clock()
        rescan = now >= self._rescan_at
        deaf: set[NsKey] = set()
        if rescan:
            self._rescan_at = now + RESCAN
            # the mount table is polled: only the processes' namespaces need a look each second
            held = process_namespaces(self.walker.env.proc)
            rescan, self._held = held != self._held, held
            # and those whose last dump the kernel kept interrupting (their last read stood)
            deaf = self.walker.reread(self._deaf() | self.walker.again)
        batch = Batch(())
        if heard or deaf:
            # after the rereads: a move seen there was announced (RTM_DELLINK) before, so is in this batch
            batch = self.sock.drain()
        now = self.clock()
        rename = any(t <= now for t in self._renames) or (naming is not None and naming <= now)
        if rename:
            self._renames = [t for t in self._renames if t > now]
            self.walker.rename()
        return self._look(batch, rediscover=mounts or rescan, rename=rename, deaf=deaf)

    def _deaf(self) -> set[NsKey]:
        """The namespaces held open that the host has no nsid for: their events never reach the
        socket (nothing here assigns an nsid), so they are read again at each rescan instead."""
        if self.walker.discovery is None:
            return set()
        heard = {*self._nsids.values(), self.walker.discovery.host}
        return {key for key in self.walker.read_times() if key not in heard}

    @property
    def pending(self) -> bool:
        """Whether the sources are still to be asked again about namespaces that appeared."""
        return bool(self._renames) or self.walker.naming_due() is not None

    def settle(self) -> list[Event]:
        """Everything pending looked at now, the processes rescanned too (before a resync)."""
        self._rescan_at = float("-inf")
        self._held = {}  # a rescan that finds the same processes still rediscovers
        return self.wait(0.0)

    def pending_changes(self) -> tuple[Batch, bool]:
        """What the kernel said since the last look, taken off the socket but not yet looked at
        (hand it to :meth:`apply`), and whether the mount table changed meanwhile."""
        ready = dict(self._poll.poll(0))
        mounts = self._mounts.fileno() in ready
        if mounts:
            self._mounts.seek(0)
            self._mounts.read()
        return self.sock.drain(), mounts

    def apply(self, batch: Batch, mounts: bool) -> list[Event]:
        """Look where ``batch`` (from :meth:`pending_changes`) points."""
        held = process_namespaces(self.walker.env.proc)
        rescan, self._held = held != self._held, held
        return self._look(batch, rediscover=mounts or rescan, rename=False)

    def namespace_of(self, nsid: int | None) -> NsKey | None:
        """The namespace an event came from, as far as the walker knows it."""
        if self.walker.discovery is None:
            return None
        return self._namespace_of(nsid, self.walker.discovery.host)

    def resync(self) -> list[Event]:
        """A full walk now, the sources asked again; its diff from the report kept, marked resync."""
        self.walker.rename(now=True)
        return self._resync()

    def _look(
        self, batch: Batch, *, rediscover: bool, rename: bool, deaf: Collection[NsKey] = ()
    ) -> list[Event]:
        walker = self.walker
        unknown = any(e.nsid is not None and e.nsid not in self._nsids for e in batch.events)
        if unknown:  # an nsid assigned since we last asked: maybe a namespace not found yet
            rediscover = True
        changed = walker.rediscover() if rediscover or batch.overflow else False
        if unknown and not changed:
            self._nsids = walker.host_nsids()
        if changed:
            self._nsids = walker.host_nsids()
            now = self.clock()
            self._renames = sorted({*self._renames, *(now + delay for delay in RENAME_AFTER)})
        if batch.overflow:
            self.overflows += 1
            return self._resync()
        if not (batch.events or changed or rename or deaf):
            return []
        # The kernel queues a move's RTM_DELLINK before the device shows up in its new namespace:
        # reading the socket again now means any move the dumps below can see comes with its hint.
        more = self.sock.drain()
        batch = Batch(batch.events + more.events, more.overflow)
        if batch.overflow:
            self.overflows += 1
            return self._resync()
        assert walker.discovery is not None
        host = walker.discovery.host
        # The devices the events name are read again (the host, a thousand links, only where named);
        # for `watch`'s events the host whole: its side of a pair shows a change elsewhere in the same diff
        dirty: set[NsKey] = {*deaf, *((host,) if self.changes else ())}
        named: dict[NsKey, set[int]] = {}
        moves = []
        for event in batch.events:
            key = self._namespace_of(event.nsid, host)
            if key is None:
                continue
            named.setdefault(key, set()).add(event.index)
            if event.type == "dellink" and event.new_nsid is not None:
                target = walker.nsid_target(key, event.new_nsid)
                if target is not None:
                    dirty.add(target)
                moves.append(Move(key, event.index, target, event.new_index))
                # the peer left behind (often the host's) gets no event of its own
                left = walker.peer_of(key, event.index)
                if left is None:
                    dirty.add(host)
                else:
                    named.setdefault(left[0], set()).add(left[1])
        self._looked = self.clock()
        new = walker.round(dirty, rediscover=False, named=named)
        events = diff(self.report, new, moves) if self.changes else []
        self.report = new
        return events

    def _resync(self) -> list[Event]:
        """Events were lost (ENOBUFS): a full walk, and whatever its diff shows, marked resync."""
        self.walker.rediscover()
        new = self.walker.round(rediscover=False, full=True)
        events = diff(self.report, new, resync=True) if self.changes else []
        self.report = new
        self._nsids = self.walker.host_nsids()
        return events

    def _namespace_of(self, nsid: int | None, host: NsKey) -> NsKey | None:
        """The namespace an event came from (the host: no nsid; None: not one we hold)."""
        return host if nsid is None else self._nsids.get(nsid)
