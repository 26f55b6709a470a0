"""A real PostgreSQL server for the tests, started once per test session (no Docker).

Debian's ``postgresql`` package provides ``initdb``, ``pg_ctl`` and ``postgres``
(``/usr/lib/postgresql/<version>/bin``). The server runs under a temporary
directory on a free port, listening on a unix socket in that directory only,
with trust authentication for its one user, and durability off (``fsync``,
``synchronous_commit``): the tests check answers, not crash safety. PostgreSQL
refuses to run as root, so as root it runs as the ``postgres`` system user the
package creates.

Without PostgreSQL the tests that need it are skipped, saying how to enable
them; where ``CI`` is set they fail instead: CI never skips them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = "PostgreSQL is not installed: apt-get install postgresql (or put initdb and pg_ctl on PATH)"
TABLES = ("records", "rollup", "rollup_day", "wide_fields", "datasets")


def _bin_dir() -> Path | None:
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unavailable(reason: str, *, module: bool = False) -> None:
    """Skip (a developer's machine) or fail (CI) a test, or a whole ``module``, that needs PostgreSQL."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the PostgreSQL tests)", pytrace=False)
    pytest.skip(reason, allow_module_level=module)


PSYCOPG_HINT = "psycopg is not installed: pip install -e '.[dev,postgres]'"


def require_psycopg() -> None:
    """At the top of a test module that imports the PostgreSQL store: skip it (or fail, in CI) without psycopg."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        unavailable(PSYCOPG_HINT, module=True)


class PostgresServer:
    """One ``postgres`` process under a temporary directory; ``url()`` names a database on it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.tmp = Path(tempfile.mkdtemp(prefix="perf-sdk-pg-"))
        self.data = self.tmp / "data"
        self.port = _free_port()
        self.user = "postgres"
        self._databases: set[str] = set()
        self._as: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.tmp, account.pw_uid, account.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")

    def start(self, *, durable: bool = False) -> None:
        """``initdb`` and start; ``durable`` keeps fsync and synchronous commits on (benchmarks)."""
        self._run(
            str(self.bin_dir / "initdb"),
            "-D", str(self.data),
            "-U", self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        options = f"-p {self.port} -k {self.tmp} -c listen_addresses='' -c max_connections=200 "
        if durable:
            options += "-c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=15min"
        else:
            options += "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=64MB"
        self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.tmp / "log"), "-w", "-t", "60", "start"
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.tmp}&port={self.port}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def database(self, name: str) -> str:
        """The URL of database ``name``, created (empty) the first time it is asked for."""
        if name not in self._databases:
            self.create_database(name)
            self._databases.add(name)
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PostgresServer | str]:
    """A started server, or the reason there is none (to skip or fail with)."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        yield INSTALL_HINT
        return
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        yield PSYCOPG_HINT
        return
    try:
        server = PostgresServer(bin_dir)
    except KeyError:
        yield "PostgreSQL refuses to run as root, and there is no postgres user to run it as: apt-get install postgresql"
        return
    try:
        server.start(durable=durable)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        server.stop()
        yield f"PostgreSQL did not start: {exc}"
        return
    try:
        yield server
    finally:
        server.stop()


def clear(url: str) -> None:
    """Empty every platform table of the database (between tests: faster than a new database)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('records')").fetchone()
        if exists is not None and exists[0] is not None:
            conn.execute(f"TRUNCATE {', '.join(TABLES)}")


@pytest.fixture(scope="session")
def postgres_session() -> Iterator[PostgresServer | str]:
    """One PostgreSQL server for the whole test session (or why there is none)."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_session: PostgresServer | str) -> str:
    """The URL of an empty, migrated platform database on the session's server."""
    if isinstance(postgres_session, str):
        unavailable(postgres_session)
    assert isinstance(postgres_session, PostgresServer)
    url = postgres_session.database("perf_sdk_tests")
    clear(url)
    return url
