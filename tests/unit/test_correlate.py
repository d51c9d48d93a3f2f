"""The correlator on hand-built snapshots: no root, no kernel, exact answers."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from pytest import MonkeyPatch

from vethpeer.correlate import Correlator, correlate
from vethpeer.model import (
    Claim,
    Link,
    LinkClaim,
    Namespace,
    NsKey,
    NsView,
    Relation,
    Row,
    Snapshot,
    SourceResult,
    Workload,
    WorkloadKind,
)
from vethpeer.sources import Context
from vethpeer.sources.kernel import KernelNames

from .builders import LO, answered

HOST = NsKey(4, 1000)


def ns(ino: int, *, names: tuple[str, ...] = (), pids: tuple[int, ...] = ()) -> Namespace:
    return Namespace(
        NsKey(4, ino),
        is_host=ino == HOST.ino,
        mounts=tuple(f"/run/netns/{n}" for n in names),
        pids=pids,
        comm="sleep" if pids else None,
    )


def kernel_names(snapshot: Snapshot) -> SourceResult:
    return KernelNames().collect(Context(snapshot.host, tuple(v.ns for v in snapshot.views)))


def veth(index: int, name: str, peer: int, nsid: int | None = None, master: int | None = None) -> Link:
    return Link(
        index,
        name,
        kind="veth",
        mac=f"02:00:00:00:{index >> 8:02x}:{index & 255:02x}",
        mtu=1500,
        operstate="up",
        link=peer,
        link_netnsid=nsid,
        master=master,
    )


def test_fifty_pods_with_the_same_eth0_ifindex_each_get_their_own_host_veth() -> None:
    host_links = [LO, Link(2, "cni0", kind="bridge", mtu=1500)]
    views = []
    for i in range(50):
        host_index = 100 + i
        # Every pod's eth0 is ifindex 2, and every host veth points at ifindex 2 too.
        host_links.append(veth(host_index, f"veth{i:04x}", peer=2, nsid=i, master=2))
        pod = ns(2000 + i, names=(f"pod{i}",))
        views.append(NsView(pod, (LO, veth(2, "eth0", peer=host_index, nsid=0)), {0: HOST}))
    host_nsids = {i: NsKey(4, 2000 + i) for i in range(50)}
    views.append(NsView(ns(HOST.ino), tuple(host_links), host_nsids))
    snapshot = Snapshot(HOST, tuple(views))

    report = correlate(snapshot, [kernel_names(snapshot)])

    assert len(report.rows) == 50
    for row in report.rows:
        i = int(row.end.workload.name[3:])
        assert row.end.link.name == "eth0"
        assert row.relation is Relation.VETH
        assert row.peer is not None
        assert row.peer.link.name == f"veth{i:04x}"
        assert row.peer.master == "cni0"
        assert row.peer.workload.kind is WorkloadKind.HOST


def test_pair_between_two_non_host_namespaces_appears_from_both_sides() -> None:
    a, b = ns(2001, names=("a",)), ns(2002, names=("b",))
    views = (
        NsView(a, (LO, veth(5, "x0", peer=7, nsid=3)), {3: b.key}),
        NsView(b, (LO, veth(7, "y0", peer=5, nsid=9)), {9: a.key}),
        NsView(ns(HOST.ino), (LO,)),
    )
    report = correlate(Snapshot(HOST, views), [kernel_names(Snapshot(HOST, views))])
    pairs = {
        (r.end.workload.label, r.end.link.name, r.peer.workload.label, r.peer.link.name)
        for r in report.rows
        if r.peer
    }
    assert pairs == {("netns/a", "x0", "netns/b", "y0"), ("netns/b", "y0", "netns/a", "x0")}


def test_both_ends_in_the_host_are_two_host_rows_and_host_veths_with_workload_peers_are_not_rows() -> None:
    pod = ns(2001, names=("p",))
    views = (
        NsView(
            ns(HOST.ino),
            (LO, veth(10, "a", peer=11), veth(11, "b", peer=10), veth(12, "vethp", 2, 0)),
            {0: pod.key},
        ),
        NsView(pod, (LO, veth(2, "eth0", peer=12, nsid=0)), {0: HOST}),
    )
    report = correlate(Snapshot(HOST, views), [])
    names = [
        (r.end.workload.label, r.end.link.name, r.peer.link.name if r.peer else None) for r in report.rows
    ]
    assert names == [("net:[2001]", "eth0", "vethp"), ("host", "a", "b"), ("host", "b", "a")]


def test_both_ends_in_one_non_host_namespace() -> None:
    only = ns(2001, names=("solo",))
    views = (NsView(only, (LO, veth(2, "v0", peer=3), veth(3, "v1", peer=2))), NsView(ns(HOST.ino), (LO,)))
    report = correlate(Snapshot(HOST, views), [])
    assert [(r.end.link.name, r.peer.link.name if r.peer else None) for r in report.rows] == [
        ("v0", "v1"),
        ("v1", "v0"),
    ]


def test_macvlan_points_at_its_parent_not_a_peer() -> None:
    pod = ns(2001)
    mv = Link(2, "eth0", kind="macvlan", mac="02:aa:00:00:00:01", link=2, link_netnsid=0)
    views = (
        NsView(ns(HOST.ino), (LO, Link(2, "eth0", mac="02:fc:00:00:00:01"))),
        NsView(pod, (LO, mv), {0: HOST}),
    )
    (row,) = correlate(Snapshot(HOST, views), []).rows
    assert row.relation is Relation.PARENT
    assert row.peer is not None and row.peer.link.name == "eth0" and row.peer.ns.key == HOST


def test_unknown_nsid_is_unresolved_with_a_reason_never_a_guess() -> None:
    views = (
        NsView(ns(HOST.ino), (LO, veth(2, "veth0", peer=2, nsid=0))),
        NsView(ns(2001), (LO, veth(2, "eth0", peer=2, nsid=5))),  # nsid 5 resolved to nothing
    )
    report = correlate(Snapshot(HOST, views), [])
    by_name = {(r.end.ns.key.ino, r.end.link.name): r for r in report.rows}
    pod_row = by_name[(2001, "eth0")]
    assert pod_row.peer is None and pod_row.unresolved and "nsid 5" in pod_row.unresolved
    host_row = by_name[(HOST.ino, "veth0")]  # host veth with an unresolved peer is a row of its own
    assert host_row.peer is None and host_row.unresolved


def test_peer_that_does_not_point_back_is_unresolved() -> None:
    pod = ns(2001)
    views = (
        NsView(ns(HOST.ino), (LO, veth(9, "vethx", peer=4, nsid=0)), {0: pod.key}),
        NsView(pod, (LO, veth(2, "eth0", peer=9, nsid=0)), {0: HOST}),
    )
    report = correlate(Snapshot(HOST, views), [])
    pod_row = next(r for r in report.rows if r.end.ns.key == pod.key)
    assert pod_row.peer is None and "point back" in (pod_row.unresolved or "")


def test_unreadable_peer_namespace_is_reported_not_skipped() -> None:
    gone = ns(2002)
    views = (
        NsView(ns(HOST.ino), (LO,)),
        NsView(ns(2001), (LO, veth(2, "eth0", peer=2, nsid=1)), {1: gone.key}),
        NsView(gone, error="network namespace 2002 is gone"),
    )
    (row,) = correlate(Snapshot(HOST, views), []).rows
    assert row.peer is None and "could not be read" in (row.unresolved or "")


def test_loopback_only_namespace_still_has_a_row() -> None:
    views = (NsView(ns(HOST.ino), (LO,)), NsView(ns(2001, pids=(42,)), (LO,)))
    snapshot = Snapshot(HOST, views)
    (row,) = correlate(snapshot, [kernel_names(snapshot)]).rows
    assert row.end.link.name == "lo" and row.peer is None
    assert row.end.workload.label == "pid/42 (sleep)"


def test_runtime_claim_beats_netns_name_and_host_claims_are_host_network() -> None:
    pod_ns = ns(2001, names=("cni-1234",))
    views = (NsView(ns(HOST.ino), (LO,)), NsView(pod_ns, (LO, veth(2, "eth0", peer=5, nsid=0)), {0: HOST}))
    snapshot = Snapshot(HOST, views)
    pod = Workload(WorkloadKind.POD, "web", id="abc", namespace="shop", source="cri")
    hostnet = Workload(WorkloadKind.DOCKER, "nodeexp", id="def", source="docker")
    cri = answered("cri", (Claim(pod_ns.key, pod, 40), Claim(HOST, hostnet, 40)))
    report = correlate(snapshot, [kernel_names(snapshot), cri])
    (row,) = report.rows
    assert row.end.workload == pod
    assert report.workloads[pod_ns.key][0] == pod
    assert [w.label for w in report.workloads[pod_ns.key]] == ["pod/shop/web", "netns/cni-1234"]
    assert report.host_network == (hostnet,)


def test_rows_are_sorted_deterministically() -> None:
    views = tuple(NsView(ns(2000 + i, names=(f"n{9 - i}",)), (LO, Link(2, "eth0"))) for i in range(5))
    snapshot = Snapshot(HOST, (NsView(ns(HOST.ino), (LO,)), *views))
    labels = [r.end.workload.label for r in correlate(snapshot, [kernel_names(snapshot)]).rows]
    assert labels == sorted(labels)


class Churning:
    """A host with a bridge and pods coming, going and changing, as the live model sees it: a
    namespace's view is a new object only when something in it changed."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.serial = rng, 10
        self.host_links: dict[int, Link] = {1: LO, 3: Link(3, "br0", kind="bridge")}
        self.host_nsids: dict[int, NsKey] = {}
        self.views: dict[NsKey, NsView] = {}
        self.claims: dict[NsKey, Claim] = {}
        self.owners: tuple[LinkClaim, ...] = ()
        self.host = NsView(ns(HOST.ino), tuple(self.host_links.values()))

    def _host_changed(self) -> None:
        self.host = NsView(self.host.ns, tuple(self.host_links.values()), dict(self.host_nsids))

    def add_pod(self) -> None:
        """A pod with eth0 whose peer is on the bridge."""
        self.serial += 1
        key, index, nsid = NsKey(4, 2000 + self.serial), 100 + self.serial, self.serial
        eth0 = veth(2, "eth0", index, 0)
        self.views[key] = NsView(ns(key.ino, names=(f"p{self.serial}",)), (LO, eth0), {0: HOST})
        self.host_links[index] = veth(index, f"veth{self.serial}", 2, nsid, master=3)
        self.host_nsids[nsid] = key
        self._host_changed()

    def step(self) -> None:
        rng = self.rng
        pods = sorted(self.views)
        if pods and rng.random() < 0.2:
            self.rare_step(pods)
            return
        choice = rng.random()
        if choice < 0.3 or not pods:
            self.add_pod()
        elif choice < 0.45:  # a pod gone; its host veth with it, or (in between) not yet
            key = rng.choice(pods)
            del self.views[key]
            self.claims.pop(key, None)
            if rng.random() < 0.2:  # the host not read again yet: its veth still points there
                return
            self.host_nsids = {n: k for n, k in self.host_nsids.items() if k != key}
            if rng.random() < 0.7:
                for index, link in list(self.host_links.items()):
                    if link.link_netnsid is not None and link.link_netnsid not in self.host_nsids:
                        del self.host_links[index]
            self._host_changed()
        elif choice < 0.55:  # a pod's view read again: renamed, unreadable, or pointing elsewhere
            key = rng.choice(pods)
            view = self.views[key]
            eth0 = view.links[-1] if view.links else veth(2, "eth0", 0, 0)
            how = rng.randrange(3)
            if how == 0:
                self.views[key] = NsView(
                    view.ns, (LO, replace(eth0, name=f"e{rng.randrange(9)}")), view.nsids
                )
            elif how == 1:
                self.views[key] = NsView(view.ns, error="cannot read: gone")
            else:
                self.views[key] = NsView(
                    view.ns, (LO, replace(eth0, link=rng.randrange(90, 130))), view.nsids
                )
        elif choice < 0.6:  # the bridge read again: renamed, or only its MTU changed
            self.host_links[3] = Link(
                3, rng.choice(["br0", "br1"]), kind="bridge", mtu=rng.choice([1500, 9000])
            )
            self._host_changed()
        elif choice < 0.7:  # a host veth renamed, set down, or off the bridge
            veths = [i for i, link in self.host_links.items() if link.kind == "veth"]
            if veths:
                index = rng.choice(veths)
                link = self.host_links[index]
                self.host_links[index] = replace(
                    link,
                    name=f"v{rng.randrange(99)}",
                    operstate=rng.choice(["up", "down"]),
                    master=rng.choice([3, None]),
                )
                self._host_changed()
        elif choice < 0.85:  # the sources say something else of a pod
            key = rng.choice(pods)
            name = f"pod{rng.randrange(5)}"
            self.claims[key] = Claim(key, Workload(WorkloadKind.POD, name, id=name, namespace="ns"), 40)
        elif choice < 0.9:  # a tap held by a VM
            name = f"tap{rng.randrange(3)}"
            self.owners = (LinkClaim(HOST, name, Workload(WorkloadKind.VM, "vm"), 10),)
            self.host_links[50] = Link(50, name, kind="tun")
            self._host_changed()
        elif choice < 0.95:  # a process started or ended in the host, or a pod: the same view else
            key = rng.choice([HOST, *pods])
            view = self.host if key == HOST else self.views[key]
            moved = NsView(
                view.ns._replace(pids=(rng.randrange(1, 9),)), view.links, view.nsids, error=view.error
            )
            if key == HOST:
                self.host = moved
            else:
                self.views[key] = moved
        # else: nothing changed

    def rare_step(self, pods: list[NsKey]) -> None:
        """What the per-link joins must notice although the link objects stay the same."""
        rng = self.rng
        choice = rng.random()
        if choice < 0.25:  # an nsid the host has means another pod now (the kernel reuses them)
            nsids = sorted({link.link_netnsid for link in self.host_links.values() if link.link_netnsid})
            if nsids:
                self.host_nsids[rng.choice(nsids)] = rng.choice(pods)
                self._host_changed()
        elif choice < 0.45:  # a pod left with lo only (lo is its row), or its eth0 back
            key = rng.choice(pods)
            view = self.views[key]
            links = (LO,) if len(view.links) > 1 else (LO, veth(2, "eth0", 100 + key.ino - 2000, 0))
            self.views[key] = NsView(view.ns, links, view.nsids)
        elif choice < 0.55:  # a hand-made view that repeats an ifindex
            key = rng.choice(pods)
            view = self.views[key]
            if view.links:
                twin = replace(view.links[-1], name=f"twin{rng.randrange(3)}")
                self.views[key] = NsView(view.ns, (*view.links, twin), view.nsids)
        elif choice < 0.7:  # the host's process list and one pod's change in one look
            key = rng.choice(pods)
            self.host = self.host._replace(ns=self.host.ns._replace(pids=(rng.randrange(1, 99),)))
            view = self.views[key]
            self.views[key] = view._replace(ns=view.ns._replace(pids=(rng.randrange(1, 9),)))
        elif choice < 0.8:  # a pod's claim withdrawn: named by the kernel again
            self.claims.pop(rng.choice(pods), None)
        elif choice < 0.9:  # the host's view is a new object of the same links (a counters round)
            self.host = NsView(self.host.ns, tuple(self.host.links), dict(self.host.nsids))
        else:  # a pod's eth0 re-read: an equal link, another object
            key = rng.choice(pods)
            view = self.views[key]
            self.views[key] = NsView(view.ns, tuple(replace(link) for link in view.links), view.nsids)

    def snapshot(self) -> tuple[Snapshot, list[SourceResult]]:
        views = sorted([self.host, *self.views.values()], key=lambda view: view.ns.key)
        return Snapshot(HOST, tuple(views)), [answered("cri", list(self.claims.values()), self.owners)]


def test_joining_only_what_changed_gives_what_a_full_join_does() -> None:
    """The live model's correlator (rows kept for namespaces whose inputs are the same objects)
    against the pure one, over random sequences of pods coming, going and changing."""
    for seed in range(100):
        world, joiner = Churning(random.Random(seed)), Correlator()
        for _ in range(120):
            for _ in range(world.rng.randrange(3)):
                world.step()
            snapshot, results = world.snapshot()
            assert joiner(snapshot, results) == correlate(snapshot, results), seed


def test_a_new_view_of_the_host_joins_again_only_its_links_that_changed(monkeypatch: MonkeyPatch) -> None:
    """200 pods; then one comes (a veth in the host, the host's view and process list new) and
    the bridge's MTU changes: the new pod's links, its host veth and the bridge (not a row) are
    joined, no other link; every pod's row shows the host's new Namespace object."""
    from vethpeer import correlate as module

    world = Churning(random.Random(1))
    for _ in range(200):
        world.add_pod()
    joiner = Correlator()
    snapshot, results = world.snapshot()
    joiner(snapshot, results)
    world.add_pod()
    world.host_links[3] = replace(world.host_links[3], mtu=9000)
    world._host_changed()
    world.host = world.host._replace(ns=world.host.ns._replace(pids=(1, 2)))
    joined: list[str] = []
    real = module._link_row

    def counted(view: NsView, link: Link, host: NsKey, index: Any) -> Row | None:
        joined.append(link.name)
        return real(view, link, host, index)

    monkeypatch.setattr(module, "_link_row", counted)
    snapshot, results = world.snapshot()
    report = joiner(snapshot, results)
    assert sorted(joined) == sorted(["lo", "eth0", f"veth{world.serial}", "br0"])
    assert report == correlate(snapshot, results)
    assert all(row.peer is None or row.peer.ns is world.host.ns for row in report.rows)
