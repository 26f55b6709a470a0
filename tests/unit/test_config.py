"""Settings: arguments first, PERF_SDK_* second, clear errors, nothing secret shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import perf_sdk
from perf_sdk import ConfigurationError
from perf_sdk._config import ReadSettings, Settings, default_spool_dir, is_loopback_url, resolve_spool_dir

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


# -- the read side: one reader, the same rules (issue 13 item 3) ----------------------------------


@pytest.mark.usefixtures("bare_env")
def test_read_settings_refuse_plain_http_to_another_host(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="plain http://"):
        ReadSettings.resolve(service="svc", read_endpoint="http://perf.example.gov.uk", token="t")
    monkeypatch.setenv("PERF_SDK_ENDPOINT", "http://perf.example.gov.uk")
    with pytest.raises(ConfigurationError, match="plain http://"):
        ReadSettings.resolve(service="svc")
    monkeypatch.setenv("PERF_SDK_ALLOW_INSECURE_HTTP", "1")
    assert ReadSettings.resolve(service="svc").read_endpoint == "http://perf.example.gov.uk"
    assert ReadSettings.resolve(read_endpoint="http://127.0.0.1:8000/").read_endpoint == "http://127.0.0.1:8000"


@pytest.mark.usefixtures("bare_env")
def test_read_settings_order_and_secrecy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERF_SDK_ENDPOINT", "https://write.example.gov.uk")
    monkeypatch.setenv("PERF_SDK_TOKEN", "env-token-value")
    monkeypatch.setenv("PERF_SDK_SERVICE", "svc")
    s = ReadSettings.resolve()
    assert (s.service, s.read_endpoint, s.token_value) == ("svc", "https://write.example.gov.uk", "env-token-value")
    assert "env-token-value" not in repr(s)
    monkeypatch.setenv("PERF_SDK_READ_ENDPOINT", "https://read.example.gov.uk")
    assert ReadSettings.resolve().read_endpoint == "https://read.example.gov.uk"
    assert ReadSettings.resolve(endpoint="https://arg.example.gov.uk").read_endpoint == "https://read.example.gov.uk"
    assert (
        ReadSettings.resolve(read_endpoint="https://arg.example.gov.uk").read_endpoint == "https://arg.example.gov.uk"
    )


@pytest.mark.usefixtures("bare_env")
def test_kpis_never_sends_a_token_in_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    import respx

    with respx.mock(assert_all_called=False) as router:
        route = router.get(url__startswith="http://perf.example.gov.uk").mock(
            return_value=__import__("httpx").Response(200, json={"data": []})
        )
        with pytest.raises(ConfigurationError, match="plain http://"):
            perf_sdk.kpis(service="svc", endpoint="http://perf.example.gov.uk", token="secret-token")
        assert not route.called


@pytest.mark.usefixtures("bare_env")
def test_a_kpi_file_needs_no_endpoint_even_with_a_bad_one_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PERF_SDK_ENDPOINT", "http://perf.example.gov.uk")
    file = tmp_path / "r.jsonl"
    file.write_text('{"_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 1}\n')
    assert perf_sdk.kpis(file, start="2026-01-01", end="2026-03-31").periods


@pytest.mark.usefixtures("bare_env")
def test_spool_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_spool_dir() is None
    assert resolve_spool_dir(service="svc") == default_spool_dir("svc")
    monkeypatch.setenv("PERF_SDK_SPOOL_DIR", str(tmp_path))
    assert resolve_spool_dir(service="svc") == tmp_path
    assert resolve_spool_dir(tmp_path / "x") == tmp_path / "x"


def test_only_the_config_module_reads_the_environment() -> None:
    src = Path(perf_sdk.__file__).parent
    # Modules of other work in progress, to be moved onto _config.env_value (COMMAND_ENV) by their owners.
    pending: set[str] = set()
    readers = {
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if any(word in path.read_text(encoding="utf-8") for word in ("os.environ", "os.getenv"))
    }
    assert readers - pending == {"_config.py"}


# -- the command line speaks in flags (issue 17 item 6) -------------------------------------------


def test_a_missing_secret_at_the_cli_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from perf_sdk.cli import main

    file = tmp_path / "tid.csv"
    file.write_text("timestamp,stage,channel,transaction_id\n2026-01-05,started,digital,t-1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERF_SDK_")}
    with pytest.MonkeyPatch.context() as mp:
        for key in set(os.environ) - set(env):
            mp.delenv(key)
        code = main(["backfill", "--dry-run", "--service", "svc", str(file)])
    err = capsys.readouterr().err
    assert code == 2
    assert "--secret" in err and "PERF_SDK_SECRET" in err


@pytest.mark.usefixtures("bare_env")
@pytest.mark.parametrize("flag", ["--endpoint", "--read-endpoint"])
def test_kpis_without_a_scheme_is_a_usage_error_saying_so(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    from perf_sdk.cli import main

    assert main(["kpis", "--service", "svc", flag, "127.0.0.1:8999"]) == 2
    err = capsys.readouterr().err
    assert "has no scheme" in err and "http://127.0.0.1:8999" in err
    assert flag in err
    assert "cannot reach" not in err


@pytest.mark.usefixtures("bare_env")
def test_kpis_without_a_source_says_which_flags_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    from perf_sdk.cli import main

    assert main(["kpis", "--service", "svc"]) == 2
    err = capsys.readouterr().err
    assert "--endpoint" in err and "--read-endpoint" in err and "FILE" in err
    assert "records=" not in err and "read_endpoint=" not in err


@pytest.mark.usefixtures("bare_env")
def test_a_bad_value_at_the_cli_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from perf_sdk.cli import main

    file = tmp_path / "h.csv"
    file.write_text("timestamp,stage,channel\n2026-01-05,started,digital\n")
    code = main(["backfill", "--service", "svc", "--endpoint", "127.0.0.1:8999", "--token", "t", str(file)])
    err = capsys.readouterr().err
    assert code == 2
    assert "invalid --endpoint" in err and "has no scheme" in err
    assert "argument endpoint=" not in err


def test_settings_errors_have_a_cli_form() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.resolve(service="svc", need_endpoint=False, need_secret=True, environ={})
    assert "secret=" in str(info.value)
    assert "--secret" in info.value.cli_message and "secret=" not in info.value.cli_message
    with pytest.raises(ConfigurationError) as info:
        Settings.resolve(service="svc", environ={})
    assert "--endpoint" in info.value.cli_message and "endpoint=" not in info.value.cli_message
    with pytest.raises(ConfigurationError) as info:
        Settings.resolve(service="svc", endpoint="https://x.gov.uk", environ={})
    assert "--token" in info.value.cli_message
    with pytest.raises(ConfigurationError) as info:
        Settings.resolve(service="svc", endpoint="https://x.gov.uk", token="t", batch_size=0, environ={})
    assert "invalid --batch-size" in info.value.cli_message


# --- found by review -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    ["https://gateway:SENSITIVE-PASSWORD@perf.example.gov.uk", "https://perf.example.gov.uk/?token=SENSITIVE"],
)
def test_an_endpoint_carrying_credentials_is_refused_without_echoing_them(endpoint: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.resolve(service="s", endpoint=endpoint, token="t", secret=SECRET, spool_dir=tmp_path)
    assert "SENSITIVE" not in str(info.value)
    assert "endpoint" in str(info.value)


def test_a_token_read_from_a_file_loses_its_trailing_newline(tmp_path: Path) -> None:
    settings = Settings.resolve(
        service="s", endpoint="https://perf.example.gov.uk", token="tok-abc\n", secret=SECRET, spool_dir=tmp_path
    )
    assert settings.token_for("transactions") == "tok-abc"
    with pytest.raises(ConfigurationError, match="white space"):
        Settings.resolve(
            service="s", endpoint="https://perf.example.gov.uk", token="tok abc", secret=SECRET, spool_dir=tmp_path
        )


def test_a_read_token_is_cleaned_and_checked_as_a_write_token_is() -> None:
    # The read side kept the newline: httpx's "Illegal header value b'Bearer tok...\n'" carried the token into
    # check's findings, stdout and the webhook. A non-ASCII token was a UnicodeEncodeError traceback.
    url = "https://perf.example.gov.uk"
    assert ReadSettings.resolve(read_endpoint=url, token="tok-abc\n", environ={}).token_value == "tok-abc"
    for bad in ("tok abc", "t\u00f6k\u20acn", "tok\x00abc"):
        with pytest.raises(ConfigurationError, match="printable ASCII") as info:
            ReadSettings.resolve(read_endpoint=url, token=bad, environ={})
        assert bad not in str(info.value)
    with pytest.raises(ConfigurationError, match="printable ASCII"):
        Settings.resolve(service="s", endpoint=url, token="t\u00f6ken", secret=SECRET, environ={})


@pytest.mark.parametrize(
    ("endpoint", "rule"),
    [
        ("https://perf.example.gov.uk:abc", "port that is not a number"),
        ("https://perf.example.gov.uk:99999", "port that is not a number"),
        ("https://perf.example.gov.uk ", "white space"),
        ("https://perf example.gov.uk", "white space"),
    ],
)
def test_an_endpoint_that_can_never_work_is_refused_at_construction(endpoint: str, rule: str) -> None:
    # Accepted, then every upload was a traceback in the log, retried for ever.
    with pytest.raises(ConfigurationError, match=rule):
        Settings.resolve(service="s", endpoint=endpoint, token="t", secret=SECRET, environ={})
    with pytest.raises(ConfigurationError, match=rule):
        ReadSettings.resolve(read_endpoint=endpoint, environ={})


def test_httpx_errors_quoting_the_token_are_scrubbed_on_the_read_path() -> None:
    from datetime import date

    from perf_sdk import RetryableError
    from perf_sdk._kpi_sources import counts_from_read_api

    token = "secret-token-0123456789\n"  # as the Python API may still be given it
    with pytest.raises(RetryableError) as info:
        counts_from_read_api("http://127.0.0.1:9", "svc", start=date(2025, 1, 1), end=date(2025, 2, 1), token=token)
    assert "secret-token-0123456789" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("secret", [" " * 40, "\t\n" * 20, "\u3000" * 16])
def test_a_blank_secret_is_refused(secret: str, tmp_path: Path) -> None:
    # 40 spaces passed the length rule: transaction ids hashed with a key anyone could guess.
    with pytest.raises(ConfigurationError, match="secret is blank") as info:
        Settings.resolve(
            service="s", endpoint="https://perf.example.gov.uk", token="t", secret=secret, spool_dir=tmp_path
        )
    assert secret not in str(info.value)
