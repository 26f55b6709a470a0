"""OpenTelemetry: spans per upload attempt, SDK health metrics, opt-in KPI counters (in-memory exporters)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import perf_sdk
from tests.conftest import SECRET, SERVICE, TOKEN


class Flaky:
    """Fails the first request with a 503, then stores."""

    def __init__(self) -> None:
        self.calls = 0
        self.stored: dict[str, dict[str, Any]] = {}

    def send(self, data_type: str, body: bytes) -> None:
        self.calls += 1
        if self.calls == 1:
            raise perf_sdk.RetryableError("busy", status=503, retry_after=0.0)
        for r in json.loads(body):
            self.stored[r["_id"]] = r

    def close(self) -> None:
        pass


@pytest.fixture
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader, TracerProvider, MeterProvider]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield spans, reader, tracer_provider, meter_provider
    meter_provider.shutdown()
    tracer_provider.shutdown()


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def total(points: list[Any], **attrs: Any) -> float:
    return sum(p.value for p in points if all(p.attributes.get(k) == v for k, v in attrs.items()))


def test_spans_and_metrics(otel: Any, spool_dir: Path) -> None:
    spans, reader, tracer_provider, meter_provider = otel
    transport = Flaky()
    tracker = perf_sdk.Tracker(
        service=SERVICE,
        secret=SECRET,
        token=TOKEN,
        spool_dir=spool_dir,
        transport=transport,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        kpi_metrics=True,
        retry_initial=0.001,
        retry_max=0.01,
    )
    for i in range(10):
        tracker.start(f"t{i}")
    for i in range(6):
        tracker.complete(f"t{i}", channel="digital")
    tracker.complete(None, channel="phone", count=4)
    tracker.satisfaction(5)
    tracker.satisfaction(2, channel="phone")
    tracker.satisfaction(9)  # refused
    assert tracker.flush(60).refused == 1

    finished = spans.get_finished_spans()
    uploads = [s for s in finished if s.name == "perf_sdk.upload"]
    assert len(uploads) >= 3  # one failed attempt, then the retry, then the other data set
    failed = [s for s in uploads if s.attributes["http.response.status_code"] == 503]
    assert len(failed) == 1
    retried = [s for s in uploads if s.attributes["perf_sdk.retry"] == 1]
    assert retried and retried[0].attributes["http.response.status_code"] == 200
    for span in uploads:
        assert span.attributes["perf_sdk.dataset"].startswith(f"{SERVICE}/")
        assert span.attributes["perf_sdk.records"] > 0
        assert span.attributes["perf_sdk.bytes"] > 0
        assert TOKEN not in json.dumps(dict(span.attributes))

    points = metric_points(reader)
    assert total(points["perf_sdk.records.accepted"]) == 20
    assert total(points["perf_sdk.records.refused"]) == 1
    assert total(points["perf_sdk.records.spooled"]) == 19
    assert total(points["perf_sdk.records.delivered"]) >= 19
    assert total(points["perf_sdk.upload.retries"]) == 1
    assert len(points["perf_sdk.upload.duration"]) >= 1
    assert total(points["perf_sdk.spool.depth"]) == 0
    assert "perf_sdk.spool.oldest_age" in points
    # The service's own journeys, summed by count.
    assert total(points["perf_sdk.transactions"], stage="started", channel="digital") == 10
    assert total(points["perf_sdk.transactions"], stage="completed", channel="digital") == 6
    assert total(points["perf_sdk.transactions"], stage="completed", channel="phone") == 4
    assert total(points["perf_sdk.satisfaction"], rating=5) == 1
    assert total(points["perf_sdk.satisfaction"], rating=2, channel="phone") == 1
    tracker.close(1)


def test_kpi_counters_are_opt_in(otel: Any, spool_dir: Path) -> None:
    _, reader, tracer_provider, meter_provider = otel
    tracker = perf_sdk.Tracker(
        service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=Flaky(),
        tracer_provider=tracer_provider, meter_provider=meter_provider, retry_initial=0.001,
    )  # fmt: skip
    tracker.start("x")
    assert tracker.flush(60)
    points = metric_points(reader)
    assert total(points.get("perf_sdk.transactions", [])) == 0
    assert total(points["perf_sdk.records.accepted"]) == 1
    tracker.close(1)


def test_without_an_sdk_everything_is_a_no_op(spool_dir: Path) -> None:
    tracker = perf_sdk.Tracker(
        service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=Flaky(), retry_initial=0.001
    )
    tracker.complete("y")
    assert tracker.flush(60)
    assert tracker.stats.delivered == 1
    tracker.close(1)
