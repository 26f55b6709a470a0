"""Read queries: from query-string parameters, to SQL, to backdrop's response shapes.

Four steps, each a plain function so it can be tested without a server:

* :func:`parse_query` checks the parameters as backdrop's ``read/validation.py``
  does (an unknown or malformed parameter is a :class:`QueryError`, answered 400,
  with backdrop's message where it has one), by the data set's
  ``raw_queries_allowed``, and resolves ``duration`` into ``start_at``/``end_at``.
* :func:`aggregate_sql` writes one SQL statement that aggregates a data set in
  SQLite, over either the row table or the hourly rollup (see ``_store.py``):
  Python never sees individual records of a grouped query, only one row per
  (period, group).
* :func:`shape` turns those rows into the response: groups, their ``values``
  with every period between the bounds (empty ones ``_count: 0`` and every
  collected value ``null``, as backdrop's ``fill_missing_periods``), or with
  ``flatten=true`` one item per period and combination of group values;
  sorting and ``limit``. It refuses, as the rows arrive, an answer past the
  :class:`ReadLimits` (a 400 naming the limit and how to narrow the query).
* :func:`shift_to_data` moves a relative query (``duration``) to where the data
  is, as backdrop does: to start at the first period with data (from
  ``start_at``) or end at the last (back from ``end_at`` or now), when the range
  holds any; for groups, by the smallest move of any group.

Choices of perf_sdk's own, where backdrop left room:

* ``filter_by=field:value`` matches a string equal to ``value``, a number equal
  to it when ``value`` reads as a number (``count:1`` matches ``1`` and ``1.0``),
  and ``true``/``false`` match booleans. ``filter_by_prefix`` matches text that
  starts with the value, compared literally (backdrop escapes its regex).
* ``collect=field:sum`` and ``:mean`` take the numbers (booleans and nulls are
  skipped); a field holding text is a 400, as backdrop's "invalid collect
  function"; a group with no numbers gives ``null``. ``:count`` counts the
  records whose field is not null. ``:set`` is the sorted distinct values. A
  bare ``collect=field`` is backdrop's default method, ``set``: the answer
  carries it under both ``field:set`` and ``field``.
* A record whose ``group_by`` field is absent or null is left out of that
  grouped query; a record without ``_timestamp`` is left out of every query
  that has ``period``, ``start_at`` or ``end_at``.
* On a data set without raw queries, ``start_at`` and ``end_at`` fall where
  backdrop wants them (7 days at least, midnight, a Monday for weeks, the
  first of a month); with raw queries allowed they may fall anywhere: the
  periods widen to cover them and the records are cut at them. Without bounds,
  a period query spans the periods that hold matching data (backdrop asks for
  bounds or ``duration``).
* A ``+`` in a time sent unencoded arrives as a space; it is read back as ``+``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from perf_sdk._protocol import key_ok, parse_timestamp
from perf_sdk.platform import _periods

__all__ = [
    "DEFAULT_LIMITS",
    "Collect",
    "QueryError",
    "ReadLimits",
    "ReadQuery",
    "Source",
    "aggregate_sql",
    "amount_to_shift",
    "parse_query",
    "shape",
    "shift_to_data",
]

_METHODS: Final = ("sum", "count", "mean", "set")
_SINGLE: Final = ("start_at", "end_at", "period", "duration", "sort_by", "limit", "flatten", "inclusive", "format")
_MULTI: Final = ("group_by", "filter_by", "filter_by_prefix", "collect")
#: Most times one repeatable parameter may be given: each adds SQL, and thousands of
#: them would exhaust SQLite's expression limits (a 500) long before helping anyone.
MAX_REPEATS: Final = {"group_by": 8, "filter_by": 64, "filter_by_prefix": 64, "collect": 64}
#: Largest ``limit`` and ``duration`` (beyond it they mean nothing but a wish to overflow).
MAX_COUNT: Final = 1_000_000_000
FORMATS: Final = ("json", "csv")


class QueryError(ValueError):
    """A read query backdrop would refuse with 400; the message says why."""


@dataclass(frozen=True)
class ReadLimits:
    """How much work one read may ask for; past any of them the read is a 400 saying which.

    ``periods``: periods one query spans (a year of hours is 8,784). ``cells``:
    groups times periods in the answer. ``records``: records a plain query lists.
    ``bytes``: the answer's size, counted as it is built (stored text read),
    so that a query is refused before it costs the memory it asks for.
    ``columns``: columns of a ``format=csv`` answer, one per distinct key of
    its records (records of many different keys would otherwise make a table
    of records times keys, mostly empty cells).
    """

    periods: int = 10_000
    cells: int = 200_000
    records: int = 100_000
    bytes: int = 32 * 1024 * 1024
    columns: int = 1_000


DEFAULT_LIMITS: Final = ReadLimits()
#: Kept for callers of the previous name.
MAX_PERIODS: Final = DEFAULT_LIMITS.periods


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
    """A validated read query; times are UTC.

    ``delta`` is the signed ``duration`` of a relative query (positive from
    ``start_at``, negative back from ``end_at`` or now), which backdrop shifts
    to where the data is (:func:`shift_to_data`). ``raw_bounds``: the data set
    allows raw queries, so ``start_at``/``end_at`` need not fall on period
    boundaries (the periods then cover them, the records are cut at them).
    """

    start_at: datetime | None = None
    end_at: datetime | None = None
    period: str | None = None
    group_by: tuple[str, ...] = ()
    filter_by: tuple[tuple[str, str], ...] = ()
    filter_by_prefix: tuple[tuple[str, str], ...] = ()
    collect: tuple[Collect, ...] = ()
    sort_by: tuple[str, bool] | None = None  # (key, descending)
    limit: int | None = None
    flatten: bool = False
    inclusive: bool = False
    delta: int | None = None
    format: str = "json"

    @property
    def is_grouped(self) -> bool:
        return bool(self.group_by) or self.period is not None

    @property
    def fields(self) -> frozenset[str]:
        """Every record field the query reads (for choosing the rollup)."""
        names = {
            *self.group_by,
            *(f for f, _ in self.filter_by),
            *(f for f, _ in self.filter_by_prefix),
            *(c.field for c in self.collect),
        }
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
    if not key_ok(text):
        raise QueryError(f"{name}: {text!r} is not a valid field name (ASCII letters, digits and _)")
    return text


def _count_param(name: str, text: str) -> int:
    if not text.isascii() or not text.isdigit() or not text.strip("0"):
        raise QueryError(f"{name} must be a positive integer")
    digits = text.lstrip("0")
    if len(digits) > len(str(MAX_COUNT)) or int(digits) > MAX_COUNT:  # length first: no 5,000-digit int()
        shown = digits if len(digits) <= 24 else digits[:20] + "..."
        raise QueryError(f"{name} is {shown}; the most is {MAX_COUNT}: ask for less")
    return int(digits)


def _boolean(name: str, text: str | None) -> bool:
    if text is None:
        return False
    if text not in ("true", "false"):
        raise QueryError(f"{name} must be either 'true' or 'false'")
    return text == "true"


def _collect_params(items: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {name: [] for name in _MULTI}
    for name, value in items:
        if name in _MULTI:
            multi[name].append(value)
            if len(multi[name]) > MAX_REPEATS[name]:
                raise QueryError(
                    f"{name} may be given at most {MAX_REPEATS[name]} times: narrow the query to fewer fields"
                )
        elif name in _SINGLE:
            if name in single:
                raise QueryError(f"{name} may be given only once")
            single[name] = value
        else:
            raise QueryError(f"An unrecognised parameter was provided: {name[:100]!r}")
    return single, multi


def _check_relative(single: dict[str, str], period: str | None, *, grouped: bool, raw: bool) -> None:
    """Backdrop's rules on ``start_at``, ``end_at``, ``duration`` and ``limit`` together."""
    has = {name for name in ("start_at", "end_at", "duration") if single.get(name)}
    if has == {"start_at", "end_at", "duration"}:
        raise QueryError(
            "Absolute and relative time cannot be requested at the same time - either ask for "
            "'start_at' and 'end_at', or ask for 'start_at'/'end_at' with 'duration'"
        )
    if not raw:
        if has == {"start_at"}:
            raise QueryError("Use of 'start_at' requires 'end_at' or 'duration'")
        if has == {"end_at"}:
            raise QueryError("Use of 'end_at' requires 'start_at' or 'duration'")
    if "duration" in has and period is None:
        raise QueryError(
            "If 'duration' is requested (for relative time), 'period' is required - "
            "please add a period (like 'day', 'month' etc)"
        )
    if period is not None and "limit" in single and not grouped:
        raise QueryError("A period query can only be limited if it is grouped - please add 'group_by'")


def _check_bounds(period: str | None, start_at: datetime | None, end_at: datetime | None, *, raw: bool) -> None:
    """On data sets without raw queries: backdrop's checks on where bounds fall."""
    if raw:
        return
    if start_at is not None and end_at is not None and period != "hour" and end_at - start_at < timedelta(days=7):
        raise QueryError("The minimum time span for a query is 7 days")
    for name, bound in (("start_at", start_at), ("end_at", end_at)):
        if bound is None:
            continue
        if period == "hour":
            if not _periods.is_boundary("hour", bound):
                raise QueryError(f"{name} must be the start of an hour for period=hour queries")
            continue
        if not _periods.is_boundary("day", bound):
            raise QueryError(f"{name} must be midnight")
        if period is not None and period != "day" and not _periods.is_boundary(period, bound):
            first = {"week": "a monday", "month": "the first of the month"}.get(period, f"the start of a {period}")
            raise QueryError(f"{name} must be {first} for period={period} queries")


def _resolve_duration(
    period: str, start_at: datetime | None, end_at: datetime | None, duration: int, now: datetime | None
) -> tuple[datetime, datetime, int]:
    """``start_at`` and ``end_at`` of a relative query, and its signed delta (backdrop's ``Query.create``)."""
    try:
        if start_at is not None:
            lo = _periods.floor(period, start_at)
            return lo, _periods.step(period, lo, duration), duration
        anchor = _periods.floor(period, end_at or now or datetime.now(_periods.UTC))
        return _periods.step(period, anchor, -duration), anchor, -duration
    except (OverflowError, ValueError):
        raise QueryError("duration reaches beyond the years 1 to 9999") from None


def _group_by(values: list[str]) -> list[str]:
    group_by: list[str] = []
    for value in values:
        name = _key("group_by", value)
        if name.startswith("_"):
            raise QueryError("Cannot group by internal fields, internal fields start with an underscore")
        if name in group_by:
            raise QueryError(f"group_by {name!r} is given twice")
        group_by.append(name)
    return group_by


def _filters(name: str, values: list[str]) -> list[tuple[str, str]]:
    filters: list[tuple[str, str]] = []
    for value in values:
        if value.startswith("$"):
            raise QueryError(f"{name} must not start with a $")
        field_name, sep, wanted = value.partition(":")
        if not sep:
            raise QueryError(f"{name} must be a field name and value separated by a colon (:), e.g. channel:digital")
        _key(name, field_name)
        if field_name.startswith("_") and field_name != "_id":
            raise QueryError("Cannot filter by internal fields other than _id; use start_at and end_at for time")
        filters.append((field_name, wanted))
    return filters


def _collects(values: list[str], group_by: list[str]) -> list[Collect]:
    collect: list[Collect] = []
    for value in values:
        name, sep, method = value.partition(":")
        if sep and method not in _METHODS:
            raise QueryError(f"Unknown collection method {method[:40]!r}: use one of {', '.join(_METHODS)}")
        _key("collect", name)
        if name.startswith("_"):
            raise QueryError("Cannot collect internal fields, internal fields start with an underscore")
        if name in group_by:
            raise QueryError("Cannot collect by a field that is used for group_by")
        item = Collect(name, method if sep else "set", bare=not sep)
        if all(c.key != item.key for c in collect):
            collect.append(item)
    return collect


def _sort_by(text: str, period: str | None, group_by: list[str], collect: list[Collect]) -> tuple[str, bool]:
    name, sep, direction = text.rpartition(":")
    if not sep or direction not in ("ascending", "descending"):
        raise QueryError(
            "sort_by must be a field name and a direction separated by a colon (:), "
            "e.g. count:sum:descending; directions: ascending, descending"
        )
    if period is not None and not group_by:
        raise QueryError("Cannot sort for period queries without group_by. Period queries are always sorted by time.")
    if group_by or period is not None:
        keys = {*group_by, "_count", *(c.key for c in collect), *(c.field for c in collect if c.bare)}
        if period is not None:
            keys.add("_group_count")
        if name not in keys:
            raise QueryError(f"Cannot sort by {name[:100]!r}: sort by a group_by field, _count or a collected key")
    elif name not in ("_timestamp", "_id"):
        _key("sort_by", name)
    return name, direction == "descending"


def parse_query(
    items: Iterable[tuple[str, str]], *, now: datetime | None = None, raw_queries_allowed: bool = True
) -> ReadQuery:
    """Validate the query-string ``items`` (name, value pairs, repeats kept) as backdrop does.

    ``now`` (default: the current time) anchors a ``duration`` given without
    ``start_at`` or ``end_at``: the ``duration`` whole periods before the current one.
    ``raw_queries_allowed`` is the data set's setting: without it a query must
    group (``group_by`` or ``period``) and its bounds fall where backdrop wants
    them (see :func:`_check_bounds`).
    """
    single, multi = _collect_params(items)
    raw = raw_queries_allowed
    period = single.get("period")
    if period is not None and period not in _periods.PERIODS:
        raise QueryError(f"'period' must be one of {', '.join(_periods.PERIODS)}")
    if not raw and period is None and not multi["group_by"]:
        raise QueryError("querying for raw data is not allowed: add group_by or period")
    _check_relative(single, period, grouped=bool(multi["group_by"]), raw=raw)

    start_at = _time("start_at", single["start_at"]) if "start_at" in single else None
    end_at = _time("end_at", single["end_at"]) if "end_at" in single else None
    duration = _count_param("duration", single["duration"]) if "duration" in single else None
    limit = _count_param("limit", single["limit"]) if "limit" in single else None
    flatten = _boolean("flatten", single.get("flatten"))
    inclusive = _boolean("inclusive", single.get("inclusive"))
    if "inclusive" in single and start_at is None and end_at is None:
        raise QueryError("inclusive can be used only with either ['start_at', 'end_at']")
    fmt = single.get("format", "json")
    if fmt not in FORMATS:
        raise QueryError(f"format must be one of {', '.join(FORMATS)}")
    _check_bounds(period, start_at, end_at, raw=raw)

    delta: int | None = None
    if duration is not None:
        assert period is not None  # _check_relative
        start_at, end_at, delta = _resolve_duration(period, start_at, end_at, duration, now)
    if start_at is not None and end_at is not None and start_at > end_at:
        raise QueryError("start_at must not be after end_at")

    if multi["filter_by"] and multi["filter_by_prefix"]:
        raise QueryError("Cannot use both filter_by and filter_by_prefix in the same query")
    group_by = _group_by(multi["group_by"])
    collect = _collects(multi["collect"], group_by)
    if collect and not group_by and period is None:
        raise QueryError("collect can be used only with group_by or period")
    sort_by = _sort_by(single["sort_by"], period, group_by, collect) if "sort_by" in single else None

    return ReadQuery(
        start_at=start_at,
        end_at=end_at,
        period=period,
        group_by=tuple(group_by),
        filter_by=tuple(_filters("filter_by", multi["filter_by"])),
        filter_by_prefix=tuple(_filters("filter_by_prefix", multi["filter_by_prefix"])),
        collect=tuple(collect),
        sort_by=sort_by,
        limit=limit,
        flatten=flatten,
        inclusive=inclusive,
        delta=delta,
        format=fmt,
    )


def shifted(query: ReadQuery, periods: int) -> ReadQuery:
    """``query`` moved by ``periods`` whole periods (backdrop's ``get_shifted_query``)."""
    assert query.period is not None and query.start_at is not None and query.end_at is not None
    try:
        start = _periods.step(query.period, query.start_at, periods)
        end = _periods.step(query.period, query.end_at, periods)
    except (OverflowError, ValueError):
        return query
    return replace(query, start_at=start, end_at=end)


def _first_nonempty(values: Sequence[Mapping[str, Any]], backwards: bool) -> int:
    indexes = range(len(values) - 1, -1, -1) if backwards else range(len(values))
    for n, i in enumerate(indexes):
        if values[i].get("_count"):
            return -n if backwards else n
    return 0


def amount_to_shift(query: ReadQuery, data: Sequence[Mapping[str, Any]]) -> int:
    """How many periods backdrop moves a relative query so that it starts (or ends) where data is.

    Only period queries, not flattened: for each group, the first period with
    data counted from the start (``duration`` from ``start_at``) or from the end
    (back from ``end_at`` or now); across groups, the smallest move.
    """
    if query.delta is None or query.period is None or query.flatten:
        return 0
    backwards = query.delta < 0
    if not query.group_by:
        return _first_nonempty(data, backwards)
    moves = [_first_nonempty(item.get("values") or [], backwards) for item in data]
    return min(moves, key=abs) if moves else 0


def shift_to_data(
    run: Callable[[ReadQuery], list[dict[str, Any]] | None], query: ReadQuery
) -> list[dict[str, Any]] | None:
    """Run ``query``, moved as backdrop moves a relative query to where data begins (or ends)."""
    data = run(query)
    for _ in range(3):  # once is enough for backdrop's data; a bound keeps a pathological case finite
        if data is None:
            return None
        move = amount_to_shift(query, data)
        if move == 0:
            break
        moved = shifted(query, move)
        if moved == query:
            break
        query = moved
        data = run(query)
    return data


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
    # Names passed key_ok (ASCII letters, digits, underscore), so quoting is safe.
    assert key_ok(name), name
    return f"'$.{name}'"


def _jtype(col: str, name: str) -> str:
    return f"json_type({col}, {_path(name)})"


def _jvalue(col: str, name: str) -> str:
    """The field's value as JSON text (so ``true`` and ``1`` stay apart), NULL if absent.

    ``|| ''`` drops the JSON subtype ``json_quote`` sets, so that ``json_group_array``
    keeps every value as text alike.
    """
    t = _jtype(col, name)
    return (  # an absent field's type is NULL, and json_quote(NULL) would be the text 'null'
        f"(CASE coalesce({t}, 'null') WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN NULL "
        f"ELSE json_quote(json_extract({col}, {_path(name)})) END || '')"
    )


def _number(text: str) -> int | float | None:
    """``text`` as the number a stored value would equal, if it is one.

    An integer past 64 bits is compared as a double, as SQLite's JSON keeps such
    a value (and a Python int that size cannot be bound to a statement).
    """
    try:
        whole = int(text)
    except ValueError:
        pass
    else:
        return whole if -(2**63) <= whole < 2**63 else float(whole)
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


def _prefix_sql(col: str, name: str, prefix: str, params: list[Any]) -> str:
    """Text starting with ``prefix``, compared literally (no pattern: backdrop escapes its regex)."""
    t, path = _jtype(col, name), _path(name)
    params.extend((len(prefix), prefix))
    return f"({t} = 'text' AND substr(json_extract({col}, {path}), 1, ?) = ?)"


def _field_filters(query: ReadQuery, col: str, params: list[Any]) -> list[str]:
    """SQL conditions for ``filter_by`` (except ``_id``) and ``filter_by_prefix``."""
    where = [_filter_sql(col, name, wanted, params) for name, wanted in query.filter_by if name != "_id"]
    where += [_prefix_sql(col, name, prefix, params) for name, prefix in query.filter_by_prefix]
    return where


def _present(col: str, name: str) -> str:
    """The field is there and not null (a null counts as absent for ``group_by``)."""
    return f"coalesce({_jtype(col, name)}, 'null') != 'null'"


def _time_bounds(query: ReadQuery, col: str, unit: int, params: list[Any]) -> list[str]:
    """``start_at`` (inclusive) and ``end_at`` (exclusive, or inclusive with ``inclusive=true``)."""
    where: list[str] = []
    if query.start_at is not None:
        where.append(f"{col} >= ?")
        params.append(_periods.to_us(query.start_at) // unit)
    if query.end_at is not None:
        where.append(f"{col} {'<=' if query.inclusive else '<'} ?")
        params.append(_periods.to_us(query.end_at) // unit)
    return where


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
    count of values, count of texts, JSON array of distinct values as JSON texts). With
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
    # Bounds inside the periods' span when they are not on its edges (raw-query data sets).
    inner_where += _time_bounds(query, f"r.{source.time}", source.unit, params)
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

    outer_where = _field_filters(query, "d", params)
    cols = ["idx"]
    for name in query.group_by:
        cols.append(_jvalue("d", name))
        outer_where.append(_present("d", name))
    cols.append("SUM(n)")
    int_sum = "SUM" if exact else "TOTAL"
    for name in dict.fromkeys(c.field for c in query.collect):
        jv = _jvalue("d", name)
        cols += [
            _sum_sql(name, "integer", int_sum),
            _sum_sql(name, "real", int_sum),
            f"SUM(CASE WHEN {_jtype('d', name)} IN ('integer', 'real') THEN n END)",
            f"SUM(CASE WHEN {_jtype('d', name)} NOT IN ('null') THEN n END)",
            f"SUM(CASE WHEN {_jtype('d', name)} = 'text' THEN n END)",
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
    where += _time_bounds(query, source.time, source.unit, params)
    for name, wanted in query.filter_by:
        if name == "_id":
            where.append("id = ?")
            params.append(wanted)
    where += _field_filters(query, source.data, params)
    for name in query.group_by:
        where.append(_present(source.data, name))
    sql = f"SELECT MIN({source.time}), MAX({source.time}) FROM {source.table} WHERE {' AND '.join(where)}"
    return sql, params


#: The rollup's hour for records without ``_timestamp`` (before any real hour).
SENTINEL_HOUR: Final = -(2**40)


def records_sql(query: ReadQuery, dataset: int, cap: int | None = None) -> tuple[str, list[Any]]:
    """The plain (ungrouped) query: stored rows ``(id, ts, body)`` in answer order.

    ``cap`` bounds the rows read when the query has no smaller ``limit``.
    """
    params: list[Any] = []
    where = [f"ds = {int(dataset)}"]
    where += _time_bounds(query, "ts", 1, params)
    for name, wanted in query.filter_by:
        if name == "_id":
            where.append("id = ?")
            params.append(wanted)
    where += _field_filters(query, "body", params)
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
    limits = [n for n in (query.limit, cap) if n is not None]
    if limits:
        sql += f" LIMIT {int(min(limits))}"
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
    texts: int = 0
    distinct: set[str] = field(default_factory=set)

    def add(self, int_sum: Any, real_sum: Any, numbers: Any, values: Any, texts: Any, distinct: Any) -> None:
        if int_sum is not None:
            self.int_sum = int_sum if self.int_sum is None else self.int_sum + int_sum
        if real_sum is not None:
            self.real_sum = real_sum if self.real_sum is None else self.real_sum + real_sum
        self.numbers += numbers or 0
        self.values += values or 0
        self.texts += texts or 0
        if distinct:
            self.distinct.update(json.loads(distinct))

    def merge(self, other: _Acc) -> None:
        self.add(other.int_sum, other.real_sum, other.numbers, other.values, other.texts, None)
        self.distinct |= other.distinct

    def result(self, name: str, method: str) -> Any:
        if method == "count":
            return self.values
        if method == "set":
            return sorted((json.loads(v) for v in self.distinct), key=_order)
        if self.texts:
            raise QueryError(
                f"invalid collect function: collect={name}:{method} needs numbers, and {name!r} holds text"
            )
        if not self.numbers:
            return None
        total: int | float
        if self.real_sum is None and isinstance(self.int_sum, int):
            total = self.int_sum
        else:
            total = float(self.int_sum or 0) + (self.real_sum or 0.0)
        if not math.isfinite(total):  # each value finite, their sum past the largest double: JSON has no inf
            raise QueryError(
                f"collect={name}:{method}: the values of {name!r} add up to more than the largest number an "
                "answer can hold (about 1.8e308); filter them, or collect them with :set"
            )
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
        value = None if cell is None else cell.accs.get(c.field, _Acc()).result(c.field, c.method)
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


def too_much(what: str, got: int, most: int, hint: str) -> QueryError:
    """The 400 for a read past one of :class:`ReadLimits`: which limit, and how to narrow the query."""
    return QueryError(f"the answer would hold {got} {what}; the most is {most}: {hint}")


_NARROW_CELLS: Final = "narrow start_at/end_at, use a longer period, group by fewer fields, or add filter_by"


def read_cells(
    query: ReadQuery, rows: Iterable[Sequence[Any]], nperiods: int, limits: ReadLimits = DEFAULT_LIMITS
) -> dict[tuple[str, ...], dict[int, _Cell]]:
    """Fold :func:`aggregate_sql`'s rows into cells, refusing an answer past ``limits`` as it grows."""
    fields = list(dict.fromkeys(c.field for c in query.collect))
    as_set = {c.field for c in query.collect if c.method == "set"}
    ngroups = len(query.group_by)
    cells: dict[tuple[str, ...], dict[int, _Cell]] = {}
    size = 0
    per_group = max(nperiods, 1)
    for row in rows:
        key = tuple(row[1 : 1 + ngroups])
        if key not in cells and (len(cells) + 1) * per_group > limits.cells:
            raise too_much("cells (groups times periods)", (len(cells) + 1) * per_group, limits.cells, _NARROW_CELLS)
        cell = _Cell(count=row[1 + ngroups])
        at = 2 + ngroups
        for name in fields:
            acc = _Acc()
            distinct = row[at + 5] if name in as_set else None  # decoded only when a set is asked for
            acc.add(row[at], row[at + 1], row[at + 2], row[at + 3], row[at + 4], distinct)
            size += len(distinct or "")
            cell.accs[name] = acc
            at += 6
        size += sum(len(k or "") for k in key)
        if size > limits.bytes:
            raise too_much(
                "bytes",
                size,
                limits.bytes,
                "collect fewer fields (set gathers every distinct value) or narrow the query",
            )
        cells.setdefault(key, {})[row[0]] = cell
    if query.flatten and query.group_by and nperiods:
        combos = 1
        for i in range(ngroups):
            combos *= len({k[i] for k in cells})
        if combos * nperiods > limits.cells:
            raise too_much("cells (groups times periods)", combos * nperiods, limits.cells, _NARROW_CELLS)
    return cells


def shape(
    query: ReadQuery,
    rows: Iterable[Sequence[Any]],
    periods: Sequence[tuple[datetime, datetime]] | None,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> list[dict[str, Any]]:
    """The ``data`` list of a grouped query from :func:`aggregate_sql`'s rows."""
    cells = read_cells(query, rows, len(periods or ()), limits)

    labels: dict[datetime, str] = {}  # every group repeats the same periods: format each once

    def iso(dt: datetime) -> str:
        text = labels.get(dt)
        if text is None:
            text = labels[dt] = dt.isoformat()
        return text

    def entry(lo: datetime, hi: datetime, cell: _Cell | None) -> dict[str, Any]:
        return {
            "_start_at": iso(lo),
            "_end_at": iso(hi),
            "_count": 0 if cell is None else cell.count,
            **_collected(query, cell),
        }

    if not query.group_by:
        assert periods is not None
        by_period = cells.get((), {})
        items = [entry(lo, hi, by_period.get(i)) for i, (lo, hi) in enumerate(periods)]
        return items[: query.limit] if query.limit is not None else items
    if query.flatten and periods is not None:
        return _sorted(query, _flat(query, cells, periods, entry))

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


def _flat(
    query: ReadQuery,
    cells: dict[tuple[str, ...], dict[int, _Cell]],
    periods: Sequence[tuple[datetime, datetime]],
    entry: Callable[[datetime, datetime, _Cell | None], dict[str, Any]],
) -> list[dict[str, Any]]:
    """``flatten=true``: one item per period and combination of group values, as backdrop fills them.

    Every combination of the values each ``group_by`` field takes in the answer
    appears in every period (backdrop's ``fill_group_by_permutations``), with
    ``_count: 0`` and ``null`` collected values where nothing was recorded.
    """
    values: list[list[str]] = []
    for i in range(len(query.group_by)):
        values.append(sorted({k[i] for k in cells}, key=lambda v: _order(json.loads(v))))
    out: list[dict[str, Any]] = []
    for index, (lo, hi) in enumerate(periods):
        for combo in itertools.product(*values):
            item: dict[str, Any] = {name: json.loads(v) for name, v in zip(query.group_by, combo, strict=True)}
            item.update(entry(lo, hi, cells.get(combo, {}).get(index)))
            out.append(item)
    return out


def answer_periods(
    query: ReadQuery, source: Source, limits: ReadLimits, data_span: Callable[[], Any]
) -> list[tuple[datetime, datetime]] | None:
    """The periods of the answer, for every backend: from the period holding ``start_at`` (or the first
    record) to the one holding ``end_at`` (or the last record), as backdrop's ``Period.range`` (bounds off a
    boundary widen to the periods around them). ``data_span()`` runs the backend's own form of
    :func:`span_sql` and returns its row, ``(first, last)`` in ``source.unit``s, or ``None``."""
    period = query.period
    if period is None:
        return None
    start, end = query.start_at, query.end_at
    try:
        if start is None or end is None:
            row = data_span()
            if row is None or row[0] is None:
                return []
            first, last = int(row[0]), int(row[1])
            if start is None:
                start = _periods.from_us(first * source.unit)
            if end is None:
                end = _periods.from_us(last * source.unit + source.unit)
        lo = _periods.floor(period, start)
        hi = end if _periods.is_boundary(period, end) else _periods.step(period, _periods.floor(period, end))
        return _periods.span(period, lo, hi, limits.periods)
    except OverflowError:
        raise QueryError(
            f"the query spans more than {limits.periods} periods (period={period}): "
            "narrow start_at and end_at (or duration), or use a longer period"
        ) from None
