"""systemd-nspawn machines, from their cgroups and their supervisor processes.

No daemon (systemd-machined) is asked. A machine shows in two read-only places:

* the cgroup of its processes: ``systemd-nspawn@NAME.service`` (started by ``machinectl
  start`` / the template unit) or ``machine-NAME.scope`` (a direct ``systemd-nspawn``
  registered with machined), systemd-escaped (``\\x2d`` is ``-``);
* its supervisor, the ``systemd-nspawn`` process (``-M NAME`` / ``--machine=NAME``, else
  the base name of ``-D DIR`` or ``-i IMAGE``), whose child is the machine's init. This is
  all there is where nspawn runs without systemd as PID 1 (``--register=no
  --keep-unit``: no scope, no machined).

The host side of ``--network-veth`` is ``ve-NAME`` (``vb-NAME`` with ``--network-bridge``),
cut to 15 characters — so two machines can get the same prefix, and a name says nothing
for sure. The peer is found from the kernel as for every veth; the name is never used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from .. import cgroup_path as cgroup
from ..model import Claim, NsKey, SourceResult, SourceState, SourceStatus, Workload, WorkloadKind
from . import PRIORITY_RUNTIME, Context, procfs
from .cgroup import texts

NAME = "nspawn"
SUPERVISOR = "systemd-nspawn"
_SERVICE = re.compile(r"^systemd-nspawn@(.+)\.service$")
_SCOPE = re.compile(r"^machine-(.+)\.scope$")
_PER_NAMESPACE = 8  # processes of a namespace whose cgroup is read


def machine_of_cgroup(text: str) -> str | None:
    """The machine a ``/proc/PID/cgroup`` text names, or None (libvirt's qemu scopes are VMs)."""
    if "nspawn@" not in text and "machine" not in text and "\\x" not in text:
        return None  # neither pattern can match (unescaped, a part has one of these literally)
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for part in reversed([cgroup.unescape(p) for p in path.split("/") if p]):
            if m := _SERVICE.match(part):
                return m.group(1)
            if (m := _SCOPE.match(part)) and not m.group(1).startswith("qemu-"):
                return m.group(1)
    return None


def machine_of_argv(argv: Sequence[str]) -> str | None:
    """The machine name of a ``systemd-nspawn`` command line."""
    name = directory = image = None
    args = list(argv[1:])
    for i, arg in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else None
        if arg in ("-M", "--machine"):
            name = nxt
        elif arg.startswith("--machine="):
            name = arg.split("=", 1)[1]
        elif arg.startswith("-M") and len(arg) > 2:
            name = arg[2:]
        elif arg in ("-D", "--directory"):
            directory = nxt
        elif arg.startswith("--directory="):
            directory = arg.split("=", 1)[1]
        elif arg in ("-i", "--image"):
            image = nxt
        elif arg.startswith("--image="):
            image = arg.split("=", 1)[1]
        elif not arg.startswith("-") and (i == 0 or not args[i - 1].startswith("-")):
            break  # the command to run in the machine: its options are not ours
    if name:
        return name
    if directory:
        return os.path.basename(directory.rstrip("/")) or None
    if image:
        base = os.path.basename(image)
        return base[: -len(".raw")] if base.endswith(".raw") else base
    return None


def _workload(name: str) -> Workload:
    return Workload(WorkloadKind.NSPAWN, name, id=name, source=NAME)


class NspawnMachines:
    """Source "nspawn": systemd-nspawn machines."""

    name = NAME

    def collect(self, context: Context) -> SourceResult:
        found: dict[str, tuple[NsKey, str]] = {}
        table = procfs.process_table(context)
        for supervisor in procfs.named(table, (SUPERVISOR,)):
            machine = machine_of_argv(procfs.cmdline(supervisor.pid, context.proc))
            if machine is None:
                continue
            for child in procfs.children(supervisor.pid, context.proc):
                key = procfs.netns_of(child, context.proc)
                if key is not None:
                    found.setdefault(machine, (key, f"supervisor pid {supervisor.pid}"))
                    break
        claimed = {key for key, _ in found.values()}
        cgroups = texts(context)  # read once for the cgroup scan as well
        for ns in context.namespaces:
            if ns.key == context.host or ns.key in claimed:
                continue  # supervisors live in the host's: their cgroup names the machine too
            for pid in ns.pids[:_PER_NAMESPACE]:
                text = cgroups.get(pid)
                machine = machine_of_cgroup(text) if text else None
                if machine is not None:
                    found.setdefault(machine, (ns.key, "cgroup"))
                    break
        if not found:
            return SourceResult(
                SourceStatus(self.name, SourceState.SKIPPED, "no systemd-nspawn machine running")
            )
        claims = tuple(
            Claim(key, _workload(machine), PRIORITY_RUNTIME) for machine, (key, _) in sorted(found.items())
        )
        how = ", ".join(f"{machine} from its {why}" for machine, (_, why) in sorted(found.items()))
        return SourceResult(SourceStatus(self.name, SourceState.OK, f"{len(claims)} machines: {how}"), claims)
