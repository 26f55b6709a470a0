"""Every fault the platform or the network can throw, one at a time: nothing lost, nothing twice.

The table printed at the end shows the slowest recording call of each run
("max host call") as a figure, not an assertion: on a busy machine a thread can
be descheduled for any length of time, so a wall-clock bound here would fail for
reasons that are not defects. ``benchmarks/reliability.py`` measures it (and the
SDK's memory) in a process apart from the test platform.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import perf_sdk
from tests.conftest import FAST, SECRET, SERVICE, TOKEN
from tests.faultserver import FAULTS, FaultPlan, FaultServer
from tests.reliability.conftest import Row

N = 3000


def drive(tracker: perf_sdk.Tracker, n: int = N, prefix: str = "t") -> float:
    """Record n completions (distinct transactions, some aggregated); the slowest call in µs."""
    worst = 0
    pc = time.perf_counter_ns
    for i in range(n):
        t = pc()
        if i % 10 == 0:
            tracker.start(None, channel="phone", count=3)
        else:
            tracker.complete(f"{prefix}-{i}")
        worst = max(worst, pc() - t)
    return worst / 1000


def expected_count_sum(n: int = N) -> int:
    return sum(3 if i % 10 == 0 else 1 for i in range(n))


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_alone(
    fault: str,
    fault_server: Callable[..., FaultServer],
    make_tracker: Callable[..., perf_sdk.Tracker],
    report: Callable[[Row], None],
) -> None:
    server = fault_server(FaultPlan(rate=0.5, faults=(fault,), seed=11, slow_seconds=0.6, retry_after="0.05"))
    tracker = make_tracker(endpoint=server.url, timeout=0.3, batch_size=200)
    worst = drive(tracker)
    assert tracker.flush(60)
    assert server.faults_injected[fault] >= 1  # the seeded schedule faults within the first 15 of >= 15 requests
    assert len(server.store) == N  # unique ids: each record once
    assert server.count_sum() == expected_count_sum()
    assert tracker.stats.refused == 0
    report(
        Row(
            fault,
            1,
            N,
            len(server.store),
            server.count_sum() - expected_count_sum(),
            worst,
            server.writes_seen - len(server.store),
        )
    )


def test_connection_refused_then_up(
    make_tracker: Callable[..., perf_sdk.Tracker], report: Callable[[Row], None]
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens: connection refused
    tracker = make_tracker(endpoint=f"http://127.0.0.1:{port}")
    worst = drive(tracker)
    assert not tracker.flush(0.3)
    server = FaultServer(token=TOKEN)
    server._sock.close()
    server._sock = socket.socket()
    server._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server._sock.bind(("127.0.0.1", port))
    server.port = port
    with server:
        assert tracker.flush(60)
        assert len(server.store) == N
        assert server.count_sum() == expected_count_sum()
        report(
            Row(
                "connection refused",
                1,
                N,
                len(server.store),
                server.count_sum() - expected_count_sum(),
                worst,
                server.writes_seen - len(server.store),
            )
        )


@pytest.fixture
def ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


def tls_server(ca: Any) -> FaultServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return FaultServer(token=TOKEN, ssl_context=context)


def test_tls_is_verified_and_an_untrusted_certificate_keeps_records(
    ca: Any, spool_dir: Path, tmp_path: Path, report: Callable[[Row], None]
) -> None:
    with tls_server(ca) as server:
        errors: list[BaseException] = []
        untrusting = perf_sdk.Tracker(
            service=SERVICE, endpoint=server.url, token=TOKEN, secret=SECRET, spool_dir=spool_dir,
            on_error=lambda e, rs: errors.append(e), **FAST,
        )  # fmt: skip
        worst = drive(untrusting)
        assert untrusting.persist(60)  # all on disk first, so close() reports every one of them as pending
        result = untrusting.close(0.5)
        assert result.pending == N  # the handshake failed: nothing sent, all kept
        assert server.store == {}
        assert any("SSL" in str(e) or "certificate" in str(e).lower() for e in errors)
        bundle = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        trusting = perf_sdk.Tracker(
            service=SERVICE, endpoint=server.url, token=TOKEN, secret=SECRET, spool_dir=spool_dir,
            ca_bundle=str(bundle), **FAST,
        )  # fmt: skip
        assert trusting.flush(60)  # adopts the first tracker's spool, over verified TLS
        trusting.close(1)
        assert len(server.store) == N
        report(
            Row(
                "TLS handshake failure",
                1,
                N,
                len(server.store),
                server.count_sum() - expected_count_sum(),
                worst,
                server.writes_seen - len(server.store),
            )
        )


def test_a_record_too_large_for_the_platform_is_dead_lettered_with_its_reason(
    fault_server: Callable[..., FaultServer], make_tracker: Callable[..., perf_sdk.Tracker]
) -> None:
    server = fault_server(FaultPlan(max_body=2_000))
    dead: list[tuple[BaseException, list[dict[str, Any]]]] = []
    tracker = make_tracker(endpoint=server.url, gzip_threshold=0, on_dead_letter=lambda e, rs: dead.append((e, rs)))
    tracker.record("notes", text="x" * 5_000)
    for i in range(50):
        tracker.complete(f"small-{i}")
    result = tracker.flush(60)  # returns as soon as only the dead letter is left
    assert result.dead_letters == 1
    assert len(server.store) == 50
    ((error, records),) = dead
    assert "too large" in str(error)
    assert records[0]["text"] == "x" * 5_000
