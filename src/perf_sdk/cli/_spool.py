"""``perf-sdk spool``: look into a spool directory, and replay dead letters.

``status`` is what an on-call engineer runs first: how many records wait, how
old the oldest is, which process owns each file (alive, or dead and waiting to
be adopted), how many records the platform refused for good, and how many
could no longer be read back from disk (set aside, never sent).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from perf_sdk._config import ENV, resolve_spool_dir
from perf_sdk._errors import ConfigurationError
from perf_sdk._spool import SUFFIX, _connect, _migrate, inspect_spool_dir, replay_dead_in_dir, trusted_spool_files


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("spool", help="inspect the durable outbox, replay dead letters")
    sub = parser.add_subparsers(dest="spool_command", metavar="ACTION", required=True)
    for name, helptext, func in (
        ("status", "records waiting, oldest age, owners, dead letters", _status),
        ("dead", "list dead-lettered records with the platform's reason", _dead),
        ("replay-dead", "move dead letters back to the outbox (after fixing the cause)", _replay),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--spool-dir", help=f"the spool directory (default: {ENV['spool_dir']}, or per service)")
        p.add_argument("--service", help=f"service slug, to find its default spool directory ({ENV['service']})")
        if name in ("status", "dead"):
            p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "dead":
            p.add_argument("--limit", type=int, default=50)
        p.set_defaults(func=func)


def _spool_dir(args: argparse.Namespace) -> Path:
    """The directory asked for; a usage error when none is, or it does not exist (a typo is not "empty")."""
    directory = resolve_spool_dir(args.spool_dir, args.service)
    if directory is None:
        raise ConfigurationError("say which spool: --spool-dir PATH, or --service SLUG (or PERF_SDK_SPOOL_DIR)")
    if not directory.exists():
        where = "--spool-dir" if args.spool_dir else ("--service" if args.service else "PERF_SDK_SPOOL_DIR/SERVICE")
        raise ConfigurationError(
            f"no spool directory at {directory} (from {where}): check the path; a tracker creates it when it starts"
        )
    if not directory.is_dir():
        raise ConfigurationError(f"{directory} is not a directory: give the spool directory, not a file in it")
    return directory


def _console() -> Console:
    """Rich on a terminal; piped or redirected, lines as wide as their content, so tables are not squashed to 80."""
    if sys.stdout.isatty():
        return Console(soft_wrap=True)
    return Console(soft_wrap=True, width=100_000)


def _age(oldest: float | None) -> str:
    if oldest is None:
        return "-"
    seconds = max(0.0, time.time() - oldest)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _status(args: argparse.Namespace) -> int:
    directory = _spool_dir(args)
    files = inspect_spool_dir(directory)
    pending = sum(f.records for f in files)
    dead = sum(f.dead for f in files)
    unreadable = sum(f.unreadable for f in files)
    oldest = min((f.oldest_accepted_at for f in files if f.oldest_accepted_at is not None), default=None)
    if args.json:
        print(
            json.dumps(
                {
                    "spool_dir": str(directory),
                    "pending": pending,
                    "dead_letters": dead,
                    "unreadable": unreadable,
                    "oldest_pending_age_seconds": None if oldest is None else round(time.time() - oldest, 3),
                    "files": [
                        {
                            "file": f.path.name,
                            "owner": "alive" if f.alive else "gone",
                            "pending": f.records,
                            "by_dataset": f.by_dataset,
                            "bytes": f.bytes,
                            "dead_letters": f.dead,
                            "unreadable": f.unreadable,
                            "error": f.error,
                        }
                        for f in files
                    ],
                },
                indent=2,
            )
        )
        return 0
    console = _console()
    console.print(f"Spool directory: [bold]{directory}[/bold]")
    if not files:
        console.print("No spool files: nothing is waiting to be delivered.")
        return 0
    table = Table("file", "owner", "pending", "by data set", "oldest", "dead letters", "unreadable", "problem")
    for f in files:
        table.add_row(
            f.path.name,
            "alive" if f.alive else "gone",
            str(f.records),
            ", ".join(f"{ds}: {n}" for ds, n in sorted(f.by_dataset.items())) or "-",
            _age(f.oldest_accepted_at),
            str(f.dead),
            str(f.unreadable),
            f.error or "",
        )
    console.print(table)
    console.print(f"Pending: {pending} record(s); oldest waiting {_age(oldest)}. Dead letters: {dead}.")
    if any(not f.alive for f in files):
        console.print("Owner 'gone': its process ended; the next tracker on this directory adopts and delivers it.")
    quarantined = sorted(directory.glob(f"*{SUFFIX}.corrupt-*"))
    if quarantined:
        console.print(f"[red]Quarantined (unreadable) spool files: {', '.join(p.name for p in quarantined)}[/red]")
    if dead:
        console.print(
            "Dead letters were refused by the platform: `perf-sdk spool dead` shows why; fix, then replay-dead."
        )
    if unreadable:
        console.print(
            f"[red]{unreadable} spooled record(s) no longer read back from disk and were set aside unsent: "
            "`perf-sdk spool dead` lists them; check the disk that holds the spool.[/red]"
        )
    return 0


def _dead(args: argparse.Namespace) -> int:
    directory = _spool_dir(args)
    rows: list[dict[str, Any]] = []
    for path in trusted_spool_files(directory):  # never a link or another user's file (issue 12 item 3)
        conn = _connect(path)
        try:
            _migrate(conn)
            for dataset, body, failed_at, status, reason in conn.execute(
                "SELECT dataset, body, failed_at, status, reason FROM dead ORDER BY seq LIMIT ?", (args.limit,)
            ):
                rows.append(
                    {
                        "dataset": dataset,
                        "status": status,
                        "reason": reason,
                        "failed_at": failed_at,
                        "record": _record(body),
                    }
                )
            for dataset, n, size, found_at, reason in conn.execute(
                "SELECT dataset, n, LENGTH(body), found_at, reason FROM unreadable ORDER BY seq LIMIT ?", (args.limit,)
            ):
                rows.append(
                    {
                        "dataset": dataset,
                        "status": None,
                        "reason": f"{n} record(s), {size} bytes kept in the spool file's unreadable table: {reason}",
                        "failed_at": found_at,
                        "record": None,
                    }
                )
        finally:
            conn.close()
    rows = rows[: args.limit]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    console = _console()
    if not rows:
        console.print("No dead letters and no unreadable segments.")
        return 0
    table = Table("data set", "status", "reason", "record")
    for row in rows:
        record = "-" if row["record"] is None else json.dumps(row["record"])
        table.add_row(row["dataset"], str(row["status"] or "-"), row["reason"], record)
    console.print(table)
    return 0


def _record(body: bytes | str) -> Any:
    """A dead letter's record; the error, not a crash, when its stored bytes no longer parse."""
    try:
        return json.loads(body)
    except ValueError as exc:
        return {"unreadable": f"{type(exc).__name__}: {exc}"}


def _replay(args: argparse.Namespace) -> int:
    directory = _spool_dir(args)
    moved = replay_dead_in_dir(directory)
    print(f"Moved {moved} dead-lettered record(s) back to the outbox in {directory}.")
    print("A running tracker picks them up on its next pass; otherwise the next tracker on this spool_dir does.")
    return 0
