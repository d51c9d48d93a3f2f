"""The journal without root: bindings from a report, the recorder's diff, the store (a real
SQLite file in tmp), the queries, the time parsers and annotate's per-line function."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.unit.builders import HOST, Topo, cri_pods
from vethpeer.errors import Ambiguous, NotFound
from vethpeer.journal import query
from vethpeer.journal.annotate import Index, annotate_line
from vethpeer.journal.binding import Binding
from vethpeer.journal.record import Bindings, JournalWriter, Recorder, bindings
from vethpeer.journal.store import SCHEMA_VERSION, JournalError, JournalTooNew, Start, Store
from vethpeer.journal.stream import Annotator, output_of
from vethpeer.journal.times import line_time, parse_when, rfc3339
from vethpeer.model import NsKey

T0 = 1_764_800_000.0  # 2025-12-03T22:13:20Z


def b(
    name: str = "web", veth: str = "veth0", ip: str = "10.0.0.2/24", netns: int = 100, **kw: object
) -> Binding:
    fields: dict[str, object] = dict(
        inner_name="eth0", inner_ifindex=2, inner_mac="02:00:00:00:02:00", addresses=(ip,), netns=netns,
        host_name=veth, host_ifindex=10, host_mac="02:00:00:00:01:00", host_netns=1, bridge="br0",
        kind="docker", name=name, label=f"docker/{name}", workload_id="ab" * 32, containers=(name,),
        container_ids=("ab" * 32,),
    )  # fmt: skip
    fields.update(kw)
    return Binding(**fields)  # type: ignore[arg-type]


def log() -> tuple[list[str], object]:
    lines: list[str] = []
    return lines, lines.append


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "j" / "journal.sqlite")


def writer_store(path: str) -> Store:
    return Store.open_writer(path, lambda _line: None)


# -- bindings from a report ----------------------------------------------------------------------
def test_bindings_of_a_report_are_the_workload_interfaces_with_their_host_side() -> None:
    found = sorted(bindings(cri_pods()), key=lambda x: x.host_name or "")
    assert [(x.label, x.inner_name, x.host_name, x.bridge) for x in found] == [
        ("pod/shop/web", "eth0", "veth0", "br0"),
        ("pod/blog/web", "eth0", "veth1", "br0"),
        ("pod/shop/db", "eth0", "veth2", "br0"),
    ]
    assert found[0].addresses == ("10.0.0.2/24",) and found[0].workload_id == "abc00000"


def test_bindings_remembered_between_reports_are_the_bindings_of_each() -> None:
    """The recorder's per-row memory against the pure :func:`bindings` (the oracle), through
    reports that share most of their objects, as a live model's do."""
    topo = Topo()
    bridge = topo.bridge(HOST, "br0")
    pods = [topo.netns(f"n{i}") for i in range(4)]
    for i, key in enumerate(pods):
        host_end, _ = topo.veth(HOST, f"veth{i}", key, "eth0")
        topo.enslave(HOST, host_end, bridge)
    remembered = Bindings()
    report = topo.report()

    def rename(key: NsKey, old: str, new: str) -> None:
        topo.links[key] = [replace(link, name=new) if link.name == old else link for link in topo.links[key]]

    steps = [
        lambda: None,
        lambda: rename(pods[0], "eth0", "eth9"),  # renamed inside
        lambda: rename(HOST, "veth1", "vethX"),  # the host end renamed
        lambda: topo.set(pods[2], "eth0", addresses=("10.0.0.2/24",)),
        lambda: topo.set(HOST, "vethX", master=None),  # released from the bridge
        lambda: topo.names.update({pods[3]: "renamed"}),  # the workload named anew
        lambda: topo.veth(pods[3], "a0", pods[3], "a1"),  # both ends in one namespace
    ]
    for step in steps:
        step()
        previous, report = report, topo.report()
        assert remembered(report) == bindings(report)
        assert remembered(previous) == bindings(previous)  # and back
        assert remembered(report) == bindings(report)


def test_a_remembered_tap_binding_follows_its_bridges_new_name() -> None:
    """A VM's tap is its own host side: its bridge's name (the row's master) is part of its binding,
    and a bridge renamed leaves the tap's own link object as it was."""
    from tests.unit.builders import answered
    from vethpeer.correlate import correlate
    from vethpeer.model import Link, LinkClaim, Namespace, NsView, Snapshot, Workload, WorkloadKind

    host = Namespace(HOST, is_host=True)
    tap = Link(9, "vqtap0", kind="tun", mac="02:00:00:00:00:09", master=3)
    vm = Workload(WorkloadKind.VM, "vq-vm1", id="42", source="taps")
    held = [answered("taps", links=(LinkClaim(HOST, "vqtap0", vm, 40),))]
    remembered = Bindings()
    for bridge in ("br0", "br1"):
        snapshot = Snapshot(HOST, (NsView(host, (Link(3, bridge, kind="bridge"), tap)),))
        report = correlate(snapshot, held)
        assert remembered(report) == bindings(report)
        assert [b.bridge for b in bindings(report)] == [bridge]


def test_a_walk_with_a_failed_source_does_not_rename_bindings(path: str) -> None:
    from vethpeer.model import SourceState, SourceStatus

    report = cri_pods()
    store = writer_store(path)
    recorder = Recorder()
    recorder.observe(report, T0)
    renamed = {
        key: tuple(w._replace(name=f"net:[{key.ino}]", kind=w.kind.__class__("netns")) for w in ws)
        for key, ws in report.workloads.items()
    }
    rows = tuple(r._replace(end=r.end._replace(workload=renamed[r.end.ns.key][0])) for r in report.rows)
    failed = report._replace(rows=rows, sources=(SourceStatus("cri", SourceState.TIMEOUT, "3 s"),))
    recorder.observe(failed, T0 + 5)
    recorder.flush(store)
    assert {r.binding.label for r in store.every()} == {"pod/shop/web", "pod/blog/web", "pod/shop/db"}
    healthy = failed._replace(sources=(SourceStatus("cri", SourceState.OK),))
    recorder.observe(healthy, T0 + 10)  # the names given when every source answered are news
    recorder.flush(store)
    assert len(store.every()) == 6


# -- the store -----------------------------------------------------------------------------------
def test_a_new_journal_is_0600_in_wal_mode_at_the_schema_version(path: str) -> None:
    store = writer_store(path)
    store.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_file_that_is_not_sqlite_is_moved_aside_and_a_fresh_journal_starts(path: str) -> None:
    os.makedirs(os.path.dirname(path))
    Path(path).write_bytes(b"hello, not a database" * 100)
    lines: list[str] = []
    store = Store.open_writer(path, lines.append)
    store.close()
    aside = [n for n in os.listdir(os.path.dirname(path)) if ".corrupt-" in n]
    assert len(aside) == 1 and Path(os.path.dirname(path), aside[0]).read_bytes().startswith(b"hello")
    assert any("moved it to" in line and aside[0] in line for line in lines)
    assert Store.open_reader(path).count() == 0


def test_a_corrupt_database_is_moved_aside(path: str) -> None:
    store = writer_store(path)
    store.record([Start(b(), T0, T0)], [], None)
    store.close()
    data = bytearray(Path(path).read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)  # every page but the first overwritten
    Path(path).write_bytes(bytes(data))
    lines: list[str] = []
    Store.open_writer(path, lines.append).close()
    assert any("unreadable" in line for line in lines)


def test_a_journal_from_a_newer_vethpeer_is_refused_and_not_touched(path: str) -> None:
    writer_store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.execute("PRAGMA journal_mode = DELETE")
    db.close()
    before = (Path(path).read_bytes(), os.stat(path).st_mtime_ns)
    for opener in (lambda: Store.open_writer(path, print), lambda: Store.open_reader(path)):
        with pytest.raises(JournalTooNew, match="newer vethpeer"):
            opener()
    assert (Path(path).read_bytes(), os.stat(path).st_mtime_ns) == before
    assert sorted(os.listdir(os.path.dirname(path))) == ["journal.sqlite"]


def test_a_reader_never_creates_the_file(path: str) -> None:
    with pytest.raises(JournalError, match="no journal at"):
        Store.open_reader(path)
    assert not os.path.exists(path)


def test_pruning_by_age_and_by_size(path: str) -> None:
    store = writer_store(path)
    starts = [
        Start(b(name=f"w{i}", veth=f"veth{i}", netns=i), T0 + i, T0 + i, T0 + i + 1) for i in range(3000)
    ]
    store.record(starts, [], None)
    store.record([Start(b(name="open", veth="vethopen"), T0, T0)], [], None)
    assert store.prune(T0 + 1000, 1 << 40) == 999  # gone before T0+1000: i + 1 < 1000
    left = store.count()
    assert left == 3001 - 999
    store.prune(0, 128 * 1024)
    assert store.used_bytes() <= 128 * 1024 and store.count() < left
    assert store.find(["vethopen"]), "open bindings are never pruned"
    assert not store.find(["veth5"]) and store.find(["veth2999"]), "the oldest go first"


# -- the recorder --------------------------------------------------------------------------------
def test_the_recorder_writes_changes_only_and_last_seen_in_batches(path: str) -> None:
    store = writer_store(path)
    recorder = Recorder()
    one, two = b("one", "veth1", netns=1), b("two", "veth2", netns=2)
    recorder.observe_bindings(frozenset({one, two}), T0)
    assert recorder.flush(store) == 2
    recorder.observe_bindings(frozenset({one, two}), T0 + 5)
    assert recorder.flush(store) == 0  # nothing began or ended: only last seen
    recorder.observe_bindings(frozenset({one}), T0 + 10)
    recorder.flush(store)
    rows = {r.binding.name: r for r in store.find(["veth1", "veth2"])}
    assert (rows["one"].first_seen, rows["one"].last_seen, rows["one"].gone) == (T0, T0 + 10, None)
    assert (rows["two"].first_seen, rows["two"].last_seen, rows["two"].gone) == (T0, T0 + 5, T0 + 10)


def test_still_moves_last_seen_on_between_a_live_models_reports(path: str) -> None:
    store = writer_store(path)
    recorder = Recorder()
    one = b()
    recorder.still(T0 - 1)  # nothing observed yet: nothing to say
    recorder.observe_bindings(frozenset({one}), T0)
    recorder.flush(store)
    recorder.still(T0 + 4)
    assert recorder.flush(store) == 0  # only last seen
    (r,) = store.find(["veth0"])
    assert (r.last_seen, r.gone) == (T0 + 4, None)
    recorder.observe_bindings(frozenset(), T0 + 6)
    recorder.flush(store)
    (r,) = store.find(["veth0"])
    assert (r.first_seen, r.last_seen, r.gone) == (T0, T0 + 4, T0 + 6)


def test_a_short_lived_binding_between_two_flushes_is_still_recorded(path: str) -> None:
    store = writer_store(path)
    recorder = Recorder()
    flash = b("flash", "vethf")
    recorder.observe_bindings(frozenset({flash}), T0)
    recorder.observe_bindings(frozenset(), T0 + 1)
    recorder.flush(store)
    (r,) = store.find(["vethf"])
    assert (r.first_seen, r.last_seen, r.gone) == (T0, T0, T0 + 1)


def test_last_seen_is_the_last_observation_that_saw_it_even_between_writes(path: str) -> None:
    store = writer_store(path)
    recorder = Recorder()
    one = b()
    recorder.observe_bindings(frozenset({one}), T0)
    recorder.flush(store)
    recorder.observe_bindings(frozenset({one}), T0 + 1)
    recorder.observe_bindings(frozenset({one}), T0 + 2)
    recorder.observe_bindings(frozenset(), T0 + 3)  # one write for the three observations
    recorder.flush(store)
    (r,) = store.find(["veth0"])
    assert (r.first_seen, r.last_seen, r.gone) == (T0, T0 + 2, T0 + 3)


class Full(Exception):
    pass


def test_a_failed_write_keeps_the_changes_for_the_next(path: str) -> None:
    store = writer_store(path)
    recorder = Recorder()
    recorder.observe_bindings(frozenset({b()}), T0)
    real = store.record

    def failing(*args: object, **kw: object) -> list[int]:
        raise sqlite3.OperationalError("database or disk is full")

    store.record = failing  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError):
        recorder.flush(store)
    recorder.observe_bindings(frozenset(), T0 + 3)
    store.record = real  # type: ignore[method-assign]
    recorder.flush(store)
    (r,) = store.find(["veth0"])
    assert (r.first_seen, r.gone) == (T0, T0 + 3) and recorder.pending == 0


def test_a_restarted_recorder_carries_on_with_open_bindings(path: str) -> None:
    store = writer_store(path)
    first = Recorder()
    stays, goes = b("stays", "veths", netns=1), b("goes", "vethg", netns=2)
    first.observe_bindings(frozenset({stays, goes}), T0)
    first.flush(store)
    store.close()
    store = writer_store(path)
    second = Recorder()
    second.restore(store.open_bindings())
    second.observe_bindings(frozenset({stays}), T0 + 100)
    second.flush(store)
    rows = {r.binding.name: r for r in store.find(["veths", "vethg"])}
    assert len(rows) == 2 and rows["stays"].gone is None and rows["stays"].last_seen == T0 + 100
    assert rows["goes"].gone == T0, "gone at its last seen: nothing is known of it after"


def test_the_writer_thread_records_and_reports_health(path: str) -> None:
    recorder = Recorder()
    writer = JournalWriter(path, recorder, lambda _l: None, interval=0.05)
    writer.start()
    recorder.observe(cri_pods(), time.time())
    writer.wake()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and recorder.pending:
        time.sleep(0.02)
    writer.stop()
    assert writer.health().up and writer.health().errors == 0
    assert Store.open_reader(path).count() == 3


def test_the_writer_reports_a_newer_journal_and_stays_down(path: str) -> None:
    writer_store(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    lines: list[str] = []
    writer = JournalWriter(path, Recorder(), lines.append, interval=0.05)
    writer.start()
    time.sleep(0.3)
    writer.stop()
    health = writer.health()
    assert not health.up and health.errors == 1 and "newer vethpeer" in (health.error or "")
    assert len(lines) == 1 and "serving goes on" in lines[0]


# -- queries -------------------------------------------------------------------------------------
@pytest.fixture
def journal(path: str) -> Store:
    """veth7 was docker/old's (T0..T0+100), then docker/new's (T0+200..); 10.0.0.2 too."""
    store = writer_store(path)
    store.record(
        [
            Start(
                b("old", "veth7", netns=1, workload_id="aa" * 32, container_ids=("aa" * 32,)),
                T0,
                T0 + 90,
                T0 + 100,
            ),
            Start(
                b("new", "veth7", netns=2, workload_id="bb" * 32, container_ids=("bb" * 32,)),
                T0 + 200,
                T0 + 300,
            ),
        ],
        [],
        None,
    )
    store.close()
    return Store.open_reader(path)


def test_history_is_newest_first_and_windows(journal: Store) -> None:
    assert [r.binding.name for r in query.history(journal, "veth7")] == ["new", "old"]
    assert [r.binding.name for r in query.history(journal, "10.0.0.2")] == ["new", "old"]
    assert [r.binding.name for r in query.history(journal, "02:00:00:00:02:00".upper())] == ["new", "old"]
    assert [r.binding.name for r in query.history(journal, "veth7", since=T0 + 150)] == ["new"]
    assert [r.binding.name for r in query.history(journal, "veth7", until=T0 + 150)] == ["old"]
    assert [r.binding.name for r in query.history(journal, "aaaa")] == ["old"], "an ID prefix"
    assert query.history(journal, "nothing") == []


def test_which_at_picks_the_binding_of_that_moment(journal: Store) -> None:
    assert [r.binding.name for r in query.at(journal, "veth7", T0 + 50)] == ["old"]
    assert [r.binding.name for r in query.at(journal, "veth7", T0 + 250)] == ["new"]
    assert [r.binding.name for r in query.at(journal, "veth7", T0 + 105)] == ["old"], "within the tolerance"
    assert query.at(journal, "veth7", T0 + 150) == []


def test_two_workloads_at_once_is_ambiguous(path: str) -> None:
    store = writer_store(path)
    store.record([Start(b("a", "vetha", netns=1), T0, T0), Start(b("b", "vethb", netns=2), T0, T0)], [], None)
    with pytest.raises(Ambiguous):
        query.at(store, "10.0.0.2", T0)


def test_last_binding(journal: Store) -> None:
    assert [r.binding.name for r in query.last_binding(journal, "veth7")] == ["new"]
    with pytest.raises(NotFound):
        query.last_binding(journal, "veth9")


# -- times ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-04T03:12:00Z", 1796354 * 1000 + 3 * 3600 + 12 * 60 - 1796354000 + 1796353920),
        ("-2h", T0 - 7200),
        ("90m", T0 - 5400),
        ("1d12h", T0 - 36 * 3600),
        ("1764800000", T0),
        ("1764800000.5", T0 + 0.5),
        ("now", T0),
    ],
)
def test_parse_when(text: str, expected: float) -> None:
    if text.startswith("2026"):
        expected = 1796353920.0  # 2026-12-04T03:12:00Z
    assert parse_when(text, T0) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-h", "12", ""])
def test_parse_when_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a time"):
        parse_when(text, T0)


def test_line_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    now = parse_when("2026-12-04T13:00:00Z", 0)
    boot = now - 1000
    lines = {
        b"[  649.034479] br-1: port 1(veth1) entered blocking state": boot + 649.034479,
        b"[Fri Dec  4 12:48:06 2026] br-1: port 1(veth1) entered blocking state": now - 720 + 6,
        b"Dec 04 12:48:06 host kernel: br-1: port": now - 720 + 6,
        b"Dec 04 12:48:06.250000 host kernel: br-1: port": now - 720 + 6.25,
        b"Dec  4 12:48:06 host kernel: br-1: port": now - 720 + 6,
        b"2026-12-04T12:48:06+0000 host kernel: br-1: port": now - 720 + 6,
        b"2026-12-04T12:48:06.5+01:00 host kernel: br-1": now - 720 + 6.5 - 3600,
        b"2026-12-04 12:48:06Z something": now - 720 + 6,
        b"<34>1 2026-12-04T12:48:06.003Z host app - - - veth1": now - 720 + 6.003,
        b"Dec 31 23:59:59 host kernel: last year": parse_when("2025-12-31T23:59:59Z", 0),
        b"no time here veth1": None,
        b"Foo 31 23:59:59 host": None,
    }
    try:
        for line, expected in lines.items():
            got = line_time(line, boot, now)
            assert got == (pytest.approx(expected) if expected is not None else None), line
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_rfc3339() -> None:
    assert rfc3339(T0 + 0.25) == "2025-12-03T22:13:20.250Z"


# -- annotate ------------------------------------------------------------------------------------
def test_annotate_names_the_workload_of_the_lines_time(journal: Store) -> None:
    index = Index.build(journal.every())

    def at(moment: float) -> object:
        return lambda _line: moment

    line = b"br-1: port 1(veth7) entered disabled state\n"
    assert (
        annotate_line(line, index, at(T0 + 50), 10)
        == b"br-1: port 1(veth7 [docker/old eth0]) entered disabled state\n"
    )
    assert (
        annotate_line(line, index, at(T0 + 250), 10)
        == b"br-1: port 1(veth7 [docker/new eth0]) entered disabled state\n"
    )
    assert annotate_line(line, index, at(T0 + 150), 10) is line, "nothing bound then: untouched"
    assert annotate_line(b"veth7: entered promiscuous mode", index, at(T0 + 50), 10) == (
        b"veth7 [docker/old eth0]: entered promiscuous mode"
    )
    assert annotate_line(b"from 10.0.0.2 to 02:00:00:00:01:00", index, at(T0 + 50), 10) == (
        b"from 10.0.0.2 [docker/old eth0] to 02:00:00:00:01:00 [docker/old eth0]"
    )
    raw = b"\xff\xfe veth7x not ours \xc3\n"
    assert annotate_line(raw, index, at(T0 + 50), 10) is raw


def test_annotate_escapes_control_characters_in_names(path: str) -> None:
    store = writer_store(path)
    store.record([Start(b("x\x1b[31mred", "vethx"), T0, T0)], [], None)
    line = annotate_line(b"vethx up", Index.build(store.every()), lambda _l: T0, 10)
    assert b"\x1b" not in line and b"\\x1b[31mred" in line


def test_the_stream_passes_every_other_byte_through(journal: Store) -> None:
    annotator = Annotator(journal, 10, clock=lambda: T0 + 50)
    data = b"plain\n\xff\xfe invalid utf-8 veth7\nno newline at the end"
    out = io.StringIO()
    annotator.stream(io.BytesIO(data), output_of(out))
    got = out.getvalue().encode("utf-8", "surrogateescape")
    assert got == data.replace(b"veth7\n", b"veth7 [docker/old eth0]\n")


def test_replace_is_frozen() -> None:
    assert replace(b(), name="z").name == "z"
