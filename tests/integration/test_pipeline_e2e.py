"""The whole pipeline over loopback against a real HTTP peer, with faults and crashes.

Waits are on events (the platform saw a request, an error was reported) or on
``flush()`` with a deadline of a minute or more, which returns as soon as the
work is done: a busy machine makes these tests slower, never red.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import perf_sdk
from tests.conftest import SECRET, SERVICE, TOKEN
from tests.faultserver import FAULTS, FaultPlan, FaultServer

ROOT = Path(__file__).resolve().parents[2]


def record_mix(tracker: perf_sdk.Tracker, scale: int = 1) -> tuple[int, int]:
    """20,000 records of every kind with distinct ids; returns (records, sum of count)."""
    n = 0
    total = 0
    for i in range(10_000 * scale):
        tracker.start(f"txn-{i}")
        n, total = n + 1, total + 1
    for i in range(6_000 * scale):
        tracker.complete(f"txn-{i}", channel="digital" if i % 4 else "paper")
        n, total = n + 1, total + 1
    for i in range(3_000 * scale):
        tracker.satisfaction(1 + i % 5, transaction_id=f"txn-{i}")
        n, total = n + 1, total + 1
    for _ in range(1_000 * scale):
        tracker.start(None, channel="phone", count=5)
        n, total = n + 1, total + 5
    return n, total


def test_20000_mixed_records_arrive_exactly_once(
    fault_server: Callable[..., FaultServer], make_tracker: Callable[..., perf_sdk.Tracker]
) -> None:
    server = fault_server()
    tracker = make_tracker(endpoint=server.url)
    n, total = record_mix(tracker)
    assert tracker.flush(120)
    assert len(server.store) == n == 20_000
    assert server.count_sum() == total
    assert tracker.stats.refused == 0


def test_20000_mixed_records_on_the_local_platform(make_tracker: Callable[..., perf_sdk.Tracker]) -> None:
    """The same, against perf_sdk's own platform: backdrop's validation, upsert and read API."""
    from perf_sdk.platform import LocalPlatform

    with LocalPlatform(token=TOKEN) as platform:
        tracker = make_tracker(endpoint=platform.url)
        n, total = record_mix(tracker)
        assert tracker.flush(120)
        stored = {dt: platform.records(SERVICE, dt) for dt in ("transactions", "satisfaction")}
        assert sum(len(rs) for rs in stored.values()) == n == 20_000
        assert sum(r["count"] for rs in stored.values() for r in rs) == total
        assert len({r["_id"] for rs in stored.values() for r in rs}) == n
        assert tracker.stats.dead_lettered == 0


def test_20000_records_with_30_percent_of_requests_failing_in_every_way(
    fault_server: Callable[..., FaultServer], make_tracker: Callable[..., perf_sdk.Tracker]
) -> None:
    server = fault_server(FaultPlan(rate=0.3, faults=FAULTS, seed=7, slow_seconds=1.0))
    tracker = make_tracker(endpoint=server.url, timeout=0.5, batch_size=250)
    n, total = record_mix(tracker)
    assert tracker.flush(120)
    assert len(server.store) == n
    assert server.count_sum() == total
    assert sum(server.faults_injected.values()) >= 10
    assert server.faults_injected["drop-after-store"] >= 1  # stored, then re-sent: still once
    assert server.writes_seen > n  # some batches were stored twice on the wire
    assert tracker.stats.retries >= sum(server.faults_injected.values())


def test_platform_down_for_the_whole_run_then_up(
    fault_server: Callable[..., FaultServer], make_tracker: Callable[..., perf_sdk.Tracker]
) -> None:
    probe = FaultServer()
    port = probe.port
    probe._sock.close()  # nothing listens on this port: connection refused
    tried = threading.Event()
    tracker = make_tracker(endpoint=f"http://127.0.0.1:{port}", retry_max=0.05, on_error=lambda e, rs: tried.set())
    for i in range(3000):
        tracker.complete(f"t{i}")
    assert tracker.persist(60)  # all on disk, so the flush below reports every one as pending
    assert tried.wait(60)  # the uploader tried, and the connection was refused
    result = tracker.flush(0.5)
    assert result.pending == 3000 and result.timed_out
    assert tracker.health().last_error
    server = FaultServer(token=TOKEN)
    server._sock.close()
    server._sock = socket.socket()
    server._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server._sock.bind(("127.0.0.1", port))
    server.port = port
    server.start()
    try:
        assert tracker.flush(60)
        assert len(server.store) == 3000
    finally:
        server.stop()


def run_recorder(spec: dict[str, object]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.recorder_proc", json.dumps(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_sigkill_mid_upload_then_successor_delivers_exactly_what_was_accepted(
    fault_server: Callable[..., FaultServer], spool_dir: Path, make_tracker: Callable[..., perf_sdk.Tracker]
) -> None:
    # Every request stalls past the client's time-out: the child is always mid-upload.
    server = fault_server(FaultPlan(rate=1.0, faults=("slow", "drop-after-store"), seed=3, slow_seconds=0.5))
    spec = {
        "service": SERVICE,
        "endpoint": server.url,
        "token": TOKEN,
        "secret": SECRET,
        "spool_dir": str(spool_dir),
        "prefix": "k",
        "n": 5000,
        "block": 1000,
        "hang": True,
        "timeout": 0.3,
    }
    child = run_recorder(spec)
    assert child.stdout is not None
    accepted = 0
    for line in child.stdout:
        assert line.startswith("accepted"), line
        accepted = int(line.split()[1])
        if accepted == 5000:
            break
    assert server.wait_for_requests(1)  # it is uploading when killed
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert accepted == 5000
    server.plan.rate = 0.0
    heir = make_tracker(endpoint=server.url)
    assert heir.flush(60)
    stored_ids = {rid for (_, rid) in server.store}
    assert len(stored_ids) == 5000
    assert server.count_sum() == 5000
    assert list(spool_dir.glob("*.spool")) == [] or all(
        p.name.startswith(os.uname().nodename) for p in spool_dir.glob("*.spool")
    )


@pytest.mark.parametrize("status", [401, 404])
def test_wrong_token_or_data_set_keeps_records_until_fixed(
    fault_server: Callable[..., FaultServer], make_tracker: Callable[..., perf_sdk.Tracker], status: int
) -> None:
    server = fault_server(FaultPlan(always=status))
    errors: list[BaseException] = []
    tracker = make_tracker(endpoint=server.url, on_error=lambda e, rs: errors.append(e), pause_seconds=0.05)
    for i in range(10):
        tracker.complete(f"t{i}")
    result = tracker.flush(60)  # returns as soon as the data set is paused
    assert result.pending == 10 and result.paused and not result.timed_out
    assert any(getattr(e, "status", None) == status for e in errors)
    server.plan.always = None
    assert tracker.flush(60)
    assert len(server.store) == 10


def test_a_segment_damaged_on_disk_holds_up_nothing_on_the_local_platform(
    spool_dir: Path, make_tracker: Callable[..., perf_sdk.Tracker]
) -> None:
    """A bit flipped in a stored segment while the platform was away: the successor delivers everything else.

    The damaged segment goes to the platform as stored, its gzip CRC check fails there (a 400), the bisection
    finds it, and it is set aside. Before, the uploader raised on it every 5 s and delivered nothing more.
    """
    import sqlite3

    from perf_sdk.platform import LocalPlatform

    probe = FaultServer()
    port = probe.port
    probe._sock.close()  # nothing listens: the first tracker keeps everything in its spool
    first = make_tracker(endpoint=f"http://127.0.0.1:{port}", retry_max=0.05)
    for i in range(3_000):
        first.start(f"txn-{i}")
        if i % 500 == 499:
            assert first.persist(60)  # one segment per 500
    first.close(timeout=0.5)
    [path] = spool_dir.glob("*.spool")
    conn = sqlite3.connect(path)
    segments = conn.execute("SELECT seq, n, body FROM segments ORDER BY seq").fetchall()
    assert len(segments) >= 3
    seq, damaged_n, body = segments[1]
    body = bytearray(body)
    body[len(body) // 2] ^= 0x04
    conn.execute("UPDATE segments SET body = ? WHERE seq = ?", (bytes(body), seq))
    conn.commit()
    conn.close()
    with LocalPlatform(token=TOKEN) as platform:
        second = make_tracker(endpoint=platform.url)
        result = second.flush(120)
        assert result.pending == 0 and not result.timed_out
        assert len(platform.records(SERVICE, "transactions")) == 3_000 - damaged_n
        health = second.health()
        assert health.dead_letters == damaged_n and health.counters["unreadable"] == damaged_n
        assert not health.healthy
