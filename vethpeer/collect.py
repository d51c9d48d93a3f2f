"""One ``gather()`` for every command: privilege, discovery, the kernel walk, every source.

The sources (daemons, sockets, OVSDB) run in daemon threads while this thread walks
the kernel, under one deadline and one bug guard: a source that raises becomes an
``error`` status, one that hangs costs at most ``--timeout`` (plus a short grace) and
becomes ``timeout`` — its thread is abandoned, never joined, and cannot keep the
process alive. A caller that gathers again and again (`serve`, `top`, `watch`) passes
:class:`Inflight` on its Request: a source whose thread of an earlier walk is still running
is not started again (that would leak a thread and a socket per walk) but reported
``timeout``, "still running from an earlier walk". Then the pure correlator joins
everything into a :class:`Report`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

from . import ovs
from .correlate import correlate
from .deadline import Deadline
from .environment import Environment
from .errors import NoPrivilege, SourceFailed
from .model import NsKey, Report, Snapshot, SourceResult, SourceState, SourceStatus
from .netns import Discovery, discover
from .sources import Context, Options, Source, all_sources
from .sources.kernel import KernelNames
from .walk import snapshot

if TYPE_CHECKING:
    from .focus import Focus

GRACE = 0.5  # seconds a source may overrun its deadline before it is abandoned
PREPARE_LIMIT = 20.0  # seconds a source's client library may take to import (a loaded node)
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
STILL_RUNNING = "still running from an earlier walk"
T = TypeVar("T")


class Inflight:
    """The sources' threads of one caller's walks, by source name: those still running are not
    started again. Kept by a caller that walks repeatedly (one per server or screen), never global."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, threading.Thread] = {}

    def running(self, name: str) -> bool:
        with self._lock:
            job = self._jobs.get(name)
            return job is not None and job.is_alive()

    def started(self, name: str, job: threading.Thread) -> None:
        with self._lock:
            self._jobs[name] = job


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What a command needs gathered."""

    options: Options = field(default_factory=Options)
    fdb: bool = False  # read the bridges' MAC tables too
    stats: bool = False  # read every link's IFLA_STATS64 counters too (Link.stats)
    target: str | None = None  # `which TARGET`: read only what it names, when it says where (focus.py)
    namespace: str | None = None  # `which -n NS TARGET`: the Kubernetes namespace a workload target is in
    host_only: bool = False  # read the host's links only (the sources still name every namespace)
    strict: bool = False  # a present source that did not answer is a failure (exit 7)
    debug: bool = False  # tracebacks in the statuses of sources that raised
    sources: Sequence[Source] | None = None  # None: all_sources()
    ovs: bool = True
    inflight: Inflight | None = field(default=None, compare=False)  # walks again and again: see Inflight


def check_privilege(proc: str = "/proc") -> None:
    """Entering namespaces needs CAP_SYS_ADMIN; reading other processes' ns files CAP_SYS_PTRACE."""
    try:
        with open(f"{proc}/self/status", encoding="ascii") as status:
            caps = next(int(line.split()[1], 16) for line in status if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return
    missing = [
        name
        for bit, name in ((CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"))
        if not caps >> bit & 1
    ]
    if missing:
        raise NoPrivilege(
            f"missing {' and '.join(missing)} (needed to enter network namespaces and read other processes')",
            hint="run as root: sudo vethpeer ...",
        )


class _Job(threading.Thread, Generic[T]):
    """One source in a daemon thread; whatever happens, ``result`` ends up a value.

    ``prepare`` (importing a client library) runs first and is not on the clock of ``--timeout``:
    the source's own budget starts when it is done (within PREPARE_LIMIT)."""

    def __init__(
        self,
        name: str,
        work: Callable[[], T],
        failed: Callable[[SourceStatus], T],
        debug: bool,
        prepare: Callable[[], object] | None = None,
    ):
        super().__init__(name=f"vethpeer-{name}", daemon=True)
        self.source_name, self.work, self.failed, self.debug = name, work, failed, debug
        self.prepare = prepare
        self.result: T | None = None
        self.started_at = time.monotonic()
        self.ready_at: float | None = None if prepare is not None else self.started_at

    def run(self) -> None:
        if self.prepare is not None:
            with contextlib.suppress(Exception):  # the work itself meets the same failure and says so
                self.prepare()
            self.ready_at = time.monotonic()
        self.result = guarded(self.source_name, self.work, self.failed, self.debug)

    def outcome(self, deadline: Deadline, seconds: float) -> T:
        if self.result is None and self.is_alive():
            self.join(deadline.left(0.0))
        while self.result is None and self.is_alive():  # still importing, or its budget began late
            ready = self.ready_at
            end = self.started_at + PREPARE_LIMIT if ready is None else ready + seconds + GRACE
            left = end - time.monotonic()
            if left <= 0:
                break
            self.join(min(left, 0.05) if ready is None else left)
        if self.result is None:
            status = SourceStatus(self.source_name, SourceState.TIMEOUT, f"no answer within {seconds:g} s")
            return self.failed(status)
        return self.result


def guarded(name: str, work: Callable[[], T], failed: Callable[[SourceStatus], T], debug: bool) -> T:
    """The bug guard: a source that raises costs its own answer, never the whole one."""
    try:
        return work()
    except Exception as error:
        detail = f"{type(error).__name__}: {error}"
        if debug:
            import traceback  # only with --debug, after a source raised

            detail += "\n" + traceback.format_exc()
        return failed(SourceStatus(name, SourceState.ERROR, detail))


def _failed_source(status: SourceStatus) -> SourceResult:
    return SourceResult(status)


def _failed_ovs(status: SourceStatus) -> ovs.OvsResult:
    return ovs.OvsResult(status, {})


class Naming(NamedTuple):
    """What the sources said about one discovery: their claims, and OVSDB's bridges."""

    results: tuple[SourceResult, ...]
    ovs: ovs.OvsResult | None = None


def _prepare(source: Source, context: Context) -> Callable[[], object] | None:
    """A source's ``prepare(context)`` (importing its client), if it has one."""
    prepare = getattr(source, "prepare", None)
    return partial(prepare, context) if prepare is not None else None


class _Naming:
    """The sources of one discovery, started in their threads; ``finish()`` waits for them."""

    def __init__(
        self, discovery: Discovery, request: Request, env: Environment, kernel: KernelNames | None = None
    ) -> None:
        self.request = request
        self.context = Context(
            discovery.host, discovery.namespaces, request.options, proc=env.proc, environ=env.environ
        )
        chosen = all_sources() if request.sources is None else list(request.sources)
        self.inline = [  # cheap: no thread (``kernel``: a caller's, which remembers its answers)
            kernel if kernel is not None and isinstance(s, KernelNames) else s
            for s in chosen
            if s.name == "kernel"
        ]
        self.jobs = [
            self._start(s.name, partial(s.collect, self.context), _failed_source, _prepare(s, self.context))
            for s in chosen
            if s.name != "kernel"
        ]
        self.ovs_job = (
            self._start(ovs.NAME, partial(ovs.collect, request.options.timeout), _failed_ovs)
            if request.ovs
            else None
        )

    def _start(
        self,
        name: str,
        work: Callable[[], T],
        failed: Callable[[SourceStatus], T],
        prepare: Callable[[], object] | None = None,
    ) -> _Job[T]:
        """The source's job, started; or, while its job of an earlier walk still runs, its status."""
        job = _Job(name, work, failed, self.request.debug, prepare)
        inflight = self.request.inflight
        if inflight is not None and inflight.running(name):
            job.result = failed(SourceStatus(name, SourceState.TIMEOUT, STILL_RUNNING))
            return job
        job.start()
        if inflight is not None:
            inflight.started(name, job)
        return job

    def finish(self) -> Naming:
        request, timeout = self.request, self.request.options.timeout
        results = [
            guarded(s.name, partial(s.collect, self.context), _failed_source, request.debug)
            for s in self.inline
        ]
        deadline = Deadline(timeout + GRACE)
        results += [job.outcome(deadline, timeout) for job in self.jobs]
        found = self.ovs_job.outcome(deadline, timeout) if self.ovs_job is not None else None
        return Naming(tuple(results), found)


def name_namespaces(
    discovery: Discovery, request: Request, env: Environment, kernel: KernelNames | None = None
) -> Naming:
    """Only the sources' part of :func:`gather`, for a walk that is repeated (`top`, `watch`);
    ``kernel``: the walk's own kernel names, kept from one naming to the next."""
    return _Naming(discovery, request, env, kernel).finish()


def join(snap: Snapshot, naming: Naming, request: Request, env: Environment) -> Report:
    """The correlator over a snapshot and the sources' answers, then OVS, warnings and --strict."""
    report = correlate(snap, naming.results)
    if naming.ovs is not None:
        report = ovs.annotate(report, naming.ovs)
    check_sources(report.sources, request, env)
    return report


def check_sources(statuses: Sequence[SourceStatus], request: Request, env: Environment) -> None:
    """Warn about the sources that timed out or failed; with --strict, raise SourceFailed."""
    for status in statuses:
        if status.state in (SourceState.TIMEOUT, SourceState.ERROR):
            env.warn(f"warning: {status.name}: {status.state.value}: {status.detail}")
    if request.strict:
        failed = [s for s in statuses if s.state not in (SourceState.OK, SourceState.SKIPPED)]
        if failed:
            raise SourceFailed(
                "; ".join(
                    f"{s.name}: {s.state.value}" + (f" ({s.detail})" if s.detail else "") for s in failed
                )
            )


def gather(request: Request, env: Environment) -> Report:
    """Everything, or with ``target`` only what it names when it says where (`which`).

    The focused walk reads the target's namespace, the host links and other namespaces its
    peers are, and asks the sources about those namespaces only; a target that names no
    namespace by itself (a workload, an IP) gets the full walk. Sources that were expected
    to answer and did not are warned about on stderr; with ``strict`` they make this raise
    SourceFailed.
    """
    check_privilege(env.proc)
    discovery = discover(env.proc)
    walked, named, host_links = discovery, discovery, None
    asked: set[NsKey] | None = None  # with a focus: the namespaces the sources are asked about
    focus: Focus | str | None = None
    if request.target is not None:  # `which`: only then is the focus module imported
        from .focus import BY_NAME, locate

        focus = locate(discovery, request.target, env.proc)
        if focus == BY_NAME and not request.host_only:
            return _gather_by_name(discovery, request, env)
    if request.host_only:
        walked = replace(
            discovery, namespaces=tuple(ns for ns in discovery.namespaces if ns.key == discovery.host)
        )
    elif focus is not None and not isinstance(focus, str):  # a Focus
        keep = focus.namespaces | {discovery.host}
        walked = replace(discovery, namespaces=tuple(ns for ns in discovery.namespaces if ns.key in keep))
        # The sources name the namespaces read, not the host's own processes (unless it is the target).
        asked = set(focus.namespaces or {discovery.host})
        named = replace(discovery, namespaces=tuple(ns for ns in discovery.namespaces if ns.key in asked))
        host_links = focus.host_links
    naming = _Naming(named, request, env)  # the sources run in their threads during the walk
    snap = snapshot(walked, fdb=request.fdb, host_links=host_links, proc=env.proc, stats=request.stats)
    found = naming.finish()
    if asked is not None:  # claims on namespaces not read would name nothing that is shown
        found = found._replace(
            results=tuple(
                result._replace(claims=tuple(c for c in result.claims if c.netns in asked))
                for result in found.results
            ),
        )
    return join(snap, found, request, env)


def _gather_by_name(discovery: Discovery, request: Request, env: Environment) -> Report:
    """`which WORKLOAD`: the sources name every namespace first (the target is one of their
    names), then only the namespace those names place it in is read, with its peers; their
    claims are all kept, so the target resolves, or is ambiguous, as in the full walk."""
    from .focus import by_name

    assert request.target is not None
    found = _Naming(discovery, request, env).finish()
    focus = by_name(discovery, found.results, request.target, request.namespace, env.proc)
    walked, host_links = discovery, None
    if focus is not None:
        keep = focus.namespaces | {discovery.host}
        walked = replace(discovery, namespaces=tuple(ns for ns in discovery.namespaces if ns.key in keep))
        host_links = focus.host_links
    snap = snapshot(walked, fdb=request.fdb, host_links=host_links, proc=env.proc, stats=request.stats)
    return join(snap, found, request, env)
