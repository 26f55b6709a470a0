"""The write protocol, one status code at a time (respx)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import httpx
import pytest
import respx

from perf_sdk import RejectedError, RetryableError, TransportError
from perf_sdk._errors import error_class_for_status, scrub
from perf_sdk._transport import USER_AGENT, HttpTransport, parse_retry_after

URL = "https://perf.example.gov.uk/data/svc/transactions"
BODY = json.dumps([{"_id": "a", "count": 1}]).encode()


@pytest.fixture
def transport() -> HttpTransport:
    t = HttpTransport(
        "https://perf.example.gov.uk/", "svc", {"transactions": "tok-1", "costs": "tok-2"}, gzip_threshold=100
    )
    yield t
    t.close()


@respx.mock
def test_ok_sends_bearer_token_user_agent_and_json(transport: HttpTransport) -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(200, json={"status": "ok"}))
    transport.send("transactions", BODY)
    request = route.calls.last.request
    assert request.headers["Authorization"] == "Bearer tok-1"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["Content-Type"] == "application/json"
    assert "Content-Encoding" not in request.headers
    assert json.loads(request.content) == [{"_id": "a", "count": 1}]


@respx.mock
def test_large_bodies_are_gzipped(transport: HttpTransport) -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(200, json={"status": "ok"}))
    big = json.dumps([{"_id": str(i), "count": 1} for i in range(50)]).encode()
    transport.send("transactions", big)
    request = route.calls.last.request
    assert request.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(request.content) == big


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 422])
@respx.mock
def test_permanent_refusals(transport: HttpTransport, status: int) -> None:
    respx.post(URL).mock(return_value=httpx.Response(status, json={"messages": ["bad _timestamp", "bad key"]}))
    with pytest.raises(RejectedError) as info:
        transport.send("transactions", BODY)
    assert info.value.status == status
    assert info.value.messages == ["bad _timestamp", "bad key"]
    assert "tok-1" not in str(info.value)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
@respx.mock
def test_retryable_statuses(transport: HttpTransport, status: int) -> None:
    respx.post(URL).mock(return_value=httpx.Response(status, headers={"Retry-After": "7"}, json={"message": "busy"}))
    with pytest.raises(RetryableError) as info:
        transport.send("transactions", BODY)
    assert info.value.status == status
    assert info.value.retry_after == 7.0
    assert info.value.messages == ["busy"]


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json={"status": "error", "message": "nope"}),
        httpx.Response(200, text="<html>captive portal</html>"),
        httpx.Response(200, text=""),
    ],
)
@respx.mock
def test_200_without_clear_success_is_retried(transport: HttpTransport, response: httpx.Response) -> None:
    respx.post(URL).mock(return_value=response)
    with pytest.raises(RetryableError):
        transport.send("transactions", BODY)


@pytest.mark.parametrize(
    "exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped")]
)
@respx.mock
def test_network_failures_are_retryable(transport: HttpTransport, exc: Exception) -> None:
    respx.post(URL).mock(side_effect=exc)
    with pytest.raises(RetryableError) as info:
        transport.send("transactions", BODY)
    assert info.value.status is None


def test_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


def test_repr_hides_tokens(transport: HttpTransport) -> None:
    assert "tok-1" not in repr(transport)


def test_tls_is_verified_by_default() -> None:
    t = HttpTransport("https://perf.example.gov.uk", "svc", {})
    try:
        pool = t._client._transport._pool  # type: ignore[attr-defined]
        assert pool._ssl_context.verify_mode.name == "CERT_REQUIRED"
    finally:
        t.close()


# -- hostile or broken endpoints (issue 12 item 5) -----------------------------------------------


@respx.mock
def test_an_answer_over_the_size_cap_is_retryable_and_not_read_to_the_end() -> None:
    served: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            served.append(1)
            yield b"x" * 65_536

    respx.post(URL).mock(return_value=httpx.Response(200, content=endless()))
    t = HttpTransport("https://perf.example.gov.uk", "svc", {"transactions": "tok-1"}, max_response_bytes=200_000)
    try:
        with pytest.raises(RetryableError, match="more than 200,000 bytes"):
            t.send("transactions", BODY)
    finally:
        t.close()
    assert len(served) == 4  # stopped at the first chunk past the cap


@respx.mock
def test_a_body_still_arriving_at_the_deadline_is_retryable() -> None:
    now = [0.0]

    def trickle() -> Iterator[bytes]:
        while True:
            now[0] += 0.5  # each byte half a second after the last: no read ever times out
            yield b" "

    respx.post(URL).mock(return_value=httpx.Response(200, content=trickle()))
    t = HttpTransport(
        "https://perf.example.gov.uk", "svc", {"transactions": "tok-1"}, deadline=30.0, clock=lambda: now[0]
    )
    try:
        with pytest.raises(RetryableError, match="within 30 s"):
            t.send("transactions", BODY)
    finally:
        t.close()
    assert now[0] == pytest.approx(30.0)


def test_the_deadline_defaults_to_three_read_timeouts() -> None:
    t = HttpTransport("https://perf.example.gov.uk", "svc", {}, timeout=4.0)
    try:
        assert t.deadline == 12.0
    finally:
        t.close()


@pytest.mark.parametrize("status", [200, 400, 401, 429, 500])
@respx.mock
def test_server_text_echoing_credentials_is_scrubbed(status: int) -> None:
    secret = "the-hmac-secret-value"
    respx.post(URL).mock(
        return_value=httpx.Response(
            status,
            json={
                "messages": [
                    "you sent Authorization: Bearer tok-transactions-1",
                    "token tok-transactions-1 unknown; default tok-default-2",
                    f"and the secret {secret}",
                ]
            },
        )
    )
    t = HttpTransport(
        "https://perf.example.gov.uk",
        "svc",
        {"transactions": "tok-transactions-1"},
        default_token="tok-default-2",
        redact=[secret],
    )
    try:
        with pytest.raises(TransportError) as info:
            t.send("transactions", BODY)
    finally:
        t.close()
    texts = [str(info.value), repr(info.value), *info.value.messages]
    for needle in ("tok-transactions-1", "tok-default-2", secret):
        assert all(needle not in text for text in texts), needle
    assert "<redacted>" in str(info.value)


@respx.mock
def test_a_plain_text_answer_is_scrubbed_too() -> None:
    respx.post(URL).mock(return_value=httpx.Response(502, text="proxy error; request had Bearer tok-1-long-enough"))
    t = HttpTransport("https://perf.example.gov.uk", "svc", {"transactions": "tok-1-long-enough"})
    try:
        with pytest.raises(RetryableError) as info:
            t.send("transactions", BODY)
    finally:
        t.close()
    assert "tok-1-long-enough" not in str(info.value)
    assert info.value.messages == ["proxy error; request had Bearer <redacted>"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer <redacted>"),
        ('{"authorization": "Basic dXNlcjpwYXNz"}', '{"authorization": "Basic <redacted>"}'),
        ("token=abc123&page=2", "token=<redacted>&page=2"),
        ('"secret": "xyz"', '"secret": "<redacted>"'),
        ("bad _timestamp: not ISO 8601", "bad _timestamp: not ISO 8601"),
        ("the token is missing", "the token is missing"),
    ],
)
def test_scrub_takes_out_anything_shaped_like_a_credential(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_scrub_takes_out_known_values_but_not_tiny_ones() -> None:
    assert scrub("a secret-value-123 b", ["secret-value-123"]) == "a <redacted> b"
    assert scrub("total", ["t", None, ""]) == "total"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, RejectedError),
        (404, RejectedError),
        (408, RetryableError),
        (425, RetryableError),
        (429, RetryableError),
        (500, RetryableError),
        (503, RetryableError),
    ],
)
def test_one_rule_for_which_statuses_are_retried(status: int, error: type[Exception]) -> None:
    assert error_class_for_status(status) is error


# --- found by review -------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [100, 200, 500])
@respx.mock
def test_a_token_straddling_an_excerpts_cut_is_scrubbed_whole(transport: HttpTransport, cut: int) -> None:
    """Server text is scrubbed before it is cut: a half-cut token would no longer match and leak its prefix."""
    token = "tok-1-" + "f" * 34
    t = HttpTransport("https://perf.example.gov.uk/", "svc", {"transactions": token})
    text = "x" * (cut - 10) + token + " rest"
    for response in (
        httpx.Response(200, json={"echo": text}),
        httpx.Response(403, text=text),
        httpx.Response(401, json={"message": text}),
    ):
        respx.post(URL).mock(return_value=response)
        with pytest.raises(TransportError) as info:
            t.send("transactions", BODY)
        shown = str(info.value) + " ".join(info.value.messages)
        assert token[:8] not in shown
    t.close()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_a_retry_after_that_says_nothing_useful_is_ignored(value: str) -> None:
    """0, negative, not finite, or a date already past: the usual back-off applies (never a spin)."""
    assert parse_retry_after(value) is None


@respx.mock
def test_a_gzip_answer_is_read_and_a_gzip_bomb_is_cut_off(transport: HttpTransport) -> None:
    ok = gzip.compress(json.dumps({"status": "ok"}).encode())
    respx.post(URL).mock(return_value=httpx.Response(200, content=ok, headers={"Content-Encoding": "gzip"}))
    transport.send("transactions", BODY)  # an ordinary compressed answer is understood
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 MB of spaces in about 64 KB
    respx.post(URL).mock(return_value=httpx.Response(200, content=bomb, headers={"Content-Encoding": "gzip"}))
    with pytest.raises(RetryableError, match="more than"):
        transport.send("transactions", BODY)


@respx.mock
def test_the_request_asks_for_an_uncompressed_answer(transport: HttpTransport) -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(200, json={"status": "ok"}))
    transport.send("transactions", BODY)
    assert route.calls.last.request.headers["Accept-Encoding"] == "identity"


@respx.mock
@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_no_frame_of_a_failed_send_holds_the_token(transport: HttpTransport, failure: Exception) -> None:
    """Error reporters that capture local variables (Sentry) must not find the token in the traceback.

    Nor in the exceptions chained to it: ``raise ... from None`` only hides httpx's exception from printed
    tracebacks; it stayed as ``__context__``, its frames holding the request's headers (the token in clear)
    for any hook or reporter that follows the chain.
    """
    respx.post(URL).mock(side_effect=failure)
    with pytest.raises(RetryableError) as info:
        transport.send("transactions", BODY)
    chained: BaseException | None = info.value
    seen = 0
    while chained is not None:
        tb = chained.__traceback__
        while tb is not None:
            for value in tb.tb_frame.f_locals.values():
                assert "tok-1" not in repr(value)
            tb = tb.tb_next
        seen += 1
        chained = chained.__cause__ or chained.__context__
    assert seen == 1  # nothing chained at all


@pytest.mark.parametrize("use_isal", [True, False])
def test_request_bodies_are_gzip_with_or_without_isal(use_isal: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # ISA-L where its wheels exist, the standard library elsewhere: either way, one gzip member any platform
    # (backdrop's GzipFile, ours) reads back to the same JSON.
    from perf_sdk import _gzip

    if not use_isal:
        monkeypatch.setattr(_gzip, "_isal_zlib", None)
    else:
        assert _gzip._isal_zlib is not None, "isal is a dependency on this platform"
    body = b'[{"_id": "a", "count": 1}' + b', {"count": 2}' * 5_000 + b"]"
    packed = _gzip.gzip_member(body)
    assert packed[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed) == body
    assert len(packed) < len(body) // 4
