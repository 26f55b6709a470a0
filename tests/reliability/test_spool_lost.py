"""A spool file deleted or replaced under a running tracker (issue 12 item 10).

The writer sees it before its next commit (:class:`~perf_sdk._spool.SpoolLostError`),
reports it, and continues into a fresh spool with what it still holds and what
the lost file's open descriptor still gives back: every accepted record is
delivered, and whatever was put in the spool's place is kept, not deleted.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

import perf_sdk
from tests.faultserver import FaultPlan, FaultServer
from tests.reliability.conftest import Row


def other_database(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO accounts(name) VALUES ('alice')")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("how", ["replaced", "deleted"])
def test_a_tracker_continues_into_a_fresh_spool_and_loses_nothing(
    how: str,
    tmp_path: Path,
    spool_dir: Path,
    fault_server: Callable[..., FaultServer],
    make_tracker: Callable[..., perf_sdk.Tracker],
    report: Callable[[Row], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="perf_sdk")
    server = fault_server(FaultPlan(always=503))  # nothing leaves the spool until the end
    tracker = make_tracker(endpoint=server.url)
    for i in range(1000):
        tracker.complete(f"before-{i}")
    assert tracker.persist(30)
    spool = tracker._spool
    assert spool is not None
    if how == "replaced":
        os.replace(other_database(tmp_path / "other.db"), spool.path)
    else:
        os.unlink(spool.path)
    for i in range(1000):
        tracker.complete(f"after-{i}")
    assert tracker.persist(30)
    assert spool.lost is not None  # seen by the running process, not by a successor
    assert tracker._spool is not spool
    server.plan = FaultPlan()
    result = tracker.flush(60)
    assert result.pending == 0 and not result.timed_out, result
    assert len(server.store) == 2000 and server.count_sum() == 2000
    assert "was lost under this process" in caplog.text  # reported, at ERROR
    if how == "replaced":
        (kept,) = spool_dir.glob("*.spool.corrupt-*[0-9]")
        conn = sqlite3.connect(kept)
        assert conn.execute("SELECT name FROM accounts").fetchall() == [("alice",)]
        conn.close()
    report(Row(f"spool file {how} while running", 1, 2000, len(server.store), server.count_sum() - 2000, None))
