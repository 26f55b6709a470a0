"""The PostgreSQL test fixture's promise: skipped with a way to enable it on a developer's machine, never in CI."""

from __future__ import annotations

import pytest

from tests import platform_db


def test_without_postgresql_a_developer_is_told_how_to_enable_the_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(platform_db, "_bin_dir", lambda: None)
    with platform_db.postgres_server() as server:
        assert server == platform_db.INSTALL_HINT
    assert "apt-get install postgresql" in platform_db.INSTALL_HINT
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        platform_db.unavailable(platform_db.INSTALL_HINT)


def test_in_ci_a_missing_postgresql_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the PostgreSQL tests"):
        platform_db.unavailable(platform_db.INSTALL_HINT)
