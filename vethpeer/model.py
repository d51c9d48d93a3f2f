"""The values vethpeer passes around: immutable, typed, free of I/O.

Sources produce them, the correlator joins them, the output formats print them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, NamedTuple

# Named tuples, not frozen dataclasses, wherever no field's name is a tuple method's (Link has
# `index`): Python 3.11 compiles six methods for each frozen dataclass when it is created, ~0.4 ms
# a class at every start, against ~0.06 ms for a named tuple. They are as immutable, compare and
# hash alike; `._replace()` is their `dataclasses.replace()`.

NO_ENTRIES: Mapping[Any, Any] = MappingProxyType({})  # a shared default that cannot be written to


class NsKey(NamedTuple):
    """A network namespace's identity: (st_dev, st_ino) of its nsfs file.

    Paths and names are only ways to reach a namespace; this is what it is. A named tuple,
    not a dataclass: it is every dictionary's key in a walk (tens of thousands of lookups at
    N=1000), and a tuple hashes and compares in C.
    """

    dev: int
    ino: int


class Namespace(NamedTuple):
    """A network namespace found on the host, with every way to reach it."""

    key: NsKey
    is_host: bool = False
    mounts: tuple[str, ...] = ()  # nsfs bind mounts as the node names them: /run/netns/NAME, ...
    pids: tuple[int, ...] = ()  # processes inside, ascending
    comm: str | None = None  # command name of the lowest PID
    # The same mounts as reachable from here, when that differs (in a container: the node's
    # /run/docker/netns/ID is /proc/1/root/run/docker/netns/ID); empty when they are the mounts.
    reachable: tuple[str, ...] = ()

    @property
    def netns_names(self) -> tuple[str, ...]:
        """Names that `ip netns` knows this namespace by."""
        names = []
        for path in self.mounts:  # /run/netns/NAME
            head, _, name = path.rpartition("/")
            if head.endswith("/run/netns"):
                names.append(name)
        return tuple(names)


class LinkStats(NamedTuple):
    """``struct rtnl_link_stats64`` (IFLA_STATS64), in the kernel's order. Older kernels send
    fewer fields: those missing read 0. Directions are the interface's own point of view.
    A named tuple: the kernel's struct as it comes (a frozen dataclass of 25 fields took ~1 ms
    to create at every start)."""

    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    multicast: int = 0
    collisions: int = 0
    rx_length_errors: int = 0
    rx_over_errors: int = 0
    rx_crc_errors: int = 0
    rx_frame_errors: int = 0
    rx_fifo_errors: int = 0
    rx_missed_errors: int = 0
    tx_aborted_errors: int = 0
    tx_carrier_errors: int = 0
    tx_fifo_errors: int = 0
    tx_heartbeat_errors: int = 0
    tx_window_errors: int = 0
    rx_compressed: int = 0
    tx_compressed: int = 0
    rx_nohandler: int = 0
    rx_otherhost_dropped: int = 0


@dataclass(frozen=True, slots=True)
class Link:
    """One network interface, as the kernel reported it inside one namespace.

    ``link`` and ``link_netnsid`` are IFLA_LINK and IFLA_LINK_NETNSID: the peer's
    (or parent's) ifindex, and the nsid *this* namespace gives the namespace that
    ifindex lives in (None: the same namespace).
    """

    index: int
    name: str
    flags: int = 0
    kind: str | None = None
    mac: str | None = None
    mtu: int | None = None
    operstate: str = "unknown"
    master: int | None = None
    link: int | None = None
    link_netnsid: int | None = None
    slave_kind: str | None = None
    brport_state: str | None = None
    addresses: tuple[str, ...] = ()
    stats: LinkStats | None = None  # only when the walk was asked for counters

    @property
    def is_loopback(self) -> bool:
        return self.name == "lo" and self.kind is None and self.mac in (None, "00:00:00:00:00:00")


class FdbEntry(NamedTuple):
    """One entry of a bridge's forwarding database (AF_BRIDGE neighbour); a named tuple, as a
    walk makes one per learnt MAC (thousands on a busy bridge)."""

    port: int
    mac: str
    master: int | None
    vlan: int | None
    state: int
    flags: int


class NsView(NamedTuple):
    """Everything read from one namespace.

    ``nsids`` maps the nsids this namespace uses (IFLA_LINK_NETNSID) to the
    namespaces they were verified to mean, by RTM_GETNSID.
    """

    ns: Namespace
    links: tuple[Link, ...] = ()
    nsids: Mapping[int, NsKey] = NO_ENTRIES
    fdb: tuple[FdbEntry, ...] = ()
    error: str | None = None  # why it could not be read (vanished, ...)
    # names of FDB ports that are not among ``links`` (a focused read has only some of the host's)
    port_names: Mapping[int, str] = NO_ENTRIES


class Snapshot(NamedTuple):
    """The kernel's view of every network namespace that could be read."""

    host: NsKey
    views: tuple[NsView, ...]
    unreadable_pids: int = 0  # /proc/PID/ns/net that refused us (protected processes)
    vanished_pids: int = 0  # processes that exited during the walk
    host_found_via: str = "pid 1"


class WorkloadKind(str, Enum):
    HOST = "host"
    POD = "pod"
    DOCKER = "docker"
    CONTAINER = "container"  # a container known only from its cgroup path
    NETNS = "netns"
    PROCESS = "process"
    # Added with the runtime resolvers (additive): who made the namespace, by its own records.
    PODMAN = "podman"
    LXC = "lxc"
    NSPAWN = "machine"  # systemd-nspawn
    VM = "vm"  # a QEMU/libvirt guest: the owner of a tap in the host namespace
    DOCKER_NETWORK = "docker-network"  # an overlay/swarm sandbox of a Docker network


class Workload(NamedTuple):
    """Who a network namespace belongs to."""

    kind: WorkloadKind
    name: str
    id: str | None = None
    namespace: str | None = None  # Kubernetes namespace
    uid: str | None = None  # Kubernetes pod UID
    image: str | None = None
    networks: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()  # all containers sharing the namespace
    source: str = "kernel"  # which source named it
    # Added for pods (CRI and the Kubernetes API); keep new fields at the end, with defaults.
    container_ids: tuple[str, ...] = ()  # IDs of the containers in `containers` (CRI), for `which`
    node: str | None = None  # Kubernetes node name (API)
    pod_ip: str | None = None  # the pod's primary IP (API)
    owner: str | None = None  # controlling owner as KIND/NAME, e.g. Deployment/web (API)

    @property
    def label(self) -> str:
        """How a person refers to it: ``host``, ``docker/web``, ``pod/ns/name``, ``netns/x``."""
        if self.kind is WorkloadKind.HOST:
            return "host"
        if self.kind is WorkloadKind.PROCESS or self.name.startswith(("/", "net:[")):
            return self.name  # "pid/42 (sleep)", a bind-mount path, or "net:[INODE]" as readlink shows
        if self.kind is WorkloadKind.POD and self.namespace:
            return f"pod/{self.namespace}/{self.name}"
        return f"{self.kind.value}/{self.name}"


class Claim(NamedTuple):
    """A source's statement that a namespace belongs to a workload.

    ``priority`` decides between claims on one namespace (higher wins).
    """

    netns: NsKey
    workload: Workload
    priority: int


class LinkClaim(NamedTuple):
    """A source's statement that one interface (not a whole namespace) belongs to a workload.

    A tap device lives in the host namespace and has no peer: it belongs to the process
    that holds ``/dev/net/tun`` attached to it (a VM).
    """

    netns: NsKey
    ifname: str
    workload: Workload
    priority: int


class SourceState(str, Enum):
    OK = "ok"
    UNAVAILABLE = "unavailable"  # not installed, socket absent, daemon down
    TIMEOUT = "timeout"
    ERROR = "error"
    SKIPPED = "skipped"  # not asked for


class SourceStatus(NamedTuple):
    name: str
    state: SourceState
    detail: str = ""


class SourceResult(NamedTuple):
    """What one source contributed; a failed source is a value, not an exception."""

    status: SourceStatus
    claims: tuple[Claim, ...] = ()
    links: tuple[LinkClaim, ...] = ()  # owners of single host interfaces (taps)


class Relation(str, Enum):
    VETH = "veth"  # the other end of a pair device (veth, netkit)
    PARENT = "parent"  # the lower device of a macvlan/ipvlan/vlan/...
    TAP = "tap"  # a tap device held by a process (a VM): no peer device, the row's workload owns it


class End(NamedTuple):
    """An interface together with where it lives and who owns that place."""

    ns: Namespace
    workload: Workload
    link: Link
    master: str | None  # name of the bridge/bond it is enslaved to


class Row(NamedTuple):
    """One interface inside a workload namespace, joined with its peer."""

    end: End
    relation: Relation | None = None
    peer: End | None = None
    unresolved: str | None = None  # why a peer that exists could not be found


class Report(NamedTuple):
    """The correlator's answer."""

    rows: tuple[Row, ...]
    workloads: Mapping[NsKey, tuple[Workload, ...]]  # all claims per namespace, best first
    host_network: tuple[Workload, ...]  # workloads that share the host namespace
    sources: tuple[SourceStatus, ...]
    snapshot: Snapshot
