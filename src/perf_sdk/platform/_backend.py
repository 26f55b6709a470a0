"""What the platform's routes need from storage: the seam for a second backend.

The routes (``_app.py``) speak only to this protocol; :class:`~perf_sdk.platform._store.Store`
(SQLite) implements it, and a PostgreSQL store would implement the same
methods. What a backend must guarantee, beyond the signatures:

* ``write`` is one transaction: every record of the batch or none; a record
  whose ``_id`` exists replaces it (upsert), also within one batch, and the
  data set's last write time becomes ``now_us``.
* ``read`` answers exactly the query it is given (the routes do backdrop's
  shifting of relative queries with :func:`~perf_sdk.platform._query.shift_to_data`,
  and the rendering); past ``limits`` it raises
  :class:`~perf_sdk.platform._query.QueryError` before building the answer.
* Every method may be called from several threads at once.

Record validation (:func:`~perf_sdk.platform._store.prepare`) and the query
language (``_query.py``: parsing, shaping) are shared, not per backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from perf_sdk._errors import ConfigurationError
from perf_sdk.platform._query import ReadLimits, ReadQuery
from perf_sdk.platform._store import Prepared, Store

__all__ = ["Backend", "open_backend"]


class Backend(Protocol):
    """The storage the platform's routes use (see the module docstring)."""

    def ping(self) -> bool:
        """Whether the database answers; quick, and never queued behind a long read."""
        ...

    def create(self, group: str, type_: str) -> int:
        """Make sure the data set exists (empty if new)."""
        ...

    def write(self, group: str, type_: str, records: Sequence[Prepared], *, now_us: int | None = None) -> None:
        """Store a validated batch in one transaction, creating the data set."""
        ...

    def empty(self, group: str, type_: str, *, now_us: int | None = None) -> None:
        """Delete every record of the data set; the data set stays.

        ``now_us`` is kept as its last change, as a write's is: other processes on
        the same database (another worker's performance site) see it changed.
        """
        ...

    def delete(self, group: str, type_: str) -> bool:
        """Remove the data set; ``False`` if there was none."""
        ...

    def read(self, group: str, type_: str, query: ReadQuery, limits: ReadLimits) -> list[dict[str, Any]] | None:
        """The ``data`` of a read; ``None`` when the data set does not exist."""
        ...

    def last_updated(self) -> dict[tuple[str, str], int | None]:
        """Every data set and its last write, microseconds since the epoch."""
        ...

    def records(self, group: str, type_: str) -> list[dict[str, Any]]:
        """Every record of the data set (tests and ``LocalPlatform.records``)."""
        ...

    def count(self, group: str, type_: str) -> int:
        """How many records the data set holds."""
        ...

    def close(self) -> None:
        """Release every connection."""
        ...


def open_backend(db: str | Path) -> Backend:
    """The backend ``db`` names: a ``postgresql://`` URL (the ``postgres`` extra), else a SQLite file or ``:memory:``.

    PostgreSQL's module is imported only for a URL, so SQLite users need no driver.
    Another ``scheme://`` is refused rather than taken for a file name.
    """
    if isinstance(db, str) and "://" in db:
        scheme = db.split("://", 1)[0].lower()
        if scheme not in ("postgresql", "postgres"):
            raise ConfigurationError(
                f"--db: {scheme}:// is not a database perf-sdk serves from: give a postgresql:// URL or a SQLite file"
            )
        from perf_sdk.platform._postgres import PostgresStore

        return PostgresStore(db)
    return Store(db)
