"""The journal's faults, each on the real thing: `kill -9` of serve, a full disk (a small tmpfs of
ours), a corrupt file, a journal from a newer vethpeer, and ten CLI readers while serve writes
under churn. Serving never stops for any of them."""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.lab import journal_lab
from tests.lab.journal_lab import JournalLab, Run, cli, history, serving, temp_dir, wait_for
from tests.lab.serve_lab import get
from tests.policy import need_binary

pytestmark = pytest.mark.integration
lab = journal_lab.lab  # the fixture: `ip netns` namespaces named vqf-*


@pytest.fixture
def folder() -> Iterator[Path]:
    with temp_dir() as made:
        yield made


def metric(port: int, name: str) -> float | None:
    body = get(port, "/metrics").body.decode()
    found = re.search(rf"^{name} (\S+)$", body, re.M)
    return float(found.group(1)) if found else None


def integrity(path: Path) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def test_kill_9_at_any_moment_loses_at_most_the_last_second(lab: JournalLab, folder: Path) -> None:
    journal = folder / "journal.sqlite"
    rng = random.Random(16)
    for round_ in range(3):
        with serving(journal) as served:
            (ns,), _hosts = lab.netns_with_host_peers([f"k{round_}"])
            wait_for("the binding", lambda ns=ns: history(journal, ns.name or ""))
            time.sleep(1.2 + rng.random())  # the walks go on; last seen is written each second
            killed_at = time.time()
            os.kill(served.process.pid, signal.SIGKILL)
            served.process.wait()
        assert integrity(journal) == "ok"
        (record,) = history(journal, ns.name or "")
        last_seen = datetime.fromisoformat(record["last_seen"].replace("Z", "+00:00")).timestamp()
        # At most a second of writes lost, plus the walk in progress (--min-interval 0.5).
        assert killed_at - last_seen < 2.0, (killed_at, record)
    with serving(journal):  # and it opens cleanly after
        assert len(history(journal, lab.ns_name("k0"))) == 1


@pytest.fixture
def tmpfs(folder: Path) -> Iterator[Path]:
    mount = folder / "vqf-full"
    mount.mkdir()
    need_binary("mount")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "vqf-full", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> Path:
    filler = mount / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True, check=False)
    return filler


def test_a_full_disk_keeps_serving_counts_errors_and_resumes(lab: JournalLab, tmpfs: Path) -> None:
    journal = tmpfs / "journal.sqlite"
    with serving(journal) as served:
        wait_for("the journal up", lambda: metric(served.port, "vethpeer_journal_up") == 1.0)
        filler = fill(tmpfs)
        namespaces, _hosts = lab.netns_with_host_peers([f"f{i}" for i in range(40)])
        wait_for("the journal down", lambda: metric(served.port, "vethpeer_journal_up") == 0.0, timeout=20)
        errors = metric(served.port, "vethpeer_journal_errors_total") or 0
        assert errors >= 1
        assert get(served.port, "/api/v1/table").status == 200, "serving goes on"
        assert "database or disk is full" in served.stderr() or "No space" in served.stderr()
        filler.unlink()
        wait_for(
            "the journal up again", lambda: metric(served.port, "vethpeer_journal_up") == 1.0, timeout=20
        )
        assert "recording again" in served.stderr()
        assert history(journal, namespaces[-1].name or ""), "what changed meanwhile is recorded"


def test_a_corrupt_journal_is_moved_aside_and_a_fresh_one_starts(lab: JournalLab, folder: Path) -> None:
    journal = folder / "journal.sqlite"
    journal.write_bytes(os.urandom(64 * 1024))
    (ns,), _hosts = lab.netns_with_host_peers(["c"])
    with serving(journal) as served:
        wait_for("the binding", lambda: history(journal, ns.name or ""))
        assert re.search(r"unreadable .*moved it to .*journal\.sqlite\.corrupt-\d{8}T\d{6}Z", served.stderr())
    aside = [p for p in folder.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].stat().st_size == 64 * 1024


def test_a_journal_from_a_newer_vethpeer_is_refused_and_not_touched(lab: JournalLab, folder: Path) -> None:
    journal = folder / "journal.sqlite"
    db = sqlite3.connect(journal)
    db.execute("CREATE TABLE future (x)")
    db.execute("PRAGMA user_version = 99")
    db.close()
    before = (hashlib.sha256(journal.read_bytes()).hexdigest(), journal.stat().st_mtime_ns)
    with serving(journal) as served:
        wait_for("the refusal", lambda: "newer vethpeer" in served.stderr())
        assert metric(served.port, "vethpeer_journal_up") == 0.0
        assert get(served.port, "/api/v1/table").status == 200
        assert get(served.port, "/api/v1/history/x").status == 503
    assert (hashlib.sha256(journal.read_bytes()).hexdigest(), journal.stat().st_mtime_ns) == before
    assert sorted(p.name for p in folder.iterdir()) == ["journal.sqlite"]
    done = cli("history", "x", journal=journal)
    assert "history not available" in done.stderr and "newer vethpeer" in done.stderr


def test_ten_readers_never_block_the_writer_nor_see_a_torn_answer(lab: JournalLab, folder: Path) -> None:
    journal = folder / "journal.sqlite"
    name = lab.ns_name("churn")
    stop = threading.Event()
    answers: list[Run] = []
    lock = threading.Lock()

    def churn() -> None:  # the same netns name made again and again: each time a new binding
        while not stop.is_set():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            lab.netns_with_host_peers(["churn"])
            lab.host_links.pop()
            time.sleep(0.3)

    def reader() -> None:
        while not stop.is_set():
            done = cli("history", name, "--json", journal=journal)
            with lock:
                answers.append(done)

    with serving(journal, min_interval=0.2) as served:
        threads = [threading.Thread(target=churn)] + [threading.Thread(target=reader) for _ in range(10)]
        for thread in threads:
            thread.start()
        time.sleep(10)
        stop.set()
        for thread in threads:
            thread.join(60)
        assert metric(served.port, "vethpeer_journal_errors_total") == 0.0
        assert metric(served.port, "vethpeer_journal_up") == 1.0
    assert len(answers) >= 20
    for done in answers:
        assert done.returncode in (0, 3), done.stderr  # 3: before the first binding was written
        if done.returncode == 0:
            bindings = done.json()["bindings"]
            open_ = [b for b in bindings if b["gone"] is None]
            assert len(open_) <= 1, f"two open bindings of one name at once: a torn answer {open_}"
            assert all(b["first_seen"] <= b["last_seen"] for b in bindings)
    final = history(journal, name)
    assert len(final) >= 10, "the writer kept up with the churn"
