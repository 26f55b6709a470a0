"""The read-API source and the in-memory source agree, on the local platform's real answers."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from perf_sdk import ConfigurationError
from perf_sdk._kpi_sources import kpis
from perf_sdk.platform import LocalPlatform

SVC = "apply-for-a-licence"
CHANNELS = ("digital", "phone", "paper", "face_to_face")


def _records() -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(20260401)
    start = datetime(2024, 12, 20, tzinfo=timezone.utc)
    out: dict[str, list[dict[str, Any]]] = {"transactions": [], "satisfaction": [], "costs": []}
    for i in range(400):
        # hours apart, across month, quarter and financial-year boundaries; some written in BST
        at = start + timedelta(hours=rng.randrange(0, 24 * 500))
        zone = timezone(timedelta(hours=1)) if i % 3 == 0 else timezone.utc
        ts = at.astimezone(zone).isoformat(timespec="seconds")
        channel = rng.choice(CHANNELS)
        stage = rng.choice(("started", "completed"))
        out["transactions"].append(
            {"_id": f"t{i}", "_timestamp": ts, "stage": stage, "channel": channel, "count": rng.randint(1, 5)}
        )
        if i % 4 == 0:
            out["satisfaction"].append(
                {
                    "_id": f"s{i}",
                    "_timestamp": ts,
                    "rating": rng.randint(1, 5),
                    "channel": channel,
                    "count": 1,
                }
            )
    # the boundary cases, exactly: the last second of a month, the first of the next
    out["transactions"] += [
        {
            "_id": "edge1",
            "_timestamp": "2025-03-31T23:59:59Z",
            "stage": "completed",
            "channel": "digital",
            "count": 7,
        },
        {
            "_id": "edge2",
            "_timestamp": "2025-04-01T00:00:00Z",
            "stage": "started",
            "channel": "digital",
            "count": 9,
        },
    ]
    costs = [
        ("month", "2025-01-01T00:00:00Z", "all", "staff", 120_000),
        ("month", "2025-05-01T00:00:00Z", "digital", "it", 33_000),
        ("quarter", "2025-04-01T00:00:00Z", "all", "accommodation", 450_000),
        ("quarter", "2026-01-01T00:00:00Z", "all", "staff", 300_000),
        ("year", "2025-01-01T00:00:00Z", "all", "licences", 1_000_000),
        ("month", "2025-07-01T00:00:00Z", "phone", "staff", 0),
    ]
    for n, (granularity, ts, channel, cost_type, pence) in enumerate(costs):
        record = {"_id": f"c{n}", "_timestamp": ts, "period": granularity, "amount_pence": pence}
        out["costs"].append(record | {"channel": channel, "cost_type": cost_type, "count": 1})
    return out


@pytest.fixture(scope="module")
def platform() -> Iterator[tuple[LocalPlatform, dict[str, list[dict[str, Any]]]]]:
    records = _records()
    with LocalPlatform(token="t") as p:
        with httpx.Client(base_url=p.url, headers={"Authorization": "Bearer t"}) as client:
            for data_type, items in records.items():
                response = client.post(f"/data/{SVC}/{data_type}", json=items)
                assert response.status_code == 200, response.text
        yield p, records


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("month", date(2025, 1, 1), date(2026, 4, 30)),
        ("quarter", date(2024, 12, 1), date(2026, 6, 30)),
        ("year", date(2025, 1, 1), date(2026, 12, 31)),
        ("financial-year", date(2024, 4, 1), date(2027, 3, 31)),
    ],
)
def test_read_api_equals_memory(
    platform: tuple[LocalPlatform, dict[str, list[dict[str, Any]]]], period: str, start: date, end: date
) -> None:
    p, records = platform
    from_api = kpis(p.url, service=SVC, period=period, start=start, end=end)
    from_memory = kpis(records=records, service=SVC, period=period, start=start, end=end)
    assert from_api.to_list() == from_memory.to_list()
    assert any(k.cost_per_transaction.value is not None for k in from_api.periods)
    assert any(k.user_satisfaction.value is not None for k in from_api.periods)
    # and what the platform stored reads back to the same numbers
    stored = {t: p.records(SVC, t) for t in ("transactions", "satisfaction", "costs")}
    assert kpis(records=stored, service=SVC, period=period, start=start, end=end).to_list() == from_api.to_list()


def test_default_range_from_the_platform(
    platform: tuple[LocalPlatform, dict[str, list[dict[str, Any]]]],
) -> None:
    p, records = platform
    from_api = kpis(read_endpoint=p.url, service=SVC, period="quarter", today=date(2026, 6, 1))
    from_memory = kpis(records=records, service=SVC, period="quarter", today=date(2026, 6, 1))
    assert from_api.to_list() == from_memory.to_list()
    assert from_api.periods[0].label == "2024-Q4"


def test_unknown_service_on_a_real_platform(
    platform: tuple[LocalPlatform, dict[str, list[dict[str, Any]]]],
) -> None:
    p, _ = platform
    with pytest.raises(ConfigurationError, match="no data sets for service 'nobody-here'"):
        kpis(p.url, service="nobody-here")


def test_cli_against_the_platform(
    platform: tuple[LocalPlatform, dict[str, list[dict[str, Any]]]], capsys: pytest.CaptureFixture[str]
) -> None:
    from perf_sdk.cli import main

    p, records = platform
    argv = ["kpis", "--service", SVC, "--read-endpoint", p.url, "--from", "2025-01-01", "--to", "2025-12-31"]
    assert main([*argv, "--format", "json"]) == 0
    expected = kpis(records=records, start=date(2025, 1, 1), end=date(2025, 12, 31))
    assert json.loads(capsys.readouterr().out) == expected.to_list()
    assert main(argv) == 0
    assert "Cost per transaction" in capsys.readouterr().out


def test_other_kpis_from_the_read_api_equal_the_memory_source() -> None:
    """A definition's measures (filter_by + collect=field:sum/count per month) read back what memory computes."""
    from perf_sdk._definition import parse_definition
    from tests.unit.test_definition import DEFINITION, _records

    definition = parse_definition(DEFINITION)
    records = _records()
    with LocalPlatform(token="t") as p:
        with httpx.Client(base_url=p.url, headers={"Authorization": "Bearer t"}) as client:
            for data_type, items in records.items():
                body = [
                    {"_id": f"{data_type}-{i}", "cost_type": "staff", **r}
                    if data_type == "costs"
                    else {"_id": f"{data_type}-{i}", **r}
                    for i, r in enumerate(items)
                ]
                assert client.post(f"/data/other-kpis/{data_type}", json=body).status_code == 200
        for period in ("month", "quarter", "week"):
            from_api = kpis(
                p.url,
                service="other-kpis",
                period=period,
                definition=definition,
                start="2026-01-01",
                end="2026-03-31",
                today=date(2026, 6, 1),
            )
            from_memory = kpis(
                records=records,
                period=period,
                definition=definition,
                service="other-kpis",
                start="2026-01-01",
                end="2026-03-31",
                today=date(2026, 6, 1),
            )
            assert from_api.to_list() == from_memory.to_list(), period
    q1 = {o.key: o.kpi.value for o in from_memory.periods[0].other}
    assert q1 == {"completed_without_a_call": None, "refunds_paid": None, "days_to_decision": None}  # W01 is empty
    months = kpis(records=records, period="month", definition=definition, start="2026-01-01", end="2026-01-31")
    jan = {o.key: o.kpi.value for o in months.periods[0].other}
    assert jan == {"completed_without_a_call": 0.8, "refunds_paid": 3750.0, "days_to_decision": 9.0}


def test_records_without_a_count_are_one_event_each_read_from_the_platform_as_from_a_file() -> None:
    # Another client's records may carry no count (one record per event). Read from a file they counted 1 each;
    # the platform's sum left them out, so the read API said 0 / 0 where the records said 8 / 10.
    records = [
        {"_id": f"s{i}", "_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital"}
        for i in range(8)
    ]
    records += [
        {"_id": "s8", "_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 2}
    ]
    records += [
        {
            "_id": f"c{i}",
            "_timestamp": "2026-01-05T10:00:00Z",
            "stage": "completed",
            "channel": "digital",
            "count": None,
        }
        for i in range(8)
    ]
    with LocalPlatform(token="t") as platform:
        answer = httpx.post(
            f"{platform.url}/data/svc/transactions", json=records, headers={"Authorization": "Bearer t"}
        )
        assert answer.status_code == 200, answer.text
        read = kpis(read_endpoint=platform.url, service="svc", period="quarter", start="2026-01-01", end="2026-03-31")
    from_file = kpis(records=records, period="quarter")
    for result in (read, from_file):
        rate = result.periods[0].completion_rate
        assert (rate.numerator, rate.denominator) == (8, 10)
