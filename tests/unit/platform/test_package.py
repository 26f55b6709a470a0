"""The platform package: a clear error without its extra, and the ``perf-sdk serve`` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perf_sdk import ConfigurationError
from perf_sdk.cli import _serve


@pytest.mark.parametrize("missing", ["starlette", "uvicorn"])
def test_import_without_the_extra_names_it(missing: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules[{missing!r}] = None  # as if not installed
        from perf_sdk import ConfigurationError
        try:
            import perf_sdk.platform
        except ConfigurationError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'perf-sdk[platform]'" in out
    assert missing in out


def test_public_surface() -> None:
    import perf_sdk.platform

    assert perf_sdk.platform.__all__ == ["LocalPlatform", "create_app"]


def _args(**overrides: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _serve.register(parser.add_subparsers())
    args = parser.parse_args(["serve"])
    for name, value in overrides.items():
        setattr(args, name, value)
    return args


def test_serve_defaults_to_loopback() -> None:
    args = _args()
    assert (args.host, args.port, args.db, args.token, args.tokens_file) == ("127.0.0.1", 8000, None, None, None)
    assert args.func is _serve.run


def test_serve_refuses_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match="choose another --port"):
            _serve.run(_args(port=port, token="t"))


@pytest.mark.parametrize("content", ["not json", "[]", "{}", '{"svc": "t"}'])
def test_serve_refuses_a_bad_tokens_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError):
        _serve.run(_args(tokens_file=str(path)))


def test_a_key_given_twice_in_the_tokens_file_is_refused(tmp_path: Path) -> None:
    # JSON keeps the last: the first data set's token was dropped without a word.
    path = tmp_path / "tokens.json"
    path.write_text('{"data_sets": {"svc/transactions": {"token": "one"}, "svc/transactions": {"token": "two"}}}')
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="'svc/transactions' is given twice") as info:
        _serve.run(_args(tokens_file=str(path)))
    assert "one" not in str(info.value) and "two" not in str(info.value)
    path.write_text('{"token": "a", "admin_token": "b", "admin_token": "c"}')
    with pytest.raises(ConfigurationError, match="'admin_token' is given twice"):
        _serve.run(_args(tokens_file=str(path)))


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_a_tokens_file_others_may_write_is_refused_and_one_they_may_read_warned_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Accepted silently at 0666: any local user could read the admin token or add a data set of their own.
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"svc/transactions": "tok"}))
    monkeypatch.setattr("perf_sdk.platform._server.serve", lambda app, sock: None)
    for mode in (0o666, 0o620, 0o602):
        path.chmod(mode)
        with pytest.raises(
            ConfigurationError, match=f"may be written by other users \\(mode 0{mode:o}\\): run chmod 600"
        ):
            _serve.run(_args(port=0, tokens_file=str(path)))
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="perf_sdk.platform"):
        assert _serve.run(_args(port=0, tokens_file=str(path))) == 0
    assert "may be read by every user on this host (mode 0644)" in caplog.text and 'tok"' not in caplog.text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="perf_sdk.platform"):
        assert _serve.run(_args(port=0, tokens_file=str(path))) == 0
    assert "may be read" not in caplog.text


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to give a file away")
def test_a_tokens_file_another_user_owns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"svc/transactions": "tok"}))
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigurationError, match="belongs to another user \\(uid 65534\\)"):
        _serve.run(_args(tokens_file=str(path)))


def test_serve_missing_tokens_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        _serve.run(_args(tokens_file=str(tmp_path / "absent.json")))


def test_serve_prints_the_url_and_token_then_serves(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served = {}

    def fake_serve(app: object, sock: socket.socket) -> None:
        served["port"] = sock.getsockname()[1]

    monkeypatch.setattr("perf_sdk.platform._server.serve", fake_serve)
    monkeypatch.setenv("PERF_SDK_TOKEN", "from-env")
    assert _serve.run(_args(port=0)) == 0
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:{served['port']}" in out
    assert "from-env" in out
    assert "PERF_SDK_ENDPOINT" in out

    monkeypatch.delenv("PERF_SDK_TOKEN")
    assert _serve.run(_args(port=0)) == 0
    assert "token (generated):" in capsys.readouterr().out


def test_serve_with_a_tokens_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"svc/transactions": "tok"}))
    monkeypatch.setattr("perf_sdk.platform._server.serve", lambda app, sock: None)
    assert _serve.run(_args(port=0, tokens_file=str(path))) == 0
    assert "svc/transactions" in capsys.readouterr().out


def _exports(out: str) -> dict[str, str]:
    """The ``export NAME=value`` lines of serve's output, as a mapping."""
    found: dict[str, str] = {}
    for line in out.splitlines():
        text = line.strip()
        if text.startswith("export "):
            name, _, value = text[len("export ") :].partition("=")
            found[name] = value
    return found


def test_serve_prints_one_block_of_every_variable_to_paste(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served = {}
    monkeypatch.setattr(
        "perf_sdk.platform._server.serve", lambda app, sock: served.setdefault("port", sock.getsockname()[1])
    )
    monkeypatch.delenv("PERF_SDK_TOKEN", raising=False)
    assert _serve.run(_args(port=0, token="tok-1")) == 0
    out = capsys.readouterr().out
    exports = _exports(out)
    assert list(exports) == ["PERF_SDK_ENDPOINT", "PERF_SDK_TOKEN", "PERF_SDK_SERVICE", "PERF_SDK_SECRET"]
    assert exports["PERF_SDK_ENDPOINT"] == f"http://127.0.0.1:{served['port']}"
    assert exports["PERF_SDK_TOKEN"] == "tok-1"
    assert exports["PERF_SDK_SERVICE"] == "my-service"
    assert len(exports["PERF_SDK_SECRET"]) >= 32
    # One block: the export lines follow one another.
    lines = [line.strip() for line in out.splitlines()]
    first = next(i for i, line in enumerate(lines) if line.startswith("export "))
    assert all(line.startswith("export ") for line in lines[first : first + 4])
    # A fresh secret each time.
    assert _serve.run(_args(port=0, token="tok-1")) == 0
    assert _exports(capsys.readouterr().out)["PERF_SDK_SECRET"] != exports["PERF_SDK_SECRET"]


def test_serve_with_a_data_set_configuration_exports_each_data_types_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data-sets.json"
    path.write_text(
        json.dumps(
            {
                "data_sets": {
                    "apply-for-a-licence/transactions": {"token": "tok-t", "realtime": True},
                    "apply-for-a-licence/costs": {"token": "tok-c", "raw_queries_allowed": False},
                },
                "services": {"apply-for-a-licence": {"title": "Apply for a licence"}},
            }
        )
    )
    monkeypatch.setattr("perf_sdk.platform._server.serve", lambda app, sock: None)
    assert _serve.run(_args(port=0, tokens_file=str(path))) == 0
    exports = _exports(capsys.readouterr().out)
    assert exports["PERF_SDK_TOKEN_COSTS"] == "tok-c"
    assert exports["PERF_SDK_TOKEN_TRANSACTIONS"] == "tok-t"
    assert exports["PERF_SDK_SERVICE"] == "apply-for-a-licence"
    assert "PERF_SDK_TOKEN" not in exports
    assert "PERF_SDK_SECRET" in exports
