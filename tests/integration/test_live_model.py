"""`serve --live` against a fresh walk, through a long churn: the model's answers stay a walk's answers.

Namespaces are created and removed, veths moved between namespaces, renamed, set down and up,
re-addressed, enslaved and released, held by a process only, with both ends in one namespace
or both in the host (the host's devices are read again only where events point); Docker
containers started and removed. At many points, once the model has settled (nothing pending,
its generation quiet for 0.5 s), ``/api/v1/table`` must equal a fresh ``vethpeer table --json``,
and the resyncs' drift counter must stay 0 (a resync every 2 s repairs the model, so a missed
event is caught by one or the other). Everything made here carries the ``vqg`` prefix.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import table_json
from tests.lab import docker_lab
from tests.lab.netlab import HOST, Lab, Ns
from tests.lab.serve_lab import Served, free_port, get, serve
from tests.policy import need_binary, need_root

pytestmark = pytest.mark.integration
PREFIX = "vqg"


@dataclass
class VqgLab(Lab):
    prefix: ClassVar[str] = PREFIX


def metric(served: Served, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = get(served.port, "/metrics").body.decode()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def settle(served: Served, timeout: float = 20.0) -> None:
    """Until the model has nothing pending and its generation stayed the same for 0.5 s."""
    deadline = time.monotonic() + timeout
    last, since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        generation = metric(served, "vethpeer_model_generation")[()]
        settled = metric(served, "vethpeer_model_settled")[()] == 1
        if generation != last:
            last, since = generation, time.monotonic()
        elif settled and time.monotonic() - since >= 0.5:
            return
        time.sleep(0.1)
    raise AssertionError("the live model did not settle")


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    """A table document without what differs between two walks of the same host (the time,
    processes that exited or refused us meanwhile, the sources' free-text details)."""
    namespaces = document["namespaces"]
    return {
        "host_netns": document["host_netns"],
        "sources": sorted((s["name"], s["status"]) for s in document["sources"]),
        "read": namespaces["read"],
        "unreadable": sorted(u["inode"] for u in namespaces["unreadable"]),
        "interfaces": sorted(document["interfaces"], key=lambda i: (i["netns"]["inode"], i["ifindex"])),
        "workloads": sorted(document["workloads"], key=lambda w: (w["netns"]["inode"], str(w["workload"]))),
    }


def fresh_table() -> dict[str, Any]:
    return comparable(table_json("--no-kube"))


def differences(model: dict[str, Any], walk: dict[str, Any]) -> list[str]:
    found = [f"{key}: model {model[key]!r} walk {walk[key]!r}" for key in model if model[key] != walk[key]]
    if model["interfaces"] != walk["interfaces"]:
        mine = {(i["netns"]["inode"], i["ifindex"]): i for i in model["interfaces"]}
        theirs = {(i["netns"]["inode"], i["ifindex"]): i for i in walk["interfaces"]}
        for key in sorted(mine.keys() | theirs.keys()):
            if mine.get(key) != theirs.get(key):
                found.append(f"interface {key}: model {mine.get(key)} walk {theirs.get(key)}")
    return found[:10]


def check_same(served: Served, step: str, tries: int = 3) -> None:
    """The settled model equals a fresh walk (a difference must persist over ``tries`` looks)."""
    problems: list[str] = []
    for _ in range(tries):
        settle(served)
        model = comparable(get(served.port, "/api/v1/table").json())
        problems = differences(model, fresh_table())
        if not problems:
            return
        time.sleep(0.5)
    raise AssertionError(f"after {step}: the live model differs from a fresh walk:\n" + "\n".join(problems))


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def lab() -> Iterator[VqgLab]:
    need_root()
    need_binary("ip")
    with VqgLab() as built:
        yield built


def churn(lab: VqgLab, served: Served, rounds: int, seed: int) -> None:
    """Random steps over the lab's namespaces, the model compared with a walk after each few."""
    rng = random.Random(seed)
    bridge = lab.bridge(HOST, lab.bridge_name("0"))
    alive: list[Ns] = []
    counter = 0

    def fresh_ns() -> Ns:
        nonlocal counter
        counter += 1
        ns = lab.netns(f"n{counter}")
        pair = lab.veth(HOST, lab.link_name(f"h{counter}"), ns, "eth0")
        lab.enslave(pair.a, bridge)
        lab.addr(pair.b, lab.ip4(1, 1 + counter % 250))
        alive.append(ns)
        return ns

    for _ in range(3):
        fresh_ns()
    for step in range(rounds):
        action = rng.choice(
            [
                *("add", "add", "remove", "move", "rename", "down", "addr", "release", "process", "lonely"),
                *("hostpair", "hostrename", "samens"),
            ]
        )
        if action == "add" or len(alive) < 3:
            fresh_ns()
        elif action == "remove":
            ns = alive.pop(rng.randrange(len(alive)))
            lab.delete_netns([ns])
        elif action == "move":  # a new pair in the host, one end moved in, then on to another namespace
            counter += 1
            a, b = rng.sample(alive, 2)
            name = lab.link_name(f"m{counter}")
            ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
            lab.host_links.append(name)
            ip("link", "set", f"{name}p", "netns", str(a.name))
            ip("-n", str(a.name), "link", "set", f"{name}p", "netns", str(b.name))
            ip("link", "set", name, "up")
        elif action == "rename":
            ns = rng.choice(alive)
            old, new = ("eth0", "eth9") if _has(ns, "eth0") else ("eth9", "eth0")
            ip("-n", str(ns.name), "link", "set", old, "down")
            ip("-n", str(ns.name), "link", "set", old, "name", new)
            ip("-n", str(ns.name), "link", "set", new, "up")
        elif action == "down":
            ns = rng.choice(alive)
            names = [n for n in ("eth0", "eth9") if _has(ns, n)]
            for n in names:
                ip("-n", str(ns.name), "link", "set", n, "down")
        elif action == "addr":
            ns = rng.choice(alive)
            for n in ("eth0", "eth9"):
                if _has(ns, n):
                    ip("-n", str(ns.name), "addr", "add", lab.ip4(2, 1 + step % 250), "dev", n)
                    break
        elif action == "release":
            ports = [
                link for link in lab.host_links if link.startswith(lab.link_name("h")) and _has(HOST, link)
            ]
            if ports:
                ip("link", "set", rng.choice(ports), "nomaster")
        elif action == "lonely":  # two namespaces the host has no nsid for: their events never reach us
            counter += 1
            x, y = lab.netns_many([f"x{counter}", f"y{counter}"])
            lab.veth(x, "a0", y, "b0")
            ip("-n", str(x.name), "link", "set", "a0", "down")
            ip("-n", str(x.name), "link", "set", "a0", "name", "a1")
            ip("-n", str(y.name), "addr", "add", lab.ip4(3, 1 + step % 250), "dev", "b0")
        elif action == "hostpair":  # host-side devices added, renamed, removed: both ends in the host
            counter += 1
            a, b = lab.link_name(f"a{counter}"), lab.link_name(f"b{counter}")
            ip("link", "add", a, "type", "veth", "peer", "name", b)
            lab.host_links += [a, b]
            ip("link", "set", b, "up")
            ip("link", "set", b, "name", lab.link_name(f"c{counter}"))
            lab.host_links.append(lab.link_name(f"c{counter}"))
            ip("link", "del", a)
        elif action == "hostrename":  # a workload's host end renamed (and the name given back)
            ports = [
                link for link in lab.host_links if link.startswith(lab.link_name("h")) and _has(HOST, link)
            ]
            if ports:
                port = rng.choice(ports)
                ip("link", "set", port, "name", lab.link_name("tmp"))
                check_same(served, f"step {step} (a host end renamed)")
                ip("link", "set", lab.link_name("tmp"), "name", port)
        elif action == "samens":  # both ends in one namespace
            ns = rng.choice(alive)
            counter += 1
            lab.veth(ns, f"s{counter}", ns, f"t{counter}")
        elif action == "process":
            ns = fresh_ns()
            lab.hold_by_fd_only(ns)  # the bind mount goes: only a process holds it now
            alive.remove(ns)
        if step % 4 == 3:
            check_same(served, f"step {step} ({action})")
    check_same(served, "the end")


def _has(ns: Ns, name: str) -> bool:
    where = [] if ns.is_host else ["-n", str(ns.name)]
    done = subprocess.run(["ip", *where, "link", "show", name], capture_output=True, check=False)
    return done.returncode == 0


def drift_total(served: Served) -> float:
    return sum(metric(served, "vethpeer_resync_drift_total").values())


def test_live_model_is_a_fresh_walk_through_churn(lab: VqgLab) -> None:
    port = free_port(21600, 21699)
    with serve("--live", "--resync", "2", "--min-interval", "1", "--no-kube", port=port) as served:
        check_same(served, "the start")
        churn(lab, served, rounds=40, seed=16)
        resyncs = sum(metric(served, "vethpeer_resyncs_total").values())
        assert resyncs >= 3, "the resyncs did not run"
        assert drift_total(served) == 0, served.stderr()
        assert "missed a change" not in served.stderr()


def test_live_model_follows_docker_containers(lab: VqgLab) -> None:
    need_binary("ip")
    port = free_port(21600, 21699)
    with (
        docker_lab.docker_lab(PREFIX) as (_daemon, client),
        serve("--live", "--resync", "2", "--min-interval", "1", "--no-kube", port=port) as served,
    ):
        check_same(served, "the start")
        for i in range(4):
            docker_lab.run_container(client, f"{PREFIX}-{lab.tag}-c{i}", owner=PREFIX)
            if i % 2:
                client.containers.get(f"{PREFIX}-{lab.tag}-c{i - 1}").remove(force=True)
            check_same(served, f"container {i}")
        # no namespace comes or goes: only Docker's event stream tells the model
        client.containers.get(f"{PREFIX}-{lab.tag}-c3").rename(f"{PREFIX}-{lab.tag}-renamed")
        check_same(served, "a rename")
        table = get(served.port, "/api/v1/table").json()
        assert f"{PREFIX}-{lab.tag}-renamed" in {w["workload"]["name"] for w in table["workloads"]}
        docker_lab.cleanup(client, PREFIX)
        check_same(served, "all removed")
        assert drift_total(served) == 0, served.stderr()
