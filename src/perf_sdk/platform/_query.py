"""Read queries: from query-string parameters, to SQL, to backdrop's response shapes.

Three steps, each a plain function so it can be tested without a server:

* :func:`parse_query` checks the parameters as backdrop's ``read/validation.py``
  does (an unknown or malformed parameter is a :class:`QueryError`, answered 400)
  and resolves ``duration`` into ``start_at``/``end_at``.
* :func:`aggregate_sql` writes one SQL statement that aggregates a data set in
  SQLite, over either the row table or the hourly rollup (see ``_store.py``):
  Python never sees individual records of a grouped query, only one row per
  (period, group).
* :func:`shape` turns those rows into the response: groups, their ``values``
  with every period between the bounds (empty ones ``_count: 0`` and every
  collected value ``null``, as backdrop's ``fill_missing_periods``), sorting
  and ``limit``.

Choices of perf_sdk's own, where backdrop left room:

* ``filter_by=field:value`` matches a string equal to ``value``, a number equal
  to it when ``value`` reads as a number (``count:1`` matches ``1`` and ``1.0``),
  and ``true``/``false`` match booleans.
* ``collect=field:sum`` and ``:mean`` take the numbers only (booleans and strings
  are skipped); a group with none gives ``null``. ``:count`` counts the records
  that have the field. ``:set`` is the sorted distinct values. A bare
  ``collect=field`` is backdrop's default method, ``set``: the answer carries it
  under both ``field:set`` and ``field``.
* A record without a ``group_by`` field is left out of that grouped query; a
  record without ``_timestamp`` is left out of every query that has ``period``,
  ``start_at`` or ``end_at``.
* With ``period``, ``start_at`` and ``end_at`` must be period boundaries (backdrop
  checks midnight, Monday and first of month); without them the periods span
  those that hold matching data.
* A ``+`` in a time sent unencoded arrives as a space; it is read back as ``+``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from perf_sdk._protocol import KEY_RE, parse_timestamp
from perf_sdk.platform import _periods

__all__ = [
    "Collect",
    "QueryError",
    "ReadQuery",
    "Source",
    "aggregate_sql",
    "parse_query",
    "shape",
]

#: Most periods one query may span (a year of hours is 8,784).
MAX_PERIODS: Final = 100_000
_METHODS: Final = ("sum", "count", "mean", "set")
_SINGLE: Final = ("start_at", "end_at", "period", "duration", "sort_by", "limit")
_MULTI: Final = ("group_by", "filter_by", "collect")


class QueryError(ValueError):
    """A read query backdrop would refuse with 400; the message says why."""


@dataclass(frozen=True)
class Collect:
    """One ``collect=field[:method]``; ``bare`` when no method was named."""

    field: str
    method: str
    bare: bool = False

    @property
    def key(self) -> str:
        return f"{self.field}:{self.method}"


@dataclass(frozen=True)
class ReadQuery:
    """A validated read query; times are UTC and, with ``period``, on its boundaries."""

    start_at: datetime | None = None
    end_at: datetime | None = None
    period: str | None = None
    group_by: tuple[str, ...] = ()
    filter_by: tuple[tuple[str, str], ...] = ()
    collect: tuple[Collect, ...] = ()
    sort_by: tuple[str, bool] | None = None  # (key, descending)
    limit: int | None = None

    @property
    def is_grouped(self) -> bool:
        return bool(self.group_by) or self.period is not None

    @property
    def fields(self) -> frozenset[str]:
        """Every record field the query reads (for choosing the rollup)."""
        names = {*self.group_by, *(f for f, _ in self.filter_by), *(c.field for c in self.collect)}
        return frozenset(names)


def _time(name: str, text: str) -> datetime:
    dt = parse_timestamp(text.replace(" ", "+"))
    if dt is None:
        raise QueryError(f"{name} is not a valid datetime: use ISO 8601 with a zone, e.g. 2026-01-01T00:00:00Z")
    us = _periods.to_us(dt)
    if not _periods.MIN_US <= us <= _periods.MAX_US:
        raise QueryError(f"{name} is out of range")
    return _periods.from_us(us)


def _key(name: str, text: str) -> str:
    if not KEY_RE.match(text.lower()):
        raise QueryError(f"{name}: {text!r} is not a valid field name")
    return text


def _count_param(name: str, text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise QueryError(f"{name} must be a positive integer")
    return int(text)


def parse_query(items: Iterable[tuple[str, str]], *, now: datetime | None = None) -> ReadQuery:
    """Validate the query-string ``items`` (name, value pairs, repeats kept).

    ``now`` (default: the current time) anchors a ``duration`` given without
    ``start_at`` or ``end_at``: the ``duration`` whole periods before the current one.
    """
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {name: [] for name in _MULTI}
    for name, value in items:
        if name in _MULTI:
            multi[name].append(value)
        elif name in _SINGLE:
            if name in single:
                raise QueryError(f"{name} may be given only once")
            single[name] = value
        else:
            raise QueryError(f"An unrecognised parameter was provided: {name!r}")

    start_at = _time("start_at", single["start_at"]) if "start_at" in single else None
    end_at = _time("end_at", single["end_at"]) if "end_at" in single else None
    period = single.get("period")
    if period is not None and period not in _periods.PERIODS:
        raise QueryError(f"period must be one of {', '.join(_periods.PERIODS)}")
    duration = _count_param("duration", single["duration"]) if "duration" in single else None
    limit = _count_param("limit", single["limit"]) if "limit" in single else None

    if period is not None:
        for name, bound in (("start_at", start_at), ("end_at", end_at)):
            if bound is not None and not _periods.is_boundary(period, bound):
                raise QueryError(f"{name} must be the start of a {period} for period={period} queries")
    if duration is not None:
        if period is None:
            raise QueryError("duration can be used only with period")
        if start_at is not None and end_at is not None:
            raise QueryError("give at most two of start_at, end_at and duration")
        try:
            if start_at is not None:
                end_at = _periods.step(period, start_at, duration)
            else:
                anchor = end_at or _periods.floor(period, now or datetime.now(_periods.UTC))
                start_at, end_at = _periods.step(period, anchor, -duration), anchor
        except (OverflowError, ValueError):
            raise QueryError("duration reaches beyond the years 1 to 9999") from None
    if start_at is not None and end_at is not None and start_at > end_at:
        raise QueryError("start_at must not be after end_at")

    group_by: list[str] = []
    for value in multi["group_by"]:
        name = _key("group_by", value)
        if name.startswith("_"):
            raise QueryError("Cannot group by internal fields, internal fields start with an underscore")
        if name in group_by:
            raise QueryError(f"group_by {name!r} is given twice")
        group_by.append(name)

    filter_by: list[tuple[str, str]] = []
    for value in multi["filter_by"]:
        name, sep, wanted = value.partition(":")
        if not sep:
            raise QueryError("filter_by must be a field name and value separated by a colon (:), e.g. channel:digital")
        _key("filter_by", name)
        if name.startswith("_") and name != "_id":
            raise QueryError("Cannot filter by internal fields other than _id; use start_at and end_at for time")
        filter_by.append((name, wanted))

    collect: list[Collect] = []
    for value in multi["collect"]:
        name, sep, method = value.partition(":")
        if sep and method not in _METHODS:
            raise QueryError(f"Unknown collection method {method!r}: use one of {', '.join(_METHODS)}")
        _key("collect", name)
        if name.startswith("_"):
            raise QueryError("Cannot collect internal fields, internal fields start with an underscore")
        if name in group_by:
            raise QueryError("Cannot collect by a field that is used for group_by")
        item = Collect(name, method if sep else "set", bare=not sep)
        if all(c.key != item.key for c in collect):
            collect.append(item)
    if collect and not group_by and period is None:
        raise QueryError("collect can be used only with group_by or period")

    sort_by: tuple[str, bool] | None = None
    if "sort_by" in single:
        name, sep, direction = single["sort_by"].rpartition(":")
        if not sep or direction not in ("ascending", "descending"):
            raise QueryError(
                "sort_by must be a field name and a direction separated by a colon (:), "
                "e.g. count:sum:descending; directions: ascending, descending"
            )
        if period is not None and not group_by:
            raise QueryError(
                "Cannot sort for period queries without group_by. Period queries are always sorted by time."
            )
        if group_by or period is not None:
            keys = {*group_by, "_count", *(c.key for c in collect), *(c.field for c in collect if c.bare)}
            if period is not None:
                keys.add("_group_count")
            if name not in keys:
                raise QueryError(f"Cannot sort by {name!r}: sort by a group_by field, _count or a collected key")
        elif name not in ("_timestamp", "_id"):
            _key("sort_by", name)
        sort_by = (name, direction == "descending")

    return ReadQuery(
        start_at=start_at,
        end_at=end_at,
        period=period,
        group_by=tuple(group_by),
        filter_by=tuple(filter_by),
        collect=tuple(collect),
        sort_by=sort_by,
        limit=limit,
    )


# --------------------------------------------------------------------------- SQL


@dataclass(frozen=True)
class Source:
    """Where a grouped query reads: the row table or the hourly rollup.

    ``unit`` is the length of one step of ``time`` in microseconds; ``weight`` is
    how many records a row stands for.
    """

    table: str
    time: str
    data: str
    weight: str
    unit: int
    rollup: bool


ROWS: Final = Source("records", "ts", "body", "1", 1, rollup=False)
ROLLUP: Final = Source("rollup", "hour", "dims", "n", _periods.US_PER_HOUR, rollup=True)


def _path(name: str) -> str:
    # Names passed KEY_RE (letters, digits, underscore), so quoting is safe.
    assert KEY_RE.match(name.lower()), name
    return f"'$.{name}'"


def _jtype(col: str, name: str) -> str:
    return f"json_type({col}, {_path(name)})"


def _jvalue(col: str, name: str) -> str:
    """The field's value as JSON text (so ``true`` and ``1`` stay apart), NULL if absent.

    ``|| ''`` drops the JSON subtype ``json_quote`` sets, so that ``json_group_array``
    keeps every value as text alike.
    """
    t = _jtype(col, name)
    return (
        f"(CASE {t} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN NULL "
        f"ELSE json_quote(json_extract({col}, {_path(name)})) END || '')"
    )


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _filter_sql(col: str, name: str, wanted: str, params: list[Any]) -> str:
    t, path = _jtype(col, name), _path(name)
    alternatives = [f"({t} = 'text' AND json_extract({col}, {path}) = ?)"]
    params.append(wanted)
    number = _number(wanted)
    if number is not None:
        alternatives.append(f"({t} IN ('integer', 'real') AND json_extract({col}, {path}) = ?)")
        params.append(number)
    if wanted in ("true", "false"):
        alternatives.append(f"{t} = '{wanted}'")
    return "(" + " OR ".join(alternatives) + ")"


def _sum_sql(name: str, kind: str, int_sum: str) -> str:
    value = f"json_extract(d, {_path(name)})"
    if kind == "integer":
        return f"{int_sum}(CASE WHEN {_jtype('d', name)} = 'integer' THEN {value} * n END)"
    return f"SUM(CASE WHEN {_jtype('d', name)} = 'real' THEN {value} * n END)"


def aggregate_sql(
    query: ReadQuery,
    source: Source,
    dataset: int,
    periods: Sequence[tuple[int, int]] | None,
    *,
    exact: bool = True,
) -> tuple[str, list[Any]]:
    """One SQL statement aggregating ``dataset`` for a grouped ``query``.

    ``periods`` are ``[lo, hi)`` bounds in ``source`` units, or ``None`` without
    ``period``. The result has one row per (period index, group): the index,
    each ``group_by`` value as JSON text, the record count, then per collect the
    raw parts :func:`shape` finishes (integer sum, real sum, count of numbers,
    count of values, JSON array of distinct values as JSON texts). With
    ``exact=False`` integer sums use ``TOTAL`` (a float) so that sums past 64
    bits do not fail.

    The inner query groups by the stored JSON text first, so the JSON functions
    run once per distinct (period, content), not per record: with the rollup a
    year of hourly buckets folds into a few dozen rows before any JSON is parsed.
    """
    params: list[Any] = []
    inner_where = [f"r.ds = {int(dataset)}"]
    if periods is not None:
        ctes = (
            "WITH p(idx, lo, hi) AS (SELECT CAST(key AS INTEGER), json_extract(value, '$[0]'), "
            "json_extract(value, '$[1]') FROM json_each(?)) "
        )
        params.append(json.dumps(periods))
        frm = f"p CROSS JOIN {source.table} AS r"
        inner_where.append(f"r.{source.time} >= p.lo AND r.{source.time} < p.hi")
        idx = "p.idx"
    else:
        ctes, frm, idx = "", f"{source.table} AS r", "0"
        for bound, op in ((query.start_at, ">="), (query.end_at, "<")):
            if bound is not None:
                inner_where.append(f"r.{source.time} {op} ?")
                params.append(_periods.to_us(bound) // source.unit)
        if source.rollup and (query.start_at is not None or query.end_at is not None):
            inner_where.append(f"r.{source.time} > {SENTINEL_HOUR}")
    for name, wanted in query.filter_by:
        if name == "_id":  # only on the row table: the rollup has no ids
            inner_where.append("r.id = ?")
            params.append(wanted)
    if source.rollup:
        inner = (
            f"SELECT {idx} AS idx, r.{source.data} AS d, SUM(r.{source.weight}) AS n FROM {frm} "
            f"WHERE {' AND '.join(inner_where)} GROUP BY 1, 2"
        )
    else:
        inner = f"SELECT {idx} AS idx, r.{source.data} AS d, 1 AS n FROM {frm} WHERE {' AND '.join(inner_where)}"

    outer_where: list[str] = []
    for name, wanted in query.filter_by:
        if name != "_id":
            outer_where.append(_filter_sql("d", name, wanted, params))
    cols = ["idx"]
    for name in query.group_by:
        cols.append(_jvalue("d", name))
        outer_where.append(f"{_jtype('d', name)} IS NOT NULL")
    cols.append("SUM(n)")
    int_sum = "SUM" if exact else "TOTAL"
    for name in dict.fromkeys(c.field for c in query.collect):
        jv = _jvalue("d", name)
        cols += [
            _sum_sql(name, "integer", int_sum),
            _sum_sql(name, "real", int_sum),
            f"SUM(CASE WHEN {_jtype('d', name)} IN ('integer', 'real') THEN n END)",
            f"SUM(CASE WHEN {_jtype('d', name)} IS NOT NULL THEN n END)",
            f"json_group_array(DISTINCT {jv}) FILTER (WHERE {jv} IS NOT NULL)",
        ]
    where = f" WHERE {' AND '.join(outer_where)}" if outer_where else ""
    group = ", ".join(str(i) for i in range(1, len(query.group_by) + 2))
    sql = f"{ctes}SELECT {', '.join(cols)} FROM ({inner}){where} GROUP BY {group}"
    return sql, params


def span_sql(query: ReadQuery, source: Source, dataset: int) -> tuple[str, list[Any]]:
    """First and last stored time (``source`` units) of the records ``query`` would read."""
    params: list[Any] = []
    where = [f"ds = {int(dataset)}", f"{source.time} IS NOT NULL"]
    if source.rollup:
        where.append(f"{source.time} > {SENTINEL_HOUR}")
    for bound, op in ((query.start_at, ">="), (query.end_at, "<")):
        if bound is not None:
            where.append(f"{source.time} {op} ?")
            params.append(_periods.to_us(bound) // source.unit)
    for name, wanted in query.filter_by:
        if name == "_id":
            where.append("id = ?")
            params.append(wanted)
        else:
            where.append(_filter_sql(source.data, name, wanted, params))
    for name in query.group_by:
        where.append(f"{_jtype(source.data, name)} IS NOT NULL")
    sql = f"SELECT MIN({source.time}), MAX({source.time}) FROM {source.table} WHERE {' AND '.join(where)}"
    return sql, params


#: The rollup's hour for records without ``_timestamp`` (before any real hour).
SENTINEL_HOUR: Final = -(2**40)


def records_sql(query: ReadQuery, dataset: int) -> tuple[str, list[Any]]:
    """The plain (ungrouped) query: stored rows ``(id, ts, body)`` in answer order."""
    params: list[Any] = []
    where = [f"ds = {int(dataset)}"]
    for bound, op in ((query.start_at, ">="), (query.end_at, "<")):
        if bound is not None:
            where.append(f"ts {op} ?")
            params.append(_periods.to_us(bound))
    for name, wanted in query.filter_by:
        if name == "_id":
            where.append("id = ?")
            params.append(wanted)
        else:
            where.append(_filter_sql("body", name, wanted, params))
    order = "ts, rowid"
    if query.sort_by is not None:
        name, descending = query.sort_by
        direction = "DESC" if descending else "ASC"
        if name == "_timestamp":
            order = f"ts {direction}, rowid"
        elif name == "_id":
            order = f"id {direction}"
        else:
            order = f"json_extract(body, {_path(name)}) {direction}, ts, rowid"
    sql = f"SELECT id, ts, body FROM records WHERE {' AND '.join(where)} ORDER BY {order}"
    if query.limit is not None:
        sql += f" LIMIT {int(query.limit)}"
    return sql, params


def record_from_row(rid: str, ts: int | None, body: str) -> dict[str, Any]:
    """A stored row as the read API returns it: ``_id``, ``_timestamp`` (UTC), fields."""
    record: dict[str, Any] = {"_id": rid}
    if ts is not None:
        record["_timestamp"] = _periods.iso(ts)
    record.update(json.loads(body))
    return record


# --------------------------------------------------------------------------- shapes


@dataclass
class _Acc:
    """Raw aggregates of one collected field, summable across periods."""

    int_sum: int | float | None = None
    real_sum: float | None = None
    numbers: int = 0
    values: int = 0
    distinct: set[str] = field(default_factory=set)

    def add(self, int_sum: Any, real_sum: Any, numbers: Any, values: Any, distinct: Any) -> None:
        if int_sum is not None:
            self.int_sum = int_sum if self.int_sum is None else self.int_sum + int_sum
        if real_sum is not None:
            self.real_sum = real_sum if self.real_sum is None else self.real_sum + real_sum
        self.numbers += numbers or 0
        self.values += values or 0
        if distinct:
            self.distinct.update(json.loads(distinct))

    def merge(self, other: _Acc) -> None:
        self.add(other.int_sum, other.real_sum, other.numbers, other.values, None)
        self.distinct |= other.distinct

    def result(self, method: str) -> Any:
        if method == "count":
            return self.values
        if method == "set":
            return sorted((json.loads(v) for v in self.distinct), key=_order)
        if not self.numbers:
            return None
        total: int | float
        if self.real_sum is None and isinstance(self.int_sum, int):
            total = self.int_sum
        else:
            total = float(self.int_sum or 0) + (self.real_sum or 0.0)
        return total if method == "sum" else total / self.numbers


@dataclass
class _Cell:
    """One (group, period) of the answer, or a group's total."""

    count: int = 0
    accs: dict[str, _Acc] = field(default_factory=dict)

    def merge(self, other: _Cell) -> None:
        self.count += other.count
        for name, acc in other.accs.items():
            self.accs.setdefault(name, _Acc()).merge(acc)


def _order(value: Any) -> tuple[int, Any]:
    """Sort key across JSON types: numbers, then strings, then booleans (MongoDB's order)."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (3, value)
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, str(value))


def _collected(query: ReadQuery, cell: _Cell | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in query.collect:
        value = None if cell is None else cell.accs.get(c.field, _Acc()).result(c.method)
        out[c.key] = value
        if c.bare:
            out[c.field] = value
    return out


def _sorted(query: ReadQuery, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if query.sort_by is not None:
        name, descending = query.sort_by
        items.sort(key=lambda item: _order(item.get(name)), reverse=descending)
    if query.limit is not None:
        items = items[: query.limit]
    return items


def shape(
    query: ReadQuery,
    rows: Iterable[Sequence[Any]],
    periods: Sequence[tuple[datetime, datetime]] | None,
) -> list[dict[str, Any]]:
    """The ``data`` list of a grouped query from :func:`aggregate_sql`'s rows."""
    fields = list(dict.fromkeys(c.field for c in query.collect))
    ngroups = len(query.group_by)
    cells: dict[tuple[str, ...], dict[int, _Cell]] = {}
    for row in rows:
        key = tuple(row[1 : 1 + ngroups])
        cell = _Cell(count=row[1 + ngroups])
        at = 2 + ngroups
        for name in fields:
            acc = _Acc()
            acc.add(*row[at : at + 5])
            cell.accs[name] = acc
            at += 5
        cells.setdefault(key, {})[row[0]] = cell

    def entry(lo: datetime, hi: datetime, cell: _Cell | None) -> dict[str, Any]:
        return {
            "_start_at": lo.isoformat(),
            "_end_at": hi.isoformat(),
            "_count": 0 if cell is None else cell.count,
            **_collected(query, cell),
        }

    if not query.group_by:
        assert periods is not None
        by_period = cells.get((), {})
        items = [entry(lo, hi, by_period.get(i)) for i, (lo, hi) in enumerate(periods)]
        return items[: query.limit] if query.limit is not None else items

    data: list[dict[str, Any]] = []
    for key in sorted(cells, key=lambda k: [_order(json.loads(v)) for v in k]):
        by_period = cells[key]
        total = _Cell()
        for cell in by_period.values():
            total.merge(cell)
        item: dict[str, Any] = {name: json.loads(v) for name, v in zip(query.group_by, key, strict=True)}
        item["_count"] = total.count
        if periods is not None:
            item["_group_count"] = len(by_period)
        item.update(_collected(query, total))
        if periods is not None:
            item["values"] = [entry(lo, hi, by_period.get(i)) for i, (lo, hi) in enumerate(periods)]
        data.append(item)
    return _sorted(query, data)
