"""Shared test set-up: the repository root on sys.path, and root checks for integration tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.policy import need_root  # noqa: E402


@pytest.fixture(autouse=True)
def _integration_needs_root(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("integration") is not None:
        need_root()
