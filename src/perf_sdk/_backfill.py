"""Backfill: load a service's history into the platform, once, from a file or from rows in memory.

The same engine serves ``perf-sdk backfill`` and scripts::

    summary = perf_sdk.backfill("history.csv.gz", service="apply-for-a-licence")
    summary.accepted, summary.rejected, summary.delivered

What the caller can rely on:

* **Streaming, constant memory.** Rows are read one at a time and built into
  records a chunk (5,000 rows) at a time; a chunk is validated in one call
  (``validate_records``) and handed to the Tracker with ``submit``, which waits
  for room, so a 10-million-row file never sits in memory.
* **Exactly once.** Records take the same road as live ones: the durable spool,
  the uploader's retries through outages, dead letters for what the platform
  refuses. Ids are derived, never random (see ``_backfill_rows``), so running a
  backfill twice, or from two machines, stores every record once.
* **Marked as backfilled.** Every record sent carries ``"origin": "backfill"``
  (:data:`~perf_sdk._backfill_rows.ORIGIN_FIELD`; a live record has none), so
  a published page can say how much of its data was loaded from earlier
  records (``_publish_sources`` reads it with ``filter_by``). The mark is set
  after the record is built and checked, and is no part of its ``_id``: a
  file backfilled before records carried it upserts the same records again.
  Set after the check because it is a constant the platform's rules accept
  (a test says so), and one extra field would send every record through the
  check's generic pass for extras (about 1 µs a record).
* **Resumable.** Every ``checkpoint_every`` seconds the engine waits until what
  it submitted is on disk (``Tracker.persist``) and only then records, in a
  small JSON file under ``<spool_dir>/backfill/``, the last row that is safe;
  keyed by the file's path, size and modification time, the data type and the
  options. Ctrl-C (or a kill) and a re-run continues after that row instead of
  starting over; rows re-sent after it are harmless by their ids. A changed file
  starts over (its ids still make that safe).
* **Rejects are data, not failures.** A row that breaks a rule is written to the
  reject file (row number, field, value, rule, the original line) and counted;
  the run goes on. The file is written through :mod:`perf_sdk._csv`, so a hostile
  cell (``=HYPERLINK(...)``) cannot run as a formula when an operator opens it.
  It is the owner's alone (0600), like the history it echoes, and never holds a
  transaction id in clear (:meth:`RowBuilder.without_transaction_id`).
  A file that is not what it claims fails at once with
  :class:`~perf_sdk.ConfigurationError`, and so does a setting the run cannot
  work without: a Tracker that would drop everything, or a ``transaction_id``
  to hash and no secret (the only thing the secret is needed for).
* ``dry_run=True`` does all the reading and checking, and the summary says what
  would be sent and how each column was read, without a platform, a spool or a
  checkpoint.

The steps, each a function of its own: :func:`open_backfill_source` (the
header found below any title rows), :func:`~perf_sdk._backfill_columns.plan_columns`
(the column contract), :func:`connect` (settings, secret, Tracker), then
:class:`_Run` (read, build, validate, submit, checkpoint, deliver).
:class:`BackfillOptions` carries every option; :func:`backfill` keeps them as
keyword arguments for callers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Final, TextIO

from perf_sdk import _csv
from perf_sdk._backfill_columns import ColumnPlan, looks_like_header, plan_columns
from perf_sdk._backfill_readers import AMOUNT_UNITS, Source, iterable_source, open_source, resolve_timezone
from perf_sdk._backfill_rows import BACKFILL_ORIGIN, FORMULA_RULE, ORIGIN_FIELD, RowBuilder
from perf_sdk._config import Settings
from perf_sdk._errors import ConfigurationError, PerfSdkError, ValidationError
from perf_sdk._records import RecordBuilder, validate_records
from perf_sdk._tracker import Tracker

__all__ = ["BackfillOptions", "BackfillSummary", "Tally", "backfill", "id_source_name", "run_backfill"]

DEFAULT_CHUNK: Final = 5_000
#: Upload batches for a Tracker the backfill builds itself: history is bulk, and five times the live
#: default takes a third off the platform's per-request cost (measured: 37k -> 48k records/s on the
#: local platform). Still far under backdrop's 10 MB; a platform that answers 413 gets halves.
BULK_TRACKER_OPTIONS: Final = {"batch_size": 5_000, "batch_bytes": 4_000_000}
#: Field names of the record, as the reject file should say them (the column's name).
_FIELD_NAMES: Final = {"_timestamp": "timestamp"}
_REJECT_HEADER: Final = ("row", "field", "value", "rule", "line")
_CHECKPOINT_VERSION: Final = 1
_REJECT_CELL_CHARS: Final = 10_000


@dataclass
class Tally:
    """Records, the sum of their ``count``, and (costs) of their ``amount_pence``."""

    records: int = 0
    count: int = 0
    amount_pence: int = 0

    def add(self, records: int, count: int, amount: int) -> None:
        self.records += records
        self.count += count
        self.amount_pence += amount


@dataclass
class BackfillSummary:
    """What a backfill read, accepted, rejected and got stored; live while it runs.

    Rows are the source's rows; records are what they became (a wide row makes
    one record per non-empty cell). ``by_period`` is keyed by UTC month
    (``2026-03``), as the platform buckets; ``by_dataset`` by ``service/type``.
    """

    service: str
    data_type: str
    source: str
    shape: str = "narrow"
    dry_run: bool = False
    rows_read: int = 0
    rows_skipped: int = 0
    accepted: int = 0
    rejected: int = 0
    records: int = 0
    submitted: int = 0
    delivered: int = 0
    pending: int = 0
    dead_letters: int = 0
    paused: tuple[str, ...] = ()
    rejects_path: Path | None = None
    checkpoint_path: Path | None = None
    resumed_from: int | None = None
    last_row: int = 0
    reading_done: bool = False
    interrupted: bool = False
    elapsed: float = 0.0
    bytes_read: int = 0
    bytes_total: int | None = None
    by_dataset: dict[str, Tally] = field(default_factory=dict)
    by_period: dict[str, Tally] = field(default_factory=dict)
    by_channel: dict[str, Tally] = field(default_factory=dict)
    #: The header's row number in a CSV file or a sheet (title or notes rows above it are read past).
    header_row: int | None = None
    #: How each source column was read: (column as written, what it feeds). ``--dry-run`` prints it.
    columns: list[tuple[str, str]] = field(default_factory=list)
    #: While delivery waits on the platform: what for (``Health.waiting_for``), else None.
    waiting_for: str | None = None

    @property
    def complete(self) -> bool:
        """Every row read, and (unless a dry run) every accepted record stored or dead-lettered."""
        return self.reading_done and not self.interrupted and (self.dry_run or self.pending == 0)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def exit_status(self) -> int:
        """The command's exit status: 0 all good, 1 rows rejected (or records dead-lettered), 130 interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.rejected or self.dead_letters else 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rejects_path"] = str(self.rejects_path) if self.rejects_path else None
        data["checkpoint_path"] = str(self.checkpoint_path) if self.checkpoint_path else None
        data["paused"] = list(self.paused)
        data["complete"] = self.complete
        return data


class _RejectFile:
    """The reject CSV, opened on the first reject (a clean run leaves no file behind)."""

    def __init__(self, path: Path | None, *, append_at: int | None = None) -> None:
        self.path = path
        self._append_at = append_at
        self._handle: TextIO | None = None
        self._writer: _csv.SafeWriter | None = None

    def write(self, rows: list[tuple[int, str, Any, str, str]]) -> None:
        if self.path is None or not rows:
            return
        if self._handle is None:
            self._open()
        assert self._handle is not None and self._writer is not None
        self._writer.writerows(rows)
        self._handle.flush()

    def _open(self) -> None:
        assert self.path is not None
        if self._append_at is not None and self.path.exists():
            handle = _open_private(self.path, os.O_RDWR)
            handle.seek(self._append_at)
            handle.truncate()
            self._handle = handle
            self._writer = _csv.writer(handle)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = _open_private(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        except OSError as exc:
            raise ConfigurationError(f"cannot write the reject file {str(self.path)!r}: {exc.strerror}") from exc
        self._writer = _csv.writer(self._handle)
        self._writer.writerow(_REJECT_HEADER)

    def offset(self) -> int:
        if self._handle is not None:
            self._handle.flush()
            return self._handle.tell()
        return self._append_at or 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _open_private(path: Path, flags: int) -> TextIO:
    """The reject file, readable by its owner only (0600), like the history it echoes.

    An existing file is narrowed too (``O_CREAT``'s mode applies only to a new
    one). Text a file cannot hold as UTF-8 (a lone surrogate from a JSON
    ``\\ud800``) is written as its escape, so the reject is written, not lost.
    """
    fd = os.open(path, flags, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        return open(fd, "r+" if flags & os.O_RDWR else "w", encoding="utf-8", errors="backslashreplace", newline="")
    except BaseException:
        os.close(fd)
        raise


def _cut(text: str) -> str:
    """A cell short enough for a spreadsheet (Excel holds 32,767 characters) and for Python's csv reader."""
    if len(text) <= _REJECT_CELL_CHARS:
        return text
    return f"{text[:_REJECT_CELL_CHARS]}... ({len(text) - _REJECT_CELL_CHARS:,} more characters)"


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _checkpoint_key(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class BackfillOptions:
    """Everything a backfill is told besides its source, in one value: how to read, where to send, how to run.

    :func:`backfill` takes these as keyword arguments (its public signature)
    and builds one of these; the steps below each take the few they need.
    """

    # reading
    service: str | None = None
    data_type: str | None = None
    shape: str | None = None
    column_map: Mapping[str, str] | None = None
    ignore_extra: bool = False
    timezone: str | tzinfo = "Europe/London"
    amount_unit: str = "pence"
    source_name: str | None = None
    sheet: str | None = None
    # sending
    tracker: Tracker | None = None
    endpoint: str | None = None
    read_endpoint: str | None = None
    token: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    spool_dir: str | os.PathLike[str] | None = None
    tracker_options: Mapping[str, Any] | None = None
    # running
    dry_run: bool = False
    rejects: str | os.PathLike[str] | None = None
    chunk_size: int = DEFAULT_CHUNK
    checkpoint_every: float = 2.0
    resume: bool = True
    wait: float | None = None
    on_progress: Callable[[BackfillSummary], None] | None = None
    #: The clock future times are judged by (tests; a record more than five minutes past it is
    #: rejected, by :func:`perf_sdk._records.validate_records`); ``None``: now.
    now: datetime | None = None

    def check(self) -> None:
        """Refuse options that are wrong whatever the source, before anything is opened."""
        if self.amount_unit not in AMOUNT_UNITS:
            raise ConfigurationError(f"unknown amount unit {self.amount_unit!r}: use one of {', '.join(AMOUNT_UNITS)}")
        if self.chunk_size < 1:
            raise ConfigurationError("chunk_size must be at least 1")


def backfill(
    source: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    *,
    service: str | None = None,
    data_type: str | None = None,
    dry_run: bool = False,
    column_map: Mapping[str, str] | None = None,
    ignore_extra: bool = False,
    timezone: str | tzinfo = "Europe/London",
    amount_unit: str = "pence",
    shape: str | None = None,
    rejects: str | os.PathLike[str] | None = None,
    tracker: Tracker | None = None,
    endpoint: str | None = None,
    read_endpoint: str | None = None,
    token: str | None = None,
    secret: str | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    source_name: str | None = None,
    sheet: str | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    checkpoint_every: float = 2.0,
    resume: bool = True,
    wait: float | None = None,
    on_progress: Callable[[BackfillSummary], None] | None = None,
    tracker_options: Mapping[str, Any] | None = None,
) -> BackfillSummary:
    """Load history from ``source`` (a file path, or an iterable of dicts) into ``service``'s data set.

    ``data_type`` (``transactions``, ``satisfaction``, ``costs``) is told by
    the columns when omitted; ``shape`` (``narrow``, ``wide-transactions``,
    ``wide-satisfaction``) likewise. ``column_map`` renames source columns
    (``{"When": "timestamp"}``); other unknown columns are refused unless
    ``ignore_extra``. Naive times are read in ``timezone``; ``amount_unit``
    ``"pounds"`` reads ``amount_pence`` as pounds (``£1,234.56``), exactly;
    a spreadsheet cell formatted in pounds, or text starting with ``£``, is
    pounds either way.

    Sends through ``tracker`` when given (it is left open), else through a
    Tracker built from ``endpoint``, ``token``, ``secret``, ``spool_dir`` (and
    ``PERF_SDK_*``), closed at the end. The secret is needed only when a row
    has a ``transaction_id`` to hash. Waits for delivery (up to ``wait``
    seconds; ``None``: until everything is stored, dead-lettered, or its data
    set paused). Rejected rows go to ``rejects`` (default
    ``<source>.rejects.csv`` beside a file source). Ctrl-C stops cleanly: the
    summary says ``interrupted`` and a re-run resumes.

    Raises :class:`ConfigurationError` before sending anything when the source
    or the settings are wrong.
    """
    options = BackfillOptions(
        service=service,
        data_type=data_type,
        shape=shape,
        column_map=column_map,
        ignore_extra=ignore_extra,
        timezone=timezone,
        amount_unit=amount_unit,
        source_name=source_name,
        sheet=sheet,
        tracker=tracker,
        endpoint=endpoint,
        read_endpoint=read_endpoint,
        token=token,
        secret=secret,
        spool_dir=spool_dir,
        tracker_options=tracker_options,
        dry_run=dry_run,
        rejects=rejects,
        chunk_size=chunk_size,
        checkpoint_every=checkpoint_every,
        resume=resume,
        wait=wait,
        on_progress=on_progress,
    )
    return run_backfill(source, options)


def run_backfill(
    source: str | os.PathLike[str] | Iterable[Mapping[str, Any]], options: BackfillOptions
) -> BackfillSummary:
    """:func:`backfill` with its options in one value: open, plan, connect, then run."""
    started = time.monotonic()
    options.check()
    zone = resolve_timezone(options.timezone)
    path, src = open_backfill_source(source, options)
    with src:
        name = options.source_name or id_source_name(src)
        plan = plan_columns(
            src.header,
            data_type=options.data_type,
            shape=options.shape,
            column_map=options.column_map,
            ignore_extra=options.ignore_extra,
            by_index=src.kind in ("csv", "xlsx"),
            source_name=src.name,
        )
        link = connect(plan, options, source_name=name)
        try:
            summary = BackfillSummary(
                service=link.settings.service,
                data_type=plan.data_type,
                source=str(path) if path is not None else name,
                shape=plan.shape,
                dry_run=options.dry_run,
                bytes_total=src.size,
                header_row=src.header_row if src.kind in ("csv", "xlsx") else None,
                columns=list(plan.readings),
            )
            rows = RowBuilder(
                plan,
                RecordBuilder(link.settings.service, link.secret),
                source_name=name,
                zone=zone,
                amount_unit=options.amount_unit,
                serials=src.typed_cells,
                ignore_extra=options.ignore_extra,
                can_hash=link.secret is not None,
                header_row=src.header_row,
            )
            return _Run(
                src,
                plan_builder=rows,
                summary=summary,
                tracker=link.tracker,
                rejects=_rejects_path(options, path),
                checkpoint=_checkpoint_for(options, path, plan, link.settings, zone, name),
                claim=_name_claim(path, name, plan.data_type, link.settings, options) if path is not None else None,
                resume=options.resume,
                chunk_size=options.chunk_size,
                checkpoint_every=options.checkpoint_every,
                wait=options.wait,
                on_progress=options.on_progress,
                started=started,
                now=options.now.timestamp() if options.now is not None else None,
            ).run()
        finally:
            link.close()


def open_backfill_source(
    source: str | os.PathLike[str] | Iterable[Mapping[str, Any]], options: BackfillOptions
) -> tuple[Path | None, Source]:
    """The source as numbered rows: a file (its header found below any title rows), or rows in memory."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        column_map = options.column_map
        return path, open_source(
            path, sheet=options.sheet, header_test=lambda cells: looks_like_header(cells, column_map)
        )
    if isinstance(source, Iterable):
        return None, iterable_source(source, name=options.source_name or "rows")
    raise ConfigurationError(f"source must be a file path or an iterable of dicts, not {type(source).__name__}")


def _name_claim(
    path: Path, name: str, data_type: str, settings: Settings, options: BackfillOptions
) -> Callable[[list[dict[str, Any]]], None] | None:
    """What checks, on a file's first records, that no other file gave their ids the same name.

    Ids derive from the file's name, not its folder, so that a history moved or
    re-dressed (re-saved from Excel, a title row added, gzipped) is stored once.
    Two different files of one name (one per office: ``north/phone.csv`` and
    ``south/phone.csv``) would then share ids: the second would replace the
    first's records instead of adding to them, and both runs would report
    success. Each name's last file is remembered in
    ``<spool_dir>/backfill-names.json``: its path, and a fingerprint of its
    first records as built (the same history in any dress builds the same
    records). Another path with other first records is refused unless
    ``source_name`` names the file. A dry run checks; a real run also records.
    """
    if settings.spool_dir is None or options.source_name is not None:
        return None
    names_file = settings.spool_dir / "backfill-names.json"
    key = f"{settings.service}/{data_type}/{name}"
    source = str(path.resolve())

    def claim(records: list[dict[str, Any]]) -> None:
        first = json.dumps(records[:20], sort_keys=True, separators=(",", ":"), default=str)
        here = {"source": source, "fingerprint": hashlib.sha256(first.encode()).hexdigest()[:32]}
        try:
            names = json.loads(names_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            names = {}
        seen = names.get(key) if isinstance(names, dict) else None
        if isinstance(seen, dict) and seen.get("source") != source and seen.get("fingerprint") != here["fingerprint"]:
            folder = path.resolve().parent.name or "other"
            raise ConfigurationError(
                f"{path}: another file named {name} ({seen.get('source')}), with other records, was backfilled "
                f"into {settings.service}/{data_type} before. Records take their ids from the file's name, so "
                "this file's rows would replace that file's instead of adding to them. If this is other data, "
                f"give it a name of its own: --source-name {folder}-{name} (source_name= in Python); if it is "
                f"the same history updated, say so: --source-name {name}"
            )
        if not options.dry_run and seen != here:
            _write_json_atomically(names_file, {**(names if isinstance(names, dict) else {}), key: here})

    return claim


def id_source_name(src: Source) -> str:
    """The name a file gives its records' ids: its file name, without a ``.gz`` it was compressed under.

    ``history.csv`` and ``history.csv.gz`` are the same data, so they get the same
    ids; a renamed file gets new ones (``source_name`` pins the name).
    """
    name = src.name
    if src.compressed and name.lower().endswith(".gz") and len(name) > 3:
        return name[:-3]
    return name


@dataclass
class _Link:
    """Where the records go: the settings, the secret (if any) and the Tracker (none for a dry run)."""

    settings: Settings
    secret: str | None = field(repr=False)
    tracker: Tracker | None
    owned: bool = False

    def close(self) -> None:
        if self.owned and self.tracker is not None:
            self.tracker.close(timeout=1.0)


def connect(plan: ColumnPlan, options: BackfillOptions, *, source_name: str) -> _Link:
    """Settings, secret and Tracker for a run, refusing before anything is read what cannot work.

    The secret is asked for only when the columns hold a ``transaction_id``
    (a JSON line with one, in a file whose first line had none, stops the run
    at that row instead: see :class:`RowBuilder`). A Tracker that would drop
    what it is given (switched off, or no endpoint) is refused: a backfill
    that "succeeds" by sending nothing is the worst outcome.
    """
    need_secret = "transaction_id" in plan.keys
    tracker = options.tracker
    if tracker is not None:
        if options.service is not None and options.service != tracker.service:
            raise ConfigurationError(f"service={options.service!r} but the tracker given records {tracker.service!r}")
        if not options.dry_run and not tracker.settings.enabled:
            raise ConfigurationError(
                f"the tracker given is switched off ({tracker.settings.disabled_reason}): a backfill through it "
                "would send nothing"
            )
        link = _Link(tracker.settings, _secret_of(tracker.settings), None if options.dry_run else tracker)
    else:
        settings = Settings.resolve(
            need_endpoint=not options.dry_run,
            service=options.service,
            endpoint=options.endpoint,
            read_endpoint=options.read_endpoint,
            token=options.token,
            secret=options.secret,
            spool_dir=Path(options.spool_dir) if options.spool_dir is not None else None,
        )
        link = _Link(settings, _secret_of(settings), None)
    if need_secret and link.secret is None:
        raise ConfigurationError(
            f"no secret: {source_name} has a transaction_id column, and transaction ids are sent only as "
            "HMAC-SHA256 hashes keyed with the service's secret: pass --secret or set PERF_SDK_SECRET "
            "(secret= in Python)"
        )
    if tracker is None and not options.dry_run:
        link.tracker = Tracker(
            service=options.service,
            endpoint=options.endpoint,
            read_endpoint=options.read_endpoint,
            token=options.token,
            secret=options.secret,
            spool_dir=Path(options.spool_dir) if options.spool_dir is not None else None,
            **{**BULK_TRACKER_OPTIONS, **dict(options.tracker_options or {})},
        )
        link.owned = True
        link.settings = link.tracker.settings
    return link


def _secret_of(settings: Settings) -> str | None:
    secret = settings.secret.get_secret_value() if settings.secret is not None else None
    return secret or None


def _rejects_path(options: BackfillOptions, path: Path | None) -> Path | None:
    if options.rejects is not None:
        return Path(options.rejects)
    return Path(f"{path}.rejects.csv") if path is not None else None


def _checkpoint_for(
    options: BackfillOptions, path: Path | None, plan: ColumnPlan, settings: Settings, zone: tzinfo, name: str
) -> tuple[Path, dict[str, Any]] | None:
    """Where a file's run keeps its place (none for rows in memory or a dry run), keyed by all that shapes it."""
    if path is None or options.dry_run:
        return None
    return _checkpoint_path(
        settings.spool_dir,
        path,
        service=settings.service,
        data_type=plan.data_type,
        options={
            "shape": plan.shape,
            "map": dict(options.column_map or {}),
            "ignore_extra": options.ignore_extra,
            "timezone": str(zone),
            "amount_unit": options.amount_unit,
            "source_name": name,
            "sheet": options.sheet,
        },
    )


def _checkpoint_path(
    spool_dir: Path, path: Path, *, service: str, data_type: str, options: Mapping[str, Any]
) -> tuple[Path, dict[str, Any]]:
    stat = path.stat()
    identity = {
        "source": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "service": service,
        "data_type": data_type,
        **options,
    }
    return spool_dir / "backfill" / f"{_checkpoint_key(identity)}.json", identity


class _Run:
    """One backfill run's state: the loop, the rejects, the checkpoint, the wait for delivery."""

    def __init__(
        self,
        source: Source,
        *,
        plan_builder: RowBuilder,
        summary: BackfillSummary,
        tracker: Tracker | None,
        rejects: Path | None,
        checkpoint: tuple[Path, dict[str, Any]] | None,
        resume: bool,
        chunk_size: int,
        checkpoint_every: float,
        wait: float | None,
        on_progress: Callable[[BackfillSummary], None] | None,
        started: float,
        now: float | None = None,
        claim: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.source = source
        #: Called once, with the first records built, before any is submitted (:func:`_name_claim`).
        self.claim = claim
        self.rows = plan_builder
        self.summary = summary
        self.tracker = tracker
        self.chunk_size = chunk_size
        self.checkpoint_every = checkpoint_every
        self.wait = wait
        self.on_progress = on_progress
        self.started = started
        self.now = now
        self.data_type = summary.data_type
        self.dataset = f"{summary.service}/{summary.data_type}"
        self.checkpoint = checkpoint
        self.skip_to = 0
        append_at = None
        if checkpoint is not None:
            summary.checkpoint_path = checkpoint[0]
            state = self._load_checkpoint() if resume else None
            if state is not None:
                self.skip_to = int(state["row"])
                summary.resumed_from = summary.last_row = self.skip_to
                append_at = int(state.get("rejects_offset", 0)) or None
                self._restore(state.get("summary", {}))
        self.reject_file = _RejectFile(rejects, append_at=append_at)
        summary.rejects_path = rejects
        self._base_delivered = tracker.stats.delivered if tracker is not None else 0
        self._periods: Counter[str] = Counter()

    # -- checkpoint -----------------------------------------------------------------------------
    def _load_checkpoint(self) -> dict[str, Any] | None:
        assert self.checkpoint is not None
        path, identity = self.checkpoint
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("version") != _CHECKPOINT_VERSION:
            return None
        if state.get("identity") != json.loads(json.dumps(identity, default=str)):
            return None
        return state

    def _restore(self, saved: Mapping[str, Any]) -> None:
        s = self.summary
        for name in ("rows_read", "accepted", "rejected", "records", "submitted"):
            setattr(s, name, int(saved.get(name, 0)))
        for name in ("by_dataset", "by_period", "by_channel"):
            table = getattr(s, name)
            for key, value in (saved.get(name) or {}).items():
                table[key] = Tally(**value)

    def _save_checkpoint(self, row: int, *, reading_done: bool = False) -> None:
        if self.checkpoint is None:
            return
        path, identity = self.checkpoint
        s = self.summary
        _write_json_atomically(
            path,
            {
                "version": _CHECKPOINT_VERSION,
                "identity": identity,
                "row": row,
                "reading_done": reading_done,
                "rejects_offset": self.reject_file.offset(),
                "saved_at": time.time(),
                "summary": {
                    "rows_read": s.rows_read,
                    "accepted": s.accepted,
                    "rejected": s.rejected,
                    "records": s.records,
                    "submitted": s.submitted,
                    "by_dataset": {k: asdict(v) for k, v in s.by_dataset.items()},
                    "by_period": {k: asdict(v) for k, v in s.by_period.items()},
                    "by_channel": {k: asdict(v) for k, v in s.by_channel.items()},
                },
            },
        )

    def _persist_and_checkpoint(self, row: int, *, reading_done: bool = False, timeout: float = 60.0) -> bool:
        """Record ``row`` as safe only once everything submitted is on disk: never skip a row on resume."""
        if self.tracker is None or self.checkpoint is None:
            return False
        if not self.tracker.persist(timeout=timeout):
            return False
        self._save_checkpoint(row, reading_done=reading_done)
        return True

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> BackfillSummary:
        s = self.summary
        submitted_row = self.skip_to
        try:
            try:
                submitted_row = self._read()
                s.reading_done = True
                if self.tracker is not None:
                    self._persist_and_checkpoint(submitted_row, reading_done=True)
                    self._deliver()
            except KeyboardInterrupt:
                s.interrupted = True
                if self.tracker is not None and not s.reading_done and s.last_row > self.skip_to:
                    self._persist_and_checkpoint(s.last_row, timeout=10.0)
            if self.tracker is not None and s.complete and self.checkpoint is not None:
                with contextlib.suppress(OSError):
                    self.checkpoint[0].unlink()
        finally:
            self.reject_file.close()
            self._update_elapsed()
        if s.rejected == 0 and s.rejects_path is not None and s.resumed_from is None:
            self._remove_stale_rejects()
        self._progress()
        return s

    def _remove_stale_rejects(self) -> None:
        """A clean run leaves no reject file behind, not even an old run's (only ours: checked by header)."""
        path = self.summary.rejects_path
        assert path is not None
        try:
            with path.open(encoding="utf-8") as handle:
                first = handle.readline().strip()
        except OSError:
            return
        if first == ",".join(_REJECT_HEADER):
            with contextlib.suppress(OSError):
                path.unlink()
        self.summary.rejects_path = None

    def _read(self) -> int:
        s = self.summary
        chunk: list[tuple[int, Any]] = []
        append = chunk.append
        size = self.chunk_size
        skip_to = self.skip_to
        next_checkpoint = time.monotonic() + self.checkpoint_every
        last = skip_to
        for number, raw in self.source.rows:
            if number <= skip_to:
                s.rows_skipped += 1
                continue
            append((number, raw))
            if len(chunk) >= size:
                last = self._process(chunk)
                chunk = []
                append = chunk.append
                if self.checkpoint is not None and time.monotonic() >= next_checkpoint:
                    self._persist_and_checkpoint(last)
                    next_checkpoint = time.monotonic() + self.checkpoint_every
                self._progress()
        if chunk:
            last = self._process(chunk)
        s.last_row = last
        return last

    def _process(self, chunk: list[tuple[int, Any]]) -> int:
        """Build, validate, reject, tally and submit one chunk; returns its last row number."""
        s = self.summary
        records, owners, rejects = self.rows.build(chunk)
        if records:
            _, bad = validate_records(self.data_type, records, now=self.now)
            if bad:
                failed: dict[int, ValidationError] = {}
                for index, error in bad:
                    failed.setdefault(owners[index], error)
                rejects.extend(failed.items())
                keep = [i for i, owner in enumerate(owners) if owner not in failed]
                records = [records[i] for i in keep]
        if records and self.claim is not None:
            self.claim(records)
            self.claim = None
        if records and self.tracker is not None:
            for record in records:
                record[ORIGIN_FIELD] = BACKFILL_ORIGIN
            accepted = self.tracker.submit(self.data_type, records, validated=True)
            if accepted < len(records):
                raise PerfSdkError(
                    f"the tracker stopped accepting records ({accepted} of {len(records)} taken): is it closed?"
                )
            s.submitted += accepted
        # Bookkeeping only once the chunk is submitted: an interrupt above leaves the summary, the reject
        # file and the checkpoint all at the previous chunk's end, so a resume neither skips nor repeats.
        if rejects:
            rejects.sort(key=lambda item: item[0])
            seen: set[int] = set()
            lines = []
            for index, error in rejects:
                if index in seen:
                    continue
                seen.add(index)
                number, raw = chunk[index]
                lines.append(
                    (
                        number,
                        self._column_of(error.field),
                        _cut(_value_text(self.rows.reject_value(error))),
                        self._rule_of(number, error),
                        _cut(self.source.original(self.rows.without_transaction_id(raw))),
                    )
                )
            self.reject_file.write(lines)
            s.rejected += len(seen)
            s.accepted += len(chunk) - len(seen)
        else:
            s.accepted += len(chunk)
        s.rows_read += len(chunk)
        if records:
            self._tally(records)
        s.last_row = chunk[-1][0]
        return s.last_row

    def _rule_of(self, number: int, error: ValidationError) -> str:
        """The rule a reject broke; for a blank Excel cell that is a formula nobody calculated, that."""
        formula = self.source.formula_without_value
        if formula is not None and error.value in (None, ""):
            column = self.rows.column_of(error.field)
            if column is not None and formula(number, column):
                return FORMULA_RULE
        return error.rule

    def _column_of(self, field_name: str) -> str:
        """A record field as the reject file names it: the column it came from (a cost's time is its period)."""
        if field_name == "_timestamp" and self.data_type == "costs":
            return "period"
        return _FIELD_NAMES.get(field_name, field_name)

    def _tally(self, records: list[dict[str, Any]]) -> None:
        s = self.summary
        periods: Counter[tuple[str, str]] = Counter()
        counts: Counter[tuple[str, str]] = Counter()
        amounts: Counter[tuple[str, str]] = Counter()
        costs = self.data_type == "costs"
        for r in records:
            key = (r["_timestamp"][:7], r["channel"])
            periods[key] += 1
            counts[key] += r["count"]
            if costs:
                amounts[key] += r["amount_pence"]
        total = s.by_dataset.setdefault(self.dataset, Tally())
        for key, n in periods.items():
            c, a = counts[key], amounts[key]
            total.add(n, c, a)
            s.by_period.setdefault(key[0], Tally()).add(n, c, a)
            s.by_channel.setdefault(key[1], Tally()).add(n, c, a)
        s.records += len(records)

    def _deliver(self) -> None:
        """Wait for the platform to store what was submitted, reporting progress twice a second."""
        tracker = self.tracker
        assert tracker is not None
        s = self.summary
        deadline = None if self.wait is None else time.monotonic() + self.wait
        while True:
            step = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            result = tracker.flush(timeout=step)
            s.pending = result.pending
            s.dead_letters = result.dead_letters
            s.paused = result.paused
            s.waiting_for = tracker.stats.waiting_for if result.timed_out else None
            self._update_delivered()
            self._progress()
            if result or not result.timed_out:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return

    # -- progress ---------------------------------------------------------------------------------
    def _update_delivered(self) -> None:
        if self.tracker is not None:
            self.summary.delivered = self.tracker.stats.delivered - self._base_delivered

    def _update_elapsed(self) -> None:
        self.summary.elapsed = time.monotonic() - self.started

    def _progress(self) -> None:
        s = self.summary
        with contextlib.suppress(OSError, ValueError):
            s.bytes_read = int(self.source.position())
        self._update_elapsed()
        self._update_delivered()
        if self.tracker is not None and not s.reading_done:
            s.pending = max(0, s.submitted - s.delivered)
        if self.on_progress is not None:
            self.on_progress(s)
