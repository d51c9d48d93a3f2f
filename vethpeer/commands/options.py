"""Options shared by the commands, and turning parsed arguments into a gather request."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import ExitStatus

if TYPE_CHECKING:
    from ..collect import Request

DEFAULT_TIMEOUT = 3.0


def positive_seconds(text: str) -> float:
    """argparse type: a positive number of seconds (a usage error otherwise, before any privilege check)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: '{text}'") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def add_common(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Options accepted before or after the command (`vethpeer --debug table` = `vethpeer table --debug`).

    The top-level parser sets the defaults; each command's parser repeats the options
    with SUPPRESS defaults, so a value given before the command is not reset after it.
    """

    def d(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--debug", action="store_true", default=d(False), help="show tracebacks")
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="S",
        default=d(DEFAULT_TIMEOUT),
        help="how long each source (Docker, CRI, Kubernetes API, OVSDB) may take in all (default 3)",
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
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", metavar="NS", default=d(None), help="only pods in this Kubernetes namespace"
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        dest="namespace",
        action="store_const",
        const=None,
        default=d(None),
        help="every Kubernetes namespace (the default; cancels an earlier -n)",
    )


def add_output(parser: argparse.ArgumentParser, formats: Sequence[str] = ("table", "wide", "json")) -> None:
    parser.add_argument(
        "-o", "--output", choices=formats, default=formats[0], help=f"output format (default {formats[0]})"
    )
    parser.add_argument("--json", dest="output", action="store_const", const="json", help="same as -o json")


def add_journal(parser: argparse.ArgumentParser, *, writes: bool = False) -> None:
    from ..journal import DEFAULT_PATH, ENV_VAR

    what = "record every binding in this journal" if writes else "the journal `serve` writes, read-only"
    parser.add_argument(
        "--journal", metavar="PATH", default=None, help=f"{what} (default ${ENV_VAR}, else {DEFAULT_PATH})"
    )


def journal_path(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    from ..journal import DEFAULT_PATH, ENV_VAR

    return str(args.journal or environ.get(ENV_VAR) or DEFAULT_PATH)


def moment(text: str) -> float:
    """argparse type: a time (RFC 3339, -2h / 90m before now, Unix time) as Unix time."""
    import time

    from ..journal.times import parse_when

    try:
        return parse_when(text, time.time())
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {text}")
    return value


def request(args: argparse.Namespace, *, fdb: bool = False, target: str | None = None) -> Request:
    from ..collect import Request
    from ..sources import Options

    return Request(
        options=Options(
            timeout=args.timeout,
            docker_host=args.docker_host,
            runtime_endpoint=args.runtime_endpoint,
            kube=args.kube,
        ),
        fdb=fdb,
        target=target,
        namespace=args.namespace if target is not None else None,
        strict=args.strict,
        debug=args.debug,
    )


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """`vethpeer capture T -- -n icmp`: everything after the first ``--`` is tcpdump's."""
    argv = _relative_times(list(argv))
    if "--" in argv:
        cut = argv.index("--")
        if "capture" in argv[:cut]:
            return argv[:cut], argv[cut + 1 :]
    return argv, []


TIME_OPTIONS = ("--at", "--since", "--until")


def _relative_times(argv: list[str]) -> list[str]:
    """`--at -2h` as `--at=-2h`: argparse would take ``-2h`` for an option."""
    joined: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in TIME_OPTIONS and i + 1 < len(argv) and argv[i + 1][:2].lstrip("-").isdigit():
            joined.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        joined.append(argv[i])
        i += 1
    return joined
