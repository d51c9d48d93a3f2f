"""The walk cache's rules, with a walk function the test controls (the real walk is in the
integration tests; here only the single-flight, interval and staleness logic is exercised)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from vethpeer.agent.cache import WalkCache
from vethpeer.errors import NoPrivilege


class Walks:
    """Counts walks, tracks overlap, and can be held open by the test."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.count = 0
        self.running = 0
        self.most_at_once = 0
        self.release = threading.Event()
        self.release.set()
        self.fail: Exception | None = None
        self.lock = threading.Lock()

    def __call__(self) -> int:
        with self.lock:
            self.count += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            number = self.count
        try:
            time.sleep(self.delay)
            self.release.wait(10)
            if self.fail is not None:
                raise self.fail
            return number
        finally:
            with self.lock:
                self.running -= 1


def test_a_storm_costs_one_walk_and_walks_never_overlap() -> None:
    walks = Walks(delay=0.2)
    cache: WalkCache[int] = WalkCache(walks, min_interval=60)
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: cache.get(5), range(200)))
    assert walks.count == 1 and walks.most_at_once == 1
    assert {a.walk.value for a in answers if a.walk} == {1}
    assert not any(a.stale for a in answers)


def test_results_are_reused_for_the_minimum_interval() -> None:
    now = [100.0]
    walks = Walks()
    cache: WalkCache[int] = WalkCache(walks, min_interval=5, clock=lambda: now[0])
    assert cache.get(5).walk is not None
    now[0] += 4.9
    assert cache.get(5).walk.value == 1  # type: ignore[union-attr]
    now[0] += 0.2
    assert cache.get(5).walk.value == 2  # type: ignore[union-attr]
    assert walks.count == 2


def test_an_overrunning_walk_answers_from_the_last_good_one_marked_stale() -> None:
    walks = Walks()
    cache: WalkCache[int] = WalkCache(walks, min_interval=0.01)
    assert cache.get(5).walk.value == 1  # type: ignore[union-attr]
    time.sleep(0.02)
    walks.release.clear()  # the next walk hangs
    start = time.monotonic()
    answer = cache.get(0.2)
    assert time.monotonic() - start < 0.5
    assert answer.stale and answer.walk is not None and answer.walk.value == 1
    again = cache.get(0.1)  # a second request joins the same walk; no second walk starts
    assert again.stale and walks.count == 2 and walks.most_at_once == 1
    walks.release.set()
    deadline = time.monotonic() + 5
    while cache.stats().running and time.monotonic() < deadline:
        time.sleep(0.01)
    fresh = cache.get(5)
    assert fresh.walk is not None and fresh.walk.value >= 2 and not fresh.stale


def test_a_failed_walk_is_a_value_and_is_not_retried_within_the_interval() -> None:
    now = [0.0]
    walks = Walks()
    cache: WalkCache[int] = WalkCache(walks, min_interval=5, clock=lambda: now[0])
    assert cache.get(5).walk.value == 1  # type: ignore[union-attr]
    now[0] += 6
    walks.fail = NoPrivilege("missing CAP_SYS_ADMIN")
    failed = cache.get(5)
    assert failed.stale and failed.error == "missing CAP_SYS_ADMIN" and failed.walk.value == 1  # type: ignore[union-attr]
    assert cache.get(5).error == "missing CAP_SYS_ADMIN" and walks.count == 2  # not retried yet
    assert cache.stats().errors == 1 and cache.stats().error == "missing CAP_SYS_ADMIN"
    walks.fail = RuntimeError("a bug")
    now[0] += 6
    assert "internal error: RuntimeError: a bug" in (cache.get(5).error or "")
    walks.fail = None
    now[0] += 6
    assert cache.get(5).walk.value == 4 and cache.stats().error is None  # type: ignore[union-attr]


def test_before_any_walk_succeeds_there_is_no_answer() -> None:
    walks = Walks()
    walks.fail = NoPrivilege("nope")
    cache: WalkCache[int] = WalkCache(walks, min_interval=1)
    answer = cache.get(5)
    assert answer.walk is None and answer.error == "nope" and cache.latest() is None


def test_the_second_step_replaces_the_result_and_holds_off_the_next_walk() -> None:
    walks = Walks()
    step = threading.Event()

    def then(value: int) -> int:
        step.wait(10)
        return value * 100

    cache: WalkCache[int] = WalkCache(walks, min_interval=0.0, then=then)
    first = cache.get(5)
    assert first.walk is not None and first.walk.value == 1 and not first.walk.complete
    assert cache.stats().running  # the second step runs: no new walk may start
    again = cache.get(0.05)
    assert walks.count == 1 and again.walk is not None and again.walk.value == 1
    step.set()
    deadline = time.monotonic() + 5
    while cache.stats().running and time.monotonic() < deadline:
        time.sleep(0.01)
    latest = cache.latest()
    assert latest is not None and latest.value == 100 and latest.complete and latest.number == 1


def settled(cache: WalkCache[int]) -> None:
    deadline = time.monotonic() + 5
    while cache.stats().running and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_failing_second_step_is_logged_and_the_walk_stands() -> None:
    def then(_value: int) -> int:
        raise KeyError("vqe-bug")

    for debug in (False, True):
        lines: list[str] = []
        cache: WalkCache[int] = WalkCache(Walks(), min_interval=0.0, then=then, log=lines.append, debug=debug)
        cache.get(5)
        settled(cache)
        latest = cache.latest()
        assert latest is not None and latest.value == 1 and latest.complete
        assert len(lines) == 1 and "KeyError: 'vqe-bug'" in lines[0], lines
        assert ("Traceback (most recent call last)" in lines[0]) is debug


def test_a_walk_that_fails_by_a_bug_is_logged_with_its_traceback_under_debug() -> None:
    for debug in (False, True):
        walks = Walks()
        walks.fail = KeyError("vqe-walk-bug")
        lines: list[str] = []
        cache: WalkCache[int] = WalkCache(walks, min_interval=1, log=lines.append, debug=debug)
        assert cache.get(5).error == "internal error: KeyError: 'vqe-walk-bug'"
        assert len(lines) == 1 and "KeyError: 'vqe-walk-bug'" in lines[0], lines
        assert ("Traceback (most recent call last)" in lines[0]) is debug


def test_an_expected_walk_failure_is_the_answer_not_a_log_line() -> None:
    walks = Walks()
    walks.fail = NoPrivilege("nope")
    lines: list[str] = []
    cache: WalkCache[int] = WalkCache(walks, min_interval=1, log=lines.append)
    assert cache.get(5).error == "nope" and lines == []
