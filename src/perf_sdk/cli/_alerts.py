"""``perf-sdk alerts prometheus``: alerting rules for the SDK's OpenTelemetry metrics.

Writes a Prometheus rule file (standard output or ``--output``) that
``promtool check rules`` accepts; see :mod:`perf_sdk._alerts` for the rules and
the metric names they expect.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perf_sdk._alerts import prometheus_rules, rules_yaml, spool_age_seconds
from perf_sdk._errors import ConfigurationError
from perf_sdk.cli._kpis import add_definition_option, resolve_definition

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("alerts", help="write alerting rules for the SDK's metrics")
    sub = parser.add_subparsers(dest="alerts_command", metavar="SYSTEM", required=True)
    p = sub.add_parser(
        "prometheus",
        help="Prometheus alerting rules (promtool check rules)",
        description=(
            "Write Prometheus alerting rules for the OpenTelemetry metrics perf_sdk exports: spool backlog, "
            "delivery failing, dead letters, refused records, journeys stopping, and (with a definition's "
            "completion-rate target and kpi_metrics=True) the completion rate below target."
        ),
    )
    p.add_argument("--output", type=Path, metavar="PATH", help="write the rule file here (default: standard output)")
    p.add_argument(
        "--spool-age-minutes",
        type=_positive,
        default=15.0,
        metavar="MINUTES",
        help="alert when the oldest waiting record is older than this (default 15)",
    )
    p.add_argument(
        "--selector",
        default="",
        metavar="MATCHERS",
        help='label matchers added to every series, e.g. service_name="apply-for-a-licence"',
    )
    p.add_argument(
        "--by",
        default="job,instance",
        metavar="LABELS",
        help="labels each alert is grouped by, comma-separated (default job,instance)",
    )
    add_definition_option(p)
    p.set_defaults(func=run)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes") from None
    try:
        spool_age_seconds(value)  # nan, inf, 1e999 and <= 0 would write a rule that never (or always) fires
    except ConfigurationError:
        raise argparse.ArgumentTypeError(f"{text!r}: a finite number of minutes above 0, e.g. 15") from None
    return value


def run(args: argparse.Namespace) -> int:
    by = [label.strip() for label in args.by.split(",") if label.strip()]
    # prometheus_rules refuses a --by label that is not a label name and a --selector that is not label
    # matchers (ConfigurationError, which main() prints naming the flag, exit 2).
    text = rules_yaml(
        prometheus_rules(
            spool_age_minutes=args.spool_age_minutes,
            by=by,
            selector=args.selector,
            definition=resolve_definition(args.definition),
        )
    )
    if args.output:
        if args.output.is_dir():
            raise ConfigurationError(f"--output {str(args.output)!r} is a directory: give the rule file's path")
        try:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"--output {str(args.output)!r}: cannot write the rule file there ({exc.strerror or exc})"
            ) from None
    else:
        sys.stdout.write(text)
    return 0
