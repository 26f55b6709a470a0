"""A child process that records, for crash tests: ``python -m tests.recorder_proc SPEC_JSON``.

Prints ``accepted <n>`` after each block of calls has returned *and* been
committed to disk, so the parent knows exactly what the SDK had accepted
before it sends SIGKILL. If a block cannot be committed within a minute (a
machine far too busy), it prints ``not persisted`` and exits 1 instead of
claiming what is not on disk.
"""

from __future__ import annotations

import json
import sys
import time

import perf_sdk


def main() -> None:
    spec = json.loads(sys.argv[1])
    tracker = perf_sdk.Tracker(
        service=spec["service"],
        endpoint=spec["endpoint"],
        token=spec["token"],
        secret=spec["secret"],
        spool_dir=spec["spool_dir"],
        retry_initial=0.01,
        retry_max=0.05,
        timeout=spec.get("timeout", 2.0),
        commit_interval=spec.get("commit_interval", 0.05),
        batch_size=spec.get("batch_size", 500),
    )
    prefix = spec["prefix"]
    block = spec.get("block", 1000)
    total = 0
    for start in range(0, spec["n"], block):
        for i in range(start, min(start + block, spec["n"])):
            tracker.complete(f"{prefix}-{i}", channel="digital" if i % 3 else "phone")
        total = min(start + block, spec["n"])
        if spec.get("persist", True) and not tracker.persist(60):
            print("not persisted", flush=True)
            sys.exit(1)
        print(f"accepted {total}", flush=True)
    if spec.get("then") == "flush":
        tracker.flush(60)
        print("flushed", flush=True)
    while spec.get("hang"):
        time.sleep(3600)  # wait to be killed


if __name__ == "__main__":
    main()
