"""Backfilled or live: the read (one grouped query) and the sentence in a service page's notes."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest

from perf_sdk._errors import RetryableError
from perf_sdk._kpi import Counts, PeriodKpis, compute_report
from perf_sdk._publish_origin import Backfilled, backfill_note, read_backfilled

BASE = "http://platform.test"


def _periods(completed: dict[date, int], started: dict[date, int] | None = None) -> tuple[PeriodKpis, ...]:
    transactions = {(m, "completed", "digital"): n for m, n in completed.items()}
    transactions |= {(m, "started", "digital"): n for m, n in (started or {}).items()}
    return compute_report(Counts(transactions), period="quarter").periods


def _months(first: date, n: int, each: int) -> dict[date, int]:
    out = {}
    for i in range(n):
        index = first.year * 12 + first.month - 1 + i
        out[date(index // 12, index % 12 + 1, 1)] = each
    return out


def _completed(months: dict[date, int]) -> Backfilled:
    return Backfilled({(m, "completed"): n for m, n in months.items()})


def test_the_note_counts_backfilled_of_all_and_names_the_months() -> None:
    periods = _periods(_months(date(2023, 4, 1), 24, 100) | _months(date(2025, 4, 1), 6, 50))
    note = backfill_note(_completed(_months(date(2023, 4, 1), 24, 100)), periods)
    assert note == (
        "2,400 of the 2,700 completed transactions in these figures were loaded from earlier records (backfilled) "
        "rather than sent live by the service. Backfilled months: April 2023 to March 2025."
    )


def test_both_stages_and_all_of_them() -> None:
    months = _months(date(2025, 1, 1), 3, 10)
    periods = _periods(months, started=months)
    both = Backfilled({(m, stage): 10 for m in months for stage in ("started", "completed")})
    assert backfill_note(both, periods) == (
        "All 30 completed transactions and all 30 started transactions in these figures were loaded from earlier "
        "records (backfilled) rather than sent live by the service. Backfilled months: January 2025 to March 2025."
    )


@pytest.mark.parametrize(
    ("months", "words"),
    [
        ([date(2025, 2, 1)], "February 2025"),
        ([date(2025, 1, 1), date(2025, 3, 1)], "January 2025 and March 2025"),
        (
            [date(2024, 11, 1), date(2024, 12, 1), date(2025, 1, 1), date(2025, 3, 1), date(2025, 5, 1)],
            "November 2024 to January 2025, March 2025 and May 2025",
        ),
        ([date(2024, m, 1) for m in (1, 3, 5, 7)], "4 months between January 2024 and July 2024"),
    ],
)
def test_months_in_runs(months: list[date], words: str) -> None:
    periods = _periods(_months(date(2024, 1, 1), 18, 7))
    note = backfill_note(_completed(dict.fromkeys(months, 1)), periods)
    assert note is not None and note.endswith(f"Backfilled months: {words}.")


def test_no_note_without_backfilled_records_in_the_periods_shown() -> None:
    periods = _periods(_months(date(2025, 1, 1), 6, 10))
    assert backfill_note(None, periods) is None
    assert backfill_note(Backfilled({}), periods) is None
    assert backfill_note(_completed({date(2024, 12, 1): 5, date(2025, 7, 1): 5}), periods) is None  # outside
    assert backfill_note(_completed({date(2025, 1, 1): 5}), ()) is None


def test_never_more_backfilled_than_the_figures_hold() -> None:
    """Records the figures skipped (outside the vocabulary) cannot make the note claim more than all."""
    periods = _periods({date(2025, 1, 1): 10})
    note = backfill_note(_completed({date(2025, 1, 1): 12}), periods)
    assert note is not None and note.startswith("All 10 completed transactions")


def _platform(answer: httpx.Response, seen: list[httpx.Request]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    return httpx.Client(transport=httpx.MockTransport(handler))


def _group(stage: str, sums: list[tuple[str, int | None]]) -> dict[str, Any]:
    values = [
        {"_start_at": f"{start}T00:00:00+00:00", "_count": 0 if n is None else 1, "count:sum": n} for start, n in sums
    ]
    return {"stage": stage, "values": values}


def test_one_grouped_query_per_service() -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(
        200,
        json={
            "data": [
                _group("completed", [("2025-01-01", 40), ("2025-02-01", None)]),
                _group("started", [("2025-01-01", 55), ("2025-02-01", 5)]),
                _group("exploded", [("2025-01-01", 9)]),  # not a stage: not counted
            ]
        },
    )
    with _platform(answer, seen) as http:
        found = read_backfilled(
            http, BASE, "apply-for-a-licence", date(2025, 1, 1), date(2025, 4, 1), {"Accept": "application/json"}
        )
    assert found == Backfilled(
        {(date(2025, 1, 1), "completed"): 40, (date(2025, 1, 1), "started"): 55, (date(2025, 2, 1), "started"): 5}
    )
    assert len(seen) == 1
    assert seen[0].url.path == "/data/apply-for-a-licence/transactions"
    assert seen[0].url.params.multi_items() == [
        ("period", "month"),
        ("filter_by", "origin:backfill"),
        ("group_by", "stage"),
        ("collect", "count:sum"),
        ("start_at", "2025-01-01T00:00:00Z"),
        ("end_at", "2025-04-01T00:00:00Z"),
    ]


@pytest.mark.parametrize("status", [400, 404])
def test_a_platform_that_cannot_say_gives_no_note(status: int) -> None:
    with _platform(httpx.Response(status, json={"status": "error", "message": "no"}), []) as http:
        assert read_backfilled(http, BASE, "s", date(2025, 1, 1), date(2025, 4, 1), {}) is None


def test_a_platform_that_fails_fails_the_service_as_its_other_reads_do() -> None:
    with _platform(httpx.Response(503, json={"status": "error", "message": "down"}), []) as http:
        with pytest.raises(RetryableError):
            read_backfilled(http, BASE, "s", date(2025, 1, 1), date(2025, 4, 1), {})
