#!/usr/bin/env python3
"""Benchmark: one round of the doctor's checks at N namespaces, as `serve` runs it every --min-interval.

Builds N namespaces (prefix ``vqb``), each with eth0 whose veth peer is on one host bridge, and
times :func:`vethpeer.diagnosis.diagnose` over one walk's report, in-process: the whole round, the
reads inside the namespaces (:func:`vethpeer.diagnosis.facts_for`) and the checks alone; the
wall time and the CPU time of the thread, median of ``--repeat``. Twice: with the lab as
`bench_serve.py` builds it (eth0 down, no address) and with every eth0 up, addressed, with a
default route via the bridge's address (as pods are) but in every tenth namespace. Each tree's
findings are shown with a digest of their content: the same digest, the same findings.
``--older TREE`` runs the same rounds from an older checkout in the same run (``git archive main |
tar -x -C /tmp/old``), each tree in a process of its own. Needs root.
``python benchmarks/bench_doctor.py --size 1000 --older /tmp/old``.
Target (issue 16): the doctor's share of `serve --live`'s CPU under churn cut to a fraction.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.lab.serve_lab import BridgeLab, ip_batch  # noqa: E402

# One tree's rounds on the namespaces present, printed as JSON (run with that tree first on the path).
ROUND = """
import gc, hashlib, io, json, resource, statistics, sys, time
from vethpeer import diagnosis
from vethpeer.checks import diagnose as run_checks
from vethpeer.collect import Request, gather
from vethpeer.environment import Environment

repeat = int(sys.argv[1])
env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
report = gather(Request(stats=True, fdb=True, ovs=False), env)
gc.freeze()
facts = diagnosis.facts_for(report, report.rows)


def cpu():
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


found = {}
for name, work in (
    ("round", lambda: diagnosis.diagnose(report, None, None)),
    ("reads", lambda: diagnosis.facts_for(report, report.rows)),
    ("checks", lambda: run_checks(report, facts)),
):
    walls, cpus = [], []
    for _ in range(repeat):
        c0, w0 = cpu(), time.perf_counter()
        work()
        walls.append(time.perf_counter() - w0)
        cpus.append(cpu() - c0)
    found[name] = (statistics.median(walls), statistics.median(cpus))
findings = diagnosis.diagnose(report, None, None).findings
found["findings"] = len(findings)
shown = sorted(repr((f.check, f.end.ns.key, f.end.link.name, f.message, f.evidence, f.fix)) for f in findings)
found["digest"] = hashlib.sha256("\\n".join(shown).encode()).hexdigest()[:12]
print(json.dumps(found))
"""


def rounds(tree: Path, repeat: int) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tree)!r})\n" + ROUND, str(repeat)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{tree}: {done.stderr.strip()[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


def show(title: str, trees: dict[str, Path], repeat: int) -> None:
    print(title)
    for name, tree in trees.items():
        found = rounds(tree, repeat)
        parts = "   ".join(
            f"{part} {found[part][0] * 1000:6.1f} ms (cpu {found[part][1] * 1000:5.1f})"  # type: ignore[index]
            for part in ("round", "reads", "checks")
        )
        print(f"  {name:10} {parts}   findings {found['findings']} (digest {found['digest']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--older", type=Path, help="an older checkout, measured in the same run")
    args = parser.parse_args(argv)
    trees = {"this tree": ROOT, **({"older": args.older} if args.older else {})}
    with BridgeLab(args.size, inside=False, prefix="vqb") as lab:
        print(f"N={args.size} namespaces (lab {lab.tag}); median of {args.repeat}, wall (thread cpu)")
        show("eth0 down, no address (bench_serve.py's lab):", trees, args.repeat)
        third = int(lab.tag, 16) % 254
        ip_batch([f"addr add 198.18.{third}.1/15 dev {lab.bridge}"])
        for i, m in enumerate(lab.members):
            commands = ["link set eth0 up", f"addr add {m.address}/15 dev eth0"]
            route = [f"route add default via 198.18.{third}.1"] if i % 10 else []  # a tenth without
            ip_batch([*commands, *route], netns=m.netns)
        show("eth0 up, addressed, a default route via the bridge but in a tenth:", trees, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
