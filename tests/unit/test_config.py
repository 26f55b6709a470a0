"""Settings: arguments first, PERF_SDK_* second, clear errors, nothing secret shown."""

from __future__ import annotations

from pathlib import Path

import pytest

import perf_sdk
from perf_sdk import ConfigurationError
from perf_sdk._config import Settings, is_loopback_url

SECRET = "s" * 32


def test_environment_is_the_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PERF_SDK_SERVICE", "env-service")
    monkeypatch.setenv("PERF_SDK_ENDPOINT", "https://perf.example.gov.uk/")
    monkeypatch.setenv("PERF_SDK_TOKEN", "env-token")
    monkeypatch.setenv("PERF_SDK_SECRET", SECRET)
    monkeypatch.setenv("PERF_SDK_SPOOL_DIR", str(tmp_path))
    monkeypatch.setenv("PERF_SDK_STRICT", "yes")
    s = Settings.resolve(service="arg-service")
    assert s.service == "arg-service"  # explicit wins
    assert s.endpoint == "https://perf.example.gov.uk"
    assert s.token_for("costs") == "env-token"
    assert s.strict is True
    assert s.spool_dir == tmp_path


def test_per_type_tokens_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERF_SDK_TOKEN_COSTS", "costs-token")
    s = Settings.resolve(service="svc", endpoint="https://x.gov.uk", token="t", secret=SECRET)
    assert s.token_for("costs") == "costs-token"
    assert s.token_for("transactions") == "t"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"secret": None}, "PERF_SDK_SECRET"),
        ({"secret": "short"}, "too short"),
        ({"endpoint": None}, "PERF_SDK_ENDPOINT"),
        ({"token": None}, "PERF_SDK_TOKEN"),
        ({"service": "Not A Slug"}, "service"),
        ({"endpoint": "ftp://x"}, "endpoint"),
        ({"endpoint": "http://perf.example.gov.uk"}, "plain http://"),
        ({"tokens": {"bogus": "x"}}, "tokens"),
        ({"strict": "perhaps"}, "PERF_SDK_STRICT"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_configuration_fails_at_construction_saying_what_to_set(
    kwargs: dict[str, object], needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "strict" in kwargs:
        monkeypatch.setenv("PERF_SDK_STRICT", str(kwargs.pop("strict")))
    base: dict[str, object] = {
        "service": "svc",
        "endpoint": "https://perf.example.gov.uk",
        "token": "t",
        "secret": SECRET,
        "spool_dir": tmp_path,
    }
    base.update(kwargs)
    with pytest.raises(ConfigurationError) as info:
        perf_sdk.Tracker(**base)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_missing_service_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="PERF_SDK_SERVICE"):
        Settings.resolve()


def test_insecure_http_allowed_on_loopback_and_when_asked(tmp_path: Path) -> None:
    Settings.resolve(service="s", endpoint="http://127.0.0.1:8000", token="t", secret=SECRET, spool_dir=tmp_path)
    Settings.resolve(service="s", endpoint="http://localhost:8000", token="t", secret=SECRET, spool_dir=tmp_path)
    Settings.resolve(
        service="s",
        endpoint="http://perf.internal",
        token="t",
        secret=SECRET,
        allow_insecure_http=True,
        spool_dir=tmp_path,
    )


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1", True),
        ("http://[::1]:80", True),
        ("http://localhost", True),
        ("http://10.0.0.1", False),
    ],
)
def test_is_loopback(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_secrets_never_in_reprs(tmp_path: Path) -> None:
    tracker = perf_sdk.Tracker(
        service="svc",
        endpoint="https://perf.example.gov.uk",
        token="TOKEN-abc",
        secret=SECRET,
        spool_dir=tmp_path,
    )
    try:
        for text in (repr(tracker), repr(tracker.settings), str(tracker.settings)):
            assert "TOKEN-abc" not in text
            assert SECRET not in text
    finally:
        tracker.close()


def test_unwritable_spool_dir_is_a_configuration_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os

        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write anywhere (root)")
        with pytest.raises(ConfigurationError, match="not writable"):
            perf_sdk.Tracker(service="svc", endpoint="https://x.gov.uk", token="t", secret=SECRET, spool_dir=ro)
    finally:
        ro.chmod(0o700)
