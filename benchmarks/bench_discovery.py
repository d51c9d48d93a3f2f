#!/usr/bin/env python3
"""Benchmark: namespace discovery at 200 and at 2,000 nsfs mounts (issue 18: within 2x).

A node's mount table holds many more nsfs mounts than it has namespaces (each pod's is
mounted by the runtime and propagated into other mount namespaces). So the lab is
``--namespaces`` ``ip netns`` namespaces (prefix ``vpb``), and for each size in ``--mounts``
that many nsfs mounts in all: the extra ones are bind mounts of the same namespace files in
a temporary folder. ``vethpeer.netns.discover()`` is timed in this process, best of
``--repeat``; ``--namespaces-too`` times it again with as many namespaces as mounts.
Everything built is removed afterwards, also on Ctrl-C. Needs root.
``python benchmarks/bench_discovery.py --mounts 200,2000``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import mark, torn_down  # noqa: E402
from tests.lab.netlab import Lab  # noqa: E402
from tests.tools import search_path  # noqa: E402
from vethpeer.netns import discover  # noqa: E402

TARGET = 2.0
MS_BIND, MNT_DETACH = 4096, 2
libc = ctypes.CDLL(None, use_errno=True)


def bind_mounts(sources: Sequence[str], count: int, folder: str) -> list[str]:
    """``count`` bind mounts of the given namespace files, round robin, under ``folder``."""
    made = []
    for i in range(count):
        target = os.path.join(folder, f"m{i}")
        open(target, "w").close()
        if libc.mount(sources[i % len(sources)].encode(), target.encode(), None, MS_BIND, None) != 0:
            raise OSError(ctypes.get_errno(), f"mount --bind onto {target}")
        made.append(target)
    return made


def mounts() -> int:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as table:
        return sum(" - nsfs " in line for line in table)


def measure(namespaces: int, total: int, repeat: int) -> tuple[int, float]:
    """Best discover() wall with ``namespaces`` namespaces and ``total`` nsfs mounts of them."""
    with torn_down(Lab()) as lab, tempfile.TemporaryDirectory(prefix="vpb-mounts-") as folder:
        made = lab.netns_many([f"{i:04d}" for i in range(namespaces)])
        extra: list[str] = []
        try:
            extra = bind_mounts([f"/run/netns/{ns.name}" for ns in made], total - namespaces, folder)
            walls = []
            for _ in range(repeat):
                started = time.perf_counter()
                found = discover()
                walls.append(time.perf_counter() - started)
            if sum(1 for ns in found.namespaces if ns.mounts) < namespaces:
                raise SystemExit(f"discovery missed namespaces at {total} mounts")
            return mounts(), min(walls)
        finally:
            for target in extra:
                libc.umount2(target.encode(), MNT_DETACH)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mounts", default="200,2000", help="comma-separated nsfs mount counts")
    parser.add_argument("--namespaces", type=int, default=200, help="namespaces (default 200)")
    parser.add_argument("--namespaces-too", action="store_true", help="also: as many namespaces as mounts")
    parser.add_argument("--repeat", type=int, default=20, help="best of R (default 20)")
    args = parser.parse_args(argv)
    os.environ["PATH"] = search_path()
    if os.geteuid() != 0:
        print("bench_discovery: needs root (it builds network namespaces)", file=sys.stderr)
        return 5
    sizes = [int(n) for n in args.mounts.split(",") if n]
    print("| namespaces | nsfs mounts | discover() (ms) |\n|---:|---:|---:|")
    for label, spaces in (("", lambda _n: args.namespaces), (" (namespaces too)", lambda n: n)):
        if label and not args.namespaces_too:
            continue
        results = [(spaces(n), *measure(min(spaces(n), n), n, args.repeat)) for n in sizes]
        for n, found, wall in results:
            print(f"| {n} | {found} | {wall * 1000:.1f} |")
        ratio = results[-1][2] / results[0][2]
        print(f"largest / smallest{label}: {ratio:.2f}x (<= {TARGET}x: {mark(ratio <= TARGET)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
