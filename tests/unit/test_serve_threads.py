"""`serve` under threads: request handlers run concurrently (a cluster-wide `kubectl vethpeer
table -A` asks every node at once), walks follow one another, and what they share is published
as one immutable value, never a container changed while others iterate it. The routes run
in-process with a stand-in cache whose walk number moves on while the handlers run."""

from __future__ import annotations

import gzip
import json
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from vethpeer.agent.api import Service, route
from vethpeer.agent.cache import Answer, CacheStats, Walk
from vethpeer.agent.engine import Observation

from .builders import cri_pods


class MovingCache:
    """Answers every request from "the latest walk", whose number goes up all the time."""

    def __init__(self) -> None:
        self.observation = Observation(cri_pods())
        self.number = 0
        self.lock = threading.Lock()

    def _walk(self) -> Walk[Observation]:
        with self.lock:
            self.number += 1
            number = self.number
        return Walk(self.observation, number // 3 + 1, 0.0, 0.0, 0.0)

    def get(self, _wait: float) -> Answer[Observation]:
        return Answer(self._walk(), stale=False, error=None)

    def latest(self) -> Walk[Observation]:
        return self._walk()


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads switch as often as the interpreter allows, so races show up in a short run."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_the_whole_table_cache_survives_a_fan_out_while_walks_move_on(fast_switching: None) -> None:
    service = Service(MovingCache(), wait=1.0)  # type: ignore[arg-type]

    def ask(i: int) -> dict[str, Any]:
        headers = {"accept-encoding": "gzip"} if i % 2 else {}
        reply = route(service, "GET", "/api/v1/table", headers)
        assert reply.status == 200
        document: dict[str, Any] = json.loads(gzip.decompress(reply.body) if i % 2 else reply.body)
        del document["generated_at"]  # each walk's table is built anew
        return document

    expected = ask(0)
    with ThreadPoolExecutor(16) as pool:
        documents = list(pool.map(ask, range(4000)))
    assert all(document == expected for document in documents)
    assert expected["interfaces"]


class FailingCache:
    """No walk has succeeded: the latest failed on a namespace whose name is not a line of text."""

    def stats(self) -> CacheStats:
        return CacheStats(walks=1, errors=1, running=False, error="cannot read netns/\x1b]0;own\x07\udcff")

    def latest(self) -> None:
        return None


def test_readyz_shows_a_failed_walks_reason_as_every_text_output_shows_names() -> None:
    reply = route(Service(FailingCache(), wait=1.0), "GET", "/readyz", {})  # type: ignore[arg-type]
    assert reply.status == 503
    reason = "cannot read netns/\\x1b]0;own\\x07\\xff"
    assert reply.body.decode() == f"not ready: no walk has succeeded yet ({reason})\n"
