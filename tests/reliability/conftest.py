"""The reliability suite's report: one row per fault, printed at the end of the run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class Row:
    fault: str
    runs: int
    accepted: int
    stored: int
    duplicates: int
    max_call_us: float | None  # None: the calls ran in a child process
    resent: int = 0


ROWS: list[Row] = []


@pytest.fixture
def report() -> Any:
    return ROWS.append


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    tr = terminalreporter
    tr.section("perf_sdk reliability: every accepted record stored exactly once")
    tr.write_line(
        f"{'fault':34} {'runs':>5} {'accepted':>9} {'stored':>9} {'duplicates':>10} {'re-sent':>8} {'max host call µs':>17}"
    )
    for r in ROWS:
        tr.write_line(
            f"{r.fault:34} {r.runs:5} {r.accepted:9} {r.stored:9} {r.duplicates:10} {r.resent:8} "
            + (f"{r.max_call_us:17.1f}" if r.max_call_us is not None else f"{'-':>17}")
        )
    tr.write_line("duplicates: stored sum of count minus accepted; re-sent: records sent again on the wire (same _id)")
