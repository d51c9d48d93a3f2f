"""Checks on bridges and their ports: addresses on ports, STP state, the MAC table."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from .. import fdb as fdbmod
from ..model import Report, Row
from ..netlink import IFF_LOWER_UP, IFF_UP
from ..shell import in_ns, ip_in
from .base import Facts, Finding, Severity, check, ends, global_addresses


@check("address-on-bridge-port")
def address_on_port(report: Report, facts: Facts) -> Iterator[Finding]:
    """An IP address on a bridge port: the bridge takes the frames, the address never answers."""
    host = facts.host
    for end in ends(facts.rows):
        if end.link.slave_kind != "bridge":
            continue
        addresses = global_addresses(end.link.addresses)
        if not addresses:
            continue
        bridge = end.master or f"if{end.link.master}"
        bridge_link = facts.link(end.ns.key, end.link.master)
        fix: list[str] = []
        for address in addresses:
            fix.append(ip_in(end, host, "addr", "del", str(address), "dev", end.link.name))
            if bridge_link is None or str(address) not in bridge_link.addresses:
                fix.append(ip_in(end, host, "addr", "add", str(address), "dev", bridge))
        yield Finding(
            "address-on-bridge-port",
            Severity.WARNING,
            end,
            f"{end.link.name} is a port of bridge {bridge} but has address "
            f"{', '.join(map(str, addresses))}: frames arriving on it are handed to the bridge, "
            "so that address is never answered; it belongs on the bridge",
            evidence=(f"{end.link.name}: master {bridge}, addresses {', '.join(map(str, addresses))}",),
            confirm=(ip_in(end, host, "-d", "addr", "show", "dev", end.link.name),),
            fix=tuple(fix),
        )


@check("bridge-port-not-forwarding")
def port_state(report: Report, facts: Facts) -> Iterator[Finding]:
    """A bridge port that is up but not forwarding (STP listening, learning or blocking)."""
    host = facts.host
    for end in ends(facts.rows):
        state = end.link.brport_state
        if state is None or state == "forwarding":
            continue
        if not end.link.flags & IFF_UP or not end.link.flags & IFF_LOWER_UP:
            continue  # a down port is "disabled": link-down says why
        bridge = end.master or f"if{end.link.master}"
        why = {
            "listening": "STP is still listening (it forwards after 2 x forward_delay)",
            "learning": "STP is still learning (it forwards after forward_delay)",
            "blocking": "STP blocks it: the bridge sees a loop, or a better path, through this port",
            "disabled": "the port is disabled",
        }.get(state, f"state {state}")
        yield Finding(
            "bridge-port-not-forwarding",
            Severity.WARNING,
            end,
            f"{end.link.name} is a port of {bridge} in state {state}: it forwards no frames; {why}",
            evidence=(f"{end.link.name}: bridge port state {state}",),
            confirm=(
                in_ns(end.ns, host, "bridge", "link", "show", "dev", end.link.name),
                in_ns(end.ns, host, "ip", "-d", "link", "show", "dev", bridge),
            ),
            fix=(
                (in_ns(end.ns, host, "ip", "link", "set", "dev", bridge, "type", "bridge", "stp_state", "0"),)
                if state != "disabled"
                else (in_ns(end.ns, host, "bridge", "link", "set", "dev", end.link.name, "state", "3"),)
            ),
        )


def _random_mac(seed: str) -> str:
    digest = bytearray(hashlib.sha256(seed.encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02  # locally administered, unicast
    return digest.hex(":")


@check("duplicate-mac", "fdb-not-learned", "fdb-elsewhere")
def fdb(report: Report, facts: Facts) -> Iterator[Finding]:
    """The workload's MAC on its bridge port: never learned (info), elsewhere or on two ports (error)."""
    host, rows = facts.host, facts.rows
    verdicts = fdbmod.classify(report, rows)
    # duplicates are found among all rows (the twin may be outside TARGET), reported if they touch ours
    chosen = {fdbmod.row_key(r) for r in rows}
    ports = {(r.peer.ns.key, r.peer.link.name): r for r in rows if r.peer is not None}
    dups: list[tuple[fdbmod.Duplicate, Row]] = []
    for dup in fdbmod.duplicates(report):
        mine = [r for r in dup.rows if fdbmod.row_key(r) in chosen]
        mine += [ports[(dup.netns, p)] for p in dup.ports if (dup.netns, p) in ports]
        if mine:
            dups.append((dup, mine[0]))
    in_dup = {fdbmod.row_key(r) for dup, _subject in dups for r in dup.rows} | {
        fdbmod.row_key(subject) for _dup, subject in dups
    }
    for dup, subject in dups:
        last = dup.rows[-1] if dup.rows else subject
        fix: tuple[str, ...] = ()
        if len(dup.rows) > 1:
            new = _random_mac(f"{last.end.ns.key.ino}/{last.end.link.name}")
            fix = (ip_in(last.end, host, "link", "set", "dev", last.end.link.name, "address", new),)
        yield Finding(
            "duplicate-mac",
            Severity.ERROR,
            subject.end,
            f"{dup.mac} is on {len(dup.ports)} ports of bridge {dup.bridge} ({', '.join(dup.ports)}): "
            "the bridge delivers its frames to one of them only",
            evidence=(
                dup.evidence(),
                *(f"{r.end.workload.label} {r.end.link.name} has MAC {dup.mac}" for r in dup.rows),
            ),
            confirm=(
                in_ns(
                    subject.peer.ns if subject.peer else subject.end.ns,
                    host,
                    "bridge",
                    "fdb",
                    "show",
                    "br",
                    dup.bridge,
                ),
            ),
            fix=fix,
            peer=subject.peer,
        )
    for row in rows:
        verdict = verdicts.get(fdbmod.row_key(row))
        if verdict is None or row.peer is None or fdbmod.row_key(row) in in_dup:
            continue
        confirm = (in_ns(row.peer.ns, host, "bridge", "fdb", "show", "br", verdict.bridge),)
        if verdict.state is fdbmod.FdbState.NOT_LEARNED:
            yield Finding(
                "fdb-not-learned",
                Severity.INFO,
                row.end,
                f"bridge {verdict.bridge} has not learned {verdict.mac} on {verdict.port}: the workload has "
                "sent no frame lately (normal for an idle one; its entry ages out after 300 s)",
                evidence=(verdict.evidence(),),
                confirm=confirm,
                peer=row.peer,
            )
        elif verdict.state is fdbmod.FdbState.ELSEWHERE:
            new = _random_mac(f"{row.end.ns.key.ino}/{row.end.link.name}")
            yield Finding(
                "fdb-elsewhere",
                Severity.ERROR,
                row.end,
                f"bridge {verdict.bridge} has {verdict.mac} on {verdict.learned_on}, not on {verdict.port}: "
                "a duplicate MAC or a mis-plugged veth; frames for the workload go to the wrong port",
                evidence=(verdict.evidence(),),
                confirm=confirm,
                fix=(ip_in(row.end, host, "link", "set", "dev", row.end.link.name, "address", new),),
                peer=row.peer,
            )
