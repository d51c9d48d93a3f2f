"""The cheap first look of the sources that find nothing on most hosts (Docker, Kubernetes API,
Podman, LXC): an option, a socket, a file, a process name. Where it finds nothing of theirs,
the source answers from here and its module (parsers, dataclasses, the modules they import) is never imported:
``all_sources()`` defers those modules (:class:`~vethpeer.sources.Deferred`). Each source's own
``collect()`` begins with the same look, so the answer is the same either way.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping

from .. import cgroup_path
from ..model import SourceResult, SourceState, SourceStatus
from . import Context, endpoints, procfs
from .docker_api import docker_host, socket_path

DOCKER = "docker"
KUBE = "kube"
PODMAN = "podman"
LXC = "lxc"

ROOTFUL_GRAPHROOT = "/var/lib/containers/storage"
STATE_FILE = "libpod/bolt_state.db"  # Podman up to 4.x (and later ones upgraded from it)
SQLITE_FILE = "db.sql"  # Podman 4.8+ may, 5.x does by default, keep its state in SQLite
CONMON = "conmon"  # Podman's monitor, one per container
LXC_MONITOR = "lxc-start"  # the comm of LXC's monitor, one per container


def _skipped(name: str, detail: str) -> SourceResult:
    return SourceResult(SourceStatus(name, SourceState.SKIPPED, detail))


def kubeconfig_files(environ: Mapping[str, str]) -> list[str]:
    """The kubeconfig files kubectl would read: each existing entry of $KUBECONFIG, else ~/.kube/config."""
    listed = environ.get("KUBECONFIG")
    if listed:
        paths = [p for p in listed.split(os.pathsep) if p]
    else:
        home = environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
        paths = [os.path.join(home, ".kube", "config")]
    return [p for p in paths if os.path.isfile(p)]


def in_cluster(context: Context) -> bool:
    return bool(context.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.isfile(
        context.paths.in_cluster_token
    )


def kube(context: Context) -> SourceResult | None:
    """``--no-kube``, or by default no kubeconfig and no in-cluster service account: skipped."""
    wanted = context.options.kube
    if wanted is False:
        return _skipped(KUBE, "--no-kube")
    if wanted is None and not (kubeconfig_files(context.environ) or in_cluster(context)):
        return _skipped(KUBE, "no kubeconfig or in-cluster config (--kube to ask the API anyway)")
    return None


def podman(context: Context, graphroots: tuple[str, ...] = (ROOTFUL_GRAPHROOT,)) -> SourceResult | None:
    """No conmon running and no state file in ``graphroots``: skipped."""
    if procfs.named(procfs.process_table(context), (CONMON,)):
        return None
    for root in graphroots:
        if any(os.path.exists(os.path.join(root, name)) for name in (STATE_FILE, SQLITE_FILE)):
            return None
    looked = ", ".join(os.path.join(r, STATE_FILE) for r in graphroots)
    return _skipped(PODMAN, f"no Podman state ({looked}) and no conmon running")


def lxc(context: Context) -> SourceResult | None:
    """No LXC monitor running and no process in an LXC cgroup: skipped."""
    from .cgroup import scan

    if procfs.named(procfs.process_table(context), (LXC_MONITOR,)):
        return None
    for members in scan(context).values():
        if any(m.identity.runtime == cgroup_path.LXC and m.identity.name for m in members):
            return None
    return _skipped(LXC, "no LXC container running")


def other_daemons(context: Context, url: str) -> list[endpoints.Endpoint]:
    """Sockets other running dockerd processes listen on (not the one at ``url``)."""
    table = procfs.process_table(context)
    seen = {os.path.realpath(p) for p in (socket_path(url),) if p}
    found = []
    for endpoint in endpoints.listening(context.proc, table, endpoints.DOCKER_DAEMONS):
        real = os.path.realpath(endpoint.path)
        if real not in seen:
            seen.add(real)
            found.append(endpoint)
    return found


def docker(context: Context) -> SourceResult | None:
    """No socket where the daemon was named (or the default one) and no other dockerd listening:
    skipped on a host without Docker, unavailable where Docker evidently ran."""
    from .cgroup import scan

    named = context.options.docker_host or context.environ.get("DOCKER_HOST") or None
    url = docker_host(named, context.environ)
    path = socket_path(url)
    if path is None or os.path.exists(path) or (not named and other_daemons(context, url)):
        return None
    ran = os.path.isdir(context.paths.docker_run_dir) or any(
        member.identity.runtime == cgroup_path.DOCKER
        for key, members in scan(context).items()
        if key != context.host
        for member in members[:1]
    )
    if ran:
        return SourceResult(
            SourceStatus(DOCKER, SourceState.UNAVAILABLE, f"no socket at {path} (daemon stopped?)")
        )
    return _skipped(DOCKER, f"no socket at {path}")
