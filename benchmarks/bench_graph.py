#!/usr/bin/env python3
"""Benchmark: `vethpeer graph` at N namespaces, against baselines measured in the same run.

Builds N namespaces (prefix ``vpg``), each eth0 <-> a host veth on one of four Linux bridges
(``ip -batch``), then times, as subprocesses and wall-clock including interpreter start,
best of ``--repeat``:

* ``vethpeer graph -o dot`` (default: doctor's checks on, auto-collapse at this size);
* ``vethpeer graph -o dot --no-collapse`` (every namespace drawn as a cluster);
* ``vethpeer graph -o svg --collapse`` (including Graphviz's layout);
* baseline 1: ``ip -all netns exec ip -j -d link`` plus the host's ``ip -j -d link``
  (the raw links, unpaired, unlabelled, no picture);
* baseline 2: ``plotnetcfg`` (Debian's namespace/veth/bridge grapher, DOT out), if installed.

Each vethpeer output is checked (every lab namespace drawn, or counted in a group) before
its time counts. Everything built is removed afterwards, also on Ctrl-C or SIGTERM.

Needs root. ``python benchmarks/bench_graph.py --sizes 100,1000``.
Targets (issue #12): at N=1000, ``-o dot`` < 1 s, ``-o svg --collapse`` < 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import best, mark, pods_on_bridges, run_once, torn_down  # noqa: E402
from tests.lab import netlab  # noqa: E402
from tests.lab.netlab import HOST  # noqa: E402
from tests.lab.vpg_lab import GraphLab  # noqa: E402

TARGETS = {"dot": 1.0, "svg_collapse": 5.0}
VETHPEER = [sys.executable, "-m", "vethpeer"]
BRIDGES = 4
PLOTNETCFG = ("/usr/sbin/plotnetcfg", "/usr/bin/plotnetcfg")


def build(lab: GraphLab, count: int) -> set[int]:
    """count namespaces spread over BRIDGES host bridges, their eth0s up; returns their inodes."""
    pods = pods_on_bridges(lab, count, BRIDGES)
    # `ip -batch` has no per-line namespace: one `ip -n NS` each (the eth0s must be up, or they are marked)
    for ns in pods.namespaces:
        subprocess.run(["ip", "-n", ns.name or "", "link", "set", "eth0", "up"], check=True)
    return pods.inodes


def check_dot(text: str, inodes: set[int], collapsed: bool) -> None:
    clusters = {int(m) for m in re.findall(r'subgraph "cluster_ns(\d+)"', text)}
    drawn = len(inodes & clusters)
    grouped = sum(int(m) for m in re.findall(r'label="(\d+) workloads', text))
    if collapsed and drawn + grouped < len(inodes):
        raise SystemExit(
            f"wrong picture: {drawn} clusters + {grouped} in groups for {len(inodes)} namespaces"
        )
    if not collapsed and drawn != len(inodes):
        raise SystemExit(f"wrong picture: {drawn} of {len(inodes)} lab namespaces drawn")


def _plotnetcfg(plot: str | None, repeat: int) -> float:
    """plotnetcfg's time, or NaN when it is missing or cannot run here (it enters PID 1's
    mount namespace, which a container refuses: "Cannot change to the root name space")."""
    if plot is None:
        return float("nan")
    runs = [run_once([plot]) for _ in range(repeat)]
    if any(r.returncode != 0 for r in runs):
        print(f"plotnetcfg: exit {runs[0].returncode}, no baseline from it", file=sys.stderr)
        return float("nan")
    return min(r.wall for r in runs)


def measure(count: int, repeat: int, baseline_repeat: int) -> dict[str, float]:
    with torn_down(GraphLab()) as lab:
        started = time.perf_counter()
        inodes = build(lab, count)
        figures: dict[str, float] = {"n": count, "build": time.perf_counter() - started}
        run_once([*VETHPEER, "graph", "-o", "dot"])  # warm-up: the kernel settles after the build
        for key, args, collapsed in (
            ("dot", ["graph", "-o", "dot"], count > 40),
            ("dot_full", ["graph", "-o", "dot", "--no-collapse"], False),
        ):
            figures[key], rss, runs = best([[*VETHPEER, *args]], repeat)
            check_dot(runs[0].stdout, inodes, collapsed)
            figures[f"{key}_rss_mb"] = rss / 1024
        figures["svg_collapse"], rss, runs = best([[*VETHPEER, "graph", "-o", "svg", "--collapse"]], repeat)
        if "workloads" not in runs[0].stdout or not runs[0].stdout.lstrip().startswith("<?xml"):
            raise SystemExit("the SVG has no collapsed group")
        figures["svg_rss_mb"] = rss / 1024
        figures["ip"], _, _ = best(
            [["ip", "-all", "netns", "exec", "ip", "-j", "-d", "link"], ["ip", "-j", "-d", "link"]],
            repeat,
        )
        plot = shutil.which("plotnetcfg") or (
            "/usr/sbin/plotnetcfg" if os.path.exists("/usr/sbin/plotnetcfg") else None
        )
        figures["plotnetcfg"] = _plotnetcfg(plot, baseline_repeat)
        figures["namespaces"] = len(netlab.ip_json(HOST, "netns", "list"))
        return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000", help="comma-separated N (default 100,1000)")
    parser.add_argument("--repeat", type=int, default=3, help="best of R runs (default 3)")
    parser.add_argument(
        "--baseline-repeat", type=int, default=1, help="best of R runs of the baselines (default 1: slow)"
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_graph: needs root (it builds network namespaces)", file=sys.stderr)
        return 5
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "vethpeer")], check=True)
    results = []
    try:
        for count in [int(n) for n in args.sizes.split(",") if n]:
            print(f"N={count}: building and timing ...", file=sys.stderr, flush=True)
            results.append(measure(count, args.repeat, args.baseline_repeat))
    except KeyboardInterrupt:
        print("bench_graph: interrupted; everything built was removed", file=sys.stderr)
        return 130
    uname = os.uname().release
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, kernel {uname}; best of {args.repeat}\n")
    print(
        "| N | namespaces on host | `graph -o dot` (s) | `-o dot --no-collapse` (s) "
        "| `-o svg --collapse` (s) | `ip -j -d link` everywhere (s) | plotnetcfg (s) "
        "| dot / ip | dot --no-collapse / plotnetcfg |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        cells = [f"{r['n']:.0f}", f"{r['namespaces']:.0f}"]
        cells += [f"{r[k]:.3f}" for k in ("dot", "dot_full", "svg_collapse", "ip", "plotnetcfg")]
        cells += [f"{r['dot'] / r['ip']:.2f}x", f"{r['dot_full'] / r['plotnetcfg']:.2f}x"]
        print("| " + " | ".join(cells) + " |")
    top = max(results, key=lambda r: r["n"]) if results else None
    if top is not None:
        checks = [
            f"-o dot {top['dot']:.3f} s (< {TARGETS['dot']} s: {mark(top['dot'] < TARGETS['dot'])})",
            f"--no-collapse {top['dot_full']:.3f} s "
            f"(< {TARGETS['dot']} s: {mark(top['dot_full'] < TARGETS['dot'])})",
            f"-o svg --collapse {top['svg_collapse']:.3f} s "
            f"(< {TARGETS['svg_collapse']} s: {mark(top['svg_collapse'] < TARGETS['svg_collapse'])})",
            f"peak RSS {max(top['dot_full_rss_mb'], top['svg_rss_mb']):.0f} MB",
        ]
        print(f"\nat N={top['n']:.0f}: " + ", ".join(checks))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
