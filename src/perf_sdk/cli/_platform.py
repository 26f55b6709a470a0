"""``perf-sdk platform migrate``: bring a platform database's schema up to date, apart from serving.

``perf-sdk serve`` applies migrations when it starts, which suits one process.
An operations team that deploys several workers (or hosts) usually migrates
once, as a release step, before the new version starts: this command is that
step. It is safe beside running servers and other migrators (an advisory lock
serialises them; each migration is applied once, in one transaction).
"""

from __future__ import annotations

import argparse
from typing import Any

from perf_sdk._config import env_value
from perf_sdk._errors import ConfigurationError

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "platform",
        help="operate the platform's database (migrate)",
        description="Operate the Performance Platform's database.",
    )
    sub = p.add_subparsers(dest="platform_command", metavar="COMMAND")
    m = sub.add_parser(
        "migrate",
        help="apply the schema migrations a PostgreSQL platform database lacks",
        description=(
            "Apply, in order and once each, the schema migrations the database lacks (recorded in its "
            "schema_migrations table). perf-sdk serve does the same at start; run this as a release step "
            "when several workers or hosts share the database."
        ),
    )
    m.add_argument("--db", help="postgresql://user@host/db URL (default: $PERF_SDK_PLATFORM_DB)")
    m.set_defaults(func=run)
    p.set_defaults(func=_usage(p))


def _usage(parser: argparse.ArgumentParser) -> Any:
    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def run(args: argparse.Namespace) -> int:
    db = args.db or env_value("platform_db")
    if not db:
        raise ConfigurationError("--db is required (a postgresql:// URL), or set PERF_SDK_PLATFORM_DB")
    from perf_sdk.platform import _postgres  # needs the platform and postgres extras

    if not _postgres.is_postgres_url(db):
        raise ConfigurationError(
            "--db must be a postgresql:// URL: a SQLite file brings its own schema up to date when it is opened"
        )
    import psycopg

    shown = _postgres.redact(db)
    try:
        with psycopg.connect(db, autocommit=True, connect_timeout=10) as conn:
            applied = _postgres.migrate(conn)
    except psycopg.Error as exc:
        raise ConfigurationError(f"--db: cannot migrate {shown}: {_postgres.first_line(exc)}") from None
    latest = _postgres.MIGRATIONS[-1][0]
    names = {version: name for version, name, _ in _postgres.MIGRATIONS}
    for version in applied:
        print(f"perf-sdk: applied migration {version}: {names[version]}")
    print(f"perf-sdk: {shown} is at schema version {latest}" + ("" if applied else " (nothing to do)"))
    return 0
