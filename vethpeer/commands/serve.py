"""`vethpeer serve`: Prometheus metrics and the JSON documents over HTTP, read-only, loopback by default."""

from __future__ import annotations

import argparse
import ipaddress

from ..environment import Environment
from ..errors import ExitStatus, UsageError, VethpeerError
from . import options

NAME = "serve"
HELP = "serve Prometheus metrics and the JSON documents over HTTP (read-only)"
DEFAULT_PORT = 10098  # = vethpeer.serve.DEFAULT_PORT (not imported: the parser stays stdlib-only)
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
DESCRIPTION = (
    "A long-running HTTP server: GET /metrics (Prometheus text or OpenMetrics), /api/v1/table, "
    "/api/v1/which/TARGET, /api/v1/doctor (the same JSON documents as the commands), /healthz, "
    "/readyz. One walk serves every request that arrives while it runs; its result is reused for "
    f"--min-interval. Listens on {DEFAULT_LISTEN} unless told otherwise: exposing it is a choice. "
    "-n NS serves only Kubernetes namespace NS: its pods' series and findings, its rows in the API "
    "(?namespace= may repeat NS; another namespace gets a 403)."
)
LONG_RUNNING = True


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


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    import io
    import signal
    import threading
    import time
    from dataclasses import replace
    from functools import partial

    from ..collect import check_privilege
    from ..live.model import LiveModel
    from ..serve.api import Service, route
    from ..serve.cache import WalkCache
    from ..serve.engine import Observation, Walker
    from ..serve.http import Server, serve_in_thread
    from ..serve.live import LiveCache

    if args.max_clients < 1:
        raise UsageError("--max-clients must be at least 1")
    check_privilege(env.proc)  # fail now, not on the first scrape
    request = replace(options.request(args, fdb=True), stats=True)
    walker = Walker(request, env, env.warn, namespace=args.namespace)
    cache: WalkCache[Observation] | LiveCache = WalkCache(walker, args.min_interval, then=walker.diagnose)
    if args.live:
        model = LiveModel(request, env.replace(stderr=io.StringIO()), env.warn, resync=args.resync)
        cache = LiveCache(model, walker, env.warn, args.min_interval, namespace=args.namespace)
    service = Service(cache, wait=args.max_wait, proc=env.proc, namespace=args.namespace, now=time.monotonic)
    host, port = args.listen
    try:
        server = Server(
            (host, port),
            partial(route, service),
            env.warn,
            max_clients=args.max_clients,
            access_log=args.access_log,
        )
    except OSError as error:
        raise ServeFailed(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        cache.warm()
        serve_in_thread(server)
        shown = f"[{host}]" if ":" in host else host
        scope = f" (only Kubernetes namespace {args.namespace})" if args.namespace else ""
        env.warn(f"vethpeer serve: listening on http://{shown}:{server.server_address[1]}/{scope}")
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        if isinstance(cache, LiveCache):
            cache.model.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    env.warn("vethpeer serve: stopped")
    return ExitStatus.SUCCESS
