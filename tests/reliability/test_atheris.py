"""Run the atheris harness for a bounded number of inputs (coverage-guided; skipped where atheris is absent)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed (Python 3.11+)")
def test_atheris_finds_no_crash(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability.atheris_harness", "-atheris_runs=30000", "-seed=1", "-max_len=600"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Done 30000 in" in done.stderr
    # Coverage grew beyond the start: the fuzzer really explored the code.
    assert "NEW" in done.stderr
