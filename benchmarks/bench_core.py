#!/usr/bin/env python3
"""Benchmark: `vethpeer table --json` against the best stock-iproute2 method, at N namespaces.

For each N it builds N namespaces, each with a veth to one Linux bridge (``ip -batch``,
with the lab prefix ``vpb``), then times, as subprocesses and wall-clock including
interpreter start, best of ``--repeat``:

* ``vethpeer table --json``;
* the baseline: ``ip -all netns exec ip -o link`` plus one host ``ip -o -d link`` (what a
  script must run to have every namespace's links; it still has to pair them itself);
* ``vethpeer which <a host veth>``;

and once ``vethpeer --version``. Peak memory is the child's own ru_maxrss (``wait4``).
Everything built is removed afterwards, also on Ctrl-C or SIGTERM.

Needs root. Run from the repository: ``python benchmarks/bench_core.py --sizes 10,100,1000``.
Targets (issue #2, 2 cores): at N=1000 >= 40x faster than the baseline and < 0.4 s;
``which`` < 0.2 s; ``--version`` < 60 ms; peak < 100 MB. ``completion --list-targets`` (issue
#9): < 0.3 s at N=100. ``--before REV`` also times another git revision's vethpeer in the
same labs, for "no slower than before" (issue #9).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import Pods, best, mark, pods_on_bridges, run_once, torn_down  # noqa: E402
from tests.lab import netlab  # noqa: E402
from tests.lab.netlab import HOST, Lab  # noqa: E402
from tests.tools import search_path  # noqa: E402

TARGETS = {"ratio": 40.0, "table": 0.4, "which": 0.2, "version": 0.06, "rss_mb": 100.0}
VETHPEER = [sys.executable, "-m", "vethpeer"]


def check_table(built: Pods, stdout: str) -> None:
    """The benchmark times a correct answer only: every lab namespace, with its own host veth."""
    rows = [e for e in json.loads(stdout)["interfaces"] if e["netns"]["inode"] in built.inodes]
    peers = {e["peer"]["ifname"] for e in rows if e["peer"]}
    if len(rows) != len(built.inodes) or peers != set(built.host_veths):
        raise SystemExit(
            f"wrong answer: {len(rows)} rows, {len(peers)} distinct peers for {len(built.inodes)}"
        )


def export(revision: str) -> Path:
    """The ``vethpeer`` package of another git revision, in a temporary folder (byte-compiled)."""
    where = Path(tempfile.mkdtemp(prefix="vpb-before-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "vethpeer"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(where / "vethpeer")], check=True)
    return where


def measure(count: int, repeat: int, before: Path | None = None) -> dict[str, float]:
    with torn_down(Lab()) as lab:
        started = time.perf_counter()
        built = pods_on_bridges(lab, count)
        build_s = time.perf_counter() - started
        table, table_rss, runs = best([[*VETHPEER, "table", "--json"]], repeat)
        check_table(built, runs[0].stdout)
        baseline, _, _ = best(
            [["ip", "-all", "netns", "exec", "ip", "-o", "link"], ["ip", "-o", "-d", "link"]], repeat
        )
        target = built.host_veths[count // 2]
        which, which_rss, runs = best([[*VETHPEER, "which", "-q", target]], repeat)
        if runs[0].stdout.split() != [target]:
            raise SystemExit(f"which -q {target} printed {runs[0].stdout!r}")
        completion, _, runs = best([[*VETHPEER, "completion", "--list-targets"]], repeat)
        if target not in runs[0].stdout.split():
            raise SystemExit(f"completion --list-targets did not list {target}")
        earlier = {}
        if before is not None:  # the same lab, the same run: the other revision, interleaved
            for name, argv in (
                ("table", [*VETHPEER, "table", "--json"]),
                ("which", [*VETHPEER, "which", "-q", target]),
            ):
                walls: dict[str, list[float]] = {"before": [], "after": []}
                for _ in range(repeat):  # alternate, so that neither side gets the quieter moments
                    walls["after"].append(run_once(argv).wall)
                    walls["before"].append(run_once(argv, before).wall)
                earlier[f"{name}_before"] = min(walls["before"])
                earlier[f"{name}_after"] = min(walls["after"])
        return {
            "n": count,
            "namespaces": len(netlab.ip_json(HOST, "netns", "list")),
            "build": build_s,
            "table": table,
            "baseline": baseline,
            "ratio": baseline / table,
            "which": which,
            "rss_mb": max(table_rss, which_rss) / 1024,
            "completion": completion,
            **earlier,
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,100,1000", help="comma-separated N (default 10,100,1000)")
    parser.add_argument("--repeat", type=int, default=3, help="best of R runs (default 3)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument(
        "--before", metavar="REV", help="also time the vethpeer of git revision REV in the same labs"
    )
    args = parser.parse_args(argv)
    os.environ["PATH"] = search_path()  # ip, dockerd, ... where the install put them (tests/tools.py)
    if os.geteuid() != 0:
        print("bench_core: needs root (it builds network namespaces)", file=sys.stderr)
        return 5
    sizes = [int(n) for n in args.sizes.split(",") if n]
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "vethpeer")], check=True)
    try:
        version, _, _ = best([[*VETHPEER, "--version"]], max(5, args.repeat))
        python, _, _ = best([[sys.executable, "-c", "pass"]], max(5, args.repeat))
        results = []
        for count in sizes:
            print(f"N={count}: building and timing ...", file=sys.stderr, flush=True)
            results.append(measure(count, args.repeat, export(args.before) if args.before else None))
    except KeyboardInterrupt:
        print("bench_core: interrupted; everything built was removed", file=sys.stderr)
        return 130

    print(
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, kernel {os.uname().release}; "
        f"best of {args.repeat}; wall time includes interpreter start "
        f"(`python -c pass`: {python * 1000:.0f} ms)\n"
    )
    print(
        "| N | namespaces on host | build (s) | `vethpeer table --json` (s) | iproute2 baseline (s) | ratio "
        "| `vethpeer which -q VETH` (s) | `completion --list-targets` (s) | peak RSS (MB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['n']} | {r['namespaces']} | {r['build']:.1f} | {r['table']:.3f} | {r['baseline']:.3f} "
            f"| {r['ratio']:.1f}x | {r['which']:.3f} | {r['completion']:.3f} | {r['rss_mb']:.1f} |"
        )
    if args.before:
        print(f"\nthe same labs, vethpeer of {args.before} (before) and of the working tree (after):\n")
        print("| N | `table --json` before (s) | after (s) | `which -q` before (s) | after (s) |")
        print("|---:|---:|---:|---:|---:|")
        for r in results:
            print(
                f"| {r['n']} | {r['table_before']:.3f} | {r['table_after']:.3f} "
                f"| {r['which_before']:.3f} | {r['which_after']:.3f} |"
            )
    print(
        f"\n`vethpeer --version`: {version * 1000:.0f} ms (target < {TARGETS['version'] * 1000:.0f} ms: "
        f"{mark(version < TARGETS['version'])})"
    )
    top = max(results, key=lambda r: r["n"]) if results else None
    if top is not None:
        t, top_ok = (
            TARGETS,
            {
                "ratio": top["ratio"] >= TARGETS["ratio"],
                "table": top["table"] < TARGETS["table"],
                "which": top["which"] < TARGETS["which"],
                "rss_mb": top["rss_mb"] < TARGETS["rss_mb"],
            },
        )
        checks = [
            f"ratio {top['ratio']:.1f}x (>= {t['ratio']:.0f}x: {mark(top_ok['ratio'])})",
            f"table {top['table']:.3f} s (< {t['table']} s: {mark(top_ok['table'])})",
            f"which {top['which']:.3f} s (< {t['which']} s: {mark(top_ok['which'])})",
            f"peak {top['rss_mb']:.1f} MB (< {t['rss_mb']:.0f} MB: {mark(top_ok['rss_mb'])})",
        ]
        print(f"at N={top['n']:.0f}: " + ", ".join(checks))
    if args.json:
        print(json.dumps({"version": version, "python": python, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
