"""Real network topologies for the integration tests and the benchmark (root, stdlib only).

Every object is built with the ``ip`` command (the stock tool, so the lab does not
share code or bugs with vethpeer's own netlink decoder) and named with a unique
prefix: namespaces ``vpb-<tag>-*``, links ``vpb<tag>*``, bridges ``vpbbr<tag>*``, where
``<tag>`` is 4 random hex digits per :class:`Lab`. A lab removes everything it made
when its ``with`` block ends, even after an error or Ctrl-C; :func:`sweep` removes
leftovers of a killed run.

The construction is the expected answer: each builder returns the :class:`Pair` s
it wired, with both ends' ifindexes as the kernel reported them (``ip -j link``).
:func:`check_pair` cross-checks a pair against the kernel's own view
(``ip -j -d link``: ``link_index`` / ``link_netnsid``, and ``ip netns list-id``
for what that nsid names), so a test asserts vethpeer's peers against both.

Usage::

    with Lab() as lab:
        topo = same_ifindex(lab, 50)
        for pair in topo.pairs:
            check_pair(pair)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Literal

__all__ = [
    "HOST",
    "PREFIX",
    "End",
    "Lab",
    "LabError",
    "Ns",
    "Pair",
    "Topology",
    "both_in_host",
    "both_in_one_ns",
    "bridged",
    "check_pair",
    "host_pair",
    "ip_batch",
    "ip_json",
    "isolated_pairs",
    "kernel_links",
    "macvlan",
    "nsid_names",
    "process_held",
    "router",
    "same_ifindex",
    "straight_pair",
    "sweep",
]

PREFIX = "vpb"
Relation = Literal["veth", "parent"]


class LabError(RuntimeError):
    """A command that builds or inspects the lab failed."""


def _run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv[:8])}{' ...' if len(argv) > 8 else ''}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class Ns:
    """A network namespace of the lab: the host (both None), an ``ip netns`` name, or a process's.

    ``inode`` is the nsfs inode, what vethpeer's JSON reports as ``netns.inode``; it is
    recorded at creation so that it can still be matched after the namespace is gone.
    """

    name: str | None = None
    pid: int | None = None
    inode: int = 0

    @property
    def is_host(self) -> bool:
        return self.name is None and self.pid is None

    @property
    def path(self) -> str:
        if self.name is not None:
            return f"/run/netns/{self.name}"
        if self.pid is not None:
            return f"/proc/{self.pid}/ns/net"
        return "/proc/self/ns/net"

    def ip(self) -> list[str]:
        """argv prefix that runs ``ip`` in this namespace."""
        if self.name is not None:
            return ["ip", "-n", self.name]
        if self.pid is not None:
            return ["nsenter", "-t", str(self.pid), "-n", "ip"]
        return ["ip"]

    def netns_arg(self) -> str:
        """What ``ip link ... netns X`` accepts for this namespace."""
        if self.name is not None:
            return self.name
        return str(self.pid if self.pid is not None else os.getpid())

    def __str__(self) -> str:
        if self.name is not None:
            return self.name
        return f"pid:{self.pid}" if self.pid is not None else "host"


def _host_ns() -> Ns:
    return Ns(inode=os.stat("/proc/self/ns/net").st_ino)


HOST = _host_ns()


@dataclass(frozen=True, slots=True)
class End:
    """One interface of the lab: where it lives, its name and the ifindex the kernel gave it."""

    ns: Ns
    ifname: str
    ifindex: int = 0


@dataclass(frozen=True, slots=True)
class Pair:
    """``a``'s peer is ``b``: the other end of a veth (both directions), or a's parent device."""

    a: End
    b: End
    relation: Relation = "veth"

    def directed(self) -> list[tuple[End, End]]:
        """(interface, expected peer) for each end that has a peer."""
        if self.relation == "veth":
            return [(self.a, self.b), (self.b, self.a)]
        return [(self.a, self.b)]


@dataclass(frozen=True, slots=True)
class Topology:
    namespaces: tuple[Ns, ...]
    pairs: tuple[Pair, ...]
    bridges: tuple[End, ...] = ()

    def expected(self) -> dict[tuple[int, str], End]:
        """(netns inode, ifname) -> expected peer End, for every end that has one."""
        return {(end.ns.inode, end.ifname): peer for pair in self.pairs for end, peer in pair.directed()}


# ---------------------------------------------------------------- kernel oracle


def ip_json(ns: Ns, *args: str) -> Any:
    out = _run([*ns.ip(), "-j", *args])
    return json.loads(out) if out.strip() else []


def ip_batch(lines: Iterable[str], *, force: bool = False) -> None:
    """Run many ``ip`` commands in one process (``ip -batch -``): 1000 namespaces in seconds."""
    text = "".join(line + "\n" for line in lines)
    if text:
        _run(["ip", *(["-force"] if force else []), "-batch", "-"], stdin=text, check=not force)


def kernel_links(ns: Ns) -> dict[str, dict[str, Any]]:
    """ifname -> ``ip -j -d link`` entry, with ``addresses`` (``["10.0.0.1/24", ...]``) added."""
    links: dict[str, dict[str, Any]] = {link["ifname"]: link for link in ip_json(ns, "-d", "link", "show")}
    for entry in ip_json(ns, "addr", "show"):
        addrs = [f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", ()) if "local" in a]
        if entry.get("ifname") in links:
            links[entry["ifname"]]["addresses"] = addrs
    return links


_LIST_ID = re.compile(r"^nsid (\d+)(?:.*\(iproute2 netns name: (\S+)\))?")


def nsid_names(ns: Ns) -> dict[int, str | None]:
    """nsid -> ``ip netns`` name (None: unnamed, e.g. the host or a process's) as seen from ns.

    Two sources, because each is incomplete on its own:

    * ``ip netns list`` (run inside ns) asks RTM_GETNSID once per named namespace,
      by fd: exact for every named one, blind to unnamed ones;
    * ``ip netns list-id`` dumps every nsid, but on kernel 6.18 that dump ends after
      one buffer (about 134 entries: a host with more namespaces loses the rest), and
      iproute2 6.1's ``-j`` variant drops unnamed entries, so the text form is parsed.
    """
    found: dict[int, str | None] = {}
    for line in _run([*ns.ip(), "netns", "list-id"]).splitlines():
        match = _LIST_ID.match(line.strip())
        if match:
            found[int(match[1])] = match[2]
    for entry in ip_json(ns, "netns", "list"):
        if "id" in entry:
            found[int(entry["id"])] = entry["name"]
    return found


def check_pair(pair: Pair) -> None:
    """Assert that the kernel agrees with how the pair was built (raises AssertionError)."""
    for end, peer in pair.directed():
        link = kernel_links(end.ns)[end.ifname]
        assert link["ifindex"] == end.ifindex, (end, link["ifindex"])
        nsid = link.get("link_netnsid")
        if peer.ns == end.ns:
            # same namespace: ip resolves IFLA_LINK to a name instead of printing link_index
            assert link.get("link") == peer.ifname, (end, peer, link.get("link"))
            assert nsid is None, (end, peer, nsid)
            continue
        assert link.get("link_index") == peer.ifindex, (end, peer, link.get("link_index"))
        assert nsid is not None, (end, peer)
        # an unnamed peer (host, process) must at least not be mistaken for a named namespace
        assert nsid_names(end.ns).get(nsid) == peer.ns.name, (end, peer, nsid)


# ---------------------------------------------------------------- the lab


@dataclass
class Lab:
    """Builds topologies and removes all of them on exit (context manager).

    Every name it makes starts with ``prefix`` (a subclass sets its own): namespaces
    ``<prefix>-<tag>-*``, links ``<prefix><tag>*``, bridges ``<prefix>br<tag>*``."""

    prefix: ClassVar[str] = PREFIX
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    namespaces: list[Ns] = field(default_factory=list)
    host_links: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.cleanup()

    # names
    def link_name(self, stem: str) -> str:
        name = f"{self.prefix}{self.tag}{stem}"
        if len(name) > 15:
            raise ValueError(f"interface name too long: {name}")
        return name

    def bridge_name(self, stem: str = "0") -> str:
        name = f"{self.prefix}br{self.tag}{stem}"
        if len(name) > 15:
            raise ValueError(f"bridge name too long: {name}")
        return name

    def ns_name(self, stem: str) -> str:
        return f"{self.prefix}-{self.tag}-{stem}"

    def ip4(self, subnet: int, host: int, prefixlen: int = 24) -> str:
        """An address unique to this lab (100.64.0.0/10, picked by tag), so `which IP` is unambiguous.

        Other labs on the same machine use 10.x and 172.x addresses; equal IPs in two
        namespaces would make vethpeer answer "ambiguous", rightly.
        """
        t0, t1 = int(self.tag[:2], 16), int(self.tag[2:], 16)
        return f"100.{64 + t0 % 64}.{(t1 + subnet) % 256}.{host}/{prefixlen}"

    # namespaces
    def netns(self, stem: str) -> Ns:
        return self.netns_many([stem])[0]

    def netns_many(self, stems: Sequence[str]) -> list[Ns]:
        names = [self.ns_name(stem) for stem in stems]
        # registered before creation so that a failed batch still gets cleaned up
        pending = [Ns(name=name) for name in names]
        self.namespaces.extend(pending)
        ip_batch(f"netns add {name}" for name in names)
        made = [Ns(name=name, inode=os.stat(f"/run/netns/{name}").st_ino) for name in names]
        for old, new in zip(pending, made, strict=True):
            self.namespaces[self.namespaces.index(old)] = new
        return made

    def netns_with_host_peers(self, stems: Sequence[str], *, up: bool = True) -> tuple[list[Ns], list[str]]:
        """A namespace per stem, each with an ``eth0`` whose peer ``link_name(stem)`` is in the host
        (and up, unless ``up=False``), made in one ``ip -batch``; the host ends are the lab's host
        links. Each eth0 is made straight in a fresh namespace, so all get the same ifindex (2)."""
        namespaces = self.netns_many(stems)
        hosts = [self.link_name(stem) for stem in stems]
        self.host_links.extend(hosts)
        ip_batch(
            line
            for host, ns in zip(hosts, namespaces, strict=True)
            for line in (
                f"link add {host} type veth peer name eth0 netns {ns.name}",
                *([f"link set {host} up"] if up else []),
            )
        )
        return namespaces, hosts

    def process_ns(self, seconds: int = 3600) -> Ns:
        """A namespace that only a process holds (``unshare --net sleep``), killed on cleanup."""
        proc = subprocess.Popen(["unshare", "--net", "sleep", str(seconds)])
        self.processes.append(proc)
        home = os.stat("/proc/self/ns/net").st_ino
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{proc.pid}/comm", encoding="ascii") as comm:
                    is_sleep = comm.read().strip() == "sleep"
                inode = os.stat(f"/proc/{proc.pid}/ns/net").st_ino
            except OSError:
                inode, is_sleep = home, False
            if is_sleep and inode != home:
                ns = Ns(pid=proc.pid, inode=inode)
                self.namespaces.append(ns)
                return ns
            if proc.poll() is not None:
                raise LabError(f"unshare --net exited with {proc.returncode}")
            time.sleep(0.005)
        raise LabError("unshare --net did not enter a new namespace in 5 s")

    def spawn(self, ns: Ns, seconds: int = 3600) -> int:
        """A process (sleep) inside a named namespace; returns its PID, killed on cleanup."""
        assert ns.name is not None
        proc = subprocess.Popen(["ip", "netns", "exec", ns.name, "sleep", str(seconds)])
        self.processes.append(proc)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # ip execs sleep in the same process, after setns
            try:
                with open(f"/proc/{proc.pid}/comm", encoding="ascii") as comm:
                    if comm.read().strip() == "sleep":
                        return proc.pid
            except OSError:
                pass
            time.sleep(0.005)
        raise LabError(f"ip netns exec {ns.name} sleep did not start in 5 s")

    def hold_by_fd_only(self, ns: Ns) -> None:
        """Make ns reachable by nobody: a process keeps an fd on it, then its name is deleted.

        No mount and no process inside: discovery cannot find it, so a peer in it must
        be reported unresolved (never guessed). The holder is killed on cleanup.
        """
        assert ns.name is not None
        code = f"import os, sys, time; os.open({ns.path!r}, os.O_RDONLY); print(flush=True); time.sleep(3600)"
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        self.processes.append(proc)
        assert proc.stdout is not None
        proc.stdout.readline()  # the fd is open
        _run(["ip", "netns", "del", ns.name])

    # links
    def _ifindex(self, ns: Ns, ifname: str) -> int:
        return int(ip_json(ns, "link", "show", "dev", ifname)[0]["ifindex"])

    def end(self, ns: Ns, ifname: str) -> End:
        return End(ns, ifname, self._ifindex(ns, ifname))

    def veth(self, a_ns: Ns, a_name: str, b_ns: Ns, b_name: str, *, up: bool = True) -> Pair:
        """A veth pair created inside a_ns with its peer put straight into b_ns."""
        if a_ns.is_host:
            self.host_links.append(a_name)
        elif b_ns.is_host:
            self.host_links.append(b_name)
        _run(
            [
                *a_ns.ip(),
                "link",
                "add",
                a_name,
                "type",
                "veth",
                "peer",
                "name",
                b_name,
                "netns",
                b_ns.netns_arg(),
            ]
        )
        if up:
            _run([*a_ns.ip(), "link", "set", a_name, "up"])
            _run([*b_ns.ip(), "link", "set", b_name, "up"])
        return Pair(self.end(a_ns, a_name), self.end(b_ns, b_name))

    def bridge(self, ns: Ns, name: str) -> End:
        if ns.is_host:
            self.host_links.append(name)
        _run([*ns.ip(), "link", "add", name, "type", "bridge"])
        _run([*ns.ip(), "link", "set", name, "up"])
        return self.end(ns, name)

    def enslave(self, end: End, bridge: End) -> None:
        _run([*end.ns.ip(), "link", "set", end.ifname, "master", bridge.ifname])

    def dummy(self, ns: Ns, name: str) -> End:
        if ns.is_host:
            self.host_links.append(name)
        _run([*ns.ip(), "link", "add", name, "type", "dummy"])
        _run([*ns.ip(), "link", "set", name, "up"])
        return self.end(ns, name)

    def child(self, parent: End, kind: str, name: str, target: Ns, *extra: str) -> Pair:
        """A macvlan/ipvlan/vlan on parent, moved to target: a "parent" relation, not a peer."""
        if target.is_host:
            self.host_links.append(name)
        where = [] if target == parent.ns else ["netns", target.netns_arg()]
        _run(
            [
                *parent.ns.ip(),
                "link",
                "add",
                "link",
                parent.ifname,
                "name",
                name,
                *where,
                "type",
                kind,
                *extra,
            ]
        )
        _run([*target.ip(), "link", "set", name, "up"])
        return Pair(self.end(target, name), parent, relation="parent")

    def addr(self, end: End, cidr: str) -> None:
        _run([*end.ns.ip(), "addr", "add", cidr, "dev", end.ifname])

    # teardown
    def delete_netns(self, namespaces: Iterable[Ns]) -> None:
        """Delete namespaces now (their veths, host ends included, go with them)."""
        ip_batch((f"netns del {ns.name}" for ns in namespaces if ns.name), force=True)

    def cleanup(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        self.processes.clear()
        ip_batch((f"link del {name}" for name in reversed(self.host_links)), force=True)
        self.host_links.clear()
        self.delete_netns(ns for ns in self.namespaces if ns.name and os.path.exists(ns.path))
        self.namespaces.clear()


def sweep(prefix: str = PREFIX) -> int:
    """Remove every namespace and host link left with the prefix (after a killed run). Returns a count."""
    names = [
        ns["name"]
        for ns in json.loads(_run(["ip", "-j", "netns", "list"]) or "[]")
        if ns["name"].startswith(prefix + "-")
    ]
    links = [
        link["ifname"]
        for link in json.loads(_run(["ip", "-j", "link", "show"]) or "[]")
        if link["ifname"].startswith(prefix)
    ]
    ip_batch((f"link del {name}" for name in links), force=True)
    ip_batch((f"netns del {name}" for name in names), force=True)
    return len(names) + len(links)


# ---------------------------------------------------------------- topologies


def straight_pair(lab: Lab) -> Topology:
    """Two namespaces joined by one veth, both ends called eth0 (same ifindex on both sides)."""
    left, right = lab.netns_many(["sl", "sr"])
    pair = lab.veth(left, "eth0", right, "eth0")
    lab.addr(pair.a, lab.ip4(0, 1, 30))
    lab.addr(pair.b, lab.ip4(0, 2, 30))
    return Topology((left, right), (pair,))


def host_pair(lab: Lab) -> Topology:
    """The classic container: host ``vpb<tag>h`` <-> eth0 inside a namespace."""
    ns = lab.netns("hp")
    pair = lab.veth(HOST, lab.link_name("h"), ns, "eth0")
    lab.addr(pair.b, lab.ip4(1, 2))
    return Topology((ns,), (pair,))


def bridged(lab: Lab, count: int = 3, subnet: int = 2) -> Topology:
    """count namespaces, each eth0 <-> host veth enslaved to one host bridge."""
    br = lab.bridge(HOST, lab.bridge_name("0"))
    namespaces = lab.netns_many([f"b{i}" for i in range(count)])
    pairs = []
    for i, ns in enumerate(namespaces):
        pair = lab.veth(HOST, lab.link_name(f"b{i}"), ns, "eth0")
        lab.enslave(pair.a, br)
        lab.addr(pair.b, lab.ip4(subnet, i + 2))
        pairs.append(pair)
    return Topology(tuple(namespaces), tuple(pairs), (br,))


def router(lab: Lab) -> Topology:
    """A router namespace with two legs (eth0, eth1) on two host bridges, a client on each."""
    br_a, br_b = lab.bridge(HOST, lab.bridge_name("a")), lab.bridge(HOST, lab.bridge_name("b"))
    rtr, client_a, client_b = lab.netns_many(["rtr", "ca", "cb"])
    pairs = []
    for host_stem, ns, ifname, br, cidr in (
        ("r0", rtr, "eth0", br_a, lab.ip4(3, 1)),
        ("r1", rtr, "eth1", br_b, lab.ip4(4, 1)),
        ("ca", client_a, "eth0", br_a, lab.ip4(3, 2)),
        ("cb", client_b, "eth0", br_b, lab.ip4(4, 2)),
    ):
        pair = lab.veth(HOST, lab.link_name(host_stem), ns, ifname)
        lab.enslave(pair.a, br)
        lab.addr(pair.b, cidr)
        pairs.append(pair)
    return Topology((rtr, client_a, client_b), tuple(pairs), (br_a, br_b))


def same_ifindex(lab: Lab, count: int = 50) -> Topology:
    """count namespaces whose eth0 all have the same ifindex, each to its own host veth.

    The peer is created from the host straight into a fresh namespace, where the
    kernel hands out the same first free index (2) every time: exactly what CNI and
    Docker do, and why matching by ifindex alone picks the wrong veth.
    """
    namespaces, names = lab.netns_with_host_peers([f"i{i:03d}" for i in range(count)])
    host = kernel_links(HOST)
    pairs = []
    for name, ns in zip(names, namespaces, strict=True):
        eth0 = kernel_links(ns)["eth0"]
        pairs.append(Pair(End(HOST, name, host[name]["ifindex"]), End(ns, "eth0", eth0["ifindex"])))
    indexes = {pair.b.ifindex for pair in pairs}
    assert len(indexes) == 1, f"eth0 ifindexes differ: {indexes}"
    return Topology(tuple(namespaces), tuple(pairs))


def both_in_host(lab: Lab) -> Topology:
    """A veth with both ends in the host namespace."""
    return Topology((), (lab.veth(HOST, lab.link_name("x0"), HOST, lab.link_name("x1")),))


def both_in_one_ns(lab: Lab) -> Topology:
    """A veth with both ends in one (non-host) namespace."""
    ns = lab.netns("one")
    return Topology((ns,), (lab.veth(ns, "va", ns, "vb"),))


def macvlan(lab: Lab) -> Topology:
    """Parents, not peers: a macvlan in a namespace and one in the host, on a host device.

    The parent is a bridge the lab creates (this kernel has no dummy, vlan or ipvlan
    driver; a macvlan takes any Ethernet device as parent), never the machine's eth0.
    """
    ns = lab.netns("mv")
    parent = lab.bridge(HOST, lab.bridge_name("p"))
    moved = lab.child(parent, "macvlan", lab.link_name("mv0"), ns, "mode", "bridge")
    # renamed inside so that it looks like a container's interface
    _run([*ns.ip(), "link", "set", moved.a.ifname, "down"])
    _run([*ns.ip(), "link", "set", moved.a.ifname, "name", "eth0"])
    _run([*ns.ip(), "link", "set", "eth0", "up"])
    in_ns = Pair(lab.end(ns, "eth0"), parent, relation="parent")
    lab.addr(in_ns.a, lab.ip4(5, 2))
    in_host = lab.child(parent, "macvlan", lab.link_name("mv1"), HOST, "mode", "bridge")
    return Topology((ns,), (in_ns, in_host), (parent,))


def process_held(lab: Lab, number: int = 0) -> Topology:
    """A namespace held only by a process (no mount, no name), with a veth to the host."""
    ns = lab.process_ns()
    pair = lab.veth(HOST, lab.link_name(f"p{number}"), ns, "eth0")
    lab.addr(pair.b, lab.ip4(6, 2 + number))
    return Topology((ns,), (pair,))


def isolated_pairs(lab: Lab, count: int = 20) -> Topology:
    """count pairs of namespaces joined eth0 <-> eth0, no link to the host.

    Every namespace calls its partner nsid 0 and every peer ifindex is 2: the numbers
    are identical everywhere, only RTM_GETNSID can tell the pairs apart.
    """
    namespaces = lab.netns_many([f"{side}{i:02d}" for i in range(count) for side in "xy"])
    pairs = [lab.veth(a, "eth0", b, "eth0") for a, b in zip(namespaces[::2], namespaces[1::2], strict=True)]
    return Topology(tuple(namespaces), tuple(pairs))


def everything(lab: Lab) -> Iterator[Topology]:
    """Every small topology, for a test that wants them all at once."""
    yield straight_pair(lab)
    yield host_pair(lab)
    yield bridged(lab)
    yield router(lab)
    yield both_in_host(lab)
    yield both_in_one_ns(lab)
    yield macvlan(lab)
    yield process_held(lab)
