"""Shared test set-up: the repository root on sys.path, and root checks for integration tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.policy import need_root  # noqa: E402
from tests.tools import search_path  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """Run with the tools' folders on PATH, whatever PATH pytest was started with.

    The labs run ``ip``, ``nsenter``, ``ovs-vsctl``, ... and the daemons they start look up
    their own helpers (``runc``, ``containerd-shim-runc-v2``, ``docker-init``) on PATH; a fresh
    shell or CI may have neither the venv's ``bin`` nor ``/usr/sbin`` on it (tests/tools.py).
    """
    os.environ["PATH"] = search_path()


@pytest.fixture(autouse=True)
def _integration_needs_root(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("integration") is not None:
        need_root()
