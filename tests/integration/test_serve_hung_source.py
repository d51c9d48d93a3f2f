"""`serve`'s walk, repeated, against sources that hang: the real walk (discovery, the kernel walk,
every thread) as the server's Walker runs it, walk after walk, with the Docker source pointed at
a unix socket that accepts and never answers (a stuck daemon) and a source that never returns
at all (a read stuck in the kernel). The thread count stays flat: a source whose thread of an
earlier walk still runs is reported, not started again."""

from __future__ import annotations

import contextlib
import io
import threading

import pytest

from tests.lab.serve_lab import hung_unix_socket
from tests.policy import need_root
from tests.unit.test_collect_threads import Hangs
from vethpeer.agent.engine import Walker
from vethpeer.collect import STILL_RUNNING, Request
from vethpeer.environment import Environment
from vethpeer.model import SourceState
from vethpeer.sources import Options
from vethpeer.sources.docker import DockerNames

pytestmark = pytest.mark.integration

WALKS = 6


def test_serve_walks_against_hung_sources_keep_a_flat_thread_count() -> None:
    need_root()
    never = Hangs()
    with hung_unix_socket() as docker, contextlib.ExitStack() as cleanup:
        cleanup.callback(never.release.set)
        request = Request(
            options=Options(timeout=0.3, docker_host=docker, kube=False),
            sources=[DockerNames(), never],
            ovs=False,
        )
        env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
        lines: list[str] = []
        walker = Walker(request, env, lines.append)
        counts = []
        for _ in range(WALKS):
            statuses = {s.name: s for s in walker().report.sources}
            assert statuses["docker"].state is SourceState.TIMEOUT  # asked again, and timed out again
            assert statuses[never.name].state is SourceState.TIMEOUT
            counts.append(sum(1 for t in threading.enumerate() if t.name.startswith("vethpeer-")))
        assert len(set(counts[1:])) == 1, f"threads per walk: {counts}"
        assert statuses[never.name].detail == STILL_RUNNING
        assert any(never.name in line and "timeout" in line for line in lines)
