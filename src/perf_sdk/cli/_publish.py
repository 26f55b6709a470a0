"""``perf-sdk publish``: the performance site and data files a service must publish."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from perf_sdk._errors import ConfigurationError, TransportError, ValidationError
from perf_sdk.cli._kpis import _date

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "publish",
        help="write the performance site and data files for data.gov.uk",
        description=(
            "Write a static site into --out: the services list, each service's performance page, its KPIs per "
            "period as CSV and JSON with their Table Schema, a CKAN dataset payload for data.gov.uk and a "
            "Frictionless data package. Reads the platform's read API (every service it lists, or --service), "
            "or local records files with --file. The same data gives the same bytes."
        ),
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the site into")
    p.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="S",
        help="a service (data group) to publish; repeat for more (default: every service the platform lists)",
    )
    p.add_argument("--base-url", metavar="URL", help="where the site will be served, for absolute links in metadata")
    p.add_argument(
        "--published-at",
        metavar="ISO",
        help="publication time, e.g. 2026-04-02T09:30:00Z (default: the end of the last month holding data)",
    )
    p.add_argument(
        "--period",
        choices=("month", "quarter", "year", "financial-year"),
        default="quarter",
        help="reporting period (default: quarter)",
    )
    p.add_argument("--from", dest="start", type=_date, metavar="DATE", help="first day, YYYY-MM-DD (default: 5 years)")
    p.add_argument("--to", dest="end", type=_date, metavar="DATE", help="last day, YYYY-MM-DD (inclusive)")
    p.add_argument("--endpoint", help="the platform's base URL (PERF_SDK_ENDPOINT)")
    p.add_argument("--read-endpoint", help="the read API's base URL if apart (PERF_SDK_READ_ENDPOINT)")
    p.add_argument("--token", help="bearer token, if the data sets are not published (PERF_SDK_TOKEN)")
    p.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="[SERVICE=]PATH",
        help="read a service's records from a CSV/JSONL file instead; SERVICE= may be left out with one --service",
    )
    p.add_argument("--service-title", metavar="TITLE", help="the service's name, with a single service")
    p.add_argument("--organisation", metavar="NAME", help="the organisation running it, with a single service")
    p.add_argument("--description", metavar="TEXT", help="a sentence about the service, with a single service")
    p.add_argument(
        "--metadata",
        type=Path,
        metavar="PATH",
        help='JSON file {"<service>": {"title": ..., "organisation": ..., "description": ...}}',
    )
    p.add_argument(
        "--definition",
        type=Path,
        metavar="PATH",
        help="the service's performance definition (perf-sdk.toml): targets, other KPIs, title; one service",
    )
    p.add_argument("--secret", help=argparse.SUPPRESS)
    p.add_argument("--spool-dir", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _files(args: argparse.Namespace) -> dict[str, Path] | None:
    if not args.file:
        return None
    out: dict[str, Path] = {}
    for item in args.file:
        name, sep, path = str(item).partition("=")
        if not sep:
            if len(args.service) != 1:
                raise ConfigurationError(
                    f"--file {item}: name the service (--file SERVICE=PATH) or give exactly one --service"
                )
            name, path = args.service[0], item
        out[name] = Path(path)
    return out


def _metadata(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"--metadata {path}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, (dict, str)) for v in data.values()):
        raise ConfigurationError(f'--metadata {path}: expected {{"<service>": {{"title": ..., ...}}}}')
    return data


def run(args: argparse.Namespace) -> int:
    """0 when every service was published, 1 when some were left out (each named on stderr), 2 when none was."""
    from perf_sdk._publish import publish

    # the services left out are reported below, once: not again by logging's last-resort handler
    logging.getLogger("perf_sdk.publish").addHandler(logging.NullHandler())
    try:
        files = _files(args)
        result = publish(
            args.out,
            service=args.service or None,
            endpoint=args.endpoint,
            read_endpoint=args.read_endpoint,
            token=args.token,
            files=files,
            base_url=args.base_url,
            published_at=args.published_at,
            period=args.period,
            start=args.start,
            end=args.end,
            service_title=args.service_title,
            organisation=args.organisation,
            description=args.description,
            metadata=_metadata(args.metadata),
            definition=args.definition,
        )
    except ConfigurationError as exc:
        print(f"perf-sdk: configuration error: {exc.cli_message}", file=sys.stderr)
        return 2
    except TransportError as exc:
        print(f"perf-sdk: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"perf-sdk: cannot write the site to --out {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        flag = {"published_at": "--published-at", "base_url": "--base-url", "service": "--service"}.get(
            exc.field, exc.field
        )
        print(f"perf-sdk: invalid {flag} {exc.value!r}: {exc.rule}", file=sys.stderr)
        return 2
    print(
        f"Published {len(result.services)} service(s), {len(result.files)} files, to {result.out} "
        f"(compared period {result.period}, published at {result.published_at.isoformat()})"
    )
    for slug, why in result.failed.items():
        print(f"perf-sdk: service {slug!r} left out of this publication: {why}", file=sys.stderr)
    if result.failed:
        print(
            f"perf-sdk: finished with problems: {len(result.failed)} service(s) left out; "
            "their earlier files in --out are unchanged",
            file=sys.stderr,
        )
        return 1
    return 0
