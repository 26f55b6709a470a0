"""The platform's PostgreSQL storage: records plus an exact hourly rollup, for several processes and hosts.

Chosen by URL (``perf-sdk serve --db postgresql://user@host/db`` or
``PERF_SDK_PLATFORM_DB``); needs the ``postgres`` extra (psycopg 3 and
psycopg-pool). The schema follows the SQLite store's ideas (``_store.py``):

``records(ds, ts, seq, k, id, body, dims)``
    One row per record. ``k`` is the ``_id`` as UTF-8 bytes (the primary key
    with ``ds``); the SDK's ids (32 lowercase hex digits) as a marker byte
    and their 16 bytes (migration 3: the primary key is the index every
    write touches at random, a third smaller so); an ``_id`` longer than
    :data:`KEY_BYTES` bytes as another marker byte and its SHA-256, the full
    ``_id`` then kept in ``id`` (NULL otherwise, so an ``_id`` is stored
    once). Bytes, not text: an ``_id`` may hold characters PostgreSQL text
    cannot (NUL), and byte order is the code-point order SQLite sorts
    ``_id`` by (``sort_by=_id`` spells a 16-byte key out again). ``seq``
    orders records of one time as SQLite's ``rowid`` does: the batch's number
    (one ``nextval`` per write) times 2**24 plus the record's place in it, so
    records keep the order they were sent in although they are inserted in
    key order.
``rollup(ds, hour, key, dims, n)``
    How many records of a data set fall in each UTC hour with exactly the same
    rollup content ``dims``; ``key`` is its SHA-256 (an index over long text
    would have a size limit).
``rollup_day(ds, day, key, dims, n)``
    The same per UTC day (migration 2): a year of a service's records is a few
    thousand rows, so the queries ``perf-sdk kpis`` sends (months, quarters)
    read 24 times fewer rows than from the hourly rollup. A query whose bounds
    fall on midnights and whose period is a day or longer reads it.
``wide_fields``, ``datasets``
    As in SQLite.

Exact under concurrent writers (several ``serve`` processes, several hosts),
without a lock on the data set. A write, in one transaction:

1. takes a ``KEY SHARE`` lock on the data set's row (writers share it; ``PUT
   []`` and ``DELETE`` take ``FOR UPDATE`` and so wait for writers and block
   new ones);
2. copies the batch into its connection's temporary staging table (binary
   ``COPY``) and inserts it from there sorted by key, each row's ``seq`` in
   a span only this batch uses: as new rows, under a savepoint, and if a key
   exists, again with ``ON CONFLICT DO NOTHING``. An ``_id``
   another transaction is inserting makes this wait for it to end. When
   every row was inserted (the SDK's case), each counts +1 in the rollup;
3. otherwise locks the batch's rows whose ``seq`` is not this batch's, i.e.
   that another transaction stored (``SELECT ... ORDER BY k FOR UPDATE``):
   under the lock the old version is the one this transaction replaces, so
   its rollup content is subtracted exactly once (-1 old, +1 new; an
   unchanged record is not rewritten at all). A row deleted in the meantime
   goes back to step 2;
4. applies the rollup deltas in one statement per rollup, sorted by (time,
   key), and deletes rows that reach zero; then the data set's last write time.

Every transaction locks records in key order, then rollup rows in key order,
then the data set's row, so writers do not deadlock one another; a deadlock
with ``PUT []`` or a serialization failure is retried. Reads run in a
read-only ``REPEATABLE READ`` transaction (one snapshot for the span and the
aggregate) with server-side cursors, so a large answer is refused by
:class:`~perf_sdk.platform._query.ReadLimits` as it streams, not after it is
all in memory.

Migrations are versioned (``schema_migrations``) and applied at start under an
advisory lock, so two processes starting at once apply each exactly once;
``perf-sdk platform migrate --db URL`` applies them on its own. A URL's
password never appears in an error, a log line or a repr (:func:`redact`).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, NamedTuple, TypeVar
from urllib.parse import urlsplit

from perf_sdk._errors import ConfigurationError

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ConfigurationError(
        f"a PostgreSQL platform database needs {exc.name or 'psycopg'}: pip install 'perf-sdk[postgres]'"
    ) from exc

from perf_sdk._protocol import KEY_RE
from perf_sdk.platform import _periods, _query
from perf_sdk.platform._query import DEFAULT_LIMITS, SENTINEL_HOUR, ReadLimits, ReadQuery
from perf_sdk.platform._store import Prepared

__all__ = ["KEY_BYTES", "MIGRATIONS", "PostgresStore", "first_line", "is_postgres_url", "migrate", "redact"]

#: ``_id``s up to this many UTF-8 bytes are their own key; longer ones are hashed.
KEY_BYTES: Final = 64
_LONG_MARK: Final = b"\xff"  # never a byte of UTF-8, so a hashed key never equals a plain one
_HEX_MARK: Final = b"\xfe"  # nor is this: a 32-hex _id (the SDK's) is this byte and its 16 bytes
_HEX_ID: Final = re.compile(r"[0-9a-f]{32}", re.ASCII)
_U: Final = _periods.US_PER_HOUR
_MIN_INT: Final = -(2**63)
_MAX_INT: Final = 2**63 - 1
#: Advisory lock held while migrating (any constant unique to perf_sdk).
_MIGRATION_LOCK: Final = 0x70657266_73646B31 - 2**63
_RETRIES: Final = 8
_UNBOUNDED: Final = ReadLimits(periods=2**62, cells=2**62, records=2**62, bytes=2**62)

#: (version, what it does, statements). Append only: a released migration never changes.
MIGRATIONS: Final[tuple[tuple[int, str, tuple[str, ...]], ...]] = (
    (
        1,
        "data sets, records, hourly rollup, wide fields",
        (
            """CREATE TABLE datasets (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                updated bigint,
                grp text NOT NULL,
                typ text NOT NULL,
                UNIQUE (grp, typ)
            )""",
            """CREATE TABLE records (
                ds bigint NOT NULL,
                ts bigint,
                seq bigint NOT NULL,
                k bytea NOT NULL,
                id bytea,
                body text NOT NULL,
                dims text,
                PRIMARY KEY (ds, k)
            )""",
            "CREATE SEQUENCE records_batch",
            "CREATE INDEX records_by_ts ON records (ds, ts NULLS FIRST, seq)",
            """CREATE TABLE rollup (
                ds bigint NOT NULL,
                hour bigint NOT NULL,
                n bigint NOT NULL,
                key bytea NOT NULL,
                dims text NOT NULL,
                PRIMARY KEY (ds, hour, key)
            ) WITH (fillfactor = 70)""",
            """CREATE TABLE wide_fields (
                ds bigint NOT NULL,
                field text NOT NULL,
                PRIMARY KEY (ds, field)
            )""",
        ),
    ),
    (
        2,
        "daily rollup, filled from the hourly one",
        (
            """CREATE TABLE rollup_day (
                ds bigint NOT NULL,
                day bigint NOT NULL,
                n bigint NOT NULL,
                key bytea NOT NULL,
                dims text NOT NULL,
                PRIMARY KEY (ds, day, key)
            ) WITH (fillfactor = 70)""",
            f"""INSERT INTO rollup_day (ds, day, n, key, dims)
                SELECT ds, CASE WHEN hour = {SENTINEL_HOUR} THEN hour ELSE floor(hour / 24.0)::bigint END,
                       sum(n), key, min(dims)
                FROM rollup GROUP BY 1, 2, 4""",
        ),
    ),
    (
        3,
        "32-hex _ids as 16 bytes in the primary key",
        (
            """UPDATE records SET k = '\\xfe'::bytea || decode(encode(k, 'escape'), 'hex')
                WHERE length(k) = 32 AND encode(k, 'escape') ~ '^[0-9a-f]{32}$'""",
        ),
    ),
)

_T = TypeVar("_T")


# --------------------------------------------------------------------------- URLs


def is_postgres_url(db: object) -> bool:
    """Whether ``db`` names a PostgreSQL database (``postgresql://`` or ``postgres://``), not a SQLite file."""
    return isinstance(db, str) and db.split("://", 1)[0].lower() in ("postgresql", "postgres")


def redact(url: str) -> str:
    """``url`` without its password (and without a ``password=`` parameter), for messages and logs."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
        query = "&".join(
            "password=***" if item.split("=", 1)[0].lower() == "password" else item
            for item in parts.query.split("&")
            if item
        )
        return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
    except ValueError:
        return "postgresql://***"


# --------------------------------------------------------------------------- migrations


def migrate(conn: psycopg.Connection[Any]) -> list[int]:
    """Apply the migrations ``conn``'s database lacks, in order, in one transaction; the versions applied.

    Holds an advisory lock while it works, so processes starting together
    apply each migration once. A database migrated by a newer perf_sdk (a
    version this one does not know) is refused: its schema may not be what
    this code writes.
    """
    latest = MIGRATIONS[-1][0]
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {int(row[0]) for row in conn.execute("SELECT version FROM schema_migrations")}
        if done and max(done) > latest:
            raise ConfigurationError(
                f"the platform database's schema is at version {max(done)}, newer than this perf-sdk knows "
                f"({latest}): upgrade perf-sdk"
            )
        for version, name, statements in MIGRATIONS:
            if version in done:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
            applied.append(version)
    return applied


# --------------------------------------------------------------------------- SQL


class _Params:
    """Named query parameters, so that SQL built in pieces keeps each value beside its placeholder."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any, cast: str = "") -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"%({name})s{'::' + cast if cast else ''}"


def _field(col: str, name: str) -> str:
    """The field as JSON (``json`` keeps the stored text: ``1.0`` stays a real, ``1`` an integer)."""
    assert KEY_RE.fullmatch(name.lower()), name  # ASCII letters, digits, _: safe to quote
    return f"({col}->'{name}')"


def _type(col: str, name: str) -> str:
    return f"json_typeof({_field(col, name)})"


def _text(col: str, name: str) -> str:
    assert KEY_RE.fullmatch(name.lower()), name
    return f"({col}->>'{name}')"


def _is_int(col: str, name: str) -> str:
    return f"({_type(col, name)} = 'number' AND {_text(col, name)} !~ '[.eE]')"


def _finite_sum(expression: str) -> str:
    """The SUM of ``expression`` as a double, infinite past the largest one instead of an error.

    Summed as ``numeric``: ``float8`` arithmetic raises "value out of range" at the first sum past
    1.8e308 (two values of 1e308, each one finite and valid), and the whole read was a 500. The
    query layer answers an infinite total with a 400 that says so.
    """
    total = f"SUM({expression})"
    return (
        f"(CASE WHEN abs({total}) < 1.7976931348623157e308::numeric THEN {total}::float8 "
        f"ELSE sign({total})::float8 * 'Infinity'::float8 END)"
    )


def _is_real(col: str, name: str) -> str:
    return f"({_type(col, name)} = 'number' AND {_text(col, name)} ~ '[.eE]')"


def _jvalue(col: str, name: str) -> str:
    """The value as JSON text, NULL when absent or null (one encoder wrote every body: one text per value)."""
    return f"(CASE WHEN {_type(col, name)} = 'null' THEN NULL ELSE {_field(col, name)}::text END)"


def _present(col: str, name: str) -> str:
    return f"(coalesce({_type(col, name)}, 'null') <> 'null')"


def _json(col: str) -> str:
    """Stored JSON text as ``json`` for reading fields.

    PostgreSQL cannot turn ``\\u0000`` into text and refuses the whole
    document when a field of it is read, so an escaped NUL is read as U+FFFD
    (listed records come back exactly: they are decoded in Python).
    """
    return f"replace({col}, '\\u0000', '\\ufffd')::json"


def _encoded(text: str) -> str:
    """A string as :func:`_json` sees the stored JSON (the store's encoder: ASCII, escapes)."""
    return json.dumps(text).replace("\\u0000", "\\ufffd")


def _number(text: str) -> int | float | None:
    return _query._number(text)


def _filter(col: str, name: str, wanted: str, p: _Params) -> str:
    # Strings compare as stored JSON text: no unescaping (PostgreSQL text cannot hold \u0000).
    alternatives = [f"({_field(col, name)}::text = {p(_encoded(wanted))})"]
    number = _number(wanted)
    if number is not None:
        cast = "numeric" if isinstance(number, int) else "float8"
        value = f"(CASE WHEN {_type(col, name)} = 'number' THEN {_text(col, name)}::{cast} END)"
        alternatives.append(f"({value} = {p(number, cast)})")
    if wanted in ("true", "false"):
        alternatives.append(f"({_field(col, name)}::text = '{wanted}')")
    return "(" + " OR ".join(alternatives) + ")"


def _prefix(col: str, name: str, prefix: str, p: _Params) -> str:
    # JSON escaping maps each character to a fixed sequence (a prefix code), so a
    # string starts with ``prefix`` exactly when its stored text starts with the
    # encoded prefix (opening quote included, closing quote left off).
    encoded = _encoded(prefix)[:-1]
    return f"(left({_field(col, name)}::text, {len(encoded)}) = {p(encoded)})"


def _field_filters(query: ReadQuery, col: str, p: _Params) -> list[str]:
    where = [_filter(col, name, wanted, p) for name, wanted in query.filter_by if name != "_id"]
    where += [_prefix(col, name, prefix, p) for name, prefix in query.filter_by_prefix]
    return where


def _id_filters(query: ReadQuery, col: str, p: _Params) -> list[str]:
    return [f"{col} = {p(_key(wanted)[0])}" for name, wanted in query.filter_by if name == "_id"]


def _time_bounds(query: ReadQuery, col: str, unit: int) -> list[str]:
    where: list[str] = []
    if query.start_at is not None:
        where.append(f"{col} >= {_periods.to_us(query.start_at) // unit}")
    if query.end_at is not None:
        where.append(f"{col} {'<=' if query.inclusive else '<'} {_periods.to_us(query.end_at) // unit}")
    return where


def _source_where(query: ReadQuery, source: _query.Source, dataset: int, p: _Params) -> list[str]:
    where = [f"r.ds = {int(dataset)}"]
    where += _time_bounds(query, f"r.{source.time}", source.unit)
    if source.rollup and (query.start_at is not None or query.end_at is not None):
        where.append(f"r.{source.time} > {SENTINEL_HOUR}")
    if not source.rollup:
        where += _id_filters(query, "r.k", p)
    return where


def aggregate_sql(
    query: ReadQuery, source: _query.Source, dataset: int, periods: Sequence[tuple[int, int]] | None
) -> tuple[str, dict[str, Any]]:
    """PostgreSQL's version of :func:`perf_sdk.platform._query.aggregate_sql`: the same columns, so that
    :func:`~perf_sdk.platform._query.shape` reads both.

    Periods are contiguous, so a record's period is ``width_bucket`` over their
    edges (one range scan, not a join per period). The inner query folds
    identical stored texts per period before any JSON is parsed.
    """
    p = _Params()
    where = _source_where(query, source, dataset, p)
    if periods is not None:
        edges = [lo for lo, _ in periods] + [periods[-1][1]]
        assert all(periods[i][1] == periods[i + 1][0] for i in range(len(periods) - 1)), "periods are contiguous"
        idx = f"width_bucket(r.{source.time}, {p(edges, 'bigint[]')}) - 1"
        where += [f"r.{source.time} >= {edges[0]}", f"r.{source.time} < {edges[-1]}"]
    else:
        idx = "0"
    weight = f"SUM(r.{source.weight})::bigint" if source.rollup else "COUNT(*)"
    inner = (
        f"SELECT {idx} AS idx, r.{source.data} AS d, {weight} AS n FROM {source.table} AS r "
        f"WHERE {' AND '.join(where)} GROUP BY 1, 2 OFFSET 0"  # OFFSET 0: no JSON test pushed down per row
    )
    outer_where = _field_filters(query, "d", p)
    cols = ["idx"]
    for name in query.group_by:
        cols.append(_jvalue("d", name))
        outer_where.append(_present("d", name))
    cols.append("SUM(n)")
    for name in dict.fromkeys(c.field for c in query.collect):
        jv = _jvalue("d", name)
        t = _type("d", name)
        cols += [
            f"SUM(CASE WHEN {_is_int('d', name)} THEN {_text('d', name)}::numeric * n END)",
            _finite_sum(f"CASE WHEN {_is_real('d', name)} THEN {_text('d', name)}::numeric * n END"),
            f"SUM(CASE WHEN {t} = 'number' THEN n END)",
            f"SUM(CASE WHEN {t} <> 'null' THEN n END)",
            f"SUM(CASE WHEN {t} = 'string' THEN n END)",
            f"(json_agg(DISTINCT {jv}) FILTER (WHERE {jv} IS NOT NULL))::text",
        ]
    where_sql = f" WHERE {' AND '.join(outer_where)}" if outer_where else ""
    group = ", ".join(str(i) for i in range(1, len(query.group_by) + 2))
    sql = (
        f"SELECT {', '.join(cols)} FROM (SELECT idx, {_json('d')} AS d, n FROM ({inner}) AS i) AS o"
        f"{where_sql} GROUP BY {group}"
    )
    return sql, p.values


def span_sql(query: ReadQuery, source: _query.Source, dataset: int) -> tuple[str, dict[str, Any]]:
    """First and last stored time (``source`` units) of the records ``query`` would read."""
    p = _Params()
    t = f"r.{source.time}"
    where = [*_source_where(query, source, dataset, p), f"{t} IS NOT NULL"]
    if source.rollup:
        where.append(f"{t} > {SENTINEL_HOUR}")
    data = _json(f"r.{source.data}")
    where += _field_filters(query, data, p)
    where += [_present(data, name) for name in query.group_by]
    return f"SELECT MIN({t}), MAX({t}) FROM {source.table} AS r WHERE {' AND '.join(where)}", p.values


def records_sql(query: ReadQuery, dataset: int, cap: int | None = None) -> tuple[str, dict[str, Any]]:
    """A plain query's rows ``(k, id, ts, body)`` in SQLite's order (NULL times first, then insertion)."""
    p = _Params()
    where = [f"r.ds = {int(dataset)}", *_time_bounds(query, "r.ts", 1), *_id_filters(query, "r.k", p)]
    body = _json("r.body")
    where += _field_filters(query, body, p)
    order = "r.ts ASC NULLS FIRST, r.seq"
    if query.sort_by is not None:
        name, descending = query.sort_by
        d = "DESC" if descending else "ASC"
        if name == "_timestamp":
            order = f"r.ts {d} NULLS {'LAST' if descending else 'FIRST'}, r.seq"
        elif name == "_id":
            order = f"{_ID_BYTES} {d}"
        else:
            # SQLite's order of json_extract: NULL, then numbers and booleans (as 1 and 0), then text.
            col = body
            t = _type(col, name)
            rank = f"(CASE WHEN {t} IN ('number', 'boolean') THEN 1 WHEN {t} = 'string' THEN 2 ELSE 0 END)"
            num = (
                f"(CASE WHEN {t} = 'number' THEN {_text(col, name)}::numeric "
                f"WHEN {t} = 'boolean' THEN ({_field(col, name)}::text = 'true')::int END)"
            )
            txt = f"(CASE WHEN {t} = 'string' THEN {_text(col, name)} END) COLLATE \"C\""
            order = f"{rank} {d}, {num} {d}, {txt} {d}, r.ts ASC NULLS FIRST, r.seq"
    sql = f"SELECT r.k, r.id, r.ts, r.body FROM records AS r WHERE {' AND '.join(where)} ORDER BY {order}"
    limits = [n for n in (query.limit, cap) if n is not None]
    if limits:
        sql += f" LIMIT {int(min(limits))}"
    return sql, p.values


def _plain(value: Any) -> Any:
    """PostgreSQL's sums (numeric) as SQLite gives them: an int, a float past 64 bits."""
    if isinstance(value, Decimal):
        whole = int(value)
        return whole if _MIN_INT <= whole <= _MAX_INT else float(value)
    return value


def _rows(cursor: Iterable[Sequence[Any]]) -> Iterator[list[Any]]:
    for row in cursor:
        yield [_plain(v) for v in row]


# --------------------------------------------------------------------------- writes


def _key(rid: str) -> tuple[bytes, bytes | None]:
    """The ``k`` and ``id`` columns of an ``_id`` (see the module docstring)."""
    if len(rid) == 32 and _HEX_ID.fullmatch(rid):
        return _HEX_MARK + bytes.fromhex(rid), None
    raw = rid.encode("utf-8", "surrogatepass")
    return (raw, None) if len(raw) <= KEY_BYTES else (_LONG_MARK + hashlib.sha256(raw).digest(), raw)


def _id_text(k: bytes, rid: bytes | None) -> str:
    """The ``_id`` back from its ``k`` and ``id`` columns."""
    if rid is not None:
        return rid.decode("utf-8", "surrogatepass")
    if k[:1] == _HEX_MARK:
        return k[1:].hex()
    return k.decode("utf-8", "surrogatepass")


#: SQL: the ``_id``'s UTF-8 bytes, to sort by (a 16-byte key spelt out in hex again).
_ID_BYTES: Final = (
    "(CASE WHEN get_byte(r.k, 0) = 254 THEN convert_to(encode(substring(r.k FROM 2), 'hex'), 'UTF8') "
    "ELSE coalesce(r.id, r.k) END)"
)


def _rollup_key(dims: str) -> bytes:
    return hashlib.sha256(dims.encode("utf-8", "surrogatepass")).digest()


def _content(ts: int | None, body: str, dims: str | None) -> tuple[int, str]:
    """A record's rollup cell: its hour and rollup content."""
    return (SENTINEL_HOUR if ts is None else ts // _U), (dims if dims is not None else body)


class _Row(NamedTuple):
    """One record of a batch as the staging table holds it (``_STAGING``'s columns, in order)."""

    pos: int
    k: bytes
    id: bytes | None
    ts: int | None
    body: str
    dims: str | None


_make_row: Final = _Row._make  # the tuple built in C


def _staged(records: Sequence[Prepared]) -> dict[bytes, _Row]:
    """The batch's rows by key: a record sent twice is its last version at its first place (SQLite's replace)."""
    latest = {record.id: record for record in records}  # each _id at its first place, with its last version
    places: Iterable[int] = range(len(records))
    if len(latest) < len(records):
        first: dict[str, int] = {}
        for pos, record in enumerate(records):
            first.setdefault(record.id, pos)
        places = first.values()  # in the same order as ``latest``: both keep each _id where it first came
    rows: dict[bytes, _Row] = {}
    for pos, (rid, record) in zip(places, latest.items(), strict=True):
        k, full = _key(rid)
        rows[k] = _make_row((pos, k, full, record.ts, record.body, record.dims))
    return rows


#: Records in a batch at most (the rest of ``seq``); a 10 MB body holds fewer.
_BATCH_SPAN: Final = 2**24
#: Each pooled connection's own table for the batch being written: binary ``COPY`` fills it (a fraction of
#: the driver's and the server's cost of one JSON parameter), the statements below read it, and the commit
#: empties it. Temporary tables are never WAL-logged.
_STAGING: Final = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS perf_sdk_batch "
    "(p integer, k bytea, i bytea, t bigint, b text, d text) ON COMMIT DELETE ROWS"
)
_STAGING_TYPES: Final = ("int4", "bytea", "bytea", "int8", "text", "text")
_COPY: Final = "COPY perf_sdk_batch (p, k, i, t, b, d) FROM STDIN (FORMAT BINARY)"
#: The batch inserted in key order: first as if every row were new (a plain insert is a third cheaper than a
#: speculative one: one WAL record and one index descent fewer per row), and if a key exists, from a
#: savepoint again with ``ON CONFLICT DO NOTHING``.
_INSERT_NEW: Final = (
    "INSERT INTO records (ds, seq, k, id, ts, body, dims) "
    "SELECT %(ds)s, %(base)s + s.p, s.k, s.i, s.t, s.b, s.d FROM perf_sdk_batch AS s ORDER BY s.k"
)
_INSERT: Final = _INSERT_NEW + " ON CONFLICT (ds, k) DO NOTHING"
#: The batch's records that another transaction stored (``seq`` outside this batch's span), locked in key order.
_LOCK_EXISTING: Final = (
    "SELECT r.k, r.ts, r.body, r.dims FROM records AS r "
    "WHERE r.ds = %(ds)s AND r.k IN (SELECT k FROM perf_sdk_batch) "
    "AND NOT (r.seq >= %(base)s AND r.seq < %(top)s) ORDER BY r.k FOR UPDATE OF r"
)
_UPDATE: Final = (
    "UPDATE records AS r SET id = s.i, ts = s.t, body = s.b, dims = s.d FROM perf_sdk_batch AS s "
    "WHERE r.ds = %s AND r.k = s.k AND s.k = ANY(%s)"
)
_ROLLUPS: Final = {"rollup": "hour", "rollup_day": "day"}
_ROLLUP_ADD: Final = {
    table: f"INSERT INTO {table} AS r (ds, {time}, key, dims, n) "
    "SELECT %s, u.h, decode(u.k, 'hex'), u.d, u.n "
    "FROM json_to_recordset(%s::json) AS u(h bigint, k text, d text, n bigint) "
    f"ORDER BY u.h, u.k ON CONFLICT (ds, {time}, key) DO UPDATE SET n = r.n + excluded.n "
    f"RETURNING {time}, key, n"
    for table, time in _ROLLUPS.items()
}
_ROLLUP_DROP: Final = {
    table: f"DELETE FROM {table} WHERE ds = %s AND n <= 0 AND ({time}, key) IN "
    "(SELECT u.h, decode(u.k, 'hex') FROM json_to_recordset(%s::json) AS u(h bigint, k text))"
    for table, time in _ROLLUPS.items()
}
_TABLES: Final = ("records", "rollup", "rollup_day", "wide_fields")
#: The daily rollup as a place grouped queries read (``_query.ROLLUP`` is the hourly one).
ROLLUP_DAY: Final = _query.Source("rollup_day", "day", "dims", "n", 24 * _U, rollup=True)


def _by_day(deltas: Counter[tuple[int, str]]) -> Counter[tuple[int, str]]:
    days: Counter[tuple[int, str]] = Counter()
    for (hour, dims), n in deltas.items():
        days[(hour if hour == SENTINEL_HOUR else hour // 24, dims)] += n
    return days


class PostgresStore:
    """Every data set of one platform, in one PostgreSQL database (see the module docstring).

    ``url`` is a libpq URL (``postgresql://user@host:5432/db``; a password in it
    or in ``PGPASSWORD``/``~/.pgpass``). ``pool_size`` connections at most per
    process (Starlette's thread pool runs the requests). Migrations are applied
    on construction. Safe to share between threads and processes.
    """

    def __init__(self, url: str, *, pool_size: int = 8, connect_timeout: float = 10.0) -> None:
        if not is_postgres_url(url):
            raise ConfigurationError(f"--db: {redact(url)!r} is not a postgresql:// URL")
        self._url = url
        self.display = redact(url)
        self._timeout = connect_timeout
        self._closed = False
        self._ping_lock = threading.Lock()
        self._ping_conn: psycopg.Connection[Any] | None = None
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(connect_timeout))) as conn:
                migrate(conn)
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"--db: cannot use the PostgreSQL database {self.display}: {first_line(exc)}"
            ) from None
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"autocommit": True},
            timeout=60.0,
            configure=_configure,
            name="perf-sdk-platform",
            open=True,
        )

    def __repr__(self) -> str:
        return f"PostgresStore({self.display!r})"

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            raise RuntimeError("the store is closed")
        with self._pool.connection() as conn:
            yield conn

    def _retrying(self, work: Callable[[psycopg.Connection[Any]], _T], *, read_only: bool = False) -> _T:
        """Run ``work`` in one transaction, again if PostgreSQL chose it as a deadlock's victim or
        the connection was lost (a database restart: the pool then replaces its broken connections).

        Running a write again is safe even if its first commit went through
        unseen: the records are then stored already, unchanged, and nothing is
        rewritten or recounted. ``read_only`` reads one ``REPEATABLE READ`` snapshot.
        """
        lost = 0
        for attempt in range(_RETRIES):
            try:
                with self._conn() as conn, conn.transaction():
                    if read_only:
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    return work(conn)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise
            except psycopg.OperationalError as exc:
                if not _connection_lost(exc) or lost == 2 or self._closed:
                    raise
                lost += 1
                self._pool.check()
        raise AssertionError("unreachable")

    @contextmanager
    def _reader(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in a read-only snapshot (the SQLite store's name, for tests that look inside)."""
        with self._conn() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

    def close(self) -> None:
        """Close every connection; the store cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        self._pool.close()
        with self._ping_lock:
            if self._ping_conn is not None:
                self._ping_conn.close()
                self._ping_conn = None

    def ping(self) -> bool:
        """Whether the database answers ``SELECT 1``.

        On a connection of its own, outside the pool: a readiness check must
        not wait for a connection that long reads hold, and must notice a
        database that went away (the connection is then opened afresh).
        """
        if self._closed:
            return False
        with self._ping_lock:
            try:
                if self._ping_conn is None or self._ping_conn.closed:
                    self._ping_conn = psycopg.connect(
                        self._url, autocommit=True, connect_timeout=max(1, int(self._timeout))
                    )
                row = self._ping_conn.execute("SELECT 1").fetchone()
                return row == (1,)
            except psycopg.Error:
                if self._ping_conn is not None:
                    self._ping_conn.close()
                self._ping_conn = None
                return False

    # ------------------------------------------------------------------ data sets

    @staticmethod
    def _dataset(conn: psycopg.Connection[Any], group: str, type_: str, lock: str) -> int:
        """The data set's id under ``lock`` (``KEY SHARE`` or ``UPDATE``), creating it if needed."""
        select = f"SELECT id FROM datasets WHERE grp = %s AND typ = %s FOR {lock}"
        for _ in range(_RETRIES):
            row = conn.execute(select, (group, type_)).fetchone()
            if row is not None:
                return int(row[0])
            conn.execute("INSERT INTO datasets (grp, typ) VALUES (%s, %s) ON CONFLICT DO NOTHING", (group, type_))
        raise RuntimeError(f"the data set {group}/{type_} keeps being deleted while it is written")

    def create(self, group: str, type_: str) -> int:
        """The data set's id, creating it (empty) if needed."""
        return self._retrying(lambda conn: self._dataset(conn, group, type_, "KEY SHARE"))

    def dataset_id(self, group: str, type_: str) -> int | None:
        """The data set's id, ``None`` if it was never created."""
        row = self._retrying(
            lambda conn: conn.execute("SELECT id FROM datasets WHERE grp = %s AND typ = %s", (group, type_)).fetchone()
        )
        return None if row is None else int(row[0])

    # ------------------------------------------------------------------ writes

    def write(self, group: str, type_: str, records: Sequence[Prepared], *, now_us: int | None = None) -> None:
        """Store ``records`` (from :func:`~perf_sdk.platform._store.prepare`) in one transaction.

        A record sent twice in the batch is stored once, as its last version
        (SQLite's replace, in one statement). ``now_us`` becomes the data set's
        last write.
        """
        if len(records) >= _BATCH_SPAN:
            raise ValueError(f"a batch holds at most {_BATCH_SPAN - 1} records")
        batch = _staged(records)
        wide = sorted({name for r in records for name in r.wide})

        def work(conn: psycopg.Connection[Any]) -> None:
            ds = self._dataset(conn, group, type_, "KEY SHARE")
            if not records:
                return
            deltas = self._upsert(conn, ds, batch)
            if wide:
                conn.execute(
                    "INSERT INTO wide_fields (ds, field) SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
                    (ds, wide),
                )
            self._apply(conn, ds, "rollup", deltas)
            self._apply(conn, ds, "rollup_day", _by_day(deltas))
            if now_us is not None:
                conn.execute("UPDATE datasets SET updated = %s WHERE id = %s", (now_us, ds))

        self._retrying(work)

    @staticmethod
    def _upsert(conn: psycopg.Connection[Any], ds: int, batch: dict[bytes, _Row]) -> Counter[tuple[int, str]]:
        """Insert or replace the batch's rows; the rollup's changes (+1 new content, -1 replaced).

        The batch is copied into the staging table and inserted from it in one
        statement. When every row was new (the SDK's case: fresh ``_id``s) the
        changes are the batch's contents; otherwise the rows another
        transaction stored are locked and compared, as the module docstring says.
        """
        row = conn.execute("SELECT nextval('records_batch')").fetchone()
        assert row is not None
        base = int(row[0]) * _BATCH_SPAN
        span = {"ds": ds, "base": base, "top": base + _BATCH_SPAN}
        with conn.cursor() as cursor:
            with cursor.copy(_COPY) as copy:
                copy.set_types(_STAGING_TYPES)
                for staged in batch.values():
                    copy.write_row(staged)
            try:
                with conn.transaction():  # a savepoint
                    inserted = cursor.execute(_INSERT_NEW, span).rowcount
            except pg_errors.UniqueViolation:
                inserted = cursor.execute(_INSERT, span).rowcount
        deltas = Counter(_content(r.ts, r.body, r.dims) for r in batch.values())  # as if every row were new
        replaced: set[bytes] = set()
        for _ in range(_RETRIES):
            if inserted + len(replaced) == len(batch):
                return deltas
            changed: list[bytes] = []
            for key, ts, body, dims in conn.execute(_LOCK_EXISTING, span):
                k = bytes(key)
                if k in replaced:
                    continue  # locked and counted on an earlier round
                replaced.add(k)
                new = batch[k]
                deltas[_content(new.ts, new.body, new.dims)] -= 1  # not new after all
                if (ts, body, dims) == (new.ts, new.body, new.dims):
                    continue  # sent again unchanged (a retry): nothing to rewrite or recount
                deltas[_content(ts, body, dims)] -= 1
                deltas[_content(new.ts, new.body, new.dims)] += 1
                changed.append(k)
            if changed:
                conn.execute(_UPDATE, (ds, changed))
            if inserted + len(replaced) < len(batch):
                # Rows deleted between the insert and the lock are inserted afresh.
                inserted += conn.execute(_INSERT, span).rowcount
        raise RuntimeError("records keep being deleted while they are written")

    @staticmethod
    def _apply(conn: psycopg.Connection[Any], ds: int, table: str, deltas: Counter[tuple[int, str]]) -> None:
        """Add the deltas to the rollup in one statement (sorted: no deadlock), dropping cells at zero."""
        cells = sorted((hour, _rollup_key(dims), dims, n) for (hour, dims), n in deltas.items() if n)
        if not cells:
            return
        rows = [{"h": hour, "k": key.hex(), "d": dims, "n": n} for hour, key, dims, n in cells]
        result = conn.execute(_ROLLUP_ADD[table], (ds, json.dumps(rows, ensure_ascii=False))).fetchall()
        empty = [{"h": int(hour), "k": bytes(key).hex()} for hour, key, n in result if n <= 0]
        if empty:
            conn.execute(_ROLLUP_DROP[table], (ds, json.dumps(empty)))

    def empty(self, group: str, type_: str, *, now_us: int | None = None) -> None:
        """Delete every record of the data set (``PUT []``); the data set stays, changed at ``now_us``."""

        def work(conn: psycopg.Connection[Any]) -> None:
            ds = self._dataset(conn, group, type_, "UPDATE")
            for table in _TABLES:
                conn.execute(f"DELETE FROM {table} WHERE ds = %s", (ds,))
            if now_us is not None:
                conn.execute("UPDATE datasets SET updated = %s WHERE id = %s", (now_us, ds))

        self._retrying(work)

    def delete(self, group: str, type_: str) -> bool:
        """Remove the data set and everything in it; ``False`` if it did not exist."""

        def work(conn: psycopg.Connection[Any]) -> bool:
            row = conn.execute(
                "SELECT id FROM datasets WHERE grp = %s AND typ = %s FOR UPDATE", (group, type_)
            ).fetchone()
            if row is None:
                return False
            ds = int(row[0])
            for table in _TABLES:
                conn.execute(f"DELETE FROM {table} WHERE ds = %s", (ds,))
            conn.execute("DELETE FROM datasets WHERE id = %s", (ds,))
            return True

        return self._retrying(work)

    # ------------------------------------------------------------------ reads

    def last_updated(self) -> dict[tuple[str, str], int | None]:
        """Every data set and its last write (microseconds since the epoch, ``None`` if never)."""
        rows = self._retrying(lambda conn: conn.execute("SELECT grp, typ, updated FROM datasets").fetchall())
        return {(g, t): (None if u is None else int(u)) for g, t, u in rows}

    def records(self, group: str, type_: str) -> list[dict[str, Any]]:
        """Every record of the data set as the read API returns it (``[]`` if unknown); not bounded."""
        return self.read(group, type_, ReadQuery(), _UNBOUNDED) or []

    def count(self, group: str, type_: str) -> int:
        """How many records the data set holds (0 if unknown)."""
        sql = "SELECT count(*) FROM records AS r JOIN datasets AS d ON r.ds = d.id WHERE d.grp = %s AND d.typ = %s"
        row = self._retrying(lambda conn: conn.execute(sql, (group, type_)).fetchone())
        return int(row[0]) if row is not None else 0

    def read(
        self, group: str, type_: str, query: ReadQuery, limits: ReadLimits = DEFAULT_LIMITS
    ) -> list[dict[str, Any]] | None:
        """The ``data`` of a read query; ``None`` when the data set does not exist (as the SQLite store)."""
        return self._retrying(lambda conn: self._read(conn, group, type_, query, limits), read_only=True)

    def _read(
        self, conn: psycopg.Connection[Any], group: str, type_: str, query: ReadQuery, limits: ReadLimits
    ) -> list[dict[str, Any]] | None:
        row = conn.execute("SELECT id FROM datasets WHERE grp = %s AND typ = %s", (group, type_)).fetchone()
        if row is None:
            return None
        ds = int(row[0])
        if not query.is_grouped:
            return self._records(conn, ds, query, limits)
        source = self._source(query) if self._rollup_serves(conn, ds, query) else _query.ROWS
        periods = self._periods(conn, ds, query, source, limits)
        if periods == []:
            return _query.shape(query, [], periods, limits)
        bounds = None
        if periods is not None:
            bounds = [(_periods.to_us(lo) // source.unit, _periods.to_us(hi) // source.unit) for lo, hi in periods]
        sql, params = aggregate_sql(query, source, ds, bounds)
        with conn.cursor(name="perf_sdk_read") as cursor:
            cursor.itersize = 2000
            cursor.execute(sql, params)
            return _query.shape(query, _rows(cursor), periods, limits)

    @staticmethod
    def _records(conn: psycopg.Connection[Any], ds: int, query: ReadQuery, limits: ReadLimits) -> list[dict[str, Any]]:
        sql, params = records_sql(query, ds, cap=limits.records + 1)
        out: list[dict[str, Any]] = []
        size = 0
        hint = "add limit=, filter_by, or start_at and end_at"
        with conn.cursor(name="perf_sdk_records") as cursor:
            cursor.itersize = 2000
            cursor.execute(sql, params)
            for k, rid, ts, body in cursor:
                if len(out) >= limits.records:
                    raise _query.too_much("records", len(out) + 1, limits.records, hint)
                text = _id_text(bytes(k), None if rid is None else bytes(rid))
                size += len(body) + len(text) + 40
                if size > limits.bytes:
                    raise _query.too_much("bytes", size, limits.bytes, hint)
                out.append(_query.record_from_row(text, ts, body))
        return out

    @staticmethod
    def _source(query: ReadQuery) -> _query.Source:
        """Which rollup answers a query it serves: the daily one when periods and bounds are whole days."""
        if query.period == "hour":
            return _query.ROLLUP
        for bound in (query.start_at, query.end_at):
            if bound is not None and _periods.to_us(bound) % ROLLUP_DAY.unit:
                return _query.ROLLUP
        return ROLLUP_DAY

    def _rollup_serves(self, conn: psycopg.Connection[Any], ds: int, query: ReadQuery) -> bool:
        """Whether the rollup answers ``query`` exactly (the SQLite store's rule)."""
        fields = query.fields
        if "_id" in fields or (query.inclusive and query.end_at is not None):
            return False
        for bound in (query.start_at, query.end_at):
            if bound is not None and _periods.to_us(bound) % _U:
                return False
        if not fields:
            return True
        hit = conn.execute(
            "SELECT 1 FROM wide_fields WHERE ds = %s AND field = ANY(%s::text[]) LIMIT 1", (ds, sorted(fields))
        ).fetchone()
        return hit is None

    @staticmethod
    def _periods(
        conn: psycopg.Connection[Any], ds: int, query: ReadQuery, source: _query.Source, limits: ReadLimits
    ) -> list[tuple[datetime, datetime]] | None:
        """The answer's periods (:func:`~perf_sdk.platform._query.answer_periods`), the data's span read here."""
        return _query.answer_periods(
            query, source, limits, lambda: conn.execute(*span_sql(query, source, ds)).fetchone()
        )


def _configure(conn: psycopg.Connection[Any]) -> None:
    """A new pooled connection's staging table (see :data:`_STAGING`)."""
    conn.execute(_STAGING)


def _connection_lost(exc: psycopg.OperationalError) -> bool:
    """Whether the error says the connection is gone (not a cancelled or failed statement)."""
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def first_line(exc: BaseException) -> str:
    """The first line of a driver error (libpq's messages carry no password)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
