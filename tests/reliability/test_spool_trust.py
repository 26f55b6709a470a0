"""The spool directory is a trust boundary (issue 12 item 3).

Whatever a spool file holds is sent with the service's token, so nothing
another local user could have put in the spool_dir may be used: a directory
others can write, or that another user owns, is refused at construction; a
planted spool file (another user's, a symbolic or a hard link) is reported and
left alone; a planted ``.lock`` link never makes the SDK create its target.

Planting another user's file needs root (CI runs the suite as root); those tests
skip elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import perf_sdk
from perf_sdk._spool import Spool, inspect_spool_dir, replay_dead_in_dir
from tests.conftest import SECRET, SERVICE, TOKEN
from tests.faultserver import FaultServer

NOBODY = 65534


def as_nobody(*paths: Path) -> None:
    """Make files another user's (root only)."""
    for path in paths:
        try:
            os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
        except PermissionError:
            pytest.skip("planting another user's file needs root")


def dead_owner(spool: Spool) -> None:
    """Its process ends without closing: the file stays, the lock is free (as after kill -9)."""
    spool._conn.close()
    os.close(spool._lock_fd)
    if hasattr(spool, "_fd"):  # the spool's own descriptor of its file
        os.close(spool._fd)


def record(rid: str, count: int) -> bytes:
    return json.dumps(
        [
            {
                "_id": rid,
                "_timestamp": "2026-01-01T00:00:00+00:00",
                "count": count,
                "stage": "completed",
                "channel": "digital",
            }
        ]
    ).encode()


def other_database(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO accounts(name) VALUES ('alice')")
    conn.commit()
    conn.close()
    return path


def test_a_forged_spool_of_another_user_is_not_adopted_and_is_reported(
    spool_dir: Path,
    fault_server: Callable[..., FaultServer],
    make_tracker: Callable[..., perf_sdk.Tracker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    spool_dir.mkdir(mode=0o700)
    forged = Spool(spool_dir)
    forged.append([(f"{SERVICE}/transactions", 1, record("forged", 1_000_000))], time.time())
    dead_owner(forged)
    as_nobody(*(p for p in spool_dir.iterdir() if p.name.startswith(forged.path.stem)))
    genuine = Spool(spool_dir)  # a real orphan of this user's: still delivered
    genuine.append([(f"{SERVICE}/transactions", 1, record("genuine", 1))], time.time())
    dead_owner(genuine)

    server = fault_server()
    tracker = make_tracker(endpoint=server.url)
    tracker.complete("live-1")
    with caplog.at_level(logging.ERROR, logger="perf_sdk"):
        assert tracker.flush(30)
    assert server.count_sum() == 2  # live-1 and the genuine orphan; not a million forged completions
    assert {rid for _, rid in server.store} >= {"genuine"}
    assert "forged" not in {rid for _, rid in server.store}
    assert forged.path.exists()  # left untouched for the operator
    assert f"belongs to uid {NOBODY}" in caplog.text and forged.path.name in caplog.text


def test_a_planted_lock_symlink_never_creates_its_target(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    target = tmp_path / "etc-cron.d-evil"
    (spool_dir / "host-1-aaaa0000.lock").symlink_to(target)
    other_database(spool_dir / "host-1-aaaa0000.spool")
    heir = Spool(spool_dir)
    heir.adopt_orphans()
    assert not target.exists()
    (status,) = [s for s in inspect_spool_dir(spool_dir) if s.path.name.startswith("host-1")]
    assert not target.exists()
    assert status.error is not None and "symbolic link" in status.error
    assert any("symbolic link" in why for _, why in heir.refused)
    heir.close()


def test_a_spool_symlink_to_another_database_is_never_written(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    app_db = other_database(tmp_path / "app.db")
    before = app_db.read_bytes()
    (spool_dir / "host-2-bbbb0000.spool").symlink_to(app_db)
    heir = Spool(spool_dir)
    assert heir.adopt_orphans() == 0
    assert replay_dead_in_dir(spool_dir) == 0
    heir.close()
    assert app_db.read_bytes() == before  # no spool tables written into it
    assert not list(tmp_path.glob("app.db-*"))  # nor a WAL beside it
    assert (spool_dir / "host-2-bbbb0000.spool").is_symlink()  # left for the operator to see


def test_the_spool_commands_never_write_through_a_link(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from perf_sdk.cli import main

    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    app_db = other_database(tmp_path / "app.db")
    before = app_db.read_bytes()
    (spool_dir / "host-3-cccc0000.spool").symlink_to(app_db)
    for command in (["status"], ["dead"], ["replay-dead"]):
        assert main(["spool", *command, "--spool-dir", str(spool_dir)]) == 0
    assert "not trusted" in capsys.readouterr().out
    assert app_db.read_bytes() == before
    assert not list(tmp_path.glob("app.db-*"))


def test_a_hard_link_to_another_file_is_not_adopted(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    planted = Spool(spool_dir)
    planted.append([("d/t", 1, record("linked", 1))], 1.0)
    dead_owner(planted)
    elsewhere = tmp_path / "elsewhere.spool"
    os.link(planted.path, elsewhere)  # the same file under a second name, outside the directory
    heir = Spool(spool_dir)
    assert heir.adopt_orphans() == 0
    assert any("2 hard links" in why for _, why in heir.refused)
    assert planted.path.exists() and elsewhere.exists()
    heir.close()


def test_a_side_file_symlink_is_not_followed(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    orphan = Spool(spool_dir)
    orphan.append([("d/t", 1, record("x", 1))], 1.0)
    dead_owner(orphan)
    target = tmp_path / "target"
    for suffix in ("-wal", "-shm"):
        Path(str(orphan.path) + suffix).unlink(missing_ok=True)
    Path(str(orphan.path) + "-wal").symlink_to(target)
    heir = Spool(spool_dir)
    assert heir.adopt_orphans() == 0
    assert not target.exists()
    assert any("-wal is not a regular file" in why for _, why in heir.refused)
    heir.close()


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o1777])
def test_a_spool_dir_others_can_write_is_refused_at_construction(tmp_path: Path, mode: int) -> None:
    spool_dir = tmp_path / "shared"
    spool_dir.mkdir()
    spool_dir.chmod(mode)
    with pytest.raises(perf_sdk.ConfigurationError, match="chmod 700") as info:
        perf_sdk.Tracker(
            service=SERVICE, endpoint="http://127.0.0.1:9", token=TOKEN, secret=SECRET, spool_dir=spool_dir
        )
    assert str(spool_dir) in str(info.value) and f"{mode & 0o777:o}" in str(info.value)
    spool_dir.chmod(0o700)  # fixed as the message says: accepted
    perf_sdk.Tracker(
        service=SERVICE, endpoint="http://127.0.0.1:9", token=TOKEN, secret=SECRET, spool_dir=spool_dir
    ).close()


def test_a_spool_dir_owned_by_another_user_is_refused_at_construction(tmp_path: Path) -> None:
    spool_dir = tmp_path / "theirs"
    spool_dir.mkdir(mode=0o700)
    as_nobody(spool_dir)
    with pytest.raises(perf_sdk.ConfigurationError, match=f"belongs to uid {NOBODY}.*choose a directory"):
        perf_sdk.Tracker(
            service=SERVICE, endpoint="http://127.0.0.1:9", token=TOKEN, secret=SECRET, spool_dir=spool_dir
        )


def test_a_spool_dir_the_sdk_creates_is_owner_only(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        spool = Spool(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700
    spool.close()


def test_status_creates_no_lock_and_reads_another_users_spool(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    orphan = Spool(spool_dir)
    orphan.append([("d/t", 1, record("x", 1))], 1.0)
    dead_owner(orphan)
    orphan.path.with_suffix(".lock").unlink()
    as_nobody(orphan.path)  # e.g. root inspecting a service's folder: a read-only view trusts no less
    (status,) = inspect_spool_dir(spool_dir)
    assert (status.records, status.alive, status.error) == (1, False, None)
    assert not orphan.path.with_suffix(".lock").exists()
