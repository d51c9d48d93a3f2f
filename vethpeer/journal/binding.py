"""The journal's values: one binding (a workload interface, its host-side peer, its owner) and
the same binding as recorded, with its lifetime. Pure, no I/O.

A binding is the whole tuple: if any part changes (an address added, the veth renamed, the
workload named differently), the old binding ends and a new one begins, so the history
shows every state the target was in.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Binding:
    """What was bound to what: the identity the journal records and diffs on."""

    inner_name: str  # the workload's own interface (eth0)
    inner_ifindex: int
    inner_mac: str | None
    addresses: tuple[str, ...]  # the workload interface's addresses, CIDR form
    netns: int  # inode of the workload's network namespace
    host_name: str | None  # the peer (host-side veth); None for a tap or an unresolved peer
    host_ifindex: int | None
    host_mac: str | None
    host_netns: int | None  # inode of the peer's namespace (the host's, mostly)
    bridge: str | None  # the peer's master
    kind: str  # workload kind (docker, pod, netns, ...)
    name: str
    label: str  # how a person names it: docker/web, pod/shop/web, netns/x
    workload_id: str | None = None
    kube_namespace: str | None = None
    pod_uid: str | None = None
    containers: tuple[str, ...] = ()
    container_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Recorded:
    """A binding as the journal holds it: when it was first seen, last seen, and seen gone."""

    id: int
    binding: Binding
    first_seen: float  # Unix time
    last_seen: float
    gone: float | None  # None: still bound when last recorded

    def alive_at(self, at: float, tolerance: float = 0.0) -> bool:
        """Whether it held at ``at``: between first seen and gone (or last seen, if never seen
        gone), widened by ``tolerance`` on both sides."""
        until = self.gone if self.gone is not None else self.last_seen
        return self.first_seen - tolerance <= at <= until + tolerance


def normal_mac(text: str) -> str:
    return text.lower().replace("-", ":")


def normal_ip(text: str) -> str | None:
    """An address without its prefix length, in canonical form; None if not an address."""
    try:
        return str(ipaddress.ip_interface(text).ip)
    except ValueError:
        return None


def keys_of(b: Binding) -> frozenset[str]:
    """Every string a target can be to find this binding: the host-side name, both MACs, each
    address, the workload's name, label, ID, NS/NAME, container names and IDs, pod UID."""
    keys = {b.name, b.label}
    for value in (b.host_name, b.workload_id, b.pod_uid):
        if value:
            keys.add(value)
    for mac in (b.inner_mac, b.host_mac):
        if mac and mac != "00:00:00:00:00:00":
            keys.add(normal_mac(mac))
    for address in b.addresses:
        ip = normal_ip(address)
        if ip:
            keys.add(ip)
    if b.kube_namespace:
        keys.add(f"{b.kube_namespace}/{b.name}")
    keys.update(b.containers)
    keys.update(b.container_ids)
    return frozenset(k for k in keys if k)
