"""Where KPI numbers come from: the platform's read API, records in memory, or a local file.

Each source reduces its data to a :class:`~perf_sdk._kpi.Counts` (monthly
buckets) and :func:`kpis` hands that to the pure arithmetic in ``_kpi.py``. The
read API is asked for server-side sums per month (``period=month``,
``group_by``, ``collect=...:sum``), never for raw records: a service's KPIs for
years of traffic cost three small requests (and one more per measure of a
performance definition's other KPIs: ``filter_by`` and ``collect=field:sum``).
Days and weeks are read in daily buckets, longer periods in monthly ones.
"""

from __future__ import annotations

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
    RetryableError,
    TransportError,
    ValidationError,
    error_class_for_status,
    scrub,
)
from perf_sdk._kpi import (
    Bucket,
    Counts,
    CountsBuilder,
    KpiReport,
    Mark,
    compute_report,
    parse_cost_period_label,
    period_containing,
)
from perf_sdk._periods import FINE_KINDS, PERIOD_KINDS
from perf_sdk._protocol import COST_PERIODS, DATA_TYPES, SLUG_RE, parse_timestamp

__all__ = [
    "ReadApiSettings",
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


def _int(record: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = _present(record, key)
    if value is None:
        if default is not None:
            return default
        raise ValidationError(key, value, f"a {key} is required")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError(key, value, "an integer") from None
    if isinstance(value, float) and value != number:
        raise ValidationError(key, value, "an integer")
    return number


def _str(record: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = _present(record, key)
    if value is None:
        if default is not None:
            return default
        raise ValidationError(key, value, f"a {key} is required")
    return str(value)


def _timestamp(record: Mapping[str, Any]) -> datetime:
    """``_timestamp`` (platform shape) or ``timestamp`` (backfill shape); naive times are UK local."""
    value = _present(record, "_timestamp")
    key = "_timestamp"
    if value is None:
        value, key = _present(record, "timestamp"), "timestamp"
    if isinstance(value, datetime):
        at = value
    elif isinstance(value, date):
        at = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        parsed = parse_timestamp(value)
        if parsed is None:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise ValidationError(key, value, "an ISO 8601 date or date-time") from None
        at = parsed
    else:
        raise ValidationError(key, value, "an ISO 8601 date-time with a zone")
    return at if at.tzinfo else at.replace(tzinfo=FILE_TIMEZONE)


def _add_record(builder: CountsBuilder, record: Mapping[str, Any], data_type: str | None) -> None:
    if data_type is None:
        if _present(record, "amount_pence") is not None:
            data_type = "costs"
        elif _present(record, "rating") is not None:
            data_type = "satisfaction"
        elif _present(record, "stage") is not None:
            data_type = "transactions"
        else:
            raise ValidationError(
                "record",
                dict(record),
                "a transactions (stage), satisfaction (rating) or costs (amount_pence) record",
            )
    if data_type == "costs":
        label = _str(record, "period")
        if label in COST_PERIODS:  # platform shape: granularity + start in _timestamp
            granularity, start = label, _timestamp(record).astimezone(timezone.utc).date()
        else:  # backfill shape: the period named by its label
            granularity, start = parse_cost_period_label(label)
        builder.add_cost(
            granularity,
            start,
            _str(record, "channel", "all"),
            _str(record, "cost_type", "other"),
            _int(record, "amount_pence"),
        )
    elif data_type == "satisfaction":
        builder.add_satisfaction(
            _timestamp(record), _int(record, "rating"), _str(record, "channel"), _int(record, "count", 1)
        )
    elif data_type == "transactions":
        builder.add_transactions(
            _timestamp(record), _str(record, "stage"), _str(record, "channel"), _int(record, "count", 1)
        )
    else:
        raise ValidationError("data_type", data_type, f"one of {', '.join(DATA_TYPES)}")


def _measure_value(record: Mapping[str, Any], measure: Measure) -> float | None:
    """The record's contribution to ``measure`` (``None``: it does not carry a number there)."""
    if not measure.matches(record):
        return None
    if measure.field == "count":
        return float(_int(record, "count", 1))
    value = record.get(measure.field)
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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
                for m in wanted:
                    value = _measure_value(record, m)
                    if value is not None:
                        builder.add_measure(_timestamp(record), m.id, value, 1)
    else:
        for record in records:
            _add_record(builder, record, None)
    return builder.build()


def marks_from_records(records: Iterable[Mapping[str, Any]]) -> list[Mark]:
    """Change markers from ``marks`` records (platform shape, or rows with ``label`` and ``timestamp``), oldest first."""
    out = []
    for r in records:
        label = r.get("label")
        if isinstance(label, str) and label:
            description = r.get("description")
            out.append(Mark(label, _timestamp(r), description if isinstance(description, str) else None))
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
    """One data set's groups; ``None`` when the data set does not exist (404)."""
    try:
        response = client.get(url, params=params, headers=headers)
    except httpx.TimeoutException as exc:
        raise RetryableError(f"the platform's read API at {url} did not answer in time ({exc})") from exc
    except httpx.HTTPError as exc:
        raise RetryableError(
            f"cannot reach the platform's read API at {url} ({exc}); check the read endpoint "
            "(--read-endpoint, PERF_SDK_READ_ENDPOINT or PERF_SDK_ENDPOINT) and that the platform is running"
        ) from exc
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        auth = headers.get("Authorization", "")
        text = scrub(response.text[:300], [auth, auth.removeprefix("Bearer ")])
        raise error_class_for_status(response.status_code)(
            f"the platform's read API answered {response.status_code} to GET {response.request.url}: {text}",
            status=response.status_code,
            messages=[text],
        )
    try:
        data = response.json()["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise TransportError(
            f"the platform's read API at {url} did not answer in backdrop's shape ({{'data': [...]}})",
            status=response.status_code,
        ) from exc
    if not isinstance(data, list):
        raise TransportError(f"the platform's read API at {url} answered 'data' that is not a list")
    return [g for g in data if isinstance(g, dict)]


def _buckets(group: Mapping[str, Any], collect: str) -> Iterator[tuple[date, Any]]:
    """``(bucket start, sum)`` for each non-empty period of a group (nested ``values`` or flat)."""
    for value in group.get("values", [group]):
        total = value.get(collect)
        if total is None or value.get("_count") == 0 or "_start_at" not in value:
            continue
        at = parse_timestamp(str(value["_start_at"])) or datetime.fromisoformat(str(value["_start_at"]))
        yield (at.astimezone(timezone.utc).date() if at.tzinfo else at.date()), total


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
    missing = []
    try:
        for data_type, query in _QUERIES.items():
            params = (("period", bucket), *query, ("start_at", _iso(start)), ("end_at", _iso(end)))
            if data_type == "costs" and bucket == "day":
                # Cost records sit at the start of their month, quarter or year: read from the start of the
                # year, in months, so a quarter's cost that began before a window of days still reaches it.
                params = (
                    ("period", "month"),
                    *query,
                    ("start_at", _iso(date(start.year, 1, 1))),
                    ("end_at", _iso(_month_offset(end - timedelta(days=1), 1))),
                )
            url = f"{base}/data/{service}/{data_type}"
            groups = _fetch(http, url, params, headers)
            if groups is None:
                missing.append(data_type)
                continue
            collect = query[-1][1]
            for group in groups:
                _add_group(builder, data_type, group, collect)
        for measure in measures:
            _add_measure(http, base, service, measure, (("period", bucket),), start, end, headers, builder)
    finally:
        if own:
            http.close()
    if len(missing) == len(_QUERIES):
        raise ConfigurationError(
            f"the platform at {base} has no data sets for service {service!r} (404 on "
            f"{', '.join(f'{service}/{t}' for t in missing)}); check --service / PERF_SDK_SERVICE "
            "and the read endpoint"
        )
    return builder.build()


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
    """One measure's per-bucket sum and record count: ``filter_by`` each ``where``, ``collect`` sum and count."""
    params = (
        *period,
        *(("filter_by", f"{k}:{_filter_value(v)}") for k, v in measure.where.items()),
        ("collect", f"{measure.field}:sum"),
        ("collect", f"{measure.field}:count"),
        ("start_at", _iso(start)),
        ("end_at", _iso(end)),
    )
    groups = _fetch(http, f"{base}/data/{service}/{measure.data_type}", params, headers)
    for group in groups or ():
        for value in group.get("values", [group]):
            total, records = value.get(f"{measure.field}:sum"), value.get(f"{measure.field}:count")
            if total is None or not records or "_start_at" not in value:
                continue
            builder.add_measure(_start_day(value), measure.id, float(total), int(records))


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


def _add_group(builder: CountsBuilder, data_type: str, group: Mapping[str, Any], collect: str) -> None:
    channel = str(group.get("channel") or ("all" if data_type == "costs" else "other"))
    for day, total in _buckets(group, collect):
        if data_type == "transactions":
            builder.add_transactions(day, str(group.get("stage")), channel, int(total))
        elif data_type == "satisfaction":
            builder.add_satisfaction(day, int(group["rating"]), channel, int(total))
        else:
            builder.add_cost(str(group.get("period")), day, channel, str(group.get("cost_type") or "other"), int(total))


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
