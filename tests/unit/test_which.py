"""`which` on an ambiguous ID prefix: the candidates are the containers whose IDs matched."""

from __future__ import annotations

import pytest

from vethpeer.correlate import correlate
from vethpeer.errors import Ambiguous, NotFound
from vethpeer.focus import Focus, by_name
from vethpeer.model import (
    Claim,
    LinkClaim,
    Namespace,
    NsKey,
    NsView,
    Snapshot,
    SourceResult,
    Workload,
    WorkloadKind,
)
from vethpeer.netns import Discovery
from vethpeer.targets import resolve, workload_namespaces

from .builders import LO, answered

HOST = NsKey(4, 1)
WEB, DB = NsKey(4, 100), NsKey(4, 101)
WEB_ID = "1a" + "0" * 62
JOIN_ID = "b7" + "1" * 62  # `docker run --network container:web --name join`: web's namespace
DB_ID = "b7" + "2" * 62  # shares JOIN_ID's first two digits
HOSTNET_ID = "b7" + "3" * 62  # `--network host`


def _docker(name: str, cid: str, *joined: tuple[str, str]) -> Workload:
    return Workload(
        WorkloadKind.DOCKER,
        name,
        id=cid,
        containers=(name, *(n for n, _ in joined)),
        container_ids=(cid, *(i for _, i in joined)),
        source="docker",
    )


def _report(*, with_host_network: bool = False) -> tuple[Snapshot, list[SourceResult]]:
    views = [
        NsView(Namespace(HOST, is_host=True), (LO,)),
        NsView(Namespace(WEB), (LO,)),
        NsView(Namespace(DB), (LO,)),
    ]
    claims = [
        Claim(WEB, _docker("web", WEB_ID, ("join", JOIN_ID)), 50),
        Claim(WEB, Workload(WorkloadKind.CONTAINER, WEB_ID[:12], id=WEB_ID, source="cgroup"), 10),
        Claim(DB, _docker("db", DB_ID), 50),
    ]
    if with_host_network:
        claims.append(Claim(HOST, _docker("hostnet", HOSTNET_ID), 50))
    return Snapshot(HOST, tuple(views)), [answered("docker", claims)]


def test_prefix_of_a_joined_container_names_that_container() -> None:
    report = correlate(*_report())
    with pytest.raises(Ambiguous) as many:
        resolve(report, "b7")
    assert many.value.candidates == ["docker/db", "docker/join (shares docker/web's netns)"]
    assert str(many.value) == "'b7' matches 2 workloads"
    assert many.value.hint == "candidates: docker/db, docker/join (shares docker/web's netns)"


def test_host_network_containers_are_each_listed() -> None:
    report = correlate(*_report(with_host_network=True))
    with pytest.raises(Ambiguous) as many:
        resolve(report, "b7")
    assert many.value.candidates == [
        "docker/db",
        "docker/hostnet",
        "docker/join (shares docker/web's netns)",
    ]


def test_a_unique_prefix_of_the_joined_container_finds_the_shared_namespace() -> None:
    report = correlate(*_report())
    for target in ("b71", "join", JOIN_ID):
        match = resolve(report, target)
        assert match.how == "workload" and {r.end.ns.key for r in match.rows} == {WEB}, target


def _which_text(monkeypatch: pytest.MonkeyPatch, target: str) -> str:
    """`vethpeer which TARGET` in text, over the report above (the walk replaced by it)."""
    import io

    from vethpeer import collect
    from vethpeer.cli import main
    from vethpeer.environment import Environment

    report = correlate(*_report())
    monkeypatch.setattr(collect, "gather", lambda _request, _env: report)
    out = io.StringIO()
    assert main(["which", target], Environment(stdout=out, stderr=io.StringIO(), environ={})) == 0
    return out.getvalue()


def test_text_names_the_containers_that_joined_a_namespace() -> None:
    from vethpeer.render.tables import columns

    report = correlate(*_report())
    _header, table = columns(report, report.rows, wide=False)
    assert [cells[0] for cells in table] == ["docker/db", "docker/web (+join)"]


def test_which_says_a_joined_container_shares_the_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    for target in ("join", "b71"):
        text = _which_text(monkeypatch, target)
        assert text.startswith("join shares docker/web's network namespace\n"), text
        assert "docker/web (+join)" in text
    assert "shares" not in _which_text(monkeypatch, "web")


@pytest.mark.parametrize(
    "target", ["web", "join", "db", "b7", "1a", JOIN_ID, WEB_ID[:12], "hostnet", "docker/db", "nothing"]
)
def test_the_namespaces_a_name_is_placed_in_are_resolves(target: str) -> None:
    """focus.by_name reads what workload_namespaces gives: one namespace, resolve's answer there;
    several, resolve's ambiguity; none, not found; the host's, host network."""
    snapshot, results = _report(with_host_network=True)
    keys = workload_namespaces(correlate(Snapshot(HOST, ()), results), target, None)
    report = correlate(snapshot, results)
    try:
        match = resolve(report, target)
    except Ambiguous:
        assert len(keys) > 1
        return
    except NotFound:
        assert not keys
        return
    if match.host_network:
        assert keys == {HOST}
    else:
        assert keys == {row.end.ns.key for row in match.rows} and len(keys) == 1


def test_by_name_reads_no_row_for_nothing_an_ambiguity_or_the_host_and_walks_for_a_tap() -> None:
    snapshot, results = _report(with_host_network=True)
    discovery = Discovery(HOST, "pid 1", tuple(view.ns for view in snapshot.views), 0, 0)
    nothing = Focus(frozenset(), ())
    assert by_name(discovery, results, "nothing") == nothing
    assert by_name(discovery, results, "b7") == nothing  # ambiguous
    assert by_name(discovery, results, "hostnet") == nothing  # host network: no row
    vm = Workload(WorkloadKind.VM, "vm1", id="42", source="taps")
    with_tap = [*results, answered("taps", links=[LinkClaim(HOST, "tap0", vm, 10)])]
    assert by_name(discovery, with_tap, "vm1") is None  # its row is a host interface: walk it all
    assert by_name(discovery, with_tap, "nothing") == nothing
