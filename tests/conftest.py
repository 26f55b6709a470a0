"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import perf_sdk
from tests.faultserver import FaultPlan, FaultServer
from tests.platform_db import postgres_session, postgres_url  # noqa: F401 - fixtures for every folder

SECRET = "test-secret-0123456789abcdef"
TOKEN = "test-token"
SERVICE = "apply-for-a-licence"

#: Settings that make retries fast enough for tests (the defaults are for production).
FAST = {"retry_initial": 0.01, "retry_max": 0.05, "pause_seconds": 0.2, "timeout": 2.0}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("PERF_SDK_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _restore_sdk_logger() -> Iterator[None]:
    """debug=True adds a handler to the ``perf_sdk`` logger; keep it from leaking into later tests."""
    import logging

    logger = logging.getLogger("perf_sdk")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def fault_server() -> Iterator[Callable[..., FaultServer]]:
    servers: list[FaultServer] = []

    def make(plan: FaultPlan | None = None, token: str = TOKEN) -> FaultServer:
        server = FaultServer(plan or FaultPlan(), token=token).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def make_tracker(spool_dir: Path) -> Iterator[Callable[..., perf_sdk.Tracker]]:
    trackers: list[perf_sdk.Tracker] = []

    def make(**kwargs: Any) -> perf_sdk.Tracker:
        options: dict[str, Any] = {
            "service": SERVICE,
            "secret": SECRET,
            "token": TOKEN,
            "spool_dir": spool_dir,
        }
        options.update(FAST)
        options.update(kwargs)
        tracker = perf_sdk.Tracker(**options)
        trackers.append(tracker)
        return tracker

    yield make
    for tracker in trackers:
        tracker.close(timeout=2.0)
