"""The web configuration file as it is on disk now: re-read when it, or a file it names, changes.

Every handshake and every request asks :meth:`WebFile.current`, which stats the configuration
file and the certificate, key and CA files (a few microseconds) and rebuilds only when one of
them changed: device, inode, size or mtime, so the symlink swap of a Kubernetes Secret volume
(cert-manager's rotation) is seen at the next connection. A new version that does not work
(unreadable, invalid, a key that does not match, TLS switched on or off, users added beside
``--kube-auth``) keeps the last good one, and is logged once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .api import Response
from .auth import OPEN_PATHS, Router
from .tls import Listener, listener
from .webconfig import WebConfig, WebConfigError, parse

Signature = tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True, slots=True)
class WebState:
    config: WebConfig
    tls: Listener | None


def load(path: Path, *, users_allowed: bool = True) -> WebState:
    """Read and check the file and every file it names (WebConfigError with a one-line message)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise WebConfigError(f"cannot read the web config {str(path)!r}: {why}") from None
    config = parse(text, path.parent, source=str(path))
    if config.users and not users_allowed:
        raise WebConfigError(
            f"{path}: basic_auth_users cannot be combined with --kube-auth (keep only tls_server_config)"
        )
    return WebState(config, listener(config.tls) if config.tls is not None else None)


def _signature(paths: tuple[Path, ...]) -> Signature:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((0, 0, 0, 0))
            continue
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class WebFile:
    def __init__(self, path: Path, log: Callable[[str], None], *, users_allowed: bool = True) -> None:
        self.path, self._log, self._users_allowed = path, log, users_allowed
        self._lock = threading.Lock()
        self._state = load(path, users_allowed=users_allowed)  # at start, an error is fatal
        self._paths = self._watched(self._state)
        self._seen = _signature(self._paths)

    def _watched(self, state: WebState) -> tuple[Path, ...]:
        return (self.path, *(state.config.tls.files if state.config.tls else ()))

    @property
    def tls(self) -> bool:
        return self._state.tls is not None

    def current(self) -> WebState:
        signature = _signature(self._paths)
        if signature == self._seen:
            return self._state
        with self._lock:
            if signature != self._seen:
                self._reload(signature)
            return self._state

    def listener(self) -> Listener:
        state = self.current()
        assert state.tls is not None, "the listener asks only when TLS is on"
        return state.tls

    def _reload(self, signature: Signature) -> None:
        self._seen = signature  # a broken version is reported once, not on every request
        try:
            state = load(self.path, users_allowed=self._users_allowed)
            if (state.tls is None) != (self._state.tls is None):
                raise WebConfigError("TLS cannot be switched on or off without a restart")
        except WebConfigError as error:
            self._log(
                "vethpeer serve: the web config changed but cannot be used, "
                f"keeping the last good one: {error}"
            )
            return
        self._state = state
        self._paths = self._watched(state)
        self._seen = _signature(self._paths)
        self._log(f"vethpeer serve: reloaded the web config {str(self.path)!r}")


def with_web_config(router: Router, web: WebFile, clock: Callable[[], float] = time.monotonic) -> Router:
    """``router`` with the web config's ``http_server_config.headers`` on every response and its
    ``rate_limit`` (a token bucket, 429 beyond it, as exporter-toolkit) on all but the probes."""
    rate = web.current().config.rate_limit  # as in exporter-toolkit, read once at start
    bucket = _Bucket(rate.interval, rate.burst, clock) if rate is not None else None

    def fronted(method: str, path: str, headers: Mapping[str, str]) -> Response:
        config = web.current().config
        if bucket is not None and path.partition("?")[0] not in OPEN_PATHS and not bucket.take():
            response = Response(429, b"too many requests\n")
        else:
            response = router(method, path, headers)
        if not config.headers:
            return response
        return replace(response, headers={**response.headers, **config.headers})

    return fronted


class _Bucket:
    """Go's ``rate.NewLimiter(rate.Every(interval), burst)``: Allow() takes one token if there is one."""

    def __init__(self, interval: float, burst: int, clock: Callable[[], float]) -> None:
        self._interval, self._burst, self._clock = interval, burst, clock
        self._tokens, self._at = float(burst), clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._at) / self._interval)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True
