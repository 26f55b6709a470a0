"""Tracker: the calls a service makes, and the background writer behind them.

The hot path (``start``, ``complete``, ``satisfaction``, ``cost``, ``record``)
appends one tuple to a ``deque`` and returns: no lock, no disk, no network, no
validation, about a microsecond. The *writer* thread wakes every
``commit_interval`` (50 ms), turns the tuples into records (validation, HMAC of
transaction ids, ids, timestamps), and group-commits them to the spool; the
*uploader* thread sends the spool to the platform. So a record is on disk within
``commit_interval`` plus one commit after the call returns (documented as
200 ms), and only what ``strict=True`` must raise is done on the caller's thread.

The host is never crashed: in the default mode nothing in these calls can raise;
a refused record is logged under the ``perf_sdk`` logger, counted in
``health()`` and passed to ``on_error``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import pydantic_core

from perf_sdk._config import Settings
from perf_sdk._errors import PerfSdkError, ValidationError
from perf_sdk._protocol import DATA_TYPES
from perf_sdk._records import RecordBuilder, validate_records
from perf_sdk._spool import Spool, ensure_spool_dir
from perf_sdk._telemetry import Health, Stats
from perf_sdk._transport import HttpTransport, Transport
from perf_sdk._uploader import Uploader

__all__ = ["FlushResult", "Tracker"]

logger = logging.getLogger("perf_sdk")

# Kinds of queued call. Plain ints: the hot path builds a tuple and nothing else.
_START: Final = 0
_COMPLETE: Final = 1
_SATISFACTION: Final = 2
_COST: Final = 3
_GENERIC: Final = 4
_BUILT: Final = 5  # a record already built (strict mode, submit): validated again in the writer
_VALIDATED: Final = 6  # submit(validated=True): built and validated by the caller (backfill), trusted

_time = time.time
ErrorHook = Callable[[BaseException, list[dict[str, Any]]], None]
BeforeSend = Callable[[dict[str, Any]], "dict[str, Any] | None"]

_LIVE: weakref.WeakSet[Tracker] = weakref.WeakSet()


@dataclass(frozen=True)
class FlushResult:
    """What ``flush()`` left undelivered. Truthy when everything accepted is stored."""

    pending: int
    dead_letters: int
    paused: tuple[str, ...]
    timed_out: bool

    def __bool__(self) -> bool:
        return self.pending == 0


class Tracker:
    """Records a service's transactions, satisfaction answers and costs.

    >>> tracker = Tracker(service="apply-for-a-licence", endpoint="https://perf.example.gov.uk",
    ...                   token="...", secret="...")  # doctest: +SKIP
    >>> tracker.start("txn-123", channel="digital")  # doctest: +SKIP

    Arguments fall back to ``PERF_SDK_*`` environment variables (every option,
    its variable and its default: ``docs/reference/configuration.md``).

    Hooks, all called from the SDK's background threads and never allowed to
    raise into it: ``on_error(error, records)`` for anything refused or failing,
    ``on_dead_letter(error, records)`` for records the platform refused for good,
    ``before_send(record) -> record | None`` to enrich or drop a record before
    it is validated and spooled. OpenTelemetry: ``tracer_provider`` and
    ``meter_provider`` (default: the global ones), and ``kpi_metrics=True`` for
    the service's own journey counters. ``transport`` replaces the HTTP
    transport (tests, other protocols).
    """

    #: False only for perf_sdk.testing's capturing tracker, which touches no disk.
    _uses_spool = True

    def __init__(
        self,
        service: str | None = None,
        endpoint: str | None = None,
        *,
        read_endpoint: str | None = None,
        token: str | None = None,
        tokens: Mapping[str, str] | None = None,
        secret: str | None = None,
        spool_dir: str | Path | None = None,
        strict: bool | None = None,
        debug: bool | None = None,
        on_error: ErrorHook | None = None,
        on_dead_letter: ErrorHook | None = None,
        before_send: BeforeSend | None = None,
        transport: Transport | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        kpi_metrics: bool = False,
        **options: Any,
    ) -> None:
        self.settings = Settings.resolve(
            need_endpoint=transport is None,
            service=service,
            endpoint=endpoint,
            read_endpoint=read_endpoint,
            token=token,
            tokens=dict(tokens) if tokens else None,
            secret=secret,
            spool_dir=Path(spool_dir) if spool_dir is not None else None,
            strict=strict,
            debug=debug,
            **options,
        )
        s = self.settings
        if self._uses_spool:
            ensure_spool_dir(s.spool_dir)
        if s.debug:
            # Like sentry's debug=True: the SDK's own story on stderr, through logging, never print.
            logger.setLevel(logging.DEBUG)
            if not logger.handlers:
                handler = logging.StreamHandler()
                handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
                logger.addHandler(handler)
        self.service = s.service
        self.on_error = on_error
        self.on_dead_letter = on_dead_letter
        self.before_send = before_send
        self._transport_given = transport
        self._strict = s.strict
        self._max_queue = s.max_queue
        self._secret = s.secret.get_secret_value() if s.secret else None
        self._caller_builder = RecordBuilder(s.service, self._secret, s.sample_every)
        self.stats = Stats()
        self.stats.instrument(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            kpi_metrics=kpi_metrics,
            spool_view=self._spool_view,
        )
        self._closed = False
        self._init_process_state()
        _LIVE.add(self)
        atexit.register(self._atexit)

    def _init_process_state(self) -> None:
        """State that belongs to one process: rebuilt from scratch in a forked child."""
        self._queue: deque[tuple[Any, ...]] = deque()
        self._running = False
        self._lifecycle = threading.Lock()
        self._wake_writer = threading.Event()
        self._writer_stop = False
        self._writer: threading.Thread | None = None
        self._drained = threading.Condition()
        self._drains = 0
        self._unspooled: list[tuple[str, int, bytes]] = []
        self._quiet_until = 0.0
        self._spool: Spool | None = None
        self._uploader: Uploader | None = None
        self._transport: Transport | None = None
        self._pid = os.getpid()

    def _spool_view(self) -> tuple[int, float | None]:
        """(records waiting, oldest accepted_at), for the OpenTelemetry gauges."""
        spool = self._spool
        waiting = len(self._queue)
        if spool is None or spool.closed:
            return waiting, None
        try:
            depth, _, oldest = spool.depth()
        except Exception:  # a metrics callback must not fail the exporter
            return waiting, None
        return depth + waiting, oldest

    def __repr__(self) -> str:
        return (
            f"Tracker(service={self.service!r}, endpoint={self.settings.endpoint!r}, "
            f"spool_dir={str(self.settings.spool_dir)!r}, token=<redacted>, secret=<redacted>)"
        )

    # the hot path --------------------------------------------------------------------------------
    def start(
        self, transaction_id: str | None = None, *, channel: str = "digital", at: Any = None, count: int = 1
    ) -> None:
        """A transaction started. Starting the same ``transaction_id`` twice is stored once."""
        if self._strict:
            return self._strict_record(
                "transactions",
                self._caller_builder.transaction,
                "started",
                transaction_id,
                channel,
                at,
                count,
            )
        q = self._queue
        if not self._running or len(q) >= self._max_queue:
            return self._slow_enqueue((_START, transaction_id, channel, _time() if at is None else at, count))
        q.append((_START, transaction_id, channel, _time() if at is None else at, count))
        return None

    def complete(
        self, transaction_id: str | None = None, *, channel: str = "digital", at: Any = None, count: int = 1
    ) -> None:
        """A transaction completed. Completing it twice (a refresh, a double submit) is stored once."""
        if self._strict:
            return self._strict_record(
                "transactions",
                self._caller_builder.transaction,
                "completed",
                transaction_id,
                channel,
                at,
                count,
            )
        q = self._queue
        if not self._running or len(q) >= self._max_queue:
            return self._slow_enqueue((_COMPLETE, transaction_id, channel, _time() if at is None else at, count))
        q.append((_COMPLETE, transaction_id, channel, _time() if at is None else at, count))
        return None

    def satisfaction(
        self,
        rating: int,
        *,
        channel: str = "digital",
        transaction_id: str | None = None,
        at: Any = None,
        count: int = 1,
    ) -> None:
        """An answer to the satisfaction question, 1 (very dissatisfied) to 5 (very satisfied).

        Tied to a ``transaction_id``, it is one answer per transaction: the latest stands.
        """
        if self._strict:
            return self._strict_record(
                "satisfaction", self._caller_builder.satisfaction, rating, transaction_id, channel, at, count
            )
        q = self._queue
        item = (_SATISFACTION, rating, transaction_id, channel, _time() if at is None else at, count)
        if not self._running or len(q) >= self._max_queue:
            return self._slow_enqueue(item)
        q.append(item)
        return None

    def cost(
        self,
        amount_pence: int,
        *,
        period: str | None = None,
        cost_type: str,
        channel: str = "all",
        at: Any = None,
        count: int = 1,
    ) -> None:
        """Money spent on the service in a period (``2026-03``, ``2026-Q1`` or ``2026``).

        Without ``period``, the month of ``at`` (default now). Re-reporting the
        same period, cost type and channel replaces the earlier figure.
        """
        at = _time() if at is None else at
        if self._strict:
            return self._strict_record(
                "costs", self._caller_builder.cost, amount_pence, period, cost_type, channel, at, count
            )
        self._slow_enqueue((_COST, amount_pence, period, cost_type, channel, at, count))
        return None

    def record(self, data_type: str, *, at: Any = None, count: int = 1, **fields: Any) -> None:
        """Any record: a known data type by its fields, or a data type of the service's own."""
        at = _time() if at is None else at
        if self._strict:
            return self._strict_record(data_type, self._caller_builder.generic, data_type, fields, at, count)
        self._slow_enqueue((_GENERIC, data_type, fields, at, count))
        return None

    def submit(
        self, data_type: str, records: list[dict[str, Any]], *, timeout: float | None = None, validated: bool = False
    ) -> int:
        """Hand the pipeline records already built, ids included (backfill, replays).

        Unlike the recording calls this *waits* for room in the queue instead of
        refusing, because a script loading history wants back-pressure, not
        loss; it returns how many records were accepted (all, unless ``timeout``
        ran out or the tracker is closed). Records are validated in the
        background like any other, and a bad one is refused and reported;
        ``validated=True`` says they are the output of
        :func:`~perf_sdk._records.validate_records` already, and skips that
        second pass (unless a ``before_send`` hook may have changed them).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        accepted = 0
        kind = _VALIDATED if validated and self.before_send is None else _BUILT
        try:
            if not self._running:
                self._ensure_started()
            for record in records:
                while len(self._queue) >= self._max_queue:
                    if self._closed or (deadline is not None and time.monotonic() >= deadline):
                        return accepted
                    self._wake_writer.set()
                    with self._drained:
                        self._drained.wait(0.05)
                if self._closed:
                    return accepted
                self._queue.append((kind, data_type, record))
                accepted += 1
        except Exception as exc:
            self._refuse(exc, [])
        return accepted

    def _slow_enqueue(self, item: tuple[Any, ...]) -> None:
        """The path the hot path leaves for: first call, closed tracker, full queue, after fork."""
        try:
            if os.getpid() != self._pid:  # pragma: no cover - register_at_fork normally did this
                self._after_fork_in_child()
            if self._closed:
                self._refuse(PerfSdkError("the tracker is closed; the record was not accepted"), [])
                return
            if not self._running:
                self._ensure_started()
            if len(self._queue) >= self._max_queue and not self._wait_for_room():
                spool = self._spool
                why = (
                    "the spool's disk is full"
                    if spool is not None and spool.full_since is not None
                    else "the spool cannot keep up (disk too slow?)"
                )
                self._refuse(
                    PerfSdkError(
                        f"the in-memory queue is full ({self._max_queue} records waiting for the writer): "
                        f"the record was not accepted; {why}"
                    ),
                    [],
                )
                return
            self._queue.append(item)
        except Exception as exc:  # the host must never see our failures
            self._refuse(exc, [])

    def _wait_for_room(self) -> bool:
        deadline = time.monotonic() + self.settings.max_block
        self._wake_writer.set()
        while len(self._queue) >= self._max_queue:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._running:
                return False
            with self._drained:
                self._drained.wait(min(remaining, 0.05))
        return True

    def _strict_record(self, data_type: str, build: Callable[..., dict[str, Any] | None], *args: Any) -> None:
        """Strict mode: build and validate on the caller's thread, raising what is wrong."""
        at_index = -2
        args_l = list(args)
        if args_l[at_index] is None:
            args_l[at_index] = _time()
        record = build(*args_l)
        if record is None:  # left out by sampling
            self.stats.add("sampled_out")
            return
        good, bad = validate_records(data_type, [record])
        if bad:
            raise bad[0][1]
        self._slow_enqueue((_BUILT, data_type, good[0]))

    # lifecycle -------------------------------------------------------------------------------------
    def open(self) -> Tracker:
        """Start the background workers now rather than at the first record.

        Cheap on purpose: it only starts a thread, since the slow parts (the
        spool file, the HTTP client and its TLS context) are opened by the
        writer. Idempotent; a closed tracker stays closed. Frameworks call it
        at start-up (the ASGI lifespan, ``AsyncTracker.open``).
        """
        self._ensure_started()
        return self

    def _ensure_started(self) -> None:
        """Start the writer thread (the first record, or the first after a fork)."""
        with self._lifecycle:
            if self._running or self._closed:
                return
            self._writer_stop = False
            self._writer = threading.Thread(target=self._writer_loop, name="perf-sdk-writer", daemon=True)
            self._writer.start()
            self._running = True

    def _open_pipeline(self) -> bool:
        """Open spool, transport and uploader (on the writer thread); False if it failed."""
        s = self.settings
        try:
            spool = Spool(s.spool_dir, max_bytes=s.max_spool_bytes)
            transport = self._transport_given or HttpTransport(
                s.endpoint or "",
                s.service,
                {t: s.token_for(t) for t in DATA_TYPES},
                default_token=s.token.get_secret_value() if s.token else None,
                timeout=s.timeout,
                gzip_threshold=s.gzip_threshold,
                ca_bundle=s.ca_bundle,
            )
        except Exception as exc:
            self.stats.error(f"could not open the spool: {exc}")
            logger.error("perf_sdk: could not open the spool in %s (%s); records wait in memory", s.spool_dir, exc)
            return False
        uploader = Uploader(
            spool,
            transport,
            self.stats,
            batch_size=s.batch_size,
            batch_bytes=s.batch_bytes,
            retry_initial=s.retry_initial,
            retry_max=s.retry_max,
            pause_seconds=s.pause_seconds,
            on_error=self.on_error,
            on_dead_letter=self.on_dead_letter,
        )
        self._spool, self._transport, self._uploader = spool, transport, uploader
        uploader.start()
        logger.debug("perf_sdk: spool %s open; uploading to %r", spool.path, transport)
        return True

    def flush(self, timeout: float = 10.0) -> FlushResult:
        """Wait until every accepted record is stored by the platform, or ``timeout`` passes.

        Includes records adopted from dead processes' spools. Returns early when
        all that is left is dead-lettered or belongs to a paused data set (a
        configuration problem waiting would not fix).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            if self._closed:
                return FlushResult(0, 0, (), False)
            self._ensure_started()
            self._wait_for_writer(deadline)
            uploader, spool = self._uploader, self._spool
            if uploader is None or spool is None:  # the spool could not be opened
                return FlushResult(len(self._queue), 0, (), True)
            with uploader.progress:
                uploader.wake(adopt=True, probe_paused=True)
                target = uploader.passes + 2  # a full pass that began after this call
                while True:
                    pending, _, _ = spool.depth()
                    paused = uploader.paused_datasets()
                    passed = uploader.passes >= target
                    if pending == 0 and passed and not self._queue:
                        return FlushResult(0, spool.dead_count(), paused, False)
                    if pending and passed and paused and set(spool.datasets()) <= set(paused):
                        return FlushResult(pending, spool.dead_count(), paused, False)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not uploader.alive:
                        return FlushResult(pending + len(self._queue), spool.dead_count(), paused, True)
                    uploader.wake()
                    uploader.progress.wait(min(remaining, 0.5))
        except Exception as exc:
            logger.exception("perf_sdk: flush failed: %s", exc)
            return FlushResult(len(self._queue), 0, (), True)

    def persist(self, timeout: float = 5.0) -> bool:
        """Wait until every record accepted so far is committed to the spool on disk.

        Normally unnecessary (the writer commits within ``commit_interval``);
        useful before a process is about to be killed, and in tests.
        """
        try:
            if self._closed or not self._running:
                return not self._queue
            self._wait_for_writer(time.monotonic() + max(0.0, timeout))
            return not self._queue and not self._unspooled
        except Exception:  # pragma: no cover
            logger.exception("perf_sdk: persist failed")
            return False

    def _wait_for_writer(self, deadline: float) -> None:
        """Until one full drain that began after this call has committed."""
        with self._drained:
            target = self._drains + 2
            self._wake_writer.set()
            while self._drains < target and self._writer is not None and self._writer.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._wake_writer.set()
                self._drained.wait(min(remaining, 0.5))

    def close(self, timeout: float = 10.0) -> FlushResult:
        """Flush for up to ``timeout`` seconds, then stop the workers.

        Whatever is not delivered by then stays in the spool file, and the next
        tracker on the same ``spool_dir`` delivers it. Always returns within
        ``timeout`` (plus a few milliseconds), even with the platform hanging.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        if self._closed:
            return FlushResult(0, 0, (), False)
        result = self.flush(max(0.0, deadline - time.monotonic())) if self._running else FlushResult(0, 0, (), False)
        with self._lifecycle:
            self._closed = True
            self._running = False
            self._stop_workers(deadline)
        atexit.unregister(self._atexit)
        return result

    def _stop_workers(self, deadline: float) -> None:
        writer, uploader, spool = self._writer, self._uploader, self._spool
        if writer is not None:
            self._writer_stop = True
            self._wake_writer.set()
            writer.join(max(0.05, deadline - time.monotonic()))
        uploader_stopped = uploader.stop(max(0.0, deadline - time.monotonic())) if uploader else True
        if spool is not None and (writer is None or not writer.is_alive()):
            self._commit_unspooled(force=True)
            spool.close()
        if uploader_stopped and self._transport is not None and self._transport_given is None:
            self._transport.close()

    def _atexit(self) -> None:
        try:
            self.close(self.settings.exit_timeout)
        except Exception:  # pragma: no cover - never block interpreter exit
            logger.exception("perf_sdk: error while closing at exit")

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def health(self) -> Health:
        """Spool depth, age of the oldest pending record, last success and error, dead letters."""
        depth, oldest, dead = 0, None, 0
        spool = self._spool
        if spool is not None and not spool.closed:
            try:
                depth, _, oldest_at = spool.depth()
                oldest = (time.time() - oldest_at) if oldest_at is not None else None
                dead = spool.dead_count()
            except Exception as exc:  # a health check must answer
                self.stats.error(f"health: {exc}")
        return Health(
            spool_depth=depth + len(self._queue),
            oldest_pending_age=oldest,
            last_success=self.stats.last_success,
            last_error=self.stats.last_error,
            dead_letters=dead,
            paused=self._uploader.paused_datasets() if self._uploader else (),
            counters=self.stats.snapshot(),
        )

    # fork ------------------------------------------------------------------------------------------
    def _after_fork_in_child(self) -> None:
        """A pre-forking server made a worker: it gets its own queue, spool and threads.

        The parent keeps (and delivers) everything it accepted before the fork;
        the child drops its inherited copy, so nothing is sent twice. Inherited
        SQLite and HTTP connections are abandoned, never used or closed.
        """
        if self._spool is not None:
            self._spool.abandon_after_fork()
        if self._transport is not None and self._transport_given is None:
            _ABANDONED_TRANSPORTS.append(self._transport)
        self._init_process_state()
        if not self._closed:
            atexit.register(self._atexit)

    # the writer ------------------------------------------------------------------------------------
    def _writer_loop(self) -> None:
        builder = RecordBuilder(self.service, self._secret, self.settings.sample_every)
        interval = self.settings.commit_interval
        while not self._open_pipeline():
            if self._writer_stop:
                return
            self._wake_writer.wait(1.0)
            self._wake_writer.clear()
        while True:
            self._wake_writer.wait(interval)
            self._wake_writer.clear()
            stopping = self._writer_stop
            try:
                self._drain(builder)
            except Exception as exc:
                logger.exception("perf_sdk: writer error: %s", exc)
                self.stats.error(f"writer: {type(exc).__name__}: {exc}")
            with self._drained:
                self._drains += 1
                self._drained.notify_all()
            if stopping:
                return

    def _drain(self, builder: RecordBuilder) -> None:
        q = self._queue
        popleft = q.popleft
        limit = 2_000  # one chunk's validation and JSON hold the GIL: keep it to ~1 ms
        while q or self._unspooled:
            if not self._commit_unspooled():
                return  # the disk refuses; keep the queue (bounded) and try next time
            items: list[tuple[Any, ...]] = []
            append = items.append
            try:
                for _ in range(limit):
                    append(popleft())
            except IndexError:
                pass
            if items:
                self._process(builder, items)
            with self._drained:
                self._drained.notify_all()

    def _process(self, builder: RecordBuilder, items: list[tuple[Any, ...]]) -> None:
        self.stats.add("accepted", len(items))
        by_type: dict[str, list[Any]] = {}  # records, or None where sampling left one out
        trusted: dict[str, list[dict[str, Any]]] = {}
        transaction, satisfaction, cost, generic = (
            builder.transaction,
            builder.satisfaction,
            builder.cost,
            builder.generic,
        )
        txns: list[Any] = []
        for item in items:
            kind = item[0]
            try:
                if kind == _COMPLETE:
                    txns.append(transaction("completed", item[1], item[2], item[3], item[4]))
                elif kind == _START:
                    txns.append(transaction("started", item[1], item[2], item[3], item[4]))
                elif kind == _SATISFACTION:
                    by_type.setdefault("satisfaction", []).append(satisfaction(*item[1:]))
                elif kind == _COST:
                    by_type.setdefault("costs", []).append(cost(*item[1:]))
                elif kind == _GENERIC:
                    by_type.setdefault(item[1], []).append(generic(item[1], item[2], item[3], item[4]))
                elif kind == _BUILT:
                    by_type.setdefault(item[1], []).append(item[2])
                else:  # _VALIDATED
                    trusted.setdefault(item[1], []).append(item[2])
            except ValidationError as exc:
                self._refuse(exc, [])
            except Exception as exc:
                self._refuse(PerfSdkError(f"could not build the record: {type(exc).__name__}: {exc}"), [])
        if txns:
            by_type.setdefault("transactions", []).extend(txns)
        if builder.sample_every > 1:  # builders return None for what sampling leaves out
            for data_type, records in by_type.items():
                kept = [r for r in records if r is not None]
                self.stats.add("sampled_out", len(records) - len(kept))
                by_type[data_type] = kept
        segments: list[tuple[str, int, bytes]] = []
        size = self.settings.batch_size
        for data_type in by_type.keys() | trusted.keys():
            records = by_type.get(data_type, [])
            candidates = self._apply_before_send(records) if self.before_send is not None else records
            good, bad = validate_records(data_type, candidates) if candidates else ([], [])
            for index, error in bad:
                self._refuse(error, [candidates[index]])
            good.extend(trusted.get(data_type, ()))
            self.stats.journeys(data_type, good)
            dataset = f"{self.service}/{data_type}"
            for i in range(0, len(good), size):
                chunk = good[i : i + size]
                segments.append((dataset, len(chunk), pydantic_core.to_json(chunk)))
        if segments:
            self._unspooled.extend(segments)
            self._commit_unspooled()

    def _apply_before_send(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        hook = self.before_send
        assert hook is not None
        out = []
        for record in records:
            try:
                result = hook(record)
            except Exception as exc:
                self._refuse(PerfSdkError(f"before_send raised {type(exc).__name__}: {exc}"), [record])
                continue
            if result is not None:
                out.append(result)
        return out

    def _commit_unspooled(self, force: bool = False) -> bool:
        """Group-commit what the writer built; False when the disk refused (kept for later)."""
        spool = self._spool
        if not self._unspooled or spool is None or spool.closed:
            return True
        if spool.should_hold_appends() and not force:
            return False  # the disk is full: deliveries first, they free room
        pending, self._unspooled = self._unspooled, []
        room: list[tuple[str, int, bytes]] = []
        for dataset, n, body in pending:
            if spool.has_room(len(body) + sum(len(seg[2]) for seg in room)):
                room.append((dataset, n, body))
            else:
                self._refuse(
                    PerfSdkError(
                        f"the spool is full (max_spool_bytes={self.settings.max_spool_bytes}): {n} record(s) of "
                        f"{dataset} not accepted; the platform has been unreachable for a long time?"
                    ),
                    [],
                    count=n,
                )
        try:
            spool.append(room, _time())
        except Exception as exc:
            self._unspooled = room + self._unspooled
            self.stats.error(f"spool: {exc}")
            now = time.monotonic()
            if now >= self._quiet_until:  # once a minute, not once a commit
                self._quiet_until = now + 60.0
                logger.error(
                    "perf_sdk: could not write the spool (%s); %d record(s) kept in memory and retried; new records "
                    "are refused once %d are waiting",
                    exc,
                    sum(n for _, n, _ in self._unspooled),
                    self._max_queue,
                )
            return False
        self.stats.add("spooled", sum(n for _, n, _ in room))
        if self._uploader is not None:
            self._uploader.wake()
        return True

    def _refuse(self, error: BaseException, records: list[dict[str, Any]], count: int = 1) -> None:
        self.stats.refuse(count)
        self.stats.error(str(error))
        logger.warning("perf_sdk: record refused: %s", error)
        if self.on_error is not None:
            try:
                self.on_error(error, records)
            except Exception:
                logger.exception("perf_sdk: on_error hook raised; ignored")


_ABANDONED_TRANSPORTS: list[Transport] = []


def _after_fork_in_child() -> None:
    for tracker in list(_LIVE):
        try:
            tracker._after_fork_in_child()
        except Exception:  # pragma: no cover
            logger.exception("perf_sdk: could not reset a tracker after fork")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
