"""The SDK's own health: counters for ``health()``, and OpenTelemetry for the service's stack.

Every stage reports through one :class:`Stats`: it keeps plain integers for
``Tracker.health()`` and forwards the same figures to OpenTelemetry. Only the
``opentelemetry-api`` package is a dependency: with no SDK configured by the
application every instrument is a no-op, and nothing is exported.

What a team sees once it configures an OpenTelemetry SDK:

* a span ``perf_sdk.upload`` per upload attempt, with the data set, the number
  of records and bytes, the HTTP status and the retry number (never a token);
* counters ``perf_sdk.records.accepted|refused|spooled|delivered|dead_lettered|unreadable``,
  ``perf_sdk.upload.retries``; a histogram ``perf_sdk.upload.duration`` (s);
  gauges ``perf_sdk.spool.depth`` (records) and ``perf_sdk.spool.oldest_age`` (s);
* opt-in (``kpi_metrics=True``), the service's own journeys as counters:
  ``perf_sdk.transactions{stage, channel}`` and ``perf_sdk.satisfaction{rating, channel}``,
  so a Collector, Prometheus or Grafana shows them beside everything else.

Counters are updated by the background threads in bulk (once per chunk), so
none of this costs the host's threads anything.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from perf_sdk._version import __version__

__all__ = ["Health", "Stats"]

_NAME = "perf_sdk"


@dataclass
class Stats:
    accepted: int = 0
    refused: int = 0
    spooled: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    #: Spooled records whose stored segment no longer read back: set aside raw, never sent (logged at ERROR).
    unreadable: int = 0
    sampled_out: int = 0
    retries: int = 0
    requests: int = 0
    adopted: int = 0
    #: Accepted records close() could not write to the spool (no spool, a full disk): logged at ERROR.
    unpersisted: int = 0
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    #: While the uploader waits to retry: what for, in words ("waiting for https://...:
    #: connection refused, retry 4 in 8 s; records are safe on disk"); None otherwise.
    waiting_for: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _otel: _Instruments | None = field(default=None, repr=False, compare=False)

    def instrument(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        kpi_metrics: bool = False,
        spool_view: Callable[[], tuple[int, float | None]] | None = None,
    ) -> None:
        """Create the OpenTelemetry instruments (global providers unless given)."""
        self._otel = _Instruments(tracer_provider, meter_provider, kpi_metrics, spool_view)

    # counting -----------------------------------------------------------------------------------
    def add(self, name: str, n: int = 1) -> None:
        """Add to a counter (``accepted``, ``spooled``, ``delivered``, ``dead_lettered``, ``retries`` ...)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)
        if self._otel is not None and n:
            self._otel.count(name, n)

    def reset_after_fork(self) -> None:
        """A forked child's fresh lock: the parent's may have been held by one of its threads at fork()."""
        self._lock = threading.Lock()

    def refuse(self, n: int = 1) -> None:
        self.add("refused", n)

    def error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = time.time()

    def delivered_now(self, n: int) -> None:
        self.add("delivered", n)
        self.last_success = time.time()

    def journeys(self, data_type: str, records: Iterable[dict[str, Any]]) -> None:
        """The service's own KPI counters, when asked for (``kpi_metrics=True``)."""
        if self._otel is not None and self._otel.kpi:
            self._otel.journeys(data_type, records)

    @contextlib.contextmanager
    def upload_span(self, dataset: str, records: int, size: int, retry: int) -> Iterator[dict[str, Any]]:
        """One upload attempt: a span, and its duration in the histogram."""
        if self._otel is None:
            yield {}
            return
        with self._otel.upload(dataset, records, size, retry) as outcome:
            yield outcome

    def snapshot(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


class _Instruments:
    """The OpenTelemetry side of :class:`Stats`."""

    _COUNTERS: ClassVar[dict[str, str]] = {
        "accepted": "records accepted by recording calls",
        "refused": "records refused (invalid, queue or spool full, closed tracker)",
        "spooled": "records committed to the spool",
        "delivered": "records the platform confirmed",
        "dead_lettered": "records the platform refused for good",
        "unreadable": "spooled records whose stored bytes no longer read back (set aside, never sent)",
        "sampled_out": "records left out by sampling (their kept peers carry their counts)",
        "retries": "upload attempts retried",
        "unpersisted": "accepted records close() could not write to the spool (logged at ERROR)",
    }

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        kpi: bool,
        spool_view: Callable[[], tuple[int, float | None]] | None,
    ) -> None:
        self.tracer = trace.get_tracer(_NAME, __version__, tracer_provider=tracer_provider)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(_NAME, __version__)
        self.counters = {
            name: meter.create_counter(
                f"perf_sdk.upload.{name}" if name == "retries" else f"perf_sdk.records.{name}",
                unit="{record}" if name != "retries" else "{retry}",
                description=text,
            )
            for name, text in self._COUNTERS.items()
        }
        self.duration = meter.create_histogram("perf_sdk.upload.duration", unit="s", description="upload request time")
        self.kpi = kpi
        self.transactions = meter.create_counter(
            "perf_sdk.transactions", unit="{transaction}", description="transactions by stage and channel"
        )
        self.satisfaction = meter.create_counter(
            "perf_sdk.satisfaction", unit="{answer}", description="satisfaction answers by rating and channel"
        )
        if spool_view is not None:
            view = spool_view

            def depth(options: CallbackOptions) -> Iterable[Observation]:
                return [Observation(view()[0])]

            def age(options: CallbackOptions) -> Iterable[Observation]:
                oldest = view()[1]
                return [Observation(0.0 if oldest is None else max(0.0, time.time() - oldest))]

            meter.create_observable_gauge(
                "perf_sdk.spool.depth", [depth], unit="{record}", description="records waiting"
            )
            meter.create_observable_gauge(
                "perf_sdk.spool.oldest_age", [age], unit="s", description="age of the oldest record waiting"
            )

    def count(self, name: str, n: int) -> None:
        counter = self.counters.get(name)
        if counter is not None:
            counter.add(n)

    def journeys(self, data_type: str, records: Iterable[dict[str, Any]]) -> None:
        if data_type == "transactions":
            totals: Counter[tuple[str, str]] = Counter()
            for r in records:
                totals[r["stage"], r["channel"]] += r["count"]
            for (stage, channel), n in totals.items():
                self.transactions.add(n, {"stage": stage, "channel": channel})
        elif data_type == "satisfaction":
            ratings: Counter[tuple[int, str]] = Counter()
            for r in records:
                ratings[r["rating"], r["channel"]] += r["count"]
            for (rating, channel), n in ratings.items():
                self.satisfaction.add(n, {"rating": rating, "channel": channel})

    @contextlib.contextmanager
    def upload(self, dataset: str, records: int, size: int, retry: int) -> Iterator[dict[str, Any]]:
        outcome: dict[str, Any] = {}
        started = time.perf_counter()
        with self.tracer.start_as_current_span(
            "perf_sdk.upload",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "perf_sdk.dataset": dataset,
                "perf_sdk.records": records,
                "perf_sdk.bytes": size,
                "perf_sdk.retry": retry,
            },
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            try:
                yield outcome
            finally:
                status = outcome.get("status")
                if status is not None:
                    span.set_attribute("http.response.status_code", status)
                attrs: dict[str, Any] = {"perf_sdk.dataset": dataset}
                if status is not None:
                    attrs["http.response.status_code"] = status
                self.duration.record(time.perf_counter() - started, attrs)


@dataclass(frozen=True)
class Health:
    """A tracker's state, for a health endpoint or an alert.

    Alert when ``oldest_pending_age`` grows past your tolerance (records are
    waiting: the platform is down or refusing), when ``dead_letters`` is not 0
    (records the platform refused for good, or spooled ones that no longer read
    back from disk: ``counters["unreadable"]``), or when ``paused`` is not empty
    (a token or data set is wrong).
    """

    spool_depth: int
    oldest_pending_age: float | None
    last_success: float | None
    last_error: str | None
    dead_letters: int
    paused: tuple[str, ...]
    counters: dict[str, Any]

    @property
    def waiting_for(self) -> str | None:
        """What delivery is waiting for, when it is (a platform it cannot reach, a 503 ...), else None.

        Show it on a progress line or a status page: it says where, why, when the
        next try is, and that the records are safe on disk.
        """
        value = self.counters.get("waiting_for")
        return value if isinstance(value, str) else None

    @property
    def healthy(self) -> bool:
        return not self.paused and self.dead_letters == 0 and (self.oldest_pending_age or 0.0) < 300.0
