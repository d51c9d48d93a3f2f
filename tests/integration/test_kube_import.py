"""The kubernetes client's import is not on the clock of ``--timeout`` (issue 18).

On a loaded node the first ``--kube`` walk used to spend its whole budget importing the client
and time out before asking anything. Now the import runs first, beside the walk, and the
source's deadline starts when it is done. Shown under load (busy loops started here and ended
by PID): with the default ``--timeout``, and with a ``--timeout`` shorter than the import
itself takes on this machine under that load.

The API server is the loopback stand-in (tests/lab/kube_api.py): no kube-apiserver binary can
run here. The client, its kubeconfig loading and its transport are the real ``kubernetes``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.integration.conftest import run_vethpeer
from tests.lab.common import busy
from tests.lab.kube_api import api_server
from tests.policy import need

PORT = 21710  # this test's loopback port (range 21700-21799)
LOOPS = 4


@pytest.fixture
def loaded() -> Iterator[None]:
    """Every core busy: LOOPS busy loops, ended by their PIDs afterwards."""
    need(os.geteuid() == 0, "needs root")
    with busy(LOOPS):
        yield


def import_seconds() -> float:
    """How long importing the client takes in a fresh interpreter, now."""
    code = "import time; t = time.perf_counter(); import kubernetes.client, kubernetes.config; "
    code += "print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def kube_status(*timeout: str) -> dict[str, str]:
    with api_server(port=PORT) as api, api.kubeconfig() as kubeconfig:
        done = run_vethpeer(*timeout, "--kube", "table", "--json", env={"KUBECONFIG": kubeconfig})
        assert done.returncode == 0, done.stderr
        assert api.requests, ("the API was never asked", done.stdout[-600:], done.stderr)
    status: dict[str, str] = next(s for s in json.loads(done.stdout)["sources"] if s["name"] == "kube")
    return status


def test_a_first_kube_walk_under_load_does_not_time_out(loaded: None) -> None:
    status = kube_status()
    assert status["status"] == "ok", status


def test_the_import_is_not_counted_in_the_timeout(loaded: None) -> None:
    seconds = import_seconds()
    timeout = min(0.3, seconds / 2)
    status = kube_status("--timeout", f"{timeout:.2f}")
    assert status["status"] == "ok", (status, f"import took {seconds:.2f} s, --timeout {timeout:.2f}")
