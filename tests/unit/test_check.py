"""``perf-sdk check``: the rules, worked by hand, and the exit statuses and webhook of the command."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from perf_sdk._check import check
from perf_sdk._definition import parse_definition
from perf_sdk._errors import RejectedError, RetryableError
from perf_sdk._stats import newcombe_difference, wilson_interval
from perf_sdk._webhook import post_webhook, redact_url

#: A Monday morning: the latest complete week is 9..15 March 2026.
NOW = datetime(2026, 3, 16, 9, 0, tzinfo=timezone.utc)
WEEKLY = """\
[checks]
periods = ["week"]
confidence = 0.95
max_silence_hours = {transactions = 168}
"""


def _week(wednesday: datetime, started: int, completed: int) -> list[dict[str, Any]]:
    ts = wednesday.isoformat().replace("+00:00", "Z")
    return [
        {"_timestamp": ts, "stage": "started", "channel": "digital", "count": started},
        {"_timestamp": ts, "stage": "completed", "channel": "digital", "count": completed},
    ]


def _service(latest_completed: int) -> dict[str, list[dict[str, Any]]]:
    """Four baseline weeks at 80 / 100, then the latest week at ``latest_completed`` / 100."""
    latest = datetime(2026, 3, 11, 10, 0, tzinfo=timezone.utc)  # Wednesday of the week checked
    records: list[dict[str, Any]] = []
    for weeks_before in (4, 3, 2, 1):
        records += _week(latest - timedelta(weeks=weeks_before), 100, 80)
    records += _week(latest, 100, latest_completed)
    return {"transactions": records}


def test_wilson_and_newcombe_match_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873-890, table II example (56/70 - 48/80): 0.0524 to 0.3339
    d = newcombe_difference(48, 80, 56, 70)
    assert (round(d.low, 4), round(d.high, 4)) == (0.0524, 0.3339)
    # Wilson's interval for 8/10 by the formula in docs/guides/success.md
    i = wilson_interval(8, 10)
    assert (round(i.low, 4), round(i.high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 5).low == 0.0


def test_planted_drop_is_found_with_the_hand_computed_interval() -> None:
    report = check(records=_service(60), definition=parse_definition(WEEKLY), now=NOW, service="svc")
    assert report.exit_status == 1
    (finding,) = report.findings
    assert (finding.rule, finding.kpi, finding.label) == ("significant_drop", "completion_rate", "2026-W11")
    # by hand: baseline 320/400 = 80.0%, latest 60/100 = 60.0%, difference -20.0 points.
    # Wilson 320/400: 0.75803 .. 0.83626; Wilson 60/100: 0.50200 .. 0.69060;
    # low  = -0.2 - sqrt((0.6 - 0.50200)^2 + (0.83626 - 0.8)^2) = -0.30449
    # high = -0.2 + sqrt((0.69060 - 0.6)^2 + (0.8 - 0.75803)^2) = -0.10015
    details = finding.details
    assert details["difference"] == pytest.approx(-0.2)
    assert details["low"] == pytest.approx(-0.30449, abs=5e-5)
    assert details["high"] == pytest.approx(-0.10015, abs=5e-5)
    assert details["baseline"] == ["2026-W07", "2026-W08", "2026-W09", "2026-W10"]
    assert "interval -30.4 pts to -10.0 pts: significant drop" in report.to_text()


def test_same_data_without_the_drop_is_not_flagged_and_the_interval_is_printed() -> None:
    report = check(records=_service(78), definition=parse_definition(WEEKLY), now=NOW, service="svc")
    assert report.exit_status == 0, report.to_text()
    assert report.findings == ()
    text = report.to_text()
    # by hand: 78/100 against 320/400: -2.0 points, interval -0.11768 .. +0.06161
    assert "78.0% (78/100) vs baseline 80.0% (320/400" in text
    assert "interval -11.8 pts to +6.2 pts: no significant drop" in text
    comparison = report.to_dict()["comparisons"][0]
    assert comparison["low"] == pytest.approx(-0.11768, abs=5e-5)
    assert comparison["high"] == pytest.approx(0.06161, abs=5e-5)
    assert comparison["method"] == "newcombe-hybrid-score"


def test_below_target_is_attention() -> None:
    definition = parse_definition(WEEKLY + "[targets]\ncompletion_rate = {min = 0.85}\n")
    report = check(records=_service(78), definition=definition, now=NOW)
    (finding,) = report.findings
    assert finding.rule == "below_target"
    assert finding.message == "Completion rate 2026-W11 is 78.0%; the target is at least 85.0%"
    assert "  Completion rate 2026-W11: 78.0% (at least 85.0%): missed" in report.to_text()
    (row,) = report.to_dict()["targets"]
    assert row == {
        "period": "week",
        "label": "2026-W11",
        "kpi": "completion_rate",
        "value": 0.78,
        "status": "missed",
        "text": "at least 85.0%",
    }
    met = check(
        records=_service(78),
        definition=parse_definition(WEEKLY + "[targets]\ncompletion_rate = {min = 0.7}\n"),
        now=NOW,
    )
    assert met.ok and "Completion rate 2026-W11: 78.0% (at least 70.0%): met" in met.to_text()


def test_silence_and_missing_data_sets_are_attention() -> None:
    definition = parse_definition(
        '[checks]\nperiods = ["week"]\nmax_silence_hours = {transactions = 24, satisfaction = 168}\n'
    )
    report = check(records=_service(78), definition=definition, now=NOW)
    rules = sorted((f.rule, f.details["data_type"]) for f in report.findings)
    assert rules == [("no_records", "satisfaction"), ("no_records", "transactions")]
    silent = next(f for f in report.findings if f.details["data_type"] == "transactions")
    assert silent.details["silent_hours"] == pytest.approx(119.0)  # Wed 10:00 to Mon 09:00


def test_too_few_answers_in_a_month() -> None:
    definition = parse_definition('[checks]\nperiods = ["month"]\nmin_answers = 30\nmax_silence_hours = {}\n')
    records = {"satisfaction": [{"_timestamp": "2026-02-10T10:00:00Z", "rating": 5, "channel": "digital", "count": 12}]}
    report = check(records=records, definition=definition, now=NOW)
    (finding,) = report.findings
    assert finding.rule == "too_few_answers" and finding.label == "2026-02"
    assert "12 satisfaction answers in 2026-02: fewer than 30" in finding.message
    # 12 of 12 satisfied: Wilson 75.8% .. 100%
    assert "(its 95% interval runs from 75.8% to 100.0%)" in finding.message


def test_spool_age(tmp_path: Path) -> None:
    from perf_sdk import Tracker

    spool = tmp_path / "spool"
    # an endpoint nobody listens on: the record waits in the spool
    with Tracker(
        service="svc",
        endpoint="http://127.0.0.1:9",
        token="t",
        secret="s" * 32,
        spool_dir=spool,
        retry_initial=60.0,
    ) as tracker:
        tracker.satisfaction(5, channel="digital")
        assert tracker.persist(timeout=30.0)
        tracker.close(timeout=0.1)
    definition = parse_definition("[checks]\nmax_spool_age_minutes = 0.0001\nmax_silence_hours = {}\n")
    later = datetime.now(timezone.utc) + timedelta(seconds=1)
    report = check(records={}, definition=definition, now=later, spool_dir=spool)
    assert [f.rule for f in report.findings if f.rule.startswith("spool")] == ["spool_age"]


# -- the webhook, against a real receiver on loopback -------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    answers: list[int] = []
    bodies: list[dict[str, Any]] = []
    auth: list[str | None] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        type(self).auth.append(self.headers.get("Authorization"))
        status = type(self).answers.pop(0) if type(self).answers else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Handler", (_Receiver,), {"answers": [], "bodies": [], "auth": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/services/T000/B000/very-secret-path", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def test_webhook_retries_then_delivers_text(receiver: tuple[str, type[_Receiver]]) -> None:
    url, handler = receiver
    handler.answers[:] = [503, 429]
    waits: list[float] = []
    status = post_webhook(url, {"text": "hello"}, token="hook-token", sleep=waits.append, backoff=0.01)
    assert status == 200
    assert [b["text"] for b in handler.bodies] == ["hello"] * 3
    assert handler.auth == ["Bearer hook-token"] * 3
    assert waits == [0.01, 0.02]


def test_webhook_4xx_is_final_and_never_shows_the_secret(receiver: tuple[str, type[_Receiver]]) -> None:
    url, handler = receiver
    handler.answers[:] = [403]
    with pytest.raises(RejectedError) as caught:
        post_webhook(url, {"text": "x"}, token="hook-token", sleep=lambda s: None)
    assert len(handler.bodies) == 1
    assert "very-secret-path" not in str(caught.value) and "hook-token" not in str(caught.value)
    assert redact_url(url).endswith("/…") and "secret" not in redact_url(url)


def test_check_command_exit_statuses_and_webhook(
    receiver: tuple[str, type[_Receiver]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from perf_sdk.cli import main

    url, handler = receiver
    definition = tmp_path / "perf-sdk.toml"
    definition.write_text(WEEKLY)
    files = {}
    for name, completed in (("drop", 60), ("steady", 78)):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in _service(completed)["transactions"]))
    at = ["--at", "2026-03-16T09:00:00Z", "--definition", str(definition), "--service", "svc"]

    assert main(["check", *at, "--file", str(files["steady"]), "--webhook", url]) == 0
    assert handler.bodies == []  # all well: nothing posted
    assert "all well" in capsys.readouterr().out

    assert main(["check", *at, "--file", str(files["drop"]), "--format", "json", "--webhook", url]) == 1
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["status"] == "attention" and data["findings"][0]["rule"] == "significant_drop"
    assert handler.bodies[0]["text"].startswith("perf-sdk check: svc: 1 thing needs attention")
    assert handler.bodies[0]["perf_sdk"]["findings"][0]["rule"] == "significant_drop"
    assert "very-secret-path" not in captured.err + captured.out
    assert "alert posted to http://127.0.0.1:" in captured.err

    # a receiver that refuses: the run says so, without the URL's secret, and exits 1
    handler.answers[:] = [404]
    assert main(["check", *at, "--file", str(files["drop"]), "--webhook", url]) == 1
    err = capsys.readouterr().err
    assert "the alert was not delivered" in err and "very-secret-path" not in err

    bad = tmp_path / "bad.toml"
    bad.write_text('[checks]\nperiods = ["fortnight"]\n')
    assert main(["check", "--definition", str(bad), "--service", "svc"]) == 2
    assert "bad.toml, line 2" in capsys.readouterr().err


def test_wilson_bounds_are_exact_at_zero_and_all() -> None:
    assert wilson_interval(60, 60).high == 1.0
    assert wilson_interval(0, 60).low == 0.0


def test_default_confidence_is_99_and_the_planted_drop_still_shows() -> None:
    definition = parse_definition('[checks]\nperiods = ["week"]\nmax_silence_hours = {}\n')
    assert definition.checks.confidence == 0.99
    report = check(records=_service(60), definition=definition, now=NOW)
    assert [f.rule for f in report.findings] == ["significant_drop"]
    assert "99% interval" in report.to_text()


def test_a_day_is_compared_with_the_same_weekday_of_the_weeks_before() -> None:
    # Sundays carry half the completion rate of weekdays; the Sunday checked (15 March) is a normal Sunday
    records: list[dict[str, Any]] = []
    day = datetime(2026, 2, 14, 12, tzinfo=timezone.utc)
    while day < datetime(2026, 3, 16, tzinfo=timezone.utc):
        done = 40 if day.weekday() == 6 else 80
        records += _week(day, 100, done)
        day += timedelta(days=1)
    definition = parse_definition('[checks]\nperiods = ["day"]\nmax_silence_hours = {}\nconfidence = 0.95\n')
    report = check(records={"transactions": records}, definition=definition, now=NOW)
    assert report.findings == (), report.to_text()
    (comparison,) = [c for c in report.comparisons if c.kpi == "completion_rate"]
    assert comparison.label == "2026-03-15"
    assert comparison.baseline_labels == ("2026-02-15", "2026-02-22", "2026-03-01", "2026-03-08")


def test_completions_above_starts_in_a_week_need_attention() -> None:
    records = _service(78)
    records["transactions"] += _week(datetime(2026, 3, 12, 10, tzinfo=timezone.utc), 0, 50)  # 128 of 100
    report = check(records=records, definition=parse_definition(WEEKLY), now=NOW)
    (finding,) = report.findings
    assert (finding.rule, finding.kpi, finding.label) == ("cannot_be_right", "completion_rate", "2026-W11")
    assert "128 digital completions but only 100 digital starts (128%)" in finding.message


# -- odd records: a note, never a traceback (issue 19, defects 1 and 8) -------------------------------------


def test_a_negative_count_is_skipped_and_noted_never_a_traceback() -> None:
    records = _service(78)
    records["transactions"].append(
        {"_timestamp": "2026-03-11T11:00:00Z", "stage": "completed", "channel": "digital", "count": -500}
    )
    records["transactions"].append(
        {"_timestamp": "2026-03-11T11:00:00Z", "stage": "in-progress", "channel": "digital", "count": 3}
    )
    report = check(records=records, definition=parse_definition(WEEKLY), now=NOW, service="svc")
    steady = check(records=_service(78), definition=parse_definition(WEEKLY), now=NOW, service="svc")
    assert report.comparisons == steady.comparisons and report.findings == steady.findings
    assert report.skipped == {"transactions.count": 1, "transactions.stage": 1}
    assert report.to_dict()["skipped"] == {"transactions.count": 1, "transactions.stage": 1}
    assert "  - 1 transactions record skipped: its count is not a whole number" in report.to_text()


def test_hand_made_counts_with_a_negative_count_give_no_interval_and_no_traceback() -> None:
    from perf_sdk._check import evaluate
    from perf_sdk._kpi import Counts

    day = NOW.date() - timedelta(days=1)
    transactions = {(day - timedelta(weeks=k), "started", "digital"): 100 for k in range(5)}
    transactions.update({(day - timedelta(weeks=k), "completed", "digital"): 80 for k in range(1, 5)})
    transactions[(day, "completed", "digital")] = -420
    satisfaction = {(day.replace(day=1) - timedelta(days=20), 5, "digital"): -3}
    counts = Counts(transactions, satisfaction, bucket="day")
    definition = parse_definition('[checks]\nperiods = ["day", "month"]\nmax_silence_hours = {}\n')
    report = evaluate(counts, definition, now=NOW)
    assert not [c for c in report.comparisons if c.label == day.isoformat()]


def test_check_file_speaks_of_the_file_not_the_platform(tmp_path: Path) -> None:
    file = tmp_path / "history.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in _service(78)["transactions"]))
    file.write_text(file.read_text() + '{"_timestamp": "2026-03-11T10:00:00Z", "colour": "blue"}\n')
    definition = parse_definition('[checks]\nperiods = ["week"]\nmax_silence_hours = {satisfaction = 24}\n')
    report = check(path=file, definition=definition, now=NOW)
    (finding,) = report.findings
    assert finding.message.startswith("no satisfaction records at all in history.jsonl (expected")
    assert "platform" not in report.to_text()
    assert report.skipped == {"records.type": 1}
    in_memory = check(records=_service(78), definition=definition, now=NOW)
    assert in_memory.findings[0].message.startswith("no satisfaction records at all in the records (")


# -- the webhook against hostile receivers, and bad URLs (defects 9 and 15) ---------------------------------


def _raw_receiver(answer: Any) -> tuple[str, threading.Event]:
    """A loopback socket server that reads the request, then hands the socket to ``answer``."""
    import socket

    stop = threading.Event()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.recv(65536)
            threading.Thread(target=_quietly, args=(answer, conn, stop), daemon=True).start()
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/services/T0/B0/very-secret-path", stop


def _quietly(answer: Any, conn: Any, stop: threading.Event) -> None:
    try:
        answer(conn, stop)
    except OSError:
        pass
    finally:
        conn.close()


def _trickle_headers(conn: Any, stop: threading.Event) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
        if stop.wait(0.05):
            return
        conn.sendall(bytes([byte]))


def _trickle_body(conn: Any, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    while not stop.wait(0.05):
        conn.sendall(b"x")


def _huge_body(conn: Any, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: %d\r\n\r\n" % (300 * 1024 * 1024))
    chunk = b"x" * (1 << 20)
    for _ in range(300):
        if stop.is_set():
            return
        conn.sendall(chunk)


def test_a_receiver_that_trickles_its_headers_never_holds_the_run_past_its_deadline() -> None:
    import time

    url, stop = _raw_receiver(_trickle_headers)
    try:
        began = time.monotonic()
        with pytest.raises(RetryableError, match="did not answer within 1 s") as caught:
            post_webhook(url, {"text": "x"}, attempts=2, timeout=1.0, sleep=lambda s: None)
        assert time.monotonic() - began < 60  # two tries of 1 s each; the receiver would trickle for ever
        assert "very-secret-path" not in str(caught.value)
    finally:
        stop.set()


def test_a_receiver_that_trickles_its_answer_is_read_until_the_deadline_only() -> None:
    import time

    url, stop = _raw_receiver(_trickle_body)
    try:
        began = time.monotonic()
        assert post_webhook(url, {"text": "x"}, attempts=2, timeout=1.0, sleep=lambda s: None) == 200
        assert time.monotonic() - began < 60  # the status counts; the rest of the answer (for ever) is never read
    finally:
        stop.set()


def test_a_huge_answer_is_not_read_past_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from perf_sdk import _webhook

    read: list[int] = []
    original = httpx.Response.iter_raw

    def counting(self: httpx.Response, chunk_size: int | None = None) -> Any:
        for chunk in original(self, chunk_size):
            read.append(len(chunk))
            yield chunk

    monkeypatch.setattr(httpx.Response, "iter_raw", counting)
    url, stop = _raw_receiver(_huge_body)
    try:
        with pytest.raises(RetryableError, match="answered 503"):
            post_webhook(url, {"text": "x"}, attempts=2, timeout=30.0, sleep=lambda s: None)
    finally:
        stop.set()
    assert 0 < sum(read) < 2 * (_webhook.MAX_ANSWER_BYTES + 65_536)  # two tries, each stops at the cap


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.example.com/services/T0/B0/SECRET-TOKEN\x00", "control character or a space"),
        ("https://hooks.example.com/services/SECRET-TOKEN\n", "control character or a space"),
        ("https://hooks example.com/services/SECRET-TOKEN", "control character or a space"),
        ("https://hooks.example.com:99999/services/SECRET-TOKEN", "has port 99999"),
        ("ftp://hooks.example.com/services/SECRET-TOKEN", "must start with http:// or https://"),
        ("https:///services/SECRET-TOKEN", "has no host"),
        ("", "is empty"),
    ],
)
def test_a_bad_webhook_url_is_refused_up_front_without_showing_it(
    url: str, problem: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from perf_sdk._errors import TransportError
    from perf_sdk._webhook import webhook_url_problem
    from perf_sdk.cli import main

    assert problem in (webhook_url_problem(url) or "")
    with pytest.raises(TransportError) as caught:
        post_webhook(url, {"text": "x"}, attempts=1)
    assert "SECRET-TOKEN" not in str(caught.value)
    if url:
        assert main(["check", "--file", str(tmp_path / "none.jsonl"), "--webhook", url]) == 2
        err = capsys.readouterr().err
        assert err.startswith("perf-sdk: usage error: --webhook: the URL ") and problem in err
        assert "SECRET-TOKEN" not in err and "Traceback" not in err


def test_a_bad_webhook_url_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from perf_sdk.cli import main

    monkeypatch.setenv("PERF_SDK_WEBHOOK_URL", "https://hooks.example.com/x\x7f")
    assert main(["check", "--file", str(tmp_path / "none.jsonl")]) == 2
    assert "usage error: PERF_SDK_WEBHOOK_URL: the URL holds a control character" in capsys.readouterr().err


# -- a platform that cannot be read: attention (exit 1), not a usage error (defect 19) -----------------------


def test_an_unreachable_platform_is_attention_and_the_webhook_hears_of_it(
    receiver: tuple[str, type[_Receiver]], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from perf_sdk.cli import main

    for name in ("PERF_SDK_READ_ENDPOINT", "PERF_SDK_ENDPOINT", "PERF_SDK_SERVICE", "PERF_SDK_DEFINITION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(Path(__file__).parent)  # no perf-sdk.toml here
    url, handler = receiver
    args = ["check", "--read-endpoint", "http://127.0.0.1:9", "--service", "svc", "--at", "2026-03-16T09:00:00Z"]
    assert main([*args, "--format", "json", "--webhook", url]) == 1
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["status"] == "attention"
    assert [f["rule"] for f in data["findings"]] == ["platform_unreadable"]
    assert "perf-sdk: the platform cannot be read: cannot reach the platform's read API" in captured.err
    assert handler.bodies[0]["text"].startswith("perf-sdk check: svc: 1 thing needs attention")
    assert "the platform cannot be read, so nothing was checked" in handler.bodies[0]["text"]
    # a real usage error is still 2
    assert main(["check", "--service", "svc"]) == 2


# -- red-team round 4: what a hostile platform, a stray byte or a typo did to check ----------------------


def _platform(answer: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(answer), base_url="https://perf.example.gov.uk")


def _groups(*groups: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("sort_by"):
            return httpx.Response(200, json={"data": [{"_timestamp": "2026-03-16T08:00:00Z"}]})
        return httpx.Response(200, json={"data": list(groups)})

    return answer


BACKDROP_WEEK = {"_start_at": "2026-03-09T00:00:00+00:00", "_end_at": "2026-03-16T00:00:00+00:00", "_count": 2}


def _check_platform(*groups: dict[str, Any]) -> Any:
    bodies = [{**g, "values": [{"count:sum": 5, "count:count": 2, **g["values"][0]}]} for g in groups]
    return check(
        definition=parse_definition(WEEKLY), service="svc", read_endpoint="https://perf.example.gov.uk",
        token="tok-9f8e7d6c5b4a", now=NOW, client=_platform(_groups(*bodies)),
    )  # fmt: skip


@pytest.mark.parametrize("start_at", ["tok-9f8e7d6c5b4a", 1773568800])
def test_an_answer_not_in_backdrops_shape_is_an_error_not_a_traceback(start_at: object) -> None:
    # ValueError tracebacks, exit 1, the webhook never told; one printed the platform's text (here, the token).
    from perf_sdk._errors import TransportError

    with pytest.raises(TransportError, match="not in backdrop's shape") as caught:
        _check_platform(
            {"stage": "started", "channel": "digital", "values": [{**BACKDROP_WEEK, "_start_at": start_at}]}
        )
    assert "tok-9f8e7d6c5b4a" not in str(caught.value)


def test_a_sum_past_its_records_counts_is_skipped_not_an_overflow() -> None:
    # count:sum of 400 digits (no count:set to check it by) reached the statistics: OverflowError there.
    from datetime import date

    from perf_sdk._kpi import MAX_COUNT, CountsBuilder

    builder = CountsBuilder("day")
    builder.add_transactions(date(2026, 3, 9), "started", "digital", 10**400, records=2)
    builder.add_transactions(date(2026, 3, 9), "started", "digital", 2 * MAX_COUNT, records=2)
    counts = builder.build()
    assert counts.skipped == {"transactions.count": 2}
    assert sum(counts.transactions.values()) == 2 * MAX_COUNT


def test_a_newest_record_stamped_in_the_future_does_not_hide_a_silence() -> None:
    # One record stamped 2099 kept no_records from ever firing again.
    definition = parse_definition(WEEKLY)
    records = {"transactions": [*_service(78)["transactions"], {**_week(NOW, 1, 1)[0], "_timestamp": "2099-01-01"}]}
    late = NOW + timedelta(days=30)
    assert "no_records" in [f.rule for f in check(records=records, definition=definition, now=late).findings]
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _groups()(request)

    check(
        definition=definition, service="svc", read_endpoint="https://perf.example.gov.uk", now=NOW,
        client=_platform(answer),
    )  # fmt: skip
    newest = [r for r in seen if r.url.params.get("sort_by")]
    assert newest and newest[0].url.params["end_at"] == "2026-03-16T09:05:00Z"


def test_a_value_echoing_the_token_is_scrubbed_from_the_notes() -> None:
    token = "tok-0123456789abcdef"
    group = {"stage": f"Bearer {token}", "channel": "digital", "values": [{**BACKDROP_WEEK, "count:sum": 5}]}
    report = check(
        definition=parse_definition(WEEKLY), service="svc", read_endpoint="https://perf.example.gov.uk",
        token=token, now=NOW, client=_platform(_groups(group)),
    )  # fmt: skip
    assert report.notes and token[:12] not in report.to_text() and token[:12] not in json.dumps(report.to_dict())


def test_a_damaged_spool_file_is_a_finding_and_a_missing_spool_dir_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both passed as "all well" (exit 0): a typo checked nothing; a damaged file's records were never mentioned.
    from perf_sdk.cli import main

    (tmp_path / "svc.spool").write_bytes(b"not a database, whatever it once was" * 100)
    definition = parse_definition("[checks]\nmax_silence_hours = {}\n")
    report = check(records={}, definition=definition, now=NOW, spool_dir=tmp_path)
    assert [f.rule for f in report.findings] == ["spool_unreadable"] and "svc.spool" in report.findings[0].message
    assert main(["check", "--file", str(tmp_path / "none.jsonl"), "--spool-dir", str(tmp_path / "typo")]) == 2
    assert "--spool-dir" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "--at", "0001-01-01T00:00:00Z"],
        ["check", "--at", "9999-12-31T23:00:00Z"],
        ["kpis", "--from", "0001-01-01"],
        ["kpis", "--to", "9999-12-31"],
    ],
)
def test_dates_at_the_ends_of_the_calendar_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from perf_sdk.cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and "a year from 1900 to 9000" in capsys.readouterr().err


def test_the_webhooks_text_cannot_mention_a_channel(
    receiver: tuple[str, type[_Receiver]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A record's stage "<!channel> ..." reached Slack's text as a mention of everybody in the channel.
    from perf_sdk.cli import main

    url, handler = receiver
    path = tmp_path / "records.jsonl"
    rows = [*_service(60)["transactions"], {**_week(NOW, 1, 1)[0], "stage": "<!channel> log in at <https://evil|x>"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    definition = tmp_path / "perf-sdk.toml"
    definition.write_text(WEEKLY)
    argv = ["check", "--at", "2026-03-16T09:00:00Z", "--definition", str(definition), "--service", "svc"]
    assert main([*argv, "--file", str(path), "--webhook", url]) == 1
    text = handler.bodies[0]["text"]
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text
