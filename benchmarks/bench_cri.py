#!/usr/bin/env python3
"""Benchmark: what asking a CRI runtime with 100 pods adds to `table`, `which POD` and
`completion --list-targets` (issue 18).

The CRI lab's own containerd (tests/lab/cri_lab.py: prefix ``vpk``, its own socket, the CNI
bridge plugin) runs ``--pods`` pod sandboxes, each with a namespace and a veth on the CNI
bridge. Timed as subprocesses, interleaved run by run, best of ``--repeat``:

* ``table --json`` asking that runtime (``CONTAINER_RUNTIME_ENDPOINT``), and not asking any (an
  endpoint that does not exist: the source gives up at once, nothing else changes);
* the raw-netlink reference (benchmarks/raw_netlink.py: links and addresses, no names);
* ``which POD`` (a pod by name) and ``completion --list-targets``, asking the runtime.

Targets: CRI adds at most 50 ms to `table`; `which POD` at most 0.6x `table`;
`completion --list-targets` under 0.3 s. Needs root and the CRI lab's binaries.
``python benchmarks/bench_cri.py --pods 100 --repeat 5``; ``--before REV`` also times the
vethpeer of git revision REV (`table --json` and `which POD`) in the same runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_core import REFERENCE, VETHPEER, export  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    as_root,
    mark,
    pods_on_bridges,
    run_once,
    torn_down,
)
from tests.lab.common import busy  # noqa: E402
from tests.lab.cri_lab import cri_lab  # noqa: E402
from tests.lab.netlab import Lab  # noqa: E402


class Plain(Lab):
    """The plain namespaces of ``--namespaces``."""

    prefix = "vqd"


TARGETS = {"added": 0.050, "which_vs_table": 0.6, "completion": 0.3}
NOWHERE = "unix:///run/vpk-bench-no-runtime.sock"


def measure(
    endpoint: str, pods: int, pod_name: str, repeat: int, before: Path | None = None
) -> dict[str, float]:
    runs = {  # CONTAINER_RUNTIME_ENDPOINT, as a node would have it (completion has no option for it)
        "table": ([*VETHPEER, "table", "--json"], endpoint, ROOT),
        "table_no_cri": ([*VETHPEER, "table", "--json"], NOWHERE, ROOT),
        "reference": (REFERENCE, NOWHERE, ROOT),
        "which": ([*VETHPEER, "which", pod_name], endpoint, ROOT),
        "completion": ([*VETHPEER, "completion", "--list-targets"], endpoint, ROOT),
    }
    if before is not None:
        runs["table_before"] = ([*VETHPEER, "table", "--json"], endpoint, before)
        runs["table_no_cri_before"] = ([*VETHPEER, "table", "--json"], NOWHERE, before)
        runs["which_before"] = ([*VETHPEER, "which", pod_name], endpoint, before)
    walls: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):  # interleaved: no command gets the quieter moments
        for name, (argv, where, code) in runs.items():
            os.environ["CONTAINER_RUNTIME_ENDPOINT"] = where
            run = run_once(argv, code)
            if run.returncode != 0:
                raise SystemExit(f"{' '.join(argv)}: exit {run.returncode}")
            if name.startswith("table") and where == endpoint:
                named = [e for e in json.loads(run.stdout)["interfaces"] if e["workload"]["kind"] == "pod"]
                if len(named) < pods:
                    raise SystemExit(f"table named {len(named)} of {pods} pods")
            if name.startswith("which") and pod_name not in run.stdout:
                raise SystemExit(f"which {pod_name} did not name it: {run.stdout!r}")
            walls[name].append(run.wall)
    best = {name: min(found) for name, found in walls.items()}
    best["added"] = best["table"] - best["table_no_cri"]
    # Under load the best runs are the lucky ones: the medians say what a run usually costs.
    best["added_median"] = statistics.median(walls["table"]) - statistics.median(walls["table_no_cri"])
    best["which_vs_table"] = best["which"] / best["table"]
    if before is not None:
        best["added_before"] = best["table_before"] - best["table_no_cri_before"]
        best["which_vs_table_before"] = best["which_before"] / best["table_before"]
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=100, help="pod sandboxes (default 100)")
    parser.add_argument("--repeat", type=int, default=5, help="best of R (default 5)")
    parser.add_argument("--load", type=int, default=0, metavar="K", help="again beside K busy loops")
    parser.add_argument("--before", metavar="REV", help="also time the vethpeer of git revision REV")
    parser.add_argument(
        "--namespaces",
        type=int,
        default=0,
        metavar="K",
        help="K more namespaces beside the pods, each with a veth on a bridge (prefix vqd): a node "
        "where the walk, not the sources, is the longer part of a table",
    )
    args = parser.parse_args(argv)
    if not as_root("bench_cri"):
        return 5
    before = export(args.before) if args.before else None
    results = []
    with cri_lab() as lab, torn_down(Plain()) as plain:
        started = time.perf_counter()
        for i in range(args.pods):
            lab.run_pod(f"vpk-bench-{i:03d}", "vpk-bench")
        if args.namespaces:
            pods_on_bridges(plain, args.namespaces)
        print(f"{args.pods} pods in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        name = f"vpk-bench-{args.pods // 2:03d}"
        for title, loops in (("quiet", 0), (f"beside {args.load} busy loops", args.load)):
            if title != "quiet" and not loops:
                continue
            with busy(loops):
                figures = measure(lab.containerd.endpoint, args.pods, name, args.repeat, before)
                results.append((title, figures))
    beside = f" and {args.namespaces} plain namespaces" if args.namespaces else ""
    print(f"{args.pods} pods{beside}, best of {args.repeat}, wall time including interpreter start\n")
    print(
        "| | `table --json` (s) | without CRI (s) | CRI adds (ms) | raw netlink (s) | `which POD` (s) "
        "| which / table | `completion --list-targets` (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for title, r in results:
        print(
            f"| {title} | {r['table']:.3f} | {r['table_no_cri']:.3f} | {r['added'] * 1000:.0f} "
            f"| {r['reference']:.3f} | {r['which']:.3f} | {r['which_vs_table']:.2f}x "
            f"| {r['completion']:.3f} |"
        )
    for title, r in results:
        print(
            f"{title}: CRI adds {r['added'] * 1000:.0f} ms (<= 50: {mark(r['added'] <= TARGETS['added'])}; "
            f"medians: {r['added_median'] * 1000:.0f} ms), "
            f"which {r['which_vs_table']:.2f}x table (<= 0.6: {mark(r['which_vs_table'] <= 0.6)}), "
            f"completion {r['completion']:.3f} s (< 0.3: {mark(r['completion'] < TARGETS['completion'])})"
        )
    if before is not None:
        print(f"\nthe same runs, vethpeer of {args.before} (before) and of the working tree (after):\n")
        print(
            "| | `table --json` before / after (s) | CRI adds before / after (ms) "
            "| `which POD` before / after (s) | which / table before / after |"
        )
        print("|---|---:|---:|---:|---:|")
        for title, r in results:
            print(
                f"| {title} | {r['table_before']:.3f} / {r['table']:.3f} "
                f"| {r['added_before'] * 1000:.0f} / {r['added'] * 1000:.0f} "
                f"| {r['which_before']:.3f} / {r['which']:.3f} "
                f"| {r['which_vs_table_before']:.2f}x / {r['which_vs_table']:.2f}x |"
            )
        shutil.rmtree(before, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
