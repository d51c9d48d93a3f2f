"""The security layer in front of the routes, put together from `serve`'s options.

The modes: none (loopback by default), the web config (TLS in the listener, basic auth as an
:class:`~.auth.Authenticator`, headers and rate limit around the routes), and Kubernetes
(``--kube-auth``; with a web config that has only TLS: TLS and Kubernetes authentication).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .auth import AllowAll, AuthCounts, Authenticator, Router, guard
from .basic_auth import BasicAuth
from .webfile import WebFile, with_web_config


def open_web_config(path: Path, log: Callable[[str], None], *, kube_auth: bool = False) -> WebFile:
    """The web config, read and checked now (WebConfigError: a one-line usage error, exit 2)."""
    return WebFile(path, log, users_allowed=not kube_auth)


def web_authenticator(web: WebFile | None) -> Authenticator:
    """Basic auth with the web config's users as they are now: none (yet) lets everyone in, and
    users added to the file later are asked for from then on, as exporter-toolkit does."""
    if web is None:
        return AllowAll()
    return BasicAuth(lambda: web.current().config.users)


def front(
    router: Router,
    web: WebFile | None,
    authenticator: Authenticator,
    counts: AuthCounts,
    log: Callable[[str], None],
) -> Router:
    guarded = guard(router, authenticator, counts, log)
    return with_web_config(guarded, web) if web is not None else guarded
