"""``perf-sdk mark`` through a real Tracker to the local platform, then ``kpis --around`` from its read API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from perf_sdk.cli import main
from perf_sdk.platform import LocalPlatform
from tests.unit.test_around import _records

SVC = "apply-for-a-licence"


@pytest.fixture
def platform() -> Iterator[LocalPlatform]:
    with LocalPlatform(token="t") as p:
        records = _records()
        records.pop("marks")
        with httpx.Client(base_url=p.url, headers={"Authorization": "Bearer t"}) as client:
            for data_type, items in records.items():
                items = [{"_id": f"{data_type}{i}", **r, "count": r.get("count", 1)} for i, r in enumerate(items)]
                response = client.post(f"/data/{SVC}/{data_type}", json=items)
                assert response.status_code == 200, response.text
        yield p


def test_mark_then_around(platform: LocalPlatform, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--service", SVC, "--endpoint", platform.url, "--token", "t", "--spool-dir", str(tmp_path / "spool")]
    code = main(["mark", "release 1.4", "--at", "2026-03-02T09:00:00Z", "--description", "new page", *common])
    assert code == 0, capsys.readouterr().err
    assert "marked 'release 1.4'" in capsys.readouterr().out
    stored = platform.records(SVC, "marks")
    assert [(r["label"], r["_timestamp"], r["description"]) for r in stored] == [
        ("release 1.4", "2026-03-02T09:00:00+00:00", "new page")
    ]
    # the same mark again is stored once (its id derives from label and time)
    assert main(["mark", "release 1.4", "--at", "2026-03-02T09:00:00Z", *common]) == 0
    assert len(platform.records(SVC, "marks")) == 1
    capsys.readouterr()

    args = ["kpis", "--service", SVC, "--read-endpoint", platform.url, "--around", "release 1.4", "--window", "7"]
    assert main([*args, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mark"]["at"] == "2026-03-02T09:00:00+00:00"
    cr = data["completion_rate"]
    assert (cr["before"]["numerator"], cr["after"]["numerator"]) == (150, 180)
    assert cr["low"] == pytest.approx(0.07613, abs=5e-5) and cr["significant"] is True
    assert data["cost_per_transaction"]["change"] == 3000.0


def test_mark_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["mark", "x", "--at", "2026-03-02T09:00:00"])
    assert caught.value.code == 2
    assert "has no zone" in capsys.readouterr().err
    assert main(["mark", "release", "--service", SVC, "--spool-dir", str(tmp_path)]) == 2
    assert "configuration error" in capsys.readouterr().err


def test_kpis_with_marks_from_the_platform_match_around(
    platform: LocalPlatform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import date

    from perf_sdk._around import kpis_around
    from perf_sdk._kpi_sources import kpis

    common = ["--service", SVC, "--endpoint", platform.url, "--token", "t", "--spool-dir", str(tmp_path / "spool")]
    assert main(["mark", "release 1.4", "--at", "2026-03-02T09:00:00Z", *common]) == 0
    report = kpis(platform.url, service=SVC, period="month", today=date(2026, 6, 1), with_marks=True)
    (change,) = report.changes
    direct = kpis_around("release 1.4", read_endpoint=platform.url, service=SVC, today=date(2026, 6, 1))
    assert change.to_dict() == direct.to_dict()
    assert [m.label for m in report.marks] == ["release 1.4"]
