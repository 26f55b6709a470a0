"""Run the atheris harness for a bounded number of inputs (coverage-guided; skipped where atheris is absent).

The run is a smoke test of the harness and of the code it drives, sized by
inputs, not by time: about 45 s of CPU (most of it instrumenting the code at
start), and the deadlines (14 minutes, 15 for pytest) leave room for a machine
whose cores are busy with other work.
A longer campaign is run by hand:
``python -m tests.reliability.atheris_harness -atheris_runs=200000 -max_len=600``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNS = 5_000


@pytest.mark.timeout(900)
@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed (Python 3.11+)")
def test_atheris_finds_no_crash(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability.atheris_harness", f"-atheris_runs={RUNS}", "-seed=1", "-max_len=600"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"Done {RUNS} in" in done.stderr
    # Coverage grew beyond the start: the fuzzer really explored the code.
    assert "NEW" in done.stderr
