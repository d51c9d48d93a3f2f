"""A one-shot walk reads the namespaces one after another: a pair made while it runs is seen
from one side only. The walk reads the missing end again where the other end names it, so a
new pod's eth0 gets its host peer, not "ifindex N is gone from the peer's namespace".

Made deterministic: the pairs are created right after the walk has read the host.
On real namespaces and veths, prefixed ``vqr`` and removed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from tests.lab.netlab import Lab, ip_batch
from tests.policy import need_binary, need_root
from vethpeer import walk
from vethpeer.correlate import correlate
from vethpeer.netns import discover

pytestmark = pytest.mark.integration


@dataclass
class VqrLab(Lab):
    prefix: ClassVar[str] = "vqr"


@pytest.fixture
def lab() -> Iterator[VqrLab]:
    need_root()
    need_binary("ip")
    with VqrLab() as built:
        yield built


def test_a_pair_made_after_the_host_was_read_is_joined(lab: VqrLab, monkeypatch: pytest.MonkeyPatch) -> None:
    stems = [f"n{i}" for i in range(3)]
    namespaces = lab.netns_many(stems)
    hosts = [lab.link_name(stem) for stem in stems]
    discovery = discover()
    read = walk._read
    made: list[bool] = []

    def then_make_pairs(ns: Any, *args: Any) -> Any:
        opened = read(ns, *args)
        if ns.key == discovery.host:  # the host is read: now the pairs appear
            lab.host_links.extend(hosts)
            ip_batch(
                f"link add {h} type veth peer name eth0 netns {n.name}"
                for h, n in zip(hosts, namespaces, strict=True)
            )
            made.append(True)
        return opened

    monkeypatch.setattr(walk, "_read", then_make_pairs)
    report = correlate(walk.snapshot(discovery), ())
    assert made
    inodes = {ns.inode for ns in namespaces}
    found = {
        r.end.ns.key[1]: (r.peer.link.name if r.peer else r.unresolved)
        for r in report.rows
        if r.end.ns.key[1] in inodes and r.end.link.name == "eth0"
    }
    assert sorted(found.values()) == sorted(hosts), found
    assert {r.peer.ns.key for r in report.rows if r.peer and r.peer.link.name in hosts} == {discovery.host}
