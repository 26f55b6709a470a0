"""The durable outbox: accepted records live here until the platform has them.

Layout of a ``spool_dir``: each process that records owns one SQLite file
(``<host>-<pid>-<random>.spool``) and holds an exclusive ``flock`` on its
``.lock`` twin for as long as it lives. A lock that can be taken therefore means
a dead owner (``kill -9`` included): any live tracker on the same directory
*adopts* that file, copying its rows into its own spool in one transaction and
then deleting it. A crash half-way through adoption leaves both copies; sending
both is harmless because the platform upserts by ``_id``.

Rows are *segments*: the records of one data set accepted in one group commit,
as the JSON array the platform takes. One SQLite row per commit instead of per
record keeps the spool's cost per record well under a microsecond.

Durability: WAL journal with ``synchronous=FULL``, so a committed segment
survives a process crash and, as far as the disk honours fsync, power loss.
Files are created owner-only (0600) in an owner-only directory.

A full disk: SQLite needs free space even to *delete* (the WAL grows first),
so a spool that filled its disk could never drain. Each spool therefore keeps a
small ballast file (``.reserve``); the first time the disk refuses a write the
ballast is deleted, which is enough room for deliveries to be forgotten and
the WAL checkpointed, and it is laid down again once the spool is empty.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from perf_sdk._errors import ConfigurationError

__all__ = ["DeadRecord", "Segment", "Spool", "SpoolFileStatus", "inspect_spool_dir"]

logger = logging.getLogger("perf_sdk")

SCHEMA_VERSION: Final = 2
#: Bytes of ballast each spool keeps, released when the disk fills (see the module docstring).
RESERVE_BYTES: Final = 2 * 1024 * 1024  # more than the WAL can hold un-checkpointed (~1 MB)
SUFFIX: Final = ".spool"
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS segments(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    n INTEGER NOT NULL,
    body BLOB NOT NULL,
    accepted_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS segments_by_dataset ON segments(dataset, seq);
CREATE TABLE IF NOT EXISTS dead(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    record_id TEXT,
    body BLOB NOT NULL,
    accepted_at REAL NOT NULL,
    failed_at REAL NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Segment:
    seq: int
    dataset: str
    n: int
    body: bytes
    accepted_at: float

    def records(self) -> list[dict[str, Any]]:
        parsed = json.loads(self.body)
        return parsed if isinstance(parsed, list) else [parsed]


@dataclass(frozen=True)
class DeadRecord:
    seq: int
    dataset: str
    record: dict[str, Any]
    failed_at: float
    status: int | None
    reason: str


@dataclass
class SpoolFileStatus:
    """What ``perf-sdk spool status`` shows of one spool file."""

    path: Path
    alive: bool
    records: int = 0
    segments: int = 0
    bytes: int = 0
    oldest_accepted_at: float | None = None
    dead: int = 0
    by_dataset: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    # Debian's SQLite zeroes every freed page by default, which makes forgetting a
    # delivered segment write the whole segment again (and fail on a full disk). The
    # spool holds hashed ids and counts only, so FAST (no extra I/O) is enough.
    conn.execute("PRAGMA secure_delete=FAST")
    # Keep the WAL small (checkpoint every ~1 MB, truncate it back to 1 MB): what is on
    # disk is then mostly the database, whose freed pages new records reuse.
    conn.execute("PRAGMA wal_autocheckpoint=256")
    conn.execute("PRAGMA journal_size_limit=1048576")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _migrate(conn: sqlite3.Connection, schema: str = "main") -> None:
    """Bring a spool written by an older perf_sdk up to :data:`SCHEMA_VERSION`.

    Version 1 kept one row per record (``outbox(seq, dataset, rid, body, accepted_at)``);
    its rows become one-record segments.
    """
    version = conn.execute(f"PRAGMA {schema}.user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"spool schema {version} is newer than this perf_sdk ({SCHEMA_VERSION})")
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA.strip().split(";"):
            if statement.strip():
                conn.execute(statement.replace("IF NOT EXISTS ", f"IF NOT EXISTS {schema}.", 1))
        has_v1 = conn.execute(f"SELECT 1 FROM {schema}.sqlite_master WHERE type='table' AND name='outbox'").fetchone()
        if has_v1:
            rows = conn.execute(f"SELECT dataset, body, accepted_at FROM {schema}.outbox ORDER BY seq").fetchall()
            conn.executemany(
                f"INSERT INTO {schema}.segments(dataset, n, body, accepted_at) VALUES (?, 1, ?, ?)",
                [(ds, b"[" + _as_bytes(body) + b"]", at) for ds, body, at in rows],
            )
            conn.execute(f"DROP TABLE {schema}.outbox")
        conn.execute(f"PRAGMA {schema}.user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _lock(path: Path) -> int | None:
    """Take the exclusive lock on ``path``; the fd to keep, or ``None`` when held elsewhere."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove_db_files(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path.with_suffix(".reserve"))
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(path) + suffix)


def ensure_spool_dir(directory: Path) -> Path:
    """Create the spool directory owner-only; fail clearly if it cannot be written."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create spool_dir {directory}: {exc.strerror} (PERF_SDK_SPOOL_DIR)") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"spool_dir {directory} is not writable by this process: records could not be kept safe; "
            "point spool_dir (PERF_SDK_SPOOL_DIR) at a writable, persistent directory"
        )
    return directory


class Spool:
    """One process's spool file. Thread-safe: every call holds a short lock, none across network I/O."""

    def __init__(self, directory: Path, *, max_bytes: int = 1 << 30) -> None:
        self.directory = ensure_spool_dir(directory)
        self.max_bytes = max_bytes
        name = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
        self.path = self.directory / (name + SUFFIX)
        self._lock_path = self.directory / (name + ".lock")
        fd = _lock(self._lock_path)
        if fd is None:  # pragma: no cover - a random name is never locked
            raise ConfigurationError(f"spool lock {self._lock_path} is held by another process")
        self._lock_fd = fd
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self._mutex = threading.Lock()
        self._conn = _connect(self.path)
        _migrate(self._conn)
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('pid', ?)", (str(os.getpid()),))
        self.bytes = 0
        self.closed = False
        #: When the disk last refused an append (monotonic); cleared by a delete that freed room.
        self.full_since: float | None = None
        self._reserve = self.path.with_suffix(".reserve")
        self._lay_reserve()
        #: Files this spool could not read: (path it was moved to, reason).
        self.quarantined: list[tuple[Path, str]] = []

    def __repr__(self) -> str:
        return f"Spool(path={str(self.path)!r})"

    # the ballast ---------------------------------------------------------------------------------
    def _lay_reserve(self) -> None:
        if self._reserve.exists():
            return
        try:
            fs = os.statvfs(self.directory)
            if fs.f_bavail * fs.f_frsize < 2 * RESERVE_BYTES:
                return  # not while the disk is nearly full; next time the spool is empty
        except (OSError, AttributeError):
            pass
        try:
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, b"\0" * RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError:  # no room for it now: try again when the spool is next empty
            with contextlib.suppress(OSError):
                os.unlink(self._reserve)

    def _release_reserve(self) -> bool:
        """Free the ballast; True if there was one to free (worth retrying the write)."""
        try:
            os.unlink(self._reserve)
        except FileNotFoundError:
            return False
        logger.warning(
            "perf_sdk: the spool's disk is full; released its %d KB reserve to keep draining", RESERVE_BYTES // 1024
        )
        return True

    def _write(self, statement: str, rows: list[tuple[Any, ...]], *, use_reserve: bool = False) -> None:
        """One write transaction; on a full disk, a delete (``use_reserve``) may spend the ballast.

        Only deletes may: the ballast exists so the spool can drain, and an append
        that took its room would leave the spool unable to forget what it delivered.
        """
        for attempt in (1, 2, 3):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(statement, rows)
                self._conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                if attempt == 3 or not use_reserve or "full" not in str(exc):
                    raise
                if attempt == 1:  # first shrink the WAL back into the database's own free pages
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                elif not self._release_reserve():
                    raise
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise

    # writing -----------------------------------------------------------------------------------
    def append(self, segments: list[tuple[str, int, bytes]], accepted_at: float) -> None:
        """Commit ``(dataset, n, json_body)`` segments in one transaction (the group commit)."""
        with self._mutex:
            try:
                self._write(
                    "INSERT INTO segments(dataset, n, body, accepted_at) VALUES (?, ?, ?, ?)",
                    [(ds, n, body, accepted_at) for ds, n, body in segments],
                )
            except sqlite3.OperationalError as exc:
                if "full" in str(exc):
                    self.full_since = time.monotonic()
                raise
            self.full_since = None
            self.bytes += sum(len(body) for _, _, body in segments)

    def should_hold_appends(self) -> bool:
        """On a full disk, let deliveries free room before adding more (retry every 5 s regardless)."""
        return self.full_since is not None and time.monotonic() - self.full_since < 5.0

    def has_room(self, nbytes: int) -> bool:
        return self.bytes + nbytes <= self.max_bytes

    # reading -----------------------------------------------------------------------------------
    def datasets(self) -> list[str]:
        with self._mutex:
            rows = self._conn.execute("SELECT DISTINCT dataset FROM segments").fetchall()
        return [r[0] for r in rows]

    def next_batch(self, dataset: str, max_records: int, max_bytes: int) -> list[Segment]:
        """The oldest segments of ``dataset`` that fit one request (always at least one)."""
        out: list[Segment] = []
        records = size = 0
        with self._mutex:
            cursor = self._conn.execute(
                "SELECT seq, n, body, accepted_at FROM segments WHERE dataset = ? ORDER BY seq LIMIT 1000",
                (dataset,),
            )
            for seq, n, body, accepted_at in cursor:
                if out and (records + n > max_records or size + len(body) > max_bytes):
                    break
                out.append(Segment(seq, dataset, n, _as_bytes(body), accepted_at))
                records += n
                size += len(body)
            cursor.close()
        return out

    def remove(self, segments: list[Segment]) -> None:
        """Forget segments the platform has stored (or that were dead-lettered record by record)."""
        if not segments:
            return
        with self._mutex:
            self._write("DELETE FROM segments WHERE seq = ?", [(s.seq,) for s in segments], use_reserve=True)
            self.full_since = None
            self.bytes = max(0, self.bytes - sum(len(s.body) for s in segments))
            if not self._reserve.exists() and self._conn.execute("SELECT 1 FROM segments LIMIT 1").fetchone() is None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._lay_reserve()

    def replace(self, segment: Segment, records: list[dict[str, Any]]) -> None:
        """Shrink a segment to the records still owed (after part of it was delivered)."""
        body = json.dumps(records, separators=(",", ":")).encode()
        with self._mutex:
            self._conn.execute("UPDATE segments SET n = ?, body = ? WHERE seq = ?", (len(records), body, segment.seq))
            self.bytes = max(0, self.bytes - len(segment.body) + len(body))

    def note_attempt(self, segments: list[Segment]) -> None:
        with self._mutex:
            self._conn.executemany(
                "UPDATE segments SET attempts = attempts + 1 WHERE seq = ?", [(s.seq,) for s in segments]
            )

    def depth(self) -> tuple[int, int, float | None]:
        """(records pending, segments pending, oldest accepted_at)."""
        with self._mutex:
            n, segs, oldest = self._conn.execute(
                "SELECT COALESCE(SUM(n), 0), COUNT(*), MIN(accepted_at) FROM segments"
            ).fetchone()
        return int(n), int(segs), oldest

    # dead letters ------------------------------------------------------------------------------
    def dead_letter(
        self, dataset: str, records: list[dict[str, Any]], accepted_at: float, status: int | None, reason: str
    ) -> None:
        now = time.time()
        with self._mutex:
            self._conn.executemany(
                "INSERT INTO dead(dataset, record_id, body, accepted_at, failed_at, status, reason) VALUES (?,?,?,?,?,?,?)",
                [
                    (
                        dataset,
                        str(r.get("_id")),
                        json.dumps(r, separators=(",", ":")).encode(),
                        accepted_at,
                        now,
                        status,
                        reason,
                    )
                    for r in records
                ],
            )

    def dead(self, limit: int = 1000) -> list[DeadRecord]:
        with self._mutex:
            rows = self._conn.execute(
                "SELECT seq, dataset, body, failed_at, status, reason FROM dead ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            DeadRecord(seq, ds, json.loads(body), failed_at, status, reason)
            for seq, ds, body, failed_at, status, reason in rows
        ]

    def dead_count(self) -> int:
        with self._mutex:
            return int(self._conn.execute("SELECT COUNT(*) FROM dead").fetchone()[0])

    def replay_dead(self) -> int:
        """Move every dead-lettered record back to the outbox (after the cause is fixed)."""
        return _replay_dead(self._conn, self._mutex)

    # adoption ----------------------------------------------------------------------------------
    def adopt_orphans(self) -> int:
        """Take over the spool files of dead processes in this directory; records adopted."""
        adopted = 0
        for path in sorted(self.directory.glob("*" + SUFFIX)):
            if path == self.path or self.closed:
                continue
            lock_path = path.with_suffix(".lock")
            fd = _lock(lock_path)
            if fd is None:
                continue  # its owner is alive
            try:
                if path.exists():
                    adopted += self._adopt(path)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock_path)
            finally:
                os.close(fd)
        return adopted

    def _adopt(self, path: Path) -> int:
        try:
            probe = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
            try:
                probe.execute("PRAGMA busy_timeout=30000")
                ok = probe.execute("PRAGMA quick_check").fetchone()[0]
                if ok != "ok":
                    raise sqlite3.DatabaseError(f"integrity check failed: {ok}")
                _migrate(probe)
            finally:
                probe.close()
            with self._mutex:
                self._conn.execute("ATTACH DATABASE ? AS orphan", (str(path),))
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    n, size = self._conn.execute(
                        "SELECT COALESCE(SUM(n), 0), COALESCE(SUM(LENGTH(body)), 0) FROM orphan.segments"
                    ).fetchone()
                    self._conn.execute(
                        "INSERT INTO segments(dataset, n, body, accepted_at, attempts) "
                        "SELECT dataset, n, body, accepted_at, attempts FROM orphan.segments ORDER BY seq"
                    )
                    self._conn.execute(
                        "INSERT INTO dead(dataset, record_id, body, accepted_at, failed_at, status, reason) "
                        "SELECT dataset, record_id, body, accepted_at, failed_at, status, reason FROM orphan.dead ORDER BY seq"
                    )
                    self._conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise
                finally:
                    self._conn.execute("DETACH DATABASE orphan")
                self.bytes += int(size)
        except sqlite3.DatabaseError as exc:
            self._quarantine(path, str(exc))
            return 0
        _remove_db_files(path)
        if n:
            logger.info("perf_sdk: adopted %d records from %s, a spool whose process ended", n, path.name)
        return int(n)

    def _quarantine(self, path: Path, reason: str) -> None:
        target = path.with_name(path.name + f".corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(str(path) + suffix, str(target) + suffix)
        self.quarantined.append((target, reason))
        logger.error(
            "perf_sdk: spool file %s could not be read (%s); moved aside to %s for inspection, "
            "the rest of the spool is still delivered",
            path.name,
            reason,
            target.name,
        )

    # lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Close; delete the file when nothing is left in it (else the next tracker adopts it)."""
        if self.closed:
            return
        self.closed = True
        with self._mutex:
            empty = (
                self._conn.execute("SELECT (SELECT COUNT(*) FROM segments) + (SELECT COUNT(*) FROM dead)").fetchone()[0]
                == 0
            )
            self._conn.close()
        if empty:
            _remove_db_files(self.path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._lock_path)
        os.close(self._lock_fd)

    def abandon_after_fork(self) -> None:
        """In a forked child: drop this spool without touching the parent's file or lock.

        The connection is kept referenced forever (never closed in the child),
        because SQLite must not use or close a connection across ``fork()``.
        """
        _ABANDONED.append(self._conn)
        self.closed = True


_ABANDONED: list[sqlite3.Connection] = []


def _replay_dead(conn: sqlite3.Connection, mutex: threading.Lock | None = None) -> int:
    with mutex or contextlib.nullcontext():
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute("SELECT dataset, body, accepted_at FROM dead ORDER BY seq").fetchall()
        conn.executemany(
            "INSERT INTO segments(dataset, n, body, accepted_at) VALUES (?, 1, ?, ?)",
            [(ds, b"[" + _as_bytes(body) + b"]", accepted_at) for ds, body, accepted_at in rows],
        )
        conn.execute("DELETE FROM dead")
        conn.execute("COMMIT")
    return len(rows)


def _iter_spool_files(directory: Path) -> Iterator[Path]:
    if directory.is_dir():
        yield from sorted(directory.glob("*" + SUFFIX))


def inspect_spool_dir(directory: Path) -> list[SpoolFileStatus]:
    """Read-only view of every spool file in ``directory`` (for ``perf-sdk spool status``)."""
    out: list[SpoolFileStatus] = []
    for path in _iter_spool_files(directory):
        fd = _lock(path.with_suffix(".lock"))
        status = SpoolFileStatus(path=path, alive=fd is None)
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
            try:
                n, segs, size, oldest = conn.execute(
                    "SELECT COALESCE(SUM(n),0), COUNT(*), COALESCE(SUM(LENGTH(body)),0), MIN(accepted_at) FROM segments"
                ).fetchone()
                status.records, status.segments, status.bytes, status.oldest_accepted_at = (
                    int(n),
                    int(segs),
                    int(size),
                    oldest,
                )
                status.dead = int(conn.execute("SELECT COUNT(*) FROM dead").fetchone()[0])
                status.by_dataset = dict(
                    conn.execute("SELECT dataset, SUM(n) FROM segments GROUP BY dataset").fetchall()
                )
            finally:
                conn.close()
        except sqlite3.Error as exc:
            status.error = str(exc)
        finally:
            if fd is not None:
                os.close(fd)
        out.append(status)
    return out


def replay_dead_in_dir(directory: Path) -> int:
    """Move dead letters back to the outbox in every spool file whose owner is gone or alive.

    SQLite's own locking makes this safe beside a live owner; its uploader picks
    the records up on its next pass.
    """
    total = 0
    for path in _iter_spool_files(directory):
        conn = _connect(path)
        try:
            _migrate(conn)
            total += _replay_dead(conn)
        finally:
            conn.close()
    return total
