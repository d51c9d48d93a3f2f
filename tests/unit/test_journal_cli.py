"""Every exit path of `history`, `which --at`, a gone `which`, `annotate` and serve's journal
options and routes, through the real command code on a recorded /proc (no root)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.unit.builders import cri_pods
from tests.unit.test_exit_paths import one_line
from vethpeer.agent.api import Service, route
from vethpeer.agent.cache import WalkCache
from vethpeer.agent.engine import Observation
from vethpeer.errors import ExitStatus
from vethpeer.journal.binding import Binding
from vethpeer.journal.store import SCHEMA_VERSION, Start, Store
from vethpeer.journal.times import rfc3339

from .fakeproc import FakeProc

NOW = time.time()
GONE_AT = NOW - 3600


def binding(name: str, veth: str, netns: int) -> Binding:
    return Binding(
        inner_name="eth0", inner_ifindex=2, inner_mac="02:42:ac:11:00:02", addresses=("172.17.0.2/16",),
        netns=netns, host_name=veth, host_ifindex=9, host_mac="c6:00:00:00:00:01", host_netns=1,
        bridge="docker0", kind="docker", name=name, label=f"docker/{name}", workload_id="cd" * 32,
        containers=(name,), container_ids=("cd" * 32,),
    )  # fmt: skip


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


@pytest.fixture
def journal(proc: FakeProc) -> str:
    """The journal FakeProc's environment points at: docker/hq-api on veth82eaaa7, gone an hour ago."""
    path = str(proc.root.parent / "journal.sqlite")
    store = Store.open_writer(path, lambda _l: None)
    store.record(
        [Start(binding("hq-api", "veth82eaaa7", 4026532999), GONE_AT - 600, GONE_AT - 5, GONE_AT)], [], None
    )
    store.close()
    return path


# -- history -------------------------------------------------------------------------------------
def test_history_json(proc: FakeProc, journal: str) -> None:
    assert proc.main("history", "hq-api", "--json") == ExitStatus.SUCCESS
    document = json.loads(proc.out.getvalue())
    assert document["schema_version"] == 1 and document["kind"] == "history"
    (b,) = document["bindings"]
    assert b["workload"]["label"] == "docker/hq-api" and b["host_side"]["name"] == "veth82eaaa7"
    assert b["gone"] == rfc3339(GONE_AT) and document["journal"] == journal


def test_history_text(proc: FakeProc, journal: str) -> None:
    assert proc.main("history", "veth82eaaa7") == ExitStatus.SUCCESS
    lines = proc.out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["FIRST", "SEEN", "GONE"] and "docker/hq-api" in lines[1]


def test_history_with_n_sees_only_that_kubernetes_namespace(proc: FakeProc, journal: str) -> None:
    assert proc.main("history", "hq-api", "-n", "shop") == ExitStatus.NOT_FOUND  # a Docker container
    one_line(proc)


def test_history_not_in_the_journal(proc: FakeProc, journal: str) -> None:
    assert proc.main("history", "nope") == ExitStatus.NOT_FOUND
    assert "nothing named 'nope' in the journal" in one_line(proc)


def test_history_outside_the_window(proc: FakeProc, journal: str) -> None:
    assert proc.main("history", "hq-api", "--since", "-10m") == ExitStatus.NOT_FOUND
    assert "in that time" in one_line(proc)


@pytest.mark.parametrize(
    "argv",
    [
        ("history", "x", "--since", "yesterday"),
        ("history", "x", "--since", "-1h", "--until", "-2h"),
        ("history", "x", "-o", "wide"),
        ("history",),
        ("which", "x", "--at", "soon"),
        ("annotate", "--tolerance", "-1"),
        ("serve", "--journal-retention", "forever"),
        ("serve", "--journal-max-size", "1K"),
        ("serve", "--journal-max-size", "64Q"),
        ("serve", "--journal", "/nonexistent/vqf.sqlite", "--no-journal"),
    ],
)
def test_usage_errors(proc: FakeProc, argv: tuple[str, ...]) -> None:
    assert proc.main(*argv) == ExitStatus.USAGE
    one_line(proc)


def test_history_without_a_journal_falls_back_to_the_host(proc: FakeProc) -> None:
    assert proc.main("history", "nope") == ExitStatus.NOT_FOUND
    err = proc.err.getvalue()
    assert "history not available (no journal at" in err and "showing the host as it is now" in err
    assert "vethpeer: nothing named 'nope'" in err


def test_a_journal_from_a_newer_vethpeer_is_history_not_available(proc: FakeProc, journal: str) -> None:
    import sqlite3

    db = sqlite3.connect(journal)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    assert proc.main("history", "hq-api") == ExitStatus.NOT_FOUND
    assert "history not available" in proc.err.getvalue() and "newer vethpeer" in proc.err.getvalue()


# -- which ---------------------------------------------------------------------------------------
def test_which_a_gone_target_shows_its_last_binding_as_past(proc: FakeProc, journal: str) -> None:
    assert proc.main("which", "veth82eaaa7") == ExitStatus.GONE
    out = proc.out.getvalue()
    assert out.startswith(
        "veth82eaaa7 is bound to no workload on this host now; its last binding, from the journal (past):"
    )
    assert "docker/hq-api" in out and rfc3339(GONE_AT) in out


def test_which_q_prints_nothing_for_a_gone_target(proc: FakeProc, journal: str) -> None:
    assert proc.main("which", "-q", "hq-api") == ExitStatus.GONE
    assert proc.out.getvalue() == ""


def test_which_json_for_a_gone_target(proc: FakeProc, journal: str) -> None:
    assert proc.main("which", "hq-api", "--json") == ExitStatus.GONE
    document = json.loads(proc.out.getvalue())
    assert document["kind"] == "which-past" and document["present"] is False


def test_which_not_found_anywhere_says_so(proc: FakeProc, journal: str) -> None:
    assert proc.main("which", "nope") == ExitStatus.NOT_FOUND
    assert "not in the journal" in one_line(proc)


def test_which_not_found_without_a_journal_says_history_was_not_available(proc: FakeProc) -> None:
    assert proc.main("which", "nope") == ExitStatus.NOT_FOUND
    assert "history not available: no journal at" in one_line(proc)


def test_which_at(proc: FakeProc, journal: str) -> None:
    at = rfc3339(GONE_AT - 60)
    assert proc.main("which", "veth82eaaa7", "--at", at, "--json") == ExitStatus.SUCCESS
    document = json.loads(proc.out.getvalue())
    assert document["kind"] == "which-at" and document["bindings"][0]["workload"]["name"] == "hq-api"
    proc.out.truncate(0)
    proc.out.seek(0)
    assert proc.main("which", "172.17.0.2", "--at", str(GONE_AT - 60), "-q") == ExitStatus.SUCCESS
    assert proc.out.getvalue() == "veth82eaaa7\n"


def test_which_at_a_time_with_no_binding(proc: FakeProc, journal: str) -> None:
    assert proc.main("which", "veth82eaaa7", "--at", "-1m") == ExitStatus.NOT_FOUND
    assert "had no binding at" in one_line(proc)


def test_which_at_without_a_journal_answers_from_the_host(proc: FakeProc) -> None:
    assert proc.main("which", "nope", "--at", "-1h") == ExitStatus.NOT_FOUND
    assert "history not available" in proc.err.getvalue()


# -- annotate ------------------------------------------------------------------------------------
def test_annotate_a_file(proc: FakeProc, journal: str, tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    stamp = rfc3339(GONE_AT - 1)
    log.write_bytes(
        f"{stamp} br-1: port 1(veth82eaaa7) entered disabled state\n\xff other\n".encode("latin-1")
    )
    assert proc.main("annotate", str(log)) == ExitStatus.SUCCESS
    got = proc.out.getvalue().encode("utf-8", "surrogateescape")
    assert (
        got
        == f"{stamp} br-1: port 1(veth82eaaa7 [docker/hq-api eth0]) entered disabled state\n".encode()
        + (b"\xff other\n")
    )


def test_annotate_a_missing_file(proc: FakeProc, journal: str) -> None:
    assert proc.main("annotate", "/nonexistent/vqf.log") == ExitStatus.NOT_FOUND
    assert "cannot read /nonexistent/vqf.log" in one_line(proc)


def test_annotate_without_a_journal_passes_lines_through(proc: FakeProc, tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_bytes(b"port 1(veth82eaaa7) entered disabled state\n")
    assert proc.main("annotate", str(log)) == ExitStatus.SUCCESS
    assert proc.out.getvalue() == "port 1(veth82eaaa7) entered disabled state\n"
    assert "history not available" in proc.err.getvalue()


# -- serve's routes ------------------------------------------------------------------------------
def service(journal: str | None) -> Service:
    cache = WalkCache(lambda: Observation(cri_pods()), 5.0)
    return Service(cache, wait=2.0, journal_path=journal)


def get(svc: Service, path: str) -> tuple[int, dict[str, object]]:
    response = route(svc, "GET", path, {})
    return response.status, json.loads(response.body)


def test_api_history_and_which_at(journal: str) -> None:
    svc = service(journal)
    status, document = get(svc, "/api/v1/history/hq-api")
    assert status == 200 and document["kind"] == "history"
    status, document = get(svc, f"/api/v1/which/veth82eaaa7?at={int(GONE_AT - 60)}")
    assert status == 200 and document["kind"] == "which-at"
    assert get(svc, "/api/v1/which/veth82eaaa7?at=-1m")[0] == 404
    assert get(svc, "/api/v1/which/veth82eaaa7?at=whenever")[0] == 400
    assert get(svc, "/api/v1/history/nope")[0] == 404
    assert get(svc, "/api/v1/history/..%2Fetc")[0] == 400
    assert get(svc, "/api/v1/which/veth0")[0] == 200, "without ?at= the live answer"


def test_api_history_without_a_journal(tmp_path: Path) -> None:
    assert get(service(None), "/api/v1/history/x")[0] == 503
    status, document = get(service(str(tmp_path / "none.sqlite")), "/api/v1/history/x")
    assert status == 503 and "history not available" in str(document)


def test_api_history_of_a_namespaced_server_shows_only_its_namespace(journal: str) -> None:
    svc = service(journal)
    svc.namespace = "shop"
    assert get(svc, "/api/v1/history/hq-api")[0] == 404


# -- completion ----------------------------------------------------------------------------------
def bash_complete(words: list[str], tmp_path: Path) -> list[str]:
    """COMPREPLY of the generated bash completion for ``words`` (the last one being completed)."""
    import subprocess

    from vethpeer.commands.completion import bash
    from vethpeer.commands.parser import build_parser

    script = tmp_path / "complete.bash"
    script.write_text(bash(build_parser()))
    array = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {script}; COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; _vethpeer; "
        "printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_completion_of_the_new_commands(tmp_path: Path) -> None:
    (tmp_path / "kern.log").write_text("")
    assert "history" in bash_complete(["vethpeer", "hist"], tmp_path)
    assert f"{tmp_path}/kern.log" in bash_complete(["vethpeer", "annotate", f"{tmp_path}/ke"], tmp_path)
    assert "--journal" in bash_complete(["vethpeer", "which", "--jo"], tmp_path)
    assert "--at" in bash_complete(["vethpeer", "which", "--a"], tmp_path)
    assert {"--since", "--until"} <= set(bash_complete(["vethpeer", "history", "--"], tmp_path))


def test_annotate_streams_line_by_line(journal: str) -> None:
    """`dmesg -w | vethpeer annotate`: each line comes out before the next goes in."""
    import os
    import select
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "VETHPEER_JOURNAL": journal}
    child = subprocess.Popen(
        [sys.executable, "-m", "vethpeer", "annotate"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=root,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        stamp = rfc3339(GONE_AT - 1).encode()
        for line, wanted in [
            (stamp + b" port 1(veth82eaaa7) entered disabled state\n", b"(veth82eaaa7 [docker/hq-api eth0])"),
            (b"\xff\xfe nothing to name\n", b"\xff\xfe nothing to name\n"),
        ]:
            child.stdin.write(line)
            child.stdin.flush()
            ready, _, _ = select.select([child.stdout], [], [], 20)
            assert ready, "no line out while the input stays open"
            assert wanted in child.stdout.readline()
    finally:
        child.stdin.close()
        assert child.wait(20) == 0
