"""Small builders of model values for the unit tests.

``answered()`` is what a source that answered hands the correlator; ``cri_pods()`` is the CLI
tests' node of three CRI pods. A ``Topo`` (the doctor / fdb / ovs / capture tests) collects
namespaces and links, then ``report()`` runs the real correlator over them, so the rows the
checks see are exactly what the CLI would give them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from vethpeer.correlate import correlate
from vethpeer.model import (
    Claim,
    FdbEntry,
    Link,
    LinkClaim,
    Namespace,
    NsKey,
    NsView,
    Report,
    Snapshot,
    SourceResult,
    SourceState,
    SourceStatus,
    Workload,
    WorkloadKind,
)
from vethpeer.netlink import IFF_LOWER_UP, IFF_UP

UP = IFF_UP | IFF_LOWER_UP
HOST = NsKey(4, 1000)
LO = Link(1, "lo", mac="00:00:00:00:00:00")  # a bare loopback, as most hand-built views carry it


def answered(source: str, claims: Iterable[Claim] = (), links: Iterable[LinkClaim] = ()) -> SourceResult:
    """What ``source`` hands the correlator when it answered in time."""
    return SourceResult(SourceStatus(source, SourceState.OK), tuple(claims), tuple(links))


def cri_pods() -> Report:
    """A node (host ino 1) with bridge br0 and three CRI pods: shop/web, blog/web, shop/db, each
    eth0 10.0.0.<i + 2>/24 <-> veth<i> on br0, pod sandbox IDs ``abc<i>0000``."""
    host = NsKey(4, 1)
    host_links = [LO, Link(3, "br0", kind="bridge", mac="02:00:00:00:00:03")]
    views = []
    claims = []
    for i, (name, ns_name) in enumerate([("web", "shop"), ("web", "blog"), ("db", "shop")]):
        key = NsKey(4, 100 + i)
        host_links.append(
            Link(
                10 + i, f"veth{i}", kind="veth", mac=f"02:00:00:00:01:0{i}", master=3, link=2, link_netnsid=i
            )
        )
        eth0 = Link(
            2,
            "eth0",
            kind="veth",
            mac=f"02:00:00:00:02:0{i}",
            link=10 + i,
            link_netnsid=0,
            addresses=(f"10.0.0.{i + 2}/24",),
        )
        views.append(NsView(Namespace(key, mounts=(f"/run/netns/cni-{i}",)), (LO, eth0), {0: host}))
        pod = Workload(WorkloadKind.POD, name, id=f"abc{i}0000", namespace=ns_name, source="cri")
        claims.append(Claim(key, pod, 40))
    views.append(
        NsView(Namespace(host, is_host=True), tuple(host_links), {i: NsKey(4, 100 + i) for i in range(3)})
    )
    return correlate(Snapshot(host, tuple(views)), [answered("cri", claims)])


@dataclass
class Topo:
    namespaces: dict[NsKey, Namespace] = field(default_factory=dict)
    links: dict[NsKey, list[Link]] = field(default_factory=dict)
    nsids: dict[NsKey, dict[int, NsKey]] = field(default_factory=dict)
    fdb: dict[NsKey, list[FdbEntry]] = field(default_factory=dict)
    names: dict[NsKey, str] = field(default_factory=dict)
    _next_ino: int = 2000
    _next_index: dict[NsKey, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.namespaces[HOST] = Namespace(HOST, is_host=True, pids=(1,))
        self.links[HOST] = [Link(1, "lo", flags=UP | 0x8, operstate="unknown")]

    def netns(self, name: str, *, pid: int | None = None) -> NsKey:
        key = NsKey(4, self._next_ino)
        self._next_ino += 1
        self.namespaces[key] = Namespace(key, mounts=(f"/run/netns/{name}",), pids=(pid,) if pid else ())
        self.links[key] = [Link(1, "lo", flags=UP | 0x8)]
        self.names[key] = name
        return key

    def index(self, key: NsKey) -> int:
        self._next_index[key] = self._next_index.get(key, 100) + 1
        return self._next_index[key]

    def _nsid(self, observer: NsKey, target: NsKey) -> int | None:
        if observer == target:
            return None
        table = self.nsids.setdefault(observer, {})
        for nsid, key in table.items():
            if key == target:
                return nsid
        table[len(table)] = target
        return len(table) - 1

    def add(self, key: NsKey, link: Link) -> Link:
        self.links[key].append(link)
        return link

    def veth(
        self,
        a_ns: NsKey,
        a_name: str,
        b_ns: NsKey,
        b_name: str,
        *,
        a: dict[str, object] | None = None,
        b: dict[str, object] | None = None,
    ) -> tuple[Link, Link]:
        ia, ib = self.index(a_ns), self.index(b_ns)
        la = Link(
            ia,
            a_name,
            flags=UP,
            kind="veth",
            mac=f"02:00:00:00:{ia:02x}:{a_ns.ino % 256:02x}",
            mtu=1500,
            operstate="up",
            link=ib,
            link_netnsid=self._nsid(a_ns, b_ns),
        )
        lb = Link(
            ib,
            b_name,
            flags=UP,
            kind="veth",
            mac=f"02:00:00:01:{ib:02x}:{b_ns.ino % 256:02x}",
            mtu=1500,
            operstate="up",
            link=ia,
            link_netnsid=self._nsid(b_ns, a_ns),
        )
        la = replace(la, **(a or {}))  # type: ignore[arg-type]
        lb = replace(lb, **(b or {}))  # type: ignore[arg-type]
        self.links[a_ns].append(la)
        self.links[b_ns].append(lb)
        return la, lb

    def bridge(self, key: NsKey, name: str, **fields: object) -> Link:
        link = Link(
            self.index(key), name, flags=UP, kind="bridge", mac="02:bb:00:00:00:01", mtu=1500, operstate="up"
        )
        link = replace(link, **fields)  # type: ignore[arg-type]
        self.links[key].append(link)
        return link

    def enslave(self, key: NsKey, port: Link, bridge: Link, state: str = "forwarding") -> Link:
        new = replace(port, master=bridge.index, slave_kind="bridge", brport_state=state)
        self.links[key] = [new if link.index == port.index else link for link in self.links[key]]
        self.fdb.setdefault(key, []).append(FdbEntry(new.index, new.mac or "", bridge.index, None, 0x80, 0))
        return new

    def learn(
        self, key: NsKey, bridge: Link, port: Link, mac: str, *, state: int = 0x02, vlan: int | None = None
    ) -> None:
        self.fdb.setdefault(key, []).append(FdbEntry(port.index, mac, bridge.index, vlan, state, 0))

    def set(self, key: NsKey, name: str, **fields: object) -> Link:
        for i, link in enumerate(self.links[key]):
            if link.name == name:
                self.links[key][i] = replace(link, **fields)  # type: ignore[arg-type]
                return self.links[key][i]
        raise KeyError(name)

    def snapshot(self, *, hide: set[NsKey] | None = None) -> Snapshot:
        hidden = hide or set()
        views = tuple(
            NsView(
                ns,
                tuple(self.links[key]),
                {nsid: k for nsid, k in self.nsids.get(key, {}).items() if k not in hidden},
                tuple(self.fdb.get(key, ())),
            )
            for key, ns in sorted(self.namespaces.items())
            if key not in hidden
        )
        return Snapshot(host=HOST, views=views)

    def report(self, *, hide: set[NsKey] | None = None) -> Report:
        claims = tuple(
            Claim(key, Workload(WorkloadKind.NETNS, name, id=name), 20) for key, name in self.names.items()
        )
        return correlate(self.snapshot(hide=hide), [answered("kernel", claims)])
