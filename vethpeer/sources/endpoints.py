"""Where the runtimes on this host listen, found without being told (read-only).

* The kubelet's own choice: ``--container-runtime-endpoint`` on its command line, else
  ``containerRuntimeEndpoint`` in its ``--config`` file.
* The listening unix sockets of running runtime daemons (``containerd``, ``crio``,
  ``cri-dockerd``, ``dockerd``, ``podman system service``): the socket inodes of
  ``/proc/PID/fd`` matched against the process's own ``/proc/PID/net/unix``.

Each endpoint says where it came from (``from kubelet config /var/lib/kubelet/config.yaml``,
``listening socket of containerd pid 812``), so the ``sources`` status can tell.
Nothing is connected to here; the sources decide what answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from . import procfs

CRI_DAEMONS = ("containerd", "crio", "cri-dockerd")
DOCKER_DAEMONS = ("dockerd",)
PODMAN = "podman"
KUBELET = "kubelet"
FLAG = "--container-runtime-endpoint"
_CONFIG_KEY = re.compile(
    r"""(?:^|[{,])\s*["']?containerRuntimeEndpoint["']?\s*:\s*["']?([^"'\s,#}]+)""", re.M
)
# Sockets that speak something other than the API asked for: containerd's ttrpc (for shims)
# and debug (pprof) sockets; dockerd's libnetwork (one per sandbox), metrics and plugin sockets.
_NOT_AN_API = re.compile(r"(\.ttrpc$|debug|/libnetwork/|metrics\.sock$|/plugins/)")


class Endpoint(NamedTuple):
    path: str  # reachable from here (through /proc/PID/root for a daemon in a container)
    why: str  # where it was found, for the status line
    pid: int | None = None  # the daemon listening on it, when known
    root: str = ""  # "/proc/PID/root" when the daemon sees other files than we do (nested)


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    """``--flag=value`` or ``--flag value`` (the last one wins, as with Go's flag package)."""
    found = None
    for i, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            found = arg[len(flag) + 1 :]
        elif arg == flag and i + 1 < len(argv):
            found = argv[i + 1]
    return found


def config_endpoint(text: str) -> str | None:
    """``containerRuntimeEndpoint`` of a KubeletConfiguration (YAML or JSON)."""
    m = _CONFIG_KEY.search(text)
    return m.group(1) if m else None


def unix_path(endpoint: str) -> str | None:
    """``unix:///x``, ``unix:/x`` or ``/x`` -> ``/x``; anything else (tcp://, npipe://) -> None."""
    text = endpoint.strip()
    for scheme in ("unix://", "unix:"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
            break
    return text if text.startswith("/") else None


def kubelet_endpoints(proc: str, table: Iterable[procfs.Process]) -> list[Endpoint]:
    """The runtime endpoint each running kubelet was told to use (flag first, then its config)."""
    found = []
    for process in procfs.named(table, (KUBELET,)):
        argv = procfs.cmdline(process.pid, proc)
        where = f"kubelet pid {process.pid}"
        value = flag_value(argv, FLAG)
        why = f"from {FLAG} of {where}"
        if value is None and (config := flag_value(argv, "--config")):
            try:
                with open(procfs.path_in_root(process.pid, config, proc), encoding="utf-8") as f:
                    value = config_endpoint(f.read())
            except (OSError, UnicodeDecodeError):
                value = None
            why = f"from kubelet config {config} ({where})"
        path = unix_path(value) if value else None
        if path is not None:
            root = procfs.root_of(process.pid, proc)
            found.append(Endpoint(procfs.resolve_in_root(root, path), why, process.pid, root))
    return found


def listening(proc: str, table: Iterable[procfs.Process], daemons: Sequence[str]) -> list[Endpoint]:
    """The unix sockets the named daemons listen on, main sockets (``*.sock``) first per daemon."""
    found = []
    for process in procfs.named(table, daemons):
        paths = [p for p in procfs.listening_sockets(process.pid, proc) if not _NOT_AN_API.search(p)]
        paths.sort(key=lambda p: (not p.endswith(".sock"), p))
        root = procfs.root_of(process.pid, proc) if paths else ""
        for path in paths:
            why = f"listening socket of {process.comm} pid {process.pid}"
            found.append(Endpoint(procfs.resolve_in_root(root, path), why, process.pid, root))
    return found


def podman_service(proc: str, table: Iterable[procfs.Process]) -> list[Endpoint]:
    """The API socket of a running ``podman system service`` (Docker-compatible)."""
    found = []
    for process in procfs.named(table, (PODMAN,)):
        argv = procfs.cmdline(process.pid, proc)
        if "service" not in argv:
            continue
        for path in procfs.listening_sockets(process.pid, proc):
            why = f"listening socket of podman system service pid {process.pid}"
            found.append(Endpoint(procfs.path_in_root(process.pid, path, proc), why, process.pid))
    return found
