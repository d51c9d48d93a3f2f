"""The routes of `vethpeer serve`, as a function from a request to a response (no sockets here).

``GET /metrics``, ``/api/v1/table``, ``/api/v1/which/<target>``, ``/api/v1/doctor``,
``/healthz``, ``/readyz``; HEAD alike without a body. Other paths 404, other methods 405.
The JSON documents are the CLI's own (same builders, same ``schema_version``); an
answer from an older walk than wanted carries ``X-Vethpeer-Stale: 1``.
Nothing here changes anything.

A server started with ``-n NS`` walks reports already cut to NS (see :mod:`.engine`);
here ``?namespace=`` may only repeat NS: another namespace is a 403, never an empty
answer that would look like "nothing there".
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from ..errors import Ambiguous, NotFound, VethpeerError
from ..journal.record import JournalHealth
from ..journal.store import JournalError
from ..render import findings
from ..render import json as jsonrender
from ..render.safe import shown
from ..targets import scoped
from .cache import Answer, WalkCache
from .engine import Observation
from .history import history_route, which_at
from .live import LiveCache
from .metrics import Health, accepts_gzip
from .page import MetricsPage

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
METHODS = ("GET", "HEAD")
MAX_TARGET = 256
_TARGET_OK = re.compile(r"^[\w.:@%+=,~-][\w.:@%+=,~/ -]*$")  # no control characters, no leading "/"
SCRAPE_TIMEOUT_HEADER = "x-prometheus-scrape-timeout-seconds"  # header names arrive in lower case
SCRAPE_MARGIN = 0.5  # answer this long before the scraper gives up


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT_TYPE
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Service:
    """What the routes need: the cache of walks, the rendered /metrics, and the limits."""

    cache: WalkCache[Observation] | LiveCache  # walks on demand, or `serve --live`'s model
    wait: float  # longest a request waits for a walk
    proc: str = "/proc"
    namespace: str | None = None  # `serve -n`: the only Kubernetes namespace served (the walks are cut to it)
    now: Callable[[], float] = field(default=lambda: 0.0)  # monotonic clock, as the cache's
    page: MetricsPage = field(default_factory=MetricsPage)
    table: TableBodies | None = None  # the latest walk's whole table, replaced whole
    auth: tuple[str, Callable[[], Mapping[str, int]]] | None = None  # (mode, decisions by result) if guarded
    journal_path: str | None = None  # the journal this server writes (None: --no-journal)
    journal: Callable[[], JournalHealth] | None = None  # its health, for /metrics


@dataclass(frozen=True, slots=True)
class TableBodies:
    """One walk's whole ``/api/v1/table`` body, plain and (once asked for) gzipped.

    Request handlers run in threads: they read :attr:`Service.table` once and publish a new
    value by one assignment, so none ever sees another's half-made change."""

    walk: int
    raw: bytes
    gzipped: bytes | None = None

    def body(self, compress: bool) -> bytes | None:
        return self.gzipped if compress else self.raw


def _json(status: int, document: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    body = (jsonrender.dumps(document, pretty=False) + "\n").encode()
    return Response(status, body, JSON_TYPE, dict(headers or {}))


def _error(status: int, message: str, **extra: Any) -> Response:
    return _json(status, {"error": {"status": status, "message": message, **extra}})


def _text(status: int, text: str) -> Response:
    """A line for people (a walk's error can carry a name: shown as every text output shows it)."""
    return Response(status, (shown(text) + "\n").encode())


def _wait_for(service: Service, headers: Mapping[str, str]) -> float:
    """How long this request may wait for a walk: the scraper's timeout (less a margin), capped."""
    raw = headers.get(SCRAPE_TIMEOUT_HEADER)
    try:
        asked = float(raw) - SCRAPE_MARGIN if raw else service.wait
    except ValueError:
        asked = service.wait
    return max(0.0, min(service.wait, asked)) if asked == asked else service.wait


def _stale_headers(answer: Answer[Observation], now: float) -> dict[str, str]:
    headers = {"X-Vethpeer-Stale": "1" if answer.stale else "0"}
    if answer.walk is not None:
        headers["Age"] = str(int(max(0.0, now - answer.walk.finished)))
    return headers


def route(service: Service, method: str, raw_path: str, headers: Mapping[str, str]) -> Response:
    """The response to one request; every failure is a response, never an exception."""
    path, _, query = raw_path.partition("?")
    handler = _route_for(path)
    if handler is None:
        endpoints = [*ENDPOINTS, "/api/v1/which/<target>", "/api/v1/history/<target>"]
        return _error(404, "no such endpoint", endpoints=endpoints)
    if method not in METHODS:
        return Response(405, b"method not allowed\n", TEXT_TYPE, {"Allow": ", ".join(METHODS)})
    try:
        params = {k: v[-1] for k, v in parse_qs(query, errors="strict", max_num_fields=8).items()}
        return handler(service, path, params, headers)
    except (UnicodeDecodeError, ValueError) as error:
        return _error(400, f"malformed request: {error}")


def _route_for(path: str) -> Callable[[Service, str, dict[str, str], Mapping[str, str]], Response] | None:
    if path.startswith("/api/v1/which/"):
        return _which
    if path.startswith("/api/v1/history/"):
        return _history
    return ENDPOINTS.get(path)


def _metrics(service: Service, _path: str, _params: dict[str, str], headers: Mapping[str, str]) -> Response:
    answer = service.cache.get(_wait_for(service, headers))
    auth = (service.auth[0], service.auth[1]()) if service.auth else None
    journal = service.journal() if service.journal is not None else None
    health = Health(answer, service.cache.stats(), service.now(), auth, journal)
    compress = accepts_gzip(headers.get("accept-encoding", ""))
    body, content_type = service.page.build(health, headers.get("accept", ""), compress)
    extra = _stale_headers(answer, health.now)
    extra["Vary"] = "Accept, Accept-Encoding"
    if compress:
        extra["Content-Encoding"] = "gzip"
    return Response(200, body, content_type, extra)


def _scope(service: Service, params: dict[str, str]) -> str | Response | None:
    """``?namespace=`` as a filter still to apply to the walk's report: None when the report is
    already just that (no query, or a ``-n NS`` server asked for NS); for another namespace than
    a ``-n`` server's, the 403 to answer."""
    asked, served = params.get("namespace") or None, service.namespace
    if served is None or asked is None:
        return asked
    if asked == served:
        return None
    message = f"this server serves only Kubernetes namespace {served!r} (serve -n), not {asked!r}"
    return _error(403, message, namespace=served)


def _target_error(service: Service, error: VethpeerError) -> Response:
    """A target that named nothing (404), several things (409), or nothing acceptable (400)."""
    if isinstance(error, Ambiguous):
        return _error(409, str(error), candidates=error.candidates)
    if isinstance(error, NotFound):
        served = service.namespace
        seen = f" (this server sees only Kubernetes namespace {served!r})" if served else ""
        return _error(404, f"{error}{seen}")
    return _error(400, str(error))


def _observation(
    service: Service, params: dict[str, str], headers: Mapping[str, str]
) -> tuple[str | None, Observation, dict[str, str]] | Response:
    """(the namespace filter still to apply, the walk's observation, its staleness headers)."""
    namespace = _scope(service, params)
    if isinstance(namespace, Response):
        return namespace
    answer = service.cache.get(_wait_for(service, headers))
    if answer.walk is None:
        return _error(503, f"no walk has succeeded yet: {answer.error or 'the first walk is running'}")
    return namespace, answer.walk.value, _stale_headers(answer, service.now())


def _table(service: Service, _path: str, params: dict[str, str], headers: Mapping[str, str]) -> Response:
    got = _observation(service, params, headers)
    if isinstance(got, Response):
        return got
    namespace, observation, extra = got
    report = observation.report
    if namespace is not None:
        return _json(200, jsonrender.report_json(scoped(report, namespace)), extra)
    walk = service.cache.latest()
    # the walk this answer came from, if it is still the latest: the doctor's checks settle it into
    # a new value meanwhile, with the same report (all the table is made of)
    number = walk.number if walk is not None and walk.value.report is report else None
    compress = accepts_gzip(headers.get("accept-encoding", ""))
    cached = service.table  # one read: other handlers may publish a newer one meanwhile
    if cached is None or cached.walk != number:
        cached = None
    body = cached.body(compress) if cached is not None else None
    if body is None:  # the whole table, built once per walk (a cluster-wide `table -A` asks every node)
        raw = cached.raw if cached is not None else _json(200, jsonrender.report_json(report)).body
        gzipped = gzip.compress(raw, compresslevel=1, mtime=0) if compress else None
        body = gzipped if gzipped is not None else raw
        if number is not None:
            latest = service.table
            if latest is None or latest.walk <= number:  # never put an older walk's table back
                service.table = TableBodies(number, raw, gzipped or (cached.gzipped if cached else None))
    if compress:
        extra = {**extra, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
    return Response(200, body, JSON_TYPE, extra)


def target_from(path: str, prefix: str = "/api/v1/which/") -> str | None:
    """The `which` target of ``/api/v1/which/<target>`` (percent-decoded, UTF-8), None if unacceptable.

    Paths to namespace files are not accepted over HTTP: the server would stat whatever
    path a client names. ``..`` segments, control characters and overlong targets neither.
    """
    target = unquote(path.removeprefix(prefix), errors="strict")
    if not target or len(target) > MAX_TARGET or not _TARGET_OK.match(target):
        return None
    if ".." in target.split("/") or target.startswith("/"):
        return None
    return target


def _which(service: Service, path: str, params: dict[str, str], headers: Mapping[str, str]) -> Response:
    from ..targets import resolve

    target = target_from(path)
    if target is None:
        return _error(400, "not an acceptable target (a name, ID, NS/NAME, PID, veth, MAC or IP; no paths)")
    if "at" in params:
        return _from_journal(service, which_at, target, params)
    got = _observation(service, params, headers)
    if isinstance(got, Response):
        return got
    namespace, observation, extra = got
    report = observation.report
    try:
        match = resolve(report, target, namespace=namespace, proc=service.proc)
    except VethpeerError as error:
        return _target_error(service, error)
    return _json(200, jsonrender.report_json(report, match.rows, namespace=namespace), extra)


def _history(service: Service, path: str, params: dict[str, str], _headers: Mapping[str, str]) -> Response:
    target = target_from(path, "/api/v1/history/")
    if target is None:
        return _error(400, "not an acceptable target (a name, ID, NS/NAME, veth, MAC or IP; no paths)")
    return _from_journal(service, history_route, target, params)


def _from_journal(
    service: Service,
    answer: Callable[[str, str, dict[str, str], str | None], dict[str, Any]],
    target: str,
    params: dict[str, str],
) -> Response:
    """A journal query (read-only, its own connection): 503 without a journal, 400 for a bad
    time, 404 / 409 as for `which`. With ``-n NS``, only bindings of NS are answered."""
    if service.journal_path is None:
        return _error(503, "this server keeps no journal (serve --no-journal)")
    try:
        return _json(200, answer(service.journal_path, target, params, service.namespace))
    except VethpeerError as error:
        if isinstance(error, JournalError):
            return _error(503, f"history not available: {error}")
        return _target_error(service, error)


def _doctor(service: Service, _path: str, params: dict[str, str], headers: Mapping[str, str]) -> Response:
    got = _observation(service, params, headers)
    if isinstance(got, Response):
        return got
    namespace, observation, extra = got
    report, target = observation.report, params.get("target") or None
    if target is None and namespace is None and observation.diagnosed and observation.diagnosis is not None:
        return _json(200, findings.document(report, observation.diagnosis), extra)
    if target is not None and target_from("/api/v1/which/" + target) is None:
        return _error(400, "not an acceptable target")
    from ..diagnosis import diagnose

    try:
        diagnosis = diagnose(report, target, namespace, service.proc)
    except VethpeerError as error:
        return _target_error(service, error)
    return _json(200, findings.document(report, diagnosis), extra)


def _healthz(_service: Service, _path: str, _params: dict[str, str], _headers: Mapping[str, str]) -> Response:
    return _text(200, "ok")


def _readyz(service: Service, _path: str, _params: dict[str, str], _headers: Mapping[str, str]) -> Response:
    """Ready once a walk has succeeded, and while the latest walk did not fail (probes never walk)."""
    stats = service.cache.stats()
    if service.cache.latest() is None:
        return _text(503, f"not ready: no walk has succeeded yet ({stats.error or 'the first is running'})")
    if stats.error is not None:
        return _text(503, f"not ready: the latest walk failed: {stats.error}")
    return _text(200, "ready")


ENDPOINTS: dict[str, Callable[[Service, str, dict[str, str], Mapping[str, str]], Response]] = {
    "/metrics": _metrics,
    "/api/v1/table": _table,
    "/api/v1/doctor": _doctor,
    "/healthz": _healthz,
    "/readyz": _readyz,
}
