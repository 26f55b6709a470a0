"""Upload policy: retries, bisection, splitting, pausing, stopping.

The policy tests call ``Uploader.run_pass()`` on the test's own thread, with a
scripted transport, a real spool, a fake clock and a sleep that only records how
long the uploader asked to wait: no live worker to poll, no waiting. Two tests at
the end drive the real thread (stop during a back-off, the loop's wake-ups).
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perf_sdk import RejectedError, RetryableError
from perf_sdk._spool import Spool
from perf_sdk._telemetry import Health, Stats
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


class Clock:
    """Monotonic time the test moves; ``sleep`` records each back-off and moves time on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make(tmp_path: Path, transport: Scripted, **kw: Any) -> tuple[Uploader, Spool, Stats, Clock]:
    spool = Spool(tmp_path)
    stats = Stats()
    clock = Clock()
    options: dict[str, Any] = {
        "retry_initial": 0.5,
        "retry_max": 60.0,
        "pause_seconds": 60.0,
        "clock": clock,
        "sleep": clock.sleep,
        "rng": random.Random(7),
    }
    options.update(kw)
    return Uploader(spool, transport, stats, **options), spool, stats, clock


def drain(uploader: Uploader, spool: Spool, passes: int = 10) -> None:
    """Run passes on this thread until the spool is empty (or ``passes`` ran)."""
    for _ in range(passes):
        if not spool.depth()[0]:
            return
        uploader.run_pass()


def test_a_bad_record_is_bisected_out_and_dead_lettered(tmp_path: Path) -> None:
    bad = {"r0007", "r0031"}
    transport = Scripted(
        lambda rs: (
            RejectedError("400", status=400, messages=["rating out of range"]) if bad & {r["_id"] for r in rs} else None
        )
    )
    uploader, spool, stats, _ = make(tmp_path, transport, batch_size=64)
    errors: list[tuple[BaseException, list[dict[str, Any]]]] = []
    uploader.on_dead_letter = lambda e, rs: errors.append((e, rs))
    ids = fill(spool, 50)
    assert uploader.run_pass() is True  # one pass settles the whole batch
    assert spool.depth()[0] == 0
    assert set(transport.stored) == set(ids) - bad
    assert stats.delivered == 48 and stats.dead_lettered == 2
    dead = spool.dead()
    assert {d.record["_id"] for d in dead} == bad
    assert all(d.status == 400 and d.reason == "rating out of range" for d in dead)
    assert len(errors) == 1  # one hook call and one log line per distinct refusal, not per record
    assert sorted(r["_id"] for _, rs in errors for r in rs) == sorted(bad)
    assert len(transport.requests) <= 1 + 2 * len(bad) * 6  # bisection: ~2k·log2(n), not one per record
    spool.close()


def test_a_whole_batch_of_bad_records_is_dead_lettered_one_by_one(tmp_path: Path) -> None:
    transport = Scripted(lambda rs: RejectedError("422", status=422, messages=["no"]))
    uploader, spool, stats, _ = make(tmp_path, transport)
    fill(spool, 4)
    uploader.run_pass()
    assert spool.depth()[0] == 0
    assert stats.dead_lettered == 4 and stats.delivered == 0
    assert len(spool.dead()) == 4
    spool.close()


def test_a_platform_refusing_every_record_pauses_the_data_set_instead_of_dead_lettering_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A stricter schema on the platform, or a field every record carries: each record is refused. Bisecting
    # 5,000 records out one by one took 9,999 requests, wrote 5,000 ERROR lines and dead-lettered all 5,000
    # (to be replayed by hand). Past 20 refusals in a row with nothing taken, it is the data set that is
    # refused: paused with one error, every record kept in the outbox, delivered once the platform is fixed.
    fixed = threading.Event()
    transport = Scripted(
        lambda rs: None if fixed.is_set() else RejectedError("400", status=400, messages=["unknown field 'channel'"])
    )
    uploader, spool, stats, clock = make(tmp_path, transport, batch_size=5_000)
    ids = fill(spool, 5_000)
    uploader.run_pass()
    assert uploader.paused_datasets() == ("svc/transactions",)
    assert spool.depth()[0] == 5_000 and spool.dead_count() == 0 and stats.dead_lettered == 0
    assert len(transport.requests) <= 1 + 2 * 21 * 13  # bounded: about 2 requests per refusal, 13 levels deep
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "took none of the 5000 records of svc/transactions" in errors[0].getMessage()
    assert "kept on disk" in errors[0].getMessage()
    fixed.set()
    clock.now += 61  # the pause ends
    drain(uploader, spool)
    assert set(transport.stored) == set(ids) and spool.dead_count() == 0


def _refusing(bad: Callable[[dict[str, Any]], bool]) -> Scripted:
    return Scripted(lambda rs: RejectedError("400", status=400, messages=["bad field"]) if any(map(bad, rs)) else None)


def test_a_run_of_bad_records_holds_up_none_of_the_good_ones_behind_it(tmp_path: Path) -> None:
    # A before_send bug adds a refused field to 30 records, then is fixed; 1,000 good records follow. Pausing
    # at the 21st refusal held the 1,000 for good (the same bad records led every later batch). Now the rest
    # of the batch is tried in the parts already cut: taken, so the 30 are bisected out and dead-lettered.
    transport = _refusing(lambda r: "oops" in r)
    uploader, spool, stats, _ = make(tmp_path, transport, batch_size=5_000)
    bad = [{"_id": f"b{i:02d}", "count": 1, "oops": 1} for i in range(30)]
    good = [{"_id": f"g{i:04d}", "count": 1} for i in range(1_000)]
    spool.append([("svc/transactions", 1_030, json.dumps(bad + good).encode())], time.time())
    uploader.run_pass()
    assert uploader.paused_datasets() == ()
    assert set(transport.stored) == {r["_id"] for r in good}
    assert {d.record["_id"] for d in spool.dead()} == {r["_id"] for r in bad} and spool.depth()[0] == 0


@pytest.mark.parametrize("newest_is_good", [True, False])
def test_a_whole_batch_of_bad_records_asks_the_newest_record_before_pausing(
    tmp_path: Path, newest_is_good: bool
) -> None:
    # The oldest batch is all bad. If the platform takes the data set's newest record, the batch is old bad
    # records: dead-lettered, and what follows delivered. If it refuses that too, it refuses the data set.
    transport = _refusing(lambda r: "oops" in r)
    uploader, spool, stats, _ = make(tmp_path, transport, batch_size=100)
    spool.append(
        [("svc/transactions", 100, json.dumps([{"_id": f"b{i}", "oops": 1} for i in range(100)]).encode())], 1.0
    )
    later = [{"_id": f"g{i}", "count": 1} | ({} if newest_is_good else {"oops": 1}) for i in range(50)]
    spool.append([("svc/transactions", 50, json.dumps(later).encode())], 2.0)
    drain(uploader, spool, passes=3)
    if newest_is_good:
        assert uploader.paused_datasets() == () and spool.depth()[0] == 0
        assert stats.dead_lettered == 100 and set(transport.stored) == {r["_id"] for r in later}
    else:
        assert uploader.paused_datasets() == ("svc/transactions",)
        assert spool.depth()[0] == 150 and stats.dead_lettered == 0 and transport.stored == {}
        assert "and the newest record waiting" in uploader.paused["svc/transactions"][1]


def test_bad_records_among_good_ones_are_dead_lettered_however_many(tmp_path: Path) -> None:
    # Refusals separated by deliveries are records' faults, not the data set's: no pause, each one kept.
    transport = Scripted(
        lambda rs: (
            RejectedError("400", status=400, messages=["bad"]) if any(int(r["_id"][1:]) % 2 for r in rs) else None
        )
    )
    uploader, spool, stats, _ = make(tmp_path, transport, batch_size=200)
    fill(spool, 200)
    uploader.run_pass()
    assert uploader.paused_datasets() == ()
    assert spool.depth()[0] == 0 and stats.dead_lettered == 100 and stats.delivered == 100


def test_413_splits_until_it_fits_and_dead_letters_a_lone_giant(tmp_path: Path) -> None:
    transport = Scripted(
        lambda rs: RejectedError("413", status=413) if len(rs) > 8 or any(r["_id"] == "r0003" for r in rs) else None
    )
    uploader, spool, _, _ = make(tmp_path, transport)
    ids = fill(spool, 40)
    uploader.run_pass()
    assert spool.depth()[0] == 0
    assert set(transport.stored) == set(ids) - {"r0003"}
    (dead,) = spool.dead()
    assert dead.record["_id"] == "r0003"
    assert "too large" in dead.reason
    assert len(transport.requests) < 25  # halving, not one request per record
    spool.close()


def test_retryable_errors_retry_until_success_honouring_retry_after(tmp_path: Path) -> None:
    answers = iter(
        [
            RetryableError("503", status=503, retry_after=7.0),
            RetryableError("drop"),
            RetryableError("429", status=429),
        ]
    )
    transport = Scripted(lambda rs: next(answers, None))
    uploader, spool, stats, clock = make(tmp_path, transport)
    fill(spool, 5)
    assert uploader.run_pass() is True
    assert len(transport.stored) == 5
    assert stats.retries == 3
    assert len(transport.requests) == 4
    assert clock.slept[0] == 7.0  # as the platform asked
    assert all(0.25 <= s <= 0.5 * 2**i for i, s in enumerate(clock.slept[1:], start=1))  # full jitter, doubling
    assert stats.waiting_for is None  # delivered: no longer waiting
    spool.close()


def test_back_off_doubles_up_to_the_ceiling(tmp_path: Path) -> None:
    answers = iter([RetryableError("503", status=503)] * 12)
    transport = Scripted(lambda rs: next(answers, None))
    uploader, spool, _, clock = make(tmp_path, transport, retry_initial=1.0, retry_max=8.0, rng=random.Random(1))
    fill(spool, 1)
    uploader.run_pass()
    assert len(clock.slept) == 12
    assert all(0.5 <= s <= 8.0 for s in clock.slept)
    assert max(clock.slept) > 4.0  # it did grow past the early ceilings


def test_a_huge_retry_after_is_capped(tmp_path: Path) -> None:
    answers = iter([RetryableError("503", status=503, retry_after=86_400)])
    transport = Scripted(lambda rs: next(answers, None))
    uploader, spool, _, clock = make(tmp_path, transport, retry_max=60.0)
    fill(spool, 1)
    uploader.run_pass()
    assert clock.slept == [600.0]  # ten times the ceiling, not a day


def test_while_retrying_it_says_what_it_waits_for(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str | None] = []
    transport = Scripted(lambda rs: None)
    transport.endpoint = "http://127.0.0.1:8999"  # type: ignore[attr-defined]
    failures = iter([RetryableError("could not reach ...", reason="connection refused")] * 4)

    def verdict(records: list[dict[str, Any]]) -> Exception | None:
        seen.append(uploader.stats.waiting_for)
        return next(failures, None)

    transport.verdict = verdict
    uploader, spool, stats, clock = make(tmp_path, transport, retry_initial=1.0, retry_max=8.0)
    fill(spool, 1)
    caplog.set_level("WARNING", logger="perf_sdk")
    uploader.run_pass()
    assert seen[0] is None
    assert seen[4] == (
        f"waiting for http://127.0.0.1:8999: connection refused, retry 4 in {clock.slept[3]:.0f} s; "
        "records are safe on disk"
    )
    assert "waiting for http://127.0.0.1:8999: connection refused, retry 1 in" in caplog.text
    assert stats.waiting_for is None
    spool.close()


@pytest.mark.parametrize("status", [401, 403, 404])
def test_configuration_errors_pause_the_data_set_and_keep_records(tmp_path: Path, status: int) -> None:
    transport = Scripted(lambda rs: RejectedError(str(status), status=status))
    uploader, spool, stats, clock = make(tmp_path, transport)
    seen: list[BaseException] = []
    uploader.on_error = lambda e, rs: seen.append(e)
    fill(spool, 5, "svc/costs")
    fill(spool, 3, "svc/transactions")
    uploader.run_pass()
    assert set(uploader.paused_datasets()) == {"svc/costs", "svc/transactions"}
    calls = len(transport.requests)
    clock.now += 59.0
    assert uploader.run_pass() is False  # paused: not hammering the platform
    assert len(transport.requests) == calls
    assert spool.depth()[0] == 8  # nothing lost
    assert stats.dead_lettered == 0
    assert len(seen) == 2 and all(getattr(e, "status", None) == status for e in seen)
    clock.now += 2.0
    uploader.run_pass()  # after pause_seconds, one probe per data set; the same answer pauses again
    assert len(transport.requests) == calls + 2
    assert len(seen) == 2  # reported once, not on every probe
    spool.close()


def test_pause_ends_and_records_flow_once_fixed(tmp_path: Path) -> None:
    state = {"token_ok": False}
    transport = Scripted(lambda rs: None if state["token_ok"] else RejectedError("401", status=401))
    uploader, spool, _, clock = make(tmp_path, transport, pause_seconds=300.0)
    fill(spool, 4)
    uploader.run_pass()
    assert uploader.paused_datasets() == ("svc/transactions",)
    state["token_ok"] = True
    uploader.wake(probe_paused=True)  # what flush() does: the caller may have fixed it
    uploader.run_pass()
    assert len(transport.stored) == 4
    assert uploader.paused_datasets() == ()
    spool.close()


def test_a_pass_sends_each_data_set_one_batch_at_a_time(tmp_path: Path) -> None:
    transport = Scripted(lambda rs: None)
    uploader, spool, stats, _ = make(tmp_path, transport, batch_size=10)
    fill(spool, 25, "svc/transactions")
    fill(spool, 5, "svc/costs")
    uploader.run_pass()
    assert sorted(len(r) for r in transport.requests) == [5, 25]  # a segment is never split across requests
    drain(uploader, spool)
    assert stats.delivered == 30
    spool.close()


def test_a_stop_during_a_back_off_ends_the_pass_and_keeps_the_records(tmp_path: Path) -> None:
    transport = Scripted(lambda rs: RetryableError("503", status=503))
    uploader, spool, _, clock = make(tmp_path, transport)

    def sleep(seconds: float) -> None:
        clock.slept.append(seconds)
        uploader.stop(0)  # as close() would, from another thread

    uploader._sleep_for = sleep
    fill(spool, 1)
    assert uploader.run_pass() is False
    assert len(clock.slept) == 1
    assert spool.depth()[0] == 1
    spool.close()


# -- the thread ----------------------------------------------------------------------------------


def test_stop_interrupts_a_long_back_off(tmp_path: Path) -> None:
    asked = threading.Event()

    def verdict(records: list[dict[str, Any]]) -> Exception:
        asked.set()
        return RetryableError("503", status=503, retry_after=3600)

    transport = Scripted(verdict)
    spool = Spool(tmp_path)
    uploader = Uploader(spool, transport, Stats())  # the real clock and sleep
    fill(spool, 1)
    uploader.start()
    assert asked.wait(30)
    assert uploader.stop(30)  # a back-off of an hour, cut short
    assert spool.depth()[0] == 1
    spool.close()


def test_the_thread_delivers_when_woken(tmp_path: Path) -> None:
    transport = Scripted(lambda rs: None)
    spool = Spool(tmp_path)
    uploader = Uploader(spool, transport, Stats(), adopt_every=3600)
    uploader.start()
    try:
        fill(spool, 3)
        with uploader.progress:
            uploader.wake()
            assert uploader.progress.wait_for(lambda: spool.depth()[0] == 0, 30)
    finally:
        assert uploader.stop(30)
    assert len(transport.stored) == 3
    spool.close()


def test_health_shows_what_delivery_waits_for() -> None:
    stats = Stats()
    stats.waiting_for = "waiting for https://x: answered 503, retry 2 in 1 s; records are safe on disk"
    health = Health(
        spool_depth=1,
        oldest_pending_age=1.0,
        last_success=None,
        last_error="503",
        dead_letters=0,
        paused=(),
        counters=stats.snapshot(),
    )
    assert health.waiting_for == stats.waiting_for
    stats.waiting_for = None
    assert dataclasses.replace(health, counters=stats.snapshot()).waiting_for is None


@pytest.mark.parametrize(
    "error",
    [
        RetryableError("503: you sent Authorization: Bearer leaked-token-123"),
        RejectedError("401: token=leaked-token-123 unknown", status=401),
        RejectedError("400", status=400, messages=["echo: Bearer leaked-token-123"]),
    ],
)
def test_text_from_any_transport_is_scrubbed(
    error: Exception, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    answers = iter([error])
    transport = Scripted(lambda rs: next(answers, None))
    uploader, spool, stats, _ = make(tmp_path, transport)
    seen: list[str | None] = []
    uploader.on_error = lambda e, rs: seen.append(uploader.stats.waiting_for)
    fill(spool, 1)
    caplog.set_level("DEBUG", logger="perf_sdk")
    uploader.run_pass()
    texts = [caplog.text, stats.last_error or "", *(s or "" for s in seen), *(d.reason for d in spool.dead())]
    texts += [why for _, why in uploader.paused.values()]
    assert all("leaked-token-123" not in text for text in texts)
    assert "<redacted>" in caplog.text
    spool.close()


# packed segments on the wire ---------------------------------------------------------------------
def _packed_spool(tmp_path: Path, segments: int, per_segment: int = 400) -> tuple[Spool, list[str]]:
    spool = Spool(tmp_path / "spool")
    ids: list[str] = []
    for s in range(segments):
        chunk = [f"s{s}-{i:04d}" for i in range(per_segment)]
        ids += chunk
        records = [{"_id": i, "_timestamp": "2026-03-04T05:06:07+00:00", "count": 1, "stage": "started"} for i in chunk]
        spool.append([("svc/transactions", len(chunk), json.dumps(records).encode())], time.time())
    return spool, ids


def test_packed_segments_go_as_stored_in_one_gzip_body_any_gzip_reader_reads(tmp_path: Path) -> None:
    import gzip
    import io

    import httpx
    import respx

    from perf_sdk._transport import HttpTransport

    spool, ids = _packed_spool(tmp_path, segments=3)
    transport = HttpTransport("https://platform.example", "svc", {}, default_token="t", timeout=5)
    sent: list[httpx.Request] = []
    with respx.mock(assert_all_called=True) as mock:
        mock.post("https://platform.example/data/svc/transactions").mock(
            side_effect=lambda request: (sent.append(request), httpx.Response(200, json={"status": "ok"}))[1]
        )
        uploader = Uploader(spool, transport, Stats(), batch_size=5_000)
        assert uploader.run_pass()
    transport.close()
    [request] = sent
    assert request.headers["content-encoding"] == "gzip"
    body = request.content
    assert body.count(b"\x1f\x8b") >= 3 + 4  # three segments' members and the "[", "," and "]" between them
    as_backdrop_reads_it = gzip.GzipFile(fileobj=io.BytesIO(body), mode="rb").read()  # backdrop's own reader
    assert [r["_id"] for r in json.loads(as_backdrop_reads_it)] == ids
    assert spool.depth()[0] == 0
    spool.close()


class _OwnSend:
    """A service's own transport: whatever the spool holds, it is handed JSON."""

    gzip_threshold = 1

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def send(self, data_type: str, body: bytes) -> None:
        self.bodies.append(body)

    def send_gzip(self, data_type: str, body: bytes) -> None:  # pragma: no cover - must not be called
        raise AssertionError("a transport of the service's own gets JSON")

    def close(self) -> None:
        pass


def test_a_transport_of_the_services_own_and_a_subclass_overriding_send_get_json(tmp_path: Path) -> None:
    from perf_sdk._transport import HttpTransport

    class Logged(HttpTransport):
        bodies: list[bytes] = []

        def send(self, data_type: str, body: bytes) -> None:
            self.bodies.append(body)

    spool, ids = _packed_spool(tmp_path, segments=2)
    own = _OwnSend()
    Uploader(spool, own, Stats(), batch_size=400).run_pass()
    [first] = own.bodies
    assert [r["_id"] for r in json.loads(first)] == ids[:400]
    logged = Logged("https://platform.example", "svc", {}, default_token="t")
    Uploader(spool, logged, Stats(), batch_size=400).run_pass()
    logged.close()
    assert [r["_id"] for r in json.loads(logged.bodies[0])] == ids[400:]
    spool.close()


def test_small_requests_and_many_segments_go_as_json_arrays(tmp_path: Path) -> None:
    # Below gzip_threshold the transport sends JSON as it always did; above 100 segments (201 members) the
    # request is one JSON array, compressed once, whatever a platform's limit on gzip members.
    import httpx
    import respx

    from perf_sdk._transport import HttpTransport

    for segments, per_segment, threshold, expect_gzip_members in ((2, 3, 32_768, 0), (150, 2, 1, 1)):
        spool, ids = _packed_spool(tmp_path / str(segments), segments=segments, per_segment=per_segment)
        transport = HttpTransport("https://platform.example", "svc", {}, default_token="t", gzip_threshold=threshold)
        with respx.mock() as mock:
            route = mock.post("https://platform.example/data/svc/transactions").mock(
                return_value=httpx.Response(200, json={"status": "ok"})
            )
            Uploader(spool, transport, Stats(), batch_size=10_000).run_pass()
        transport.close()
        assert route.call_count == 1
        assert route.calls[0].request.content.count(b"\x1f\x8b") == expect_gzip_members
        spool.close()


def test_a_platform_that_reads_only_the_first_gzip_member_still_gets_every_record(tmp_path: Path) -> None:
    # Some gzip readers (Rust's GzDecoder, a hand-rolled zlib loop) stop after the first member: they read
    # "[" alone and answer 400. The uploader then bisects, sending each half as JSON compressed once, so
    # nothing is lost and nothing is dead-lettered; the cost is one refused request.
    import zlib

    import httpx
    import respx

    from perf_sdk._transport import HttpTransport

    spool, ids = _packed_spool(tmp_path, segments=3)
    stored: list[str] = []

    def first_member_only(request: httpx.Request) -> httpx.Response:
        text = zlib.decompressobj(31).decompress(request.content)
        try:
            records = json.loads(text)
        except ValueError:
            return httpx.Response(400, json={"messages": ["Error parsing JSON"]})
        stored.extend(r["_id"] for r in records)
        return httpx.Response(200, json={"status": "ok"})

    transport = HttpTransport("https://platform.example", "svc", {}, default_token="t")
    with respx.mock() as mock:
        route = mock.post("https://platform.example/data/svc/transactions").mock(side_effect=first_member_only)
        uploader = Uploader(spool, transport, Stats(), batch_size=5_000)
        uploader.run_pass()
    transport.close()
    assert sorted(stored) == sorted(ids)
    assert route.call_count == 3  # the joined body, then two halves
    assert spool.depth()[0] == 0 and spool.dead_count() == 0
    spool.close()


# a segment whose stored bytes no longer read back -------------------------------------------------------------
def _damage(spool: Spool, nth: int, at: int | None = None) -> tuple[int, int]:
    """Flip one bit of the ``nth`` stored segment, as a bad disk sector would (``at``: the byte, else the middle).

    Returns (seq, records in it).
    """
    with spool._mutex:
        seq, n, body = spool._conn.execute("SELECT seq, n, body FROM segments ORDER BY seq").fetchall()[nth]
        body = bytearray(body)
        body[len(body) // 2 if at is None else at] ^= 0x10
        spool._conn.execute("UPDATE segments SET body = ? WHERE seq = ?", (bytes(body), seq))
    return seq, n


def _ids_of_segment(ids: list[str], nth: int, per_segment: int) -> set[str]:
    return set(ids[nth * per_segment : (nth + 1) * per_segment])


@pytest.mark.parametrize("where", ["deflate data", "gzip magic", "crc trailer"])
def test_an_unreadable_segment_is_set_aside_and_the_records_behind_it_are_delivered(
    tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A flipped bit in a stored segment used to raise out of every pass: retried every 5 s for ever, and every
    # record of the data set behind it held up. Now the segment is moved, raw, to the unreadable table.
    spool, ids = _packed_spool(tmp_path, segments=3, per_segment=200)
    at = {"deflate data": None, "gzip magic": 0, "crc trailer": -6}[where]
    _, n = _damage(spool, 1, at)
    transport = Scripted(lambda rs: None)
    errors: list[BaseException] = []
    clock, stats = Clock(), Stats()
    uploader = Uploader(
        spool, transport, stats, clock=clock, sleep=clock.sleep, on_error=lambda e, rs: errors.append(e)
    )
    drain(uploader, spool, passes=3)
    assert spool.depth()[0] == 0
    assert set(transport.stored) == set(ids) - _ids_of_segment(ids, 1, 200)
    assert n == 200 and stats.unreadable == 200 and stats.delivered == 400
    assert spool.dead_count() == 200  # what a person must look at: counted with the dead letters
    [aside] = spool.unreadable()
    assert aside.n == 200 and aside.dataset == "svc/transactions" and "no longer reads back" in aside.reason
    assert clock.slept == []  # nothing was retried
    assert any("no longer read back" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert len(errors) == 1 and "200 spooled record(s)" in str(errors[0])
    spool.close()
    assert list((tmp_path / "spool").glob("*.spool")), (
        "a spool holding unreadable segments is kept, not deleted on close"
    )


@pytest.mark.parametrize("body", [b'[{"_id":"r1","count":1}\x7f', b'[{"_id":"r1","co\xf5nt":1}]', b"[1,2]"])
def test_a_damaged_json_segment_is_set_aside_too(tmp_path: Path, body: bytes) -> None:
    # Bodies kept as JSON (spools from before packing, replayed dead letters) carry no checksum: they are
    # parsed before they are sent, so a service's own transport is never handed bytes that are not records.
    transport = Scripted(lambda rs: None)
    uploader, spool, stats, _ = make(tmp_path, transport)
    with spool._mutex:
        spool._conn.execute(
            "INSERT INTO segments(dataset, n, body, accepted_at) VALUES ('svc/transactions', 2, ?, 0)", (body,)
        )
    ids = fill(spool, 3)
    drain(uploader, spool)
    assert set(transport.stored) == set(ids) and stats.unreadable == 2
    spool.close()


def _gzip_platform(stored: list[str], damaged_status: int) -> Callable[[Any], Any]:
    """A platform reading gzip as backdrop does; a damaged body gets ``damaged_status``."""
    import gzip
    import io

    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        body = request.content
        try:
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.GzipFile(fileobj=io.BytesIO(body), mode="rb").read()
            records = json.loads(body)
        except (OSError, EOFError, ValueError):
            return httpx.Response(damaged_status, json={"messages": ["Error parsing request body"]})
        stored.extend(r["_id"] for r in records)
        return httpx.Response(200, json={"status": "ok"})

    return answer


@pytest.mark.parametrize("status", [400, 500])
def test_a_damaged_segment_sent_as_stored_is_found_when_the_platform_refuses_it(tmp_path: Path, status: int) -> None:
    # Sent as stored (gzip members joined), the damage is not seen by the client: the platform's gzip CRC check
    # refuses the body. A 400 leads to the bisection, which reads every segment; a platform answering 500 is
    # retried once, and the first retry checks that the segments still read back first.
    import respx

    from perf_sdk._transport import HttpTransport

    spool, ids = _packed_spool(tmp_path, segments=3, per_segment=300)
    _damage(spool, 2)
    stored: list[str] = []
    transport = HttpTransport("https://platform.example", "svc", {}, default_token="t")
    clock = Clock()
    stats = Stats()
    uploader = Uploader(spool, transport, stats, batch_size=5_000, clock=clock, sleep=clock.sleep)
    with respx.mock() as mock:
        route = mock.post("https://platform.example/data/svc/transactions").mock(
            side_effect=_gzip_platform(stored, status)
        )
        drain(uploader, spool, passes=3)
    transport.close()
    assert sorted(stored) == sorted(set(ids) - _ids_of_segment(ids, 2, 300))
    assert route.call_count == 2  # the damaged joined body, then the two readable segments
    assert stats.unreadable == 300 and stats.dead_lettered == 0
    assert len(clock.slept) == (1 if status == 500 else 0)
    assert spool.depth()[0] == 0 and spool.dead_count() == 300
    spool.close()


def test_an_outage_is_not_taken_for_damage(tmp_path: Path) -> None:
    # The check before the first retry reads the segments; when they read back, retrying goes on as before.
    failures = iter([RetryableError("503", status=503)] * 3)
    transport = Scripted(lambda rs: next(failures, None))
    uploader, spool, stats, clock = make(tmp_path, transport)
    ids = fill(spool, 10)
    uploader.run_pass()
    assert set(transport.stored) == set(ids) and len(clock.slept) == 3 and stats.unreadable == 0
    spool.close()
