#!/usr/bin/env python3
"""Benchmark: the journal at 100,000 bindings, against baselines measured in the same run.

Builds a journal of --bindings (default 100,000) bindings of a churning host in a ``vqf-`` temp
folder: containers that come and go, each a veth, a MAC, an IP (IPs and veth names reused, as
on a real node), a tenth still bound. Then measures:

* the journal's size on disk for that many bindings;
* `vethpeer history TARGET --json` and `vethpeer which VETH --at T --json`, end to end (a fresh
  process each, median of --repeat); baseline: `vethpeer --version` (the interpreter's start,
  the floor of any command) — the difference is what the journal costs; the queries alone
  in-process too;
* `vethpeer annotate` on --lines (default 200,000) dmesg lines, a fifth naming a veth of the
  journal: lines per second; baseline: `cat` of the same file into the same pipe;
* the recorder: `observe` of a report's 1,000 bindings (nothing changed, and 1,000 new) and the
  write that follows, against the walk it follows (0.48 s at N=1000, docs/benchmarks.md).

No root needed (no namespaces). ``python benchmarks/bench_journal.py``.
Targets (issue 16): history and which --at < 100 ms at 100,000 bindings; annotate >= 50,000 lines/s.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vethpeer.journal import query  # noqa: E402
from vethpeer.journal.binding import Binding  # noqa: E402
from vethpeer.journal.record import Recorder  # noqa: E402
from vethpeer.journal.store import Start, Store  # noqa: E402

TARGETS = {"history": 0.100, "which_at": 0.100, "annotate": 50_000.0}
T0 = 1_764_000_000.0


def binding(i: int) -> Binding:
    cid = f"{i:08x}" + "ab" * 28
    return Binding(
        inner_name="eth0",
        inner_ifindex=2,
        inner_mac=f"02:42:ac:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}",
        addresses=(f"172.{16 + (i // 65000) % 16}.{(i // 250) % 256}.{i % 250 + 2}/16",),
        netns=4026531000 + i,
        host_name=f"veth{(i * 2654435761) & 0xFFFFFFF:07x}",
        host_ifindex=1000 + i % 50000,
        host_mac=f"c6:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}:00:01",
        host_netns=4026531840,
        bridge="docker0",
        kind="docker",
        name=f"app-{i}",
        label=f"docker/app-{i}",
        workload_id=cid,
        containers=(f"app-{i}",),
        container_ids=(cid,),
    )


def build(path: str, count: int) -> tuple[float, float]:
    """The journal of ``count`` bindings, one started every 10 s, each living 10 min but the last
    tenth (still bound); (seconds to build, the end of time in it)."""
    start = time.perf_counter()
    store = Store.open_writer(path, lambda _l: None)
    batch = []
    for i in range(count):
        first = T0 + i * 10
        gone = first + 600 if i < count * 0.9 else None
        batch.append(Start(binding(i), first, (gone or first + 600) - 5, gone))
        if len(batch) == 5000:
            store.record(batch, [], None)
            batch = []
    if batch:
        store.record(batch, [], None)
    store.close()
    return time.perf_counter() - start, T0 + count * 10


def cli(*args: str, stdin: str | None = None, stdout: int | None = subprocess.DEVNULL) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as source:
        done = subprocess.run(
            [sys.executable, "-m", "vethpeer", *args],
            stdin=source,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=env,
        )
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"vethpeer {' '.join(args)} exited {done.returncode}: {done.stderr.decode()}")
    return took


def median(fn: object, repeat: int) -> float:
    assert callable(fn)
    return statistics.median(fn() for _ in range(repeat))


def dmesg_log(path: str, lines: int, count: int) -> None:
    """`journalctl -k -o short-iso` lines: a fifth name a veth of the journal while it was bound."""
    rng = random.Random(16)
    with open(path, "w") as out:
        for n in range(lines):
            if n % 5 == 0:
                i = rng.randrange(count)
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(T0 + i * 10 + 300))
                out.write(
                    f"{stamp} node kernel: docker0: port 3({binding(i).host_name}) entered disabled state\n"
                )
            else:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(T0 + n))
                out.write(
                    f'{stamp} node kernel: audit: type=1400 apparmor="DENIED" operation="open" pid={n}\n'
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindings", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="vqf-bench-")
    try:
        path = os.path.join(folder, "journal.sqlite")
        took, _end = build(path, args.bindings)
        size = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
        print(f"journal: {args.bindings} bindings built in {took:.1f} s; {size / 1e6:.1f} MB on disk "
              f"({size / args.bindings:.0f} bytes a binding)")  # fmt: skip

        i = args.bindings // 2
        target, veth = f"app-{i}", binding(i).host_name
        moment = T0 + i * 10 + 300
        store = Store.open_reader(path)
        in_history = median(lambda: _timed(lambda: query.history(store, target)), args.repeat)
        in_at = median(lambda: _timed(lambda: query.at(store, veth, moment)), args.repeat)
        in_prefix = median(
            lambda: _timed(lambda: query.history(store, binding(i).workload_id[:12])), args.repeat
        )
        store.close()
        floor = median(lambda: cli("--version"), args.repeat)
        history = median(lambda: cli("history", target, "--json", "--journal", path), args.repeat)
        which_at = median(
            lambda: cli("which", veth, "--at", str(moment), "--json", "--journal", path), args.repeat
        )
        ms = 1000
        print(
            f"history TARGET --json: {history * ms:6.1f} ms end to end; the query alone "
            f"{in_history * ms:.2f} ms (ID prefix {in_prefix * ms:.2f} ms); "
            f"target < {TARGETS['history'] * ms:.0f} ms"
        )
        print(
            f"which VETH --at T:     {which_at * ms:6.1f} ms end to end; the query alone "
            f"{in_at * ms:.2f} ms; target < {TARGETS['which_at'] * ms:.0f} ms"
        )
        print(
            f"baseline `vethpeer --version` (the interpreter's start): {floor * ms:.1f} ms; above it history "
            f"{max(0.0, history - floor) * ms:.1f} ms, which --at {max(0.0, which_at - floor) * ms:.1f} ms"
        )

        log = os.path.join(folder, "dmesg.log")
        dmesg_log(log, args.lines, args.bindings)
        annotate = median(lambda: cli("annotate", "--journal", path, stdin=log), 3)
        cat = median(lambda: _run(["cat", log]), 3)
        load = median(lambda: cli("annotate", "--journal", path), 3)  # empty input: start + the index
        rate = args.lines / max(1e-9, annotate - load)
        print(
            f"annotate: {args.lines} lines in {annotate:.2f} s, {load:.2f} s of it start and index "
            f"({args.bindings} bindings): {rate:,.0f} lines/s streaming "
            f"(target >= {TARGETS['annotate']:,.0f}), "
            f"{args.lines / annotate:,.0f} lines/s all in; baseline cat: {args.lines / cat:,.0f} lines/s"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "vethpeer", "annotate", "--journal", path, log]
        out = subprocess.run(argv, capture_output=True, env=env, check=True).stdout
        named = out.count(b"[docker/app-")
        print(f"annotate named {named} of {args.lines // 5} veth lines")

        recorder_bench(folder)
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _timed(fn: object) -> float:
    assert callable(fn)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _run(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def recorder_bench(folder: str) -> None:
    store = Store.open_writer(os.path.join(folder, "recorder.sqlite"), lambda _l: None)
    recorder = Recorder()
    first = frozenset(binding(i) for i in range(1000))
    new = _timed(lambda: recorder.observe_bindings(first, T0))
    write_new = _timed(lambda: recorder.flush(store))
    same = statistics.median(
        _timed(lambda k=k: recorder.observe_bindings(first, T0 + k)) for k in range(1, 8)
    )
    write_same = statistics.median(
        _timed(lambda k=k: (recorder.observe_bindings(first, T0 + 10 + k), recorder.flush(store)))
        for k in range(7)
    )
    walk = 0.48
    print(
        f"recorder at 1000 bindings: observe {same * 1000:.2f} ms unchanged, {new * 1000:.2f} ms all new "
        f"({same / walk * 100:.2f}% of the 0.48 s walk it follows); then, in the journal's own thread, "
        f"the write: {write_same * 1000:.2f} ms last-seen only, {write_new * 1000:.1f} ms for 1000 new"
    )
    store.close()


if __name__ == "__main__":
    sys.exit(main())
