#!/usr/bin/env python3
"""Benchmark: each protocol vethpeer speaks by hand against the library it replaces, end to
end, both ways in one run (issue 18's decision record, docs/development.md).

Every command runs through ``benchmarks/libraries.py`` (``none`` for vethpeer as it is, or the
library swapped in), interleaved run by run, best of ``--repeat``, and both answers must be
the same JSON:

* ``netlink``: ``table --json`` and ``which -q VETH`` at ``--n`` namespaces (prefix ``vpb``),
  our rtnetlink decoder against pyroute2;
* ``docker``: ``table --json`` beside ``--containers`` containers (prefix ``vqh-bp``) on the
  engine the Docker tests use, our client on the local socket against the docker SDK;
* ``cri``: ``table --json`` beside ``--pods`` pods of the CRI lab's containerd (prefix ``vpk``),
  our gRPC client on ``h2`` against grpcio;
* ``protobuf``: ``table --json`` and ``which POD`` in the same lab, our CRI messages
  (``vethpeer/cri/messages.py``) against protobuf's generated ``api_pb2``.

Needs root. ``python benchmarks/bench_protocols.py --only netlink,docker,cri,protobuf``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import (  # noqa: E402
    as_root,
    pods_on_bridges,
    run_once,
    torn_down,
)
from tests.lab.common import busy  # noqa: E402
from tests.lab.netlab import Lab  # noqa: E402

RUNNER = [sys.executable, str(ROOT / "benchmarks" / "libraries.py")]
DOCKER_PREFIX = "vqh-bp"


def _answer(stdout: str) -> Any:
    """What must be equal both ways: the interfaces (not timings or source details)."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        return stdout.split()
    return sorted(json.dumps(entry, sort_keys=True) for entry in doc["interfaces"])


def both_ways(library: str, args: Sequence[str], repeat: int) -> tuple[float, float]:
    """Best wall of vethpeer as it is and with ``library``, interleaved; the answers compared."""
    walls: dict[str, list[float]] = {"none": [], library: []}
    answers: dict[str, Any] = {}
    for _ in range(repeat):
        for which in walls:
            run = run_once([*RUNNER, which, "--", *args])
            if run.returncode != 0:
                raise SystemExit(f"{which}: {' '.join(args)}: exit {run.returncode}")
            walls[which].append(run.wall)
            answers[which] = _answer(run.stdout)
    if answers["none"] != answers[library]:
        raise SystemExit(f"{library}: {' '.join(args)}: a different answer from the library")
    return min(walls["none"]), min(walls[library])


@contextmanager
def netlink_lab(n: int) -> Iterator[list[tuple[str, list[str]]]]:
    with torn_down(Lab()) as lab:
        built = pods_on_bridges(lab, n)
        veth = built.host_veths[n // 2]
        yield [
            (f"table --json, N={n}", ["table", "--json"]),
            (f"which -q VETH, N={n}", ["which", "-q", veth]),
        ]


@contextmanager
def docker_engine(count: int) -> Iterator[list[tuple[str, list[str]]]]:
    from tests.lab import docker_lab

    daemon = docker_lab.ensure_dockerd()
    client = daemon.client()
    try:
        docker_lab.cleanup(client, DOCKER_PREFIX)
        docker_lab.ensure_image(client)
        for i in range(count):
            docker_lab.run_container(client, f"{DOCKER_PREFIX}-{i:03d}", owner=DOCKER_PREFIX)
        yield [(f"table --json, {count} containers", ["table", "--json"])]
    finally:
        docker_lab.cleanup(client, DOCKER_PREFIX)
        client.close()
        daemon.stop()


@contextmanager
def cri_runtime(pods: int, which: bool = False) -> Iterator[list[tuple[str, list[str]]]]:
    from tests.lab.cri_lab import cri_lab

    with cri_lab() as lab:
        for i in range(pods):
            lab.run_pod(f"vpk-bp-{i:03d}", "vpk-bp")
        os.environ["CONTAINER_RUNTIME_ENDPOINT"] = lab.containerd.endpoint
        try:
            commands = [(f"table --json, {pods} pods", ["table", "--json"])]
            if which:
                commands.append((f"which POD, {pods} pods", ["which", f"vpk-bp-{pods // 2:03d}"]))
            yield commands
        finally:
            del os.environ["CONTAINER_RUNTIME_ENDPOINT"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="netlink,docker,cri,protobuf", help="which protocols (default all)")
    parser.add_argument("--n", type=int, default=1000, help="namespaces for netlink (default 1000)")
    parser.add_argument("--containers", type=int, default=20, help="containers for docker (default 20)")
    parser.add_argument("--pods", type=int, default=20, help="pods for cri and protobuf (default 20)")
    parser.add_argument("--repeat", type=int, default=5, help="best of R (default 5)")
    parser.add_argument("--load", type=int, default=0, metavar="K", help="again beside K busy loops")
    args = parser.parse_args(argv)
    if not as_root("bench_protocols"):
        return 5
    labs = {
        "netlink": ("pyroute2", lambda: netlink_lab(args.n)),
        "docker": ("docker", lambda: docker_engine(args.containers)),
        "cri": ("grpcio", lambda: cri_runtime(args.pods)),
        "protobuf": ("protobuf", lambda: cri_runtime(args.pods, which=True)),
    }
    rows = []
    for protocol in args.only.split(","):
        library, lab = labs[protocol]
        with lab() as commands:
            for title, loops in (("quiet", 0), (f"{args.load} busy loops", args.load)):
                if loops == 0 and title != "quiet":
                    continue
                with busy(loops):
                    for what, command in commands:
                        ours, theirs = both_ways(library, command, args.repeat)
                        rows.append((protocol, library, what, title, ours, theirs))
                        print(f"{protocol} {what} {title}: {ours:.3f} / {theirs:.3f} s", file=sys.stderr)
    print(f"best of {args.repeat}, interleaved, wall time including interpreter start\n")
    print("| protocol | library | command | machine | by hand (s) | library (s) | library - by hand (ms) |")
    print("|---|---|---|---|---:|---:|---:|")
    for protocol, library, what, title, ours, theirs in rows:
        print(
            f"| {protocol} | {library} | `{what}` | {title} | {ours:.3f} | {theirs:.3f} "
            f"| {(theirs - ours) * 1000:+.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
