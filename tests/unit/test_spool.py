"""The durable outbox: segments, dead letters, adoption, quarantine, migration, permissions, a lost file."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from perf_sdk._spool import Spool, SpoolLostError, inspect_spool_dir, replay_dead_in_dir


def body(*ids: str) -> bytes:
    return json.dumps([{"_id": i, "count": 1} for i in ids]).encode()


def test_segments_round_trip_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([("svc/transactions", 2, body("a", "b")), ("svc/costs", 1, body("c"))], 1.0)
    spool.append([("svc/transactions", 1, body("d"))], 2.0)
    assert sorted(spool.datasets()) == ["svc/costs", "svc/transactions"]
    batch = spool.next_batch("svc/transactions", max_records=10, max_bytes=10_000)
    assert [s.n for s in batch] == [2, 1]
    assert [r["_id"] for s in batch for r in s.records()] == ["a", "b", "d"]
    assert spool.depth()[0] == 4
    spool.remove(batch)
    assert spool.depth()[0] == 1
    spool.close()


def test_batches_respect_records_and_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([("d/t", 3, body("a", "b", "c"))] * 5, 1.0)
    assert len(spool.next_batch("d/t", max_records=7, max_bytes=10_000)) == 2
    assert len(spool.next_batch("d/t", max_records=100, max_bytes=len(body("a", "b", "c")) * 3)) == 3
    assert len(spool.next_batch("d/t", max_records=1, max_bytes=1)) == 1  # always at least one
    spool.close()


def test_files_are_owner_only(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "new")
    spool.append([("d/t", 1, body("a"))], 1.0)
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o700
    for path in (tmp_path / "new").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    spool.close()


def test_close_deletes_an_empty_spool_and_keeps_a_full_one(tmp_path: Path) -> None:
    empty = Spool(tmp_path)
    empty.close()
    full = Spool(tmp_path)
    full.append([("d/t", 1, body("a"))], 1.0)
    full.close()
    assert [p.name for p in tmp_path.glob("*.spool")] == [full.path.name]


def test_adoption_takes_only_unlocked_files(tmp_path: Path) -> None:
    alive = Spool(tmp_path)
    alive.append([("d/t", 1, body("alive"))], 1.0)
    dead = Spool(tmp_path)
    dead.append([("d/t", 2, body("x", "y"))], 1.0)
    dead.dead_letter("d/t", [{"_id": "z"}], 1.0, 400, "bad")
    dead._conn.close()
    os.close(dead._lock_fd)
    heir = Spool(tmp_path)
    assert heir.adopt_orphans() == 2
    ids = sorted(r["_id"] for s in heir.next_batch("d/t", 100, 10**6) for r in s.records())
    assert ids == ["x", "y"]
    assert heir.dead_count() == 1
    assert not dead.path.exists()
    assert alive.path.exists()
    alive.close()
    heir.close()


def test_corrupt_spool_is_quarantined_and_the_rest_delivered(tmp_path: Path) -> None:
    (tmp_path / "host-1-deadbeef.spool").write_bytes(b"this is not a database" * 100)
    good = Spool(tmp_path)
    good.append([("d/t", 1, body("kept"))], 1.0)
    good._conn.close()
    os.close(good._lock_fd)
    heir = Spool(tmp_path)
    assert heir.adopt_orphans() == 1
    assert len(heir.quarantined) == 1
    quarantined, reason = heir.quarantined[0]
    assert quarantined.exists() and ".corrupt-" in quarantined.name
    assert "not a database" in reason
    heir.close()


def test_truncated_spool_is_quarantined(tmp_path: Path) -> None:
    victim = Spool(tmp_path)
    victim.append([("d/t", 1, body(*[str(i) for i in range(2000)]))], 1.0)
    victim._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    victim._conn.close()
    os.close(victim._lock_fd)
    data = victim.path.read_bytes()
    victim.path.write_bytes(data[: len(data) // 3])
    heir = Spool(tmp_path)
    heir.adopt_orphans()
    assert len(heir.quarantined) == 1
    heir.close()


def test_version_1_spool_is_migrated(tmp_path: Path) -> None:
    old = tmp_path / "oldhost-1-00000000.spool"
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE outbox(seq INTEGER PRIMARY KEY, dataset TEXT, rid TEXT, body BLOB, accepted_at REAL)")
    conn.executemany(
        "INSERT INTO outbox(dataset, rid, body, accepted_at) VALUES (?,?,?,?)",
        [("d/t", "a", b'{"_id":"a","count":1}', 1.0), ("d/t", "b", b'{"_id":"b","count":2}', 2.0)],
    )
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    heir = Spool(tmp_path)
    assert heir.adopt_orphans() == 2
    records = [r for s in heir.next_batch("d/t", 10, 10**6) for r in s.records()]
    assert records == [{"_id": "a", "count": 1}, {"_id": "b", "count": 2}]
    heir.close()


def test_dead_letters_replay(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.dead_letter("d/t", [{"_id": "a", "count": 1}], 1.0, 400, "rating out of range")
    (dead,) = spool.dead()
    assert (dead.record, dead.status, dead.reason) == ({"_id": "a", "count": 1}, 400, "rating out of range")
    spool.close()
    assert replay_dead_in_dir(tmp_path) == 1
    (status,) = inspect_spool_dir(tmp_path)
    assert (status.records, status.dead, status.alive) == (1, 0, False)


def test_status_sees_live_and_dead_files(tmp_path: Path) -> None:
    live = Spool(tmp_path)
    live.append([("svc/transactions", 3, body("a", "b", "c"))], 100.0)
    (status,) = inspect_spool_dir(tmp_path)
    assert status.alive is True
    assert (status.records, status.segments, status.oldest_accepted_at) == (3, 1, 100.0)
    assert status.by_dataset == {"svc/transactions": 3}
    live.close()


def test_size_cap(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 16)
    assert spool.has_room(1000)
    spool.append([("d/t", 1, b"x" * 60_000)], 1.0)
    assert not spool.has_room(10_000)
    spool.close()


def test_unwritable_directory(tmp_path: Path) -> None:
    from perf_sdk import ConfigurationError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigurationError, match="cannot create spool_dir"):
        Spool(blocker / "spool")


# -- a spool file lost under the running process (issue 12 item 10) --------------------------------


def other_database(path: Path) -> Path:
    """Some other application's SQLite file (bigger than a fresh spool)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, blob BLOB)")
    conn.execute("INSERT INTO accounts(blob) VALUES (randomblob(200000))")
    conn.commit()
    conn.close()
    return path


def filled(directory: Path) -> tuple[Spool, list[tuple[str, int, bytes]]]:
    spool = Spool(directory)
    segments = [("d/t", 1, body(f"r{i}")) for i in range(20)]
    spool.append(segments, 1.0)
    return spool, segments


def tables(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    finally:
        conn.close()


@pytest.mark.parametrize("how", ["replaced", "deleted"])
def test_a_replaced_or_deleted_spool_raises_and_hands_back_what_it_held(tmp_path: Path, how: str) -> None:
    spool, segments = filled(tmp_path)
    if how == "replaced":
        os.replace(other_database(tmp_path / "other.db"), spool.path)
    else:
        os.unlink(spool.path)
    with pytest.raises(SpoolLostError) as info:
        spool.append([("d/t", 1, body("after"))], 2.0)
    lost = info.value
    assert how in lost.reason
    assert lost.salvaged == segments  # read back through the open file: nothing committed is lost
    assert spool.closed and spool.lost is not None
    if how == "replaced":  # whatever was put there is kept, untouched, for inspection
        assert lost.moved_to is not None and tables(lost.moved_to) == ["accounts"]
    else:
        assert lost.moved_to is None
    # The writer continues into a fresh spool in the same directory with everything it holds.
    fresh = Spool(tmp_path)
    fresh.append([*lost.salvaged, ("d/t", 1, body("after"))], 2.0)
    assert fresh.depth()[0] == 21
    spool.close()  # a lost spool's close deletes nothing
    if lost.moved_to is not None:
        assert lost.moved_to.exists()
    fresh.close()


def test_a_deleted_write_ahead_log_is_a_lost_spool_and_its_records_are_read_back(tmp_path: Path) -> None:
    spool, segments = filled(tmp_path)  # the records are in the -wal, not yet in the file itself
    os.unlink(str(spool.path) + "-wal")
    with pytest.raises(SpoolLostError, match="write-ahead log") as info:
        spool.append([("d/t", 1, body("after"))], 2.0)
    assert info.value.salvaged == segments


@pytest.mark.parametrize("how", ["truncated", "overwritten"])
def test_a_truncated_or_overwritten_spool_raises_and_is_kept_aside(tmp_path: Path, how: str) -> None:
    spool, _ = filled(tmp_path)
    spool.append([("d/t", 1, body(*[str(i) for i in range(3000)]))], 1.0)
    spool._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the records in the file itself, not only the WAL
    spool.append([("d/t", 1, body("committed"))], 1.0)
    if how == "truncated":
        os.truncate(spool.path, spool.path.stat().st_size // 2)
    else:  # the same file, rewritten with another database's bytes
        spool.path.write_bytes(other_database(tmp_path / "other.db").read_bytes())
    left = spool.path.read_bytes()
    with pytest.raises(SpoolLostError, match=how) as info:
        spool.append([("d/t", 1, body("after"))], 2.0)
    lost = info.value
    assert lost.salvaged == []  # what is in that file now cannot be trusted
    assert lost.moved_to is not None and lost.moved_to.read_bytes() == left  # kept as found, not deleted
    assert not spool.path.exists()  # so no successor adopts (or quarantines) it as a spool
    assert ".corrupt-" in lost.moved_to.name  # listed by `perf-sdk spool status`


def test_sqlite_reporting_corruption_is_a_lost_spool(tmp_path: Path) -> None:
    spool, _ = filled(tmp_path)
    spool.append([("d/t", 1, body(*[str(i) for i in range(3000)]))], 1.0)
    spool._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = spool.path.stat().st_size
    with open(spool.path, "r+b") as f:  # the header intact, every page after it garbage
        f.seek(4096)
        f.write(b"\xff" * (size - 4096))
    other = sqlite3.connect(spool.path, isolation_level=None)
    other.execute("PRAGMA user_version=7")  # another writer: the spool's cached pages are stale, it reads the file
    other.close()
    with pytest.raises(SpoolLostError, match="malformed"):
        spool.append([("d/t", 1, body("after"))], 2.0)


@pytest.mark.parametrize("method", ["append", "remove", "replace", "note_attempt", "dead_letter", "replay_dead"])
def test_every_write_method_raises_once_the_file_is_gone(tmp_path: Path, method: str) -> None:
    spool, _ = filled(tmp_path)
    batch = spool.next_batch("d/t", 100, 10**6)
    os.unlink(spool.path)
    calls = {
        "append": lambda: spool.append([("d/t", 1, body("x"))], 2.0),
        "remove": lambda: spool.remove(batch),
        "replace": lambda: spool.replace(batch[0], [{"_id": "r0", "count": 1}]),
        "note_attempt": lambda: spool.note_attempt(batch),
        "dead_letter": lambda: spool.dead_letter("d/t", [{"_id": "x"}], 1.0, 400, "bad"),
        "replay_dead": spool.replay_dead,
    }
    for _ in range(2):  # the first call sees the loss, every later one is told again, with the same records
        with pytest.raises(SpoolLostError) as info:
            calls[method]()
        assert len(info.value.salvaged) == 20


def test_verify_reports_a_loss_while_idle(tmp_path: Path) -> None:
    spool, _ = filled(tmp_path)
    spool.verify()  # all well: returns
    os.unlink(spool.path)
    with pytest.raises(SpoolLostError):
        spool.verify()


def test_a_healthy_spool_never_reports_a_loss(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(300):  # enough to checkpoint the WAL into the file several times
        spool.append([("d/t", 50, body(*[f"{i}-{j}" for j in range(50)]))], 1.0)
        if i % 3 == 0:
            spool.remove(spool.next_batch("d/t", 100, 10**6))
    spool.verify()
    assert spool.lost is None
    spool.close()


def test_lost_error_pickles(tmp_path: Path) -> None:
    import pickle

    error = SpoolLostError(tmp_path / "a.spool", "the file was deleted", salvaged=[("d/t", 1, b"[]")])
    again = pickle.loads(pickle.dumps(error))
    assert (again.path, again.reason, again.salvaged, str(again)) == (
        error.path,
        error.reason,
        error.salvaged,
        str(error),
    )


def test_close_leaves_a_file_that_is_not_its_own(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    os.replace(other_database(tmp_path / "other.db"), spool.path)
    spool.close()  # empty, so it would delete its file: not someone else's
    assert tables(spool.path) == ["accounts"]


def test_a_record_dead_lettered_twice_is_one_dead_letter(tmp_path: Path) -> None:
    """An interrupted bisect leaves the batch in the spool; the next pass dead-letters the same record again."""
    spool = Spool(tmp_path)
    bad = {"_id": "id0", "_timestamp": "2026-01-01T00:00:00+00:00", "count": 1}
    spool.dead_letter("svc/feedback", [bad], 0.0, 400, "bad field")
    spool.dead_letter("svc/feedback", [bad], 0.0, 400, "bad field, again")
    spool.dead_letter("svc/other", [bad], 0.0, 400, "another data set: another record")
    assert spool.dead_count() == 2
    assert [d.reason for d in spool.dead() if d.dataset == "svc/feedback"] == ["bad field, again"]
    spool.close()


def test_segments_are_stored_packed_and_read_back_as_json(tmp_path: Path) -> None:
    # Record JSON is stored as a gzip member of the records between the brackets: a sixth of the disk,
    # and requests need no second compression. What comes out is what went in.
    import gzip

    from perf_sdk._spool import json_size

    records = [{"_id": f"{i:032x}", "_timestamp": "2026-03-04T05:06:07+00:00", "count": 1} for i in range(2_000)]
    raw = json.dumps(records, separators=(",", ":")).encode()
    spool = Spool(tmp_path)
    spool.append([("d/t", len(records), raw)], 1.0)
    [stored] = spool._conn.execute("SELECT body FROM segments").fetchone()
    assert stored[:2] == b"\x1f\x8b" and len(stored) < len(raw) // 4
    assert b"[" + gzip.decompress(stored) + b"]" == raw
    assert spool.bytes == len(stored)  # max_spool_bytes counts the disk, not the JSON
    [segment] = spool.next_batch("d/t", 10_000, 10**7)
    assert segment.packed and segment.json() == raw and segment.records() == records
    assert json_size(segment.body) == segment.json_size() == len(raw)
    spool.close()


def test_max_bytes_of_a_batch_counts_the_json_not_the_packed_size(tmp_path: Path) -> None:
    # The platform refuses more than 10 MB once inflated: a batch is cut by what it will inflate to.
    spool = Spool(tmp_path)
    one = body(*(f"id-{i}" for i in range(100)))
    spool.append([("d/t", 100, one)] * 10, 1.0)
    assert len(spool.next_batch("d/t", 10_000, len(one) * 3)) == 3
    spool.close()


def test_segments_written_before_packing_are_still_read_and_mixed_batches_work(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool._conn.execute(  # a row as schema 2 wrote it: the JSON array itself
        "INSERT INTO segments(dataset, n, body, accepted_at) VALUES ('d/t', 1, ?, 1.0)", (body("old"),)
    )
    spool.append([("d/t", 2, body("new-1", "new-2"))], 2.0)
    batch = spool.next_batch("d/t", 100, 10**6)
    assert [s.packed for s in batch] == [False, True]
    assert [r["_id"] for s in batch for r in s.records()] == ["old", "new-1", "new-2"]
    spool.close()


def test_a_spool_with_packed_segments_says_so_to_older_versions(tmp_path: Path) -> None:
    # Schema 3: a perf_sdk from before packing refuses the file ("newer than this perf_sdk") rather than
    # sending gzip bytes to the platform as JSON.
    spool = Spool(tmp_path)
    assert spool._conn.execute("PRAGMA user_version").fetchone()[0] == 4
    spool.close()


# unreadable segments ----------------------------------------------------------------------------------------
def _flip(spool: Spool) -> None:
    """Flip a bit in the middle of every stored segment, as a bad sector would."""
    with spool._mutex:
        for seq, stored in spool._conn.execute("SELECT seq, body FROM segments").fetchall():
            damaged = bytearray(stored)
            damaged[len(damaged) // 2] ^= 0x01
            spool._conn.execute("UPDATE segments SET body = ? WHERE seq = ?", (bytes(damaged), seq))


def test_a_segment_set_aside_is_kept_raw_counted_and_carried_by_adoption(tmp_path: Path) -> None:
    from perf_sdk._spool import UNREADABLE

    spool = Spool(tmp_path)
    spool.append([("d/t", 40, body(*(f"r{i}" for i in range(40))))], 1.0)
    _flip(spool)
    [segment] = spool.next_batch("d/t", 100, 10**6)
    with pytest.raises(UNREADABLE):
        segment.records()
    spool.set_aside(segment, "CRC check failed")
    assert spool.depth()[0] == 0 and spool.dead_count() == 40
    [aside] = spool.unreadable()
    assert (aside.dataset, aside.n, aside.stored_bytes, aside.reason) == (
        "d/t",
        40,
        len(segment.body),
        "CRC check failed",
    )
    raw = spool._conn.execute("SELECT body FROM unreadable").fetchone()[0]
    assert raw == segment.body  # the bytes as found, for whoever looks into it
    spool._conn.close()
    os.close(spool._lock_fd)  # the owner dies with it
    assert [f.unreadable for f in inspect_spool_dir(tmp_path)] == [40]
    heir = Spool(tmp_path)
    assert heir.adopt_orphans() == 0  # nothing to send: adoption moves no pending records
    assert heir.dead_count() == 40 and len(heir.unreadable()) == 1
    heir.close()
    assert [p.name for p in tmp_path.glob("*.spool")] == [heir.path.name]  # not deleted as empty


def test_a_lost_spool_hands_back_a_damaged_segment_as_it_was_stored(tmp_path: Path) -> None:
    # Salvage reads back what the deleted file held; a damaged segment must not make the salvage itself fail.
    spool = Spool(tmp_path)
    spool.append([("d/t", 2, body("a", "b"))], 1.0)
    _flip(spool)
    spool.append([("d/t", 1, body("c"))], 1.0)
    stored = spool._conn.execute("SELECT body FROM segments ORDER BY seq").fetchone()[0]
    os.unlink(spool.path)
    with pytest.raises(SpoolLostError) as info:
        spool.append([("d/t", 1, body("after"))], 2.0)
    assert info.value.salvaged == [("d/t", 2, stored), ("d/t", 1, body("c"))]
    fresh = Spool(tmp_path)
    fresh.append(info.value.salvaged, 2.0)  # kept as found: the next uploader sets it aside
    damaged, good = fresh.next_batch("d/t", 100, 10**6)
    assert damaged.body == stored and [r["_id"] for r in good.records()] == ["c"]
    fresh.close()
    spool.close()


def test_a_spool_of_schema_3_gains_the_unreadable_table(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([("d/t", 1, body("a"))], 1.0)
    spool._conn.execute("DROP TABLE unreadable")
    spool._conn.execute("PRAGMA user_version=3")
    spool._conn.close()
    os.close(spool._lock_fd)
    assert [f.unreadable for f in inspect_spool_dir(tmp_path)] == [0]  # read-only: no table, no error
    heir = Spool(tmp_path)
    assert heir.adopt_orphans() == 1 and heir.dead_count() == 0
    heir.close()


# a closed spool, a forked child ------------------------------------------------------------------------------
def test_a_closed_spool_touches_no_descriptor_it_once_had(tmp_path: Path) -> None:
    # close() may return while the uploader is still in a request; when the answer comes it calls remove().
    # The spool's descriptor numbers may name the host's files by then: it used to take them for a replaced
    # spool, move its own file aside as corrupt (stranding its records) and close the host's descriptors.
    spool = Spool(tmp_path)
    spool.append([("d/t", 2, body("a", "b"))], 1.0)
    batch = spool.next_batch("d/t", 10, 10**6)
    spool.close()
    host = [os.open(tmp_path / f"host-{i}.txt", os.O_RDWR | os.O_CREAT, 0o600) for i in range(8)]
    try:
        for late_call in (lambda: spool.remove(batch), lambda: spool.set_aside(batch[0], "x"), spool.replay_dead):
            with pytest.raises(sqlite3.ProgrammingError, match="closed"):
                late_call()
        for fd in host:
            os.fstat(fd)  # still the host's
    finally:
        for fd in host:
            os.close(fd)
    assert [p.name for p in tmp_path.glob("*.spool*")] == [spool.path.name]  # in place, for the next tracker
    heir = Spool(tmp_path)
    assert heir.adopt_orphans() == 2
    heir.close()


def test_a_forked_child_does_not_keep_the_parents_spool_locked(tmp_path: Path) -> None:
    # The child's copy of the lock's descriptor held the parent's flock for as long as the child lived: a
    # parent that died (a pre-forking server's master) left a spool no tracker could adopt.
    spool = Spool(tmp_path)
    spool.append([("d/t", 1, body("a"))], 1.0)
    release_r, release_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a worker that lives on
        try:
            spool.abandon_after_fork()
            os.write(ready_w, b"x")
            os.read(release_r, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        spool._conn.close()
        os.close(spool._lock_fd)  # the parent dies (without unlocking: as kill -9 would)
        heir = Spool(tmp_path / ".." / tmp_path.name)
        assert heir.adopt_orphans() == 1  # while the child still lives
        heir.close()
    finally:
        os.write(release_w, b"x")
        os.waitpid(pid, 0)
        for fd in (release_r, release_w, ready_r, ready_w):
            os.close(fd)


# adoption a chunk at a time -----------------------------------------------------------------------------------
def _dead_spool(directory: Path, segments: int) -> Spool:
    orphan = Spool(directory)
    for i in range(segments):
        orphan.append([("d/t", 2, body(f"o{i}-a", f"o{i}-b"))], 1.0)
    orphan.dead_letter("d/t", [{"_id": "x", "count": 1}], 1.0, 400, "bad")
    orphan._conn.close()
    os.close(orphan._lock_fd)  # its process died
    return orphan


def _adopting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, segments: int, each_chunk: Any, **limits: int
) -> tuple[Spool, Spool]:
    """A dead spool of ``segments`` and an heir whose every chunk copy calls ``each_chunk(call number, copy)``."""
    from perf_sdk import _spool

    for name, value in limits.items():
        monkeypatch.setattr(_spool, name, value)
    orphan = _dead_spool(tmp_path, segments)
    heir = Spool(tmp_path)
    copy_chunk = heir._copy_chunk
    calls = 0

    def wrapped(*args: Any) -> list[tuple[int, int, int]]:
        nonlocal calls
        calls += 1
        return each_chunk(calls, lambda: copy_chunk(*args))  # type: ignore[no-any-return]

    monkeypatch.setattr(heir, "_copy_chunk", wrapped)
    return orphan, heir


def test_adoption_copies_a_chunk_at_a_time_and_lets_the_writer_in_between(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One transaction for a whole leftover spool (a gigabyte after a long outage) held the spool's lock for
    # all of it: the writer could not commit, every recording call waited max_block, health() and close()
    # waited seconds. Between chunks, another thread's append and depth() now get in.
    import threading

    got_in: list[int] = []

    def chunk_then_another_thread(call: int, copy: Any) -> Any:
        rows = copy()
        other = threading.Thread(target=lambda: (heir.append([("d/t", 1, body("new"))], 2.0), got_in.append(1)))
        other.start()
        other.join(60)
        return rows

    orphan, heir = _adopting(tmp_path, monkeypatch, 40, chunk_then_another_thread, _ADOPT_CHUNK=4)
    assert heir.adopt_orphans() == 80
    assert len(got_in) == 11 + 2 + 1  # segments: 10 chunks and the empty read that ends them; dead: 2; unreadable: 1
    assert heir.depth()[0] == 80 + len(got_in) and heir.dead_count() == 1
    assert not orphan.path.exists()
    heir.close()


def test_an_adoption_interrupted_half_way_resumes_without_copying_rows_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    def busy_on_the_third(call: int, copy: Any) -> Any:
        if call == 3:
            raise sqlite3.OperationalError("database is locked")
        return copy()

    orphan, heir = _adopting(tmp_path, monkeypatch, 40, busy_on_the_third, _ADOPT_CHUNK=4)
    assert heir.adopt_orphans() == 0  # left for the next pass, the orphan whole
    assert orphan.path.exists() and heir.depth()[0] == 16
    heir.adopt_orphans()
    ids = [r["_id"] for s in heir.next_batch("d/t", 10_000, 10**9) for r in s.records()]
    assert len(ids) == len(set(ids)) == 80  # each once
    assert not orphan.path.exists()
    heir.close()


def test_no_room_for_the_copy_is_known_before_a_row_is_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Copied a chunk at a time, a copy that ran out of room half-way would leave this spool holding part of
    # the orphan: no longer empty, so it could not take the orphan over in place as a full disk needs.
    from perf_sdk import _spool

    orphan = _dead_spool(tmp_path, 10)
    heir = Spool(tmp_path)
    real = os.statvfs

    class Full:
        def __init__(self, path: object) -> None:
            fs = real(path)  # type: ignore[arg-type]
            self.f_frsize = fs.f_frsize
            self.f_bavail = (_spool.RESERVE_BYTES + 100) // fs.f_frsize  # a little room, not enough to copy

    monkeypatch.setattr(_spool.os, "statvfs", Full)
    assert heir.adopt_orphans() == 20  # taken over in place
    assert heir.path == orphan.path and heir.depth()[0] == 20
    heir.close()


def test_an_adopted_chunk_is_cut_by_bytes_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []

    def counted(call: int, copy: Any) -> Any:
        rows = copy()
        sizes.append(len(rows))
        return rows

    _, heir = _adopting(tmp_path, monkeypatch, 5, counted, _ADOPT_CHUNK_BYTES=1)  # past the first row, none fit
    assert heir.adopt_orphans() == 10
    assert sizes == [1, 1, 1, 1, 1, 0, 1, 0, 0]  # segments one by one, the dead letter, nothing unreadable
    heir.close()


def test_health_s_view_never_waits_for_a_commit(tmp_path: Path) -> None:
    # AsyncTracker.health() runs on the event loop: it took the spool's lock, which the writer holds through
    # each commit's fsync, and scanned every row's body (p95 9 ms, up to 66 ms, while the service recorded).
    spool = Spool(tmp_path)
    assert spool.view() == (0, None, 0)
    spool.append([("d/t", 2, body("a", "b"))], 1.0)
    assert spool.view() == (2, 1.0, 0)
    with spool._mutex:  # the writer, in a commit
        assert spool.view() == (2, 1.0, 0)  # at once
    spool.append([("d/t", 1, body("c"))], 2.0)
    assert spool.view() == (3, 1.0, 0) and spool.depth() == (3, 2, 1.0)
    spool.dead_letter("d/t", [{"_id": "x"}], 1.0, 400, "bad")
    spool.remove(spool.next_batch("d/t", 2, 10**6))
    assert spool.view() == (1, 2.0, 1)  # every change keeps it
    plan = spool._conn.execute(
        "EXPLAIN QUERY PLAN SELECT COALESCE(SUM(n), 0), COUNT(*), MIN(accepted_at) FROM segments"
    )
    assert "COVERING INDEX segments_by_age" in str(plan.fetchall())  # the index alone, not the bodies
    spool.close()
