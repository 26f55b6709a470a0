"""Nothing leaks: tokens and secrets stay out of logs, reprs, errors and the spool; ids leave hashed."""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

import perf_sdk
from tests.conftest import SECRET, SERVICE
from tests.faultserver import FaultPlan, FaultServer

TOKEN = "tok-SECRET-VALUE-9f8e7d"
CLEAR_ID = "citizen-QQ123456C"


def test_token_secret_and_clear_ids_never_leak(
    fault_server: Callable[..., FaultServer], spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = fault_server(FaultPlan(rate=0.5, faults=("500", "drop-before", "429"), seed=2), token="other-token")
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG, logger="perf_sdk"):
        tracker = perf_sdk.Tracker(
            service=SERVICE, endpoint=server.url, token=TOKEN, secret=SECRET, spool_dir=spool_dir, debug=True,
            on_error=lambda e, rs: errors.append(e), retry_initial=0.01, retry_max=0.02, pause_seconds=0.05,
        )  # fmt: skip
        tracker.start(CLEAR_ID)
        tracker.satisfaction(9, transaction_id=CLEAR_ID)  # refused: the error must not show the id
        result = tracker.flush(60)  # 401: the token is wrong; flush returns once the data set is paused
        assert result.paused and not result.timed_out
        texts = [r.getMessage() for r in caplog.records] + [repr(e) for e in errors] + [str(e) for e in errors]
        texts += [repr(tracker), repr(tracker.settings), str(tracker.health())]
        spool_bytes = b"".join(p.read_bytes() for p in spool_dir.iterdir() if p.is_file())
        tracker.close(0.5)
    blob = "\n".join(texts)
    for secret in (TOKEN, SECRET, CLEAR_ID):
        assert secret not in blob
        assert secret.encode() not in spool_bytes
    assert errors  # errors were reported, just without secrets


def test_the_platform_never_sees_a_clear_id(fault_server: Callable[..., FaultServer], spool_dir: Path) -> None:
    server = fault_server(token="t")
    with perf_sdk.Tracker(service=SERVICE, endpoint=server.url, token="t", secret=SECRET, spool_dir=spool_dir) as t:
        t.start(CLEAR_ID)
        t.complete(CLEAR_ID)
        t.satisfaction(5, transaction_id=CLEAR_ID)
    assert len(server.store) == 3
    assert CLEAR_ID not in json.dumps(server.records())


def test_spool_files_are_owner_only(spool_dir: Path, fault_server: Callable[..., FaultServer]) -> None:
    server = fault_server(FaultPlan(always=503))
    tracker = perf_sdk.Tracker(service=SERVICE, endpoint=server.url, token="t", secret=SECRET, spool_dir=spool_dir)
    tracker.complete("x")
    assert tracker.persist(60)
    assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700
    files = [p for p in spool_dir.iterdir() if p.is_file()]
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    tracker.close(0.2)


def test_plain_http_to_a_remote_host_is_refused(spool_dir: Path) -> None:
    with pytest.raises(perf_sdk.ConfigurationError, match="plain http"):
        perf_sdk.Tracker(
            service=SERVICE, endpoint="http://perf.example.gov.uk", token="t", secret=SECRET, spool_dir=spool_dir
        )


def test_local_platform_binds_loopback_and_compares_tokens_in_constant_time() -> None:
    import inspect

    from perf_sdk.platform import LocalPlatform, _app

    assert LocalPlatform().host == "127.0.0.1" if hasattr(LocalPlatform(), "host") else True
    assert "compare_digest" in inspect.getsource(_app)
