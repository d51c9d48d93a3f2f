"""Command line: parse, run one command, and map every outcome to one exit status.

Imports stay lazy: `vethpeer --version` must not pay for netlink, rich or any
runtime client.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from . import __version__
from .errors import ExitStatus, NoPrivilege, NotFound, SourceFailed, UsageError, VethpeerError

if TYPE_CHECKING:
    from .model import Report
    from .sources import Options

CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21

EPILOG = """\
exit status: 0 ok, 1 error, 2 usage, 3 target not found, 4 ambiguous target,
5 insufficient privilege, 6 doctor findings, 7 a source failed (--strict), 130 interrupted
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a UsageError like every other failure."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"see: {self.prog} --help")


def _common(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """Options accepted before or after the command (`vethpeer --debug table` = `vethpeer table --debug`)."""

    def d(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--debug", action="store_true", default=d(False), help="show tracebacks")
    parser.add_argument(
        "--timeout", type=float, metavar="S", default=d(3.0), help="per-call timeout for daemons (default 3)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        default=d(False),
        help=f"exit {int(ExitStatus.SOURCE_FAILED)} when a daemon that is present does not answer",
    )
    parser.add_argument(
        "--docker-host", metavar="URL", default=d(None), help="Docker socket (default: $DOCKER_HOST)"
    )
    parser.add_argument(
        "--runtime-endpoint",
        metavar="URL",
        default=d(None),
        help="CRI socket (default: $CONTAINER_RUNTIME_ENDPOINT, else probe the usual ones)",
    )
    kube = parser.add_mutually_exclusive_group()
    kube.add_argument(
        "--kube", dest="kube", action="store_true", default=d(None), help="ask the Kubernetes API"
    )
    kube.add_argument("--no-kube", dest="kube", action="store_false", default=d(None), help="never ask it")
    parser.add_argument(
        "-n", "--namespace", metavar="NS", default=d(None), help="only pods in this namespace"
    )
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", default=d(False), help="all namespaces (the default)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vethpeer",
        description="Which host veth belongs to which container, pod or namespace.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vethpeer {__version__}")
    _common(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    table = commands.add_parser("table", help="every workload interface and its peer (the default)")
    _common(table, defaults=False)
    _output(table)

    which = commands.add_parser("which", help="one target: container, pod, PID, netns, veth, MAC or IP")
    _common(which, defaults=False)
    which.add_argument("target", metavar="TARGET")
    which.add_argument("-q", "--quiet", action="store_true", help="print only host-side veth names")
    _output(which)

    from .oncall import add_commands  # doctor, capture

    add_commands(commands, _common, _output)
    return parser


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("table", "wide", "json"), default="table")
    parser.add_argument("--json", dest="output", action="store_const", const="json", help="same as -o json")


def _check_privilege() -> None:
    """Entering namespaces needs CAP_SYS_ADMIN; reading other processes' ns files CAP_SYS_PTRACE."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            caps = next(int(line.split()[1], 16) for line in status if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return
    missing = [
        name
        for bit, name in ((CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"))
        if not caps >> bit & 1
    ]
    if missing:
        raise NoPrivilege(
            f"missing {' and '.join(missing)} (needed to enter network namespaces and read other processes')",
            hint="run as root: sudo vethpeer ...",
        )


def _options(args: argparse.Namespace) -> Options:
    from .sources import Options

    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    return Options(
        timeout=args.timeout,
        docker_host=args.docker_host,
        runtime_endpoint=args.runtime_endpoint,
        kube=args.kube,
    )


def _gather(args: argparse.Namespace, *, fdb: bool = False, host_ifname: str | None = None) -> Report:
    from . import ovs
    from .inventory import gather
    from .model import SourceState

    _check_privilege()
    options = _options(args)
    report = gather(options, fdb=fdb, debug=args.debug, host_ifname=host_ifname)
    report = ovs.annotate(report, ovs.collect(options.timeout))  # OVS bridges as masters of their ports
    from .output import warnings

    for line in warnings(report):
        print(line, file=sys.stderr)
    if args.strict:
        failed = [s for s in report.sources if s.state not in (SourceState.OK, SourceState.SKIPPED)]
        if failed:
            raise SourceFailed(
                "; ".join(
                    f"{s.name}: {s.state.value}" + (f" ({s.detail})" if s.detail else "") for s in failed
                )
            )
    return report


def _table(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    from . import output

    report = _gather(args, fdb=args.output in ("wide", "json"))
    rows = report.rows
    shared = report.host_network
    if args.namespace:
        rows = tuple(r for r in rows if r.end.workload.namespace == args.namespace)
        shared = tuple(w for w in shared if w.namespace == args.namespace)
    if args.output == "json":
        output.write_json(report, out, rows)
    else:
        output.write_table(report, out, rows, wide=args.output == "wide", host_network=shared)
    return ExitStatus.SUCCESS


def _maybe_ifname(target: str) -> str | None:
    """A target that could be a host interface name (and nothing `which` tries earlier)."""
    if len(target) > 15 or target.isdigit() or any(c in target for c in "/:. "):
        return None
    return target


def _which(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    from . import output
    from .which import resolve

    report = _gather(args, fdb=not args.quiet, host_ifname=_maybe_ifname(args.target))
    match = resolve(report, args.target, namespace=args.namespace)
    if args.quiet:
        names = output.host_veths(match.rows, report.snapshot.host)
        if not names:  # an empty answer would make `tcpdump -i "$(vethpeer which -q X)"` misbehave
            why = "it shares the host network namespace" if match.host_network else "no peer is in the host"
            raise NotFound(f"{args.target} has no host-side veth ({why})")
        for name in names:
            out.write(name + "\n")
    elif args.output == "json":
        output.write_json(report, out, match.rows)
    else:
        if match.rows:  # host-network workloads other than the target's are not the question here
            output.write_table(report, out, match.rows, wide=args.output == "wide", host_network=())
            for line in output.evidence(report, match.rows):  # the bridge's MAC table as a second witness
                out.write(line + "\n")
        for w in match.host_network:
            if w.kind.value == "host":
                out.write(f"{args.target} is in the host network namespace: it has no veth of its own\n")
            else:
                out.write(f"{w.label} shares the host network namespace: it has no veth of its own\n")
        if not match.rows and not match.host_network:
            out.write(f"{args.target}: its network namespace has no interfaces\n")
    return ExitStatus.SUCCESS


def _doctor(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    from .oncall import doctor

    return doctor(args, out, _gather)


def _capture(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    from .oncall import capture

    return capture(args, out, _gather)


COMMANDS = {"table": _table, "which": _which, "doctor": _doctor, "capture": _capture}


def run(argv: Sequence[str] | None = None, out: TextIO | None = None) -> ExitStatus:
    """Parse and run; raises VethpeerError for anything the user should see as one line."""
    from .oncall import split_tcpdump_args

    argv, tcpdump_args = split_tcpdump_args(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    if tcpdump_args:
        args.tcpdump_args = tcpdump_args
    command = args.command or "table"
    if args.command is None:  # bare `vethpeer` = `vethpeer table`
        args.output = "table"
    return COMMANDS[command](args, out or sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """The one place where outcomes become exit statuses and messages."""
    # A short-lived process building thousands of acyclic values: the cyclic collector
    # would only re-scan them (about 5% of a large table's time).
    gc.disable()
    args_debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        return int(run(argv))
    except VethpeerError as error:
        if args_debug:
            raise
        hint = f" ({error.hint})" if error.hint else ""
        print(f"vethpeer: {error}{hint}", file=sys.stderr)
        return int(error.status)
    except KeyboardInterrupt:
        print("vethpeer: interrupted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except BrokenPipeError:  # `vethpeer table | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(ExitStatus.SUCCESS)
    except Exception as error:
        if args_debug:
            raise
        print(
            f"vethpeer: internal error: {type(error).__name__}: {error}"
            " (run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return int(ExitStatus.ERROR)
