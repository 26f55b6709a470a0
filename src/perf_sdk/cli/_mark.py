"""``perf-sdk mark LABEL``: record a change to the service (a release, a new form, a policy change).

The marker goes through a :class:`~perf_sdk.Tracker` like any record (its own
``marks`` data set, the durable spool, exactly-once delivery), so a deploy
pipeline can run ``perf-sdk mark "release 1.4"`` as its last step and
``perf-sdk kpis --around "release 1.4"`` weeks later. Exit 0 when the platform
confirmed it, 1 when it is still waiting in the spool after ``--wait`` seconds
(the next tracker on the same spool delivers it), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from perf_sdk._errors import ConfigurationError, ValidationError

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "mark",
        help="record a change marker (a release, a policy change) to compare KPIs around",
        description=(
            "Record a change to the service in its 'marks' data set. perf-sdk kpis --around LABEL then compares "
            "each KPI over equal windows before and after it."
        ),
    )
    p.add_argument("label", metavar="LABEL", help='what changed, e.g. "release 1.4" (at most 200 characters)')
    p.add_argument("--at", type=_moment, metavar="ISO", help="when it changed (default now), e.g. 2026-03-02T09:00:00Z")
    p.add_argument("--description", help="a sentence on the change, shown beside the comparison")
    p.add_argument("--service", help="the service's data group (PERF_SDK_SERVICE)")
    p.add_argument("--wait", type=float, default=30.0, metavar="SECONDS", help="wait this long for delivery (30)")
    p.add_argument("--endpoint", help="the platform's write API base URL (PERF_SDK_ENDPOINT)")
    p.add_argument("--read-endpoint", help=argparse.SUPPRESS)
    p.add_argument("--token", help="bearer token (PERF_SDK_TOKEN)")
    p.add_argument("--secret", help=argparse.SUPPRESS)
    p.add_argument("--spool-dir", type=Path, help="durable outbox (PERF_SDK_SPOOL_DIR)")
    p.set_defaults(func=run)


def _moment(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time, e.g. 2026-03-02T09:00:00Z") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no zone: add Z (UTC) or +01:00, e.g. {text}Z")
    return at.astimezone(timezone.utc)


def run(args: argparse.Namespace) -> int:
    from perf_sdk._tracker import Tracker

    try:
        tracker = Tracker(
            service=args.service,
            endpoint=args.endpoint,
            token=args.token,
            secret=args.secret,
            spool_dir=args.spool_dir,
            strict=True,
        )
    except ConfigurationError as exc:
        print(f"perf-sdk: configuration error: {exc.cli_message}", file=sys.stderr)
        return 2
    if not tracker.settings.enabled:
        tracker.close(timeout=1.0)
        print(
            f"perf-sdk: configuration error: the tracker is switched off ({tracker.settings.disabled_reason}); "
            "pass --endpoint or set PERF_SDK_ENDPOINT",
            file=sys.stderr,
        )
        return 2
    try:
        tracker.mark(args.label, at=args.at, description=args.description)
    except ValidationError as exc:
        tracker.close(timeout=1.0)
        print(f"perf-sdk: invalid input: {exc}", file=sys.stderr)
        return 2
    result = tracker.close(timeout=args.wait)
    if result:
        print(f"marked {args.label!r} for {tracker.service}")
        return 0
    print(
        f"perf-sdk: {args.label!r} is not confirmed by the platform yet; it waits in the spool "
        f"({tracker.settings.spool_dir}) and the next tracker on that spool delivers it",
        file=sys.stderr,
    )
    return 1
