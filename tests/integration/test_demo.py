"""``perf-sdk demo``: the embedded default a newcomer runs first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from perf_sdk.cli import main

KPI_NAMES = ("Completion rate", "User satisfaction", "Cost per transaction", "Digital take-up")


def test_demo_from_a_fresh_folder_prints_kpis_checks_them_and_writes_the_dashboard(tmp_path: Path) -> None:
    """Exactly what the README's first Quick start command runs (default settings)."""
    done = subprocess.run(
        [sys.executable, "-m", "perf_sdk", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr + done.stdout
    for name in KPI_NAMES:
        assert name in done.stdout
    assert "matches the simulation's own counts" in done.stdout
    out = tmp_path / "perf-sdk-demo"
    html = (out / "dashboard.html").read_text()
    assert all(name in html for name in KPI_NAMES)
    quarters = json.loads((out / "kpis.json").read_text())
    assert len(quarters) == 4
    assert all(q["period"] == "quarter" and q["completion_rate"]["value"] is not None for q in quarters)
    assert (out / "platform.sqlite").exists()


def test_demo_is_repeatable_and_small_runs_match_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--visitors", "20", "--seed", "7", "--output", "small"]) == 0
    first = json.loads((tmp_path / "small" / "kpis.json").read_text())
    assert main(["demo", "--visitors", "20", "--seed", "7", "--output", "small"]) == 0
    second = json.loads((tmp_path / "small" / "kpis.json").read_text())
    strip = lambda rows: [{k: v for k, v in r.items() if k != "published_at"} for r in rows]  # noqa: E731
    assert strip(first) == strip(second)
    assert "matches the simulation's own counts" in capsys.readouterr().out
