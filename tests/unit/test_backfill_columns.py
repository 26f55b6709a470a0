"""The column contract's steps, each alone: the shape, the data type, the header, a Month cell (issue 13 item 4)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from perf_sdk._backfill_columns import channel_name, decide_data_type, decide_shape, plan_columns
from perf_sdk._backfill_rows import month_cell_label
from perf_sdk._errors import ConfigurationError


@pytest.mark.parametrize(
    ("present", "data_type", "shape", "expected"),
    [
        ({"timestamp", "stage", "channel"}, None, None, "narrow"),
        ({"timestamp", "rating_1", "rating_5"}, None, None, "wide-satisfaction"),
        ({"period", "online", "telephone"}, None, None, "wide-transactions"),
        ({"period", "digital", "count"}, None, None, "narrow"),  # a count column: one channel a row
        ({"period", "digital"}, "costs", None, "narrow"),
        ({"timestamp", "digital"}, None, "narrow", "narrow"),
        ({"timestamp"}, None, "wide-satisfaction", "wide-satisfaction"),
    ],
)
def test_decide_shape(present: set[str], data_type: str | None, shape: str | None, expected: str) -> None:
    assert decide_shape(present, data_type, shape) == expected


def test_decide_data_type() -> None:
    assert decide_data_type({"amount_pence", "period"}, None, "narrow", "f.csv") == "costs"
    assert decide_data_type({"x"}, "satisfaction", "narrow", "f.csv") == "satisfaction"
    assert decide_data_type({"digital"}, None, "wide-transactions", "f.csv") == "transactions"
    with pytest.raises(ConfigurationError, match="shape wide-transactions holds transactions, not costs"):
        decide_data_type({"digital"}, "costs", "wide-transactions", "f.csv")
    with pytest.raises(ConfigurationError, match=r"f\.csv has columns of several data type"):
        decide_data_type({"stage", "rating"}, None, "narrow", "f.csv")


@pytest.mark.parametrize(
    ("name", "channel"),
    [
        ("online", "digital"),
        ("channel_phone", "phone"),
        ("by_post", "paper"),
        ("in_person", "face_to_face"),
        ("x", None),
    ],
)
def test_channel_names_people_use(name: str, channel: str | None) -> None:
    assert channel_name(name) == channel


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (date(2025, 4, 1), "2025-04"),
        (datetime(2025, 3, 31, 23, 30, tzinfo=timezone.utc), "2025-04"),  # 00:30 on 1 April in London
        ("April 2025", "2025-04"),
        ("Sept 2025", "2025-09"),
        ("apr-25", "2025-04"),
        ("2025-Q1", "2025-Q1"),  # any other label is the label parser's to read
        ("Smarch 2025", "Smarch 2025"),
    ],
)
def test_month_cell_label(value: object, label: str) -> None:
    assert month_cell_label(value, ZoneInfo("Europe/London")) == label


def test_a_total_beside_ratings_or_channels_is_read_as_a_check() -> None:
    plan = plan_columns(["date", "Online", "Telephone", "Total"])
    assert "total" in plan.keys and [c for c, _ in plan.cells] == ["digital", "phone"]
    with pytest.raises(ConfigurationError, match="unknown column"):
        plan_columns(["timestamp", "stage", "channel", "Total"])  # a narrow file has nothing to check a total by
