"""The write protocol, one status code at a time (respx)."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
import respx

from perf_sdk import RejectedError, RetryableError
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
