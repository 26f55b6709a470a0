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


# -- the secret only when something must be hashed (issue 17 item 10) ------------------------------


def test_secret_is_optional_and_none_without_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERF_SDK_SECRET", raising=False)
    s = Settings.resolve(service="svc", endpoint="https://x.gov.uk", token="t", spool_dir=tmp_path)
    assert s.secret is None


def test_a_caller_that_hashes_at_once_still_requires_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERF_SDK_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="PERF_SDK_SECRET"):
        Settings.resolve(service="svc", need_endpoint=False, need_secret=True)


@pytest.mark.parametrize("where", ["argument", "environment"])
def test_a_short_secret_is_still_refused(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    given = {"secret": "short"} if where == "argument" else {}
    if where == "environment":
        monkeypatch.setenv("PERF_SDK_SECRET", "short")
    with pytest.raises(ConfigurationError, match="too short"):
        Settings.resolve(service="svc", endpoint="https://x.gov.uk", token="t", **given)


# -- switched off (issue 17 item 9) ------------------------------------------------------------


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PERF_SDK_SERVICE", "PERF_SDK_ENDPOINT", "PERF_SDK_TOKEN", "PERF_SDK_SECRET", "PERF_SDK_ENABLED"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("bare_env")
def test_no_endpoint_with_allow_disabled_is_off_not_an_error() -> None:
    s = Settings.resolve(allow_disabled=True)
    assert s.enabled is False
    assert s.disabled_reason is not None and "PERF_SDK_ENDPOINT" in s.disabled_reason
    assert s.service == "unconfigured"
    named = Settings.resolve(service="svc", allow_disabled=True)
    assert named.service == "svc" and named.enabled is False


@pytest.mark.usefixtures("bare_env")
def test_no_endpoint_without_allow_disabled_still_raises() -> None:
    with pytest.raises(ConfigurationError, match="no endpoint"):
        Settings.resolve(service="svc", token="t")


@pytest.mark.usefixtures("bare_env")
def test_enabled_false_switches_off_even_with_a_full_configuration(tmp_path: Path) -> None:
    s = Settings.resolve(
        service="svc",
        endpoint="https://x.gov.uk",
        token="t",
        secret=SECRET,
        spool_dir=tmp_path,
        enabled=False,
        allow_disabled=True,
    )
    assert s.enabled is False
    assert s.disabled_reason == "switched off by enabled=False"


@pytest.mark.usefixtures("bare_env")
@pytest.mark.parametrize("text", ["0", "false", "no", "off"])
def test_perf_sdk_enabled_0_switches_off(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERF_SDK_ENABLED", text)
    monkeypatch.setenv("PERF_SDK_ENDPOINT", "https://x.gov.uk")
    monkeypatch.setenv("PERF_SDK_TOKEN", "t")
    s = Settings.resolve(service="svc", allow_disabled=True)
    assert s.enabled is False
    assert s.disabled_reason == "switched off by PERF_SDK_ENABLED"
    with pytest.raises(ConfigurationError, match="PERF_SDK_ENABLED"):
        Settings.resolve(service="svc")


@pytest.mark.usefixtures("bare_env")
def test_enabled_is_the_default_and_a_bad_value_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings.resolve(service="svc", endpoint="https://x.gov.uk", token="t", allow_disabled=True)
    assert s.enabled is True and s.disabled_reason is None
    monkeypatch.setenv("PERF_SDK_ENABLED", "maybe")
    with pytest.raises(ConfigurationError, match="PERF_SDK_ENABLED"):
        Settings.resolve(service="svc", allow_disabled=True)


@pytest.mark.usefixtures("bare_env")
def test_switched_off_still_refuses_bad_values() -> None:
    with pytest.raises(ConfigurationError, match="too short"):
        Settings.resolve(service="svc", secret="short", allow_disabled=True)
    with pytest.raises(ConfigurationError, match="service"):
        Settings.resolve(service="Not A Slug", allow_disabled=True)
