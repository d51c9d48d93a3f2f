"""The live model's pure parts: the resync's drift (model vs walk), the FDB events, and the
server's view of the model. Hand-made reports, as in test_live.py; no kernel here."""

from __future__ import annotations

import struct
from dataclasses import replace

from vethpeer.agent.cache import Answer, CacheStats
from vethpeer.agent.metrics import Health, health_families
from vethpeer.live import drift, events
from vethpeer.live.model import ModelStats
from vethpeer.model import Claim, LinkStats, NsKey, Workload, WorkloadKind

from .test_live import _attr, _nlmsg, pod_pair, report

POD5, POD6 = NsKey(4, 5), NsKey(4, 6)


def kinds(found: list[drift.Drift]) -> list[str]:
    return [d.kind for d in found]


def test_the_same_host_is_no_drift_whatever_the_counters() -> None:
    model = report({5: pod_pair(5, 10, stats=LinkStats(rx_bytes=1))})
    walk = report({5: pod_pair(5, 10, stats=LinkStats(rx_bytes=99))})
    assert drift.drift(model, walk) == []


def test_missing_extra_and_changed_interfaces() -> None:
    model = report({5: pod_pair(5, 10)})
    walk = report({6: pod_pair(6, 11)})
    found = drift.drift(model, walk)
    assert sorted(set(kinds(found))) == ["interface-extra", "interface-missing", "namespace", "workload"]
    assert drift.counts(found)["interface-missing"] == 1  # eth0 in 6 (a row: the workload's end)
    renamed = report({5: pod_pair(5, 10, name="eth9")})
    assert kinds(drift.drift(model, renamed)) == ["interface-changed"]


def test_changes_announced_during_the_walk_are_excused() -> None:
    model = report({5: pod_pair(5, 10)})
    down = report({5: pod_pair(5, 10, mtu=9000)})
    assert drift.drift(model, down, drift.Excused(namespaces=frozenset({POD5}))) == []
    assert drift.drift(model, down, drift.Excused(devices=frozenset({(POD5, 2)}))) == []
    assert drift.drift(model, down, drift.Excused(devices=frozenset({(POD6, 2)}))) != []
    came = report({5: pod_pair(5, 10), 6: pod_pair(6, 11)})
    assert drift.drift(model, came, drift.Excused(churned=True)) == []
    assert drift.drift(model, came, drift.Excused(all=True)) == []


def test_names_still_to_be_asked_are_not_drift() -> None:
    web = Claim(POD5, Workload(WorkloadKind.DOCKER, "web", id="abc", source="docker"), 40)
    plain, named = report({5: pod_pair(5, 10)}), report({5: pod_pair(5, 10)}, (web,))
    assert "workload" in kinds(drift.drift(plain, named))
    assert drift.drift(plain, named, drift.Excused(names=True)) == []


def test_a_bridge_fdb_event_names_its_port_and_arp_is_ignored() -> None:
    bridge = struct.pack("=BxxxiHBB", events.AF_BRIDGE, 12, 0x80, 2, 0) + _attr(2, bytes(6))
    arp = struct.pack("=BxxxiHBB", 2, 3, 0x02, 0, 1)
    parsed = events.parse(
        _nlmsg(events.RTM_NEWNEIGH, bridge)
        + _nlmsg(events.RTM_NEWNEIGH, arp)
        + _nlmsg(events.RTM_DELNEIGH, bridge),
        nsid=None,
    )
    assert parsed == [events.KernelEvent("fdb", None, 12), events.KernelEvent("fdb", None, 12)]


def test_the_model_families_count_drift_by_kind() -> None:
    stats = ModelStats(generation=7, resyncs=2, drift={"interface-extra": 1}, settled=True)
    health = Health(Answer(None, stale=False, error=None), CacheStats(7, 0, False, None, model=stats), 1.0)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in health_families(health)
        for s in family.samples
    }
    assert samples[("vethpeer_resync_drift_total", (("kind", "interface-extra"),))] == 1
    assert samples[("vethpeer_resync_drift_total", (("kind", "interface-missing"),))] == 0
    assert samples[("vethpeer_model_generation", ())] == 7
    assert samples[("vethpeer_model_settled", ())] == 1
    assert samples[("vethpeer_resyncs_total", ())] == 2
    failed = {
        s.name: s.value
        for f in health_families(
            replace(health, stats=replace(health.stats, model=replace(stats, error="x")))
        )
        for s in f.samples
    }
    assert failed["vethpeer_model_up"] == 0


def test_findings_about_a_veth_gone_go_with_it() -> None:
    from vethpeer.agent.live import still_there
    from vethpeer.checks import Diagnosis
    from vethpeer.checks.base import Finding, Severity

    before = report({5: pod_pair(5, 10), 6: pod_pair(6, 11)})
    found = tuple(
        Finding("peer-down", Severity.WARNING, row.end, "down", peer=row.peer) for row in before.rows
    )
    diagnosis = Diagnosis(found, interfaces=2, namespaces=3)
    after = report({5: pod_pair(5, 10)})
    kept = still_there(diagnosis, after)
    assert kept is not None and [f.end.ns.key for f in kept.findings] == [POD5]
    assert still_there(diagnosis, before) is diagnosis
    assert still_there(None, after) is None


def test_a_refresh_is_fresh_only_when_every_namespace_was_read_after_the_ask() -> None:
    from vethpeer.live.model import State
    from vethpeer.live.reading import fresh

    made = report({})
    read = {NsKey(4, 1): 10.0, NsKey(4, 2): 12.0}
    assert fresh(State(made, 1, 12.0, 0.0, 0.0, 11.0, read), 10.0)
    assert not fresh(State(made, 1, 12.0, 0.0, 0.0, 11.0, read), 11.0)  # the host was read before it
    assert not fresh(State(made, 1, 12.0, 0.0, 0.0), 0.0)  # no read times: nothing is known


def test_the_commands_hear_the_models_log_but_for_its_stop() -> None:
    from vethpeer.live.reading import STOPPED, log_to

    heard: list[str] = []
    log = log_to(heard.append)
    log("vethpeer: netlink events were lost (ENOBUFS): the model was walked again")
    log(STOPPED + "docker: unavailable")  # the command raises it instead, on one line
    assert heard == ["vethpeer: netlink events were lost (ENOBUFS): the model was walked again"]
