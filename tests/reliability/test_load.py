"""Load and hanging platforms: nothing lost, and no wait that outlasts its timeout by the platform's time.

These tests assert behaviour only. The figures (the slowest recording call, the
SDK's peak memory, how long close() takes) depend on how busy the machine is,
and the test platform runs in this process (its million stored records would
count as the SDK's memory): ``benchmarks/reliability.py`` measures them with
the platform in a process of its own. Where a test must show that a call did
*not* wait for the platform, the platform hangs for far longer (an hour) than
the generous bound the test allows (30 s), so a busy machine cannot turn the
test red.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import perf_sdk
from tests.conftest import SECRET, SERVICE, TOKEN
from tests.faultserver import FaultPlan, FaultServer
from tests.reliability.conftest import Row

ROOT = Path(__file__).resolve().parents[2]
#: How long a hanging platform hangs: far beyond any bound a test allows.
HANG = 3600.0
#: The bound for a call that must not wait for the platform (a timeout of 0.5 s, on a busy machine).
NOT_THE_PLATFORMS_TIME = 30.0


@pytest.mark.slow
def test_8_threads_1m_records_slow_failing_platform(
    fault_server: Callable[..., FaultServer],
    make_tracker: Callable[..., perf_sdk.Tracker],
    report: Callable[[Row], None],
) -> None:
    server = fault_server(
        FaultPlan(rate=0.2, faults=("500", "503-retry-after", "drop-after-store", "slow"), seed=5, slow_seconds=0.5)
    )
    # Back-pressure, not refusal: a recording call waits for room (up to a minute, so a writer
    # descheduled on a busy machine never turns into refused records); the backlog is on disk.
    tracker = make_tracker(endpoint=server.url, timeout=0.3, max_queue=50_000, max_block=60.0)
    per_thread = 125_000
    worst = [0] * 8

    def work(n: int) -> None:
        pc = time.perf_counter_ns
        for i in range(per_thread):
            t = pc()
            tracker.complete(f"{n}-{i}")
            worst[n] = max(worst[n], pc() - t)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
        assert not th.is_alive(), "deadlock"
    assert tracker.flush(300)
    total = 8 * per_thread
    accepted = total - tracker.stats.refused
    assert tracker.stats.refused == 0
    assert len(server.store) == total
    assert server.count_sum() == total
    report(
        Row(
            "8 threads x 125k, slow + failing",
            1,
            accepted,
            len(server.store),
            server.count_sum() - accepted,
            max(worst) / 1000,
        )
    )


def test_flush_and_close_return_within_their_timeout_with_the_platform_hanging(
    fault_server: Callable[..., FaultServer], make_tracker: Callable[..., perf_sdk.Tracker]
) -> None:
    server = fault_server(FaultPlan(rate=1.0, faults=("slow",), slow_seconds=HANG))
    tracker = make_tracker(endpoint=server.url, timeout=HANG)
    for i in range(100):
        tracker.complete(f"h-{i}")
    assert tracker.persist(60)  # on disk: flush() and close() report all 100 as pending
    assert server.wait_for_requests(1)  # an upload is in flight, hanging
    for call in (lambda: tracker.flush(0.5), lambda: tracker.close(0.5)):
        started = time.monotonic()
        result = call()
        assert time.monotonic() - started < NOT_THE_PLATFORMS_TIME  # the timeout, not the platform's hour
        assert result.timed_out and result.pending == 100


def test_interpreter_exit_never_hangs(fault_server: Callable[..., FaultServer], spool_dir: Path) -> None:
    server = fault_server(FaultPlan(rate=1.0, faults=("slow",), slow_seconds=HANG))
    code = (
        "import perf_sdk\n"
        f"t = perf_sdk.Tracker(service={SERVICE!r}, endpoint={server.url!r}, token={TOKEN!r}, secret={SECRET!r},"
        f" spool_dir={str(spool_dir)!r}, timeout={HANG})\n"
        "for i in range(1000): t.complete(f'x-{i}')\n"
        "print('recorded', flush=True)\n"
    )
    # exit_timeout (2 s) plus start-up, on a busy machine; never the platform's hour.
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    assert "recorded" in done.stdout
    assert list(spool_dir.glob("*.spool"))  # what was left is on disk for the next process
