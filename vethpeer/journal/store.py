"""The journal file: the one module that knows SQL.

SQLite from the standard library, in WAL mode, so readers never block the one writer and
never see half a change. ``PRAGMA user_version`` is the schema version: a file from a newer
vethpeer is refused and left as it is; a file that is not SQLite, or is corrupt, is moved
aside (``PATH.corrupt-YYYYmmddTHHMMSSZ``) and a fresh journal starts. The file is created
0600: it holds workload names and addresses. Readers open it ``mode=ro`` and never write.

Tables: ``bindings`` (one row a binding, with first seen / last seen / gone) and ``keys``
(every string a target can be, pointing at its binding; see :func:`.binding.keys_of`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..errors import VethpeerError
from .binding import Binding, Recorded, keys_of

SCHEMA_VERSION = 1
SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA_1 = """
CREATE TABLE bindings (
    id INTEGER PRIMARY KEY,
    inner_name TEXT NOT NULL, inner_ifindex INTEGER NOT NULL, inner_mac TEXT, addresses TEXT NOT NULL,
    netns INTEGER NOT NULL,
    host_name TEXT, host_ifindex INTEGER, host_mac TEXT, host_netns INTEGER, bridge TEXT,
    kind TEXT NOT NULL, name TEXT NOT NULL, label TEXT NOT NULL, workload_id TEXT,
    kube_namespace TEXT, pod_uid TEXT, containers TEXT NOT NULL, container_ids TEXT NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, gone REAL
);
CREATE INDEX bindings_open ON bindings (id) WHERE gone IS NULL;
CREATE INDEX bindings_gone ON bindings (gone) WHERE gone IS NOT NULL;
CREATE TABLE keys (key TEXT NOT NULL, binding INTEGER NOT NULL, PRIMARY KEY (key, binding)) WITHOUT ROWID;
"""
MIGRATIONS: dict[int, str] = {1: _SCHEMA_1}  # version -> the script that brings version - 1 to it

_COLUMNS = (
    "id, inner_name, inner_ifindex, inner_mac, addresses, netns, host_name, host_ifindex, host_mac, "
    "host_netns, bridge, kind, name, label, workload_id, kube_namespace, pod_uid, containers, "
    "container_ids, first_seen, last_seen, gone"
)


class JournalError(VethpeerError):
    """The journal cannot be used (missing, unreadable, from a newer vethpeer)."""


class JournalTooNew(JournalError):
    pass


class NotAJournal(JournalError):
    pass


def _header(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(100)


def header_version(path: str) -> int | None:
    """The schema version in the file's header, without opening it as a database (so a file
    from a newer vethpeer is not touched at all); None for an empty file."""
    data = _header(path)
    if not data:
        return None
    if len(data) < 100 or not data.startswith(SQLITE_HEADER):
        raise NotAJournal(f"{path} is not an SQLite database")
    return int.from_bytes(data[60:64], "big")


def _too_new(path: str, version: int) -> JournalTooNew:
    return JournalTooNew(
        f"{path} was written by a newer vethpeer (journal schema {version}, this one knows up to "
        f"{SCHEMA_VERSION}); left as it is",
        hint="upgrade vethpeer, or point --journal at another file",
    )


def move_aside(path: str, clock: Callable[[], float] = time.time) -> str:
    """Rename the file (and its -wal/-shm) to PATH.corrupt-TIMESTAMP; the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    aside = f"{path}.corrupt-{stamp}"
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    return aside


def _tuple(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


def _recorded(row: Any) -> Recorded:
    (id_, inner_name, inner_ifindex, inner_mac, addresses, netns, host_name, host_ifindex, host_mac,
     host_netns, bridge, kind, name, label, workload_id, kube_namespace, pod_uid, containers,
     container_ids, first_seen, last_seen, gone) = row  # fmt: skip
    binding = Binding(
        inner_name=str(inner_name),
        inner_ifindex=int(inner_ifindex),
        inner_mac=inner_mac,
        addresses=_tuple(str(addresses)),
        netns=int(netns),
        host_name=host_name,
        host_ifindex=host_ifindex,
        host_mac=host_mac,
        host_netns=host_netns,
        bridge=bridge,
        kind=str(kind),
        name=str(name),
        label=str(label),
        workload_id=workload_id,
        kube_namespace=kube_namespace,
        pod_uid=pod_uid,
        containers=_tuple(str(containers)),
        container_ids=_tuple(str(container_ids)),
    )
    return Recorded(
        int(id_), binding, float(first_seen), float(last_seen), None if gone is None else float(gone)
    )


def _values(b: Binding, first_seen: float, last_seen: float, gone: float | None) -> tuple[object, ...]:
    return (
        b.inner_name, b.inner_ifindex, b.inner_mac, json.dumps(list(b.addresses)), b.netns, b.host_name,
        b.host_ifindex, b.host_mac, b.host_netns, b.bridge, b.kind, b.name, b.label, b.workload_id,
        b.kube_namespace, b.pod_uid, json.dumps(list(b.containers)), json.dumps(list(b.container_ids)),
        first_seen, last_seen, gone,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Start:
    """A binding to insert: first seen, last seen, and gone if it already ended before the write."""

    binding: Binding
    first_seen: float
    last_seen: float
    gone: float | None = None


class Store:
    """An open journal: a writer (:meth:`open_writer`) or a read-only reader (:meth:`open_reader`)."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self.path = path

    # -- opening --------------------------------------------------------------------------
    @classmethod
    def open_writer(
        cls, path: str, log: Callable[[str], None], clock: Callable[[], float] = time.time
    ) -> Store:
        """Open (or create, 0600) the journal for writing; move a corrupt or foreign file aside."""
        parent = os.path.dirname(path) or "."
        os.makedirs(parent, mode=0o700, exist_ok=True)
        for attempt in (1, 2):
            try:
                if os.path.exists(path):
                    version = header_version(path)
                    if version is not None and version > SCHEMA_VERSION:
                        raise _too_new(path, version)
                else:
                    os.close(os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600))
                    os.chmod(path, 0o600)  # whatever the umask
                store = cls(
                    sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5), path
                )
                try:
                    store._prepare_writer()
                except BaseException:
                    store.close()
                    raise
                return store
            except (NotAJournal, sqlite3.DatabaseError) as error:
                if isinstance(error, sqlite3.OperationalError) and not _corrupt(error):
                    raise
                if attempt == 2:
                    raise JournalError(f"cannot start a journal at {path}: {error}") from None
                aside = move_aside(path, clock)
                log(f"vethpeer serve: journal {path} is unreadable ({error}); moved it to {aside}")
                log(f"vethpeer serve: journal {path}: starting a fresh one")
        raise AssertionError("unreachable")

    def _prepare_writer(self) -> None:
        db = self._db
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise _too_new(self.path, version)
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        if version == 0:
            db.execute(
                "PRAGMA auto_vacuum = INCREMENTAL"
            )  # before the first table: pruning can shrink the file
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA journal_size_limit = {4 * 1024 * 1024}")  # the WAL shrinks back after a burst
        for target in range(version + 1, SCHEMA_VERSION + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @classmethod
    def open_reader(cls, path: str) -> Store:
        """Open read-only (``mode=ro``): never writes, never creates the file."""
        try:
            version = header_version(path)
        except FileNotFoundError:
            raise JournalError(f"no journal at {path}") from None
        except OSError as error:
            raise JournalError(f"cannot read the journal {path}: {error.strerror}") from None
        if version is None:
            raise JournalError(f"the journal {path} is empty")
        if version > SCHEMA_VERSION:
            raise _too_new(path, version)
        try:
            db = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None, timeout=5)
            found = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as error:
            raise JournalError(f"cannot read the journal {path}: {error}") from None
        if found > SCHEMA_VERSION:
            db.close()
            raise _too_new(path, found)
        if found == 0:
            db.close()
            raise JournalError(f"the journal {path} holds no bindings yet")
        return cls(db, path)

    def close(self) -> None:
        self._db.close()

    # -- writing --------------------------------------------------------------------------
    def record(
        self,
        started: Sequence[Start],
        ended: Iterable[tuple[int, float, float]],
        seen_at: float | None,
    ) -> list[int]:
        """One transaction: insert the bindings that began, mark those that ended gone (row id,
        seen gone, last seen), and set last seen on every binding still open. The new rows' ids."""
        db = self._db
        ids = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for start in started:
                cursor = db.execute(
                    f"INSERT INTO bindings ({_COLUMNS.removeprefix('id, ')}) VALUES ({', '.join('?' * 21)})",
                    _values(start.binding, start.first_seen, start.last_seen, start.gone),
                )
                new = int(cursor.lastrowid or 0)
                ids.append(new)
                db.executemany(
                    "INSERT OR IGNORE INTO keys VALUES (?, ?)", ((k, new) for k in keys_of(start.binding))
                )
            db.executemany(
                "UPDATE bindings SET gone = ?, last_seen = max(last_seen, ?) WHERE id = ? AND gone IS NULL",
                ((gone, last, id_) for id_, gone, last in ended),
            )
            if seen_at is not None:
                db.execute(
                    "UPDATE bindings SET last_seen = ? WHERE gone IS NULL AND last_seen < ?",
                    (seen_at, seen_at),
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return ids

    def open_bindings(self) -> list[Recorded]:
        """Bindings not seen gone (a restarted agent carries on with them)."""
        return [_recorded(r) for r in self._db.execute(f"SELECT {_COLUMNS} FROM bindings WHERE gone IS NULL")]

    def close_open(self, at: float) -> None:
        """Mark every open binding gone at its own last seen (when a restarted agent finds it missing)."""
        self._db.execute("UPDATE bindings SET gone = max(last_seen, ?) WHERE gone IS NULL", (at,))

    def prune(self, before: float, max_bytes: int, batch: int = 2000) -> int:
        """Delete bindings gone before ``before``, then the oldest gone ones while the data is
        above ``max_bytes``; give the space back. How many were deleted."""
        deleted = self._delete(
            f"SELECT {_COLUMNS} FROM bindings WHERE gone IS NOT NULL AND gone < ? LIMIT ?", (before,), batch
        )
        while self.used_bytes() > max_bytes:
            got = self._delete(
                f"SELECT {_COLUMNS} FROM bindings WHERE gone IS NOT NULL ORDER BY gone LIMIT ?",
                (),
                batch,
                once=True,
            )
            if not got:
                break
            deleted += got
        if deleted:
            self._db.execute("PRAGMA incremental_vacuum")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    def _delete(self, select: str, params: tuple[object, ...], batch: int, once: bool = False) -> int:
        deleted = 0
        while True:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = [_recorded(r) for r in db.execute(select, (*params, batch))]
                db.executemany("DELETE FROM bindings WHERE id = ?", ((r.id,) for r in rows))
                db.executemany(
                    "DELETE FROM keys WHERE key = ? AND binding = ?",
                    ((k, r.id) for r in rows for k in keys_of(r.binding)),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            deleted += len(rows)
            if once or len(rows) < batch:
                return deleted

    def used_bytes(self) -> int:
        """Bytes of the file in use (free pages left by pruning excluded)."""
        db = self._db
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
        size = int(db.execute("PRAGMA page_size").fetchone()[0])
        return (pages - free) * size

    # -- reading --------------------------------------------------------------------------
    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every query inside sees the same committed state."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def find(self, keys: Iterable[str], prefix: str | None = None, limit: int = 10_000) -> list[Recorded]:
        """Bindings with any of ``keys`` (exact), or a key starting with ``prefix``."""
        wanted = sorted(set(keys))
        ids: set[int] = set()
        if wanted:
            marks = ", ".join("?" * len(wanted))
            ids.update(
                int(r[0])
                for r in self._db.execute(f"SELECT binding FROM keys WHERE key IN ({marks})", wanted)
            )
        if prefix:
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            query = "SELECT binding FROM keys WHERE key >= ? AND key < ? LIMIT ?"
            ids.update(int(r[0]) for r in self._db.execute(query, (prefix, upper, limit)))
        return self.by_ids(sorted(ids)[:limit])

    def by_ids(self, ids: Sequence[int]) -> list[Recorded]:
        found: list[Recorded] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            found += [
                _recorded(r)
                for r in self._db.execute(f"SELECT {_COLUMNS} FROM bindings WHERE id IN ({marks})", chunk)
            ]
        return found

    def every(self) -> list[Recorded]:
        """Every binding."""
        return [_recorded(r) for r in self._db.execute(f"SELECT {_COLUMNS} FROM bindings")]

    def log_tokens(self) -> set[str]:
        """Every host-side name, MAC and address (without its prefix length): what annotate looks for."""
        found: set[str] = set()
        for host_name, host_mac, inner_mac, addresses in self._db.execute(
            "SELECT host_name, host_mac, inner_mac, addresses FROM bindings"
        ):
            found.update((host_name, host_mac, inner_mac))
            found.update(a.split("/")[0] for a in json.loads(addresses))
        found.discard(None)
        found.discard("00:00:00:00:00:00")
        found.discard("")
        return found

    def data_version(self) -> int:
        """Changes when another connection (the writer) commits."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM bindings").fetchone()[0])


def _corrupt(error: sqlite3.Error) -> bool:
    text = str(error).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text or "quick_check" in text
