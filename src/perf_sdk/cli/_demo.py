"""``perf-sdk demo``: the whole product in one command, with nothing to set up.

It starts the local platform in this process on a free loopback port, runs a
simulated service for a year through the real pipeline (Tracker → spool →
uploader → HTTP), reads the four KPIs back through the platform's read API,
checks them against the simulation's own arithmetic, prints them, and writes
the dashboard, the figures and the platform's database to ``./perf-sdk-demo/``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from perf_sdk._errors import ConfigurationError

SERVICE = "apply-for-a-licence"
TOKEN = "demo-token"  # noqa: S105 - the local demo platform's own token, loopback only
SECRET = "perf-sdk-demo-secret-0123456789"  # noqa: S105 - hashes the demo's simulated ids only


#: What ``perf-sdk demo --help`` says: plain text for a terminal (the module docstring is reStructuredText
#: for readers of the source), laid out by hand and kept as written by RawDescriptionHelpFormatter.
DESCRIPTION = """\
The whole product in one command, with nothing to set up.

Starts the local Performance Platform in this process on a free loopback port,
runs a simulated service for a year through the real pipeline (tracker, spool,
uploader, HTTP), reads the four KPIs back through the platform's read API,
checks them against the simulation's own arithmetic and prints them.

Writes the dashboard, kpis.json, kpis.csv and the platform's database to the
--output folder, emptied first. Exits 1 if any figure disagrees with the
simulation. Needs the 'platform' extra, and 'dashboard' for the dashboard."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the local platform, a simulated service for a year, and show its KPIs and dashboard",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--output",
        default="perf-sdk-demo",
        help="folder for the dashboard and data, emptied first (default: %(default)s)",
    )
    parser.add_argument("--keep-serving", action="store_true", help="leave the local platform running to explore it")
    parser.add_argument("--port", type=int, default=0, help="port for the local platform (default: a free one)")
    parser.add_argument("--seed", type=int, default=2026, help="the simulation's random seed")
    parser.add_argument("--visitors", type=int, default=300, help="digital visitors on an average weekday")
    parser.set_defaults(func=run)


def _last_four_quarters(today: date) -> date:
    """The first day of the four complete quarters before today."""
    this_quarter = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    return date(this_quarter.year - 1, this_quarter.month, 1)


def run(args: argparse.Namespace) -> int:
    try:
        from perf_sdk.platform import LocalPlatform
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc}. The demo needs it: pip install 'perf-sdk[platform,dashboard]'") from None
    import perf_sdk
    from perf_sdk.cli._kpis import print_table
    from perf_sdk.cli._simulate import SimulatedService

    console = Console(soft_wrap=True)
    out = Path(args.output).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    started_at = time.monotonic()
    start = _last_four_quarters(date.today())
    sim = SimulatedService(start=start, seed=args.seed, daily_visitors=args.visitors)
    end = start + timedelta(days=len(sim.days()) - 1)

    console.print(f"[bold]perf_sdk demo[/bold]: a year of '{SERVICE}', {start:%-d %B %Y} to {end:%-d %B %Y}")
    platform = LocalPlatform(db=out / "platform.sqlite", token=TOKEN, port=args.port)
    platform.start()
    try:
        console.print(f"Local Performance Platform (write and read API) at [bold]{platform.url}[/bold]")
        tracker = perf_sdk.Tracker(
            service=SERVICE,
            endpoint=platform.url,
            token=TOKEN,
            secret=SECRET,
            spool_dir=out / "spool",
            max_queue=200_000,
        )
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            days = progress.add_task("Simulating days   ", total=len(sim.days()))
            tally = sim.run(tracker, lambda done, total: progress.update(days, completed=done))
            delivery = progress.add_task("Delivering records", total=tally.calls - tally.duplicates)
            done = threading.Event()

            def watch() -> None:
                while not done.wait(0.1):
                    progress.update(delivery, completed=min(tracker.stats.delivered, tally.calls - tally.duplicates))

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            result = tracker.flush(timeout=120)
            done.set()
            watcher.join()
            progress.update(delivery, completed=tally.calls - tally.duplicates)
        tracker.close()
        if not result:
            console.print(f"[red]{result.pending} records were not delivered in time[/red]")
            return 1
        stored = sum(platform.count(SERVICE, data_type) for data_type in ("transactions", "satisfaction", "costs"))
        console.print(
            f"{tally.calls:,} recording calls → {stored:,} records stored by the platform "
            f"({tally.duplicates:,} page refreshes counted once)."
        )

        report = perf_sdk.kpis(platform.url, service=SERVICE, period="quarter", start=start, end=end)
        console.print()
        print_table(report)
        mismatches = _check(report, tally)
        if mismatches:
            for line in mismatches:
                console.print(f"[red]Mismatch: {line}[/red]")
            return 1
        console.print("✓ Every figure matches the simulation's own counts, worked out by hand.")

        (out / "kpis.json").write_text(report.to_json())
        (out / "kpis.csv").write_text(report.to_csv())
        dashboard = _dashboard(report, out, console)
        _next_steps(console, out, dashboard, platform.url, args.keep_serving, time.monotonic() - started_at)
        if args.keep_serving:
            console.print(f"\nServing {platform.url} until Ctrl-C ...")
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
        return 0
    finally:
        platform.stop()


def _check(report: Any, tally: Any) -> list[str]:
    problems = []
    by_start = {p.start: p for p in report.periods}
    for quarter in tally.quarters():
        got = by_start.get(quarter)
        if got is None:
            problems.append(f"quarter {quarter} missing from the report")
            continue
        for key, want in tally.expected(quarter).items():
            value = getattr(got, key).value
            if (value is None) != (want is None) or (
                value is not None and want is not None and abs(value - want) > 1e-9
            ):
                problems.append(f"{got.label} {key}: platform {value}, simulation {want}")
    return problems


def _dashboard(report: Any, out: Path, console: Console) -> Path | None:
    try:
        from perf_sdk._dashboard import render_dashboard

        return render_dashboard(report, out / "dashboard.html")
    except ConfigurationError as exc:
        console.print(f"(No dashboard: {exc})")
        return None


def _next_steps(console: Console, out: Path, dashboard: Path | None, url: str, keep: bool, elapsed: float) -> None:
    rel = os.path.relpath(out)
    console.print(f"\nDone in {elapsed:.1f} s. Everything is in [bold]{rel}/[/bold]:")
    if dashboard is not None:
        console.print(f"  {rel}/dashboard.html   the published dashboard (open it in a browser; works offline)")
    console.print(f"  {rel}/kpis.json, kpis.csv   the same figures for publishing")
    console.print(f"  {rel}/platform.sqlite   the local platform's data")
    console.print("\nTry next:")
    if not keep:  # the demo's platform stops with it: serve its data again on a known port
        url = "http://127.0.0.1:8000"
        console.print(f"  perf-sdk serve --db {rel}/platform.sqlite --token {TOKEN}   # the platform again, on {url}")
    console.print(f"  perf-sdk kpis --service {SERVICE} --endpoint {url} --period month   # monthly figures")
    console.print(f"  curl '{url}/data/{SERVICE}/transactions?group_by=channel&collect=count:sum'")
    if not keep:
        console.print("  perf-sdk demo --keep-serving   # or keep the demo's platform up when it finishes")
    console.print("  examples/ has a Flask, a Django and a FastAPI service that count their journeys with no code.")
    sys.stdout.flush()
