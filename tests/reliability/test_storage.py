"""Storage faults: a full disk, a read-only spool_dir, unreadable spool files, an old spool format."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import perf_sdk
from tests.conftest import SECRET, SERVICE, TOKEN
from tests.faultserver import FaultPlan, FaultServer
from tests.reliability.conftest import Row


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A small real filesystem (root only); skips the test where mounting is not allowed.

    Mounted owner-only (``mode=0700``): a tmpfs root is world-writable by default,
    and the SDK refuses a spool_dir others can write.
    """
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    options = f"mode=0700,{options}"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_disk_full_refuses_new_records_loudly_and_delivers_the_rest(
    tmp_path: Path, fault_server: Callable[..., FaultServer], report: Callable[[Row], None]
) -> None:
    server = fault_server(FaultPlan(always=503))  # nothing drains while the disk fills
    errors: list[BaseException] = []
    with tmpfs(tmp_path / "small", "size=6m") as spool_dir:
        tracker = perf_sdk.Tracker(
            service=SERVICE, endpoint=server.url, token=TOKEN, secret=SECRET, spool_dir=spool_dir,
            max_queue=5000, max_block=0.0, retry_initial=0.01, retry_max=0.05,
            on_error=lambda e, rs: errors.append(e),
        )  # fmt: skip
        try:
            calls = 400_000  # ~50 MB of record JSON, ~9 MB packed in the spool, for a 6 MB disk
            for block in range(0, calls, 1000):
                for i in range(block, block + 1000):
                    tracker.complete(f"full-{i}")  # never raises, never blocks
                tracker.persist(5)  # paced, so only the disk (not the writer's speed) refuses
            assert tracker.stats.refused > 0  # the disk is full: refused, loudly
            assert any("queue is full" in str(e) and "disk is full" in str(e) for e in errors)
            server.plan.always = None  # the platform answers again: the spool drains, room returns
            drained = tracker.flush(60)  # not truthy: the refused records are (rightly) reported
            assert drained.pending == 0 and not drained.timed_out, drained
            accepted = calls - tracker.stats.refused
            assert len(server.store) == accepted
            assert server.count_sum() == accepted
        finally:
            tracker.close(2)
        report(Row("disk full (6 MB tmpfs)", 1, accepted, len(server.store), server.count_sum() - accepted, None))


def test_read_only_spool_dir_fails_at_construction(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "ro,size=64k") as spool_dir:
        with pytest.raises(perf_sdk.ConfigurationError, match="not writable"):
            perf_sdk.Tracker(
                service=SERVICE, endpoint="http://127.0.0.1:9", token=TOKEN, secret=SECRET, spool_dir=spool_dir
            )


def test_sqlite_page_limit_behaves_like_a_full_disk(
    spool_dir: Path, fault_server: Callable[..., FaultServer], make_tracker: Callable[..., perf_sdk.Tracker]
) -> None:
    server = fault_server(FaultPlan(always=503))
    tracker = make_tracker(endpoint=server.url, max_queue=1000, max_block=0.0)
    tracker.complete("first")
    assert tracker.persist(60)
    spool = tracker._spool
    assert spool is not None
    with spool._mutex:  # the uploader uses the same connection (retrying the 503s)
        pages = spool._conn.execute("PRAGMA page_count").fetchone()[0]
        spool._conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    for i in range(20_000):
        tracker.complete(f"cap-{i}")
    tracker.persist(5)  # the disk refuses: what the writer could not spool waits in memory
    assert tracker.stats.refused > 0
    with spool._mutex:
        spool._conn.execute("PRAGMA max_page_count = 1073741823")
    server.plan.always = None
    # Once a delivery frees room the writer spools what it held: this test is about the page limit,
    # so it waits for that first (flush() racing the writer is the next test's subject).
    deadline = time.monotonic() + 60
    while not tracker.persist(60) and time.monotonic() < deadline:
        pass  # each persist() waits for two drains of the writer: not a busy loop
    drained = tracker.flush(60)  # not truthy: the refused records are (rightly) reported
    assert drained.pending == 0 and not drained.timed_out, drained
    assert len(server.store) == 20_001 - tracker.stats.refused


@pytest.mark.parametrize("slow_step", ["build", "commit"])
def test_flush_after_a_full_disk_waits_for_the_chunk_the_writer_is_building(
    slow_step: str,
    fault_server: Callable[..., FaultServer],
    make_tracker: Callable[..., perf_sdk.Tracker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """flush() must not answer "all stored" while accepted records are still in the writer's hands.

    The disk is full (appends held) while flush() waits for the writer; room
    returns just after, and the writer's last chunk is slow to build, or to
    commit (a busy machine or a slow fsync, made certain here), while the
    uploader delivers everything spooled before it.
    """
    import perf_sdk._writer as writer_module

    server = fault_server()
    tracker = make_tracker(endpoint=server.url, max_queue=100_000)
    tracker.complete("first")
    assert tracker.persist(60)
    spool, uploader = tracker._spool, tracker._uploader
    assert spool is not None and uploader is not None
    full = [True]
    monkeypatch.setattr(spool, "should_hold_appends", lambda: full[0])
    n = 2 * writer_module.CHUNK
    for i in range(n):
        tracker.complete(f"cap-{i}")
    build, append, wake = writer_module.build, spool.append, uploader.wake

    def slow_build(*args: Any, **kwargs: Any) -> Any:
        if not tracker._writer.queue:
            time.sleep(5.0)  # the last chunk: the queue is empty while it is built
        return build(*args, **kwargs)

    def slow_append(*args: Any, **kwargs: Any) -> Any:
        if not tracker._writer.queue:
            time.sleep(5.0)  # the last commit: nothing queued while it is written
        return append(*args, **kwargs)

    def wake_after_waiting_for_the_writer(adopt: bool = False, probe_paused: bool = False) -> None:
        if adopt:  # flush() has waited for the writer: now the disk has room again
            if slow_step == "build":
                monkeypatch.setattr(writer_module, "build", slow_build)
            else:
                monkeypatch.setattr(spool, "append", slow_append)
            full[0] = False
        wake(adopt=adopt, probe_paused=probe_paused)

    monkeypatch.setattr(uploader, "wake", wake_after_waiting_for_the_writer)
    result = tracker.flush(60)
    assert tracker.stats.refused == 0
    assert result.pending == 0 and result
    assert len(server.store) == n + 1  # with the step uncounted in pending(): 2,001 of 4,001


def test_corrupt_and_old_spools_beside_a_good_one(
    spool_dir: Path, fault_server: Callable[..., FaultServer], make_tracker: Callable[..., perf_sdk.Tracker]
) -> None:
    spool_dir.mkdir(parents=True)
    (spool_dir / "deadhost-1-aaaa0000.spool").write_bytes(b"SQLite format 3\x00" + os.urandom(5000))
    old = sqlite3.connect(spool_dir / "oldhost-2-bbbb0000.spool")
    old.execute("CREATE TABLE outbox(seq INTEGER PRIMARY KEY, dataset TEXT, rid TEXT, body BLOB, accepted_at REAL)")
    old.execute(
        "INSERT INTO outbox(dataset, rid, body, accepted_at) VALUES (?,?,?,?)",
        (
            f"{SERVICE}/transactions",
            "old-1",
            b'{"_id":"old-1","_timestamp":"2026-01-01T00:00:00+00:00","count":1,"stage":"started","channel":"paper"}',
            1.0,
        ),
    )
    old.execute("PRAGMA user_version=1")
    old.commit()
    old.close()
    server = fault_server()
    tracker = make_tracker(endpoint=server.url)
    tracker.complete("new-1")
    assert tracker.flush(60)
    assert {rid for _, rid in server.store} >= {"old-1"}
    assert len(server.store) == 2
    assert list(spool_dir.glob("*.corrupt-*"))  # quarantined, kept for inspection
