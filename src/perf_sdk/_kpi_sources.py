"""Where KPI numbers come from: the platform's read API, records in memory, or a local file.

Each source reduces its data to a :class:`~perf_sdk._kpi.Counts` (monthly
buckets) and :func:`kpis` hands that to the pure arithmetic in ``_kpi.py``. The
read API is asked for server-side sums per month (``period=month``,
``group_by``, ``collect=...:sum``), never for raw records: a service's KPIs for
years of traffic cost three small requests (and one more per measure of a
performance definition's other KPIs: ``filter_by`` and ``collect=field:sum``).
Days and weeks are read in daily buckets, longer periods in monthly ones.

A record outside the vocabulary (the platform keeps what a client sent, as
backdrop does) is skipped and counted, never raised, from every source: the
records source judges each record; the read API's sums come with the distinct
values behind them (``collect=count:set``), and a data set holding an odd one,
or text the platform will not sum, is read once more grouped by that field
(:func:`add_data_set`), so that only the odd records are left out.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from typing import Any, Final
from zoneinfo import ZoneInfo

import httpx

from perf_sdk._config import ReadSettings, env_value
from perf_sdk._definition import Definition, Measure, load_definition
from perf_sdk._errors import (
    ConfigurationError,
    PerfSdkError,
    RejectedError,
    RetryableError,
    TransportError,
    ValidationError,
    error_class_for_status,
    scrub,
)
from perf_sdk._kpi import (
    MAX_COUNT,
    MAX_PENCE,
    Bucket,
    Counts,
    CountsBuilder,
    KpiReport,
    Mark,
    compute_report,
    parse_cost_period_label,
    period_containing,
    whole_number,
)
from perf_sdk._periods import FINE_KINDS, PERIOD_KINDS
from perf_sdk._protocol import COST_PERIODS, DATA_TYPES, SLUG_RE, parse_timestamp
from perf_sdk._transport import bounded_get

__all__ = [
    "ReadApiSettings",
    "add_data_set",
    "counts_from_read_api",
    "counts_from_records",
    "kpis",
    "marks_from_read_api",
    "marks_from_records",
    "read_records_file",
    "resolve_read_settings",
]

#: Without ``start``, how far back the read API is asked (the report then starts at the first data).
DEFAULT_LOOKBACK_MONTHS: Final = 36
#: The same for days and weeks (daily buckets: a year of them is a bigger answer).
DEFAULT_LOOKBACK_MONTHS_FINE: Final = 4
#: Days before and after each change marker that a report's comparisons use (``kpis --around``'s default).
AROUND_WINDOW_DAYS: Final = 28
#: Naive times and bare dates in files are read here, as in ``perf-sdk backfill``.
FILE_TIMEZONE: Final = ZoneInfo("Europe/London")

RecordsInput = Iterable[Mapping[str, Any]] | Mapping[str, Iterable[Mapping[str, Any]]]


# ---------------------------------------------------------------------------
# Settings: read and validated by _config (the one module reading the environment)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadApiSettings:
    """Where to read a service's published data sets, after argument/environment fallbacks."""

    service: str | None
    read_endpoint: str | None
    token: str | None


def resolve_read_settings(
    *,
    service: str | None = None,
    endpoint: str | None = None,
    read_endpoint: str | None = None,
    token: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ReadApiSettings:
    """Explicit arguments first, then ``PERF_SDK_*``, with the write side's rules.

    :meth:`perf_sdk._config.ReadSettings.resolve` decides (the URL's order of
    precedence, no plain ``http://`` to another host, so a token is never sent in
    clear); this is its plain-values view.
    """
    settings = ReadSettings.resolve(
        service=service, endpoint=endpoint, read_endpoint=read_endpoint, token=token, environ=environ
    )
    return ReadApiSettings(settings.service, settings.read_endpoint, settings.token_value)


# ---------------------------------------------------------------------------
# Records in memory (the platform's record shape) and local files
# ---------------------------------------------------------------------------


def _present(record: Mapping[str, Any], key: str) -> Any:
    value = record.get(key)
    return None if value is None or value == "" else value


def _timestamp(record: Mapping[str, Any]) -> datetime:
    """``_timestamp`` (platform shape) or ``timestamp`` (backfill shape); naive times are UK local.

    A date alone means that day, so it is read as noon UK time, as the backfill reads
    it: midnight in a British summer is 23:00 UTC the day before, and a daily total for
    1 April would count in March, the previous quarter and the previous financial year.
    """
    value = _present(record, "_timestamp")
    key = "_timestamp"
    if value is None:
        value, key = _present(record, "timestamp"), "timestamp"
    if isinstance(value, datetime):
        at = value
    elif isinstance(value, date):
        at = _noon(value)
    elif isinstance(value, str):
        parsed = parse_timestamp(value)
        if parsed is None:
            try:
                text = value.strip()
                parsed = _noon(date.fromisoformat(text)) if len(text) == 10 else datetime.fromisoformat(text)
            except ValueError:
                raise ValidationError(key, value, "an ISO 8601 date or date-time") from None
        at = parsed
    else:
        raise ValidationError(key, value, "an ISO 8601 date-time with a zone")
    return at if at.tzinfo else at.replace(tzinfo=FILE_TIMEZONE)


def _noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12)


def _timestamp_or_none(record: Mapping[str, Any]) -> datetime | None:
    """:func:`_timestamp`, or ``None`` when the record has no valid one (it is then skipped)."""
    try:
        return _timestamp(record)
    except ValidationError:
        return None


def _record_type(record: Mapping[str, Any]) -> str | None:
    """A mixed record's data type, told by its fields: ``amount_pence`` costs, ``rating``, ``stage``."""
    if _present(record, "amount_pence") is not None:
        return "costs"
    if _present(record, "rating") is not None:
        return "satisfaction"
    if _present(record, "stage") is not None:
        return "transactions"
    return None


def _add_record(builder: CountsBuilder, record: Mapping[str, Any], data_type: str | None) -> None:
    """One record into ``builder``; a record outside the vocabulary is skipped and counted, never raised."""
    if data_type is None:
        data_type = _record_type(record)
        if data_type is None:
            if _present(record, "label") is None:  # a change marker is no KPI record, and no bad one either
                builder.skip("records.type", value=sorted(str(k) for k in record))
            return
    if data_type == "costs":
        label = _present(record, "period")
        if label in COST_PERIODS:  # platform shape: granularity + start in _timestamp
            at = _timestamp_or_none(record)
            if at is None:
                builder.skip("costs._timestamp", value=record.get("_timestamp", record.get("timestamp")))
                return
            granularity, start = str(label), at.astimezone(timezone.utc).date()
        else:  # backfill shape: the period named by its label
            try:
                granularity, start = parse_cost_period_label(str(label))
            except ValidationError:
                builder.skip("costs.period", value=label)
                return
        builder.add_cost(
            granularity,
            start,
            _present(record, "channel"),
            _present(record, "cost_type"),
            _present(record, "amount_pence"),
        )
        return
    if data_type not in ("satisfaction", "transactions"):
        raise ValidationError("data_type", data_type, f"one of {', '.join(DATA_TYPES)}")
    at = _timestamp_or_none(record)
    if at is None:
        builder.skip(f"{data_type}._timestamp", value=record.get("_timestamp", record.get("timestamp")))
        return
    count = _present(record, "count")
    count = 1 if count is None else count  # a record without a count is one event
    if data_type == "satisfaction":
        builder.add_satisfaction(at, _present(record, "rating"), _present(record, "channel"), count)
    else:
        builder.add_transactions(at, _present(record, "stage"), _present(record, "channel"), count)


def _measure_number(field: str, value: Any) -> float | None:
    """A value of a measure's field as a number, or ``None`` when it carries none.

    ``count`` follows the transactions rule (a whole number from 1 to
    :data:`~perf_sdk._kpi.MAX_COUNT`); other fields take any finite number,
    text of one included (files are text), never a boolean.
    """
    if field == "count":
        n = whole_number(value)
        return float(n) if n is not None and 1 <= n <= MAX_COUNT else None
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _measure_value(record: Mapping[str, Any], measure: Measure) -> float | None:
    """The record's contribution to ``measure`` (``None``: it does not carry a number there)."""
    if not measure.matches(record):
        return None
    if measure.field == "count":
        count = _present(record, "count")
        return _measure_number("count", 1 if count is None else count)
    return _measure_number(measure.field, record.get(measure.field))


def counts_from_records(records: RecordsInput, *, measures: Iterable[Measure] = (), bucket: Bucket = "month") -> Counts:
    """Counts from records in the platform's shape, e.g. what a LocalPlatform stored or a test made.

    ``records`` is one iterable of mixed records (each one's type told by its
    fields: ``amount_pence`` -> costs, ``rating`` -> satisfaction, ``stage`` ->
    transactions) or a mapping ``{"transactions": [...], "satisfaction": [...], "costs": [...]}``;
    the mapping may hold custom data types (``tracker.record("outcomes", ...)``)
    that ``measures`` (a definition's other KPIs) total, and ``marks``.
    """
    builder = CountsBuilder(bucket)
    by_type: dict[str, list[Measure]] = {}
    for m in measures:
        by_type.setdefault(m.data_type, []).append(m)
    if isinstance(records, Mapping):
        for data_type, items in records.items():
            wanted = by_type.get(data_type, [])
            own = data_type in DATA_TYPES
            if not own and not wanted:
                if data_type == "marks":
                    continue
                raise ValidationError(
                    "data_type", data_type, f"one of {', '.join(DATA_TYPES)}, or a data type a measure names"
                )
            for record in items:
                if own:
                    _add_record(builder, record, data_type)
                if not wanted:
                    continue
                at = _timestamp_or_none(record)
                if at is None:
                    if not own:  # an own record without a time is counted as skipped above
                        builder.skip(f"{data_type}._timestamp", value=record.get("_timestamp"))
                    continue
                for m in wanted:
                    value = _measure_value(record, m)
                    if value is not None:
                        builder.add_measure(at, m.id, value, 1)
    else:
        for record in records:
            _add_record(builder, record, None)
    return builder.build()


def marks_from_records(records: Iterable[Mapping[str, Any]]) -> list[Mark]:
    """Change markers from ``marks`` records (platform shape, or rows with ``label`` and ``timestamp``), oldest first."""
    out = []
    for r in records:
        label = r.get("label")
        at = _timestamp_or_none(r) if isinstance(label, str) and label else None
        if isinstance(label, str) and at is not None:  # a marker without a valid time marks nothing
            description = r.get("description")
            out.append(Mark(label, at, description if isinstance(description, str) else None))
    return sorted(out, key=lambda m: m.at)


def read_records_file(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Rows of a history file, as dicts; empty cells are left out.

    The same reader as ``perf-sdk backfill`` (``_backfill_readers``): CSV with
    any of ``, ; TAB |`` as delimiter, with or without a BOM, JSONL or a JSON
    list, gzip-compressed versions of those, and Excel ``.xlsx``. Values are
    left as written; :func:`counts_from_records` reads them.
    """
    from perf_sdk._backfill_readers import iter_records_file

    return iter_records_file(path)


# ---------------------------------------------------------------------------
# The platform's read API
# ---------------------------------------------------------------------------

_QUERIES: Final[Mapping[str, tuple[tuple[str, str], ...]]] = {
    "transactions": (("group_by", "stage"), ("group_by", "channel"), ("collect", "count:sum")),
    "satisfaction": (("group_by", "rating"), ("group_by", "channel"), ("collect", "count:sum")),
    # Cost records carry _timestamp = the start of their period and period = its
    # granularity, so monthly buckets grouped by period give each cost period exactly.
    "costs": (
        ("group_by", "period"),
        ("group_by", "channel"),
        ("group_by", "cost_type"),
        ("collect", "amount_pence:sum"),
    ),
}


def _iso(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _fetch(
    client: httpx.Client, url: str, params: tuple[tuple[str, str], ...], headers: Mapping[str, str]
) -> list[dict[str, Any]] | None:
    """One data set's groups; ``None`` when the data set does not exist (404).

    Every message is scrubbed of the token, httpx's own included (an illegal
    header's error quotes the header whole), and none chains the httpx
    exception, whose frames hold the request's headers.
    """
    auth = headers.get("Authorization", "")
    secrets = [auth, auth.removeprefix("Bearer ")]
    try:
        response, content = bounded_get(client, url, params=params, headers=headers)
    except httpx.TimeoutException as exc:
        raise RetryableError(
            f"the platform's read API at {url} did not answer in time ({scrub(str(exc), secrets)})"
        ) from None
    except httpx.HTTPError as exc:
        raise RetryableError(
            f"cannot reach the platform's read API at {url} ({scrub(str(exc), secrets)}); check the read endpoint "
            "(--read-endpoint, PERF_SDK_READ_ENDPOINT or PERF_SDK_ENDPOINT) and that the platform is running"
        ) from None
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        # Scrubbed whole, then cut: cut first, a token echoed across the cut kept all but its last characters.
        text = scrub(content.decode("utf-8", "replace"), secrets)[:300]
        raise error_class_for_status(response.status_code)(
            f"the platform's read API answered {response.status_code} to GET {response.request.url}: {text}",
            status=response.status_code,
            messages=[text],
        )
    try:
        data = json.loads(content)["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise TransportError(
            f"the platform's read API at {url} did not answer in backdrop's shape ({{'data': [...]}})",
            status=response.status_code,
        ) from exc
    if not isinstance(data, list):
        raise TransportError(f"the platform's read API at {url} answered 'data' that is not a list")
    return [g for g in data if isinstance(g, dict)]


def _buckets(group: Mapping[str, Any], collect: str) -> Iterator[tuple[date, Any, int]]:
    """``(bucket start, sum, records)`` for each non-empty period of a group (nested ``values`` or flat)."""
    for value in group.get("values", [group]):
        total = value.get(collect)
        if total is None or value.get("_count") == 0 or "_start_at" not in value:
            continue
        yield _start_day(value), total, _records_in(value)


def _records_in(value: Mapping[str, Any]) -> int:
    """A bucket's number of records (``_count``), 1 when the platform does not say."""
    n = value.get("_count")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def _counts_by_value(group: Mapping[str, Any]) -> Iterator[tuple[date, int]]:
    """``(bucket start, records)`` for each non-empty period of a group read without ``collect``."""
    for value in group.get("values", [group]):
        if value.get("_count") and "_start_at" in value:
            yield _start_day(value), _records_in(value)


#: The field each KPI data set's query sums: its values are checked, record by record, before the sum is used.
_SUMMED: Final[Mapping[str, str]] = {"transactions": "count", "satisfaction": "count", "costs": "amount_pence"}


def _one_record_ok(data_type: str, value: Any) -> bool:
    """Whether one record's summed field is in the vocabulary (``None``, absent, is left out of the sum)."""
    if value is None:
        return True
    n = None if isinstance(value, str) else whole_number(value)  # text: judged one value at a time
    if data_type == "costs":
        return n is not None and 0 <= n <= MAX_PENCE
    return n is not None and 1 <= n <= MAX_COUNT


def _sums_usable(data_type: str, groups: list[dict[str, Any]], field: str) -> bool:
    """Whether every bucket's distinct values (``field:set``) are in the vocabulary, so its sum can be used.

    A platform that sends no set is trusted (its sums are used as they are).
    """
    for group in groups:
        for value in group.get("values", [group]):
            seen = value.get(f"{field}:set")
            if isinstance(seen, list) and not all(_one_record_ok(data_type, v) for v in seen):
                return False
    return True


def add_data_set(
    builder: CountsBuilder,
    http: httpx.Client,
    url: str,
    data_type: str,
    *,
    period: str,
    start: date,
    end: date,
    headers: Mapping[str, str],
) -> bool:
    """One KPI data set's sums per ``period`` bucket into ``builder``; ``False`` when it does not exist (404).

    One request in the usual case: the sums, grouped as :data:`_QUERIES` says,
    with the distinct values of the summed field (``collect=count:set``) to
    check them. A data set holding a value outside the vocabulary (a count of
    -500, 2.5 or ``true``; text, which the platform refuses to sum with a 400,
    as backdrop does) costs one more: the same groups, also grouped by the field
    itself, so that every value is judged on its own: the records whose value is
    out are skipped and counted (:attr:`~perf_sdk._kpi.Counts.skipped`), the
    others summed here. One odd record never fails the read.
    """
    query = _QUERIES[data_type]
    field = _SUMMED[data_type]
    bounds = (("start_at", _iso(start)), ("end_at", _iso(end)))
    try:
        collect = (("collect", f"{field}:set"), *((("collect", f"{field}:count"),) if data_type != "costs" else ()))
        groups = _fetch(http, url, (("period", period), *query, *collect, *bounds), headers)
    except RejectedError as exc:
        if exc.status != 400:
            raise
        groups, usable = [], False  # e.g. "collect=count:sum needs numbers, and 'count' holds text"
    else:
        if groups is None:
            return False
        usable = _sums_usable(data_type, groups, field)
    for group in groups or ():
        _add_uncounted(builder, data_type, group)
    if usable:
        for group in groups:
            _add_group(builder, data_type, group, f"{field}:sum")
        return True
    grouped = tuple(q for q in query if q[0] == "group_by")
    try:
        by_value = _fetch(http, url, (("period", period), *grouped, ("group_by", field), *bounds), headers)
    except RejectedError as exc:
        raise type(exc)(
            f"{data_type} holds {field} values the platform cannot sum, and reading them one value at a time "
            f"was refused too: {exc}",
            status=exc.status,
            messages=exc.messages,
        ) from exc
    for group in by_value or ():
        for day, records in _counts_by_value(group):
            _add_row(builder, data_type, group, day, group.get(field), records, each=True)
    return by_value is not None


def counts_from_read_api(
    read_endpoint: str,
    service: str,
    *,
    start: date,
    end: date,
    token: str | None = None,
    timeout: float = 30.0,
    client: httpx.Client | None = None,
    measures: Iterable[Measure] = (),
    bucket: Bucket = "month",
) -> Counts:
    """Monthly (or daily) sums of the service's three data sets between ``start`` and ``end`` (exclusive).

    A 404 on one data set means the service has no records of that type yet;
    a 404 on all three means the platform does not know the service, which is
    a :class:`ConfigurationError`. ``start`` and ``end`` must be month starts
    (any dates for daily buckets). Each of ``measures`` costs one more request.
    """
    base = read_endpoint.rstrip("/")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    builder = CountsBuilder(bucket)
    missing: list[str] = []
    try:
        with _in_backdrops_shape(base):
            _read_each(http, base, service, start, end, bucket, measures, headers, builder, missing)
    finally:
        if own:
            http.close()
    if len(missing) == len(_QUERIES):
        raise ConfigurationError(
            f"the platform at {base} has no data sets for service {service!r} (404 on "
            f"{', '.join(f'{service}/{t}' for t in missing)}); check --service / PERF_SDK_SERVICE "
            "and the read endpoint"
        )
    counts = builder.build()
    if token:  # a platform echoing the token into a value: the notes quote a few values
        shown = {key: tuple(scrub(v, [token]) for v in values) for key, values in counts.examples.items()}
        counts = replace(counts, examples=shown)
    return counts


@contextlib.contextmanager
def _in_backdrops_shape(base: str) -> Iterator[None]:
    """A value the platform answered that no backdrop answer holds (a ``_start_at`` that is no time, a count
    that is no number) is a :class:`TransportError`, not a traceback; nothing of the value is quoted."""
    try:
        yield
    except PerfSdkError:
        raise
    except (ValueError, TypeError, OverflowError, KeyError, AttributeError) as exc:
        raise TransportError(
            f"the platform's read API at {base} answered a value not in backdrop's shape ({type(exc).__name__})"
        ) from None


def _read_each(
    http: httpx.Client,
    base: str,
    service: str,
    start: date,
    end: date,
    bucket: Bucket,
    measures: Iterable[Measure],
    headers: Mapping[str, str],
    builder: CountsBuilder,
    missing: list[str],
) -> None:
    """Every data set's groups (and each measure's) into ``builder``; the data sets that do not exist to ``missing``."""
    for data_type in _QUERIES:
        first, stop, read_period = start, end, bucket
        if data_type == "costs" and bucket == "day":
            # Cost records sit at the start of their month, quarter or year: read from the start of the
            # year, in months, so a quarter's cost that began before a window of days still reaches it.
            first, stop, read_period = date(start.year, 1, 1), _month_offset(end - timedelta(days=1), 1), "month"
        url = f"{base}/data/{service}/{data_type}"
        found = add_data_set(builder, http, url, data_type, period=read_period, start=first, end=stop, headers=headers)
        if not found:
            missing.append(data_type)
    for measure in measures:
        _add_measure(http, base, service, measure, (("period", bucket),), start, end, headers, builder)


def _filter_value(value: str | int | float | bool) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _add_measure(
    http: httpx.Client,
    base: str,
    service: str,
    measure: Measure,
    period: tuple[tuple[str, str], ...],
    start: date,
    end: date,
    headers: Mapping[str, str],
    builder: CountsBuilder,
) -> None:
    """One measure's per-bucket sum and record count: ``filter_by`` each ``where``, ``collect`` sum and count.

    As for the KPI data sets (:func:`add_data_set`), a field the platform cannot
    sum (text), or a ``count`` outside the vocabulary, is read again grouped by
    the field, and each value judged here as the records source does
    (:func:`_measure_number`): one odd record never fails the read.
    """
    where = tuple(("filter_by", f"{k}:{_filter_value(v)}") for k, v in measure.where.items())
    bounds = (("start_at", _iso(start)), ("end_at", _iso(end)))
    checked = (("collect", f"{measure.field}:set"),) if measure.field == "count" else ()
    url = f"{base}/data/{service}/{measure.data_type}"
    params = (
        *period,
        *where,
        ("collect", f"{measure.field}:sum"),
        ("collect", f"{measure.field}:count"),
        *checked,
        *bounds,
    )
    try:
        groups = _fetch(http, url, params, headers)
    except RejectedError as exc:
        if exc.status != 400:
            raise
        groups = None
        usable = False
    else:
        usable = all(
            not isinstance(seen := value.get(f"{measure.field}:set"), list)
            or all(v is None or _measure_number(measure.field, v) is not None for v in seen)
            for group in groups or ()
            for value in group.get("values", [group])
        )
    if usable:
        for group in groups or ():
            for value in group.get("values", [group]):
                total, records = value.get(f"{measure.field}:sum"), value.get(f"{measure.field}:count")
                if total is None or not records or "_start_at" not in value:
                    continue
                if not _finite_number(total) or type(records) is not int or records < 0:
                    builder.skip(f"{measure.data_type}.{measure.field}", records if type(records) is int else 1, total)
                    continue  # NaN, a string or a sum past a double: no KPI is computed with it
                builder.add_measure(_start_day(value), measure.id, float(total), records)
        return
    by_value = _fetch(http, url, (*period, *where, ("group_by", measure.field), *bounds), headers)
    for group in by_value or ():
        number = _measure_number(measure.field, group.get(measure.field))
        if number is None:
            continue  # not a number: the record does not carry the measure
        for day, records in _counts_by_value(group):
            builder.add_measure(day, measure.id, number * records, records)


def _finite_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and abs(value) < 1e300  # type: ignore[arg-type]


def _start_day(value: Mapping[str, Any]) -> date:
    at = parse_timestamp(str(value["_start_at"])) or datetime.fromisoformat(str(value["_start_at"]))
    return at.astimezone(timezone.utc).date() if at.tzinfo else at.date()


def marks_from_read_api(
    client: httpx.Client,
    base: str,
    service: str,
    token: str | None,
    params: tuple[tuple[str, str], ...],
) -> list[Mark]:
    """The service's change markers (``GET /data/<service>/marks``); none when the data set does not exist."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    rows = _fetch(client, f"{base}/data/{service}/marks", params, headers)
    return marks_from_records(rows or [])


def _add_uncounted(builder: CountsBuilder, data_type: str, group: Mapping[str, Any]) -> None:
    """A group's records with no ``count`` at all, one event each, as :func:`_add_record` reads them from a file.

    Another client's records may carry none (one record per event). The platform's
    sum leaves them out, so they are the bucket's records (``_count``) less those
    with a count (``count:count``). A cost with no ``amount_pence`` is no cost.
    """
    if data_type == "costs":
        return
    for value in group.get("values", [group]):
        records, counted = value.get("_count"), value.get("count:count")
        if "_start_at" not in value or not all(type(n) is int for n in (records, counted)):
            continue  # a platform that does not say: its sum is taken as it is
        if records > counted:
            _add_row(builder, data_type, group, _start_day(value), 1, records - counted, each=True)


def _add_group(builder: CountsBuilder, data_type: str, group: Mapping[str, Any], collect: str) -> None:
    """A read API group's sums (``collect``) per bucket into ``builder``; odd values are skipped there."""
    for day, total, records in _buckets(group, collect):
        _add_row(builder, data_type, group, day, total, records)


def _add_row(
    builder: CountsBuilder,
    data_type: str,
    group: Mapping[str, Any],
    day: date,
    amount: Any,
    records: int,
    *,
    each: bool = False,
) -> None:
    """One bucket of one group: ``amount`` is the records' sum, or with ``each`` every record's own value."""
    if data_type == "transactions":
        channel = group.get("channel") or "other"
        builder.add_transactions(day, group.get("stage"), channel, amount, records=records, each=each)
    elif data_type == "satisfaction":
        channel = group.get("channel") or "other"
        builder.add_satisfaction(day, group.get("rating"), channel, amount, records=records, each=each)
    else:
        channel = group.get("channel") or "all"
        cost_type = group.get("cost_type") or "other"
        builder.add_cost(group.get("period"), day, channel, cost_type, amount, records=records, each=each)


# ---------------------------------------------------------------------------
# The public entry point
# ---------------------------------------------------------------------------


def _as_date(value: date | str | None, name: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValidationError(name, value, "a date, YYYY-MM-DD") from None


def _month_offset(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def kpis(
    source: str | os.PathLike[str] | RecordsInput | None = None,
    *,
    service: str | None = None,
    endpoint: str | None = None,
    read_endpoint: str | None = None,
    records: RecordsInput | None = None,
    path: str | os.PathLike[str] | None = None,
    period: str = "quarter",
    start: date | str | None = None,
    end: date | str | None = None,
    financial_year: bool = False,
    token: str | None = None,
    timeout: float = 30.0,
    client: httpx.Client | None = None,
    today: date | None = None,
    definition: Definition | str | os.PathLike[str] | None = None,
    with_marks: bool = False,
) -> KpiReport:
    """The four KPIs per period, from records, a file, or the platform's read API.

    ``source`` may be any of those, told apart by type: an ``http(s)://`` URL
    or an object with a ``url`` (a running ``LocalPlatform``) is a read API, a
    path is a CSV/JSONL file, an iterable or mapping holds records. Without any
    source the read API at ``read_endpoint``/``endpoint`` (or ``PERF_SDK_READ_ENDPOINT``,
    ``PERF_SDK_ENDPOINT``) is read for ``service`` (or ``PERF_SDK_SERVICE``).

    ``period`` is ``month``, ``quarter`` (the default: cost per transaction is
    reported quarterly), ``year`` or ``financial-year``; ``financial_year=True``
    turns ``year`` into years starting 1 April (``2025-26``). Periods are whole:
    ``start`` and ``end`` (dates, both inclusive) select the periods they touch;
    without them the report spans the periods holding data. ``day`` and
    ``week`` (Monday to Sunday) are read in daily buckets.

    ``definition`` (a :class:`~perf_sdk._definition.Definition` or the path of a
    ``perf-sdk.toml``) adds each period's targets (met / missed / unknown) and
    the service's other KPIs. Periods that end after ``today`` (default: the
    current UTC date) are marked partial. Change markers come with records
    under ``"marks"``, and from the read API with ``with_marks=True`` (one
    more request), in :attr:`~perf_sdk._kpi.KpiReport.marks`.

    >>> report = kpis(records=[
    ...     {"_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 4},
    ...     {"_timestamp": "2026-01-05T10:30:00Z", "stage": "completed", "channel": "digital", "count": 3},
    ... ])
    >>> report.periods[0].label, report.periods[0].completion_rate.value
    ('2026-Q1', 0.75)
    """
    period = _period_kind(period, financial_year)
    first, last = _as_date(start, "start"), _as_date(end, "end")
    if definition is not None and not isinstance(definition, Definition):
        definition = load_definition(definition)
    if first and last and last < first:
        raise ValidationError("end", last, f"on or after the start ({first.isoformat()})")
    url, records, path = _tell_source_apart(source, records, path)
    bucket: Bucket = "day" if period in FINE_KINDS else "month"
    named = service or (definition.service if definition else None)
    report_service = named or env_value("service")
    measures = definition.measures() if definition else ()
    if records is not None:
        counts, marks, daily = _from_records(records, measures, bucket, with_marks=with_marks)
    elif path is not None:
        counts, marks, daily = counts_from_records(read_records_file(path), bucket=bucket), [], None
    else:
        settings = _read_api_settings(named, endpoint, url or read_endpoint, token)
        window = _read_window(period, first, last, today or datetime.now(timezone.utc).date(), bucket)
        counts = counts_from_read_api(
            settings.read_endpoint or "",
            settings.service or "",
            start=window[0],
            end=window[1],
            token=settings.token,
            timeout=timeout,
            client=client,
            measures=measures,
            bucket=bucket,
        )
        marks, daily = _marks_from_read_api(settings, window, timeout, client) if with_marks else ([], None)
    report = compute_report(
        counts,
        period=period,
        start=first,
        end=last,
        service=report_service,
        definition=definition,
        today=today,
        marks=marks,
    )
    if daily is not None:
        from perf_sdk._around import around

        changes = tuple(
            around(daily, m, window=AROUND_WINDOW_DAYS, service=report_service, today=today) for m in report.marks
        )
        report = replace(report, changes=changes)
    return report


# -- the steps of kpis() ------------------------------------------------------------------------------


def _period_kind(period: str, financial_year: bool) -> str:
    """The period kind asked for, refused before any I/O if it is not one."""
    if financial_year:
        if period not in ("year", "financial-year"):
            raise ValidationError("financial_year", financial_year, "only with period='year'")
        period = "financial-year"
    if period not in PERIOD_KINDS:
        raise ValidationError("period", period, f"one of {', '.join(PERIOD_KINDS)}")
    return period


def _tell_source_apart(
    source: object, records: RecordsInput | None, path: str | os.PathLike[str] | None
) -> tuple[str | None, RecordsInput | None, str | os.PathLike[str] | None]:
    """``source`` by its type: a URL or a running platform (read API), a path (a file), else records."""
    if records is not None or path is not None or source is None:
        return None, records, path
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return source, None, None
    if isinstance(source, (str, os.PathLike)):
        return None, None, source
    if isinstance(getattr(source, "url", None), str):
        return str(getattr(source, "url")), None, None  # noqa: B009 - a LocalPlatform, or anything serving the read API
    return None, source, None  # type: ignore[return-value]  # an iterable or mapping of records


def _from_records(
    records: RecordsInput, measures: Any, bucket: Bucket, *, with_marks: bool
) -> tuple[Counts, list[Mark], Counts | None]:
    marks = marks_from_records(records["marks"]) if isinstance(records, Mapping) and "marks" in records else []
    counts = counts_from_records(records, measures=measures, bucket=bucket)
    daily = None
    if with_marks and marks:
        daily = counts if bucket == "day" else counts_from_records(records, bucket="day")
    return counts, marks, daily


def _read_api_settings(
    service: str | None, endpoint: str | None, read_endpoint: str | None, token: str | None
) -> ReadApiSettings:
    """Where to read, checked only when the read API is the source (a file needs no endpoint)."""
    settings = resolve_read_settings(service=service, endpoint=endpoint, read_endpoint=read_endpoint, token=token)
    if not settings.read_endpoint:
        raise ConfigurationError(
            "no KPI source: pass records= or path=, or a read API with read_endpoint= / endpoint= "
            "(or set PERF_SDK_READ_ENDPOINT or PERF_SDK_ENDPOINT)",
            cli_message="no KPI source: give a FILE of records, or the platform's read API with "
            "--read-endpoint URL or --endpoint URL (or set PERF_SDK_READ_ENDPOINT or PERF_SDK_ENDPOINT)",
        )
    if not settings.service:
        raise ConfigurationError(
            "no service: pass service= (or --service, or set PERF_SDK_SERVICE)",
            cli_message="no service: give --service SLUG or set PERF_SDK_SERVICE",
        )
    if not SLUG_RE.match(settings.service):
        raise ConfigurationError(
            f"service {settings.service!r} is not a data-group slug (lower-case letters, digits and '-')"
        )
    return settings


def _read_window(period: str, first: date | None, last: date | None, now: date, bucket: Bucket) -> tuple[date, date]:
    """The dates to read: whole periods, and the one before the first (for its change)."""
    lookback = DEFAULT_LOOKBACK_MONTHS_FINE if bucket == "day" else DEFAULT_LOOKBACK_MONTHS
    window_start = (
        period_containing(first, period).previous().start
        if first
        else period_containing(_month_offset(now, -lookback), period).start
    )
    window_end = period_containing(last or max(now, first or now), period).end
    return window_start, window_end


def _marks_from_read_api(
    settings: ReadApiSettings, window: tuple[date, date], timeout: float, client: httpx.Client | None
) -> tuple[list[Mark], Counts | None]:
    """The change markers in the window, and daily counts around them for their before/after comparisons."""
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    endpoint, service = settings.read_endpoint or "", settings.service or ""
    try:
        bounds = (("start_at", _iso(window[0])), ("end_at", _iso(window[1])))
        marks = marks_from_read_api(http, endpoint, service, settings.token, bounds)
        if not marks:
            return marks, None
        first_day = min(m.at for m in marks).astimezone(timezone.utc).date()
        last_day = max(m.at for m in marks).astimezone(timezone.utc).date()
        daily = counts_from_read_api(
            endpoint,
            service,
            start=first_day - timedelta(days=AROUND_WINDOW_DAYS),
            end=last_day + timedelta(days=AROUND_WINDOW_DAYS + 1),
            token=settings.token,
            client=http,
            bucket="day",
        )
        return marks, daily
    finally:
        if own:
            http.close()
