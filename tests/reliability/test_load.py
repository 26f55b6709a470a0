"""Load and hanging platforms: memory bounded, nothing lost, every wait bounded."""

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


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_8_threads_1m_records_slow_failing_platform(
    fault_server: Callable[..., FaultServer],
    make_tracker: Callable[..., perf_sdk.Tracker],
    report: Callable[[Row], None],
) -> None:
    server = fault_server(
        FaultPlan(rate=0.2, faults=("500", "503-retry-after", "drop-after-store", "slow"), seed=5, slow_seconds=0.5)
    )
    tracker = make_tracker(endpoint=server.url, timeout=0.3, max_queue=50_000, max_block=5.0)
    per_thread = 125_000
    worst = [0] * 8
    before = rss_mb()
    peak = [before]

    def work(n: int) -> None:
        pc = time.perf_counter_ns
        for i in range(per_thread):
            t = pc()
            tracker.complete(f"{n}-{i}")
            worst[n] = max(worst[n], pc() - t)
            if i % 20_000 == 0:
                peak[0] = max(peak[0], rss_mb())

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
    assert peak[0] - before < 300  # bounded: the backlog is on disk, not in memory
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
    server = fault_server(FaultPlan(rate=1.0, faults=("slow",), slow_seconds=60))
    tracker = make_tracker(endpoint=server.url, timeout=60)
    for i in range(100):
        tracker.complete(f"h-{i}")
    for call, limit in ((lambda: tracker.flush(0.5), 0.5), (lambda: tracker.close(0.5), 0.5)):
        started = time.monotonic()
        result = call()
        assert time.monotonic() - started < limit + 0.5
        assert result.pending == 100


def test_interpreter_exit_never_hangs(fault_server: Callable[..., FaultServer], spool_dir: Path) -> None:
    server = fault_server(FaultPlan(rate=1.0, faults=("slow",), slow_seconds=60))
    code = (
        "import perf_sdk\n"
        f"t = perf_sdk.Tracker(service={SERVICE!r}, endpoint={server.url!r}, token={TOKEN!r}, secret={SECRET!r},"
        f" spool_dir={str(spool_dir)!r}, timeout=60)\n"
        "for i in range(1000): t.complete(f'x-{i}')\n"
        "print('recorded', flush=True)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=ROOT, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 10  # exit_timeout (2 s) + start-up, never the platform's 60 s
    assert list(spool_dir.glob("*.spool"))  # what was left is on disk for the next process
