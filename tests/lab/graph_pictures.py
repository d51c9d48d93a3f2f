"""Make the pictures of docs/graph.md by running `vethpeer graph` on real topologies.

    sudo python -m tests.lab.graph_pictures docs/img

Builds each classic topology for real (prefix ``vpg``: a direct pair, two namespaces on a
Linux bridge, two on an Open vSwitch bridge of a private OVS, a router with two legs, and
Docker containers on two networks when an engine answers), runs ``vethpeer graph`` narrowed
to it (``-o png`` and ``-o svg``), takes a headless-Chromium screenshot of the HTML page of
the router, and removes everything. Nothing is drawn by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.lab import docker_lab, netlab
from tests.lab.browser import Browser
from tests.lab.netlab import HOST
from tests.lab.ovs_lab import start_ovs
from tests.lab.vpg_lab import PREFIX, GraphLab

ROOT = Path(__file__).resolve().parents[2]
SEARCH_RTR = "var s=document.getElementById('search');s.value='rtr';s.dispatchEvent(new Event('input'));"


def vethpeer(args: Sequence[str], env: dict[str, str] | None = None) -> bytes:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "vethpeer", *args], capture_output=True, env=full, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"vethpeer {' '.join(args)}: exit {done.returncode}: {done.stderr.decode()}")
    return done.stdout


def picture(out: Path, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> None:
    fold = [] if "--collapse" in args else ["--no-collapse"]
    for fmt in ("png", "svg"):
        (out / f"graph-{name}.{fmt}").write_bytes(vethpeer(["graph", *args, *fold, "-o", fmt], env))
    print(f"graph-{name}.png/.svg: vethpeer graph {' '.join(args)}", file=sys.stderr)


def main(argv: Sequence[str]) -> int:
    out = Path(argv[0] if argv else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    netlab.sweep(PREFIX)
    ovs = start_ovs(PREFIX)
    try:
        with GraphLab() as lab:
            left, _right = netlab.straight_pair(lab).namespaces
            picture(out, "direct", [left.name or ""])
            bridged = netlab.bridged(lab, count=2)
            picture(out, "bridge", ["--bridge", bridged.bridges[0].ifname])
            picture(
                out, "collapsed", ["--bridge", bridged.bridges[0].ifname, "--collapse", "--doctor", "off"]
            )
            bridge = f"{PREFIX}ovs{lab.tag}"
            ovs.add_bridge(bridge)
            ports = []
            for i, ns in enumerate(lab.netns_many(["o0", "o1"])):
                pair = lab.veth(HOST, lab.link_name(f"o{i}"), ns, "eth0")
                ovs.add_port(bridge, pair.a.ifname)
                ports.append(pair.a.ifname)
            env = {"OVS_RUNDIR": str(ovs.run_dir)}
            picture(out, "ovs", ["--bridge", bridge], env)
            router = netlab.router(lab).namespaces[0]
            picture(out, "router", [router.name or ""])
            down_ns = lab.netns("dn")
            lab.veth(HOST, lab.link_name("dn"), down_ns, "eth0", up=False)
            picture(out, "marks", [down_ns.name or ""])
            with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-pictures-") as tmp:
                page = Path(tmp) / "router.html"
                page.write_bytes(vethpeer(["graph", router.name or "", "-o", "html"]))
                with Browser() as browser:
                    shown = browser.open(page.as_uri())
                    shown.evaluate(SEARCH_RTR)
                    shown.screenshot(str(out / "graph-html.png"))
            print("graph-html.png: vethpeer graph ROUTER -o html, searched for 'rtr'", file=sys.stderr)
            for port in ports:
                ovs.del_port(bridge, port)
    finally:
        ovs.cleanup()
    if docker_lab.docker_ping():
        with docker_lab.docker_lab(PREFIX) as (_daemon, client):
            docker_lab.cleanup(client, PREFIX)
            docker_lab.create_network(client, "vpg-neta", "10.213.201.0/24")
            docker_lab.create_network(client, "vpg-netb", "10.213.202.0/24")
            docker_lab.run_container(
                client, "vpg-two", network="vpg-neta", networks=["vpg-netb"], owner=PREFIX
            )
            docker_lab.run_container(client, "vpg-one", network="vpg-netb", owner=PREFIX)
            picture(out, "docker", ["vpg-two"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
