"""``perf-sdk backfill``: load history from a CSV, JSONL (optionally gzipped) or Excel file.

A thin shell over :func:`perf_sdk._backfill.backfill`: argument parsing, a Rich
progress bar on standard error (rows read, sent, stored, rejected, rows/s, ETA
by bytes of the file) and a summary on standard output. Exit status: 0 all rows
accepted and stored, 1 some rows rejected (or records dead-lettered), 2 a usage
or configuration error (including a file that is not what it claims), 130
interrupted (a re-run resumes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from perf_sdk._backfill import BackfillSummary, backfill
from perf_sdk._backfill_columns import SHAPES
from perf_sdk._backfill_readers import AMOUNT_UNITS
from perf_sdk._errors import ConfigurationError
from perf_sdk._protocol import DATA_TYPES

__all__ = ["register", "run"]

#: How long the command waits for a platform it cannot reach before it stops (records stay on disk).
DEFAULT_WAIT = 300.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "backfill",
        help="load history from a CSV / JSONL / Excel file into the platform",
        description=(
            "Read a history file (CSV with any of , ; TAB | as delimiter, JSONL, either gzipped, or .xlsx), "
            "check every row, and send the records through the durable spool to the platform, exactly once. "
            "Rejected rows go to a reject file; re-running is safe and resumes an interrupted run."
        ),
    )
    p.add_argument("file", type=Path, metavar="FILE", help="the history file")
    p.add_argument("--service", help="the service's data group (PERF_SDK_SERVICE)")
    p.add_argument("--type", dest="data_type", choices=DATA_TYPES, help="data type (default: told by the columns)")
    p.add_argument("--shape", choices=SHAPES, help="narrow (one record a row), or a wide published shape")
    p.add_argument("--dry-run", action="store_true", help="check and summarise, send nothing (needs no endpoint)")
    p.add_argument(
        "--map",
        dest="maps",
        action="append",
        default=[],
        metavar="SOURCE=FIELD",
        help="read column SOURCE as FIELD (repeatable), e.g. --map When=timestamp",
    )
    p.add_argument("--ignore-extra", action="store_true", help="read past columns the data type does not use")
    p.add_argument("--timezone", default="Europe/London", help="zone of naive times and dates (default Europe/London)")
    p.add_argument("--amount-unit", choices=AMOUNT_UNITS, default="pence", help="unit of amount_pence (default pence)")
    p.add_argument("--rejects", type=Path, metavar="PATH", help="reject file (default FILE.rejects.csv)")
    p.add_argument("--sheet", help="Excel: the sheet to read (default: the first)")
    p.add_argument(
        "--source-name",
        metavar="NAME",
        help="the name the records' ids derive from (default: the file's name without .gz); keep it for renamed files",
    )
    p.add_argument("--no-resume", action="store_true", help="start over even if an interrupted run left a checkpoint")
    p.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT,
        metavar="SECONDS",
        help=f"stop waiting for delivery after this long, exit 1; a re-run resumes (default {DEFAULT_WAIT:g})",
    )
    p.add_argument("--checkpoint-every", type=float, default=2.0, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--endpoint", help="the platform's write API base URL (PERF_SDK_ENDPOINT)")
    p.add_argument("--read-endpoint", help="the read API's base URL if apart (PERF_SDK_READ_ENDPOINT)")
    p.add_argument("--token", help="bearer token (PERF_SDK_TOKEN)")
    p.add_argument(
        "--secret", help="HMAC key for transaction ids (PERF_SDK_SECRET); needed only with a transaction_id column"
    )
    p.add_argument("--spool-dir", type=Path, help="durable outbox and checkpoints (PERF_SDK_SPOOL_DIR)")
    p.set_defaults(func=run)


def _parse_maps(maps: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in maps:
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ConfigurationError(f"--map {item!r}: use SOURCE=FIELD, e.g. --map When=timestamp")
        out[source.strip()] = target.strip()
    return out


def run(args: argparse.Namespace) -> int:
    maps = _parse_maps(args.maps)
    show_progress = not args.quiet and sys.stderr.isatty()
    progress = _Progress() if show_progress else None
    try:
        summary = backfill(
            args.file,
            service=args.service,
            data_type=args.data_type,
            dry_run=args.dry_run,
            column_map=maps,
            ignore_extra=args.ignore_extra,
            timezone=args.timezone,
            amount_unit=args.amount_unit,
            shape=args.shape,
            rejects=args.rejects,
            endpoint=args.endpoint,
            read_endpoint=args.read_endpoint,
            token=args.token,
            secret=args.secret,
            spool_dir=args.spool_dir,
            sheet=args.sheet,
            source_name=args.source_name,
            resume=not args.no_resume,
            wait=args.wait,
            checkpoint_every=args.checkpoint_every,
            on_progress=progress.update if progress else None,
        )
    finally:
        if progress is not None:
            progress.stop()
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, default=str))
    else:
        print_summary(summary)
    if _gave_up_waiting(summary):
        print(_resume_hint(summary, args), file=sys.stderr)
        return max(summary.exit_status, 1)
    return summary.exit_status


def _gave_up_waiting(s: BackfillSummary) -> bool:
    """Reading finished but ``--wait`` ran out with records not yet stored."""
    return not s.dry_run and not s.interrupted and s.reading_done and s.pending > 0 and not s.paused


def _resume_hint(s: BackfillSummary, args: argparse.Namespace) -> str:
    why = f" ({s.waiting_for})" if s.waiting_for else ""
    where = f" --spool-dir {args.spool_dir}" if args.spool_dir else (f" --service {s.service}" if s.service else "")
    return (
        f"perf-sdk: stopped waiting after {args.wait:g} s{why}: {s.pending:,} record(s) are safe on disk, not yet "
        f"stored. Run the same command again once the platform answers: it delivers them and reads no row twice "
        f"(`perf-sdk spool status{where}` shows what waits; --wait SECONDS waits longer)."
    )


def print_summary(s: BackfillSummary) -> None:
    """The run in a few lines, then counts per data set, per month and per channel."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    verb = "would send" if s.dry_run else "sent"
    head = f"{s.source}: {s.rows_read:,} rows read, {s.accepted:,} accepted, {s.rejected:,} rejected"
    if s.rows_skipped:
        head += f" ({s.rows_skipped:,} rows before row {s.resumed_from} done by an earlier run)"
    console.print(head)
    if s.header_row and s.header_row > 1:
        console.print(f"header on row {s.header_row} (the rows above it read past as a title or notes)")
    if s.dry_run and s.columns:
        console.print("columns:")
        for column, reading in s.columns:
            console.print(f"  {column or '(no name)'} -> {reading}")
    console.print(f"{verb} {s.records:,} {s.data_type} records ({s.shape}) to {s.service}/{s.data_type}")
    if not s.dry_run:
        console.print(f"stored {s.delivered:,}; pending {s.pending:,}; dead letters {s.dead_letters:,}")
        if s.paused:
            console.print(f"paused (check token and data set): {', '.join(s.paused)}")
    if s.rejected and s.rejects_path:
        console.print(f"rejected rows written to {s.rejects_path}")
    if s.interrupted:
        console.print("interrupted: run the same command again to resume")
    console.print(timing(s))
    for title, table in (("data set", s.by_dataset), ("month", s.by_period), ("channel", s.by_channel)):
        if not table:
            continue
        t = Table(title=f"per {title}", title_justify="left", box=None, pad_edge=False)
        t.add_column(title)
        t.add_column("records", justify="right")
        t.add_column("count", justify="right")
        if s.data_type == "costs":
            t.add_column("amount (£)", justify="right")
        for key in sorted(table):
            tally = table[key]
            cells = [key, f"{tally.records:,}", f"{tally.count:,}"]
            if s.data_type == "costs":
                cells.append(f"{tally.amount_pence / 100:,.2f}")
            t.add_row(*cells)
        console.print(t)


#: Below this, a rows-per-second figure is noise (906 rows/s from 30 rows in 33 ms): say the time instead.
_MIN_RATE_SECONDS = 1.0


def timing(s: BackfillSummary) -> str:
    """How long the run took, with a rate only when it ran long enough for one to mean something."""
    if s.elapsed < _MIN_RATE_SECONDS:
        return f"{s.rows_read:,} row{'' if s.rows_read == 1 else 's'} in {s.elapsed:.2f} s"
    return f"{s.elapsed:.1f} s, {s.rows_per_second:,.0f} rows/s"


class _Progress:
    """Rich progress on standard error: bytes of the file drive the bar and the ETA."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]backfill"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task: Any = None

    def update(self, s: BackfillSummary) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("backfill", total=s.bytes_total or None, stats="")
        stats = f"read {s.rows_read:,}  sent {s.submitted:,}  stored {s.delivered:,}  rejected {s.rejected:,}"
        if s.elapsed >= _MIN_RATE_SECONDS:
            stats += f"  {s.rows_per_second:,.0f} rows/s"
        if s.waiting_for:
            stats += f"  {s.waiting_for}"
        completed = s.bytes_read if not s.reading_done else (s.bytes_total or s.bytes_read)
        self._progress.update(self._task, completed=completed, stats=stats)

    def stop(self) -> None:
        if self._task is not None:
            self._progress.stop()
