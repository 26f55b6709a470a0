"""A child process that closes its tracker while records are still arriving, then exits normally.

``python -m tests.shutdown_proc SPEC_JSON``. Modes:

* ``threads``: ``threads`` threads call ``complete()`` flat out; ``close(timeout)`` is called while they run.
* ``burst``: ``n`` records recorded in a burst, then ``close(timeout)`` at once.

Prints one JSON line: how many calls were made, how many the tracker refused
(reported to on_error), and what ``close()`` returned. The parent compares that
with what a successor on the same spool_dir delivers.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import perf_sdk


def main() -> None:
    spec = json.loads(sys.argv[1])
    refused: list[int] = []
    lock = threading.Lock()

    def on_error(error: BaseException, records: list[dict[str, object]]) -> None:
        with lock:
            refused.append(1)

    tracker = perf_sdk.Tracker(
        service=spec["service"],
        endpoint=spec["endpoint"],
        token=spec["token"],
        secret=spec["secret"],
        spool_dir=spec["spool_dir"],
        timeout=spec.get("timeout", 30.0),
        retry_initial=0.05,
        retry_max=0.2,
        on_error=on_error,
    )
    calls = [0] * spec.get("threads", 1)
    started = time.monotonic()
    if spec["mode"] == "threads":
        stop = threading.Event()

        def record(n: int) -> None:
            i = 0
            while not stop.is_set():
                tracker.complete(f"{spec['prefix']}-{n}-{i}")
                i += 1
                calls[n] = i

        threads = [threading.Thread(target=record, args=(n,)) for n in range(spec["threads"])]
        for thread in threads:
            thread.start()
        while sum(calls) < spec["before_close"]:
            time.sleep(0.01)
        started = time.monotonic()
        result = tracker.close(spec["close_timeout"])
        closed_in = time.monotonic() - started
        time.sleep(0.2)  # the threads keep calling a closed tracker: refused and reported
        stop.set()
        for thread in threads:
            thread.join()
    else:
        for i in range(spec["n"]):
            tracker.complete(f"{spec['prefix']}-{i}")
        calls[0] = spec["n"]
        started = time.monotonic()
        result = tracker.close(spec["close_timeout"])
        closed_in = time.monotonic() - started
    print(
        json.dumps(
            {
                "calls": sum(calls),
                "refused": len(refused),
                "unpersisted": result.unpersisted,
                "pending": result.pending,
                "closed_in": closed_in,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
