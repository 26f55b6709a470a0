"""``perf-sdk check`` against the local platform over loopback: the read API's sums and its freshness."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from perf_sdk.cli import main
from perf_sdk.platform import LocalPlatform

SVC = "apply-for-a-licence"
AT = "2026-03-16T09:00:00Z"
DEFINITION = """\
title = "Apply for a licence"

[targets]
completion_rate = {min = 0.75}

[checks]
periods = ["day", "week", "month", "quarter"]
confidence = 0.95
max_silence_hours = {transactions = 168}
min_answers = 10
"""


def _records(latest_completed: int) -> list[dict[str, Any]]:
    latest = datetime(2026, 3, 11, 10, 0, tzinfo=timezone.utc)
    out = []
    for n, weeks_before in enumerate((4, 3, 2, 1, 0)):
        ts = (latest - timedelta(weeks=weeks_before)).isoformat().replace("+00:00", "Z")
        done = 80 if weeks_before else latest_completed
        out += [
            {"_id": f"s{n}", "_timestamp": ts, "stage": "started", "channel": "digital", "count": 100},
            {"_id": f"c{n}", "_timestamp": ts, "stage": "completed", "channel": "digital", "count": done},
        ]
    return out


@pytest.fixture(scope="module")
def platform() -> Iterator[LocalPlatform]:
    with LocalPlatform(token="t") as p:
        with httpx.Client(base_url=p.url, headers={"Authorization": "Bearer t"}) as client:
            for service, completed in ((SVC, 60), ("steady-service", 78)):
                response = client.post(f"/data/{service}/transactions", json=_records(completed))
                assert response.status_code == 200, response.text
                sat = [
                    {"_id": "a", "_timestamp": "2026-02-10T10:00:00Z", "rating": 4, "channel": "digital", "count": 40}
                ]
                assert client.post(f"/data/{service}/satisfaction", json=sat).status_code == 200
        yield p


def test_check_reads_the_platform_and_finds_the_planted_drop(
    platform: LocalPlatform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definition = tmp_path / "perf-sdk.toml"
    definition.write_text(DEFINITION)
    args = ["check", "--read-endpoint", platform.url, "--definition", str(definition), "--at", AT, "--format", "json"]
    assert main([*args, "--service", SVC]) == 1
    data = json.loads(capsys.readouterr().out)
    rules = sorted((f["rule"], f["period"], f["label"]) for f in data["findings"])
    assert rules == [
        ("below_target", "week", "2026-W11"),
        ("significant_drop", "week", "2026-W11"),
    ]
    drop = next(c for c in data["comparisons"] if c["period"] == "week")
    assert drop["low"] == pytest.approx(-0.30449, abs=5e-5)
    assert main([*args, "--service", "steady-service"]) == 0
    steady = json.loads(capsys.readouterr().out)
    assert steady["status"] == "ok"
    week = [c for c in steady["comparisons"] if c["period"] == "week" and c["kpi"] == "completion_rate"]
    assert [c["significant"] for c in week] == [False]


def test_check_finds_a_silent_data_set_on_the_platform(
    platform: LocalPlatform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definition = tmp_path / "perf-sdk.toml"
    definition.write_text('[checks]\nperiods = ["week"]\nmax_silence_hours = {transactions = 24}\n')
    code = main(
        [
            "check",
            "--read-endpoint",
            platform.url,
            "--service",
            "steady-service",
            "--definition",
            str(definition),
            "--at",
            AT,
        ]
    )
    assert code == 1
    out = capsys.readouterr().out
    assert "no transactions records for 119.0 h (newest 2026-03-11T10:00:00+00:00" in out


def test_a_missing_definition_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "check",
                "--read-endpoint",
                "http://127.0.0.1:9",
                "--service",
                SVC,
                "--definition",
                str(tmp_path / "none.toml"),
            ]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err


def test_an_unreachable_platform_is_attention_not_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1 (attention: the platform cannot be read), for cron to alert on as on any finding (issue 19)."""
    definition = tmp_path / "perf-sdk.toml"
    definition.write_text(DEFINITION)
    args = ["check", "--read-endpoint", "http://127.0.0.1:9", "--service", SVC, "--definition", str(definition)]
    assert main([*args, "--at", AT]) == 1
    captured = capsys.readouterr()
    assert "perf-sdk: the platform cannot be read: cannot reach the platform's read API" in captured.err
    assert captured.out.startswith(f"perf-sdk check: {SVC}: 1 thing needs attention\n")
    assert "! the platform cannot be read, so nothing was checked" in captured.out
    assert "Traceback" not in captured.err


def test_odd_records_on_the_platform_are_a_note_never_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Records the write API takes (as backdrop does) but outside the vocabulary: skipped and counted (issue 19).

    Before: a stage of ``in-progress`` was an "invalid input" exit 2, and a
    negative count reached Wilson's interval and ended the run in a traceback.
    """
    odd = [
        {"_id": "x1", "_timestamp": "2026-03-11T11:00:00Z", "stage": "in-progress", "channel": "digital", "count": 1},
        {"_id": "x2", "_timestamp": "2026-03-11T11:00:00Z", "stage": "completed", "channel": "digital", "count": -500},
        {"_id": "x3", "_timestamp": "2026-03-11T11:00:00Z", "stage": "started", "channel": "digital", "count": "lots"},
        {"_id": "x4", "_timestamp": "2026-03-11T11:00:00Z", "stage": "started", "channel": "digital", "count": 2.5},
    ]
    definition = tmp_path / "perf-sdk.toml"
    definition.write_text(DEFINITION)
    with LocalPlatform(token="t") as p:
        with httpx.Client(base_url=p.url, headers={"Authorization": "Bearer t"}) as client:
            for service, extra in (("clean-service", []), ("odd-service", odd)):
                response = client.post(f"/data/{service}/transactions", json=_records(78) + extra)
                assert response.status_code == 200, response.text
        args = ["check", "--read-endpoint", p.url, "--definition", str(definition), "--at", AT, "--format", "json"]
        results = {}
        for service in ("clean-service", "odd-service"):
            code = main([*args, "--service", service])
            captured = capsys.readouterr()
            assert "Traceback" not in captured.err
            results[service] = (code, json.loads(captured.out))
    (clean_code, clean), (odd_code, data) = results["clean-service"], results["odd-service"]
    assert odd_code == clean_code == 1  # no satisfaction answers in February, and nothing else
    assert data["findings"] == clean["findings"] and data["comparisons"] == clean["comparisons"]
    assert data["skipped"] == {"transactions.stage": 1, "transactions.count": 3}
    assert any(n.startswith("3 transactions records skipped: its count is not") for n in data["notes"])
