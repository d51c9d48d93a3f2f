"""The web config's part of the security layer, put together from `serve`'s options.

The modes: none (loopback by default), the web config (TLS in the listener, basic auth as an
:class:`~.auth.Authenticator`, headers and rate limit around the routes:
:func:`.webfile.with_web_config`), and Kubernetes (``--kube-auth``, :mod:`.kubeauth`; with a web
config that has only TLS: TLS and Kubernetes authentication).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .auth import Authenticator
from .basic_auth import BasicAuth
from .webfile import WebFile


def open_web_config(path: Path, log: Callable[[str], None], *, kube_auth: bool = False) -> WebFile:
    """The web config, read and checked now (WebConfigError: a one-line usage error, exit 2);
    with ``kube_auth``, ``basic_auth_users`` in it are refused (then and on every reload)."""
    return WebFile(path, log, users_allowed=not kube_auth)


def web_authenticator(web: WebFile) -> Authenticator:
    """Basic auth with the web config's users as they are now: none (yet) lets everyone in, and
    users added to the file later are asked for from then on, as exporter-toolkit does."""
    return BasicAuth(lambda: web.current().config.users)
