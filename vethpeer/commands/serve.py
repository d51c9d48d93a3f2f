"""`vethpeer serve`: Prometheus metrics and the JSON documents over HTTP, read-only, loopback by default."""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..environment import Environment
from ..errors import ExitStatus, UsageError, VethpeerError
from . import options

if TYPE_CHECKING:
    from ..journal.record import JournalWriter
    from ..model import Report

NAME = "serve"
HELP = "serve Prometheus metrics and the JSON documents over HTTP (read-only)"
DEFAULT_PORT = 10098  # = vethpeer.agent.DEFAULT_PORT (not imported: the parser stays stdlib-only)
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
DESCRIPTION = (
    "A long-running HTTP server: GET /metrics (Prometheus text or OpenMetrics), /api/v1/table, "
    "/api/v1/which/TARGET, /api/v1/doctor (the same JSON documents as the commands), /healthz, "
    "/readyz. One walk serves every request that arrives while it runs; its result is reused for "
    f"--min-interval. Listens on {DEFAULT_LISTEN} unless told otherwise: exposing it is a choice. "
    "-n NS serves only Kubernetes namespace NS: its pods' series and findings, its rows in the API "
    "(?namespace= may repeat NS; another namespace gets a 403). It records every binding it sees in a "
    "journal (--journal, default /var/lib/vethpeer/journal.sqlite; --no-journal for none), which "
    "`history`, `which --at`, `annotate` and /api/v1/history/TARGET read. "
    "--web-config-file adds TLS and basic auth, in the exporter-toolkit format node_exporter reads; "
    "/healthz and /readyz need no credentials."
)
LONG_RUNNING = True
# serve --live's looks at least this far apart (watch's and the model's default: 0.25 s). Under a
# churn of 200 namespaces a minute the model looks as often as it may; at 0.5 s, half as often
# (2 looks a second: 16% -> 12% of a core in one run), and a veth is still in /metrics within
# about 0.6 s (target < 1 s). What a scrape asks is answered from the latest look either way.
LIVE_GAP = 0.5


class ServeFailed(VethpeerError):
    pass


def listen_address(text: str) -> tuple[str, int]:
    """argparse type: ``ADDR:PORT`` or ``[V6ADDR]:PORT`` (a literal address, not a host name)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"not ADDR:PORT: {text!r}")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an IP address: {host!r} (e.g. 127.0.0.1, 0.0.0.0, [::1])"
        ) from None
    return host, int(port)


def _network(text: str) -> str:
    """argparse type: an IP network (``10.0.0.0/8``, ``192.0.2.1``)."""
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP network: {text!r} (e.g. 10.0.0.1/32)") from None
    return text


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZES = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
          "g": 1024**3, "gb": 1024**3, "gib": 1024**3}  # fmt: skip


def _number_and_unit(text: str) -> tuple[float, str]:
    number = text.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    unit = text[len(number) :].lower()
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value, unit


def duration(text: str) -> float:
    """argparse type: seconds, or a number with s/m/h/d/w (``14d``)."""
    value, unit = _number_and_unit(text)
    if unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 14d, 36h, 90m)")
    return value * _UNITS[unit]


def size(text: str) -> int:
    """argparse type: bytes, or a number with K/M/G (``64M``, powers of 1024)."""
    value, unit = _number_and_unit(text)
    if unit not in _SIZES:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64M, 1G)")
    if value * _SIZES[unit] < 64 * 1024:
        raise argparse.ArgumentTypeError(f"too small for a journal: {text!r} (at least 64K)")
    return int(value * _SIZES[unit])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        type=listen_address,
        default=listen_address(DEFAULT_LISTEN),
        metavar="ADDR:PORT",
        help=f"where to listen (default {DEFAULT_LISTEN}; 0.0.0.0:{DEFAULT_PORT} exposes it)",
    )
    parser.add_argument(
        "--min-interval",
        type=options.positive_seconds,
        default=5.0,
        metavar="S",
        help="reuse a walk's result for this long (default 5)",
    )
    parser.add_argument(
        "--max-wait",
        type=options.positive_seconds,
        default=8.0,
        metavar="S",
        help="longest a request waits for a walk before the last good result answers it, marked "
        "stale (default 8; a Prometheus scrape's own timeout, less 0.5 s, when shorter)",
    )
    parser.add_argument(
        "--max-clients", type=int, default=128, metavar="N", help="connections served at once (default 128)"
    )
    parser.add_argument(
        "--max-per-client",
        type=int,
        default=None,
        metavar="N",
        help="connections one client address may have waiting for their request (handshake, headers); "
        "default an eighth of --max-clients, at least 4",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request on stderr")
    parser.add_argument(
        "--live",
        action="store_true",
        help="answer from a model kept current by the kernel's events (one full walk at start, then "
        "only what changed); counters are read every --min-interval while requests come",
    )
    parser.add_argument(
        "--resync",
        type=options.positive_seconds,
        default=300.0,
        metavar="S",
        help="with --live: a full walk this often checks the model (default 300)",
    )
    options.add_journal(parser, writes=True)
    parser.add_argument("--no-journal", action="store_true", help="record nothing")
    parser.add_argument(
        "--journal-retention",
        type=duration,
        default=14 * 86400.0,
        metavar="DURATION",
        help="forget bindings gone longer ago than this (default 14d)",
    )
    parser.add_argument(
        "--journal-max-size",
        type=size,
        default=64 * 1024 * 1024,
        metavar="SIZE",
        help="prune the oldest bindings past this size (default 64M)",
    )
    parser.add_argument(
        "--web-config-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="TLS and basic auth: the exporter-toolkit web configuration file, as node_exporter's "
        "--web.config.file (re-read when it or its certificates change)",
    )
    kube = parser.add_argument_group("Kubernetes authentication (docs/cluster.md#security)")
    kube.add_argument(
        "--kube-auth",
        action="store_true",
        help="require a bearer token, checked with a TokenReview, and a SubjectAccessReview for what "
        "is asked (get /metrics; get nodes/proxy on this node for /api/v1/...); /healthz and /readyz "
        "stay open",
    )
    kube.add_argument(
        "--kube-auth-kubeconfig",
        metavar="FILE",
        help="the API server for the reviews (default: the pod's service account, else $KUBECONFIG)",
    )
    kube.add_argument(
        "--kube-auth-proxy-cidr",
        action="append",
        default=[],
        type=_network,
        metavar="CIDR",
        help="the API server's address(es): requests from there without credentials are its pod "
        "proxy (kubectl vethpeer), allowed for /api/v1/... only (repeatable; default none)",
    )


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    import io
    import signal
    import threading
    import time
    from dataclasses import replace
    from functools import partial

    from ..agent.api import Service, route
    from ..agent.cache import WalkCache
    from ..agent.engine import Observation, Walker
    from ..agent.http import Server, serve_in_thread
    from ..agent.live import LiveCache
    from ..agent.secure import front, open_web_config
    from ..collect import check_privilege
    from ..live.model import LiveModel
    from ..targets import scoped

    if args.max_clients < 1:
        raise UsageError("--max-clients must be at least 1")
    if args.max_per_client is not None and args.max_per_client < 1:
        raise UsageError("--max-per-client must be at least 1")
    if not args.kube_auth and (args.kube_auth_kubeconfig or args.kube_auth_proxy_cidr):
        raise UsageError("--kube-auth-kubeconfig and --kube-auth-proxy-cidr go with --kube-auth")
    if args.no_journal and args.journal:
        raise UsageError("--journal and --no-journal: choose one")
    web = (
        open_web_config(args.web_config_file, env.warn, kube_auth=args.kube_auth)
        if args.web_config_file
        else None
    )
    check_privilege(env.proc)  # fail now, not on the first scrape
    request = replace(options.request(args, fdb=True), stats=True)
    writer = None if args.no_journal else journal_writer(args, env)
    observe = writer.observe if writer is not None else None
    walker = Walker(request, env, env.warn, namespace=args.namespace, observe=None if args.live else observe)
    cache: WalkCache[Observation] | LiveCache = WalkCache(
        walker, args.min_interval, then=walker.diagnose, log=env.warn, debug=request.debug
    )
    if args.live:
        model = LiveModel(
            request, env.replace(stderr=io.StringIO()), env.warn, resync=args.resync, gap=LIVE_GAP
        )
        if observe is not None:  # the journal records each report the model publishes (as -n cuts it)
            journal = observe
            model.subscribe(lambda report, at: journal(scoped(report, args.namespace), at))
        cache = LiveCache(model, walker, env.warn, args.min_interval, namespace=args.namespace)
        model.subscribe(FrozenAfterFirst())
    service = Service(
        cache,
        wait=args.max_wait,
        proc=env.proc,
        namespace=args.namespace,
        now=time.monotonic,
        journal_path=writer.path if writer is not None else None,
        journal=writer.health if writer is not None else None,
    )
    kube_auth = (
        (args.kube_auth_kubeconfig, args.kube_auth_proxy_cidr, env.environ) if args.kube_auth else None
    )
    try:
        router = front(partial(route, service), service, web, kube_auth, env.warn)
    except ValueError as error:  # --kube-auth's kubeconfig
        raise ServeFailed(str(error)) from None
    host, port = args.listen
    try:
        server = Server(
            (host, port),
            router,
            env.warn,
            max_clients=args.max_clients,
            per_client=args.max_per_client,
            access_log=args.access_log,
            debug=request.debug,
            tls=web.listener if web is not None and web.tls else None,
        )
    except OSError as error:
        raise ServeFailed(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if writer is not None:
            writer.start()
        cache.warm()
        serve_in_thread(server)
        shown = f"[{host}]" if ":" in host else host
        scope = f" (only Kubernetes namespace {args.namespace})" if args.namespace else ""
        scheme = "https" if web is not None and web.tls else "http"
        checked = " (--kube-auth)" if args.kube_auth else " (--web-config-file)" if web is not None else ""
        where = f"{scheme}://{shown}:{server.server_address[1]}/"
        env.warn(f"vethpeer serve: listening on {where}{scope}{checked}")
        if writer is not None:
            env.warn(f"vethpeer serve: recording bindings in {writer.path}")
        while not stop.wait(min(0.5, args.min_interval)):
            if writer is None:
                continue
            if isinstance(cache, LiveCache):  # the model publishes each change: in between, nothing changed
                if cache.model.stats().running and cache.model.latest() is not None:
                    writer.still(time.time())
            else:  # the journal records between scrapes too: a walk every --min-interval
                cache.get(0.0)
    finally:
        server.stop()
        if isinstance(cache, LiveCache):
            cache.model.stop()
        if writer is not None:
            writer.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    env.warn("vethpeer serve: stopped")
    return ExitStatus.SUCCESS


class FrozenAfterFirst:
    """After the model's first walk, what lives on (the model, the page's kept lines, the imports)
    is moved out of the garbage collector's sight (``gc.freeze``): its full collections then look
    only at what changed since, a few ms instead of ~30 at N=1000 (the slowest /metrics under churn).
    Once: ``gc.get_freeze_count()`` walks every frozen object (1-2 ms at N=1000), too much to ask
    at every report."""

    def __init__(self) -> None:
        self.done = False

    def __call__(self, _report: Report, _at: float) -> None:
        if self.done:
            return
        import gc

        self.done = True
        if gc.get_freeze_count() == 0:
            gc.collect()
            gc.freeze()


def journal_writer(args: argparse.Namespace, env: Environment) -> JournalWriter:
    from ..journal.record import JournalWriter, Recorder

    path = os.path.abspath(options.journal_path(args, env.environ))
    return JournalWriter(
        path,
        Recorder(),
        env.warn,
        retention=args.journal_retention,
        max_bytes=args.journal_max_size,
    )
