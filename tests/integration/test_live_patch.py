"""The live walker's patched host against a fresh dump: the host's links read again only where
the kernel's events point (RTM_GETLINK by ifindex, the link's addresses, the device's FDB
entries) must say what a dump of the whole host says, after every kind of change a host-side
device goes through; and the report must be a fresh walk's (drift 0).

In-process (a Walker and a Watcher on this thread, as the live model runs them), on real
namespaces, veths and a bridge. Everything made here carries the ``vqb`` prefix.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import ClassVar

import pytest

from tests.lab.netlab import HOST, Lab, Ns
from tests.policy import need_binary, need_root
from vethpeer.collect import Request
from vethpeer.environment import Environment
from vethpeer.live import walker as walker_module
from vethpeer.live.drift import drift
from vethpeer.live.walker import Walker
from vethpeer.live.watcher import Watcher
from vethpeer.model import FdbEntry, Link, Report
from vethpeer.netlink import DumpInterrupted, RtnlSocket
from vethpeer.sources import Options
from vethpeer.walk import with_addresses

pytestmark = pytest.mark.integration
PREFIX = "vqb"


@dataclass
class VqbLab(Lab):
    prefix: ClassVar[str] = PREFIX


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def host_dump() -> tuple[dict[int, Link], list[FdbEntry]]:
    """What a dump of the whole host says now (links without their counters, FDB sorted)."""
    with RtnlSocket() as sock:
        links = with_addresses(sock.links(), sock)
        fdb = sock.fdb()
    return {link.index: link for link in links}, sorted(fdb, key=repr)


@pytest.fixture
def lab() -> Iterator[VqbLab]:
    need_root()
    need_binary("ip")
    with VqbLab() as built:
        yield built


def test_patched_host_is_a_dump_and_the_report_a_fresh_walk(lab: VqbLab) -> None:
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
    request = Request(options=Options(kube=False), fdb=True, stats=True, ovs=False)
    patched: list[int] = []
    with Walker(request, env, links_every=float("inf")) as walker, Watcher(walker, changes=False) as watcher:
        patch = walker._patch

        def counted(kept: object, indexes: object) -> None:
            patched.append(1)
            patch(kept, indexes)  # type: ignore[arg-type]

        walker._patch = counted  # type: ignore[method-assign]
        bridge = lab.bridge(HOST, lab.bridge_name("0"))
        namespaces: list[Ns] = []

        def workload(stem: str) -> str:
            ns = lab.netns(stem)
            host_end = lab.link_name(f"h{stem}")
            pair = lab.veth(HOST, host_end, ns, "eth0")
            lab.enslave(pair.a, bridge)
            lab.addr(pair.b, lab.ip4(1, 10 + len(namespaces)))
            namespaces.append(ns)
            return host_end

        ends = [workload(f"w{i}") for i in range(3)]

        def check(step: str) -> None:
            problems: list[str] = []
            for _ in range(5):
                for _ in range(4):  # what the kernel said by now, looked at
                    watcher.wait(0.15)
                host = walker.discovery.host if walker.discovery else None
                kept = walker._kept[host]  # type: ignore[index]
                links, fdb = host_dump()
                mine = {link.index: replace(link, stats=None) for link in kept.links}
                with Walker(request, env) as fresh:
                    found = drift(watcher.report, fresh.round())
                problems = [f"links differ: {sorted(mine.keys() ^ links.keys())}"] if mine != links else []
                problems += [] if sorted(kept.fdb, key=repr) == fdb else ["the MAC tables differ"]
                problems += [f"{d.kind}: {d.subject}" for d in found]
                if not problems:
                    return
            raise AssertionError(f"after {step}: " + "; ".join(problems))

        check("the start")
        # a host-side veth renamed, set down, re-addressed, released and enslaved again
        renamed = lab.link_name("r0")
        ip("link", "set", ends[0], "down")
        ip("link", "set", ends[0], "name", renamed)
        lab.host_links[lab.host_links.index(ends[0])] = renamed
        check("a rename")
        ip("link", "set", renamed, "up")
        ip("link", "set", ends[1], "down")
        check("set down")
        ip("addr", "add", lab.ip4(2, 1), "dev", ends[2])
        check("an address")
        ip("link", "set", ends[2], "nomaster")
        check("released from the bridge")
        ip("link", "set", ends[2], "master", bridge.ifname)
        check("enslaved again")
        # host-side devices added and removed: a pair with both ends in the host
        a, b = lab.link_name("ha"), lab.link_name("hb")
        lab.veth(HOST, a, HOST, b)
        lab.host_links.append(b)
        check("a pair in the host")
        ip("link", "del", a)
        check("the pair removed")
        # a pair made in the host whose end moves into one namespace, then on to another:
        # the host end is left pointing elsewhere, and the kernel says nothing about it
        m = lab.link_name("m0")
        ip("link", "add", m, "type", "veth", "peer", "name", f"{m}p")
        lab.host_links.append(m)
        ip("link", "set", m, "up")
        check("a new pair")
        ip("link", "set", f"{m}p", "netns", str(namespaces[0].name))
        check("one end moved into a namespace")
        ip("-n", str(namespaces[0].name), "link", "set", f"{m}p", "netns", str(namespaces[1].name))
        check("moved on to another")
        # both ends in one namespace; a namespace (and its host end) gone; a new one
        lab.veth(namespaces[1], "x0", namespaces[1], "x1")
        check("both ends in one namespace")
        lab.delete_netns([namespaces[2]])
        check("a namespace removed")
        workload("w9")
        check("a new workload")
    assert patched, "the host was never patched: dumped whole each time"


def test_every_missing_host_end_is_read_in_one_repair(lab: VqbLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """Namespaces read after the host, each with an eth0 whose host end the host's last read
    did not have (created in between): the repair patches in *every* missing end, not the first.

    The race behind a `watch` event whose peer was null ("ifindex N is gone from the peer's
    namespace"), made deterministic: the round reads the new namespaces and not the host."""
    monkeypatch.setattr(walker_module, "PATCH_BELOW", 0)  # the host is patched, never dumped whole
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
    request = Request(options=Options(kube=False), stats=True, ovs=False)
    with Walker(request, env) as walker:
        walker.round()
        namespaces, hosts = lab.netns_with_host_peers([f"r{i}" for i in range(4)])
        inodes = {ns.inode for ns in namespaces}
        walker.rediscover()
        assert walker.discovery is not None
        fresh = {ns.key for ns in walker.discovery.namespaces if ns.key[1] in inodes}
        assert len(fresh) == 4
        report = walker.round(fresh, rediscover=False)
    rows = {r.end.ns.key[1]: r for r in report.rows if r.end.ns.key in fresh and r.end.link.name == "eth0"}
    assert len(rows) == 4
    found = {inode: (r.peer.link.name if r.peer else r.unresolved) for inode, r in rows.items()}
    assert sorted(found.values()) == sorted(hosts), found


def test_a_host_whose_dumps_keep_being_interrupted_is_not_forgotten(
    lab: VqbLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a burst of hundreds of veths the kernel can interrupt every dump of the host
    (NLM_F_DUMP_INTR, DUMP_TRIES times): the host's last read stands, the devices the events
    named are patched in, and it is read whole again at the next rescan. Dropping it for a look
    left every workload's peer unresolved in that look (a `watch` event with a null peer)."""
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
    request = Request(options=Options(kube=False), stats=True, ovs=False)
    with Walker(request, env) as walker:
        walker.round()
        assert walker.discovery is not None
        host = walker.discovery.host
        sock = walker._kept[host].sock
        interrupted = {"on": True}
        links = sock.links

        def maybe_interrupted(stats: bool = False) -> list[Link]:
            if interrupted["on"]:
                raise DumpInterrupted(5)
            return links(stats)

        monkeypatch.setattr(sock, "links", maybe_interrupted)
        namespaces, hosts = lab.netns_with_host_peers([f"i{i}" for i in range(3)])
        inodes = {ns.inode for ns in namespaces}
        walker.rediscover()
        fresh = {ns.key for ns in walker.discovery.namespaces if ns.key[1] in inodes}
        wanted = sorted(hosts)

        def peers(report: Report) -> list[str | None]:
            rows = [r for r in report.rows if r.end.ns.key in fresh and r.end.link.name == "eth0"]
            return sorted(r.peer.link.name if r.peer else r.unresolved for r in rows)  # type: ignore[misc]

        # the host named dirty (read whole, interrupted): its last read stands, the ends patched in
        report = walker.round({host, *fresh}, rediscover=False)
        assert host in walker._kept and host not in walker._errors
        assert walker.again == {host}
        assert peers(report) == wanted
        # a full round, interrupted again: still there
        report = walker.round()
        assert peers(report) == wanted and walker.again == {host}
        interrupted["on"] = False
        assert walker.reread(walker.again) is not None
        assert walker.again == set()
        assert peers(walker.round({host}, rediscover=False)) == wanted
