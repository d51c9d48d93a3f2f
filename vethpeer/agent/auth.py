"""Who may ask: one layer in front of the routes, which never know which mode is on.

An :class:`Authenticator` looks at a request's method, path and headers and returns a
:class:`Decision`. :func:`guard` wraps the router with one: the probe paths
(:data:`OPEN_PATHS`) are always answered, everything else only when the decision allows it.
TLS (and so client certificates) is the listener's business, not this layer's.

The modes: none (:class:`AllowAll`, loopback by default), the exporter-toolkit web
configuration (basic auth), and Kubernetes (TokenReview and SubjectAccessReview).
"""

from __future__ import annotations

import threading
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


def guard(
    router: Router, authenticator: Authenticator, counts: AuthCounts, log: Callable[[str], None]
) -> Router:
    """``router`` behind ``authenticator``: the probe paths always answered (status and "ok" /
    "not ok", nothing more), the others only when allowed; every decision counted, refusals
    logged at most once per ten seconds per mode."""
    from .throttle import ThrottledLog

    throttled = ThrottledLog(log)

    def guarded(method: str, path: str, headers: Mapping[str, str]) -> Response:
        if path.partition("?")[0] in OPEN_PATHS:
            answer = router(method, path, headers)
            return Response(
                answer.status, b"ok\n" if answer.status < 400 else b"not ok\n", headers=answer.headers
            )
        decision = authenticator.check(method, path, headers)
        counts.add(decision.result)
        if decision.allowed:
            return router(method, path, headers)
        throttled(authenticator.name, f"vethpeer serve: refused {method} {path!r}: {decision.reason}")
        status = decision.status
        body = {401: b"unauthorized\n", 403: b"forbidden\n"}.get(status, b"cannot authenticate now\n")
        extra = {"WWW-Authenticate": decision.challenge} if status == 401 and decision.challenge else {}
        return Response(status, body, headers=extra)

    return guarded
