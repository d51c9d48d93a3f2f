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
from ..render import findings
from ..render import json as jsonrender
from ..targets import scoped
from .cache import Answer, WalkCache
from .engine import Observation
from .live import LiveCache
from .metrics import Health, MetricsPage, accepts_gzip

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
    table: dict[tuple[int, bool], bytes] = field(default_factory=dict)  # (walk, gzipped) -> the whole table


def _json(status: int, document: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    body = (jsonrender.dumps(document, pretty=False) + "\n").encode()
    return Response(status, body, JSON_TYPE, dict(headers or {}))


def _error(status: int, message: str, **extra: Any) -> Response:
    return _json(status, {"error": {"status": status, "message": message, **extra}})


def _text(status: int, text: str) -> Response:
    return Response(status, (text + "\n").encode())


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
        return _error(404, "no such endpoint", endpoints=[*ENDPOINTS, "/api/v1/which/<target>"])
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
    return ENDPOINTS.get(path)


def _metrics(service: Service, _path: str, _params: dict[str, str], headers: Mapping[str, str]) -> Response:
    answer = service.cache.get(_wait_for(service, headers))
    health = Health(answer, service.cache.stats(), service.now())
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
    number = walk.number if walk is not None and walk.value is observation else None
    compress = accepts_gzip(headers.get("accept-encoding", ""))
    body = service.table.get((number, compress)) if number is not None else None
    if body is None:  # the whole table, built once per walk (a cluster-wide `table -A` asks every node)
        raw = service.table.get((number, False)) if number is not None else None
        if raw is None:
            raw = _json(200, jsonrender.report_json(report)).body
        body = gzip.compress(raw, compresslevel=1, mtime=0) if compress else raw
        if number is not None:
            if any(key[0] != number for key in service.table):
                service.table.clear()
            service.table[(number, False)] = raw
            service.table[(number, compress)] = body
    if compress:
        extra = {**extra, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
    return Response(200, body, JSON_TYPE, extra)


def target_from(path: str) -> str | None:
    """The `which` target of ``/api/v1/which/<target>`` (percent-decoded, UTF-8), None if unacceptable.

    Paths to namespace files are not accepted over HTTP: the server would stat whatever
    path a client names. ``..`` segments, control characters and overlong targets neither.
    """
    target = unquote(path.removeprefix("/api/v1/which/"), errors="strict")
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
