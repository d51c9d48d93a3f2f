#!/usr/bin/env python3
"""Benchmark: `vethpeer serve` at N namespaces, against baselines measured in the same run.

Builds N namespaces (prefix ``vps``), each with a veth to one bridge, starts `vethpeer serve`
on 127.0.0.1 (port 19400-19499), and measures:

* ``/metrics`` from a fresh walk (the result older than --min-interval), median of --repeat;
  baseline: the one-shot `vethpeer table --json` (a fresh process and walk each time);
* ``/metrics`` from the cache; baseline: a real node_exporter's ``/metrics`` (netdev only) on the
  same host, which lists the same N host veths;
* 100 concurrent scrapes (all must be 200), total wall time, cached and right after expiry;
* idle CPU of `serve` over --idle seconds without requests (utime+stime from /proc);
* RSS after 100 scrapes and after --scrapes (default 10,000);
* ``/metrics`` from the cache over TLS with basic auth (``--web-config-file``: an ECDSA P-256
  certificate, an ``htpasswd -B`` cost-10 hash), each scrape a new connection and a full
  handshake as our server closes every connection; beside it, plain HTTP from the same run
  (the figure above), and the same scrape resuming a TLS session (a client that caches them);
* `kubectl vethpeer table -A` across --nodes (default 50) simulated nodes: a stand-in API server
  (tests/lab/kube_cluster.py; no kube-apiserver can run here) whose pod proxy forwards to one
  real `vethpeer serve` per node; baseline: the same plugin asking one node (`--node`).

``--churn R``: instead, `serve` walking on demand and `serve --live` under R namespaces created and
removed a minute; ``--older TREE`` adds `serve --live` run from an older checkout (e.g.
``git archive main | tar -x -C /tmp/old``), so a change is measured against it in the same run.

Needs root. ``python benchmarks/bench_serve.py --size 1000``. Targets (issue 10, 2 cores):
fresh < 0.5 s, cached < 20 ms, 100 concurrent < 2 s, idle CPU ~ 0, RSS flat; table -A at 50 nodes < 3 s.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.lab.serve_lab import BridgeLab, free_port, ip_batch, serve, wait_ready  # noqa: E402
from vethpeer.agent.live import DEMAND  # noqa: E402

TARGETS = {"fresh": 0.5, "cached": 0.020, "concurrent": 2.0, "plugin": 3.0, "tls": 0.030}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


PROMETHEUS_HEADERS = {  # what Prometheus 2.42 sends
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}


def scrape(port: int, path: str = "/metrics") -> tuple[int, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=PROMETHEUS_HEADERS)
        response = conn.getresponse()
        return response.status, len(response.read())
    finally:
        conn.close()


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def node_exporter() -> Iterator[int]:
    port = free_port(19450)
    process = subprocess.Popen(
        [
            "/usr/bin/prometheus-node-exporter",
            f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults",
            "--collector.netdev",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                scrape(port)
                break
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def tls_phase(interval: float, repeat: int) -> tuple[float, float, float]:
    """(median full-handshake scrape, median resumed scrape, first scrape: bcrypt not cached yet)."""
    import ssl

    from tests.lab.tls_lab import basic, client_context, htpasswd_hash, pki, secured

    with pki() as made:
        config = {
            "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
            "basic_auth_users": {"prometheus": htpasswd_hash("prometheus", "bench", cost=10)},
        }
        headers = {**PROMETHEUS_HEADERS, **basic("prometheus", "bench")}
        context = client_context(made.path("ca.crt"))
        with secured(made, config, "--min-interval", str(interval * 1000), "--no-kube") as served:
            session: list[ssl.SSLSession | None] = [None]

            def tls_scrape(resume: bool = False) -> None:
                conn = http.client.HTTPSConnection("127.0.0.1", served.port, context=context, timeout=30)
                try:
                    if resume and session[0] is not None:  # what http.client's connect() does, resuming
                        raw = socket.create_connection(("127.0.0.1", served.port), timeout=30)
                        conn.sock = context.wrap_socket(raw, server_hostname="127.0.0.1", session=session[0])
                    conn.request("GET", "/metrics", headers=headers)
                    sock = conn.sock  # http.client lets go of it when the server closes
                    assert isinstance(sock, ssl.SSLSocket)
                    response = conn.getresponse()
                    assert response.status == 200, response.status
                    assert not resume or sock.session_reused, "the server resumed the session"
                    session[0] = sock.session  # before the body: http.client closes the socket after it
                    response.read()
                finally:
                    conn.close()

            first = timed(tls_scrape)
            full = [timed(tls_scrape) for _ in range(repeat * 4)]
            tls_scrape()
            resumed = [timed(lambda: tls_scrape(resume=True)) for _ in range(repeat * 4)]
    return statistics.median(full), statistics.median(resumed), first


def concurrent(port: int, count: int = 100) -> tuple[float, list[int]]:
    with ThreadPoolExecutor(count) as pool:
        start = time.perf_counter()
        statuses = [s for s, _n in pool.map(lambda _: scrape(port), range(count))]
        return time.perf_counter() - start, statuses


def plugin_phase(nodes: int, repeat: int) -> tuple[float, float, int]:
    """(median table -A, median table --node, rows) over ``nodes`` simulated nodes."""
    from tests.lab.kube_cluster import agent_pod, cluster

    with contextlib.ExitStack() as stack:
        api = stack.enter_context(cluster(nodes=[f"node-{i}" for i in range(nodes)]))
        api.pods += [agent_pod(f"node-{i}", i) for i in range(nodes)]
        started = [
            stack.enter_context(serve("--no-kube", "--min-interval", "3600", ready=False))
            for _ in range(nodes)
        ]
        for i, served in enumerate(started):
            wait_ready(served, 300)
            api.backends[f"vethpeer-{i:05x}"] = served.port
        kubeconfig = stack.enter_context(api.kubeconfig())
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "vethpeer.kubectl.plugin", *args, "--kubeconfig", kubeconfig],
                capture_output=True, text=True, cwd=ROOT, env=env, check=True,
            )  # fmt: skip

        run("table", "-A")  # every agent has rendered its table once
        every, one, rows = [], [], 0
        for _ in range(repeat):
            start = time.perf_counter()
            done = run("table", "-A")
            every.append(time.perf_counter() - start)
            rows = len(done.stdout.splitlines()) - 1
            assert not done.stderr.strip(), done.stderr
            one.append(timed(lambda: run("table", "--node", "node-0")))
        return statistics.median(every), statistics.median(one), rows


class Churn:
    """Namespaces (``vqg-<tag>-c*``, each with a veth on ``bridge``) created and removed at ``per_minute``,
    ``alive`` at a time, from a thread; ``probe()`` adds one more and says when it was made."""

    def __init__(self, bridge: str, per_minute: float, alive: int = 10) -> None:
        self.bridge, self.gap, self.alive = bridge, 60.0 / per_minute, alive
        self.tag = os.urandom(2).hex()
        self.count = 0
        self.made: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _add(self, stem: str) -> tuple[str, str]:
        ns, veth = f"vqg-{self.tag}-{stem}", f"vqg{self.tag}{stem}"
        self.made.append(ns)
        ip_batch(
            [
                f"netns add {ns}",
                f"link add {veth} type veth peer name eth0 netns {ns}",
                f"link set {veth} master {self.bridge} up",
            ]
        )
        return ns, veth

    def _run(self) -> None:
        live: list[str] = []
        due = time.monotonic()
        while not self.stop.is_set():
            self.count += 1
            live.append(self._add(f"c{self.count}")[0])
            if len(live) > self.alive:
                ip_batch([f"netns del {live.pop(0)}"])
            due += self.gap
            self.stop.wait(max(0.0, due - time.monotonic()))

    def probe(self, number: int) -> tuple[str, str, float]:
        ns, veth = self._add(f"p{number}")
        return ns, veth, time.perf_counter()

    def __enter__(self) -> Churn:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        ip_batch([f"netns del {ns}" for ns in self.made if os.path.exists(f"/run/netns/{ns}")] or ["help"])


def seen(port: int, device: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        return f'device="{device}"'.encode() in conn.getresponse().read()
    finally:
        conn.close()


def visibility(port: int, churn: Churn, probes: int) -> tuple[list[float], list[float], list[float]]:
    """Seconds until a new veth is in /metrics; after its namespace is deleted, until the kernel
    has destroyed the veth (the namespace is torn down asynchronously), and from then until it is
    gone from /metrics."""
    came, destroyed, went = [], [], []
    for i in range(probes):
        ns, veth, made = churn.probe(i)
        while not seen(port, veth) and time.perf_counter() - made < 30:
            time.sleep(0.02)
        came.append(time.perf_counter() - made)
        deleted = time.perf_counter()
        ip_batch([f"netns del {ns}"])
        while os.path.exists(f"/sys/class/net/{veth}") and time.perf_counter() - deleted < 60:
            time.sleep(0.005)
        gone = time.perf_counter()
        destroyed.append(gone - deleted)
        while seen(port, veth) and time.perf_counter() - gone < 30:
            time.sleep(0.02)
        went.append(time.perf_counter() - gone)
    return came, destroyed, went


def top_refresh(rounds: int) -> tuple[list[float], list[float]]:
    """`top`'s refresh in-process, once a second as the live screen does it (the table rendered):
    before, its own Walker's round; after, the live model asked for counters (bench_live.py)."""
    from benchmarks.bench_live import model_refreshes, walker_refreshes

    return walker_refreshes(rounds), model_refreshes(rounds)


def churn_phase(args: argparse.Namespace) -> int:
    """serve (walks on demand) and serve --live, one after the other, under the same churn."""
    results: dict[str, dict[str, float]] = {}
    with BridgeLab(args.size, inside=False) as lab:
        print(
            f"N={args.size} namespaces (lab {lab.tag}), "
            f"churn: {args.churn:g} namespaces/min created and removed"
        )
        for mode in ("walks", "live", *(("older",) if args.older else ())):
            extra = ("--live",) if mode != "walks" else ()
            root = Path(args.older) if mode == "older" else ROOT
            port = free_port(21600, 21699)
            with serve(*extra, "--no-kube", timeout=180, port=port, root=root) as served:
                port, pid = served.port, served.process.pid
                scrape(port)
                # idle: nobody asks (the live model reads counters for DEMAND s after a request)
                time.sleep(2.0 + (DEMAND if mode == "live" else 0.0))
                cpu0, wall0 = cpu_seconds(pid), time.monotonic()
                time.sleep(args.idle)
                idle = (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)
                with Churn(lab.bridge, args.churn) as churn:
                    time.sleep(2.0)
                    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
                    latencies = []
                    while time.monotonic() - wall0 < args.seconds:
                        latencies.append(timed(lambda: scrape(port)))  # noqa: B023
                        time.sleep(max(0.0, args.scrape_every - latencies[-1]))
                    busy = (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)
                    came, destroyed, went = visibility(port, churn, args.probes)
                    tops = top_refresh(args.repeat) if mode == "live" else ([], [])
            results[mode] = {
                "metrics_median": statistics.median(latencies),
                "metrics_max": max(latencies),
                "came_max": max(came),
                "came_median": statistics.median(came),
                "went_max": max(went),
                "destroyed_median": statistics.median(destroyed),
                "went_median": statistics.median(went),
                "cpu": busy,
                "idle": idle,
            }
            for name, times in zip(("walker", "model"), tops, strict=True):
                if times:
                    results[mode][f"top_{name}_max"] = max(times)
                    results[mode][f"top_{name}_median"] = statistics.median(times)
    before, after = results["walks"], results["live"]
    print(
        f"scrapes every {args.scrape_every:g} s for {args.seconds:g} s; {args.probes} probe veths; "
        "before = serve, after = serve --live"
    )
    print(
        row(
            "/metrics under churn (median), live",
            after["metrics_median"],
            "ms",
            before["metrics_median"],
            0.050,
        )
    )
    print(
        row("/metrics under churn (slowest), live", after["metrics_max"], "ms", before["metrics_max"], 0.050)
    )
    print(row("new veth in /metrics (slowest of probes)", after["came_max"], "s", before["came_max"], 1.0))
    print(row("removed veth gone (slowest of probes)", after["went_max"], "s", before["went_max"], 1.0))
    print(
        f"    counted from when the kernel destroyed it: after `ip netns del`, the namespace's teardown "
        f"took {after['destroyed_median']:.2f} s (median) under this churn, before and after alike"
    )
    print(row("serve CPU under churn (fraction of a core)", after["cpu"], "", before["cpu"], 0.10))
    print(row("serve CPU idle (fraction of a core)", after["idle"], "", before["idle"], 0.01))
    print(row("top refresh under churn (slowest)", after["top_model_max"], "s", after["top_walker_max"], 0.3))
    print(
        row(
            "top refresh under churn (median)",
            after["top_model_median"],
            "s",
            after["top_walker_median"],
            0.3,
        )
    )
    print(
        "    baseline: `serve` walking on demand (--min-interval 5); for top, its own Walker as before it "
        "ran on the live model (both beside serve --live, same churn, same run)"
    )
    if args.older:
        older = results["older"]
        print(f"serve --live from {args.older} (baseline) and from this tree, same run:")
        for name, key in (("median", "metrics_median"), ("slowest", "metrics_max")):
            print(row(f"/metrics under churn ({name}), live", after[key], "ms", older[key], 0.050))
        print(row("serve --live CPU under churn", after["cpu"], "", older["cpu"], 0.10))
    return 0


def row(
    name: str, value: float, unit: str, baseline: float | None = None, target: float | None = None
) -> str:
    text = f"{name:44} {value * 1000 if unit == 'ms' else value:10.3f} {unit}"
    if baseline is not None:
        shown = baseline * 1000 if unit == "ms" else baseline
        text += (
            f"   baseline {shown:10.3f} {unit}   ratio {baseline / value if value else float('inf'):6.1f}x"
        )
    if target is not None:
        shown_target = target * 1000 if unit == "ms" else target
        text += f"   target < {shown_target:g} {unit}: {'met' if value < target else 'MISSED'}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scrapes", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--nodes", type=int, default=50, help="simulated nodes for the plugin (0: skip)")
    parser.add_argument("--plugin-lab", type=int, default=0, help="with --size 0: namespaces on every node")
    parser.add_argument("--churn", type=float, default=0, help="namespaces/min: before/after serve --live")
    parser.add_argument("--seconds", type=float, default=20.0, help="with --churn: how long to scrape")
    parser.add_argument(
        "--scrape-every", type=float, default=1.0, help="with --churn: seconds between scrapes"
    )
    parser.add_argument("--probes", type=int, default=5, help="with --churn: veths timed in and out")
    parser.add_argument(
        "--older",
        metavar="TREE",
        help="with --churn: also measure `serve --live` run from this source tree (an older checkout)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    if args.churn:
        return churn_phase(args)
    interval = 2.0
    if args.size == 0:
        with BridgeLab(args.plugin_lab, inside=False) if args.plugin_lab else contextlib.nullcontext():
            every, one, rows = plugin_phase(args.nodes, args.repeat)
        print(row(f"kubectl vethpeer table -A, {args.nodes} nodes", every, "s", one, TARGETS["plugin"]))
        print(f"    baseline: the same plugin asking one node (--node); {rows} rows merged")
        return 0
    with (
        BridgeLab(args.size, inside=False) as lab,
        node_exporter() as node_port,
        serve("--min-interval", str(interval), "--no-kube", "--max-clients", "128", timeout=120) as served,
    ):
        port, pid = served.port, served.process.pid
        print(f"N={args.size} namespaces (lab {lab.tag}), serve on :{port}, pid {pid}")
        status, size = scrape(port)
        assert status == 200
        print(f"/metrics: {size / 1e6:.2f} MB gzipped (scraped as Prometheus does: OpenMetrics, gzip)")

        fresh = []
        for _ in range(args.repeat):
            time.sleep(interval + 0.1)
            fresh.append(timed(lambda: scrape(port)))
        cli = [
            timed(
                lambda: subprocess.run(
                    [sys.executable, "-m", "vethpeer", "table", "--json", "--no-kube"],
                    stdout=subprocess.DEVNULL,
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                    check=True,
                )
            )
            for _ in range(args.repeat)
        ]
        scrape(port)
        cached = [timed(lambda: scrape(port)) for _ in range(args.repeat * 4)]
        node = [timed(lambda: scrape(node_port)) for _ in range(args.repeat * 4)]
        tls_full, tls_resumed, tls_first = tls_phase(interval, args.repeat)
        conc_cached, statuses = concurrent(port)
        assert statuses == [200] * 100, statuses
        time.sleep(interval + 0.1)
        conc_fresh, statuses = concurrent(port)
        assert statuses == [200] * 100, statuses

        time.sleep(0.5)
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle)
        idle = (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)

        rss: dict[int, float] = {}
        done = 0
        with ThreadPoolExecutor(8) as pool:
            for mark in sorted({100, args.scrapes // 10, args.scrapes // 2, args.scrapes}):
                list(pool.map(lambda _: scrape(port), range(mark - done)))
                done = mark
                rss[mark] = rss_mb(pid)
        rss_100, rss_many = rss[100], rss[args.scrapes]

    print(
        row(
            "/metrics, fresh walk (median)",
            statistics.median(fresh),
            "s",
            statistics.median(cli),
            TARGETS["fresh"],
        )
    )
    print("    baseline: one-shot `vethpeer table --json` (new process, one walk)")
    print(
        row(
            "/metrics, from cache (median)",
            statistics.median(cached),
            "ms",
            statistics.median(node),
            TARGETS["cached"],
        )
    )
    print("    baseline: node_exporter /metrics (netdev collector) on the same host")
    plain = statistics.median(cached)
    print(row("/metrics over TLS + basic auth, from cache", tls_full, "ms", plain, TARGETS["tls"]))
    print("    baseline: the plain-HTTP scrape above; each a new connection and full TLS 1.3 handshake")
    print(row("  the same, resuming a TLS session", tls_resumed, "ms", plain, TARGETS["tls"]))
    print(
        f"    the TLS server's first scrape (bcrypt cost 10 not cached yet, its page not yet rendered): "
        f"{tls_first * 1000:.1f} ms"
    )
    print(row("100 concurrent scrapes, cached", conc_cached, "s", target=TARGETS["concurrent"]))
    print(row("100 concurrent scrapes, one walk due", conc_fresh, "s", target=TARGETS["concurrent"]))
    print(row("idle CPU (fraction of one core)", idle, "", target=0.01))
    print(
        f"{f'RSS after 100 / {args.scrapes} scrapes':44} {rss_100:10.1f} MB / {rss_many:.1f} MB"
        f"   growth {rss_many - rss_100:+.1f} MB"
    )
    print("    RSS by scrapes: " + ", ".join(f"{n}: {mb:.1f} MB" for n, mb in rss.items()))
    sys.stdout.flush()
    if args.nodes:  # after the lab is gone: the agents walk this host once each
        every, one, rows = plugin_phase(args.nodes, args.repeat)
        print(row(f"kubectl vethpeer table -A, {args.nodes} nodes", every, "s", one, TARGETS["plugin"]))
        print(f"    baseline: the same plugin asking one node (--node); {rows} rows merged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
