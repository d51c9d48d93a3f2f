"""Owners of tap/tun devices: the VM (or other process) holding ``/dev/net/tun`` for each.

A tap has no peer device: the other end is a file descriptor. The kernel says which
device an fd on ``/dev/net/tun`` is attached to in ``/proc/PID/fdinfo/FD`` (``iff:
NAME``), so the holder is found read-only, whatever made the tap (QEMU itself, libvirt
passing an fd, ``ip tuntap`` + a VPN). The device lives in the namespace the holder
had when it attached it; that is taken as the holder's own namespace.

The workload: a QEMU process is a VM (``vm/NAME``), named after its libvirt domain (its
cgroup: ``machine-qemu\\x2d1\\x2dNAME.scope``) if it has one, else its ``-name``
(``-name NAME`` or ``-name guest=NAME,...``), else ``pid/N``; any other holder is
the process (``pid/N (comm)``). Only virtual machine monitors' fds are read (QEMU, KVM
tools, Firecracker, crosvm, Cloud Hypervisor), and nothing on a host without tun/tap devices.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

from .. import cgroup_path as cgroup
from ..model import LinkClaim, SourceResult, SourceState, SourceStatus, Workload, WorkloadKind
from . import PRIORITY_RUNTIME, Context, procfs

NAME = "taps"
TUN = "/dev/net/tun"
SYS_NET = "/sys/class/net"
# Virtual machine monitors (comm, cut to 15 characters by the kernel): only their fds are read.
# Other holders of taps (Open vSwitch's userspace datapath, VPNs) keep today's rows: none.
VMMS = ("qemu", "kvm", "firecracker", "crosvm", "cloud-hyperviso")


class Holder(NamedTuple):
    pid: int
    comm: str
    ifnames: tuple[str, ...]


# sysfs directory -> (device name, inode of its entry) -> whether it is a tun/tap device
_looked: dict[str, dict[tuple[str, int], bool]] = {}


def tun_devices(sys_net: str = SYS_NET) -> list[str]:
    """tun/tap devices of the namespace sysfs shows (a ``tun_flags`` attribute marks them).

    Each device is looked at once, not at every naming (a host with a veth per workload: a
    thousand stat calls every 2 s under churn): a device made anew is another sysfs node, whose
    inode (kernfs numbers its nodes without reusing a number) the directory's listing gives, so
    a name with the inode it had is the device it was."""
    try:
        with os.scandir(sys_net) as listing:
            entries = [(entry.name, entry.inode()) for entry in listing]
    except OSError:
        return []
    known, now = _looked.get(sys_net, {}), {}
    for entry in entries:
        is_tun = known.get(entry)
        if is_tun is None:
            is_tun = os.path.exists(f"{sys_net}/{entry[0]}/tun_flags")
        now[entry] = is_tun
    _looked[sys_net] = now
    return sorted(name for (name, _inode), is_tun in now.items() if is_tun)


def attached(pid: int, proc: str = "/proc") -> tuple[str, ...]:
    """Names of the devices ``pid``'s fds on /dev/net/tun are attached to (multiqueue: once)."""
    names: dict[str, None] = {}
    for fd, target in procfs.fd_targets(pid, proc):
        if target != TUN:
            continue
        try:
            with open(f"{proc}/{pid}/fdinfo/{fd}", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("iff:"):
                        names[line.split(":", 1)[1].strip()] = None
        except OSError:
            continue
    return tuple(names)


def qemu_name(argv: Sequence[str]) -> str | None:
    """The guest name of a QEMU command line: ``-name NAME`` or ``-name guest=NAME,debug-threads=on``."""
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-name", "--name"):
            value = argv[i + 1]
            parts = value.split(",")
            for part in parts:
                if part.startswith("guest="):
                    return part[len("guest=") :] or None
            return parts[0] or None
    return None


def qemu_uuid(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-uuid", "--uuid"):
            return argv[i + 1]
    return None


def workload_of(holder: Holder, argv: Sequence[str], cgroup_text: str | None) -> Workload:
    identity = cgroup.parse(cgroup_text) if cgroup_text else None
    is_qemu = holder.comm.startswith("qemu") or (identity is not None and identity.is_vm)
    if not is_qemu:
        return Workload(
            WorkloadKind.PROCESS, f"pid/{holder.pid} ({holder.comm})", id=str(holder.pid), source=NAME
        )
    domain = identity.name if identity is not None and identity.is_vm else None
    name = domain or qemu_name(argv) or f"pid/{holder.pid}"
    source = "libvirt cgroup" if domain else NAME
    return Workload(WorkloadKind.VM, name, id=qemu_uuid(argv) or str(holder.pid), source=source)


class TapOwners:
    """Source "taps": who holds each tap/tun device."""

    name = NAME

    def __init__(self, sys_net: str = SYS_NET) -> None:
        self.sys_net = sys_net

    def collect(self, context: Context) -> SourceResult:
        devices = tun_devices(self.sys_net)
        if not devices:
            return SourceResult(SourceStatus(self.name, SourceState.SKIPPED, "no tun/tap devices"))
        claims = []
        table = procfs.process_table(context)
        for process in procfs.named(table, prefixes=VMMS):
            ifnames = attached(process.pid, context.proc)
            if not ifnames:
                continue
            key = procfs.netns_of(process.pid, context.proc)
            if key is None:
                continue
            holder = Holder(process.pid, process.comm, ifnames)
            workload = workload_of(
                holder,
                procfs.cmdline(process.pid, context.proc),
                procfs.cgroup_text(process.pid, context.proc),
            )
            claims += [LinkClaim(key, ifname, workload, PRIORITY_RUNTIME) for ifname in ifnames]
        held = {c.ifname for c in claims if c.netns == context.host}
        detail = f"{len(devices)} tun/tap devices, {len(held & set(devices))} held by a virtual machine"
        return SourceResult(SourceStatus(self.name, SourceState.OK, detail), links=tuple(claims))
