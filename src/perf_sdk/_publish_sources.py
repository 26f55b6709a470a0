"""Where ``perf_sdk.publish`` gets its figures: records, files, or a platform's read API.

The read API is asked for server-side sums (three small requests a service, and
a fourth for how many transactions were backfilled: ``_publish_origin``),
several services at a time: publishing 1,000 services is mostly the
platform's work, so this process computes each service's report while the
platform answers the next requests (``prepare``). Quarters, years and
financial years are unions of quarters, so for them the platform is asked for
quarterly sums (:func:`_quarterly_counts`), half the work of monthly ones.

The services to publish, when none are named, come from the platform's
listing of its data sets: backdrop's configuration API (stagecraft's
``GET /data-sets``) or perf_sdk's local platform (``GET /performance/data-sets.json``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import unicodedata
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from typing import Any, Final

import httpx

from perf_sdk._definition import Measure
from perf_sdk._errors import ConfigurationError, TransportError, ValidationError
from perf_sdk._kpi import Counts, CountsBuilder
from perf_sdk._kpi_sources import _QUERIES as QUERIES
from perf_sdk._kpi_sources import (
    RecordsInput,
    add_data_set,
    counts_from_read_api,
    counts_from_records,
    read_records_file,
    resolve_read_settings,
)
from perf_sdk._periods import period_containing
from perf_sdk._protocol import SLUG_RE
from perf_sdk._publish_files import ServiceInfo
from perf_sdk._publish_origin import Backfilled, read_backfilled
from perf_sdk._transport import bounded_get

__all__ = ["DEFAULT_YEARS", "discover_services", "gather", "service_info"]

#: Without ``start``, how many years back the read API is asked.
DEFAULT_YEARS: Final = 5
#: Where a platform lists its data sets: backdrop's stagecraft, then perf_sdk's local platform.
_LISTINGS: Final = ("/data-sets", "/performance/data-sets.json")


def service_info(value: ServiceInfo | Mapping[str, Any] | str, slug: str) -> ServiceInfo:
    """A service's metadata from what a caller or a platform gave: an object, a title, or a mapping.

    A title with nothing visible in it (spaces, zero-width characters) is no title:
    the slug's words stand in, so no page gets an empty heading or an empty link.
    """
    fallback = ServiceInfo.from_slug(slug)
    if isinstance(value, ServiceInfo):
        info = value if _visible(value.title) else dataclasses.replace(value, title=fallback.title)
    elif isinstance(value, str):
        info = ServiceInfo(slug, value if _visible(value) else fallback.title)
    else:
        title = value.get("title")
        info = ServiceInfo(
            slug,
            str(title) if title is not None and _visible(str(title)) else fallback.title,
            str(value.get("organisation") or value.get("organization") or ""),
            str(value.get("description") or ""),
            str(value.get("start_date") or ""),
        )
    # A lone surrogate (JSON's "\udce9") cannot be written to any page: one service's made every page fail.
    return ServiceInfo(*(_encodable(text) for text in dataclasses.astuple(info)))


def _encodable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (a lone surrogate) as U+FFFD."""
    return text if text.isascii() else "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def _visible(text: str) -> bool:
    """Does ``text`` show anything? (Not only spaces, and format characters such as U+200B.)"""
    return any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in text)


def discover_services(
    read_endpoint: str, *, token: str | None = None, client: httpx.Client | None = None, timeout: float = 30.0
) -> dict[str, ServiceInfo]:
    """The services a platform holds, with their metadata, from its data-set listing.

    Backdrop's configuration API (stagecraft) lists data sets at ``GET /data-sets``:
    a JSON list of objects with ``data_group`` and ``data_type``; perf_sdk's local
    platform lists its services at ``GET /performance/data-sets.json`` in the same
    shape. ``title`` / ``organisation`` / ``description`` (or a ``service`` object
    holding them) are read beside them when the platform has them. A platform
    without either listing needs the services named (``--service``).
    """
    headers = _headers(token)
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    base = read_endpoint.rstrip("/")
    try:
        for path in _LISTINGS:
            url = f"{base}{path}"
            try:
                response, content = bounded_get(http, url, headers=headers)
            except (httpx.HTTPError, TransportError) as exc:
                raise ConfigurationError(f"cannot list the platform's data sets at {url} ({exc})") from exc
            if response.is_success:  # a redirect (a router adding "/") is no listing either
                break
        else:
            raise ConfigurationError(
                f"the platform at {read_endpoint} does not list its data sets (GET {' or '.join(_LISTINGS)} "
                f"answered {response.status_code}): name the services with --service (service= in Python)"
            )
    finally:
        if own:
            http.close()
    try:
        data = json.loads(content)
    except ValueError:
        raise ConfigurationError(f"the platform's data-set listing at {url} is not JSON") from None
    items = data.get("data", data.get("data_sets", [])) if isinstance(data, dict) else data
    found: dict[str, ServiceInfo] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        group = item.get("data_group") or item.get("group")
        if not isinstance(group, str) or not SLUG_RE.match(group):
            continue
        meta = item.get("service") if isinstance(item.get("service"), Mapping) else item
        info = service_info(meta, group)  # type: ignore[arg-type]
        if group not in found or _richness(info) > _richness(found[group]):
            found[group] = info  # a service has a data set per type: keep the one that says most
    return dict(sorted(found.items()))


def _richness(info: ServiceInfo) -> int:
    return (info.title != ServiceInfo.from_slug(info.slug).title) + bool(info.organisation) + bool(info.description)


def gather(
    names: list[str],
    source: Any,
    endpoint: str | None,
    read_endpoint: str | None,
    token: str | None,
    records: Mapping[str, RecordsInput] | None,
    files: Mapping[str, str | os.PathLike[str]] | None,
    when: datetime | None,
    first: date | None,
    last: date | None,
    timeout: float,
    client: httpx.Client | None,
    workers: int,
    period: str,
    prepare: Callable[[str, Counts], None],
    measures: Mapping[str, tuple[Measure, ...]],
) -> tuple[dict[str, Counts], dict[str, ServiceInfo], dict[str, Exception], dict[str, Backfilled | None]]:
    """Each service's counts (and the platform's metadata for them), from records, files or the read API.

    The fourth mapping holds, from the read API only, each service's backfilled
    transactions (:func:`~perf_sdk._publish_origin.read_backfilled`); ``None``
    where the platform could not say.

    ``prepare(slug, counts)`` is called as each service's counts arrive, in
    the read API's worker threads, so the caller can compute while the
    platform answers the next requests. A service whose counts cannot be had
    (or whose ``prepare`` fails) is in the third mapping, with its error, and
    not in the first: one service's failure never stops the others.
    """
    counts: dict[str, Counts] = {}
    infos: dict[str, ServiceInfo] = {}
    failures: dict[str, Exception] = {}
    backfilled: dict[str, Backfilled | None] = {}
    for slug in list(records or {}) + list(files or {}):
        if not SLUG_RE.match(slug):
            raise ValidationError("service", slug, "a data-group slug: lower-case letters, digits and '-'")
    if records is not None or files is not None:
        for slug, items in (records or {}).items():
            try:
                counts[slug] = counts_from_records(items, measures=measures.get(slug, ()))
            except Exception as exc:  # this service's records: the others are still published
                failures[slug] = exc
        for slug, path in (files or {}).items():
            try:
                counts[slug] = counts_from_records(read_records_file(path))
            except Exception as exc:
                failures[slug] = exc
        return counts, infos, failures, backfilled
    url = source if isinstance(source, str) else getattr(source, "url", None)
    settings = resolve_read_settings(endpoint=endpoint, read_endpoint=url or read_endpoint, token=token)
    if not settings.read_endpoint:
        raise ConfigurationError(
            "no source to publish from: pass records= or files=, or a read API with read_endpoint= / endpoint= "
            "(--read-endpoint, --endpoint, PERF_SDK_READ_ENDPOINT or PERF_SDK_ENDPOINT)"
        )
    base = settings.read_endpoint
    own = client is None
    http = client or httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=workers))
    try:
        if not names:
            infos = discover_services(base, token=settings.token, client=http)
            names = list(infos)
        else:
            try:
                infos = discover_services(base, token=settings.token, client=http)
            except ConfigurationError:
                infos = {}
        now = when.date() if when else datetime.now(timezone.utc).date()
        window_end = period_containing(last or now, "month").end
        window_start = first or date(window_end.year - DEFAULT_YEARS, window_end.month, 1)
        window_start = date(window_start.year, window_start.month, 1)

        quarterly = when is not None and period != "month"
        if quarterly:  # quarter boundaries serve monthly reads too, for a service with other KPIs
            window_start = period_containing(window_start, "quarter").start
            window_end = period_containing(window_end - timedelta(days=1), "quarter").end

        def one(slug: str) -> tuple[str, tuple[Counts, Backfilled | None] | Exception]:
            try:
                return slug, fetch(slug)
            except Exception as exc:  # this service's read or figures: the others are still published
                return slug, exc

        def fetch(slug: str) -> tuple[Counts, Backfilled | None]:
            if quarterly and not measures.get(slug):
                found = _quarterly_counts(http, base, slug, window_start, window_end, settings.token)
            else:
                found = counts_from_read_api(
                    base,
                    slug,
                    start=window_start,
                    end=window_end,
                    token=settings.token,
                    client=http,
                    measures=measures.get(slug, ()),
                )
            origin = read_backfilled(http, base, slug, window_start, window_end, _headers(settings.token))
            prepare(slug, found)
            return found, origin

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for slug, result in pool.map(one, names):
                if isinstance(result, Exception):
                    failures[slug] = result
                else:
                    counts[slug], backfilled[slug] = result
    finally:
        if own:
            http.close()
    return counts, infos, failures, backfilled


def _headers(token: str | None) -> dict[str, str]:
    """The read API's request headers: JSON, and the token when there is one."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _quarterly_counts(http: httpx.Client, base: str, slug: str, start: date, end: date, token: str | None) -> Counts:
    """The service's sums per quarter: what quarters, years and financial years need, at half the cost.

    The read API's work (and its answer's size) grows with the number of
    buckets, and publishing 1,000 services is mostly that work. Quarterly
    buckets give the same figures for quarters, calendar years and financial
    years (all unions of quarters); a cost record still counts only in the
    periods its own period lies inside, as ``period`` is among the groups.
    Not for months, and not without a publication time (which comes from the
    last month holding data).
    """
    headers = _headers(token)
    builder = CountsBuilder()
    missing = 0
    for data_type in QUERIES:
        # The KPI reader's own path: a record outside the vocabulary (a count held as text, a negative one) is
        # skipped and counted there, never summed in or allowed to fail the service's publication.
        found = add_data_set(
            builder, http, f"{base}/data/{slug}/{data_type}", data_type,
            period="quarter", start=start, end=end, headers=headers,
        )  # fmt: skip
        if not found:
            missing += 1
    if missing == len(QUERIES):
        raise ConfigurationError(
            f"the platform at {base} has no data sets for service {slug!r}; check --service and the read endpoint"
        )
    return builder.build()
