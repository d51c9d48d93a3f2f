"""The cheap first look of the sources that find nothing on most hosts (Kubernetes API, Podman,
LXC): an option, a file, a process name. Where it finds nothing of theirs, the source answers
from here and its module (parsers, dataclasses, the modules they import) is never imported:
``all_sources()`` defers those modules (:class:`~vethpeer.sources.Deferred`). Each source's own
``collect()`` begins with the same look, so the answer is the same either way.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping

from ..model import SourceResult, SourceState, SourceStatus
from . import Context, procfs

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
    from .. import cgroup_path
    from .cgroup import scan

    if procfs.named(procfs.process_table(context), (LXC_MONITOR,)):
        return None
    for members in scan(context).values():
        if any(m.identity.runtime == cgroup_path.LXC and m.identity.name for m in members):
            return None
    return _skipped(LXC, "no LXC container running")
