"""``perf-sdk kpis --around MARK``: each KPI before and after a change marker (see :mod:`perf_sdk._around`)."""

from __future__ import annotations

import argparse
import io
import json
import sys

from perf_sdk import _csv
from perf_sdk._around import kpis_around

__all__ = ["run_around"]

_CSV_FIELDS = (
    "kpi",
    "before_value",
    "before_numerator",
    "before_denominator",
    "after_value",
    "after_numerator",
    "after_denominator",
    "change",
    "low",
    "high",
    "significant",
    "flag",
)


def run_around(args: argparse.Namespace) -> int:
    if args.format == "html":
        print("perf-sdk: --around prints table, csv or json (the dashboard draws marks itself)", file=sys.stderr)
        return 2
    if args.start or args.end:
        print("perf-sdk: --around sets its own windows; leave out --from / --to (use --window DAYS)", file=sys.stderr)
        return 2
    report = kpis_around(
        args.around,
        service=args.service,
        path=args.file,
        endpoint=args.endpoint,
        read_endpoint=args.read_endpoint,
        token=args.token,
        window=args.window,
    )
    if args.format == "json":
        text = json.dumps(report.to_dict(), indent=2) + "\n"
    elif args.format == "csv":
        out = io.StringIO()
        writer = _csv.DictWriter(out, fieldnames=_CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(report.to_csv_rows())
        text = out.getvalue()
    else:
        text = report.to_text()
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
