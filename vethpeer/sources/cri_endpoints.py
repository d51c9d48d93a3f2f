"""Where the node's CRI runtime listens: the user's endpoint, the kubelet's, the sockets running
runtime daemons listen on, then the usual paths (also below /host, inside `kubectl debug node`)."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import NamedTuple

from . import Context, endpoints, procfs
from .endpoints import Endpoint

ENV = "CONTAINER_RUNTIME_ENDPOINT"  # crictl's convention


class EndpointError(ValueError):
    """An endpoint the user gave that cannot be a CRI unix socket."""


def socket_path(endpoint: str) -> str:
    """The path of a CRI endpoint: ``unix:///run/x.sock``, ``unix:/run/x.sock`` or ``/run/x.sock``."""
    text = endpoint.strip()
    if text.startswith("unix://"):
        path = text[len("unix://") :]
    elif text.startswith("unix:"):
        path = text[len("unix:") :]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise EndpointError(f"{endpoint}: only unix sockets are supported, not {scheme}://")
    else:
        path = text
    if not path.startswith("/"):
        raise EndpointError(f"{endpoint}: the socket path must be absolute")
    return path


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


class Candidate(NamedTuple):
    path: str
    # "--runtime-endpoint", "$CONTAINER_RUNTIME_ENDPOINT", "from kubelet config ...",
    # "listening socket of containerd pid N", or the runtime whose usual path this is
    why: str
    root: str = ""  # the runtime's own paths are reached through this prefix (/proc/PID/root)

    @property
    def origin(self) -> str:
        """Where it came from, for the status line."""
        if self.why.startswith(("from ", "listening ")):
            return self.why
        if self.why.startswith(("--", "$")):
            return f"from {self.why}"
        return f"usual path of {self.why}"


def given(context: Context) -> tuple[str | None, str]:
    """The endpoint the user named (None: none), and where: --runtime-endpoint, else the variable."""
    if context.options.runtime_endpoint:
        return context.options.runtime_endpoint, "--runtime-endpoint"
    return context.environ.get(ENV) or None, f"${ENV}"


def candidates(context: Context, discovered: Sequence[Endpoint] = ()) -> tuple[list[Candidate], str]:
    """The sockets to try, in order, and (when there are none) why.

    An endpoint given by the user is the only candidate, present or not; otherwise the
    ``discovered`` ones (the kubelet's flag or config, then the listening sockets of
    running runtime daemons), then every probed socket that exists (one entry per real
    file: /var/run is /run), and when none of these exists, the probed paths under
    ``context.paths.host_root`` (/host, inside ``kubectl debug node/...``). Raises
    EndpointError for an endpoint that is not a unix socket path.
    """
    named, why = given(context)
    if named:
        path = socket_path(named)
        if not os.path.exists(path):
            return [], f"{path} (from {why}): no such socket"
        if not _is_socket(path):
            return [], f"{path} (from {why}): not a socket"
        return [Candidate(path, why)], ""
    sockets = context.paths.cri_sockets
    found: list[Candidate] = []
    seen: set[str] = set()

    def add(path: str, why: str, root: str = "") -> None:
        real = os.path.realpath(path)
        if real not in seen and _is_socket(path):
            seen.add(real)
            found.append(Candidate(path, why, root))

    for endpoint in discovered:
        add(endpoint.path, endpoint.why, endpoint.root)
    for root in ("", context.paths.host_root):
        for runtime, path in sockets:
            add(root + path, runtime)
        if found:  # the node's own sockets first; /host only from inside a debug pod
            break
    if not found:
        probed = ", ".join(dict.fromkeys(p for _, p in sockets))
        return [], (
            f"no CRI socket found (probed {probed}; no kubelet names one and no "
            "containerd, crio or cri-dockerd listens; use --runtime-endpoint)"
        )
    return found, ""


def discover(context: Context) -> list[Endpoint]:
    """Endpoints this host's own processes point at: the kubelet's, then the daemons' sockets."""
    table = procfs.process_table(context)
    return endpoints.kubelet_endpoints(context.proc, table) + endpoints.listening(
        context.proc, table, endpoints.CRI_DAEMONS
    )
