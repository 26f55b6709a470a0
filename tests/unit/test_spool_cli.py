"""``perf-sdk spool``: status, dead letters, replay."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from perf_sdk._spool import Spool
from perf_sdk.cli import main


def make_spool(directory: Path) -> Spool:
    spool = Spool(directory)
    spool.append([("svc/transactions", 2, b'[{"_id":"a","count":1},{"_id":"b","count":1}]')], 1.0)
    spool.dead_letter("svc/satisfaction", [{"_id": "c", "rating": 9}], 1.0, 400, "rating must be 1..5")
    return spool


def test_status_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool = make_spool(tmp_path)
    assert main(["spool", "status", "--spool-dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pending"] == 2
    assert out["dead_letters"] == 1
    (f,) = out["files"]
    assert f["owner"] == "alive"
    assert f["by_dataset"] == {"svc/transactions": 2}
    spool.close()


def test_status_table_and_dead_owner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool = make_spool(tmp_path)
    spool._conn.close()
    os.close(spool._lock_fd)  # the owner "dies"
    assert main(["spool", "status", "--spool-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gone" in out
    assert "adopts and delivers" in out
    assert "Dead letters: 1" in out


def test_dead_and_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_spool(tmp_path).close()
    assert main(["spool", "dead", "--spool-dir", str(tmp_path), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["reason"] == "rating must be 1..5"
    assert row["record"] == {"_id": "c", "rating": 9}
    assert main(["spool", "replay-dead", "--spool-dir", str(tmp_path)]) == 0
    assert "Moved 1" in capsys.readouterr().out
    assert main(["spool", "status", "--spool-dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["pending"], out["dead_letters"]) == (3, 0)


def test_status_needs_a_spool(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spool", "status"]) == 2
    assert "--spool-dir" in capsys.readouterr().err


def test_status_of_an_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spool", "status", "--spool-dir", str(tmp_path)]) == 0
    assert "nothing is waiting" in capsys.readouterr().out


def test_status_of_a_path_that_does_not_exist_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-spool"
    assert main(["spool", "status", "--spool-dir", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"no spool directory at {missing}" in err and "--spool-dir" in err
    assert not missing.exists()  # looking does not create it


def test_status_of_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "x.spool"
    file.write_text("")
    assert main(["spool", "status", "--spool-dir", str(file)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_status_finds_the_spool_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = make_spool(tmp_path)
    monkeypatch.setenv("PERF_SDK_SPOOL_DIR", str(tmp_path))
    assert main(["spool", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == 2
    spool.close()


def test_status_table_is_not_squashed_when_piped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool = Spool(tmp_path)
    long_set = "a-service-with-a-rather-long-name-for-its-data-group/transactions"
    spool.append([(long_set, 1, b'[{"_id":"a","count":1}]')], 1.0)
    try:
        assert main(["spool", "status", "--spool-dir", str(tmp_path)]) == 0  # capsys: not a terminal
    finally:
        spool.close()
    lines = capsys.readouterr().out.splitlines()
    (row,) = [line for line in lines if long_set in line]  # one line, not wrapped into cells of 80 columns
    assert f"{long_set}: 1" in row and "alive" in row


def test_unreadable_segments_are_shown_by_status_and_dead(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool = make_spool(tmp_path)
    [segment] = spool.next_batch("svc/transactions", 10, 10**6)
    spool.set_aside(segment, "BadGzipFile: CRC check failed")
    spool.close()
    assert main(["spool", "status", "--spool-dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["pending"], out["dead_letters"], out["unreadable"]) == (0, 1, 2)
    assert main(["spool", "status", "--spool-dir", str(tmp_path)]) == 0
    assert "2 spooled record(s) no longer read back" in capsys.readouterr().out
    assert main(["spool", "dead", "--spool-dir", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["record"] for r in rows] == [{"_id": "c", "rating": 9}, None]
    assert rows[1]["reason"].startswith("2 record(s)") and "CRC check failed" in rows[1]["reason"]
    assert main(["spool", "replay-dead", "--spool-dir", str(tmp_path)]) == 0  # replays dead letters only
    assert "Moved 1" in capsys.readouterr().out


def test_a_dead_letter_that_no_longer_parses_is_listed_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = make_spool(tmp_path)
    spool._conn.execute("UPDATE dead SET body = ?", (b'{"_id":"c","rat\xffng":9}',))
    spool.close()
    assert main(["spool", "dead", "--spool-dir", str(tmp_path), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert "UnicodeDecodeError" in row["record"]["unreadable"]
