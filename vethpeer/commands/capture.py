"""`vethpeer capture TARGET [--interface IF | --all] [-- TCPDUMP ARGS]`: tcpdump on a workload's host veth.

TARGET is resolved exactly like `which`. The process then *becomes* tcpdump
(``os.execv``): Ctrl-C, SIGTERM, ``-c N`` and tcpdump's exit status reach the user
unchanged, and nothing of vethpeer stays around while it captures.

Several host-side interfaces (a container on two networks) need a choice:
``--interface`` picks one (by host veth name, or by the workload's own name for it,
``eth1``); ``--all`` captures on all of them with *one* tcpdump, on the ``any``
pseudo-device restricted to their ifindexes by the ``ifindex`` filter primitive
(libpcap >= 1.10, ``LINUX_SLL2`` link type, which also prints the interface name of
each packet). One process keeps exec's guarantees and gives one time-ordered
stream, which ``-w`` can write to one file; one tcpdump per interface would need a
supervisor forwarding signals and merging outputs and files. To put the user's
filter after the ifindex clause, the user's arguments are split with tcpdump's own
option table; ``-i`` and ``-y`` are then refused (the capture device is chosen here).
"""

from __future__ import annotations

import argparse
import getopt
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from ..environment import Environment
from ..errors import ExitStatus, NotFound, UsageError, VethpeerError
from . import options

if TYPE_CHECKING:
    from ..model import NsKey, Report, Row
    from ..targets import Match

NAME = "capture"
HELP = "run tcpdump on TARGET's host-side veth: vethpeer capture TARGET [-- TCPDUMP ARGS]"
DESCRIPTION = (
    "Resolve TARGET like `which` and become `tcpdump -i <host veth> TCPDUMP ARGS`. "
    "Put tcpdump's arguments after `--`."
)
LONG_RUNNING = True  # it becomes tcpdump


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET")
    pick = parser.add_mutually_exclusive_group()
    pick.add_argument("-i", "--interface", metavar="IF", help="the host veth (or the workload's name for it)")
    pick.add_argument(
        "--all", dest="all_interfaces", action="store_true", help="capture on all of TARGET's host veths"
    )
    parser.set_defaults(tcpdump_args=[])


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..collect import gather
    from ..targets import resolve

    report = gather(options.request(args), env)
    match = resolve(report, args.target, namespace=args.namespace, proc=env.proc)
    chosen = choose(match, report, interface=args.interface, everything=args.all_interfaces)
    argv = command(chosen, args.tcpdump_args)
    env.stdout.flush()
    execute(argv, chosen, env)
    return ExitStatus.ERROR  # not reached: execute() either execs or raises


# tcpdump 4.99's options: these take an argument (the others are flags).
SHORT_OPTS = "AbdDefhHIJKlLnNOpqStuUvxX#B:c:C:E:F:G:i:j:M:Q:r:s:T:V:w:W:y:z:Z:"
LONG_OPTS = [
    "buffer-size=", "count", "list-interfaces", "help", "version", "interface=", "monitor-mode",
    "immediate-mode", "time-stamp-type=", "list-time-stamp-types", "time-stamp-precision=", "micro",
    "nano", "dont-verify-checksums", "list-data-link-types", "number", "no-optimize",
    "no-promiscuous-mode", "print", "direction=", "absolute-tcp-sequence-numbers", "snapshot-length=",
    "packet-buffered", "linktype=", "relinquish-privileges=", "print-sampling=", "skip=", "lengths",
    "fp-type",
]  # fmt: skip
CHOSEN_HERE = {"-i", "--interface", "-y", "--linktype"}


class TcpdumpMissing(VethpeerError):
    pass


class Candidate(NamedTuple):
    """A host-side interface to capture on, and the workload interface behind it."""

    ifname: str
    ifindex: int
    row: Row

    @property
    def label(self) -> str:
        return f"{self.ifname} ({self.row.end.workload.label} {self.row.end.link.name})"


def candidates(rows: Sequence[Row], host: NsKey) -> list[Candidate]:
    """The host-side interfaces of rows, once each, in order."""
    from ..targets import host_sides

    return [Candidate(link.name, link.index, row) for link, row in host_sides(rows, host)]


def _no_host_side(match: Match, report: Report) -> VethpeerError:
    from ..shell import in_ns

    if match.host_network:
        names = ", ".join(w.label for w in match.host_network)
        return NotFound(
            f"'{match.target}' is in the host network namespace ({names}): it has no veth of its own",
            hint="capture on the host's own interfaces, e.g. tcpdump -i any",
        )
    inside = [
        in_ns(row.end.ns, report.snapshot.host, "tcpdump", "-i", row.end.link.name)
        for row in match.rows
        if not row.end.link.is_loopback
    ]
    hint = ("capture inside instead: " + "; ".join(inside)) if inside else None
    return NotFound(f"'{match.target}' has no interface with a host-side veth", hint=hint)


def choose(
    match: Match, report: Report, *, interface: str | None = None, everything: bool = False
) -> list[Candidate]:
    """The host-side interfaces to capture on; raises when the choice is the user's."""
    found = candidates(match.rows, report.snapshot.host)
    if not found:
        raise _no_host_side(match, report)
    names = [c.label for c in found]
    if interface is not None:
        picked = [c for c in found if c.ifname == interface]
        picked = picked or [c for c in found if c.row.end.link.name == interface]
        if len(picked) != 1:
            raise UsageError(
                f"'{interface}' is not one of the interfaces of '{match.target}'"
                if not picked
                else f"'{interface}' names several of the interfaces of '{match.target}'",
                hint="choose one of: " + ", ".join(names),
            )
        return picked
    if len(found) > 1 and not everything:
        raise UsageError(
            f"'{match.target}' has {len(found)} host-side interfaces: pick one with --interface, "
            "or capture on all of them with --all",
            hint="choose one of: " + ", ".join(names),
        )
    return found


def split_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(tcpdump options with their values, filter expression words), as tcpdump would see them."""
    try:
        options, expression = getopt.gnu_getopt(list(args), SHORT_OPTS, LONG_OPTS)
    except getopt.GetoptError as error:
        raise UsageError(f"cannot read the tcpdump arguments for --all: {error}") from None
    flat: list[str] = []
    for name, value in options:
        if name in CHOSEN_HERE:
            raise UsageError(f"tcpdump {name} cannot be combined with --all: vethpeer chooses the device")
        flat.append(name)
        takes_value = (name.startswith("--") and f"{name[2:]}=" in LONG_OPTS) or (
            not name.startswith("--") and f"{name[1]}:" in SHORT_OPTS
        )
        if takes_value:
            flat.append(value)
    return flat, expression


def command(chosen: Sequence[Candidate], args: Sequence[str]) -> list[str]:
    """The tcpdump command line."""
    if len(chosen) == 1:
        return ["tcpdump", "-i", chosen[0].ifname, *args]
    options, expression = split_args(args)
    clause = "(" + " or ".join(f"ifindex {c.ifindex}" for c in chosen) + ")"
    if expression:
        clause += " and (" + " ".join(expression) + ")"
    return ["tcpdump", "-i", "any", "-y", "LINUX_SLL2", *options, clause]


def execute(argv: Sequence[str], chosen: Sequence[Candidate], env: Environment) -> None:
    """Become tcpdump. Returns only by raising."""
    import shutil  # here: every command's parser imports this module

    path = shutil.which(argv[0], path=env.environ.get("PATH", os.defpath))
    if path is None:
        raise TcpdumpMissing(
            "tcpdump is not installed (or not in PATH)",
            hint="install it: apt-get install tcpdump / dnf install tcpdump / apk add tcpdump",
        )
    env.warn("vethpeer: capturing on " + ", ".join(c.label for c in chosen))
    env.stdout.flush()
    env.stderr.flush()
    try:
        os.execv(path, list(argv))
    except OSError as error:
        raise VethpeerError(f"cannot run {path}: {error.strerror}") from None
