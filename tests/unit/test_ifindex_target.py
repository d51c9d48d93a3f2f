"""`which ifN`: the host interface with ifindex N, as `eth0@ifN` inside a container names it."""

from __future__ import annotations

import pytest

from vethpeer.errors import NotFound
from vethpeer.model import Link
from vethpeer.targets import ifindex, resolve

from .builders import HOST, Topo


def _topo() -> tuple[Topo, Link, Link]:
    topo = Topo()
    web = topo.netns("web")
    host_end, _eth0 = topo.veth(HOST, "veth1a2b", web, "eth0")
    lonely = topo.bridge(HOST, "br0")
    return topo, host_end, lonely


def test_ifn_names_the_host_interface_with_that_ifindex() -> None:
    topo, host_end, _ = _topo()
    match = resolve(topo.report(), f"if{host_end.index}")
    assert match.how == "host ifindex"
    assert [(r.end.link.name, r.end.workload.label) for r in match.rows] == [("eth0", "netns/web")]


def test_ifn_of_a_host_interface_with_nothing_behind_it_says_so() -> None:
    topo, _, lonely = _topo()
    with pytest.raises(NotFound, match=f"if{lonely.index} is host interface br0"):
        resolve(topo.report(), f"if{lonely.index}")


def test_an_interface_named_like_an_ifindex_is_found_by_its_name_first() -> None:
    topo, host_end, _ = _topo()
    web2 = topo.netns("web2")
    topo.veth(HOST, f"if{host_end.index}", web2, "eth0")  # a host interface literally named ifN
    match = resolve(topo.report(), f"if{host_end.index}")
    assert (match.how, match.rows[0].end.workload.label) == ("host interface", "netns/web2")


def test_ifn_of_no_host_interface_goes_on_to_the_other_kinds() -> None:
    topo, _, _ = _topo()
    with pytest.raises(NotFound, match="nothing named 'if9999'"):
        resolve(topo.report(), "if9999")


@pytest.mark.parametrize(
    ("target", "index"),
    [
        ("if1", 1),
        ("if2147483647", 2147483647),
        ("if0", None),
        ("if01", None),
        ("if2147483648", None),
        ("if", None),
        ("eth0@if5", None),
        ("IF5", None),
        ("if5 ", None),
        ("if-5", None),
    ],
)
def test_what_an_ifindex_target_is(target: str, index: int | None) -> None:
    assert ifindex(target) == index
