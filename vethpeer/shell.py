"""Command lines for people: how to run a read-only or fixing command inside a namespace.

vethpeer prints these (doctor's confirm and fix lines, capture's hints); it never runs them.
Names in them come from the system: each word is quoted to be exactly that word when pasted
into a shell, and to show no control character (:func:`quote`).
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Iterable

from .model import End, Namespace, NsKey


@functools.lru_cache(maxsize=16384)
def quote(word: str) -> str:
    """One exact shell word that is printable: ``shlex.quote``, or bash's ``$'...'`` when the
    word holds anything not printable (a control character, a byte that is not UTF-8), each
    such character written as the ``\\xNN`` escapes of its bytes. Remembered: `serve`'s doctor
    writes the same words (``ip``, ``-n``, the interfaces' names) into thousands of lines a round."""
    if word.isprintable():
        return shlex.quote(word)
    escaped = []
    for char in word:
        if char in "\\'":
            escaped.append("\\" + char)
        elif char.isprintable():
            escaped.append(char)
        else:
            escaped.extend(f"\\x{b:02x}" for b in _bytes(char))
    return "$'" + "".join(escaped) + "'"


def _bytes(char: str) -> bytes:
    try:
        return char.encode("utf-8", "surrogateescape")  # a byte read from the system: itself
    except UnicodeEncodeError:  # another lone surrogate
        return char.encode("utf-8", "surrogatepass")


def join(argv: Iterable[str]) -> str:
    """A command line of exact, printable shell words (``shlex.join`` with :func:`quote`)."""
    return " ".join(quote(word) for word in argv)


def in_ns(ns: Namespace, host: NsKey, *argv: str) -> str:
    """A command line that runs ``argv`` in ``ns``, the way a person would type it."""
    if ns.key == host:
        return join(argv)
    names = ns.netns_names
    if names:
        if argv[0] == "ip":
            return join(["ip", "-n", names[0], *argv[1:]])
        if argv[0] == "bridge":
            return join(["bridge", "-n", names[0], *argv[1:]])
        return join(["ip", "netns", "exec", names[0], *argv])
    if ns.pids:
        return join(["nsenter", "-t", str(ns.pids[0]), "-n", *argv])
    if ns.mounts:
        return join(["nsenter", f"--net={ns.mounts[0]}", *argv])
    return join(argv) + f"  # inside netns inode {ns.key.ino}"


def ip_in(end: End, host: NsKey, *argv: str) -> str:
    """``ip ARGV`` in the namespace of ``end``."""
    return in_ns(end.ns, host, "ip", *argv)


def show_link(end: End, host: NsKey) -> str:
    """``ip -d link show dev NAME`` for ``end``, in its namespace."""
    return ip_in(end, host, "-d", "link", "show", "dev", end.link.name)
