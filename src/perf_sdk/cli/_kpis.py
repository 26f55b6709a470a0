"""``perf-sdk kpis``: the four KPIs per period, as a table, CSV, JSON or an HTML dashboard.

With a performance definition (``--definition PATH``, default ``./perf-sdk.toml``
when it exists) every format also carries the targets (met / missed / unknown)
and the service's other KPIs; flagged figures (that cannot be right) and the
partial current period are marked in every format; records skipped for a
value outside the vocabulary are a data note under the table (on standard
error for JSON, CSV and HTML, whose shapes have no room for it). ``--around MARK`` compares
equal windows before and after a change marker instead (``_around.py``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import TextIO

from perf_sdk._config import env_value
from perf_sdk._definition import DEFAULT_DEFINITION_PATH, Definition, load_definition
from perf_sdk._errors import ConfigurationError
from perf_sdk._kpi import (
    KPI_KEYS,
    KPI_NAMES,
    PERIOD_KINDS,
    KpiReport,
    PeriodKpis,
    format_change,
    format_fraction,
    format_kpi,
)
from perf_sdk._kpi_sources import kpis

__all__ = ["add_definition_option", "format_table", "print_table", "register", "resolve_definition", "run"]

_ADJECTIVES = {
    "day": "daily",
    "week": "weekly",
    "month": "monthly",
    "quarter": "quarterly",
    "year": "yearly",
    "financial-year": "financial-year",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "kpis",
        help="print the four KPIs per period",
        description=(
            "Compute completion rate, user satisfaction, cost per transaction and digital take-up "
            "per period, from the platform's read API (or a local records file with --file)."
        ),
    )
    p.add_argument("--service", help="the service's data group (PERF_SDK_SERVICE)")
    p.add_argument("--from", dest="start", type=_date, metavar="DATE", help="first day, YYYY-MM-DD (inclusive)")
    p.add_argument("--to", dest="end", type=_date, metavar="DATE", help="last day, YYYY-MM-DD (inclusive)")
    p.add_argument("--period", choices=PERIOD_KINDS, default="quarter", help="reporting period (default: quarter)")
    p.add_argument(
        "--format",
        choices=("table", "csv", "json", "html"),
        default="table",
        dest="format",
        help="table (default; a Rich table on a terminal), csv, json (API.md's shape) or html (a dashboard page)",
    )
    p.add_argument("--output", type=Path, metavar="PATH", help="write here instead of standard output")
    p.add_argument("--endpoint", help="the platform's base URL (PERF_SDK_ENDPOINT)")
    p.add_argument("--read-endpoint", help="the read API's base URL if apart (PERF_SDK_READ_ENDPOINT)")
    p.add_argument("--token", help="bearer token, if the data sets are not published (PERF_SDK_TOKEN)")
    p.add_argument("--file", type=Path, metavar="PATH", help="read records from a CSV/JSONL file instead")
    add_definition_option(p)
    p.add_argument(
        "--around",
        metavar="MARK",
        help="compare equal windows before and after a change marker (its label, or an ISO time)",
    )
    p.add_argument(
        "--window",
        type=_positive_days,
        default=28,
        metavar="DAYS",
        help="with --around: days in each window (default 28)",
    )
    # Accepted so every platform command takes the same options; KPIs need neither.
    p.add_argument("--secret", help=argparse.SUPPRESS)
    p.add_argument("--spool-dir", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def add_definition_option(p: argparse.ArgumentParser) -> None:
    """``--definition PATH``: shared by ``kpis`` and ``check``."""
    p.add_argument(
        "--definition",
        type=Path,
        metavar="PATH",
        help=f"performance definition: targets and other KPIs (default ./{DEFAULT_DEFINITION_PATH} if present; "
        "PERF_SDK_DEFINITION)",
    )


def resolve_definition(path: Path | None, *, required: bool = False) -> Definition | None:
    """``--definition``, else ``PERF_SDK_DEFINITION``, else ``./perf-sdk.toml`` when it exists."""

    chosen = path or (Path(found) if (found := env_value("definition")) else None)
    if chosen is not None:
        return load_definition(chosen)
    default = Path(DEFAULT_DEFINITION_PATH)
    if default.is_file():
        return load_definition(default)
    if required:
        raise ConfigurationError(
            f"no performance definition: write ./{DEFAULT_DEFINITION_PATH} (see docs/guides/success.md) "
            "or pass --definition PATH"
        )
    return None


def _positive_days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 1 day")
    return value


#: The years a date or time on the command line may fall in (periods and baselines near year 1 or 9999 overflow).
MIN_YEAR = 1900
MAX_YEAR = 9000


def _date(text: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None
    if not MIN_YEAR <= day.year <= MAX_YEAR:  # periods around year 1 or 9999 overflow Python's dates
        raise argparse.ArgumentTypeError(f"{text!r}: a year from {MIN_YEAR} to {MAX_YEAR}")
    return day


def run(args: argparse.Namespace) -> int:
    if args.around:
        from perf_sdk.cli._around import run_around

        return run_around(args)
    definition = resolve_definition(args.definition)
    report = kpis(
        service=args.service,
        endpoint=args.endpoint,
        read_endpoint=args.read_endpoint,
        token=args.token,
        path=args.file,
        period=args.period,
        start=args.start,
        end=args.end,
        definition=definition,
        with_marks=True,
    )
    if args.format == "html":
        from perf_sdk._dashboard import dashboard_html, render_dashboard

        _note_data(report)
        if args.output:
            render_dashboard(report, args.output)
        else:
            sys.stdout.write(dashboard_html(report))
        return 0

    if args.format == "json":
        text = report.to_json() + "\n"
        _note_data(report)
    elif args.format == "csv":
        text = report.to_csv()
        _note_data(report)
    elif args.output:
        text = format_table(report)
    else:
        print_table(report)
        return 0
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _title(report: KpiReport) -> str:
    name = report.title or report.service
    who = f"KPIs for {name}" if name else "KPIs"
    if report.organisation:
        who += f" ({report.organisation})"
    if not report.periods or report.start is None or report.end is None:
        return f"{who}: no data in the period asked for"
    return f"{who}, {_ADJECTIVES[report.kind]}, {report.start.isoformat()} to {report.end.isoformat()}"


_MARKS = {"met": "met", "missed": "MISSED", "unknown": "unknown"}


def _label(p: PeriodKpis) -> str:
    return f"{p.label} (partial)" if p.partial else p.label


def _cells(p: PeriodKpis, *, short: bool = False) -> list[tuple[str, str, str]]:
    """(value, arithmetic, change) for each of the four KPIs; a flagged value reads ``not shown*``."""
    out = []
    for key in KPI_KEYS:
        kpi = p.kpi(key)
        change = format_change(key, p.change(key))
        if short:
            change = change.replace("percentage points", "pts").replace("percentage point", "pt")
            change = change.replace("up ", "▲ ").replace("down ", "▼ ")
        value = "not shown*" if kpi.flag else format_kpi(key, kpi)
        target = p.targets.get(key)
        if target is not None:
            value = f"{value} [{_MARKS[target.status]}]"
        out.append((value, format_fraction(key, kpi), change))
    return out


def _notes(report: KpiReport) -> list[str]:
    """Below the table: targets, other KPIs, flags and the partial period, in words."""
    lines: list[str] = []
    if report.definition is not None:
        targets = [
            f"  {KPI_NAMES[k]}: {t.describe()}" + (f" ({t.target.period}s)" if t.target.period else "")
            for k in KPI_KEYS
            if (t := next((p.targets[k] for p in report.periods if k in p.targets), None))
        ]
        if targets:
            lines += ["", "Targets ([met] / [MISSED] / [unknown] beside each figure):", *targets]
        if report.definition.kpis:
            lines += ["", "Other KPIs:"]
            for p in report.periods:
                for o in p.other:
                    mark = f" [{_MARKS[o.target.status]}, {o.target.describe()}]" if o.target else ""
                    fraction = f" ({format_fraction('', o.kpi)})" if o.unit == "percent" else ""
                    lines.append(f"  {_label(p)}  {o.definition.name}: {o.formatted()}{fraction}{mark}")
            for kpi in report.definition.kpis:
                lines.append(f"  {kpi.name}: {kpi.definition} Why: {kpi.why} How: {kpi.how()}.")
    marked = [(p, m) for p in report.periods for m in report.marks_in(p)]
    if marked:
        lines += ["", "Changes marked (perf-sdk kpis --around LABEL compares before and after):"]
        lines += [f"  {_label(p)}: {m.label} ({m.at.isoformat(timespec='minutes')})" for p, m in marked]
    flagged = [(p, key, reason) for p in report.periods for key, reason in p.flags.items()]
    if flagged:
        lines += ["", "* Not shown: figures that cannot be right:"]
        lines += [f"  {_label(p)} {_flag_name(key)}: {reason}" for p, key, reason in flagged]
    if any(p.partial for p in report.periods):
        lines += ["", "(partial): the period is not over yet; its figures will still change."]
    if report.data_notes:
        lines += ["", "Data notes (records outside the vocabulary; fix them at the source):"]
        lines += [f"  {note}" for note in report.data_notes]
    return lines


def _note_data(report: KpiReport) -> None:
    """Where the output has no room for them (JSON, CSV, HTML, a file), the data notes go to standard error."""
    for note in report.data_notes:
        print(f"perf-sdk: note: {note}", file=sys.stderr)


def _flag_name(key: str) -> str:
    """``completion_rate`` -> ``Completion rate``; ``phone.completion_rate`` -> ``Completion rate (phone)``."""
    channel, _, kpi = key.rpartition(".")
    name = KPI_NAMES.get(kpi, kpi)
    return f"{name} ({channel.replace('_', ' ')})" if channel else name


def format_table(report: KpiReport) -> str:
    """The report as plain text columns, for pipes, files and logs."""
    header = ["Period", *(KPI_NAMES[k] for k in KPI_KEYS)]
    rows = [[_label(p), *(f"{v} ({f})" for v, f, _ in _cells(p))] for p in report.periods]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [_title(report), ""]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    lines += _notes(report)
    return "\n".join(lines) + "\n"


def print_table(report: KpiReport, file: TextIO | None = None, *, rich: bool | None = None) -> None:
    """Print the KPI table: a Rich table on a terminal, plain text when piped.

    The four KPI names are printed whole ("Completion rate", "User
    satisfaction", "Cost per transaction", "Digital take-up"): the demo's
    readers, and scripts that grep its output, look for them.
    """
    out = file or sys.stdout
    if rich is None:
        rich = out.isatty()
    if not rich:
        out.write(format_table(report))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=_title(report), title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    table.add_column("Period", no_wrap=True, min_width=7)
    widths = [7]
    rows = [_cells(p, short=True) for p in report.periods]
    for i, key in enumerate(KPI_KEYS):
        width = max([len(KPI_NAMES[key]), *(len(part) for row in rows for part in row[i])])
        widths.append(width)
        table.add_column(KPI_NAMES[key], min_width=width, no_wrap=True, justify="right")
    for p, row in zip(report.periods, rows, strict=True):
        texts = [f"[bold]{v}[/bold]\n[dim]{f}[/dim]\n{_arrow(c)}" for v, f, c in row]
        table.add_row(_label(p), *texts, end_section=True)
    console = Console(file=out)
    # Never squeeze a column below its content: a narrow terminal wraps lines, the figures stay whole.
    needed = sum(widths) + 3 * len(widths) + 2
    if console.width < needed:
        console = Console(file=out, width=needed)
    console.print(table)
    notes = _notes(report)
    if notes:
        console.print("\n".join(notes[1:]), markup=False, highlight=False)


def _arrow(change: str) -> str:
    if change.startswith("▲"):
        return f"[green]▲[/green]{change[1:]}"
    if change.startswith("▼"):
        return f"[red]▼[/red]{change[1:]}"
    return f"[dim]{change}[/dim]"
