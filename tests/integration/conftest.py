"""Fixtures for the real-namespace tests: labs that always clean up, and the CLI as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab.netlab import Lab
from tests.policy import need, need_binary
from tests.tools import find_tool

ROOT = Path(__file__).resolve().parents[2]


def _need_lab() -> None:
    need(os.geteuid() == 0, "needs root (real network namespaces)")
    need_binary("ip")
    need_binary("unshare")


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
    *args: str,
    user: str | None = None,
    no_capabilities: bool = False,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> Cli:
    """Run the real CLI in a child interpreter.

    ``no_capabilities``: as uid 0 with every capability dropped (:func:`capability_free_argv`).
    ``user``: as that unprivileged user, from a copy of the package (:func:`as_user`).
    """
    argv = [sys.executable, "-m", "vethpeer", *args]
    # Never the machine's own journal (an agent running here would make a gone target exit 9).
    full_env = {
        **os.environ,
        "NO_COLOR": "1",
        "VETHPEER_JOURNAL": "/nonexistent/vqf-journal.sqlite",
        **(env or {}),
    }
    if user is not None:
        with as_user(user) as (prefix, interpreter, package_root):
            argv = [*prefix, interpreter, "-m", "vethpeer", *args]
            full_env["PYTHONPATH"] = package_root
            return _run(args, argv, full_env, package_root, timeout)
    if no_capabilities:
        argv = [*capability_free_argv(), *argv]
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
    return _run(args, argv, full_env, str(ROOT), timeout)


def table_json(*extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The document of ``vethpeer table --json [EXTRA]``, a run that must succeed."""
    done = run_vethpeer("table", "--json", *extra, env=env)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = done.json()
    return data


def _run(args: tuple[str, ...], argv: list[str], env: dict[str, str], cwd: str, timeout: float) -> Cli:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False
    )
    return Cli(tuple(args), done.returncode, done.stdout, done.stderr)


def capability_free_argv() -> list[str]:
    """``setpriv`` that drops every capability (bounding, inheritable and ambient sets) but stays
    uid 0: the child can read the checkout and the interpreter wherever they lie and whatever
    their mode, and has no privilege at all (CapEff 0, checked here before it is used)."""
    setpriv = need_binary("setpriv")
    prefix = [setpriv, "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]
    status = subprocess.run(
        [*prefix, sys.executable, "-c", "print(open('/proc/self/status').read())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    caps = {
        line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines() if line.startswith("Cap")
    }
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == 0, status
    return prefix


@contextlib.contextmanager
def as_user(user: str) -> Iterator[tuple[list[str], str, str]]:
    """(setpriv prefix, interpreter, package root) to run vethpeer as the unprivileged ``user``.

    The checkout may lie in a folder only root can enter (``mktemp -d`` makes 0700), and the
    venv's interpreter may live under ``/root`` (pyenv): so the package is copied to a folder
    ``user`` can read, and the interpreter is the first of this one and Debian's ``python3`` that
    ``user`` can run. Only the standard library is on its path: vethpeer checks privileges
    before it imports any runtime client.
    """
    account = pwd.getpwnam(user)
    setpriv = need_binary("setpriv")
    prefix = [setpriv, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups", "--"]
    candidates = [os.path.realpath(sys.executable), find_tool("python3")]
    probe = "import sys; sys.exit(sys.version_info < (3, 10))"
    interpreter = next(
        (
            c
            for c in dict.fromkeys(filter(None, candidates))
            if subprocess.run([*prefix, c, "-c", probe], capture_output=True, cwd="/").returncode == 0
        ),
        None,
    )
    need(interpreter is not None, f"needs a Python >= 3.10 that {user} can run (apt-get install python3)")
    assert interpreter is not None
    with tempfile.TemporaryDirectory(prefix="vpx-user-") as folder:
        os.chmod(folder, 0o755)
        shutil.copytree(
            ROOT / "vethpeer", Path(folder, "vethpeer"), ignore=shutil.ignore_patterns("__pycache__")
        )
        for path in Path(folder).rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield prefix, interpreter, folder


@pytest.fixture
def vethpeer() -> VethpeerRunner:
    return run_vethpeer
