"""A full disk, then a restart (issue 12 item 4).

Process A records with the platform down until its small disk is full, and
exits. Process B starts with the platform up on that disk: there is no room for
a spool of its own, yet it must deliver everything A left, and no failed attempt
to open a spool may leave a file or a file descriptor behind.

Needs a small real filesystem (tmpfs, mounted as root); skips elsewhere. This
module is also process A: ``python -m tests.reliability.test_full_disk_restart SPEC``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import perf_sdk
from perf_sdk._records import RecordBuilder
from perf_sdk._spool import Spool, inspect_spool_dir
from tests.conftest import SECRET, SERVICE, TOKEN
from tests.faultserver import FaultPlan, FaultServer
from tests.reliability.conftest import Row

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """An owner-only tmpfs of ``size``; skips (saying why) where mounting is impossible."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, and mounting one needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"mode=0700,size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); a full disk cannot be simulated")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> None:
    """Take every free byte left (what another program on the disk would do)."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 512)
    finally:
        os.close(fd)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_failed_opens_leave_no_file_and_no_descriptor(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "1m") as directory:
        fill(directory)
        files, fds = sorted(os.listdir(directory)), open_fds()
        for _ in range(50):  # the tracker retries about once a second: a minute of a full disk
            with pytest.raises(Exception, match=r"full|No space"):
                Spool(directory)
        assert sorted(os.listdir(directory)) == files
        assert open_fds() == fds


def dead_spool_filling(directory: Path, most: int = 1 << 30) -> tuple[Path, int]:
    """A spool that filled the disk (or holds ``most`` records) and whose process then exited normally."""
    spool = Spool(directory)
    written = 0
    with contextlib.suppress(Exception):
        while written < most:
            spool.append(
                [
                    (
                        "d/t",
                        1,
                        json.dumps([{"_id": f"a-{written}", "count": 1, "pad": os.urandom(1000).hex()}]).encode(),
                    )
                ],  # random: packing cannot shrink it
                1.0,
            )
            written += 1
    path = spool.path
    spool.close()
    fill(directory)
    return path, written


def test_a_spool_that_cannot_be_created_takes_over_an_orphan_in_place(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "8m") as directory:
        orphan, written = dead_spool_filling(directory)
        assert written > 100
        heir = Spool(directory)  # no room for a file of its own
        assert heir.path == orphan  # used in place: no copy
        assert heir.depth()[0] == written
        delivered = 0
        while batch := heir.next_batch("d/t", 100, 10**7):
            heir.remove(batch)  # deliveries are forgotten: the disk has room again
            delivered += sum(s.n for s in batch)
        assert delivered == written
        heir.append([("d/t", 1, b'[{"_id":"b-1","count":1}]')], 2.0)  # and new records fit
        assert heir.depth()[0] == 1
        heir.close()


def test_several_orphans_on_a_full_disk_are_all_drained(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "8m") as directory:
        first, n1 = dead_spool_filling(directory, most=600)
        (directory / "filler").unlink()
        second, n2 = dead_spool_filling(directory)  # fills what is left, with no room for ballast of its own
        for path in list(directory.iterdir()):  # taken over first: draining it needs the other's ballast
            if path.name.startswith(second.stem):
                path.rename(directory / path.name.replace(second.stem, "a-1-00000000"))
        heir = Spool(directory)  # no room of its own: takes one over in place
        assert heir.path.name == "a-1-00000000.spool"
        delivered = 0
        for _ in range(10):  # what the uploader does, pass after pass
            heir.adopt_orphans()
            while batch := heir.next_batch("d/t", 100, 10**7):
                heir.remove(batch)
                delivered += sum(s.n for s in batch)
            if not list(directory.glob("*.spool")) or [heir.path] == list(directory.glob("*.spool")):
                break
        assert delivered == n1 + n2
        assert list(directory.glob("*.spool")) == [heir.path]
        heir.close()


def test_a_full_disk_never_makes_another_users_spool_ours(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with small_disk(tmp_path / "disk", "8m") as directory:
        orphan, _ = dead_spool_filling(directory)
        for path in directory.iterdir():
            if path.name.startswith(orphan.stem):
                os.chown(path, 65534, 65534)  # planted by another user
        with pytest.raises(Exception, match=r"full|No space"):
            Spool(directory)  # no room of its own, and nothing it may take over
        assert "belongs to uid 65534" in caplog.text
        assert orphan.exists() and orphan.stat().st_uid == 65534


def test_an_empty_spool_moves_into_an_orphan_it_has_no_room_to_copy(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "8m") as directory:
        orphan, written = dead_spool_filling(directory, most=1000)
        fill_but(directory, 512 * 1024)  # room for a new, empty spool; none to copy the orphan into it
        heir = Spool(directory)
        assert heir.path != orphan
        own = heir.path
        assert heir.adopt_orphans() == written
        assert heir.path == orphan and not own.exists()
        assert heir.depth()[0] == written
        heir.close()


def fill_but(directory: Path, keep: int) -> None:
    """Leave ``keep`` bytes free."""
    (directory / "filler").unlink(missing_ok=True)
    fs = os.statvfs(directory)
    free = fs.f_bavail * fs.f_frsize
    with open(directory / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - keep))


def test_b_delivers_everything_a_left_on_the_disk_it_filled(
    tmp_path: Path,
    fault_server: Callable[..., FaultServer],
    make_tracker: Callable[..., perf_sdk.Tracker],
    report: Callable[[Row], None],
) -> None:
    server = fault_server(FaultPlan(always=503))  # the platform is down while A fills the disk
    with small_disk(tmp_path / "disk", "16m") as directory:
        spec = {"endpoint": server.url, "spool_dir": str(directory), "prefix": "a"}
        done = subprocess.run(
            [sys.executable, "-m", "tests.reliability.test_full_disk_restart", json.dumps(spec)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        durable = int(done.stdout.split()[-1])  # committed before the disk refused anything
        assert durable > 10_000
        on_disk = sum(status.records for status in inspect_spool_dir(directory))
        assert on_disk >= durable

        server.plan = FaultPlan()  # the platform is back; B starts on the full disk
        heir = make_tracker(endpoint=server.url, spool_dir=directory).open()
        result = heir.flush(120)
        assert result.pending == 0 and not result.timed_out, result
        builder = RecordBuilder(SERVICE, SECRET)
        ids = {rid for _, rid in server.store}
        want = {
            builder.natural_id("transactions", "completed", builder.hash_transaction_id(f"a-{i}"))
            for i in range(durable)
        }
        assert want <= ids  # every record A knew to be durable
        assert len(server.store) == on_disk  # and everything else it left: all of it, once
        assert server.count_sum() == on_disk
    report(Row("full disk, then restart", 2, on_disk, len(server.store), server.count_sum() - on_disk, None))


def main() -> None:
    """Process A: record with the platform down until the disk refuses; print what was durable; exit."""
    spec = json.loads(sys.argv[1])
    tracker = perf_sdk.Tracker(
        service=SERVICE, endpoint=spec["endpoint"], token=TOKEN, secret=SECRET, spool_dir=spec["spool_dir"],
        max_queue=5000, max_block=0.0, retry_initial=0.01, retry_max=0.05,
    )  # fmt: skip
    durable = 0
    for block in range(0, 1_000_000, 1000):
        for i in range(block, block + 1000):
            tracker.complete(f"{spec['prefix']}-{i}")
        if not tracker.persist(10) or tracker.stats.refused:
            break
        durable = block + 1000
    tracker.close(0.5)
    print(f"durable {durable}", flush=True)


if __name__ == "__main__":
    main()
