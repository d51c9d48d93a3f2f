"""Command lines for people: how to run a read-only or fixing command inside a namespace.

vethpeer prints these (doctor's confirm and fix lines, capture's hints); it never runs them.
"""

from __future__ import annotations

import shlex

from .model import End, Namespace, NsKey


def in_ns(ns: Namespace, host: NsKey, *argv: str) -> str:
    """A command line that runs ``argv`` in ``ns``, the way a person would type it."""
    if ns.key == host:
        return shlex.join(argv)
    names = ns.netns_names
    if names:
        if argv[0] == "ip":
            return shlex.join(["ip", "-n", names[0], *argv[1:]])
        if argv[0] == "bridge":
            return shlex.join(["bridge", "-n", names[0], *argv[1:]])
        return shlex.join(["ip", "netns", "exec", names[0], *argv])
    if ns.pids:
        return shlex.join(["nsenter", "-t", str(ns.pids[0]), "-n", *argv])
    if ns.mounts:
        return shlex.join(["nsenter", f"--net={ns.mounts[0]}", *argv])
    return shlex.join(argv) + f"  # inside netns inode {ns.key.ino}"


def ip_in(end: End, host: NsKey, *argv: str) -> str:
    """``ip ARGV`` in the namespace of ``end``."""
    return in_ns(end.ns, host, "ip", *argv)


def show_link(end: End, host: NsKey) -> str:
    """``ip -d link show dev NAME`` for ``end``, in its namespace."""
    return ip_in(end, host, "-d", "link", "show", "dev", end.link.name)
