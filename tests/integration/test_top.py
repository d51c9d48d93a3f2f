"""`vethpeer top` on real traffic: iperf3 between the lab's namespaces on its own bridge.

Needs root, iproute2, iperf3 (Debian package), busybox (ping) and tmux. Every object
is prefixed ``vpl`` and removed afterwards; iperf3 listens on a lab address inside a
lab namespace (port 19301), so no traffic leaves the lab.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import ROOT, run_vethpeer
from tests.lab import netlab
from tests.lab.live_lab import LiveLab, Member, bridged_members, forwarding, in_ns, kill, wait_for
from tests.policy import need_binary

pytestmark = pytest.mark.integration
PORT = "19301"


@pytest.fixture
def traffic_lab() -> Iterator[tuple[LiveLab, list[Member]]]:
    need_binary("iperf3")
    with LiveLab() as lab:
        bridge, members = bridged_members(lab, ["a", "b", "c"])
        with forwarding(bridge, f"vpl-{lab.tag}"):
            yield lab, members


@contextlib.contextmanager
def dropped_pings(sender: Member, to: Member, seconds: int) -> Iterator[None]:
    """``sender``'s eth0 at MTU 9000 (its host end stays at 1500) pings ``to`` with 4000-byte
    packets, 50 a second, for ``seconds``: the veth drops every one (``sender``'s eth0 tx_dropped)."""
    busybox = need_binary("busybox")
    subprocess.run(["ip", "-n", sender.ns.name or "", "link", "set", "eth0", "mtu", "9000"], check=True)
    pinger = subprocess.Popen(
        in_ns(sender.ns, busybox, "ping", "-q", "-s", "4000", "-i", "0.02", "-w", str(seconds), to.address),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        kill(pinger)


def by_workload(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["workload"]["label"]: entry for entry in document["interfaces"]}


def test_iperf3_sender_is_top_talker_and_rate_agrees(traffic_lab: tuple[LiveLab, list[Member]]) -> None:
    """A paced iperf3 stream (50 Mbit/s) from a to b: `top --once --json --sort tx` puts a first,
    and its TX rate (bytes on the wire) is within 10% of iperf3's own per-second figures."""
    _lab, (a, b, _c) = traffic_lab
    server = subprocess.Popen(
        in_ns(b.ns, "iperf3", "-s", "-1", "-B", b.address, "-p", PORT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        client = subprocess.Popen(
            in_ns(a.ns, "iperf3", "-c", b.address, "-p", PORT, "-t", "15", "-b", "50M", "-J"),
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.0)  # past TCP's start
        top = run_vethpeer("top", "--once", "-d", "2", "--json", "--sort", "tx")
        assert client.poll() is None, "the sample must fall inside the stream (a slow machine?)"
        out, _ = client.communicate(timeout=30)
    finally:
        kill(server)
    assert top.returncode == 0, top.stderr
    document = top.json()
    assert document["directions"] == "workload"
    first = document["interfaces"][0]
    assert first["workload"]["label"] == f"netns/{a.ns.name}"
    assert first["peer"]["ifname"] == a.pair.a.ifname
    report = json.loads(out)
    # iperf3's own per-second figures after TCP's start (our window is inside them)
    steady = [i["sum"]["bits_per_second"] / 8 for i in report["intervals"] if i["sum"]["start"] >= 1.5]
    iperf_bytes_per_s = sum(steady) / len(steady)
    ours = first["rates"]["bytes_per_s"]["tx"]
    assert abs(ours - iperf_bytes_per_s) / iperf_bytes_per_s < 0.10, (ours, iperf_bytes_per_s)
    # the receiver's RX is the same stream
    rows = by_workload(document)
    received = rows[f"netns/{b.ns.name}"]["rates"]["bytes_per_s"]["rx"]
    assert abs(received - ours) / ours < 0.10, (received, ours)
    # the host-side device's own counters mirror it: its RX is the workload's TX (read from
    # another namespace, at another moment of the walk: a looser bound on a busy machine)
    peer_rx = first["peer_rates"]["bytes_per_s"]["rx"]
    assert abs(peer_rx - ours) / ours < 0.15, (peer_rx, ours)


def test_drops_on_that_workload_only(traffic_lab: tuple[LiveLab, list[Member]]) -> None:
    """c's eth0 has MTU 9000, its host end 1500: every big ping is dropped by the veth
    (counted as c's eth0 tx_dropped). Only c shows a drop rate."""
    _lab, (a, b, c) = traffic_lab
    with dropped_pings(c, b, seconds=6):
        time.sleep(1.0)
        top = run_vethpeer("top", "--once", "-d", "2", "--json")
    assert top.returncode == 0, top.stderr
    rows = by_workload(top.json())
    dropping = rows[f"netns/{c.ns.name}"]["rates"]["dropped_per_s"]
    assert dropping["tx"] > 20, dropping  # 50 pings a second
    for quiet in (a, b):
        rates = rows[f"netns/{quiet.ns.name}"]["rates"]["dropped_per_s"]
        assert rates == {"rx": 0.0, "tx": 0.0}, (quiet.ns.name, rates)
    text = run_vethpeer("top", "--once", "-d", "1", f"netns/{c.ns.name}")
    assert text.returncode == 0, text.stderr
    assert "workload" in text.stdout.splitlines()[0]
    assert f"netns/{c.ns.name}" in text.stdout and f"netns/{a.ns.name}" not in text.stdout


def _pane(session: str) -> str:
    done = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True)
    return done.stdout


def test_live_screen_in_tmux(traffic_lab: tuple[LiveLab, list[Member]]) -> None:
    """The full screen, driven for real in tmux: it shows the lab's rows, s changes the sort,
    / filters, p pauses, q quits with status 0."""
    tmux = need_binary("tmux")
    lab, (a, b, _c) = traffic_lab
    session = f"vpl-top-{lab.tag}"
    env = f"PYTHONPATH={shlex.quote(str(ROOT))} NO_COLOR=1 TERM=xterm-256color"
    top = f"env {env} {shlex.quote(sys.executable)} -m vethpeer top -d 0.5"
    command = f"cd {shlex.quote(str(ROOT))} && {top}; echo EXITED $?; sleep 60"
    subprocess.run([tmux, "new-session", "-d", "-s", session, "-x", "200", "-y", "60", command], check=True)
    try:
        wait_for(lambda: "sort total" in _pane(session), 30, "the screen")
        subprocess.run([tmux, "send-keys", "-t", session, "s"], check=True)
        wait_for(lambda: "sort rx" in _pane(session), 20, "sort rx")
        subprocess.run([tmux, "send-keys", "-t", session, "-l", f"/netns/{b.ns.name}"], check=True)
        subprocess.run([tmux, "send-keys", "-t", session, "Enter"], check=True)
        wait_for(
            lambda: (
                f"filter 'netns/{b.ns.name}'" in _pane(session) and f"netns/{a.ns.name}" not in _pane(session)
            ),
            20,
            "the filter",
        )
        assert f"netns/{b.ns.name}" in _pane(session)
        subprocess.run([tmux, "send-keys", "-t", session, "p"], check=True)
        wait_for(lambda: "PAUSED" in _pane(session), 20, "pause")
        subprocess.run([tmux, "send-keys", "-t", session, "q"], check=True)
        wait_for(lambda: "EXITED 0" in _pane(session), 20, "quit")
    finally:
        subprocess.run([tmux, "kill-session", "-t", session], check=False, capture_output=True)


def test_doctor_sample_names_the_dropping_end_and_the_mtu(traffic_lab: tuple[LiveLab, list[Member]]) -> None:
    """`doctor --sample 2` on the same MTU-made drops: a drops-rising finding on c's eth0 only,
    with the MTU as the cause, the confirming commands and the fix (printed, not run)."""
    _lab, (_a, b, c) = traffic_lab
    with dropped_pings(c, b, seconds=8):
        time.sleep(0.5)
        done = run_vethpeer("doctor", "--sample", "2", "--json")
    assert done.returncode == 6, done.stderr
    rising = [f for f in done.json()["findings"] if f["check"] == "drops-rising"]
    mine = [f for f in rising if f["interface"]["workload"].startswith(f"netns/vpl-{_lab.tag}-")]
    assert [f["interface"]["workload"] for f in mine] == [f"netns/{c.ns.name}"], mine
    finding = mine[0]
    assert finding["interface"]["ifname"] == "eth0"
    assert any("MTU differs: eth0 9000" in line for line in finding["evidence"]), finding["evidence"]
    assert f"ip -n {c.ns.name} -s -s link show dev eth0" in finding["confirm"]
    assert f"ip netns exec {c.ns.name} tc -s qdisc show dev eth0" in finding["confirm"]
    assert f"ip -n {c.ns.name} link set dev eth0 mtu 1500" in finding["fix"]
    mtu = subprocess.run(
        ["ip", "-n", c.ns.name or "", "-j", "link", "show", "eth0"], capture_output=True, text=True
    )
    assert json.loads(mtu.stdout)[0]["mtu"] == 9000  # nothing was fixed


# ---------------------------------------------------------------- top on the live model


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (("--strict", "--docker-host", "unix:///nonexistent/vqc-docker.sock"), 7, "docker: unavailable"),
        (("--json", "--strict", "--docker-host", "unix:///nonexistent/vqc-docker.sock"), 7, "docker"),
    ],
)
def test_a_failed_model_is_one_line_and_its_exit_status(
    argv: tuple[str, ...], status: int, says: str
) -> None:
    """The live model's thread stops (here: --strict and a Docker socket that is not there):
    `top` says why once, on one line, and exits with that error's status, as a walk would."""
    from tests.integration.test_core import one_line_error

    done = run_vethpeer("top", "--once", "-d", "0.5", *argv)
    assert done.returncode == status, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert says in one_line_error(done)


def test_without_privilege_exits_5() -> None:
    """The model's walker checks the privilege on its own thread; `top` still exits 5, one line."""
    from tests.integration.test_core import one_line_error

    done = run_vethpeer("top", "--once", "-d", "0.5", no_capabilities=True)
    assert done.returncode == 5, done.stderr
    assert "CAP_SYS_ADMIN" in one_line_error(done)


def test_each_refresh_reads_the_counters_after_it_asks_and_resolves_the_target_again() -> None:
    """In-process, as the live screen runs: every namespace's counters in a refresh were read
    after it asked (the rates' sharp times); a target that appears later is found by a later
    refresh (resolved again each time), and its rates come from the counters of its namespace."""
    import argparse
    import io

    from vethpeer.collect import Request
    from vethpeer.commands import top
    from vethpeer.environment import Environment
    from vethpeer.errors import NotFound
    from vethpeer.live.reading import first

    env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
    args = argparse.Namespace(target=None, namespace=None)
    with LiveLab() as lab:
        ns = lab.ns_name("late")
        model = top.live_model(Request(stats=True, ovs=False), env, addresses=False)  # as `top` makes it
        model.start()
        try:
            first(model)
            asked = time.monotonic()
            state = top.counted(model, 30)
            assert state.read and min(state.read.values()) >= asked
            older = top.sampled(state)
            assert older.at >= asked
            args.target = f"netns/{ns}"
            measured = top.measure(model, older, 30)
            assert measured is not None
            report, older, found = measured
            with pytest.raises(NotFound):
                top.select_rows(found, report, args, env)
            late = lab.netns("late")
            lab.veth(late, "eth0", netlab.HOST, lab.link_name("late"))
            mine: list[Any] = []
            deadline = time.monotonic() + 10
            while not mine and time.monotonic() < deadline:
                measured = top.measure(model, older, 30)
                assert measured is not None
                report, older, found = measured
                with contextlib.suppress(NotFound):
                    mine = top.select_rows(found, report, args, env)
            assert [r.row.end.link.name for r in mine] == ["eth0"], mine
            assert mine[0].row.peer is not None and mine[0].row.peer.link.name == lab.link_name("late")
        finally:
            model.stop()
