#!/usr/bin/env python3
"""Benchmark: `vethpeer table --json` against the classic per-container script, N real containers.

    sudo python3 benchmarks/bench_docker.py [--sizes 10,50,100] [--repeat 3]

Needs what tests/integration/test_docker.py needs (root, Debian's docker.io, busybox-static,
the docker SDK) and a `docker` CLI for the classic script. Starts dockerd if none answers
(and stops it at the end), creates containers named ``vpd-bench-*`` on the default bridge,
removes them at the end. Sizes grow cumulatively (the 50 include the first 10).

The classic method, as found in answers and runbooks, once per container::

    pid=$(docker inspect -f '{{.State.Pid}}' "$c")
    iflink=$(nsenter -t "$pid" -n cat /sys/class/net/eth0/iflink)
    ip -o link | grep "^$iflink:"

It is timed as written, and its answers are checked against the kernel: ``nsenter -n``
keeps the host's mount namespace, and the host's /sys shows the host's interfaces, so
it reads the HOST's eth0 and returns the same line for every container. The variant
that also enters the mount namespace (``nsenter -t PID -n -m``: the container's own
/sys) is right, and is timed too. vethpeer's answers are checked the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.lab import docker_lab as lab  # noqa: E402
from tests.tools import search_path  # noqa: E402

PREFIX = "vpd-bench"

CLASSIC = r"""
for c in "$@"; do
  pid=$(docker inspect -f '{{.State.Pid}}' "$c")
  iflink=$(nsenter -t "$pid" -n cat /sys/class/net/eth0/iflink)
  echo "$c $(ip -o link | grep "^$iflink:")"
done
"""

CLASSIC_FIXED = r"""
for c in "$@"; do
  pid=$(docker inspect -f '{{.State.Pid}}' "$c")
  iflink=$(nsenter -t "$pid" -n -m cat /sys/class/net/eth0/iflink)
  echo "$c $(ip -o link | grep "^$iflink:")"
done
"""


def timed(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT, env=env)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}... failed ({done.returncode}): {done.stderr.strip()[:500]}")
    return took, done.stdout


def truth(client: Any, names: Sequence[str]) -> dict[str, str]:
    """Host veth of each container's eth0, by the kernel (netlink inside its namespace)."""
    found = {}
    for name in names:
        veth = lab.host_ifname(lab.peer_ifindex_of(lab.container_pid(client, name)))
        assert veth is not None
        found[name] = veth
    return found


def script_answers(out: str) -> dict[str, str]:
    """CONTAINER + the `ip -o link` line found ("4686: vethfb43ae9@if4685: <...") -> interface name."""
    answers = {}
    for line in out.splitlines():
        name, _, found = line.partition(" ")
        fields = found.split()
        answers[name] = fields[1].split("@")[0].rstrip(":") if len(fields) > 1 else ""
    return answers


def vethpeer_answers(out: str) -> dict[str, str]:
    answers = {}
    for row in json.loads(out)["interfaces"]:
        if row["workload"]["name"].startswith(PREFIX) and row["ifname"] == "eth0" and row["peer"]:
            answers[row["workload"]["name"]] = row["peer"]["ifname"]
    return answers


def right(answers: dict[str, str], expected: dict[str, str]) -> int:
    return sum(1 for name, veth in expected.items() if answers.get(name) == veth)


@dataclass
class Result:
    size: int
    times: dict[str, float]  # method -> median seconds
    right: dict[str, int]  # method -> containers answered correctly
    distinct_classic: int

    def ratio(self, method: str) -> float:
        return self.times[method] / self.times["table"]

    def line(self) -> str:
        t, ok, n = self.times, self.right, self.size
        return " | ".join(
            [
                f"N={n}: vethpeer table {t['table']:.3f}s ({ok['table']}/{n} right)",
                f"classic {t['classic']:.3f}s ({ok['classic']}/{n} right, {self.distinct_classic} distinct)",
                f"classic -n -m {t['fixed']:.3f}s ({ok['fixed']}/{n} right)",
                f"ratio {self.ratio('classic'):.1f}x / {self.ratio('fixed'):.1f}x",
                f"which {t['which']:.3f}s ({ok['which']}/1 right)",
            ]
        )

    def row(self) -> str:
        t, ok, n = self.times, self.right, self.size
        cells = [
            f"{n:3d}",
            f"{t['table']:.3f} s ({ok['table']}/{n} right)",
            f"{t['classic']:.3f} s ({ok['classic']}/{n} right)",
            f"{self.ratio('classic'):.1f}x",
            f"{t['fixed']:.3f} s ({ok['fixed']}/{n} right)",
            f"{self.ratio('fixed'):.1f}x",
            f"{t['which']:.3f} s",
        ]
        return "| " + " | ".join(cells) + " |"


def measure(
    names: Sequence[str], expected: dict[str, str], vethpeer: list[str], env: dict[str, str], repeat: int
) -> Result:
    """Every method once per round, rounds interleaved: a load change on the machine hits all alike."""
    target = names[len(names) // 2]
    commands = {
        "table": ([*vethpeer, "table", "--json"], env),
        "classic": (["bash", "-c", CLASSIC, "classic", *names], None),
        "fixed": (["bash", "-c", CLASSIC_FIXED, "fixed", *names], None),
        "which": ([*vethpeer, "which", "-q", target], env),
    }
    time.sleep(2)  # let the engine settle after starting containers
    for argv, environ in commands.values():  # one unmeasured round: page cache, the engine's caches
        timed(argv, environ)
    times: dict[str, list[float]] = {m: [] for m in commands}
    outputs: dict[str, str] = {}
    for _ in range(repeat):
        for method, (argv, environ) in commands.items():
            took, outputs[method] = timed(argv, environ)
            times[method].append(took)
    classic = script_answers(outputs["classic"])
    return Result(
        size=len(names),
        times={m: statistics.median(v) for m, v in times.items()},
        right={
            "table": right(vethpeer_answers(outputs["table"]), expected),
            "classic": right(classic, expected),
            "fixed": right(script_answers(outputs["fixed"]), expected),
            "which": int(outputs["which"].split() == [expected[target]]),
        },
        distinct_classic=len(set(classic.values())),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,50,100", help="container counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (median)")
    args = parser.parse_args(argv)
    os.environ["PATH"] = search_path()  # ip, dockerd, ... where the install put them (tests/tools.py)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise SystemExit("the classic script needs a docker CLI")
    # As installed: pip byte-compiles, and stdout is a buffered pipe. A shell that sets
    # PYTHONDONTWRITEBYTECODE / PYTHONUNBUFFERED (some CI and sandboxes do) would time
    # the compiler and one write(2) per JSON token instead.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")}
    env.update(PYTHONPATH=str(ROOT), NO_COLOR="1")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "vethpeer")], env=env, check=True)
    vethpeer = [sys.executable, "-m", "vethpeer"]

    daemon = lab.ensure_dockerd()
    client = daemon.client()
    results: list[Result] = []
    engine = "?"
    try:
        engine = str(client.version().get("Version", "?"))
        lab.cleanup(client, PREFIX)
        lab.ensure_image(client)
        names: list[str] = []
        for size in sizes:
            while len(names) < size:
                name = f"{PREFIX}-{len(names):03d}"
                lab.run_container(client, name)
                names.append(name)
            result = measure(names, truth(client, names), vethpeer, env, args.repeat)
            results.append(result)
            print(result.line(), flush=True)
    finally:
        lab.cleanup(client, PREFIX)
        client.close()
        daemon.stop()
    print()
    print(
        f"engine {engine}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, median of {args.repeat} runs"
    )
    print("|   N | vethpeer table --json | classic script | ratio | classic -n -m | ratio | which -q |")
    print("|----:|----------------------:|---------------:|------:|--------------:|------:|---------:|")
    for r in results:
        print(r.row())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
