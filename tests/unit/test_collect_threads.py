"""The sources' threads over repeated walks (`serve`, `top`, `watch`): a source that hangs past
its deadline is abandoned, and while its thread still runs it is not started again, so walk
after walk costs no new thread (nor the socket a real source would hold). The hanging source
is a real Source object blocked on an event; the real gathering code runs around it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from vethpeer.collect import STILL_RUNNING, Inflight, Request, name_namespaces
from vethpeer.environment import Environment
from vethpeer.model import Namespace, SourceResult, SourceState, SourceStatus
from vethpeer.netns import Discovery
from vethpeer.sources import Context, Options

from .builders import HOST

WALKS = 8


class Hangs:
    """A source that never answers until released (a daemon that accepted and went silent)."""

    name = "vqe-hangs"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def collect(self, context: Context) -> SourceResult:
        self.calls += 1
        self.release.wait(60)
        return SourceResult(SourceStatus(self.name, SourceState.OK))


class Answers:
    name = "vqe-answers"

    def collect(self, context: Context) -> SourceResult:
        return SourceResult(SourceStatus(self.name, SourceState.OK, "here"))


@pytest.fixture
def hangs() -> Iterator[Hangs]:
    source = Hangs()
    yield source
    source.release.set()


def alive(name: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name == f"vethpeer-{name}")


def test_a_hung_source_is_not_started_again_while_its_thread_runs(hangs: Hangs) -> None:
    discovery = Discovery(HOST, "test", (Namespace(HOST, is_host=True),), 0, 0)
    request = Request(
        options=Options(timeout=0.05), sources=[hangs, Answers()], ovs=False, inflight=Inflight()
    )
    env = Environment(environ={})
    counts, details = [], []
    for _ in range(WALKS):
        naming = name_namespaces(discovery, request, env)
        by_name = {r.status.name: r.status for r in naming.results}
        assert by_name["vqe-answers"].state is SourceState.OK  # the others are asked every walk
        assert by_name[hangs.name].state is SourceState.TIMEOUT
        details.append(by_name[hangs.name].detail)
        counts.append(alive(hangs.name))
    assert counts == [1] * WALKS, "one thread for the hung source, however many walks"
    assert hangs.calls == 1
    assert details[1:] == [STILL_RUNNING] * (WALKS - 1)
    hangs.release.set()  # the daemon answers at last: the next walk asks it again
    for _ in range(100):
        if not alive(hangs.name):
            break
        threading.Event().wait(0.01)
    naming = name_namespaces(discovery, request, env)
    assert {r.status.name: r.status.state for r in naming.results}[hangs.name] is SourceState.OK
    assert hangs.calls == 2


def test_without_inflight_every_walk_asks_again(hangs: Hangs) -> None:
    """A one-shot command walks once; nothing is kept between its runs."""
    discovery = Discovery(HOST, "test", (Namespace(HOST, is_host=True),), 0, 0)
    request = Request(options=Options(timeout=0.05), sources=[hangs], ovs=False)
    for _ in range(2):
        name_namespaces(discovery, request, Environment(environ={}))
    assert hangs.calls == 2
