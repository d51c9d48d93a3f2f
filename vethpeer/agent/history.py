"""`serve`'s journal answers: /api/v1/history/<target> and /api/v1/which/<target>?at=T.

Each request opens the journal read-only on its own connection (WAL: it never waits for the
writer, and sees one committed state). The documents are the CLI's (`history --json`,
`which --at T --json`). A ``serve -n NS`` server answers only with bindings of NS.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import NotFound, UsageError
from ..journal.query import at, history
from ..journal.store import Store
from ..journal.times import parse_when, rfc3339
from ..render.history import document


def _moment(params: dict[str, str], name: str) -> float | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    try:
        return parse_when(text, time.time())
    except ValueError as error:
        raise UsageError(f"{name}: {error}") from None


def history_route(path: str, target: str, params: dict[str, str], namespace: str | None) -> dict[str, Any]:
    since, until = _moment(params, "since"), _moment(params, "until")
    store = Store.open_reader(path)
    try:
        records = history(store, target, since, until, namespace)
    finally:
        store.close()
    if not records:
        raise NotFound(f"nothing named {target!r} in the journal")
    window = {
        "since": None if since is None else rfc3339(since),
        "until": None if until is None else rfc3339(until),
    }
    return document("history", target, records, path, **window)


def which_at(path: str, target: str, params: dict[str, str], namespace: str | None) -> dict[str, Any]:
    moment = _moment(params, "at")
    assert moment is not None or "at" in params
    if moment is None:
        raise UsageError("at: empty")
    store = Store.open_reader(path)
    try:
        records = at(store, target, moment, namespace=namespace)
    finally:
        store.close()
    if not records:
        raise NotFound(f"{target!r} had no binding at {rfc3339(moment)} in the journal")
    return document("which-at", target, records, path, at=rfc3339(moment))
