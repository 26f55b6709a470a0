"""Tracker: the calls a service makes, and the lifecycle of the pipeline behind them.

The first stage of recording → writer → spool → uploader → transport. The hot
path (``start``, ``complete``, ``satisfaction``, ``cost``, ``record``) appends
one tuple to the writer's queue and returns: no lock, no disk, no network, no
validation, well under a microsecond. The writer (:mod:`perf_sdk._writer`)
builds and validates records and group-commits them to the spool every
``commit_interval`` (50 ms); the uploader sends the spool to the platform. So a
record is on disk within ``commit_interval`` plus one commit after the call
returns (documented as 200 ms).

Three ways to run, decided at construction:

* **the pipeline** (the default): the writer, spool, uploader and transport;
* **a sink** (``sink=``): every record is built and validated on the caller's
  thread and handed to the sink (:class:`perf_sdk.RecordSink`), with no thread,
  disk or network: :mod:`perf_sdk.testing` captures records this way;
* **disabled** (no endpoint configured, or ``enabled=False`` /
  ``PERF_SDK_ENABLED=0``): calls are accepted and dropped, after one INFO log
  line, like Sentry without a DSN; ``strict`` still validates.

The host is never crashed: in the default mode nothing in these calls can raise;
a refused record is logged under the ``perf_sdk`` logger, counted in
``health()``, reported by the next ``flush()`` and passed to ``on_error``.
``strict=True`` raises :class:`~perf_sdk.ValidationError` at the call instead.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from perf_sdk._config import Settings
from perf_sdk._errors import ConfigurationError, PerfSdkError, ValidationError
from perf_sdk._protocol import DATA_TYPES, SLUG_RE
from perf_sdk._records import RecordBuilder, unencodable_field, validate_records
from perf_sdk._spool import Spool, ensure_spool_dir
from perf_sdk._telemetry import Health, Stats
from perf_sdk._transport import HttpTransport, Transport
from perf_sdk._uploader import Uploader
from perf_sdk._writer import (
    BUILDERS,
    BUILT,
    COMPLETE,
    COST,
    GENERIC,
    MARK,
    SATISFACTION,
    START,
    VALIDATED,
    Outbox,
    Refusal,
    Writer,
    build,
)

__all__ = ["FlushResult", "RecordSink", "Tracker"]

logger = logging.getLogger("perf_sdk")

_time = time.time
ErrorHook = Callable[[BaseException, list[dict[str, Any]]], None]
BeforeSend = Callable[[dict[str, Any]], "dict[str, Any] | None"]

_LIVE: weakref.WeakSet[Tracker] = weakref.WeakSet()


@dataclass(frozen=True)
class FlushResult:
    """What ``flush()`` or ``close()`` left undone. Truthy only when everything accepted is stored.

    ``pending``: records accepted and not yet stored by the platform (they stay
    in the spool, and the next tracker on the same ``spool_dir`` delivers them).
    ``refused``: records refused since the previous ``flush()`` (invalid input,
    a full queue or spool; each was reported to ``on_error`` and the log).
    ``unpersisted``: records ``close()`` could not write to the spool (no spool
    could be opened, or the disk refused until the deadline); logged at ERROR.
    """

    pending: int
    dead_letters: int
    paused: tuple[str, ...]
    timed_out: bool
    refused: int = 0
    unpersisted: int = 0

    def __bool__(self) -> bool:
        return self.pending == 0 and self.refused == 0 and self.unpersisted == 0


@runtime_checkable
class RecordSink(Protocol):
    """Where a :class:`Tracker` built with ``sink=`` hands its validated records.

    The seam for tests and other destinations, like OpenTelemetry's span
    exporters: ``write`` receives records already built (ids, hashed
    transaction ids, timestamps) and validated, on the recording caller's
    thread, so it should be quick. :class:`perf_sdk.testing.InMemorySink` keeps
    them in a list.
    """

    def write(self, data_type: str, records: list[dict[str, Any]]) -> None: ...


class _DroppingSink:
    """A disabled tracker's sink: validated records go nowhere."""

    def write(self, data_type: str, records: list[dict[str, Any]]) -> None:
        return None


def _check_hook(name: str, hook: object, arity: int) -> None:
    """A hook that cannot take its arguments fails at construction, not as a swallowed traceback later."""
    if hook is None:
        return
    if not callable(hook):
        raise ConfigurationError(f"{name} must be a function, got {type(hook).__name__}")
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return
    try:
        signature.bind(*([None] * arity))
    except TypeError:
        wanted = "(error, records)" if arity == 2 else "(record)"
        raise ConfigurationError(
            f"{name} must accept {arity} positional argument(s) {wanted}; {getattr(hook, '__name__', hook)!r} "
            f"has the signature {signature}"
        ) from None


class Tracker:
    """Records a service's transactions, satisfaction answers and costs.

    >>> tracker = Tracker(service="apply-for-a-licence", endpoint="https://perf.example.gov.uk",
    ...                   token="...", secret="...")  # doctest: +SKIP
    >>> tracker.start("txn-123", channel="digital")  # doctest: +SKIP

    Arguments fall back to ``PERF_SDK_*`` environment variables (every option,
    its variable and its default: ``docs/reference/configuration.md``). With no
    endpoint configured the tracker is disabled: it accepts calls and drops
    them (one INFO log line says so).

    Hooks, all called from the SDK's background threads and never allowed to
    raise into it, checked at construction: ``on_error(error, records)`` for
    anything refused or failing, ``on_dead_letter(error, records)`` for records
    the platform refused for good, ``before_send(record) -> record | None`` to
    enrich or drop a record before it is validated and spooled. OpenTelemetry:
    ``tracer_provider`` and ``meter_provider`` (default: the global ones), and
    ``kpi_metrics=True`` for the service's own journey counters.
    ``transport`` replaces the HTTP transport (other protocols); ``sink``
    replaces the whole pipeline (:class:`RecordSink`; tests).
    """

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
        enabled: bool | None = None,
        on_error: ErrorHook | None = None,
        on_dead_letter: ErrorHook | None = None,
        before_send: BeforeSend | None = None,
        transport: Transport | None = None,
        sink: RecordSink | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        kpi_metrics: bool = False,
        **options: Any,
    ) -> None:
        _check_hook("on_error", on_error, 2)
        _check_hook("on_dead_letter", on_dead_letter, 2)
        _check_hook("before_send", before_send, 1)
        if sink is not None and not isinstance(sink, RecordSink):
            raise ConfigurationError(f"sink must have a write(data_type, records) method, got {type(sink).__name__}")
        self.settings = Settings.resolve(
            need_endpoint=transport is None and sink is None,
            allow_disabled=sink is None,
            service=service,
            endpoint=endpoint,
            read_endpoint=read_endpoint,
            token=token,
            tokens=dict(tokens) if tokens else None,
            secret=secret,
            spool_dir=Path(spool_dir) if spool_dir is not None else None,
            strict=strict,
            debug=debug,
            enabled=enabled,
            **options,
        )
        s = self.settings
        if s.debug:
            # Like sentry's debug=True: the SDK's own story on stderr, through logging, never print.
            logger.setLevel(logging.DEBUG)
            if not logger.handlers:
                handler = logging.StreamHandler()
                handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
                logger.addHandler(handler)
        self.enabled = s.enabled
        if not s.enabled:
            logger.info("perf_sdk: disabled (%s); records are accepted and dropped", s.disabled_reason)
            sink = _DroppingSink()
        self.sink = sink
        if sink is None:
            ensure_spool_dir(s.spool_dir)
        self.service = s.service
        self.on_error = on_error
        self.on_dead_letter = on_dead_letter
        self._transport_given = transport
        self._strict = s.strict
        self._max_queue = s.max_queue
        self._secret = s.secret.get_secret_value() if s.secret else None
        if self._secret is None and not s.enabled:
            # Switched off, nothing leaves the process: strict mode still checks transaction ids
            # with a key of this process's own rather than refusing every one for want of a secret.
            self._secret = os.urandom(32).hex()
        self._caller_builder = RecordBuilder(s.service, self._secret, s.sample_every)
        #: Build on the caller's thread: strict mode, a sink, or disabled.
        self._direct = self._strict or sink is not None
        self._drop_all = not s.enabled and not self._strict
        self.stats = Stats()
        self.stats.instrument(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            kpi_metrics=kpi_metrics,
            spool_view=_weak_spool_view(self),
        )
        self._refused_reported = 0
        self._refusal_lock = threading.Lock()
        self._log_window = (0.0, 0)  # (window start, refusals logged in it): see _refuse
        self._closed = False
        self._closing = False
        self._close_result: FlushResult | None = None
        self._close_done = threading.Event()
        self._writer = Writer(
            builder=lambda: RecordBuilder(self.service, self._secret, self.settings.sample_every),
            open_outbox=self._open_pipeline,
            refuse=self._report,
            stats=self.stats,
            commit_interval=s.commit_interval,
            batch_size=s.batch_size,
            max_spool_bytes=s.max_spool_bytes,
            before_send=before_send,
            on_spooled=self._spooled,
            on_spool_lost=self._reopen_spool,
        )
        self._init_process_state()
        _LIVE.add(self)  # weakly: interpreter exit closes it (see _close_all_at_exit), and a dropped one is freed

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has begun: new records are refused."""
        return self._closed

    @property
    def before_send(self) -> BeforeSend | None:
        return self._writer.before_send

    @before_send.setter
    def before_send(self, hook: BeforeSend | None) -> None:
        _check_hook("before_send", hook, 1)
        self._writer.before_send = hook

    def _init_process_state(self) -> None:
        """State that belongs to one process: rebuilt from scratch in a forked child."""
        self._writer.reset_after_fork()
        self._queue = self._writer.queue
        self._running = False
        self._lifecycle = threading.Lock()
        self._spool: Spool | None = None
        self._uploader: Uploader | None = None
        self._transport: Transport | None = None
        self._pid = os.getpid()

    def _spool_view(self) -> tuple[int, float | None]:
        """(records waiting, oldest accepted_at), for the OpenTelemetry gauges."""
        spool = self._spool
        waiting = self._writer.pending()
        if spool is None or spool.closed:
            return waiting, None
        try:
            depth, _, oldest = spool.depth()
        except Exception:  # a metrics callback must not fail the exporter
            return waiting, None
        return depth + waiting, oldest

    def __repr__(self) -> str:
        state = "" if self.enabled else ", disabled"
        return (
            f"Tracker(service={self.service!r}, endpoint={self.settings.endpoint!r}, "
            f"spool_dir={str(self.settings.spool_dir)!r}, token=<redacted>, secret=<redacted>{state})"
        )

    # the hot path --------------------------------------------------------------------------------
    def start(
        self, transaction_id: str | None = None, *, channel: str = "digital", at: Any = None, count: int = 1
    ) -> None:
        """A transaction started. Starting the same ``transaction_id`` twice is stored once."""
        item = (START, transaction_id, channel, _time() if at is None else at, count)
        q = self._queue
        if self._direct or not self._running or len(q) >= self._max_queue:
            return self._slow_enqueue(item)
        q.append(item)
        return None

    def complete(
        self, transaction_id: str | None = None, *, channel: str = "digital", at: Any = None, count: int = 1
    ) -> None:
        """A transaction completed. Completing it twice (a refresh, a double submit) is stored once."""
        item = (COMPLETE, transaction_id, channel, _time() if at is None else at, count)
        q = self._queue
        if self._direct or not self._running or len(q) >= self._max_queue:
            return self._slow_enqueue(item)
        q.append(item)
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
        item = (SATISFACTION, rating, transaction_id, channel, _time() if at is None else at, count)
        q = self._queue
        if self._direct or not self._running or len(q) >= self._max_queue:
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
        self._slow_enqueue((COST, amount_pence, period, cost_type, channel, _time() if at is None else at, count))

    def record(self, data_type: str, *, at: Any = None, count: int = 1, **fields: Any) -> None:
        """Any record: a known data type by its fields, or a data type of the service's own."""
        self._slow_enqueue((GENERIC, data_type, fields, _time() if at is None else at, count))

    def mark(self, label: str, *, at: Any = None, description: str | None = None) -> None:
        """A change to the service (a release, a new form, a policy change), stored in the ``marks`` data set.

        ``perf-sdk kpis --around LABEL`` compares each KPI before and after it.
        Marking the same label at the same second twice is stored once.
        """
        self._slow_enqueue((MARK, label, description, _time() if at is None else at))

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
        kind = VALIDATED if validated and self.before_send is None else BUILT
        if not isinstance(data_type, str) or not SLUG_RE.fullmatch(data_type):
            error = ValidationError("data_type", data_type, "must be a lower-case slug, e.g. transactions")
            if self._strict:
                raise error
            self._refuse(error, [], count=len(records) if isinstance(records, list) else 1)
            return 0
        try:
            if self._closed:
                return 0
            if self._direct:
                for record in records:
                    self._slow_enqueue((BUILT, data_type, record))
                return len(records)
            self.open()
            q = self._queue
            for record in records:
                while len(q) >= self._max_queue:
                    if self._closed or (deadline is not None and time.monotonic() >= deadline):
                        return accepted
                    self._writer.wait_for_room(self._max_queue, time.monotonic() + 0.05)
                if self.closed:  # closed by another thread meanwhile
                    return accepted
                q.append((kind, data_type, record))
                accepted += 1
        except Exception as exc:
            self._refuse(exc, [])
        return accepted

    def transaction_record_id(self, transaction_id: str, stage: str = "completed") -> str:
        """The ``_id`` the platform stores for this transaction's start or completion.

        A keyed hash: it lets a service (or its tests) find its own records
        without the transaction id ever leaving the process in clear.
        """
        b = self._caller_builder
        return b.natural_id("transactions", stage, b.hash_transaction_id(transaction_id))

    def _slow_enqueue(self, item: tuple[Any, ...]) -> None:
        """The path the hot path leaves for: direct mode, first call, closed tracker, full queue, after fork."""
        if self._direct:
            return self._record_now(item)
        return self._enqueue(item)

    def _enqueue(self, item: tuple[Any, ...]) -> None:
        try:
            if os.getpid() != self._pid:  # pragma: no cover - register_at_fork normally did this
                self._after_fork_in_child()
            if self._closed:
                self._refuse(PerfSdkError("the tracker is closed; the record was not accepted"), [])
                return
            if not self._running:
                self.open()
            if len(self._queue) >= self._max_queue and not self._writer.wait_for_room(
                self._max_queue, time.monotonic() + self.settings.max_block
            ):
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
        return

    def _record_now(self, item: tuple[Any, ...]) -> None:
        """Strict mode, a sink, or disabled: build and validate on the caller's thread.

        In strict mode what is wrong raises here; otherwise it is refused and
        reported. Valid records go to the sink, or to the writer's queue as
        already-validated records.
        """
        if self._drop_all:
            return None
        if self._closed:
            self._refuse(PerfSdkError("the tracker is closed; the record was not accepted"), [])
            return None
        try:
            data_type, record = self._build_now(item)
        except ValidationError as exc:
            if self._strict:
                raise
            self._refuse(exc, [])
            return None
        except Exception as exc:  # pragma: no cover - _build_now wraps what it can
            self._refuse(exc, [])
            return None
        if record is None:
            return None
        sink = self.sink
        if sink is None:  # strict mode on the pipeline: the writer takes it from here
            return self._enqueue((VALIDATED, data_type, record))
        try:
            sink.write(data_type, [record])
        except Exception as exc:
            self._refuse(PerfSdkError(f"the sink raised {type(exc).__name__}: {exc}"), [record])
        return None

    def _build_now(self, item: tuple[Any, ...]) -> tuple[str, dict[str, Any] | None]:
        try:
            data_type, record = BUILDERS[item[0]](self._caller_builder, item)
        except ValidationError:
            raise
        except Exception as exc:
            raise ValidationError("record", None, f"could not be built ({type(exc).__name__}: {exc})") from None
        if record is None:  # left out by sampling
            self.stats.add("sampled_out")
            return data_type, None
        hook = self.before_send
        if hook is not None:
            try:
                changed: object = hook(record)
            except Exception as exc:
                raise ValidationError("before_send", None, f"raised {type(exc).__name__}: {exc}") from None
            if changed is None:
                return data_type, None
            if not isinstance(changed, dict):
                raise ValidationError("before_send", type(changed).__name__, "must return the record (a dict) or None")
            record = changed
        bad_text = unencodable_field(record)
        if bad_text is not None:
            raise ValidationError(bad_text[0], bad_text[1], "must be valid Unicode text (it holds a lone surrogate)")
        good, bad = validate_records(data_type, [record])
        if bad:
            error = bad[0][1]
            if error.field == "_timestamp":  # the caller passed it as at=
                raise ValidationError("at", error.value, error.rule)
            raise error
        if self.sink is not None:  # otherwise the writer counts it, as any queued record
            self.stats.add("accepted")
            self.stats.journeys(data_type, good)
        return data_type, good[0]

    # lifecycle -------------------------------------------------------------------------------------
    def open(self) -> Tracker:
        """Start the background workers now rather than at the first record.

        Cheap on purpose: it only starts a thread, since the slow parts (the
        spool file, the HTTP client and its TLS context) are opened by the
        writer. Idempotent; a closed tracker stays closed. Frameworks call it
        at start-up (the ASGI lifespan, ``AsyncTracker.open``).
        """
        if self.sink is not None:
            return self
        with self._lifecycle:
            if self._running or self._closed:
                return self
            self._writer.start()
            self._running = True
        return self

    def _open_pipeline(self) -> Outbox | None:
        """Open spool, transport and uploader (on the writer thread); None if it failed."""
        s = self.settings
        try:
            spool = Spool(s.spool_dir, max_bytes=s.max_spool_bytes)
        except Exception as exc:
            self.stats.error(f"could not open the spool: {exc}")
            logger.error("perf_sdk: could not open the spool in %s (%s); records wait in memory", s.spool_dir, exc)
            return None
        try:
            transport = self._transport or self._transport_given or self._make_transport()
        except Exception as exc:
            spool.close()
            self.stats.error(f"could not create the transport: {exc}")
            logger.error("perf_sdk: could not create the HTTP client (%s); records wait on disk", exc)
            return None
        self._start_uploader(spool, transport)
        logger.debug("perf_sdk: spool %s open; uploading to %r", spool.path, transport)
        return spool

    def _make_transport(self) -> Transport:
        s = self.settings
        return HttpTransport(
            s.endpoint or "",
            s.service,
            {t: s.token_for(t) for t in DATA_TYPES},
            default_token=s.token.get_secret_value() if s.token else None,
            timeout=s.timeout,
            gzip_threshold=s.gzip_threshold,
            ca_bundle=s.ca_bundle,
            # A server never receives the secret; scrubbing it from what servers say is a second guard.
            redact=(s.secret.get_secret_value(),) if s.secret else (),
        )

    def _start_uploader(self, spool: Spool, transport: Transport) -> None:
        s = self.settings
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

    def _reopen_spool(self, error: BaseException) -> Outbox | None:
        """The writer lost its spool (replaced or truncated under it): a fresh spool and uploader."""
        old_spool, old_uploader = self._spool, self._uploader
        if old_uploader is not None:
            old_uploader.stop(5.0)
        if old_spool is not None:
            try:
                old_spool.close()
            except Exception as exc:  # pragma: no cover - it is already broken
                logger.debug("perf_sdk: closing the lost spool: %s", exc)
        self._spool = self._uploader = None
        return self._open_pipeline()

    def _spooled(self) -> None:
        uploader = self._uploader
        if uploader is not None:
            uploader.wake()

    def flush(self, timeout: float = 10.0) -> FlushResult:
        """Wait until every accepted record is stored by the platform, or ``timeout`` passes.

        Includes records adopted from dead processes' spools. Returns early when
        all that is left is dead-lettered or belongs to a paused data set (a
        configuration problem waiting would not fix). The result is falsy if
        anything is left, or if records were refused since the last flush.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            result = self._flush(deadline)
        except Exception as exc:
            logger.exception("perf_sdk: flush failed: %s", exc)
            result = FlushResult(self._writer.pending(), 0, (), True)
        return replace(result, refused=self._take_refused())

    def _take_refused(self) -> int:
        with self._refusal_lock:  # two flushes at once report each refusal once
            refused = self.stats.refused
            new, self._refused_reported = refused - self._refused_reported, refused
        return new

    def _flush(self, deadline: float) -> FlushResult:
        if self._closed:
            # What close() left (for the next process); while close() runs, what is still pending.
            done = self._close_result
            return done if done is not None else FlushResult(self._writer.pending(), 0, (), True)
        if self.sink is not None:
            return FlushResult(0, 0, (), False)
        self.open()
        self._writer.wait_drained(deadline)
        uploader, spool = self._uploader, self._spool
        if uploader is None or spool is None:  # the spool could not be opened
            return FlushResult(self._writer.pending(), 0, (), True)
        with uploader.progress:
            uploader.wake(adopt=True, probe_paused=True)
            target = uploader.passes + 2  # a full pass that began after this call
            while True:
                pending, _, _ = spool.depth()
                paused = uploader.paused_datasets()
                passed = uploader.passes >= target
                queued = self._writer.pending()
                if pending == 0 and passed and not queued:
                    return FlushResult(0, spool.dead_count(), paused, False)
                if pending and passed and paused and set(spool.datasets()) <= set(paused):
                    return FlushResult(pending + queued, spool.dead_count(), paused, False)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not uploader.alive:
                    return FlushResult(pending + queued, spool.dead_count(), paused, True)
                uploader.wake()
                uploader.progress.wait(min(remaining, 0.5))

    def persist(self, timeout: float = 5.0) -> bool:
        """Wait until every record accepted so far is committed to the spool on disk.

        Normally unnecessary (the writer commits within ``commit_interval``);
        useful before a process is about to be killed, and in tests.
        """
        try:
            if self.sink is not None:
                return True
            if self._closed or not self._running:
                return self._writer.pending() == 0
            self._writer.wait_drained(time.monotonic() + max(0.0, timeout))
            return self._writer.pending() == 0
        except Exception:  # pragma: no cover
            logger.exception("perf_sdk: persist failed")
            return False

    def close(self, timeout: float = 10.0) -> FlushResult:
        """Deliver for up to ``timeout`` seconds, then stop the workers.

        ``timeout`` bounds waiting *for the platform*, never persisting: when
        ``close()`` returns, every accepted record is stored by the platform or
        in the spool file (the next tracker on the same ``spool_dir`` delivers
        it), or it is counted in ``unpersisted`` (no spool could be opened, or
        the disk refused), logged at ERROR. Persisting 50,000 queued records
        takes a fraction of a second; only a writer that cannot make progress
        is abandoned at the deadline (and at most 30 s after it).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lifecycle:
            already = self._closing
            self._closing = True
        if already:  # another close() is running or has run: wait for it, report what it found
            self._close_done.wait(max(0.0, deadline - time.monotonic()))
            done = self._close_result
            return done if done is not None else FlushResult(self._writer.pending(), 0, (), True)
        try:
            result = self._close(deadline)
        except Exception as exc:  # pragma: no cover - close must answer
            logger.exception("perf_sdk: close failed: %s", exc)
            result = FlushResult(self._writer.pending(), 0, (), True)
        self._close_result = result
        self._close_done.set()
        return result

    def _close(self, deadline: float) -> FlushResult:
        if self.sink is not None:
            self._closed = True
            return FlushResult(0, 0, (), False, refused=self._take_refused())
        on_sdk_thread = self._writer.on_writer_thread or (
            self._uploader is not None and threading.current_thread() is getattr(self._uploader, "_thread", None)
        )
        result = (
            self.flush(max(0.0, deadline - time.monotonic()))
            if self._running and not on_sdk_thread
            else FlushResult(0, 0, (), False)
        )
        with self._lifecycle:
            self._closed = True
            self._running = False
        lost = self._writer.stop(deadline)
        if on_sdk_thread:
            # close() from a hook: the writer finishes (persisting everything) once the hook returns, and
            # interpreter exit sweeps and closes the rest; nothing can be joined from here.
            if self._uploader is not None:
                self._uploader.stop(0.0)
            return FlushResult(self._writer.pending(), 0, (), True, refused=self._take_refused())
        pending = self._stop_workers(deadline)
        return replace(
            result,
            pending=pending + lost,
            unpersisted=lost,
            timed_out=result.timed_out,
            refused=result.refused + self._take_refused(),
        )

    def _stop_workers(self, deadline: float) -> int:
        """Stop the uploader and close the spool; returns how many records the spool still holds."""
        uploader, spool = self._uploader, self._spool
        uploader_stopped = uploader.stop(max(0.0, deadline - time.monotonic())) if uploader else True
        pending = 0
        if spool is not None and not spool.closed:
            try:
                pending = spool.depth()[0]
            except Exception as exc:  # pragma: no cover - reporting only
                logger.debug("perf_sdk: spool depth at close: %s", exc)
            if not self._writer.running:
                spool.close()
        if uploader_stopped and self._transport is not None and self._transport_given is None:
            self._transport.close()
        return pending

    def _atexit(self) -> None:
        try:
            if self._closed:
                self._sweep_after_close()
            else:
                self.close(self.settings.exit_timeout)
        except Exception:  # pragma: no cover - never block interpreter exit
            logger.exception("perf_sdk: error while closing at exit")

    def _sweep_after_close(self) -> None:
        """Calls that raced with ``close()`` (appended after its last drain): spooled for the next process."""
        items = list(self._queue)
        self._queue.clear()
        if not items:
            return
        built = build(
            items,
            RecordBuilder(self.service, self._secret, self.settings.sample_every),
            batch_size=self.settings.batch_size,
            before_send=self.before_send,
        )
        for refusal in built.refusals:
            self._report(refusal)
        try:
            spool = Spool(self.settings.spool_dir, max_bytes=self.settings.max_spool_bytes)
            try:
                spool.append(built.segments, _time())
            finally:
                spool.close()
        except Exception as exc:
            self.stats.add("unpersisted", built.records)
            logger.error("perf_sdk: %d record(s) accepted during close() could not be spooled: %s", built.records, exc)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def health(self) -> Health:
        """Spool depth, age of the oldest pending record, last success and error, dead letters.

        Never raises: a health endpoint calling it must always get an answer.
        """
        try:
            return self._health()
        except Exception as exc:  # pragma: no cover - defensive: reported in the answer itself
            logger.exception("perf_sdk: health failed")
            return Health(
                spool_depth=self._writer.pending(),
                oldest_pending_age=None,
                last_success=self.stats.last_success,
                last_error=f"health: {type(exc).__name__}: {exc}",
                dead_letters=0,
                paused=(),
                counters=self.stats.snapshot(),
            )

    def _health(self) -> Health:
        depth, oldest, dead = 0, None, 0
        spool = self._spool
        if spool is not None and not spool.closed:
            try:
                depth, oldest_at, dead = spool.view()  # never waits for a commit's fsync
                oldest = (time.time() - oldest_at) if oldest_at is not None else None
            except Exception as exc:  # a health check must answer
                self.stats.error(f"health: {exc}")
        return Health(
            spool_depth=depth + self._writer.pending(),
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
        self.stats.reset_after_fork()  # a lock held by a parent thread at fork() would never be released here
        self._refusal_lock = threading.Lock()
        self._init_process_state()

    # reporting -------------------------------------------------------------------------------------
    def _log_refusal(self, error: BaseException) -> None:
        """One WARNING per refusal, up to 20 a minute: a service refusing every call must not flood its logs."""
        _log_refusal_throttled(self, error)

    def _report(self, refusal: Refusal) -> None:
        self._refuse(refusal.error, refusal.records, refusal.count)

    def _refuse(self, error: BaseException, records: list[dict[str, Any]], count: int = 1) -> None:
        self.stats.refuse(count)
        self.stats.error(str(error))
        self._log_refusal(error)
        if self.on_error is not None:
            try:
                self.on_error(error, records)
            except Exception:
                logger.exception("perf_sdk: on_error hook raised; ignored")


def _weak_spool_view(tracker: Tracker) -> Callable[[], tuple[int, float | None]]:
    """The gauges' callback without a strong reference: OpenTelemetry keeps callbacks for ever."""
    method = weakref.WeakMethod(tracker._spool_view)

    def view() -> tuple[int, float | None]:
        bound = method()
        return bound() if bound is not None else (0, None)

    return view


#: Refusals logged one by one per minute; past that, one line a minute says how many more.
_LOGGED_REFUSALS_PER_MINUTE = 20


def _log_refusal_throttled(tracker: Tracker, error: BaseException) -> None:
    now = time.monotonic()
    start, logged = tracker._log_window
    if now - start >= 60.0:
        if logged > _LOGGED_REFUSALS_PER_MINUTE:
            logger.warning(
                "perf_sdk: %d more record(s) refused in the last minute (not logged one by one; see health())",
                logged - _LOGGED_REFUSALS_PER_MINUTE,
            )
        start, logged = now, 0
    logged += 1
    tracker._log_window = (start, logged)
    if logged <= _LOGGED_REFUSALS_PER_MINUTE:
        logger.warning("perf_sdk: record refused: %s", error)


_ABANDONED_TRANSPORTS: list[Transport] = []


def _close_all_at_exit() -> None:
    """Interpreter exit: close every live tracker (persisting what it holds), sweep the closed ones."""
    for tracker in list(_LIVE):
        if tracker.sink is None:
            tracker._atexit()


atexit.register(_close_all_at_exit)


def _after_fork_in_child() -> None:
    for tracker in list(_LIVE):
        try:
            tracker._after_fork_in_child()
        except Exception:  # pragma: no cover
            logger.exception("perf_sdk: could not reset a tracker after fork")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
