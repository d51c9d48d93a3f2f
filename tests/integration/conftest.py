"""Fixtures for the real-namespace tests: labs that always clean up, and the CLI as a subprocess."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab.netlab import Lab
from tests.policy import need

ROOT = Path(__file__).resolve().parents[2]


def _need_lab() -> None:
    need(os.geteuid() == 0, "needs root (real network namespaces)")
    need(shutil.which("ip") is not None, "needs iproute2's ip")
    need(shutil.which("unshare") is not None, "needs util-linux's unshare")


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh lab per test; everything it built is removed afterwards, pass or fail."""
    _need_lab()
    with Lab() as built:
        yield built


@pytest.fixture(scope="module")
def module_lab() -> Iterator[Lab]:
    """One lab shared by a module's tests (they must not change it)."""
    _need_lab()
    with Lab() as built:
        yield built


@dataclass(frozen=True)
class Cli:
    """A finished ``python -m vethpeer`` run."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


VethpeerRunner = Callable[..., Cli]


def run_vethpeer(
    *args: str, user: str | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> Cli:
    """Run the real CLI in a child interpreter (as ``user`` via setpriv, if given)."""
    argv = [sys.executable, "-m", "vethpeer", *args]
    if user is not None:
        account = pwd.getpwnam(user)
        argv = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups", *argv]
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env, check=False
    )
    return Cli(tuple(args), done.returncode, done.stdout, done.stderr)


@pytest.fixture
def vethpeer() -> VethpeerRunner:
    return run_vethpeer
