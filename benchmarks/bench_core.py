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
import shutil
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
from tests.lab.common import busy  # noqa: E402
from tests.lab.netlab import HOST, Lab  # noqa: E402
from tests.tools import search_path  # noqa: E402

TARGETS = {"vs_reference": 1.3, "which_vs_table": 0.5, "version": 0.06, "rss_mb": 100.0}
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


REFERENCE = [sys.executable, str(ROOT / "benchmarks" / "raw_netlink.py")]


def which_targets(lab: Lab, built: Pods) -> dict[str, tuple[str, str]]:
    """`which` targets that name their namespace, each with the host veth `which -q` must print."""
    i = len(built.host_veths) // 2
    veth, ns = built.host_veths[i], built.namespaces[i]
    link = netlab.ip_json(HOST, "link", "show", "dev", veth)[0]
    address = lab.ip4(0, 2)
    lab.addr(netlab.End(ns, "eth0"), address)  # one namespace holds it: `which IP` may focus
    return {
        "veth": (veth, veth),
        "ifindex": (f"if{link['ifindex']}", veth),
        "mac": (link["address"], veth),
        "ip": (address.split("/")[0], veth),
        "netns": (ns.name, veth),
        "path": (f"/run/netns/{ns.name}", veth),
    }


def measure(
    count: int, repeat: int, before: Path | None = None, load: int = 0, iproute2: bool = False
) -> dict[str, float]:
    with torn_down(Lab()) as lab:
        started = time.perf_counter()
        built = pods_on_bridges(lab, count)
        build_s = time.perf_counter() - started
        figures = {"n": count, "namespaces": len(netlab.ip_json(HOST, "netns", "list")), "build": build_s}
        targets = which_targets(lab, built)
        for phase, loops in (("", 0), ("load_", load)) if load else (("", 0),):
            with busy(loops):
                found = timed(built, targets, count, repeat, iproute2)
                figures.update({phase + k: v for k, v in found.items()})
        if before is not None:
            figures.update(earlier(built, repeat, before, targets["mac"][0]))
        return figures


def timed(
    built: Pods, targets: dict[str, tuple[str, str]], count: int, repeat: int, iproute2: bool
) -> dict[str, float]:
    """table, the raw-netlink reference interleaved with it, which per target kind, completion."""
    walls: dict[str, list[float]] = {"table": [], "reference": []}
    table_rss = 0
    for _ in range(repeat):  # interleaved, so that neither gets the quieter moments
        run = run_once([*VETHPEER, "table", "--json"])
        check_table(built, run.stdout)
        walls["table"].append(run.wall)
        table_rss = max(table_rss, run.maxrss_kb)
        ref = run_once(REFERENCE)
        if len(json.loads(ref.stdout)["interfaces"]) < count:
            raise SystemExit("the raw-netlink reference missed namespaces")
        walls["reference"].append(ref.wall)
    table, reference = min(walls["table"]), min(walls["reference"])
    baseline = float("nan")
    if iproute2:  # 13 s a run at N=1000: only when asked
        baseline, _, _ = best(
            [["ip", "-all", "netns", "exec", "ip", "-o", "link"], ["ip", "-o", "-d", "link"]], repeat
        )
    whiches, which_rss = {}, 0
    for kind, (target, veth) in targets.items():
        whiches[f"which_{kind}"], rss, runs = best([[*VETHPEER, "which", "-q", target]], repeat)
        which_rss = max(which_rss, rss)
        if runs[0].stdout.split() != [veth]:
            raise SystemExit(f"which -q {target} printed {runs[0].stdout!r}")
    target = built.host_veths[count // 2]
    completion, _, runs = best([[*VETHPEER, "completion", "--list-targets"]], repeat)
    if target not in runs[0].stdout.split():
        raise SystemExit(f"completion --list-targets did not list {target}")
    return {
        "table": table,
        "reference": reference,
        "vs_reference": table / reference,
        "baseline": baseline,
        "ratio": baseline / table,
        "which": max(whiches.values()),
        **whiches,
        "rss_mb": max(table_rss, which_rss) / 1024,
        "completion": completion,
    }


def earlier(built: Pods, repeat: int, before: Path, mac: str) -> dict[str, float]:
    """The same lab, the same run: the other revision, interleaved."""
    found = {}
    target = built.host_veths[len(built.host_veths) // 2]
    for name, argv in (
        ("table", [*VETHPEER, "table", "--json"]),
        ("which", [*VETHPEER, "which", "-q", target]),
        ("which_mac", [*VETHPEER, "which", "-q", mac]),
    ):
        walls: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(repeat):  # alternate, so that neither side gets the quieter moments
            walls["after"].append(run_once(argv).wall)
            walls["before"].append(run_once(argv, before).wall)
        found[f"{name}_before"] = min(walls["before"])
        found[f"{name}_after"] = min(walls["after"])
    return found


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
    parser.add_argument(
        "--load", type=int, default=0, metavar="K", help="time everything again beside K busy loops"
    )
    parser.add_argument("--iproute2", action="store_true", help="also time the iproute2 baseline (slow)")
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
            before = export(args.before) if args.before else None
            try:
                results.append(measure(count, args.repeat, before, args.load, args.iproute2))
            finally:
                if before is not None:  # the exported revision: a temporary folder per size
                    shutil.rmtree(before, ignore_errors=True)
    except KeyboardInterrupt:
        print("bench_core: interrupted; everything built was removed", file=sys.stderr)
        return 130

    print(
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, kernel {os.uname().release}; "
        f"best of {args.repeat}; wall time includes interpreter start "
        f"(`python -c pass`: {python * 1000:.0f} ms)\n"
    )
    for phase, title in (("", "quiet"), ("load_", f"beside {args.load} busy loops")):
        if not any(phase + "table" in r for r in results):
            continue
        print(f"{title}:\n")
        print(
            "| N | namespaces | `table --json` (s) | raw netlink (s) | ratio | iproute2 (s) "
            "| `which -q` veth / ifN / MAC / IP / netns / path (s) | `completion --list-targets` (s) "
            "| peak RSS (MB) |"
        )
        print("|---:|---:|---:|---:|---:|---:|---|---:|---:|")
        for r in results:
            w = " / ".join(
                f"{r[phase + 'which_' + k]:.3f}" for k in ("veth", "ifindex", "mac", "ip", "netns", "path")
            )
            print(
                f"| {r['n']} | {r['namespaces']} | {r[phase + 'table']:.3f} | {r[phase + 'reference']:.3f} "
                f"| {r[phase + 'vs_reference']:.2f}x | {r[phase + 'baseline']:.3f} | {w} "
                f"| {r[phase + 'completion']:.3f} | {r[phase + 'rss_mb']:.1f} |"
            )
        print()
    if args.before:
        print(f"\nthe same labs, vethpeer of {args.before} (before) and of the working tree (after):\n")
        print(
            "| N | `table --json` before (s) | after (s) | `which -q VETH` before (s) | after (s) "
            "| `which -q MAC` before (s) | after (s) |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print(
                f"| {r['n']} | {r['table_before']:.3f} | {r['table_after']:.3f} "
                f"| {r['which_before']:.3f} | {r['which_after']:.3f} "
                f"| {r['which_mac_before']:.3f} | {r['which_mac_after']:.3f} |"
            )
    print(
        f"\n`vethpeer --version`: {version * 1000:.0f} ms (target < {TARGETS['version'] * 1000:.0f} ms: "
        f"{mark(version < TARGETS['version'])})"
    )
    top = max(results, key=lambda r: r["n"]) if results else None
    for phase in ("", "load_") if top is not None else ():
        if phase + "table" not in top:
            continue
        ratio, which = top[phase + "vs_reference"], top[phase + "which"] / top[phase + "table"]
        checks = [
            f"table {ratio:.2f}x the raw-netlink reference (<= {TARGETS['vs_reference']}x: "
            f"{mark(ratio <= TARGETS['vs_reference'])})",
            f"slowest which {which:.2f}x table (<= {TARGETS['which_vs_table']}x: "
            f"{mark(which <= TARGETS['which_vs_table'])})",
            f"peak {top[phase + 'rss_mb']:.1f} MB (< {TARGETS['rss_mb']:.0f} MB: "
            f"{mark(top[phase + 'rss_mb'] < TARGETS['rss_mb'])})",
        ]
        print(f"at N={top['n']:.0f}{' under load' if phase else ''}: " + ", ".join(checks))
    if args.json:
        print(json.dumps({"version": version, "python": python, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
