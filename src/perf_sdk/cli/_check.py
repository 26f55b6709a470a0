"""``perf-sdk check``: targets, drops and silence for the latest periods; an exit status to alert on.

Exit 0 all well, 1 something needs attention (a platform that cannot be read
now, down, timing out or answering 5xx, is attention too: nothing could be
checked), 2 a usage or configuration error (a bad definition, a bad
``--webhook`` URL, no endpoint or service, a token the platform refuses): the
contract cron, CI and a Kubernetes CronJob alert on. ``--webhook URL`` also
posts the findings as JSON with a plain ``text`` field (Slack-compatible) when
there are any (or always, with ``--webhook-always``); the URL and its token
are never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from perf_sdk._check import CheckReport, check, unreadable
from perf_sdk._config import env_value
from perf_sdk._errors import ConfigurationError, RetryableError, TransportError, ValidationError
from perf_sdk._webhook import post_webhook, redact_url, webhook_url_problem
from perf_sdk.cli._kpis import MAX_YEAR, MIN_YEAR, add_definition_option, resolve_definition

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "check",
        help="check targets, drops and data freshness; exit 1 when something needs attention",
        description=(
            "Evaluate the performance definition's targets and the anomaly rules (a significant drop against "
            "the trailing baseline, no records arriving, too few satisfaction answers) for the latest complete "
            "day, week, month and quarter. Exit 0 all well, 1 attention needed (the platform cannot be read "
            "counts too), 2 usage or configuration error."
        ),
    )
    p.add_argument("--service", help="the service's data group (PERF_SDK_SERVICE)")
    add_definition_option(p)
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text (default) or json (findings, every comparison with its interval)",
    )
    p.add_argument("--webhook", metavar="URL", help="POST the findings here as JSON with a 'text' field")
    p.add_argument("--webhook-always", action="store_true", help="post even when all is well (a heartbeat)")
    p.add_argument("--at", type=_moment, metavar="ISO", help="check as of this time (default now), e.g. for a replay")
    p.add_argument("--endpoint", help="the platform's base URL (PERF_SDK_ENDPOINT)")
    p.add_argument("--read-endpoint", help="the read API's base URL if apart (PERF_SDK_READ_ENDPOINT)")
    p.add_argument("--token", help="bearer token, if the data sets are not published (PERF_SDK_TOKEN)")
    p.add_argument("--spool-dir", help="also check this SDK spool's oldest waiting record and dead letters")
    p.add_argument("--file", type=Path, metavar="PATH", help="read records from a CSV/JSONL file instead")
    p.add_argument("--secret", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _moment(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time, e.g. 2026-03-16T09:00:00Z") from None
    if not MIN_YEAR <= at.year <= MAX_YEAR:  # baselines reach back years; near year 1 or 9999 they overflow
        raise argparse.ArgumentTypeError(f"{text!r}: a year from {MIN_YEAR} to {MAX_YEAR}")
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def run(args: argparse.Namespace) -> int:
    url = args.webhook or env_value("webhook_url")
    if url:  # refused before anything is read, so a typo never surfaces as a failed alert hours later
        problem = webhook_url_problem(url)
        if problem:
            name = "--webhook" if args.webhook else "PERF_SDK_WEBHOOK_URL"
            print(f"perf-sdk: usage error: {name}: the URL {problem}", file=sys.stderr)
            return 2
    if args.spool_dir is not None and not Path(args.spool_dir).is_dir():
        # A typo checked nothing and said all was well (exit 0).
        print(f"perf-sdk: usage error: --spool-dir {args.spool_dir!r} is not a directory", file=sys.stderr)
        return 2
    definition = None
    try:
        definition = resolve_definition(args.definition)
        report = check(
            definition=definition,
            service=args.service,
            endpoint=args.endpoint,
            read_endpoint=args.read_endpoint,
            token=args.token,
            spool_dir=Path(args.spool_dir) if args.spool_dir is not None else None,
            path=args.file,
            now=args.at,
        )
    except ConfigurationError as exc:
        print(f"perf-sdk: configuration error: {exc.cli_message}", file=sys.stderr)
        return 2
    except RetryableError as exc:  # down, timing out, 5xx: attention (exit 1), and the webhook is told
        print(f"perf-sdk: the platform cannot be read: {exc}", file=sys.stderr)
        service = args.service or env_value("service") or (definition.service if definition else None)
        report = unreadable(service, args.at or datetime.now(timezone.utc), exc)
    except TransportError as exc:  # a refusal (401, 403, 400) or an answer not in backdrop's shape
        print(f"perf-sdk: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"perf-sdk: invalid input: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(report.to_text())
    if url and (not report.ok or args.webhook_always):
        status = _post(url, report)
        if status is not None:
            return status
    return report.exit_status


def _post(url: str, report: CheckReport) -> int | None:
    """Post the report; a webhook that fails is itself attention needed (exit 1), said on standard error."""
    # Slack reads <!channel> and <https://...|text> in "text": a record's value quoted there must stay text.
    text = report.to_text().strip().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    payload = {"text": text, "perf_sdk": report.to_dict()}
    try:
        post_webhook(url, payload, token=env_value("webhook_token"))
    except TransportError as exc:
        print(f"perf-sdk: the alert was not delivered: {exc}", file=sys.stderr)
        return 1
    print(f"perf-sdk: alert posted to {redact_url(url)}", file=sys.stderr)
    return None
