"""Benchmark of ``perf-sdk backfill``: a million CSV rows validated, spooled and stored.

    python benchmarks/backfill.py [--rows 1000000] [--keep DIR] [--dry-run] [--xlsx] [--profile OUT.prof]
    python benchmarks/backfill.py --bomb [MB]

1. Generates a transactions CSV (timestamps one a second from 2025-01-01 in UTC,
   stage/channel cycling, counts 1..9) unless ``--keep DIR`` already holds one.
2. Starts the local platform in a subprocess (``python -m perf_sdk serve``, a
   fresh SQLite file) so the server's CPU does not compete for our GIL.
3. Runs :func:`perf_sdk._backfill.backfill` in this process through the durable
   spool and the uploader, and waits until the platform has stored every record.
4. Times a bare ``csv.DictReader`` pass over the same file (the floor any CSV
   tool pays) and prints both, their ratio, rows/s and this process's peak RSS.

``--xlsx`` writes the same rows as an Excel workbook (dates as date-time
cells, counts as numbers) and times that instead: every cell's number format
is read, so a date cell is a day and a money cell is money.
``--bomb`` builds an .xlsx whose shared strings inflate to MB megabytes (default
290, from a file of under 1 MB) and prints the time and this process's peak RSS
to refuse it (or, on code without the check, to open it).
``--dry-run`` times reading and checking alone; ``--profile`` writes a cProfile
of the backfill (all threads' time shows up under the main thread's waits, so
read it alongside ``--dry-run``).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

SERVICE = "bench-service"
TOKEN = "bench-token"
SECRET = "bench-secret-0123456789abcdef"
CHANNELS = ("digital", "phone", "paper", "face_to_face", "other")


def generate(path: Path, rows: int) -> None:
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    with path.open("w", newline="", encoding="utf-8") as handle:
        w = csv.writer(handle)
        w.writerow(["timestamp", "stage", "channel", "count"])
        for i in range(rows):
            at = start + timedelta(seconds=i * 7)
            w.writerow(
                [
                    at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "started" if i % 3 else "completed",
                    CHANNELS[i % 5],
                    i % 9 + 1,
                ]
            )


def generate_xlsx(path: Path, rows: int) -> None:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(["timestamp", "stage", "channel", "count"])
    start = datetime(2025, 1, 1)
    for i in range(rows):
        sheet.append(
            [start + timedelta(seconds=i * 7), "started" if i % 3 else "completed", CHANNELS[i % 5], i % 9 + 1]
        )
    book.save(path)


class Platform:
    """``perf-sdk serve`` in a subprocess on a free port, with its own SQLite file."""

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "perf_sdk", "serve", "--port", "0", "--db", str(db), "--token", TOKEN],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"(http://\S+)", line)
        if m is None:
            self.proc.kill()
            raise RuntimeError(f"the platform did not start: {line!r}")
        self.url = m.group(1)

    def stored(self) -> tuple[int, int]:
        """(records, sum of count) in the data set, by the read API."""
        r = httpx.get(
            f"{self.url}/data/{SERVICE}/transactions", params={"period": "year", "collect": "count:sum"}, timeout=60
        )
        data = r.json()["data"]
        return sum(p["_count"] for p in data), sum(p["count:sum"] or 0 for p in data)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def dictreader_pass(path: Path) -> float:
    start = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as handle:
        for _ in csv.DictReader(handle):
            pass
    return time.perf_counter() - start


def bomb(inflated_mb: int) -> None:
    import io
    import zipfile

    import openpyxl

    from perf_sdk._backfill_readers import open_source
    from perf_sdk._errors import ConfigurationError

    with tempfile.TemporaryDirectory() as tmp_name:
        path = Path(tmp_name) / "bomb.xlsx"
        book = openpyxl.Workbook()
        book.active.append(["timestamp", "stage", "channel"])
        good = io.BytesIO()
        book.save(good)
        template = zipfile.ZipFile(good)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as out:
            for info in template.infolist():
                data = template.read(info.filename)
                if info.filename == "[Content_Types].xml":  # declare the part, so openpyxl reads it
                    data = data.replace(
                        b"</Types>",
                        b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                        b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml" /></Types>',
                    )
                out.writestr(info.filename, data)
            with out.open("xl/sharedStrings.xml", "w", force_zip64=True) as handle:
                handle.write(b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">')
                block = b"<si><t>" + b"A" * 1000 + b"</t></si>"
                for _ in range(inflated_mb * 1024 * 1024 // len(block)):
                    handle.write(block)
                handle.write(b"</sst>")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        try:
            with open_source(path) as source:
                outcome = f"opened ({len(source.header)} columns)"
        except ConfigurationError as exc:
            outcome = f"refused: {str(exc)[:100]}..."
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"bomb: {path.stat().st_size / 1024:,.0f} KB inflating to {inflated_mb} MB: {outcome}")
        print(f"in {elapsed:.2f} s; peak RSS {peak:.0f} MB (before opening: {before:.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="directory to keep (and reuse) the generated file in")
    parser.add_argument("--dry-run", action="store_true", help="time reading and checking only")
    parser.add_argument("--xlsx", action="store_true", help="an Excel workbook instead of CSV")
    parser.add_argument("--bomb", type=int, nargs="?", const=290, metavar="MB", help="time refusing an .xlsx bomb")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the backfill here")
    args = parser.parse_args()
    if args.bomb:
        bomb(args.bomb)
        return

    from perf_sdk._backfill import backfill

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = args.keep or tmp
        folder.mkdir(parents=True, exist_ok=True)
        source = folder / f"history-{args.rows}.{'xlsx' if args.xlsx else 'csv'}"
        if not source.exists():
            t = time.perf_counter()
            (generate_xlsx if args.xlsx else generate)(source, args.rows)
            print(
                f"generated {args.rows:,} rows ({source.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s"
            )

        platform = None if args.dry_run else Platform(tmp / "platform.sqlite")
        try:
            profiler = None
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            start = time.perf_counter()
            summary = backfill(
                source,
                service=SERVICE,
                dry_run=args.dry_run,
                endpoint=platform.url if platform else None,
                token=TOKEN,
                secret=SECRET,
                spool_dir=tmp / "spool",
                rejects=tmp / "rejects.csv",
                resume=False,
            )
            elapsed = time.perf_counter() - start
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(args.profile))
            stored = platform.stored() if platform else (0, 0)
        finally:
            if platform:
                platform.close()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        bare = dictreader_pass(source) if not args.xlsx else 0.0
        what = "checked (dry run)" if args.dry_run else "validated, spooled and stored"
        print(
            f"backfill: {summary.rows_read:,} rows {what} in {elapsed:.2f} s = {summary.rows_read / elapsed:,.0f} rows/s"
        )
        if platform:
            print(f"platform holds {stored[0]:,} records, sum of count {stored[1]:,}; delivered {summary.delivered:,}")
            assert stored[0] == summary.records, (stored, summary.records)
        if bare:
            print(
                f"csv.DictReader pass: {bare:.2f} s = {summary.rows_read / bare:,.0f} rows/s; "
                f"ratio {elapsed / bare:.1f}x"
            )
        print(f"peak RSS of this process: {rss_mb:.0f} MB; rejected {summary.rejected}")


if __name__ == "__main__":
    os.environ.pop("PERF_SDK_SPOOL_DIR", None)
    main()
