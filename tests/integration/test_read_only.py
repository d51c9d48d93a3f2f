"""What a walk changes on the host, as the kernel's own tools see it: nsids, and nothing else.

A link dump makes the kernel number (allocate an nsid for) a peer's namespace that the
dumping namespace had not numbered yet; ``ip link`` does exactly the same. Nothing else
changes: no link, address, route, namespace, mount or existing nsid. This test shows both
halves on namespaces it makes, with ``ip netns list-id`` and ``ip -d link`` as the oracle.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pytest

from tests.integration.conftest import run_vethpeer
from tests.lab import netlab
from tests.lab.netlab import HOST, Ns
from tests.policy import need_root

pytestmark = pytest.mark.integration


class ReadOnlyLab(netlab.Lab):
    prefix: ClassVar[str] = "vq0"


def _state(ns: Ns, prefix: str) -> dict[str, Any]:
    """What a walk could change in ns (in the host: the lab's own links only, other tests may run),
    less the counters that move on their own."""
    links = []
    for link in netlab.ip_json(ns, "-d", "link", "show"):
        if ns.is_host and not link["ifname"].startswith(prefix):
            continue
        link.pop("stats64", None)
        links.append(link)
    names = {link["ifname"] for link in links}
    return {
        "links": links,
        "addresses": [a for a in netlab.ip_json(ns, "addr", "show") if a.get("ifname") in names],
        "routes": [r for r in netlab.ip_json(ns, "route", "show", "table", "all") if r.get("dev") in names],
    }


def _lab_mounts(prefix: str) -> list[str]:
    """The lab's nsfs mount points (its `ip netns` namespaces)."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        points = (line.split()[4] for line in f if " - nsfs " in line)
        return sorted(p for p in points if os.path.basename(p).startswith(prefix))


@pytest.fixture
def lab() -> Any:
    need_root()
    with ReadOnlyLab() as made:
        yield made


def test_a_walk_numbers_peers_as_ip_link_does_and_changes_nothing_else(lab: ReadOnlyLab) -> None:
    # fresh: a veth whose peer is in the host. The host numbered the namespace when the pair was
    # made; the namespace has not numbered the host yet (nothing in it has dumped its links).
    fresh, twin, lonely = lab.netns_many(["fresh", "twin", "lonely"])
    # made with plain `ip link add` (the lab's helpers dump links to learn ifindexes, which numbers)
    for ns, stem in ((fresh, "f"), (twin, "t")):
        lab.host_links.append(lab.link_name(stem))
        netlab.ip_batch([f"link add {lab.link_name(stem)} type veth peer name eth0 netns {ns.name}"])
    netlab.ip_batch([f"netns exec {lonely.name} ip link add in0 type veth peer name in1"])  # one namespace
    for ns in (fresh, twin, lonely):
        assert netlab.nsid_names(ns) == {}, f"{ns} numbers a namespace before any dump"
    netlab.ip_json(twin, "link", "show")  # `ip link` in twin numbers the host, as a walk will in fresh
    twin_ids = netlab.nsid_names(twin)
    assert list(twin_ids.values()) == [None]
    host_ids = netlab.nsid_names(HOST)
    everywhere = (HOST, fresh, twin, lonely)
    before = {str(ns): _state(ns, lab.prefix) for ns in everywhere}
    mounts = _lab_mounts(lab.prefix)

    for args in (("table", "--json"), ("which", lab.link_name("f")), ("doctor", "--all")):
        done = run_vethpeer(*args, "--no-kube")
        assert done.returncode in (0, 6), (args, done.stderr)  # doctor exits 6 on findings (links down)

    # the one change: the namespace whose link points at the host now numbers the host
    # (one nsid, unnamed: the host has no `ip netns` name), exactly as `ip link` did in twin,
    # whose number stays what it was
    assert list(netlab.nsid_names(fresh).values()) == [None]
    assert netlab.nsid_names(twin) == twin_ids
    # a namespace with no peer elsewhere gets no nsid; the host's existing nsids are untouched
    assert netlab.nsid_names(lonely) == {}
    # (an nsid may go away meanwhile: the kernel frees an earlier test's namespaces lazily, and
    # their nsids with them; the lab's own namespaces are alive, so theirs must all be there)
    after_host = netlab.nsid_names(HOST)
    assert all(after_host[k] == v for k, v in host_ids.items() if k in after_host)
    ours = {k: v for k, v in host_ids.items() if v is not None and v.startswith(lab.prefix)}
    assert {k: after_host.get(k) for k in ours} == ours
    # and nothing else changed anywhere
    assert {str(ns): _state(ns, lab.prefix) for ns in everywhere} == before
    assert _lab_mounts(lab.prefix) == mounts
