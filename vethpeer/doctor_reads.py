"""The extra reads `doctor` needs from inside namespaces: routes, neighbours, sysctls, holders.

The walk reads links only (it must stay fast for the table). `doctor` also wants
each workload's default routes and their gateways' ARP/NDP entries (is there a default
route, does its gateway answer?) and, for veth pairs with both ends in one namespace, the
``rp_filter`` / ``accept_local`` sysctls. Those live under ``/proc/sys/net``, which
shows the network namespace *of the thread that opens the file*: so they are read
while the thread is inside the namespace (``netns.inside``), like the netlink socket
is created there. Nothing is changed and nothing is forked.

Only what the checks look at is read, and all of it at every call (`serve` diagnoses every
``--min-interval``): the kernel's events do not cover it. A neighbour entry turning
INCOMPLETE (an ARP or ND probe for the gateway under way, unanswered so far) is announced
by no RTM_NEWNEIGH, and IPv4 routes flushed with their link's carrier or address by no
RTM_DELROUTE, so a cache kept by events would show a finding late, or one no longer true.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from . import netlink_routes
from .errors import NamespaceGone
from .model import Namespace, NsKey
from .netlink import RtnlSocket
from .netlink_routes import Neighbour, Route
from .netns import home_namespace, inside, open_namespace
from .sources import procfs

CONF_KEYS = ("rp_filter", "accept_local")


@dataclass(frozen=True, slots=True)
class NsFacts:
    """What `doctor` read inside one namespace."""

    default_routes: tuple[Route, ...] = ()  # every table's but the local one's
    gateway_neighbours: tuple[Neighbour, ...] = ()  # the ARP/NDP entries of those routes' gateways
    # (interface or "all", key) -> value, from /proc/sys/net/ipv4/conf/<if>/<key>
    ipv4_conf: Mapping[tuple[str, str], int] = field(default_factory=dict)
    error: str | None = None


def _read_conf(ifnames: Iterable[str], proc: str) -> dict[tuple[str, str], int]:
    values: dict[tuple[str, str], int] = {}
    for ifname in ("all", *ifnames):
        for key in CONF_KEYS:
            try:
                with open(f"{proc}/sys/net/ipv4/conf/{ifname}/{key}", encoding="ascii") as f:
                    values[(ifname, key)] = int(f.read().strip())
            except (OSError, ValueError):
                continue
    return values


def _read_defaults(family: int) -> tuple[tuple[Route, ...], tuple[Neighbour, ...]]:
    """The default routes of the namespace this thread is in, and their gateways' neighbours."""
    with RtnlSocket() as sock:
        # the kernel filters the route dump under strict checking (Linux 4.20+; before, the parser does)
        strict = sock.strict(True)
        defaults = tuple(netlink_routes.default_routes(sock, family))
        if strict:
            sock.strict(False)  # the neighbour dump is asked as it always was
        gateways = {hop.gateway for route in defaults for hop in route.nexthops if hop.gateway}
        return defaults, tuple(netlink_routes.gateway_neighbours(sock, gateways))


def read(
    namespaces: Iterable[Namespace],
    *,
    routes: Mapping[NsKey, int] | None = None,
    conf: Mapping[NsKey, Iterable[str]] | None = None,
    proc: str = "/proc",
) -> dict[NsKey, NsFacts]:
    """The default routes of the namespaces in ``routes`` (of the family it gives each: AF_INET,
    AF_INET6, or AF_UNSPEC for both) and their gateways' neighbours; ipv4 conf sysctls of
    ``conf``'s interfaces."""
    want_routes = dict(routes or {})
    want_conf = dict(conf or {})
    facts: dict[NsKey, NsFacts] = {}
    with home_namespace(proc) as home:
        for ns in namespaces:
            if ns.key not in want_routes and ns.key not in want_conf:
                continue
            try:
                fd = open_namespace(ns, proc)
            except NamespaceGone as gone:
                facts[ns.key] = NsFacts(error=str(gone))
                continue
            try:
                with inside(fd, home):
                    defaults: tuple[Route, ...] = ()
                    neighbours: tuple[Neighbour, ...] = ()
                    if ns.key in want_routes:
                        defaults, neighbours = _read_defaults(want_routes[ns.key])
                    values = _read_conf(want_conf[ns.key], proc) if ns.key in want_conf else {}
                facts[ns.key] = NsFacts(defaults, neighbours, values)
            except OSError as error:
                facts[ns.key] = NsFacts(error=f"cannot read: {error.strerror or error}")
            finally:
                os.close(fd)
    return facts


def dying(nsids: Iterable[int]) -> frozenset[int]:
    """The nsids (as the current namespace, the host, numbers them) whose namespace is being
    destroyed: nothing holds it any more, but the kernel's cleanup has not yet removed its nsid
    and its veths (``RtnlSocket.nsid_alive``). Such a veth is not an orphan: it is going away."""
    with RtnlSocket() as sock:
        return frozenset(nsid for nsid in nsids if not sock.nsid_alive(nsid))


@dataclass(frozen=True, slots=True)
class Holder:
    """A process holding a network namespace only through an open file descriptor."""

    pid: int
    fd: int
    comm: str | None

    def __str__(self) -> str:
        return f"pid {self.pid}" + (f" ({self.comm})" if self.comm else "") + f" fd {self.fd}"


def fd_holders(nsids: Iterable[int], nsfs_dev: int, proc: str = "/proc") -> dict[int, list[Holder]]:
    """Processes holding an fd on the namespaces the host knows by these nsids.

    A namespace with no process and no bind mount can still be alive because some
    process keeps an fd on it (a runtime that leaked it). Discovery does not look at
    fds (too costly for the table); `doctor` does for the few orphans it explains.
    An fd opened through /proc/PID/ns/net reads as ``net:[INO]``; one opened through
    a bind mount reads as the mount's path, or ``/`` once it is unmounted: so any fd
    on the nsfs device (``nsfs_dev``) is a candidate, and RTM_GETNSID says which.
    vethpeer's own process is not looked at: the live model holds every namespace it reads
    open (thousands of fds on a big node), and is never the leak being explained.
    """
    wanted = set(nsids)
    found: dict[int, list[Holder]] = {}
    if not wanted:
        return found
    seen: dict[int, int | None] = {}  # nsfs inode -> nsid
    try:
        me = os.readlink(f"{proc}/self")  # our own fds (serve --live holds one per namespace) name no leak
    except OSError:
        me = ""
    with RtnlSocket() as sock:
        for pid in (name for name in os.listdir(proc) if name.isdigit() and name != me):
            try:
                fds = os.listdir(f"{proc}/{pid}/fd")
            except OSError:
                continue
            for fd_name in fds:
                path = f"{proc}/{pid}/fd/{fd_name}"
                try:
                    target = os.readlink(path)
                    if target.startswith(_NOT_NSFS) or not (target.startswith(("net:[", "/"))):
                        continue
                    st = os.stat(path)
                except OSError:
                    continue
                if st.st_dev != nsfs_dev:
                    continue
                if st.st_ino not in seen:
                    seen[st.st_ino] = _nsid_via(sock, path)
                nsid = seen[st.st_ino]
                if nsid is not None and nsid in wanted:
                    holder = Holder(int(pid), int(fd_name), procfs.comm(int(pid), proc))
                    found.setdefault(nsid, []).append(holder)
    return found


_NOT_NSFS = ("socket:", "pipe:", "anon_inode:", "/dev/", "/proc/", "/sys/", "/usr/", "/var/log/")


def _nsid_via(sock: RtnlSocket, path: str) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return sock.nsid_of(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
