"""Who may ask: one layer in front of the routes, which never know which mode is on.

An :class:`Authenticator` looks at a request's method, path and headers and returns a
:class:`Decision`. :func:`guard` wraps the router with one: the probe paths
(:data:`OPEN_PATHS`) are always answered, everything else only when the decision allows it.
TLS (and so client certificates) is the listener's business, not this layer's.

The modes: none (:class:`AllowAll`, loopback by default), the exporter-toolkit web
configuration (basic auth), and Kubernetes (TokenReview and SubjectAccessReview).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .api import Response

Router = Callable[[str, str, Mapping[str, str]], Response]
# kubelet probes: no credentials, and they say only ok / not ok
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# the client's address, as the listener adds it to the headers: no header a client sends can
# have this name (a header line ":peer: x" parses as an empty name)
PEER_HEADER = ":peer"
LOG_EVERY = 10.0  # seconds: refusals are logged at most once per this, per result, with a count
_MESSAGES = {
    401: "unauthorized: send Authorization: Bearer TOKEN",
    403: "forbidden",
    503: "cannot authorize the request now",
}


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    # when not allowed: 401 (who are you?), 403 (not you), 503 (cannot tell now: fail closed)
    status: int = 200
    user: str | None = None
    reason: str = ""  # for the log only, never sent to the client
    challenge: str | None = None  # the WWW-Authenticate value of a 401

    @property
    def result(self) -> str:
        """The metric label: allowed, denied (401/403) or error (could not decide)."""
        if self.allowed:
            return "allowed"
        return "error" if self.status >= 500 else "denied"


class Authenticator(Protocol):
    name: str  # the mode, as the metrics label it: "none", "web-config", "kube"

    def check(self, method: str, path: str, headers: Mapping[str, str]) -> Decision: ...


class AllowAll:
    name = "none"

    def check(self, method: str, path: str, headers: Mapping[str, str]) -> Decision:
        return Decision(True)


class AuthCounts:
    """Decisions counted by result, for ``vethpeer_auth_requests_total{mode,result}``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, result: str) -> None:
        with self._lock:
            self._counts[result] = self._counts.get(result, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class _Throttled:
    """Log lines about refusals, at most one per ``every`` seconds per result (with a count of
    the ones not written), so a client that keeps failing cannot flood the log."""

    def __init__(self, log: Callable[[str], None], every: float, clock: Callable[[], float]) -> None:
        self._log, self._every, self._clock = log, every, clock
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, result: str, line: str) -> None:
        now = self._clock()
        with self._lock:
            if now < self._next.get(result, 0.0):
                self._held[result] = self._held.get(result, 0) + 1
                return
            held = self._held.pop(result, 0)
            self._next[result] = now + self._every
        self._log(line + (f" (and {held} more since the last line)" if held else ""))


def guard(
    router: Router,
    authenticator: Authenticator,
    counts: AuthCounts,
    log: Callable[[str], None],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Router:
    """``router`` behind ``authenticator``: the probes always answered, the rest only when allowed.

    A refusal is a JSON error with the decision's status (and ``WWW-Authenticate`` on a 401);
    its reason goes to the log (throttled), never to the client.
    """
    throttled = _Throttled(log, LOG_EVERY, clock)

    def guarded(method: str, path: str, headers: Mapping[str, str]) -> Response:
        if path.partition("?")[0] in OPEN_PATHS:
            return router(method, path, headers)
        decision = authenticator.check(method, path, headers)
        counts.add(decision.result)
        if decision.allowed:
            return router(method, path, headers)
        peer = headers.get(PEER_HEADER, "?")
        who = f" ({decision.user})" if decision.user else ""
        throttled(
            decision.result,
            f"vethpeer serve: {decision.status} for {peer}{who} {method} {path.partition('?')[0]!r}: "
            f"{decision.reason}",
        )
        message = _MESSAGES.get(decision.status, "not allowed")
        body = json.dumps({"error": {"status": decision.status, "message": message}}) + "\n"
        extra = {"WWW-Authenticate": decision.challenge} if decision.challenge else {}
        return Response(decision.status, body.encode(), "application/json", extra)

    return guarded
