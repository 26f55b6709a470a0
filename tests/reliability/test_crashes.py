"""SIGKILL at seeded points, and processes sharing one spool_dir: a successor delivers what was accepted."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import perf_sdk
from perf_sdk._records import RecordBuilder
from tests.conftest import SECRET, SERVICE, TOKEN
from tests.faultserver import FaultPlan, FaultServer
from tests.reliability.conftest import Row

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 400

#: Where the process is when it dies, and what the platform is doing then.
PHASES = {
    "recording": FaultPlan(),  # killed right after a block: the writer may be mid-commit
    "upload": FaultPlan(rate=1.0, faults=("slow",), slow_seconds=0.4),  # every request in flight
    "retry back-off": FaultPlan(rate=1.0, faults=("503-retry-after",), retry_after="30"),  # waiting to retry
    "stored, answer lost": FaultPlan(rate=1.0, faults=("drop-after-store",)),
}


def spawn(spec: dict[str, object]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.recorder_proc", json.dumps(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def kill_after(child: subprocess.Popen[str], lines: int) -> int:
    """SIGKILL the child once it has reported ``lines`` durable blocks; what it had accepted."""
    assert child.stdout is not None
    accepted = 0
    for _ in range(lines):
        line = child.stdout.readline()
        if not line.startswith("accepted"):
            break
        accepted = int(line.split()[1])
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    return accepted


@pytest.mark.parametrize("run", range(20))
def test_sigkill_at_a_seeded_point(
    run: int,
    fault_server: Callable[..., FaultServer],
    make_tracker: Callable[..., perf_sdk.Tracker],
    spool_dir: Path,
    report: Callable[[Row], None],
) -> None:
    rng = random.Random(run)
    phase = list(PHASES)[run % len(PHASES)]
    server = fault_server(PHASES[phase])
    blocks = rng.randint(1, 5)
    spec = {
        "service": SERVICE, "endpoint": server.url, "token": TOKEN, "secret": SECRET,
        "spool_dir": str(spool_dir), "prefix": f"r{run}", "n": 5 * BLOCK, "block": BLOCK,
        "hang": True, "timeout": 0.2, "batch_size": 150,
    }  # fmt: skip
    accepted = kill_after(spawn(spec), blocks)
    assert accepted == blocks * BLOCK
    server.plan = FaultPlan()
    heir = make_tracker(endpoint=server.url)
    assert heir.flush(60)
    ids = {rid for _, rid in server.store}
    builder = RecordBuilder(SERVICE, SECRET)
    ids_of = [
        builder.natural_id("transactions", "completed", builder.hash_transaction_id(f"r{run}-{i}"))
        for i in range(5 * BLOCK)
    ]
    # Everything accepted (durable) before the kill is stored, once. The child goes on recording
    # until the signal lands (how far depends on how busy the machine is): those records may be
    # stored too, and nothing else.
    assert set(ids_of[:accepted]) <= ids <= set(ids_of)
    assert server.count_sum() == len(ids)
    report(Row(f"SIGKILL during {phase}", 1, accepted, len(ids), server.count_sum() - len(ids), None))


def test_processes_sharing_a_spool_dir_some_killed(
    fault_server: Callable[..., FaultServer],
    make_tracker: Callable[..., perf_sdk.Tracker],
    spool_dir: Path,
    report: Callable[[Row], None],
) -> None:
    server = fault_server(FaultPlan(rate=1.0, faults=("slow",), slow_seconds=0.3))
    children = []
    for k in range(4):
        spec = {
            "service": SERVICE, "endpoint": server.url, "token": TOKEN, "secret": SECRET,
            "spool_dir": str(spool_dir), "prefix": f"p{k}", "n": 2 * BLOCK, "block": BLOCK,
            "hang": True, "timeout": 0.2,
        }  # fmt: skip
        children.append(spawn(spec))
    accepted = sum(kill_after(child, 2) for child in children[:2])  # two die with everything unsent
    for child in children[2:]:
        assert child.stdout is not None
        for _ in range(2):
            assert child.stdout.readline().startswith("accepted")
    accepted += 2 * 2 * BLOCK
    server.plan = FaultPlan()
    # A live tracker on the same directory adopts the dead processes' spools (not the live ones').
    heir = make_tracker(endpoint=server.url)
    assert heir.flush(60)
    # The survivors end too (SIGTERM, no handler: no atexit); the next tracker adopts their spools.
    for child in children[2:]:
        child.send_signal(signal.SIGTERM)
        child.wait(10)
    last = make_tracker(endpoint=server.url)
    assert last.flush(60)
    assert len(server.store) == accepted
    assert server.count_sum() == accepted
    report(Row("4 processes, 1 spool_dir, killed", 4, accepted, len(server.store), server.count_sum() - accepted, None))
