"""The local platform's storage: SQLite in WAL mode, records plus hourly and daily rollups.

Tables (one database holds every data set):

``datasets(id, grp, typ, updated)``
    Every data set, and the time of its last write (microseconds since the
    epoch, for ``/_status/data-sets``; added to older databases at open).
``records(ds, id, ts, body, dims)``
    One row per stored record: ``id`` its ``_id`` (unique per data set: a write
    with an existing ``_id`` replaces the row, backdrop's upsert), ``ts`` its
    ``_timestamp`` as microseconds since the epoch (NULL without one), ``body``
    every other field as compact JSON with sorted keys, ``dims`` its rollup
    content when that differs from ``body`` (else NULL).
``rollup(ds, hour, dims, n)``
    How many records (``n``) of a data set fall in each UTC hour with exactly
    the same ``dims``: the record's fields without ``_id``, ``_timestamp`` and
    strings longer than :data:`MAX_DIM_CHARS` (a hashed transaction id would
    make every record its own group). perf_sdk's records have a handful of
    distinct contents per hour, so a year of ten million records is under a
    hundred thousand rollup rows. Records without ``_timestamp`` count in
    the hour :data:`~perf_sdk.platform._query.SENTINEL_HOUR`.
``rollup_day(ds, day, dims, n)``
    The same counts per UTC day (the sentinel stays the sentinel): 24 times
    fewer rows, so the monthly read ``perf-sdk kpis`` sends scans a few
    thousand rows for a year, not ninety thousand. Made from ``rollup`` when
    a database from before it is opened, and again if its totals ever
    disagree with ``rollup``'s (a database written since by such a version).
``wide_fields(ds, field)``
    Fields that some record of the data set had too long for the rollup.

Why rollups: a grouped query over ten million rows costs seconds in SQLite
whatever the indexes (each row's JSON must be read), the same query over a
rollup some milliseconds (``benchmarks/platform.py`` measures it). They are
kept exact in the transaction that writes the rows: the batch's records are
counted in Python and added first, then the rows are upserted, and triggers
on ``UPDATE`` (the upsert replacing a record, also one sent twice in a batch)
subtract the replaced record and delete rollup rows that reach zero.
``PUT []`` deletes the data set's rows of every table. A read uses a rollup
when every field it groups, filters or collects is a rollup dimension (not a
wide field, not ``_id``) and its time bounds fall on whole hours (always
true with ``period``): the daily one unless the period is an hour or a bound
is not midnight; else the row table. All give the same answer.

What a write costs (``benchmarks/platform.py`` prints the curve and the
server's CPU per record): :func:`prepare` reads each time once, through
``datetime.fromisoformat`` for the SDK's own form, and encodes with one C
encoder built once; WAL checkpoints run on their own thread
(:class:`_Checkpointer`), not inside a request. What still grows with the
database is the ``(ds, id)`` index: random ``_id`` values put nearly every
record of a batch on a different page of it, and each such page is written
to the WAL and checkpointed. That saturates at about one page a record by 3
million records (server CPU 19 us a record at 1 million, 27 at 3 million, 31
at 10 million); measured at 2 million, neither 1 KiB pages, nor a 512 MiB
cache, nor ids stored as 16-byte blobs (3% less CPU, not worth a change of
format), nor a batch inserted in id order changed it measurably.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, NamedTuple

from perf_sdk._protocol import PLATFORM_TIME_KEYS, parse_lenient_timestamp, platform_record_problems
from perf_sdk.platform import _periods, _query
from perf_sdk.platform._query import DEFAULT_LIMITS, ROLLUP, ROWS, SENTINEL_HOUR, ReadLimits, ReadQuery

__all__ = ["MAX_DIM_CHARS", "InvalidRecords", "Prepared", "Store", "prepare"]

#: No limit on a read (in-process callers that want every record).
_UNBOUNDED: Final = ReadLimits(periods=2**62, cells=2**62, records=2**62, bytes=2**62)
#: Strings longer than this are not rollup dimensions (a SHA-256 hex is 64).
MAX_DIM_CHARS: Final = 40
_MIN_INT: Final = -(2**63)
_MAX_INT: Final = 2**63 - 1
_U: Final = _periods.US_PER_HOUR
_D: Final = 24 * _U
#: Where a grouped read over whole days reads: the daily rollup (records without
#: ``_timestamp`` sit at :data:`SENTINEL_HOUR` there too, below every real day).
ROLLUP_DAY: Final = _query.Source("rollup_day", "day", "dims", "n", _D, rollup=True)


def _old_unit(unit: int) -> str:
    """SQL: the hour or day (``unit``) of the replaced record, flooring times before 1970 too."""
    return (
        f"(CASE WHEN OLD.ts IS NULL THEN {SENTINEL_HOUR} "
        f"ELSE (OLD.ts - ((OLD.ts % {unit}) + {unit}) % {unit}) / {unit} END)"
    )


def _day(hour: int) -> int:
    return hour if hour == SENTINEL_HOUR else hour // 24


_SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS datasets (
    id INTEGER PRIMARY KEY,
    grp TEXT NOT NULL,
    typ TEXT NOT NULL,
    updated INTEGER,
    UNIQUE (grp, typ)
);
CREATE TABLE IF NOT EXISTS records (
    ds INTEGER NOT NULL,
    id TEXT NOT NULL,
    ts INTEGER,
    body TEXT NOT NULL,
    dims TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS records_by_id ON records (ds, id);
CREATE INDEX IF NOT EXISTS records_by_ts ON records (ds, ts);
CREATE TABLE IF NOT EXISTS rollup (
    ds INTEGER NOT NULL,
    hour INTEGER NOT NULL,
    dims TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (ds, hour, dims)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS records_replaced AFTER UPDATE ON records BEGIN
    UPDATE rollup SET n = n - 1
        WHERE ds = OLD.ds AND hour = {_old_unit(_U)} AND dims = coalesce(OLD.dims, OLD.body);
    DELETE FROM rollup
        WHERE ds = OLD.ds AND hour = {_old_unit(_U)} AND dims = coalesce(OLD.dims, OLD.body) AND n <= 0;
END;
CREATE TABLE IF NOT EXISTS rollup_day (
    ds INTEGER NOT NULL,
    day INTEGER NOT NULL,
    dims TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (ds, day, dims)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS records_replaced_day AFTER UPDATE ON records BEGIN
    UPDATE rollup_day SET n = n - 1
        WHERE ds = OLD.ds AND day = {_old_unit(_D)} AND dims = coalesce(OLD.dims, OLD.body);
    DELETE FROM rollup_day
        WHERE ds = OLD.ds AND day = {_old_unit(_D)} AND dims = coalesce(OLD.dims, OLD.body) AND n <= 0;
END;
CREATE TABLE IF NOT EXISTS wide_fields (
    ds INTEGER NOT NULL,
    field TEXT NOT NULL,
    PRIMARY KEY (ds, field)
) WITHOUT ROWID;
"""

_UPSERT: Final = (
    "INSERT INTO records (ds, id, ts, body, dims) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (ds, id) DO UPDATE SET ts = excluded.ts, body = excluded.body, dims = excluded.dims"
)
_ROLLUP_ADD: Final = (
    "INSERT INTO rollup (ds, hour, dims, n) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (ds, hour, dims) DO UPDATE SET n = n + excluded.n"
)
_ROLLUP_DAY_ADD: Final = (
    "INSERT INTO rollup_day (ds, day, dims, n) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (ds, day, dims) DO UPDATE SET n = n + excluded.n"
)
#: The daily rollup from the hourly one (hour // 24, floored; the sentinel stays).
_ROLLUP_DAY_REBUILD: Final = f"""
DELETE FROM rollup_day;
INSERT INTO rollup_day (ds, day, dims, n)
    SELECT ds, CASE WHEN hour = {SENTINEL_HOUR} THEN hour ELSE (hour - ((hour % 24) + 24) % 24) / 24 END, dims, SUM(n)
    FROM rollup GROUP BY 1, 2, 3;
"""
_TABLES: Final = ("records", "rollup", "rollup_day", "wide_fields")


#: Problems a 400 lists at most, and characters of each at most: a 5 MB body of bad keys must not make a 90 MB answer.
MAX_MESSAGES: Final = 100
_MAX_MESSAGE_CHARS: Final = 500


class InvalidRecords(ValueError):
    """Records the platform refuses; ``messages`` has one line per problem, the first :data:`MAX_MESSAGES`.

    ``more`` counts the problems found past those (a lower bound when
    ``more_at_least``: a record's own problems stop being looked for there).
    """

    def __init__(self, messages: list[str], more: int = 0, more_at_least: bool = False) -> None:
        self.messages = [
            m if len(m) <= _MAX_MESSAGE_CHARS else m[: _MAX_MESSAGE_CHARS - 9] + "… (cut)" for m in messages
        ]
        self.more = more
        self.more_at_least = more_at_least
        super().__init__("; ".join(self.messages))

    def lines(self) -> list[str]:
        """The messages, then how many more there were."""
        if not self.more:
            return self.messages
        return [*self.messages, f"and {'at least ' if self.more_at_least else ''}{self.more} more problem(s)"]


class Prepared(NamedTuple):
    """A valid record in its stored form, with its rollup key."""

    id: str
    ts: int | None
    body: str
    dims: str | None  # None: same as body
    hour: int
    wide: tuple[str, ...]


_make: Final = Prepared._make

_ENCODER: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
# CPython's C encoder built once: ``JSONEncoder.encode`` builds it again for every
# call, a third of the cost of encoding a small record. Same options, same text.
_MAKE_C_ENCODER: Callable[..., Callable[[Any, int], Sequence[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)
_C_ENCODE: Final = (
    None
    if _MAKE_C_ENCODER is None
    else _MAKE_C_ENCODER(
        None, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True
    )
)


def dumps(fields: dict[str, Any]) -> str:
    """The stored JSON of a record's fields: compact, keys sorted, ASCII (as ``_ENCODER``)."""
    if _C_ENCODE is None:  # pragma: no cover - Python without the C accelerator
        return _ENCODER.encode(fields)
    return "".join(_C_ENCODE(fields, 0))


#: The SDK's own ``_timestamp`` form (``2025-01-01T10:00:00Z``), read without the lenient parser.
_SDK_TIME: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", re.ASCII)
_NAIVE_EPOCH: Final = datetime(1970, 1, 1)  # the SDK form is UTC: read naive, subtracted from a naive epoch
_ONE_US: Final = timedelta(microseconds=1)


def _time_us(text: str) -> int | None:
    """Microseconds since the epoch of a time as any client may send it; ``None`` if it is not one.

    The SDK's own form, nearly every time a platform reads, goes through
    ``datetime.fromisoformat`` (C) instead of the lenient parser: same
    instant, same verdict (an impossible date is refused by either).
    """
    if len(text) == 20 and _SDK_TIME.fullmatch(text):
        try:
            return (datetime.fromisoformat(text[:19]) - _NAIVE_EPOCH) // _ONE_US
        except ValueError:
            return None
    dt = parse_lenient_timestamp(text)
    return None if dt is None else _periods.to_us(dt)


def _times(record: Any) -> dict[str, int] | None:
    """The instants of ``record``'s time fields, each parsed once; ``None`` if one is not a time."""
    out: dict[str, int] = {}
    if not isinstance(record, Mapping):
        return out
    for key in PLATFORM_TIME_KEYS:
        text = record.get(key)
        if text is None:
            continue
        us = _time_us(text) if type(text) is str else None
        if us is None:
            return None
        out[key] = us
    return out


def _problems(index: int, record: Any, times: dict[str, int] | None, messages: list[str]) -> int:
    """Add ``record``'s problems (past :data:`MAX_MESSAGES` of them, not all) to ``messages``; how many.

    :func:`platform_record_problems` would parse the time fields again: when
    they are already parsed, it is asked about the other fields only (a time
    string is a valid value, so nothing else is lost); when one is not a time,
    about the whole record, for its exact messages in their order.
    """
    if times:
        record = dict(record)  # a copy and a deletion or two: a third of a comprehension's cost
        for key in times:
            del record[key]
    problems = platform_record_problems(record, MAX_MESSAGES + 1)
    if problems:
        messages += [f"record {index}: {p}" for p in problems]
    return len(problems)


def _instant(index: int, key: str, text: str, us: int, messages: list[str]) -> int | None:
    """``us`` if it is within the years the store holds, else a message and ``None``."""
    if not _periods.MIN_US <= us <= _periods.MAX_US:
        messages.append(f"record {index}: {key} is out of range once in UTC: {text!r}")
        return None
    return us


def prepare(records: Sequence[Any]) -> list[Prepared]:
    """Check ``records`` as backdrop does and put them in stored form.

    Raises :class:`InvalidRecords` listing every problem of every record, each
    message prefixed with the record's index in the request (``record 3: ...``).
    The rules are :func:`perf_sdk._protocol.platform_record_problems` (what any
    client may send, lenient where backdrop is); beyond them the store refuses
    what it cannot hold faithfully: integers outside 64 bits, and times whose
    UTC instant falls outside the years 1 to 9999. ``_start_at`` and ``_end_at``
    are kept in UTC ISO form, as backdrop gives them back. Each time is parsed
    once (a platform reads millions of them).
    """
    messages: list[str] = []
    out: list[Prepared] = []
    more, at_least = 0, False
    for index, record in enumerate(records):
        if len(messages) > MAX_MESSAGES:  # past the first problems, they are counted, not kept
            more += len(messages) - MAX_MESSAGES
            del messages[MAX_MESSAGES:]
        times = _times(record)
        found = _problems(index, record, times, messages)
        if found:
            at_least = at_least or found > MAX_MESSAGES  # that record's problems were not all looked for
            continue
        assert times is not None  # a time that does not parse is one of the problems
        fields = dict(record)
        rid = fields.pop("_id", None)
        text = fields.pop("_timestamp", None)
        wide: tuple[str, ...] = ()
        for key, value in fields.items():
            kind = type(value)
            if kind is str:
                if len(value) > MAX_DIM_CHARS:
                    wide += (key,)
            elif kind is int and not _MIN_INT <= value <= _MAX_INT:
                messages.append(f"record {index}: the value for field {key!r} does not fit in 64 bits")
        for key in ("_start_at", "_end_at"):
            if key in times:
                us = _instant(index, key, fields[key], times[key], messages)
                if us is not None:
                    fields[key] = _periods.iso(us)
        ts = None if text is None else _instant(index, "_timestamp", text, times["_timestamp"], messages)
        if messages:
            continue
        body = dumps(fields)
        dims = dumps({k: v for k, v in fields.items() if k not in wide}) if wide else None
        hour = SENTINEL_HOUR if ts is None else ts // _U
        # _make: the tuple built in C, not through the named tuple's keyword-taking __new__.
        out.append(_make((rid if rid is not None else os.urandom(12).hex(), ts, body, dims, hour, wide)))
    if messages:
        more += max(0, len(messages) - MAX_MESSAGES)
        raise InvalidRecords(messages[:MAX_MESSAGES], more, at_least)
    return out


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


#: SQLite's own checkpoint, inside the commit that crosses it: only a backstop
#: (~400 MB of WAL) for when the background checkpoint falls behind.
_BACKSTOP_PAGES: Final = 100_000


class _Checkpointer:
    """Copies the WAL into the database on its own thread and connection.

    SQLite's automatic checkpoint runs inside the commit that crosses its
    threshold: one write in every few waited while tens of megabytes of
    index pages were copied and synced (random ``_id`` values dirty a
    page per record). Here a write only signals that it committed; this
    thread checkpoints (``PASSIVE``: it never blocks a writer or a reader)
    at most every ``interval`` seconds, on the other core while the next
    request is parsed. Whatever it has copied when no write is under way lets
    the next write start the WAL over, so the WAL stays near a few batches;
    SQLite's own checkpoint at :data:`_BACKSTOP_PAGES` bounds it if this
    thread falls behind.
    """

    def __init__(self, path: str, interval: float = 0.2) -> None:
        self._conn = _connect(path)
        self._interval = interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="perf-sdk-platform-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                if self._stopping.is_set():
                    return
                self._wake.clear()
                with contextlib.suppress(sqlite3.Error):  # tried again after the next write
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                if self._stopping.wait(self._interval):
                    return
        finally:
            self._conn.close()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join()


class Store:
    """Every data set of one platform, in one SQLite database.

    ``path`` is a file (created if missing) or ``":memory:"``. Safe to share
    between threads: writes are serialised by a lock on one connection; with a
    file, each reading thread has its own connection, so WAL lets reads run
    beside a write. With ``":memory:"`` everything goes through one connection.
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._memory = self.path == ":memory:" or self.path.startswith("file::memory:")
        self._lock = threading.RLock()
        self._closed = False
        self._conn = _connect(self.path)
        if not self._memory:
            self._conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL: a commit survives a crash of the process (not of the OS).
            self._conn.execute("PRAGMA synchronous = NORMAL")
            # Checkpoints run on their own thread (_Checkpointer); this is the backstop.
            self._conn.execute(f"PRAGMA wal_autocheckpoint = {_BACKSTOP_PAGES}")
            self._conn.execute("PRAGMA journal_size_limit = 67108864")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(datasets)")}
        if "updated" not in columns:  # a database made before data sets kept their last write
            self._conn.execute("ALTER TABLE datasets ADD COLUMN updated INTEGER")
        self._check_day_rollup()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._wide_seen: dict[int, set[str]] = defaultdict(set)
        self._ids: dict[tuple[str, str], int] = {}
        self._checkpointer: _Checkpointer | None = None

    def _check_day_rollup(self) -> None:
        """Rebuild the daily rollup when its counts disagree with the hourly one.

        That is a database made before the daily rollup existed (its table is
        new and empty), or written since by such a version (which adds to the
        hourly rollup only). Comparing each data set's total is enough: every
        write of an older version adds records to one total and not the other.
        """
        with self._transaction() as conn:
            totals = "SELECT ds, SUM(n) FROM {} GROUP BY ds ORDER BY ds"
            if conn.execute(totals.format("rollup")).fetchall() != conn.execute(totals.format("rollup_day")).fetchall():
                for statement in _ROLLUP_DAY_REBUILD.split(";"):
                    if statement.strip():
                        conn.execute(statement)

    # ------------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise RuntimeError("the store is closed")
        if self._memory:
            with self._lock:
                yield self._conn
            return
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only = 1")
            conn.execute("PRAGMA mmap_size = 268435456")
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        # One snapshot for all the read's statements (the data set, wide fields, the span, the sums): in
        # autocommit each had its own, and a read could pick the rollup before a write committed and sum it
        # after, answering one record of a two-record write that is "every record of the batch or none".
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")  # a read transaction: nothing to keep or undo

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the store is closed")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection; the store cannot be used afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._checkpointer is not None:
                self._checkpointer.close()
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            self._conn.close()

    def ping(self) -> bool:
        """Whether the database answers.

        In memory every request shares one connection behind a lock; a health
        check must not queue behind a long read, and a held lock means the
        database is at work, so that answers yes at once.
        """
        if self._memory and not self._closed:
            if not self._lock.acquire(blocking=False):
                return True
            self._lock.release()
        with self._reader() as conn:
            return bool(conn.execute("SELECT 1").fetchone() == (1,))

    # ------------------------------------------------------------------ data sets

    def dataset_id(self, group: str, type_: str) -> int | None:
        """The data set's id, ``None`` if it was never created."""
        with self._reader() as conn:
            row = conn.execute("SELECT id FROM datasets WHERE grp = ? AND typ = ?", (group, type_)).fetchone()
        return None if row is None else int(row[0])

    def create(self, group: str, type_: str) -> int:
        """The data set's id, creating it (empty) if needed."""
        with self._transaction() as conn:
            return self._create(conn, group, type_)

    def _create(self, conn: sqlite3.Connection, group: str, type_: str) -> int:
        ds = self._ids.get((group, type_))
        if ds is None:
            conn.execute("INSERT OR IGNORE INTO datasets (grp, typ) VALUES (?, ?)", (group, type_))
            row = conn.execute("SELECT id FROM datasets WHERE grp = ? AND typ = ?", (group, type_)).fetchone()
            ds = self._ids[(group, type_)] = int(row[0])
        return ds

    # ------------------------------------------------------------------ writes

    def write(self, group: str, type_: str, records: Sequence[Prepared], *, now_us: int | None = None) -> None:
        """Store ``records`` (from :func:`prepare`) in one transaction, creating the data set.

        ``now_us`` (microseconds since the epoch) is kept as the data set's last
        write, for ``/_status/data-sets``.
        """
        with self._transaction() as conn:
            ds = self._create(conn, group, type_)
            if not records:
                return
            if now_us is not None:
                conn.execute("UPDATE datasets SET updated = ? WHERE id = ?", (now_us, ds))
            # Count the batch into the rollup first: the trigger then subtracts
            # whatever the upsert replaces, including a record sent twice here.
            added = Counter((r.hour, r.dims or r.body) for r in records)
            conn.executemany(_ROLLUP_ADD, [(ds, hour, dims, n) for (hour, dims), n in added.items()])
            daily: Counter[tuple[int, str]] = Counter()
            for (hour, dims), n in added.items():
                daily[_day(hour), dims] += n
            conn.executemany(_ROLLUP_DAY_ADD, [(ds, day, dims, n) for (day, dims), n in daily.items()])
            conn.executemany(_UPSERT, [(ds, r.id, r.ts, r.body, r.dims) for r in records])
            wide = {name for r in records for name in r.wide} - self._wide_seen[ds]
            if wide:
                rows = [(ds, name) for name in wide]
                conn.executemany("INSERT OR IGNORE INTO wide_fields (ds, field) VALUES (?, ?)", rows)
                self._wide_seen[ds] |= wide
        if records:
            self._wrote()

    def _wrote(self) -> None:
        """Tell the checkpoint thread (started by the first write to a file) that the WAL grew."""
        if self._memory:
            return
        with self._lock:
            if self._checkpointer is None and not self._closed:
                self._checkpointer = _Checkpointer(self.path)
            if self._checkpointer is not None:
                self._checkpointer.committed()

    def empty(self, group: str, type_: str, *, now_us: int | None = None) -> None:
        """Delete every record of the data set (``PUT []``); the data set stays, changed at ``now_us``."""
        with self._transaction() as conn:
            ds = self._create(conn, group, type_)
            for table in _TABLES:
                conn.execute(f"DELETE FROM {table} WHERE ds = ?", (ds,))
            if now_us is not None:
                conn.execute("UPDATE datasets SET updated = ? WHERE id = ?", (now_us, ds))
            self._wide_seen.pop(ds, None)

    def delete(self, group: str, type_: str) -> bool:
        """Remove the data set and everything in it; ``False`` if it did not exist."""
        with self._transaction() as conn:
            row = conn.execute("SELECT id FROM datasets WHERE grp = ? AND typ = ?", (group, type_)).fetchone()
            if row is None:
                return False
            ds = int(row[0])
            for table in _TABLES:
                conn.execute(f"DELETE FROM {table} WHERE ds = ?", (ds,))
            conn.execute("DELETE FROM datasets WHERE id = ?", (ds,))
            self._ids.pop((group, type_), None)
            self._wide_seen.pop(ds, None)
            return True

    # ------------------------------------------------------------------ reads

    def last_updated(self) -> dict[tuple[str, str], int | None]:
        """Every data set and its last write (microseconds since the epoch, ``None`` if never)."""
        with self._reader() as conn:
            rows = conn.execute("SELECT grp, typ, updated FROM datasets").fetchall()
        return {(g, t): (None if u is None else int(u)) for g, t, u in rows}

    def records(self, group: str, type_: str) -> list[dict[str, Any]]:
        """Every record of the data set as the read API returns it (``[]`` if unknown).

        For tests and tools in-process: not bounded by the read API's limits.
        """
        return self.read(group, type_, ReadQuery(), _UNBOUNDED) or []

    def count(self, group: str, type_: str) -> int:
        """How many records the data set holds (0 if unknown)."""
        with self._reader() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM records JOIN datasets ON records.ds = datasets.id "
                "WHERE datasets.grp = ? AND datasets.typ = ?",
                (group, type_),
            ).fetchone()
        return int(row[0])

    def read(
        self, group: str, type_: str, query: ReadQuery, limits: ReadLimits = DEFAULT_LIMITS
    ) -> list[dict[str, Any]] | None:
        """The ``data`` of a read query; ``None`` when the data set does not exist.

        Raises :class:`~perf_sdk.platform._query.QueryError` for a query that
        can only be refused once the data is known: past one of ``limits``
        (periods, groups times periods, records, bytes), or a sum over text.
        """
        with self._reader() as conn:
            row = conn.execute("SELECT id FROM datasets WHERE grp = ? AND typ = ?", (group, type_)).fetchone()
            if row is None:
                return None
            ds = int(row[0])
            if not query.is_grouped:
                return self._records(conn, ds, query, limits)
            source = self._source(conn, ds, query)
            periods = self._periods(conn, ds, query, source, limits)
            bounds = None
            if periods is not None:
                bounds = [(_periods.to_us(lo) // source.unit, _periods.to_us(hi) // source.unit) for lo, hi in periods]
            sql, params = _query.aggregate_sql(query, source, ds, bounds)
            try:
                return _query.shape(query, conn.execute(sql, params), periods, limits)
            except sqlite3.OperationalError as exc:
                if "integer overflow" not in str(exc):
                    raise
            sql, params = _query.aggregate_sql(query, source, ds, bounds, exact=False)
            return _query.shape(query, conn.execute(sql, params), periods, limits)

    @staticmethod
    def _records(conn: sqlite3.Connection, ds: int, query: ReadQuery, limits: ReadLimits) -> list[dict[str, Any]]:
        """A plain query's records, refused (400) past ``limits.records`` or ``limits.bytes``."""
        sql, params = _query.records_sql(query, ds, cap=limits.records + 1)
        out: list[dict[str, Any]] = []
        size = 0
        hint = "add limit=, filter_by, or start_at and end_at"
        for rid, ts, body in conn.execute(sql, params):
            if len(out) >= limits.records:
                raise _query.too_much("records", len(out) + 1, limits.records, hint)
            size += len(body) + len(rid) + 40
            if size > limits.bytes:
                raise _query.too_much("bytes", size, limits.bytes, hint)
            out.append(_query.record_from_row(rid, ts, body))
        return out

    def _source(self, conn: sqlite3.Connection, ds: int, query: ReadQuery) -> _query.Source:
        """The smallest table that answers ``query`` exactly: daily rollup, hourly rollup or rows."""
        if not self._rollup_serves(conn, ds, query):
            return ROWS
        if query.period == "hour" or not self._on(query, _D):
            return ROLLUP
        return ROLLUP_DAY

    @staticmethod
    def _on(query: ReadQuery, unit: int) -> bool:
        """Whether the query's time bounds fall on whole units (``unit`` microseconds: an hour, a day)."""
        bounds = (query.start_at, query.end_at)
        return all(bound is None or _periods.to_us(bound) % unit == 0 for bound in bounds)

    def _rollup_serves(self, conn: sqlite3.Connection, ds: int, query: ReadQuery) -> bool:
        fields = query.fields
        if "_id" in fields or (query.inclusive and query.end_at is not None) or not self._on(query, _U):
            return False
        if not fields:
            return True
        marks = ",".join("?" * len(fields))
        hit = conn.execute(
            f"SELECT 1 FROM wide_fields WHERE ds = ? AND field IN ({marks}) LIMIT 1", (ds, *fields)
        ).fetchone()
        return hit is None

    @staticmethod
    def _periods(
        conn: sqlite3.Connection, ds: int, query: ReadQuery, source: _query.Source, limits: ReadLimits
    ) -> list[tuple[datetime, datetime]] | None:
        """The answer's periods (:func:`~perf_sdk.platform._query.answer_periods`), the data's span read here."""
        return _query.answer_periods(
            query, source, limits, lambda: conn.execute(*_query.span_sql(query, source, ds)).fetchone()
        )
