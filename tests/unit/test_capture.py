"""capture: choosing the host-side interface(s) and building the tcpdump command line."""

from __future__ import annotations

import pytest

from vethpeer.commands.capture import TcpdumpMissing, candidates, choose, command, execute, split_args
from vethpeer.commands.options import split_argv as split_tcpdump_args
from vethpeer.environment import Environment
from vethpeer.errors import NotFound, UsageError
from vethpeer.targets import Match, resolve

from .builders import HOST, Topo


def two_networks() -> Topo:
    t = Topo()
    a = t.netns("vpo-a")
    t.veth(a, "eth0", HOST, "vpoh-a0")
    t.veth(a, "eth1", HOST, "vpoh-a1")
    b = t.netns("vpo-b")
    t.veth(b, "eth0", HOST, "vpoh-b0")
    return t


def test_one_interface_is_chosen_without_asking() -> None:
    t = two_networks()
    report = t.report()
    chosen = choose(resolve(report, "vpo-b"), report)
    assert [c.ifname for c in chosen] == ["vpoh-b0"]
    assert command(chosen, ["-n", "icmp"]) == ["tcpdump", "-i", "vpoh-b0", "-n", "icmp"]


def test_several_interfaces_need_a_choice() -> None:
    t = two_networks()
    report = t.report()
    match = resolve(report, "vpo-a")
    with pytest.raises(UsageError, match="--interface") as info:
        choose(match, report)
    assert "vpoh-a0" in (info.value.hint or "") and "vpoh-a1" in (info.value.hint or "")
    assert [c.ifname for c in choose(match, report, interface="vpoh-a1")] == ["vpoh-a1"]
    assert [c.ifname for c in choose(match, report, interface="eth1")] == ["vpoh-a1"]  # workload's name
    with pytest.raises(UsageError):
        choose(match, report, interface="vpoh-b0")


def test_all_uses_any_with_an_ifindex_filter_and_keeps_the_user_filter() -> None:
    t = two_networks()
    report = t.report()
    chosen = choose(resolve(report, "vpo-a"), report, everything=True)
    i0, i1 = (c.ifindex for c in chosen)
    argv = command(chosen, ["-n", "-c", "5", "icmp", "or", "arp", "-w", "/tmp/x.pcap"])
    assert argv == [
        "tcpdump", "-i", "any", "-y", "LINUX_SLL2", "-n", "-c", "5", "-w", "/tmp/x.pcap",
        f"(ifindex {i0} or ifindex {i1}) and (icmp or arp)",
    ]  # fmt: skip
    assert command(chosen, ["-nv"])[-1] == f"(ifindex {i0} or ifindex {i1})"


def test_all_refuses_a_device_of_the_users() -> None:
    with pytest.raises(UsageError, match="-i"):
        split_args(["-i", "eth0"])
    with pytest.raises(UsageError, match="--linktype"):
        split_args(["--linktype=EN10MB"])
    with pytest.raises(UsageError, match="cannot read"):
        split_args(["--no-such-option"])
    assert split_args(["--snapshot-length=96", "-s", "0", "port", "53"]) == (
        ["--snapshot-length", "96", "-s", "0"],
        ["port", "53"],
    )


def test_no_host_side_interface_says_where_to_capture_instead() -> None:
    t = Topo()
    a = t.netns("vpo-a")
    b = t.netns("vpo-b")
    t.veth(a, "x0", b, "y0")
    report = t.report()
    with pytest.raises(NotFound) as info:
        choose(resolve(report, "vpo-a"), report)
    assert "ip netns exec vpo-a tcpdump -i x0" in (info.value.hint or "")


def test_host_network_target() -> None:
    t = two_networks()
    report = t.report()
    match = Match("host", "pid", (), host_network=(report.rows[0].end.workload,))
    with pytest.raises(NotFound, match="host network"):
        choose(match, report)


def test_candidates_dedupe() -> None:
    t = two_networks()
    report = t.report()
    rows = [r for r in report.rows if r.end.link.name == "eth0"]
    assert [c.ifname for c in candidates(rows + rows, HOST)] == ["vpoh-a0", "vpoh-b0"]


def test_missing_tcpdump_is_a_clear_error() -> None:
    t = two_networks()
    report = t.report()
    chosen = choose(resolve(report, "vpo-b"), report)
    with pytest.raises(TcpdumpMissing, match="tcpdump is not installed"):
        execute(["vpo-no-such-tcpdump", "-i", "x"], chosen, Environment())


def test_split_tcpdump_args() -> None:
    assert split_tcpdump_args(["capture", "web", "--", "-n", "icmp"]) == (["capture", "web"], ["-n", "icmp"])
    assert split_tcpdump_args(["--debug", "capture", "web"]) == (["--debug", "capture", "web"], [])
    assert split_tcpdump_args(["which", "--", "-x"]) == (["which", "--", "-x"], [])
