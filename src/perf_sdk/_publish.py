"""``perf_sdk.publish``: what the Service Manual asks a service to publish, as a static site.

Since GDS closed the Performance Platform (2021) a service publishes its own
performance data and lists it on data.gov.uk under "Digital service
performance". :func:`publish` writes, for every service a platform holds (or
those named), from the platform's read API or from local files:

* ``index.html``: the services list (``_publish_site``), and its other orders;
* ``<service>/index.html``: the service's page (``_dashboard``);
* ``<service>/kpis.csv`` / ``kpis.json``: one row per period, with their JSON
  Table Schema ``kpis.schema.json``; ``services.csv`` (every service and period);
* ``<service>/ckan-dataset.json``: data.gov.uk's CKAN payload; ``datapackage.json``
  (Frictionless) describing every file.

Output is deterministic: no wall clock, no set order; the publication time is
``published_at`` or, without it, the end of the last month holding data. A
row's revision date is kept from the files already in ``out`` while its
figures do not change, so a scheduled publish diffs only what changed.

Each service is its own unit of work: a service whose figures cannot be read
or computed, or whose name cannot be a folder name, is left out of this
publication (logged on ``perf_sdk.publish`` and listed in
:attr:`PublishResult.failed`) and every other service is published; the
files an earlier publication wrote for it stay as they were.

perf_sdk deletes only what it wrote itself. ``out/.perf-sdk-manifest`` lists
the files of the last publication; a re-run overwrites the same paths and
removes the listed ones it no longer writes (a service or organisation gone),
and only paths of the shapes perf_sdk writes. Anything else in ``out`` (a
CNAME, a README) stays. A folder that is not empty and that perf_sdk has never
published to is refused, unless it is a site an older perf_sdk wrote (its
``datapackage.json`` is perf_sdk's and it holds nothing but files of those
shapes): publishing must never take over someone else's folder.

``out`` is a trust boundary, as the spool directory is: it must be the user's
own (or root's) and not writable by every user, and no link under it is ever
followed (one is refused, named), so nobody else can steer a publication's
writes or deletions outside it. Every file is first written beside its
place under a random name, created exclusively, and only when all of them
are written do they replace the old ones: a disk that fills half-way leaves
the last publication as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import stat
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import httpx

from perf_sdk._dashboard import CSS, PageContext, dashboard_html, json_ld
from perf_sdk._definition import Definition, load_definition
from perf_sdk._errors import ConfigurationError, PerfSdkError, ValidationError
from perf_sdk._kpi import KPI_KEYS, Counts, KpiReport, compute_report, data_notes
from perf_sdk._kpi_sources import (
    RecordsInput,
)
from perf_sdk._periods import human_label, period_containing
from perf_sdk._protocol import SLUG_RE
from perf_sdk._publish_files import (
    KPI_FIELDS,
    LICENCE,
    SERVICE_FIELDS,
    TOPIC,
    ServiceInfo,
    absolute,
    ckan_dataset,
    dumps,
    dumps_rows,
    iso_utc,
    kpi_rows,
    other_kpi_fields,
    service_rows,
    table_schema,
    to_csv,
)
from perf_sdk._publish_origin import Backfilled, backfill_note
from perf_sdk._publish_site import LIST_CSS, LOWER_IS_BETTER, ListRow, list_pages
from perf_sdk._publish_sources import discover_services, gather, service_info

__all__ = ["PublishResult", "ServiceInfo", "discover_services", "publish"]

#: Periods a site is published by (days and weeks are for monitoring, not publication).
PUBLISH_PERIODS: Final = ("month", "quarter", "year", "financial-year")
_FREQUENCY: Final = {"month": "monthly", "quarter": "quarterly", "year": "annual", "financial-year": "annual"}
#: The list of files the last publication into ``out`` wrote: what a re-run may remove.
MANIFEST: Final = ".perf-sdk-manifest"
#: The paths perf_sdk writes, relative to ``out``: nothing else is ever removed.
_OWN_PATH: Final = re.compile(
    r"\A(?:index\.html|services\.csv|services\.schema\.json|datapackage\.json|\.perf-sdk-manifest"
    r"|(?:sorted|filtered)/[a-z0-9-]+\.html|organisations/[^/]+\.html"
    r"|[a-z0-9]+(?:-[a-z0-9]+)*/(?:index\.html|kpis\.csv|kpis\.json|kpis\.schema\.json|ckan-dataset\.json))\Z"
)
#: A file :meth:`_Site._stage` is writing (``.<name>.<16 hex>.tmp``): one a killed run left is removed.
_TMP_NAME: Final = re.compile(r"\A\..+\.[0-9a-f]{16}\.tmp\Z", re.S)
#: The ``name`` of the data package perf_sdk writes: how a site an older perf_sdk wrote is known.
_PACKAGE_NAME: Final = "digital-service-performance"
#: Folders of the site itself: no service may be named like one.
_SITE_FOLDERS: Final = frozenset({"organisations", "sorted", "filtered"})
#: The longest file or folder name most file systems take (bytes): a service's slug is a folder name.
_MAX_NAME_BYTES: Final = 255

_log = logging.getLogger("perf_sdk.publish")


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish` wrote: the site root, the services, and every file (relative paths, sorted)."""

    out: Path | None
    services: tuple[str, ...]
    files: tuple[str, ...]
    published_at: datetime
    #: The period the services list compares (the latest complete one), if any.
    period: str | None = None
    #: Every file's bytes, by relative path (all a caller needs when ``out`` was ``None``).
    contents: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    #: The services left out of this publication, each with why (``{slug: message}``); empty when all went well.
    failed: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def _as_datetime(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise ValidationError("published_at", text, "an ISO 8601 date-time, e.g. 2026-04-02T09:30:00Z") from None
    if value.tzinfo is None:
        raise ValidationError("published_at", value.isoformat(), "a date-time with a zone (Z or +01:00)")
    return value.astimezone(timezone.utc)


def _as_date(value: date | str | None, name: str) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValidationError(name, value, "a date, YYYY-MM-DD") from None


def _definitions(
    given: Definition | str | os.PathLike[str] | Mapping[str, Definition | str | os.PathLike[str]] | None,
    names: Sequence[str],
    records: Mapping[str, Any] | None,
    files: Mapping[str, Any] | None,
) -> dict[str, Definition]:
    """``{slug: Definition}``: a mapping as given, or one definition for the single service named."""
    if given is None:
        return {}
    if isinstance(given, Mapping):
        return {slug: d if isinstance(d, Definition) else load_definition(d) for slug, d in given.items()}
    found = given if isinstance(given, Definition) else load_definition(given)
    slugs = list(names) or list(records or files or {})
    if not slugs and found.service:
        slugs = [found.service]
    if len(slugs) != 1:
        raise ConfigurationError(
            "a single performance definition needs a single service (--service); "
            "for several, pass definition={slug: path} in Python"
        )
    return {slugs[0]: found}


def _month_after(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


# ---------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------


def publish(
    out: str | os.PathLike[str] | None,
    *,
    service: str | Sequence[str] | None = None,
    source: Any = None,
    endpoint: str | None = None,
    read_endpoint: str | None = None,
    token: str | None = None,
    records: Mapping[str, RecordsInput] | None = None,
    files: Mapping[str, str | os.PathLike[str]] | None = None,
    base_url: str | None = None,
    published_at: datetime | str | None = None,
    period: str = "quarter",
    start: date | str | None = None,
    end: date | str | None = None,
    service_title: str | None = None,
    organisation: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, ServiceInfo | Mapping[str, Any] | str] | None = None,
    definition: Definition | str | os.PathLike[str] | Mapping[str, Definition | str | os.PathLike[str]] | None = None,
    timeout: float = 30.0,
    client: httpx.Client | None = None,
    workers: int = 4,
) -> PublishResult:
    """Write the performance site for one or many services into ``out``; see the module docstring.

    Sources, in order: ``records`` (``{service: records}``), ``files``
    (``{service: path}``, CSV/JSONL as ``perf-sdk backfill`` reads them), else
    the read API at ``source`` (a URL or a running ``LocalPlatform``) /
    ``read_endpoint`` / ``endpoint`` (or ``PERF_SDK_READ_ENDPOINT``,
    ``PERF_SDK_ENDPOINT``) for ``service`` (one slug or several), or for every
    service the platform lists. ``service_title``, ``organisation`` and
    ``description`` name a single service; ``metadata`` names many
    (``{slug: ServiceInfo | {"title": ..., "organisation": ...}}``). Without
    either, a title is made from the slug. ``definition`` is a performance
    definition (``perf-sdk.toml``: title, organisation, targets, other KPIs)
    for a single service, or ``{slug: definition}`` for several; its targets
    and other KPIs show on the service's page, its title and organisation
    name the service unless ``service_title`` / ``organisation`` say otherwise. With ``out=None`` nothing is
    written: the files are in :attr:`PublishResult.contents` (the platform's
    live site renders so).

    >>> import tempfile
    >>> result = publish(tempfile.mkdtemp(), records={"renew-a-permit": [
    ...     {"_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 4},
    ...     {"_timestamp": "2026-01-05T10:30:00Z", "stage": "completed", "channel": "digital", "count": 3},
    ... ]}, published_at="2026-04-02T09:30:00Z")
    >>> "renew-a-permit/kpis.csv" in result.files, result.period
    (True, '2026-Q1')
    """
    if period not in PUBLISH_PERIODS:
        raise ValidationError("period", period, f"one of {', '.join(PUBLISH_PERIODS)}")
    when = _as_datetime(published_at)
    first, last = _as_date(start, "start"), _as_date(end, "end")
    if first and last and last < first:
        raise ValidationError("end", last, f"on or after the start ({first.isoformat()})")
    if base_url is not None and not base_url.startswith(("https://", "http://")):
        raise ValidationError("base_url", base_url, "an absolute http(s) URL, e.g. https://perf.example.gov.uk")
    names = [service] if isinstance(service, str) else list(service or [])
    definitions = _definitions(definition, names, records, files)
    for name in names:
        if not SLUG_RE.match(name):
            raise ValidationError("service", name, "a data-group slug: lower-case letters, digits and '-'")
    removable = set() if out is None else _claim(Path(out))
    site = None if when is None else _Site(None if out is None else Path(out), period, when, first, last, base_url)
    if site is not None:
        site.definitions = definitions
    prepared: dict[str, tuple[KpiReport, list[dict[str, Any]]]] = {}

    def prepare(slug: str, counts: Counts) -> None:
        if site is not None:
            prepared[slug] = site.prepare(slug, counts)

    counts, infos, failures, backfilled = gather(
        names,
        source,
        endpoint,
        read_endpoint,
        token,
        records,
        files,
        when,
        first,
        last,
        timeout,
        client,
        workers,
        period,
        prepare,
        {slug: d.measures() for slug, d in definitions.items()},
    )
    if not counts:
        if failures:
            _raise_every_service_failed(failures)
        raise ConfigurationError("nothing to publish: no services were found or named")
    for slug, value in (metadata or {}).items():
        infos[slug] = service_info(value, slug)
    for slug, found in definitions.items():
        base = infos.get(slug) or ServiceInfo.from_slug(slug)
        infos[slug] = ServiceInfo(
            slug,
            found.title or base.title,
            found.organisation or base.organisation,
            found.description or base.description,
            base.start_date,
        )
    if len(counts) + len(failures) == 1 and (service_title or organisation or description):
        slug = next(iter(counts))
        base = infos.get(slug) or ServiceInfo.from_slug(slug)
        infos[slug] = ServiceInfo(
            slug,
            service_title or base.title,
            organisation or base.organisation,
            description or base.description,
            base.start_date,
        )
    if when is None:
        latest = max((c.data_dates()[-1] for c in counts.values() if c.data_dates()), default=None)
        if latest is None:
            raise ConfigurationError("no records to publish; give published_at= (--published-at) to publish empty")
        when = datetime.combine(_month_after(latest), time(0), tzinfo=timezone.utc)
    if site is None:
        site = _Site(None if out is None else Path(out), period, when, first, last, base_url)
        site.definitions = definitions
    site.removable = removable
    site.backfilled = backfilled
    every = {slug: infos.get(slug) or ServiceInfo.from_slug(slug) for slug in counts}
    return site.write(counts, every, prepared, failures)


def _why(exc: BaseException) -> str:
    """One line saying why a service was left out."""
    if isinstance(exc, PerfSdkError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def _raise_every_service_failed(failures: Mapping[str, BaseException]) -> None:
    """Nothing to publish: one service's own error as it is, several summed up (nothing is written)."""
    first = next(iter(failures.values()))
    if len(failures) == 1 and isinstance(first, PerfSdkError):
        raise first
    named = sorted(failures.items())
    listing = "; ".join(f"{slug}: {_why(exc)}" for slug, exc in named[:5])
    more = f" and {len(named) - 5} more" if len(named) > 5 else ""
    raise ConfigurationError(f"nothing published: every service failed ({listing}{more})") from first


def _refuse(out: Path, problem: str) -> ConfigurationError:
    return ConfigurationError(f"out={str(out)!r} {problem}", cli_message=f"--out {out} {problem}")


def _claim(out: Path) -> set[str]:
    """The files earlier publications wrote into ``out`` (a re-run may remove them); refuse someone else's folder.

    Every run first checks ``out`` is the user's own, that no folder in it is
    writable by every user and that nothing in it is a link (the module
    docstring says why), and removes the temporary files a killed run left.
    With perf_sdk's manifest, what it lists (of perf_sdk's own shapes). Without
    one, ``out`` must be missing, empty, or a site an older perf_sdk wrote;
    anything else is refused before any work is done, as publishing there
    could overwrite or delete another's files.
    """
    if not out.is_dir():
        return set()
    everything = _inspect(out)
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        listed = data.get("files") if isinstance(data, dict) and data.get("generator") == "perf_sdk" else None
    except (OSError, ValueError):
        listed = None
    if isinstance(listed, list):
        return {p for p in listed if isinstance(p, str) and _OWN_PATH.fullmatch(p)}
    if not everything:
        return set()
    foreign = next((name for name in everything if not _OWN_PATH.fullmatch(name)), None)
    if foreign is None and not _older_site(out):
        foreign = next(iter(everything))
    if foreign is not None:
        raise _refuse(
            out,
            f"is not empty and perf_sdk has never published there: it holds {foreign!r}, which perf_sdk did not "
            "write; publish into an empty folder, or one perf_sdk published to",
        )
    return set(everything)


def _inspect(out: Path) -> list[str]:
    """Every file under ``out`` (relative, sorted), once ``out`` is found safe to write; raises if it is not."""
    geteuid = getattr(os, "geteuid", None)
    mine = None if geteuid is None else (geteuid(), 0)
    found: list[str] = []
    for folder, dirs, names in os.walk(out):
        dirs.sort()
        here = Path(folder)
        st = here.stat()
        if mine is not None and st.st_uid not in mine:
            raise _refuse(out, f"has {here} belonging to another user (uid {st.st_uid}): publish into your own folder")
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            raise _refuse(
                out, f"has {here} writable by every user (mode {stat.S_IMODE(st.st_mode):04o}): run chmod o-w {here}"
            )
        for entry in sorted(names) + dirs:
            path = here / entry
            if path.is_symlink():
                raise _refuse(
                    out,
                    f"holds a link, {path.relative_to(out).as_posix()!r}: perf_sdk follows none, so that no "
                    "publication writes or deletes outside the folder; remove it",
                )
            if entry in names and _TMP_NAME.fullmatch(entry):
                path.unlink(missing_ok=True)  # a killed run's: never a finished file, never anybody else's shape
            elif entry in names:
                found.append(path.relative_to(out).as_posix())
    return found


def _older_site(out: Path) -> bool:
    """Is ``out`` a site an older perf_sdk wrote (before the manifest)? Its ``datapackage.json`` is perf_sdk's."""
    try:
        package = json.loads((out / "datapackage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(package, dict) and package.get("name") == _PACKAGE_NAME


# ---------------------------------------------------------------------------
# Writing the site
# ---------------------------------------------------------------------------


class _Site:
    """Renders the site into :attr:`files`; with ``out``, also writes each file there."""

    def __init__(
        self, out: Path | None, period: str, when: datetime, first: date | None, last: date | None, base_url: str | None
    ) -> None:
        self.out = out
        #: Each service's data files as text, rendered by :meth:`prepare`.
        self.data_files: dict[str, tuple[str, str, str]] = {}
        #: Each service's performance definition (targets, other KPIs), where one was given.
        self.definitions: Mapping[str, Definition] = {}
        self.period = period
        self.when = when
        self.as_of = when.date()
        self.first = first
        self.last = last
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        #: Every file written (relative path -> its bytes), for the data package's hashes.
        self.files: dict[str, bytes] = {}
        #: What earlier publications wrote into ``out`` (:func:`_claim`): the only files a re-run may remove.
        self.removable: set[str] = set()
        #: Each service's backfilled transactions, where the read API said (``_publish_origin``): a page note.
        self.backfilled: Mapping[str, Backfilled | None] = {}
        # The period every service is compared on: the latest one over at publication.
        self.compared = period_containing(self.as_of, period).previous()

    def _report(self, slug: str, counts: Counts) -> KpiReport:
        report = compute_report(
            counts,
            period=self.period,
            start=self.first,
            end=self.last,
            service=slug,
            published_at=self.when,
            definition=self.definitions.get(slug),
        )
        kept = tuple(p for p in report.periods if p.start < self.as_of)  # nothing from after publication
        return replace(report, periods=kept)

    def _previous_rows(self, slug: str) -> dict[str, Any]:
        if self.out is None:
            return {}
        path = self.out / slug / "kpis.json"
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {r["period"]: r for r in rows if isinstance(r, dict) and "period" in r} if isinstance(rows, list) else {}

    def prepare(self, slug: str, counts: Counts) -> tuple[KpiReport, list[dict[str, Any]]]:
        """A service's report and rows: the part of the work that needs nothing from the other services.

        Run in the read API's worker threads as each service's counts arrive,
        so this process computes while the platform answers the next requests.
        """
        if slug in _SITE_FOLDERS:  # the service's page would replace, or be replaced by, the site's own
            raise ValidationError("service", slug, f"not {', '.join(sorted(_SITE_FOLDERS))}: the site's own folders")
        size = len(slug.encode("utf-8"))
        if size > _MAX_NAME_BYTES:
            raise ValidationError(
                "service", slug, f"a name that can be a folder name: at most {_MAX_NAME_BYTES} bytes, not {size:,}"
            )
        report = self._report(slug, counts)
        rows = kpi_rows(report.periods, self.as_of, self._previous_rows(slug), self.when.date())
        self.data_files[slug] = self._data_files(slug, rows)
        return report, rows

    def _data_files(self, slug: str, rows: list[dict[str, Any]]) -> tuple[str, str, str]:
        """``kpis.csv``, ``kpis.json`` and their schema, as text: they depend on this service alone."""
        definition = self.definitions.get(slug)
        fields = list(KPI_FIELDS)
        schema_text = _KPI_SCHEMA_TEXT
        if definition is not None and definition.kpis:
            fields += other_kpi_fields([(k.key, k.name, k.display_unit) for k in definition.kpis])
            schema_text = dumps(table_schema(fields, ["period"]))
        return to_csv(rows, fields), dumps_rows(rows), schema_text

    def write(
        self,
        counts: Mapping[str, Counts],
        infos: Mapping[str, ServiceInfo],
        prepared: Mapping[str, tuple[KpiReport, list[dict[str, Any]]]] | None = None,
        failures: Mapping[str, BaseException] | None = None,
    ) -> PublishResult:
        failed = dict(failures or {})
        done: dict[str, tuple[KpiReport, list[dict[str, Any]]]] = {}
        for slug in sorted(counts):
            if slug in failed:
                continue
            try:
                done[slug] = (prepared or {}).get(slug) or self.prepare(slug, counts[slug])
            except Exception as exc:  # one service's failure is its own: the others are published
                failed[slug] = exc
        pages, list_rows, medians = self._services(done, infos, failed)
        if not done:
            _raise_every_service_failed(failed)
        reports = {slug: report for slug, (report, _) in done.items()}
        for slug in reports:
            for name, text in pages[slug].items():
                self._put(name, text)
        every_row = [
            r for slug, (report, rows) in done.items() for r in service_rows(infos[slug], report.periods, rows)
        ]
        self._put("services.csv", to_csv(every_row, SERVICE_FIELDS))
        self._put("services.schema.json", dumps(table_schema(SERVICE_FIELDS, ["service", "period"])))
        compared = human_label(self.compared.kind, self.compared.start, self.compared.end)
        intro = (
            f"The four KPIs of {len(reports):,} government services for {compared}, the latest complete "
            f"{self.period.replace('-', ' ')}, with the change from the one before. "
            '<a href="services.csv">Download every service and period (CSV)</a>.'
        )
        head = f"<style>{CSS}{LIST_CSS}</style>" + json_ld(self._catalogue_ld(infos))
        for name, text in list_pages(
            list_rows, period_name=compared, medians=medians, head=head, intro=intro, footer=_FOOTER
        ).items():
            self._put(name, text.replace('href="services.csv"', 'href="../services.csv"') if "/" in name else text)
        package = self._datapackage(reports, infos)
        resources = package.pop("resources")
        text = dumps({**package, "resources": "@"}).replace(
            '"resources": "@"', '"resources": ' + dumps_rows(resources)[:-1]
        )
        self._put("datapackage.json", text)
        why = {slug: _why(exc) for slug, exc in sorted(failed.items())}
        for slug, message in why.items():
            _log.warning("service %r left out of this publication: %s", slug, message)
        self._flush(set(why))
        return PublishResult(
            self.out, tuple(reports), tuple(sorted(self.files)), self.when, self.compared.label, dict(self.files), why
        )

    def _services(
        self,
        done: dict[str, tuple[KpiReport, list[dict[str, Any]]]],
        infos: Mapping[str, ServiceInfo],
        failed: dict[str, BaseException],
    ) -> tuple[dict[str, dict[str, str]], list[ListRow], dict[str, float | None]]:
        """Each service's files, rendered; a service that fails is dropped (into ``failed``) and the rest compared again."""
        while True:
            list_rows = []
            for slug in list(done):
                try:
                    list_rows.append(self._list_row(infos[slug], done[slug][0]))
                except Exception as exc:
                    failed[slug] = exc
                    del done[slug]
            medians, ranks = _compare(list_rows)
            pages: dict[str, dict[str, str]] = {}
            for slug, (report, rows) in list(done.items()):
                try:
                    pages[slug] = self._service(infos[slug], report, rows, medians, ranks.get(slug, {}))
                except Exception as exc:
                    failed[slug] = exc
                    del done[slug]
            if len(pages) == len(done):
                return pages, list_rows, medians

    def _flush(self, failed: set[str]) -> None:
        """Write the files into ``out``, then remove what the last publication wrote and this one did not.

        A failed service's earlier files stay (and stay listed). The manifest
        first lists the old files and the new, so an interrupted run leaves
        nothing a re-run would not recognise as its own.
        """
        if self.out is None:
            return
        kept = {p for p in self.removable if p.split("/", 1)[0] in failed and p.rsplit("/", 1)[-1] in _SERVICE_FILES}
        stale = self.removable - set(self.files) - kept - {MANIFEST}
        staged: list[tuple[Path, Path]] = []
        try:  # every file written first: a full disk (or any failure) leaves the last publication as it was
            for name, data in self.files.items():
                found = self._stage(name, data)
                if found is not None:
                    staged.append(found)
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
        self._write(MANIFEST, _manifest(self.removable | set(self.files)))
        for tmp, path in staged:
            os.replace(tmp, path)
        self._remove(stale)
        self._write(MANIFEST, _manifest(set(self.files) | kept))

    def _remove(self, stale: set[str]) -> None:
        """Delete what an earlier publication wrote and this one did not (a service or organisation gone).

        Only paths the manifest lists, of perf_sdk's shapes and inside ``out``,
        are touched, so anything else in ``out`` (a CNAME, a README) stays;
        emptied folders go.
        """
        out = self.out
        if out is None:
            return
        root = out.resolve()
        for name in sorted(stale):
            path = out / name
            if not _OWN_PATH.fullmatch(name) or not path.resolve().is_relative_to(root) or path.is_dir():
                continue
            path.unlink(missing_ok=True)
            folder = path.parent
            while folder != out and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent

    def _put(self, name: str, text: str) -> None:
        # "replace": a lone surrogate that got past service_info (an argument's undecodable byte) is one "?",
        # never an error that would leave every service unpublished.
        self.files[name] = text.encode("utf-8", "replace")

    def _write(self, name: str, data: bytes) -> None:
        staged = self._stage(name, data)
        if staged is not None:
            os.replace(*staged)

    def _stage(self, name: str, data: bytes) -> tuple[Path, Path] | None:
        """``name``'s new content written beside it under a temporary name: (that file, its place), or ``None``
        when the file already holds ``data``.

        The temporary file is created exclusively (``O_EXCL``: a link planted
        there is never followed) with a random name, and removed if writing fails.
        """
        assert self.out is not None
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.parent.is_symlink():
            raise _refuse(self.out, f"holds a link, {name!r}: perf_sdk follows none; remove it")
        try:
            if path.read_bytes() == data:
                return None
        except OSError:
            pass
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, path

    def _list_row(self, info: ServiceInfo, report: KpiReport) -> ListRow:
        p = next((x for x in report.periods if x.start == self.compared.start), None)
        year_ago = self.compared.end.replace(year=self.compared.end.year - 1)
        volume_periods = [x for x in report.periods if x.start >= year_ago and x.end <= self.compared.end]
        volume = sum(c.completed for x in volume_periods for c in x.channels) if volume_periods else None
        return ListRow(
            info,
            {k: p.kpi(k).value if p else None for k in KPI_KEYS},
            {k: p.change(k) if p else None for k in KPI_KEYS},
            volume,
        )

    def _service(
        self,
        info: ServiceInfo,
        report: KpiReport,
        rows: list[dict[str, Any]],
        medians: Mapping[str, float | None],
        ranks: Mapping[str, tuple[int, int]],
    ) -> dict[str, str]:
        """The service's files (``{path: text}``), rendered in memory: nothing is written until every one is."""
        slug = info.slug
        files: dict[str, str] = {}
        put = files.__setitem__
        csv_text, json_text, schema_text = self.data_files.get(slug) or self._data_files(slug, rows)
        put(f"{slug}/kpis.csv", csv_text)
        put(f"{slug}/kpis.json", json_text)
        put(f"{slug}/kpis.schema.json", schema_text)
        frequency = _FREQUENCY[self.period]
        coverage = (report.periods[0].start, report.periods[-1].end - timedelta(days=1)) if report.periods else None
        resources = [
            ("KPIs per period (CSV)", f"{slug}/kpis.csv", "CSV", "One row per period: the four KPIs and counts"),
            ("KPIs per period (JSON)", f"{slug}/kpis.json", "JSON", "The same rows as the CSV, as JSON"),
            ("Table Schema", f"{slug}/kpis.schema.json", "JSON", "What each column means (JSON Table Schema)"),
            ("Performance page", f"{slug}/", "HTML", "The service's performance dashboard"),
        ]
        put(
            f"{slug}/ckan-dataset.json",
            dumps(
                ckan_dataset(
                    info,
                    resources,
                    base_url=self.base_url,
                    frequency=frequency,
                    published_at=self.when,
                    coverage=coverage,
                )
            ),
        )
        context = PageContext(
            info=info,
            as_of=self.as_of,
            files=[
                ("KPIs per period (CSV)", "kpis.csv"),
                ("KPIs per period (JSON)", "kpis.json"),
                ("What each column means (JSON Table Schema)", "kpis.schema.json"),
                ("data.gov.uk dataset description (CKAN JSON)", "ckan-dataset.json"),
            ],
            ranks=ranks,
            medians=medians,
            home="../index.html",
            json_ld=self._dataset_ld(info, coverage),
            # What was left out, said beside the figures (a page showed 0.0% with no word when every completion
            # had an odd count); without the examples, which are records' own values, not for a public page.
            notes=(
                *(n for n in (backfill_note(self.backfilled.get(slug), report.periods),) if n),
                *data_notes(report.skipped, report.relabelled),
            ),
        )
        put(f"{slug}/index.html", dashboard_html(report, context))
        return files

    def _dataset_ld(self, info: ServiceInfo, coverage: tuple[date, date] | None) -> dict[str, Any]:
        slug = info.slug
        data: dict[str, Any] = {
            "@context": "https://schema.org",
            "@type": "Dataset",
            "name": f"{info.title}: service performance",
            "description": info.description
            or f"The four mandatory KPIs of the {info.title} service per period: completion rate, user "
            "satisfaction, cost per transaction and digital take-up.",
            "url": absolute(self.base_url, f"{slug}/"),
            "license": LICENCE["path"],
            "isAccessibleForFree": True,
            "keywords": [TOPIC, "KPI", "completion rate", "user satisfaction", "digital take-up"],
            "dateModified": iso_utc(self.when),
            "distribution": [
                {
                    "@type": "DataDownload",
                    "encodingFormat": "text/csv",
                    "contentUrl": absolute(self.base_url, f"{slug}/kpis.csv"),
                },
                {
                    "@type": "DataDownload",
                    "encodingFormat": "application/json",
                    "contentUrl": absolute(self.base_url, f"{slug}/kpis.json"),
                },
            ],
        }
        if info.organisation:
            data["creator"] = {"@type": "Organization", "name": info.organisation}
        if coverage:
            data["temporalCoverage"] = f"{coverage[0].isoformat()}/{coverage[1].isoformat()}"
        return data

    def _catalogue_ld(self, infos: Mapping[str, ServiceInfo]) -> dict[str, Any]:
        return {
            "@context": "https://schema.org",
            "@type": "Dataset",
            "name": "Digital service performance: every service",
            "description": "The four mandatory KPIs of each government service, per period, for comparison.",
            "url": absolute(self.base_url, ""),
            "license": LICENCE["path"],
            "isAccessibleForFree": True,
            "keywords": [TOPIC, "KPI"],
            "dateModified": iso_utc(self.when),
            "distribution": [
                {
                    "@type": "DataDownload",
                    "encodingFormat": "text/csv",
                    "contentUrl": absolute(self.base_url, "services.csv"),
                }
            ],
        }

    def _datapackage(self, reports: Mapping[str, KpiReport], infos: Mapping[str, ServiceInfo]) -> dict[str, Any]:
        resources: list[dict[str, Any]] = [
            _tabular("services", "services.csv", "csv", "services.schema.json", "Every service and period"),
        ]
        for slug in reports:
            title = infos[slug].title
            resources += [
                _tabular(f"{slug}-kpis-csv", f"{slug}/kpis.csv", "csv", f"{slug}/kpis.schema.json", f"{title}: KPIs"),
                _tabular(
                    f"{slug}-kpis-json", f"{slug}/kpis.json", "json", f"{slug}/kpis.schema.json", f"{title}: KPIs"
                ),
            ]
        tabular = {r["path"] for r in resources}
        resources += [_other(name) for name in sorted(self.files) if name not in tabular]
        for resource in resources:
            if resource["format"] == "json" and "schema" in resource:
                continue  # frictionless 5 cannot count the bytes of a JSON table it parses
            data = self.files[resource["path"]]
            resource["bytes"] = len(data)
            resource["hash"] = f"sha256:{hashlib.sha256(data).hexdigest()}"
        return {
            "profile": "data-package",
            "name": _PACKAGE_NAME,
            "title": "Digital service performance",
            "description": "The four mandatory KPIs of government services, as the GOV.UK Service Manual asks "
            "services to publish them.",
            "licenses": [dict(LICENCE)],
            "keywords": [TOPIC],
            "created": iso_utc(self.when),
            "homepage": absolute(self.base_url, "index.html") if self.base_url else None,
            "resources": resources,
        }


def _tabular(name: str, path: str, fmt: str, schema: str, title: str) -> dict[str, Any]:
    return {
        "name": name,
        "path": path,
        "profile": "tabular-data-resource",
        "title": title,
        "format": fmt,
        "mediatype": "text/csv" if fmt == "csv" else "application/json",
        "encoding": "utf-8",
        "schema": schema,
    }


def _other(path: str) -> dict[str, Any]:
    fmt = path.rsplit(".", 1)[-1]
    name = path.replace("/", "-").replace("_", "-").lower()
    # "type": "file": checked by size and hash only (frictionless would read a
    # CKAN payload, which has "resources", as a data package).
    return {
        "name": name,
        "path": path,
        "type": "file",
        "profile": "data-resource",
        "format": fmt,
        "mediatype": {"html": "text/html", "json": "application/json"}.get(fmt, "application/octet-stream"),
        "encoding": "utf-8",
    }


def _compare(
    rows: Iterable[ListRow],
) -> tuple[dict[str, float | None], dict[str, dict[str, tuple[int, int]]]]:
    """The median of each KPI across services, and each service's rank (1 = best; ties share a rank)."""
    rows = list(rows)
    medians: dict[str, float | None] = {}
    ranks: dict[str, dict[str, tuple[int, int]]] = {}
    for key in KPI_KEYS:
        known = [(v, r.info.slug) for r in rows if (v := r.values.get(key)) is not None]
        medians[key] = statistics.median(v for v, _ in known) if known else None
        values = sorted((v for v, _ in known), reverse=key not in LOWER_IS_BETTER)
        first_at: dict[float, int] = {}
        for i, v in enumerate(values):
            first_at.setdefault(v, i + 1)
        for v, slug in known:
            ranks.setdefault(slug, {})[key] = (first_at[v], len(known))
    return medians, ranks


#: The files of a service's folder.
_SERVICE_FILES: Final = frozenset({"index.html", "kpis.csv", "kpis.json", "kpis.schema.json", "ckan-dataset.json"})


def _manifest(files: set[str]) -> bytes:
    return (json.dumps({"generator": "perf_sdk", "files": sorted(files)}, indent=1) + "\n").encode("utf-8")


#: The same for every service: rendered once.
_KPI_SCHEMA_TEXT: Final = dumps(table_schema(KPI_FIELDS, ["period"]))

_FOOTER: Final = (
    '<footer class="width"><p>Completion rate, user satisfaction, cost per transaction and digital take-up are '
    "the four KPIs every government service measures (GOV.UK Service Manual). A figure shown as "
    "<em>unknown</em> had nothing to divide by. Data: Open Government Licence v3.0.</p></footer>"
)
