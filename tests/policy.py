"""When a test cannot run here: skip on a laptop, fail in CI.

In CI (``CI=true``) root, Docker and containerd are installed by the project's own
scripts, so their absence is a broken set-up, never a reason to skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pytest

from tests.tools import find_tool

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Continue only if ``condition``; otherwise skip (laptop) or fail (CI) with ``reason``."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true, and this test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def need_files(paths: Iterable[str], install: str) -> None:
    """Continue only if every path exists; otherwise skip or fail, naming the first one missing
    and ``install``, how to get it."""
    for path in paths:
        need(os.path.exists(path), f"needs {path} ({install})")


def need_root() -> None:
    need(os.geteuid() == 0, "needs root (real network namespaces)")


def need_binary(name: str, *, python_tool: bool = False) -> str:
    """The absolute path of ``name``, found where the install puts it (tests/tools.py)."""
    path = find_tool(name, python_tool=python_tool)
    need(path is not None, f"needs the {name} binary")
    assert path is not None
    return path
