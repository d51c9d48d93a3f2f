"""The real CLI (`python -m vethpeer`) on real namespaces: exact peers, `which`, exit codes.

Every topology is built by tests/lab/netlab.py with the stock ``ip`` tool, checked
against the kernel's own view (``ip -j -d link``: link_index / link_netnsid, and
``ip netns list-id``), and only then compared with what vethpeer prints. Peers are
matched on (netns inode, ifname, ifindex): never on an ifindex alone.

Needs: root, iproute2, util-linux (unshare, setpriv).
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import contract
from tests.integration.conftest import Cli, run_vethpeer
from tests.lab import netlab
from tests.lab.netlab import HOST, End, Lab, Ns, Pair, Topology

pytestmark = pytest.mark.integration

Entry = dict[str, Any]
Key = tuple[int, str]  # (netns inode, ifname)


# ---------------------------------------------------------------- helpers


def table_json(*extra: str) -> dict[str, Any]:
    done = run_vethpeer("table", "--json", *extra)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    doc: dict[str, Any] = done.json()
    return doc


def by_key(entries: Iterable[Entry]) -> dict[Key, Entry]:
    found: dict[Key, Entry] = {}
    for entry in entries:
        key = (entry["netns"]["inode"], entry["ifname"])
        assert key not in found, f"two rows for {key}"
        found[key] = entry
    return found


def workload_label(ns: Ns) -> str:
    if ns.is_host:
        return "host"
    if ns.name is not None:
        return f"netns/{ns.name}"
    return f"pid/{ns.pid} (sleep)"


def is_row(end: End, peer: End, relation: str) -> bool:
    """Rows are interfaces inside workload namespaces, plus host veths whose peer is in the host too."""
    return not end.ns.is_host or (relation == "veth" and peer.ns.is_host)


def expected_rows(topologies: Iterable[Topology]) -> dict[Key, tuple[End, End, Pair]]:
    rows = {}
    for topo in topologies:
        for pair in topo.pairs:
            for end, peer in pair.directed():
                if is_row(end, peer, pair.relation):
                    rows[(end.ns.inode, end.ifname)] = (end, peer, pair)
    return rows


def assert_exact(entry: Entry, end: End, peer: End, relation: str) -> None:
    """One JSON entry against the construction and the kernel (`ip -j -d link`)."""
    where = f"{end.ns}:{end.ifname}"
    kernel = netlab.kernel_links(end.ns)[end.ifname]
    kernel_peer = netlab.kernel_links(peer.ns)[peer.ifname]
    assert entry["ifindex"] == end.ifindex == kernel["ifindex"], where
    assert entry["netns"]["inode"] == end.ns.inode, where
    assert entry["workload"]["label"] == workload_label(end.ns), where
    assert entry["mac"] == kernel["address"], where
    assert entry["mtu"] == kernel["mtu"], where
    assert entry["state"] == kernel["operstate"].lower(), where
    assert sorted(entry["addresses"]) == sorted(kernel.get("addresses", [])), where
    assert entry["master"] == kernel.get("master"), where
    assert entry["unresolved_peer"] is None, (where, entry["unresolved_peer"])
    got = entry["peer"]
    assert got is not None, where
    assert got["relation"] == relation, where
    assert (got["netns"]["inode"], got["ifname"], got["ifindex"]) == (
        peer.ns.inode,
        peer.ifname,
        peer.ifindex,
    ), where
    assert got["mac"] == kernel_peer["address"], where
    assert got["master"] == kernel_peer.get("master"), where
    assert got["workload"]["label"] == workload_label(peer.ns), where
    assert got["kind"] == kernel_peer.get("linkinfo", {}).get("info_kind"), where


def assert_topologies(doc: dict[str, Any], topologies: list[Topology]) -> int:
    """Every expected row present and exact; no other row in the lab's namespaces."""
    rows = by_key(doc["interfaces"])
    expected = expected_rows(topologies)
    for topo in topologies:
        for pair in topo.pairs:
            netlab.check_pair(pair)  # the kernel agrees with the construction
    for key, (end, peer, pair) in expected.items():
        assert key in rows, f"no row for {end.ns}:{end.ifname}"
        assert_exact(rows[key], end, peer, pair.relation)
    inodes = {ns.inode for topo in topologies for ns in topo.namespaces}
    extra = {key for key in rows if key[0] in inodes} - expected.keys()
    assert not extra, f"unexpected rows: {extra}"
    return len(expected)


def one_line_error(done: Cli) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("vethpeer: "), lines[0]
    return lines[0]


# ---------------------------------------------------------------- table --json: exact peers

BUILDERS: dict[str, Callable[[Lab], Topology]] = {
    "straight_pair": netlab.straight_pair,
    "host_pair": netlab.host_pair,
    "bridged": netlab.bridged,
    "router": netlab.router,
    "both_in_host": netlab.both_in_host,
    "both_in_one_ns": netlab.both_in_one_ns,
    "macvlan": netlab.macvlan,
    "process_held": netlab.process_held,
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_table_json_exact_peers(lab: Lab, name: str) -> None:
    topo = BUILDERS[name](lab)
    doc = table_json()
    assert doc["schema_version"] == 1
    assert isinstance(doc["vethpeer_version"], str) and doc["generated_at"]
    assert all({"name", "status"} <= source.keys() for source in doc["sources"])
    assert assert_topologies(doc, [topo]) >= 1


def test_all_topologies_at_once(lab: Lab) -> None:
    topologies = list(netlab.everything(lab))
    assert assert_topologies(table_json(), topologies) == 16


def test_bridge_is_reported_for_the_host_end(lab: Lab) -> None:
    topo = netlab.bridged(lab, 3)
    rows = by_key(table_json()["interfaces"])
    bridge = topo.bridges[0].ifname
    for pair in topo.pairs:
        peer = rows[(pair.b.ns.inode, "eth0")]["peer"]
        assert peer["ifname"] == pair.a.ifname
        assert peer["master"] == bridge


def test_fifty_five_namespaces_with_the_same_eth0_ifindex(lab: Lab) -> None:
    topo = netlab.same_ifindex(lab, 55)
    assert len({pair.b.ifindex for pair in topo.pairs}) == 1  # the trap: every eth0 has one index
    doc = table_json()
    assert assert_topologies(doc, [topo]) == 55
    rows = by_key(doc["interfaces"])
    peers = {rows[(pair.b.ns.inode, "eth0")]["peer"]["ifname"] for pair in topo.pairs}
    assert len(peers) == 55  # 55 different host veths, not one veth printed 55 times


def test_twenty_isolated_pairs_with_identical_nsids_and_ifindexes(lab: Lab) -> None:
    topo = netlab.isolated_pairs(lab, 20)
    assert {tuple(netlab.nsid_names(ns)) for ns in topo.namespaces} == {(0,)}
    assert assert_topologies(table_json(), [topo]) == 40


def test_peer_in_an_undiscoverable_namespace_is_unresolved(lab: Lab) -> None:
    """Held only by another process's fd: no mount, no process inside. Say so; never guess."""
    pair = netlab.host_pair(lab).pairs[0]
    lab.hold_by_fd_only(pair.b.ns)
    link = netlab.kernel_links(HOST)[pair.a.ifname]
    entry = by_key(table_json()["interfaces"])[(HOST.inode, pair.a.ifname)]
    assert entry["peer"] is None
    assert entry["unresolved_peer"]["link_netnsid"] == link["link_netnsid"]
    assert entry["unresolved_peer"]["link_ifindex"] == link["link_index"] == pair.b.ifindex
    assert entry["unresolved_peer"]["reason"]
    done = run_vethpeer("which", "-q", pair.a.ifname)
    assert done.returncode == 0 and done.stdout.split() == [pair.a.ifname]


def test_mountinfo_names_each_nsfs_mount_by_its_stat_key(lab: Lab, tmp_path: Path) -> None:
    """What discovery reads instead of a stat() a mount: an nsfs mount's MAJOR:MINOR and root
    ``net:[INODE]`` are the (st_dev, st_ino) of the file mounted, bind mounts (the same root)
    and a mount point with a space included; and discovery's keys are those."""
    from vethpeer.netns import discover

    made = lab.netns("mi")
    spaced = str(tmp_path / "a mount\tpoint")
    Path(spaced).touch()
    netlab._run(["mount", "--bind", made.path, spaced])
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
            lines = [line.split() for line in table if " net:[" in line and " - nsfs " in line]
        seen = {}
        for fields in lines:
            path = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
            try:
                st = os.stat(path)
            except OSError:
                continue  # mounted over, or not reachable from here
            major, minor = (int(n) for n in fields[2].split(":"))
            assert (st.st_dev, st.st_ino) == (os.makedev(major, minor), int(fields[3][5:-1])), fields
            seen[path] = (st.st_dev, st.st_ino)
        assert seen[spaced] == seen[made.path]
        found = {path: (ns.key.dev, ns.key.ino) for ns in discover().namespaces for path in ns.mounts}
        assert found[spaced] == found[made.path] == seen[made.path]
    finally:
        netlab._run(["umount", spaced], check=False)


def test_output_is_sorted_deterministically(lab: Lab) -> None:
    topo = netlab.same_ifindex(lab, 12)
    inodes = {ns.inode for ns in topo.namespaces}

    def mine(doc: dict[str, Any]) -> list[Key]:
        return [
            (e["netns"]["inode"], e["ifname"]) for e in doc["interfaces"] if e["netns"]["inode"] in inodes
        ]

    first, second = mine(table_json()), mine(table_json())
    assert first == second and len(first) == 12
    labels = [f"netns/{ns.name}" for ns in topo.namespaces]
    assert [labels[[ns.inode for ns in topo.namespaces].index(k[0])] for k in first] == sorted(labels)


def test_the_walk_changes_nothing(lab: Lab) -> None:
    """Read-only: no nsid allocated, no namespace created, by a full table run."""
    topologies = [netlab.straight_pair(lab), netlab.bridged(lab), netlab.both_in_one_ns(lab)]
    lonely = lab.netns("lonely")  # no link to anyone: has no nsid for anyone, and must keep none
    spaces = [ns for topo in topologies for ns in topo.namespaces] + [lonely]
    before = {str(ns): netlab.nsid_names(ns) for ns in spaces}
    host_before = netlab.nsid_names(HOST)
    netns_before = netlab.ip_json(HOST, "netns", "list")
    table_json()
    assert {str(ns): netlab.nsid_names(ns) for ns in spaces} == before
    assert before[str(lonely)] == {}
    host_after = netlab.nsid_names(HOST)
    mine = {name for ns in spaces if (name := ns.name)}
    assert {k: v for k, v in host_after.items() if v in mine} == {
        k: v for k, v in host_before.items() if v in mine
    }
    assert [n for n in netlab.ip_json(HOST, "netns", "list") if n["name"].startswith("vpb")] == [
        n for n in netns_before if n["name"].startswith("vpb")
    ]


# ---------------------------------------------------------------- namespaces vanishing mid-walk


def _delete_later(lab: Lab, doomed: list[Ns], delay: float) -> threading.Thread:
    """Delete named namespaces and kill the processes holding the others, after delay, in a thread."""
    pids = {ns.pid for ns in doomed if ns.pid is not None}

    def run() -> None:
        time.sleep(delay)
        lab.delete_netns(ns for ns in doomed if ns.name)
        for proc in lab.processes:
            if proc.pid in pids:
                proc.kill()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_namespaces_deleted_while_the_walk_runs(lab: Lab) -> None:
    topo = netlab.same_ifindex(lab, 160)
    held = [netlab.process_held(lab, i) for i in range(8)]
    pairs = {(p.b.ns.inode, "eth0"): p for p in topo.pairs} | {
        (t.pairs[0].b.ns.inode, "eth0"): t.pairs[0] for t in held
    }
    alive = [*topo.namespaces, *(t.namespaces[0] for t in held)]
    host_names = {p.a.ifname: p for p in pairs.values()}
    started = time.monotonic()
    table_json()
    walk = time.monotonic() - started  # interpreter start + discovery + walk, on this machine
    overlapped = 0
    for fraction in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        doomed = alive[:-8:7][:20] + [ns for ns in alive if ns.pid is not None][:1]
        alive = [ns for ns in alive if ns not in doomed]
        deleter = _delete_later(lab, doomed, fraction * walk)
        done = run_vethpeer("table", "--json")
        deleter.join()
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        doc = done.json()
        rows = by_key(doc["interfaces"])
        for ns in alive:  # the survivors: every one present and exact
            key = (ns.inode, "eth0")
            assert key in rows, f"survivor {ns} missing"
            pair, entry = pairs[key], rows[key]
            assert entry["workload"]["label"] == workload_label(ns)
            assert entry["unresolved_peer"] is None, entry["unresolved_peer"]
            got = entry["peer"]
            assert (got["netns"]["inode"], got["ifname"], got["ifindex"]) == (
                HOST.inode,
                pair.a.ifname,
                pair.a.ifindex,
            )
        for ns in doomed:  # the dying: exact, or unresolved with a reason; never a wrong peer
            dying = rows.get((ns.inode, "eth0"))
            if dying is not None and dying["peer"] is not None:
                pair = pairs[(ns.inode, "eth0")]
                assert (dying["peer"]["ifname"], dying["peer"]["ifindex"]) == (pair.a.ifname, pair.a.ifindex)
            elif dying is not None:
                assert dying["unresolved_peer"]["reason"]
        for (inode, ifname), entry in rows.items():  # host ends of dying pairs, if listed
            if inode == HOST.inode and ifname in host_names:
                if entry["peer"] is None:
                    assert entry["unresolved_peer"]["reason"]
                else:
                    want = host_names[ifname].b
                    assert (entry["peer"]["netns"]["inode"], entry["peer"]["ifname"]) == (
                        want.ns.inode,
                        "eth0",
                    )
        doomed_inodes = {ns.inode for ns in doomed}
        seen = {inode for inode, _ in rows} | {u["inode"] for u in doc["namespaces"]["unreadable"]}
        overlapped += bool(doomed_inodes & seen)  # discovery saw some of them: they died mid-walk
    assert overlapped >= 1, "no deletion fell inside a walk: the race was not exercised"
    assert 40 <= len(alive) <= 160 + 8 - 60  # most died, enough survived


# ---------------------------------------------------------------- table / -o wide text


def _text_rows(stdout: str) -> tuple[list[str], list[dict[str, str]]]:
    """The plain (non-TTY) table: columns are separated by at least 3 spaces.

    A NAMESPACE column comes first when pods exist on the machine (other labs).
    """
    lines = [line for line in stdout.splitlines() if line.strip()]
    header = re.split(r" {3,}", lines[0].strip())
    rows = [dict(zip(header, re.split(r" {3,}", line.strip()), strict=False)) for line in lines[1:]]
    return header, rows


def _row_of(rows: list[dict[str, str]], workload: str, ifname: str) -> dict[str, str]:
    found = [row for row in rows if row.get("WORKLOAD") == workload and row.get("IF") == ifname]
    assert len(found) == 1, (workload, ifname, found)
    return found[0]


def test_plain_table(lab: Lab) -> None:
    topo = netlab.bridged(lab, 2)
    done = run_vethpeer("table")
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout  # not a TTY: no colour
    header, rows = _text_rows(done.stdout)
    columns = ["WORKLOAD", "IF", "MAC", "ADDRESSES", "PEER", "PEER NETNS", "BRIDGE", "STATE"]
    assert header[header.index("WORKLOAD") : header.index("WORKLOAD") + 8] == columns
    pair = topo.pairs[0]
    row = _row_of(rows, f"netns/{pair.b.ns.name}", "eth0")
    mac = netlab.kernel_links(pair.b.ns)["eth0"]["address"]
    assert [row[c] for c in columns] == [
        f"netns/{pair.b.ns.name}",
        "eth0",
        mac,
        lab.ip4(2, 2),
        pair.a.ifname,
        "host",
        topo.bridges[0].ifname,
        "up/up",
    ]
    bare = run_vethpeer()  # no command: `table`
    assert bare.returncode == 0, bare.stderr
    assert row in _text_rows(bare.stdout)[1]


def test_wide_table(lab: Lab) -> None:
    topo = netlab.host_pair(lab)
    pair = topo.pairs[0]
    done = run_vethpeer("table", "-o", "wide")
    assert done.returncode == 0, done.stderr
    header, rows = _text_rows(done.stdout)
    assert {"IFINDEX", "PEER IFINDEX", "MTU", "KIND", "NETNS"} <= set(header)  # later issues add more
    cells = _row_of(rows, f"netns/{pair.b.ns.name}", "eth0")
    assert cells["IFINDEX"] == str(pair.b.ifindex)
    assert cells["PEER IFINDEX"] == str(pair.a.ifindex)
    assert cells["PEER"] == pair.a.ifname
    assert cells["MTU"] == "1500"
    assert cells["KIND"] == "veth"
    assert cells["NETNS"] == str(pair.b.ns.inode)


# ---------------------------------------------------------------- which


@dataclass(frozen=True)
class WhichWorld:
    lab: Lab
    straight: Topology
    host: Topology
    bridged: Topology
    router: Topology
    both_in_host: Topology
    macvlan: Topology
    held: Topology
    pid_in_named: int  # a process inside host.namespaces[0]


@pytest.fixture(scope="module")
def ww(module_lab: Lab) -> WhichWorld:
    lab = module_lab
    host = netlab.host_pair(lab)
    return WhichWorld(
        lab,
        netlab.straight_pair(lab),
        host,
        netlab.bridged(lab),
        netlab.router(lab),
        netlab.both_in_host(lab),
        netlab.macvlan(lab),
        netlab.process_held(lab),
        lab.spawn(host.namespaces[0]),
    )


def which_json(target: str) -> list[Entry]:
    done = run_vethpeer("which", target, "--json")
    assert done.returncode == 0, (target, done.stderr)
    doc = done.json()
    assert doc["schema_version"] == 1
    entries: list[Entry] = doc["interfaces"]
    return entries


def which_q(target: str) -> list[str]:
    done = run_vethpeer("which", "-q", target)
    assert done.returncode == 0, (target, done.stderr)
    return done.stdout.splitlines()


def _only(entries: list[Entry], end: End) -> Entry:
    assert [(e["netns"]["inode"], e["ifname"]) for e in entries] == [(end.ns.inode, end.ifname)]
    return entries[0]


def test_which_netns_name(ww: WhichWorld) -> None:
    pair = ww.bridged.pairs[1]
    entry = _only(which_json(str(pair.b.ns.name)), pair.b)
    assert_exact(entry, pair.b, pair.a, "veth")
    assert which_q(str(pair.b.ns.name)) == [pair.a.ifname]


def test_which_pid(ww: WhichWorld) -> None:
    held = ww.held.pairs[0]
    assert held.b.ns.pid is not None
    assert_exact(_only(which_json(str(held.b.ns.pid)), held.b), held.b, held.a, "veth")
    assert which_q(str(held.b.ns.pid)) == [held.a.ifname]
    named = ww.host.pairs[0]
    assert_exact(_only(which_json(str(ww.pid_in_named)), named.b), named.b, named.a, "veth")


def test_which_path(ww: WhichWorld) -> None:
    legs = [p for p in ww.router.pairs if p.b.ns == ww.router.namespaces[0]]
    entries = which_json(legs[0].b.ns.path)
    assert sorted((e["ifname"], e["peer"]["ifname"]) for e in entries) == sorted(
        (p.b.ifname, p.a.ifname) for p in legs
    )
    assert sorted(which_q(legs[0].b.ns.path)) == sorted(p.a.ifname for p in legs)
    held = ww.held.pairs[0]
    assert which_q(f"/proc/{held.b.ns.pid}/ns/net") == [held.a.ifname]


def test_which_host_veth_reverse_lookup(ww: WhichWorld) -> None:
    for pair in ww.bridged.pairs:
        entry = _only(which_json(pair.a.ifname), pair.b)
        assert entry["workload"]["label"] == f"netns/{pair.b.ns.name}"
        assert_exact(entry, pair.b, pair.a, "veth")
    x0, x1 = ww.both_in_host.pairs[0].a, ww.both_in_host.pairs[0].b
    entries = which_json(x0.ifname)
    assert {(e["ifname"], e["peer"]["ifname"]) for e in entries} == {
        (x0.ifname, x1.ifname),
        (x1.ifname, x0.ifname),
    }
    assert set(which_q(x0.ifname)) == {x0.ifname, x1.ifname}


def test_which_mac(ww: WhichWorld) -> None:
    pair = ww.bridged.pairs[2]
    inside = netlab.kernel_links(pair.b.ns)["eth0"]["address"]
    outside = netlab.kernel_links(HOST)[pair.a.ifname]["address"]
    for mac in (inside, outside, inside.upper()):
        assert_exact(_only(which_json(mac), pair.b), pair.b, pair.a, "veth")


def test_which_ip(ww: WhichWorld) -> None:
    pair = ww.bridged.pairs[0]
    address = ww.lab.ip4(2, 2).split("/")[0]
    assert_exact(_only(which_json(address), pair.b), pair.b, pair.a, "veth")
    assert which_q(address) == [pair.a.ifname]
    left, right = ww.straight.pairs[0].a, ww.straight.pairs[0].b
    assert_exact(_only(which_json(ww.lab.ip4(0, 2).split("/")[0]), right), right, left, "veth")


def test_which_macvlan_reports_the_parent(ww: WhichWorld) -> None:
    pair = ww.macvlan.pairs[0]
    entry = _only(which_json(str(pair.a.ns.name)), pair.a)
    assert_exact(entry, pair.a, pair.b, "parent")


def test_which_json_has_the_table_schema(ww: WhichWorld) -> None:
    pair = ww.host.pairs[0]
    entry = _only(which_json(str(pair.b.ns.name)), pair.b)
    table = by_key(table_json()["interfaces"])[(pair.b.ns.inode, "eth0")]
    assert entry.keys() == table.keys()
    assert entry["peer"].keys() == table["peer"].keys()
    assert entry.keys() >= contract.INTERFACE_FIELDS
    assert entry["peer"].keys() >= contract.PEER_FIELDS
    assert {"kind", "name", "id"} <= entry["workload"].keys()
    assert {"inode", "names"} <= entry["netns"].keys()
    assert entry["netns"]["names"] == [pair.b.ns.name]


def test_which_plain_output(ww: WhichWorld) -> None:
    pair = ww.host.pairs[0]
    done = run_vethpeer("which", str(pair.b.ns.name))
    assert done.returncode == 0, done.stderr
    assert pair.a.ifname in done.stdout and f"netns/{pair.b.ns.name}" in done.stdout


# ---------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    "target",
    [
        "vpb-no-such-thing",
        "100.127.255.254",
        "02:00:5e:ff:ee:dd",
        "/run/netns/vpb-no-such-netns",
        "fd00:dead:beef::77",
    ],
)
def test_which_not_found_exits_3(target: str) -> None:
    done = run_vethpeer("which", target)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert done.stdout == ""
    one_line_error(done)


def test_which_host_interface_without_workload_exits_3(lab: Lab) -> None:
    bridge = lab.bridge(HOST, lab.bridge_name("z"))
    done = run_vethpeer("which", bridge.ifname)
    assert done.returncode == 3, done.stderr
    assert bridge.ifname in one_line_error(done)


def test_which_ambiguous_exits_4(lab: Lab) -> None:
    a, b = netlab.host_pair(lab).pairs[0], lab.veth(HOST, lab.link_name("h2"), lab.netns("h2"), "eth0")
    shared_ip = lab.ip4(9, 9)
    lab.addr(a.b, shared_ip)
    lab.addr(b.b, shared_ip)
    done = run_vethpeer("which", shared_ip.split("/")[0])
    assert done.returncode == 4, done.stderr
    line = one_line_error(done)
    assert f"netns/{a.b.ns.name}" in line and f"netns/{b.b.ns.name}" in line
    mac = "02:5e:" + ":".join(secrets.token_hex(1) for _ in range(4))
    for pair in (a, b):
        netlab._run([*pair.b.ns.ip(), "link", "set", "eth0", "address", mac])
    done = run_vethpeer("which", "-q", mac)
    assert done.returncode == 4 and done.stdout == ""


@pytest.mark.parametrize(
    "argv",
    [
        ("which",),
        ("--bogus",),
        ("table", "-o", "yaml"),
        ("which", "x", "y"),
        ("--timeout", "0", "table"),
        ("--timeout", "soon", "table"),
        ("frobnicate",),
    ],
)
def test_usage_errors_exit_2(argv: tuple[str, ...]) -> None:
    done = run_vethpeer(*argv)
    assert done.returncode == 2, (argv, done.stderr)
    assert done.stdout == ""
    one_line_error(done)


@pytest.mark.parametrize("how", ["no capabilities", "user nobody"])
def test_not_root_exits_5(how: str) -> None:
    """Without privilege vethpeer exits 5 with one line, wherever the checkout lies.

    Two honest ways to be unprivileged that read nothing through the checkout's folder mode:
    uid 0 with every capability dropped (CapEff 0, checked), and the real user ``nobody``
    running a copy of the package with an interpreter it can read (tests/integration/conftest.py).
    """

    def unprivileged(*argv: str) -> Cli:
        if how == "no capabilities":
            return run_vethpeer(*argv, no_capabilities=True)
        return run_vethpeer(*argv, user="nobody")

    for argv in (("table",), ("table", "--json"), ("which", "eth0")):
        done = unprivileged(*argv)
        assert done.returncode == 5, (how, argv, done.stdout, done.stderr)
        assert done.stdout == ""
        line = one_line_error(done)
        assert "CAP_SYS_ADMIN" in line, line
    version = unprivileged("--version")
    assert version.returncode == 0 and version.stdout.startswith("vethpeer "), (how, version.stderr)


def test_debug_shows_the_traceback() -> None:
    done = run_vethpeer("--debug", "which", "vpb-no-such-thing")
    assert done.returncode != 0
    assert "Traceback" in done.stderr


# ---------------------------------------------------------------- what gets imported


def _imported(*argv: str) -> set[str]:
    done = run_vethpeer(*argv, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert done.returncode == 0, done.stderr
    return {
        line.split("|")[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_version_imports_nothing_heavy() -> None:
    modules = _imported("--version")
    assert not modules & {
        "rich",
        "docker",
        "kubernetes",
        "grpc",
        "h2",
        "google",
        "pyroute2",
        "ctypes",
        "socket",
    }


def test_json_does_not_import_rich_or_pyroute2() -> None:
    modules = _imported("table", "--json", "--no-kube")
    assert not modules & {"rich", "pyroute2", "kubernetes"}
    if not os.path.exists("/var/run/docker.sock"):
        assert "docker" not in modules
