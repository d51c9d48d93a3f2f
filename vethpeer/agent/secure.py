"""The security layer, put together from `serve`'s options: one front for the routes.

The modes: none (loopback by default), the web config (TLS in the listener, basic auth as an
:class:`~.auth.Authenticator`, headers and rate limit around the routes:
:func:`.webfile.with_web_config`), and Kubernetes (``--kube-auth``, :mod:`.kubeauth`; with a web
config that has only TLS: TLS and Kubernetes authentication).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .api import Service
from .auth import AuthCounts, Authenticator, Router, guard
from .basic_auth import BasicAuth
from .webfile import WebFile, with_web_config


def open_web_config(path: Path, log: Callable[[str], None], *, kube_auth: bool = False) -> WebFile:
    """The web config, read and checked now (WebConfigError: a one-line usage error, exit 2);
    with ``kube_auth``, ``basic_auth_users`` in it are refused (then and on every reload)."""
    return WebFile(path, log, users_allowed=not kube_auth)


def web_authenticator(web: WebFile) -> Authenticator:
    """Basic auth with the web config's users as they are now: none (yet) lets everyone in, and
    users added to the file later are asked for from then on, as exporter-toolkit does."""
    return BasicAuth(lambda: web.current().config.users)


def front(
    router: Router,
    service: Service,
    web: WebFile | None,
    kube_auth: tuple[str | None, Sequence[str], Mapping[str, str]] | None,
    log: Callable[[str], None],
) -> Router:
    """``router`` behind the mode the options chose: the routes never know which one is on.

    ``kube_auth`` is ``(kubeconfig, proxy CIDRs, environ)`` for ``--kube-auth`` (a bad
    kubeconfig raises ValueError); with a web config as well, it gives the TLS and Kubernetes
    the authentication. The decisions are counted for ``/metrics`` (``service.auth``).
    """
    authenticator: Authenticator | None = web_authenticator(web) if web is not None else None
    if kube_auth is not None:
        from .kubeauth import from_options

        authenticator = from_options(*kube_auth)
    if authenticator is not None:
        counts = AuthCounts()
        service.auth = (authenticator.name, counts.snapshot)
        router = guard(router, authenticator, counts, log)
    return with_web_config(router, web) if web is not None else router
