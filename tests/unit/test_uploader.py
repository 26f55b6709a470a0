"""Upload policy: retries, bisection, splitting, pausing, stopping."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perf_sdk import RejectedError, RetryableError
from perf_sdk._spool import Spool
from perf_sdk._telemetry import Stats
from perf_sdk._uploader import Uploader


class Scripted:
    """A transport whose answer to each request is decided by a function of the records."""

    def __init__(self, verdict: Callable[[list[dict[str, Any]]], Exception | None]) -> None:
        self.verdict = verdict
        self.stored: dict[str, dict[str, Any]] = {}
        self.requests: list[list[str]] = []
        self.lock = threading.Lock()

    def send(self, data_type: str, body: bytes) -> None:
        records = json.loads(body)
        with self.lock:
            self.requests.append([r["_id"] for r in records])
        error = self.verdict(records)
        if error is not None:
            raise error
        with self.lock:
            for r in records:
                self.stored[r["_id"]] = r

    def close(self) -> None:
        pass


def fill(spool: Spool, n: int, dataset: str = "svc/transactions") -> list[str]:
    ids = [f"r{i:04d}" for i in range(n)]
    spool.append([(dataset, n, json.dumps([{"_id": i, "count": 1} for i in ids]).encode())], time.time())
    return ids


def run_until_empty(uploader: Uploader, spool: Spool, timeout: float = 10.0) -> None:
    uploader.start()
    deadline = time.monotonic() + timeout
    with uploader.progress:
        while spool.depth()[0] and time.monotonic() < deadline:
            uploader.wake()
            uploader.progress.wait(0.2)
    assert uploader.stop(5.0)


def wait_passes(uploader: Uploader, k: int = 2) -> None:
    """Until ``k`` more full passes have run, waking the worker each time."""
    with uploader.progress:
        target = uploader.passes + k
        while uploader.passes < target:
            uploader.wake()
            uploader.progress.wait(0.05)


def make(tmp_path: Path, transport: Scripted, **kw: Any) -> tuple[Uploader, Spool, Stats]:
    spool = Spool(tmp_path)
    stats = Stats()
    options: dict[str, Any] = {"retry_initial": 0.001, "retry_max": 0.01, "pause_seconds": 60.0}
    options.update(kw)
    return Uploader(spool, transport, stats, **options), spool, stats


def test_a_bad_record_is_bisected_out_and_dead_lettered(tmp_path: Path) -> None:
    bad = {"r0007", "r0031"}
    transport = Scripted(
        lambda rs: (
            RejectedError("400", status=400, messages=["rating out of range"]) if bad & {r["_id"] for r in rs} else None
        )
    )
    uploader, spool, stats = make(tmp_path, transport, batch_size=64)
    errors: list[tuple[BaseException, list[dict[str, Any]]]] = []
    uploader.on_dead_letter = lambda e, rs: errors.append((e, rs))
    ids = fill(spool, 50)
    run_until_empty(uploader, spool)
    assert set(transport.stored) == set(ids) - bad
    assert stats.delivered == 48 and stats.dead_lettered == 2
    dead = spool.dead()
    assert {d.record["_id"] for d in dead} == bad
    assert all(d.status == 400 and d.reason == "rating out of range" for d in dead)
    assert sorted(r[0]["_id"] for _, r in errors) == sorted(bad)
    assert len(transport.requests) <= 1 + 2 * len(bad) * 6  # bisection: ~2k·log2(n), not one per record
    spool.close()


def test_413_splits_until_it_fits_and_dead_letters_a_lone_giant(tmp_path: Path) -> None:
    transport = Scripted(
        lambda rs: RejectedError("413", status=413) if len(rs) > 8 or any(r["_id"] == "r0003" for r in rs) else None
    )
    uploader, spool, stats = make(tmp_path, transport)
    ids = fill(spool, 40)
    run_until_empty(uploader, spool)
    assert set(transport.stored) == set(ids) - {"r0003"}
    (dead,) = spool.dead()
    assert dead.record["_id"] == "r0003"
    assert "too large" in dead.reason
    assert len(transport.requests) < 25  # halving, not one request per record
    spool.close()


def test_retryable_errors_retry_until_success_honouring_retry_after(tmp_path: Path) -> None:
    answers = iter(
        [
            RetryableError("503", status=503, retry_after=0.05),
            RetryableError("drop"),
            RetryableError("429", status=429),
        ]
    )
    transport = Scripted(lambda rs: next(answers, None))
    uploader, spool, stats = make(tmp_path, transport)
    fill(spool, 5)
    started = time.monotonic()
    run_until_empty(uploader, spool)
    assert time.monotonic() - started >= 0.05  # waited as the platform asked
    assert len(transport.stored) == 5
    assert stats.retries == 3
    assert len(transport.requests) == 4
    spool.close()


@pytest.mark.parametrize("status", [401, 403, 404])
def test_configuration_errors_pause_the_data_set_and_keep_records(tmp_path: Path, status: int) -> None:
    transport = Scripted(lambda rs: RejectedError(str(status), status=status))
    uploader, spool, stats = make(tmp_path, transport)
    seen: list[BaseException] = []
    uploader.on_error = lambda e, rs: seen.append(e)
    fill(spool, 5, "svc/costs")
    fill(spool, 3, "svc/transactions")
    uploader.start()
    with uploader.progress:
        uploader.progress.wait_for(lambda: set(uploader.paused_datasets()) == {"svc/costs", "svc/transactions"}, 5)
    calls = len(transport.requests)
    wait_passes(uploader, 3)
    assert len(transport.requests) == calls  # paused: not hammering the platform
    assert uploader.stop(5)
    assert spool.depth()[0] == 8  # nothing lost
    assert stats.dead_lettered == 0
    assert len(seen) == 2 and all(getattr(e, "status", None) == status for e in seen)
    spool.close()


def test_pause_ends_and_records_flow_once_fixed(tmp_path: Path) -> None:
    state = {"token_ok": False}
    transport = Scripted(lambda rs: None if state["token_ok"] else RejectedError("401", status=401))
    uploader, spool, _ = make(tmp_path, transport, pause_seconds=0.05)
    fill(spool, 4)
    uploader.start()
    with uploader.progress:
        uploader.progress.wait_for(lambda: uploader.paused_datasets(), 5)
    state["token_ok"] = True
    with uploader.progress:
        uploader.progress.wait_for(lambda: spool.depth()[0] == 0, 5)
    assert len(transport.stored) == 4
    assert uploader.stop(5)
    spool.close()


def test_stop_interrupts_a_long_back_off(tmp_path: Path) -> None:
    asked = threading.Event()

    def verdict(records: list[dict[str, Any]]) -> Exception:
        asked.set()
        return RetryableError("503", status=503, retry_after=3600)

    transport = Scripted(verdict)
    uploader, spool, _ = make(tmp_path, transport)
    fill(spool, 1)
    uploader.start()
    assert asked.wait(5)
    started = time.monotonic()
    assert uploader.stop(5)
    assert time.monotonic() - started < 1.0
    assert spool.depth()[0] == 1
    spool.close()
