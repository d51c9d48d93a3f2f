"""The nsid resolution as a pure function, with a fake "ask the kernel" callable."""

from __future__ import annotations

import random

from vethpeer.model import Link, NsKey
from vethpeer.nsids import resolve, unmatched, unresolved

HOST, A, B, C = NsKey(4, 1), NsKey(4, 10), NsKey(4, 11), NsKey(4, 12)


class Kernel:
    """What RTM_GETNSID would answer: the nsid each observer gives each target (None: none)."""

    def __init__(self, table: dict[tuple[NsKey, NsKey], int]) -> None:
        self.table = table
        self.asked: list[tuple[NsKey, NsKey]] = []

    def __call__(self, observer: NsKey, target: NsKey) -> int | None:
        self.asked.append((observer, target))
        return self.table.get((observer, target))


def veth(index: int, peer: int, nsid: int | None, name: str = "eth0") -> Link:
    return Link(index, name, kind="veth", link=peer, link_netnsid=nsid)


def test_pods_whose_peers_are_in_the_host_cost_one_question_each() -> None:
    links = {
        HOST: [veth(10, 2, 0, "vethA"), veth(11, 2, 1, "vethB")],
        A: [veth(2, 10, 0)],  # every pod's eth0 is ifindex 2, and each calls the host nsid 0
        B: [veth(2, 11, 0)],
    }
    kernel = Kernel({(A, HOST): 0, (B, HOST): 0})
    resolved = resolve(links, HOST, kernel)
    assert resolved[A] == {0: HOST} and resolved[B] == {0: HOST}
    # the host's nsids are derived from the verified pairs, not asked
    assert resolved[HOST] == {0: A, 1: B}
    assert sorted(kernel.asked) == [(A, HOST), (B, HOST)]


def test_a_pair_between_two_non_host_namespaces_is_verified() -> None:
    links = {HOST: [], A: [veth(2, 2, 5)], B: [veth(2, 2, 7)]}
    kernel = Kernel({(A, B): 5, (B, A): 7})
    resolved = resolve(links, HOST, kernel)
    assert resolved[A] == {5: B} and resolved[B] == {7: A}


def test_identical_nsids_and_indexes_in_isolated_pairs_are_told_apart() -> None:
    d = NsKey(4, 13)
    links = {HOST: [], A: [veth(2, 2, 0)], B: [veth(2, 2, 0)], C: [veth(2, 2, 0)], d: [veth(2, 2, 0)]}
    kernel = Kernel({(A, B): 0, (B, A): 0, (C, d): 0, (d, C): 0})
    resolved = resolve(links, HOST, kernel)
    assert resolved[A] == {0: B} and resolved[B] == {0: A}
    assert resolved[C] == {0: d} and resolved[d] == {0: C}


def test_an_unverifiable_pair_is_never_guessed() -> None:
    links = {HOST: [veth(10, 2, 3, "vethX")], A: [veth(2, 10, 0)]}
    kernel = Kernel({})  # A gives the host no nsid the kernel admits to, nobody gives A nsid 3
    resolved = resolve(links, HOST, kernel)
    assert resolved == {HOST: {}, A: {}}


def test_a_macvlan_parent_in_another_namespace_is_found_by_the_exhaustive_pass() -> None:
    macvlan = Link(2, "eth0", kind="macvlan", link=7, link_netnsid=4)
    links = {HOST: [Link(7, "br0", kind="bridge")], A: [macvlan], B: []}
    kernel = Kernel({(A, HOST): 4})
    assert resolve(links, HOST, kernel)[A] == {4: HOST}


def test_a_pair_end_that_does_not_point_back_teaches_nothing() -> None:
    links = {
        HOST: [veth(10, 3, 0, "vethA")],  # points at ifindex 3 in A, not at A's eth0 (2)
        A: [veth(2, 10, 0)],
    }
    kernel = Kernel({(A, HOST): 0})
    resolved = resolve(links, HOST, kernel)
    assert resolved[A] == {0: HOST}
    assert resolved[HOST] == {}  # not derived from a pair that does not point back
    assert (HOST, A) in kernel.asked  # only the kernel could have said, and it did not


def test_confirmed_derivations_are_the_kernels_when_two_reads_disagree() -> None:
    """The host read while B's eth0 (ifindex 2) was its vethB's peer; B's eth0 then moved to A,
    keeping ifindex 2, before A was read. Both reads point at each other: a fresh resolution
    derives that the host's nsid 1 means A (wrong for a look). Confirmed, it is the kernel's
    answer (B), and both ends are unmatched (read again)."""
    links = {HOST: [veth(10, 2, 1, "vethB")], A: [veth(2, 10, 0)], B: []}
    kernel = Kernel({(A, HOST): 0, (HOST, A): 5, (HOST, B): 1})
    assert resolve(links, HOST, kernel)[HOST] == {1: A}  # the accident, for one look
    resolved = resolve(links, HOST, kernel, confirm=True)
    assert resolved[HOST][1] == B
    assert unmatched(links, resolved) == {HOST: {10}, B: {2}}


def test_unmatched_names_every_end_seen_from_one_side_only() -> None:
    """Three pods read after the host, whose host ends the host's read came too early for: all
    three ends are named (not just the first), and nothing else is."""
    links = {
        HOST: [veth(10, 2, 0, "vethA")],
        A: [veth(2, 10, 0)],
        B: [veth(2, 11, 0)],  # host end 11 missing
        C: [veth(2, 12, 0)],  # host end 12 missing
        NsKey(4, 13): [veth(2, 13, 0)],  # host end 13 missing
    }
    resolved = {HOST: {0: A}, A: {0: HOST}, B: {0: HOST}, C: {0: HOST}, NsKey(4, 13): {0: HOST}}
    assert unmatched(links, resolved) == {HOST: {11, 12, 13}}


def test_unmatched_names_an_end_pointing_elsewhere_and_skips_unplaced_or_local_pairs() -> None:
    links = {
        HOST: [veth(10, 3, 0, "vethA"), veth(20, 21, None, "x0"), veth(21, 20, None, "x1")],
        A: [veth(2, 10, 0)],  # host end 10 points at ifindex 3, not 2: moved meanwhile
        B: [veth(2, 99, 7)],  # nsid 7 unresolved: nothing to read
    }
    resolved = {HOST: {0: A}, A: {0: HOST}, B: {}}
    assert unmatched(links, resolved) == {HOST: {10}, A: {3}}  # both sides are read again
    links[HOST][0] = veth(10, 2, 1, "vethA")  # points back, but its nsid 1 means B, not A
    # (and B's eth0, which vethA names, points elsewhere: read again too)
    assert unmatched(links, {**resolved, HOST: {0: A, 1: B}}) == {HOST: {10}, B: {2}}
    links[HOST][0] = veth(10, 2, 0, "vethA")
    assert unmatched(links, resolved) == {}


class World:
    """Namespaces and veth pairs (and macvlans on a host parent) as the kernel keeps them: an nsid
    per (observer, target), the lowest free one, given when a link needs it and kept while both live."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.serial = rng, 100
        self.links: dict[NsKey, dict[int, Link]] = {HOST: {1: Link(1, "eth0", kind="device")}}
        self.nsids: dict[tuple[NsKey, NsKey], int] = {}

    def nsid(self, observer: NsKey, target: NsKey) -> int:
        if (observer, target) not in self.nsids:
            taken = {n for (o, _t), n in self.nsids.items() if o == observer}
            self.nsids[(observer, target)] = min(set(range(len(taken) + 1)) - taken)
        return self.nsids[(observer, target)]

    def index(self, key: NsKey) -> int:
        self.serial += 1
        return self.serial if key == HOST else max(self.links[key], default=1) + 1

    def step(self) -> None:
        rng, keys = self.rng, list(self.links)
        choice = rng.random()
        if choice < 0.25 or len(keys) < 3:
            self.links[NsKey(4, 1000 + rng.randrange(10**6))] = {}
        elif choice < 0.4:
            self.remove(rng.choice(keys[1:]))
        elif choice < 0.75:
            a, b = rng.choice(keys), rng.choice(keys)
            ia = self.index(a)
            self.links[a][ia] = Link(ia, "a", kind="veth")
            ib = self.index(b)
            self.links[b][ib] = veth(ib, ia, None if a == b else self.nsid(b, a), "b")
            self.links[a][ia] = veth(ia, ib, None if a == b else self.nsid(a, b), "a")
        elif choice < 0.85:
            key = rng.choice(keys[1:])
            index = self.index(key)
            self.links[key][index] = Link(
                index, "mv", kind="macvlan", link=1, link_netnsid=self.nsid(key, HOST)
            )
        else:
            key = rng.choice(keys)
            pairs = [link for link in self.links[key].values() if link.kind == "veth"]
            if pairs:
                self.unpair(key, rng.choice(pairs))

    def unpair(self, key: NsKey, link: Link) -> None:
        del self.links[key][link.index]
        where = (
            key
            if link.link_netnsid is None
            else next(t for (o, t), n in self.nsids.items() if o == key and n == link.link_netnsid)
        )
        self.links[where].pop(link.link or 0, None)

    def remove(self, key: NsKey) -> None:
        for link in [link for link in self.links[key].values() if link.kind == "veth"]:
            if link.index in self.links[key]:
                self.unpair(key, link)
        del self.links[key]
        self.nsids = {(o, t): n for (o, t), n in self.nsids.items() if key not in (o, t)}

    def ask(self, observer: NsKey, target: NsKey) -> int | None:
        return self.nsids.get((observer, target))


def test_resolving_only_what_changed_means_what_a_fresh_resolution_does() -> None:
    """The live model's way (known answers, only the namespaces whose links changed looked at
    again) against a fresh resolution, over random sequences of namespaces and pairs."""
    for seed in range(40):
        world = World(random.Random(seed))
        known: dict[NsKey, dict[int, NsKey]] | None = None
        seen: dict[NsKey, tuple[Link, ...]] = {}
        incomplete: set[NsKey] = set()
        for _ in range(60):
            world.step()
            links = {
                key: seen[key]
                if key in seen and seen[key] == tuple(found.values())
                else tuple(found.values())
                for key, found in world.links.items()
            }
            if known is not None:  # what the walker forgets of a namespace gone, and who knew it
                incomplete |= {
                    o for o, m in known.items() if o in links and not set(m.values()) <= links.keys()
                }
                known = {
                    o: {n: t for n, t in m.items() if t in links} for o, m in known.items() if o in links
                }
            todo = {key for key in links if seen.get(key) is not links[key]} | (incomplete & links.keys())
            fresh = resolve(links, HOST, world.ask)
            kept = resolve(links, HOST, world.ask, known, todo if known is not None else None, confirm=True)
            for key, found in links.items():
                for link in found:
                    if link.link_netnsid is not None:
                        assert kept[key].get(link.link_netnsid) == fresh[key].get(link.link_netnsid), (
                            seed,
                            key,
                            link,
                        )
            incomplete = unresolved(links, kept, todo)
            known, seen = kept, links
