"""LXC (and LXD) containers, from their cgroups, their monitors and their config files.

No daemon is asked. Each running container shows in three read-only places:

* its processes' cgroup: ``lxc.payload.NAME`` (LXC 4+, LXD) or ``/lxc/NAME`` (older);
* its monitor process, whose command line is ``[lxc monitor] LXCPATH NAME`` and whose
  child is the container's init;
* its config file ``LXCPATH/NAME/config``: ``lxc.net.N.type``, ``lxc.net.N.link`` (the
  bridge), ``lxc.net.N.veth.pair`` (the host-side name, when fixed).

The host-side veth itself comes from the kernel like every peer (exact, whatever the
config says); the config gives the networks. Containers found only through their cgroup
(LXD, a config in a path we do not know) are named all the same.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .. import cgroup_path as cgroup
from ..model import Claim, NsKey, SourceResult, SourceState, SourceStatus, Workload, WorkloadKind
from . import PRIORITY_RUNTIME, Context, absent, procfs
from .cgroup import scan

NAME = absent.LXC
DEFAULT_LXCPATH = "/var/lib/lxc"
MONITOR = "[lxc monitor] "
_NET_KEY = re.compile(r"^lxc\.net\.(\d+)\.(type|link|veth\.pair|name)$")


@dataclass(frozen=True, slots=True)
class NetConfig:
    index: int
    type: str | None = None
    link: str | None = None  # the host bridge
    veth_pair: str | None = None  # the host-side veth's name, when the config fixes it
    name: str | None = None  # the interface name inside


def parse_config(text: str) -> tuple[NetConfig, ...]:
    """The ``lxc.net.N.*`` entries of an LXC config file, by N."""
    found: dict[int, dict[str, str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep or line.lstrip().startswith("#"):
            continue
        m = _NET_KEY.match(key.strip())
        if m:
            found.setdefault(int(m.group(1)), {})[m.group(2)] = value.strip()
    return tuple(
        NetConfig(i, v.get("type"), v.get("link"), v.get("veth.pair"), v.get("name"))
        for i, v in sorted(found.items())
    )


def parse_monitor(argv: list[str]) -> tuple[str, str] | None:
    """(lxcpath, name) from a monitor's command line ``[lxc monitor] /var/lib/lxc NAME``."""
    text = " ".join(argv)
    if not text.startswith(MONITOR):
        return None
    path, sep, name = text[len(MONITOR) :].strip().rpartition(" ")
    return (path, name) if sep and path and name else None


def _config(lxcpath: str, name: str) -> tuple[NetConfig, ...] | None:
    try:
        with open(os.path.join(lxcpath, name, "config"), encoding="utf-8", errors="replace") as f:
            return parse_config(f.read())
    except OSError:
        return None


def workload(name: str, nets: tuple[NetConfig, ...] | None) -> Workload:
    networks = tuple(n.link for n in nets or () if n.link)
    return Workload(WorkloadKind.LXC, name, id=name, networks=networks, source=NAME)


def claims(found: Mapping[str, NsKey], configs: Mapping[str, tuple[NetConfig, ...] | None]) -> list[Claim]:
    """One claim per container (on the host's key for ``lxc.net.0.type = none``: listed apart)."""
    return [
        Claim(key, workload(name, configs.get(name)), PRIORITY_RUNTIME) for name, key in sorted(found.items())
    ]


class LxcNames:
    """Source "lxc": LXC/LXD containers from cgroups, monitors and config files."""

    name = NAME

    def collect(self, context: Context) -> SourceResult:
        skipped = absent.lxc(context)  # no monitor, no process in an LXC cgroup
        if skipped is not None:
            return skipped
        ns_of: dict[str, NsKey] = {}
        paths: dict[str, str] = {}
        table = procfs.process_table(context)
        for monitor in procfs.named(table, (absent.LXC_MONITOR,)):
            parsed = parse_monitor(procfs.cmdline(monitor.pid, context.proc))
            if parsed is None:
                continue
            lxcpath, name = parsed
            paths[name] = lxcpath
            for child in procfs.children(monitor.pid, context.proc):
                key = procfs.netns_of(child, context.proc)
                if key is not None:
                    ns_of.setdefault(name, key)
        for key, members in scan(context).items():
            for member in members:
                if member.identity.runtime == cgroup.LXC and member.identity.name:
                    ns_of.setdefault(member.identity.name, key)
        if not ns_of:
            return SourceResult(SourceStatus(self.name, SourceState.SKIPPED, "no LXC container running"))
        configs = {name: _config(paths.get(name, DEFAULT_LXCPATH), name) for name in ns_of}
        found = claims(ns_of, configs)
        without = sorted(name for name, nets in configs.items() if nets is None)
        detail = f"{len(found)} containers"
        if without:
            detail += f" ({', '.join(without)}: no config file found, named from the cgroup)"
        return SourceResult(SourceStatus(self.name, SourceState.OK, detail), tuple(found))
