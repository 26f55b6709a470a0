"""The durable outbox: accepted records live here until the platform has them.

Layout of a ``spool_dir``: each process that records owns one SQLite file
(``<host>-<pid>-<random>.spool``) and holds an exclusive ``flock`` on its
``.lock`` twin for as long as it lives. A lock that can be taken therefore means
a dead owner (``kill -9`` included): any live tracker on the same directory
*adopts* that file, copying its rows into its own spool a bounded chunk per
transaction (the writer commits in between) and then deleting it. A crash
half-way through adoption leaves both copies; sending both is harmless because
the platform upserts by ``_id``.

Rows are *segments*: the records of one data set accepted in one group commit,
as the JSON array the platform takes. One SQLite row per commit instead of per
record keeps the spool's cost per record well under a microsecond.

Durability: WAL journal with ``synchronous=FULL``, so a committed segment
survives a process crash and, as far as the disk honours fsync, power loss.

The directory is a trust boundary. Whatever a spool file holds is sent with the
service's token, so a file another local user could plant would be forged data
under the service's name. :func:`ensure_spool_dir` therefore refuses a
directory that is not owned by this process's user or that group or others can
write (and creates its own owner-only, whatever the umask). Inside it, a file is
used only after opening it without following symbolic links (``O_NOFOLLOW``)
and checking the open file (``fstat``): a regular file, owned by this user, with
one link. Lock files get the same treatment, so a planted ``.lock`` symlink can
never make the SDK create the link's target. A file that fails is reported
(logged once, listed in :attr:`Spool.refused`) and left untouched.

A full disk: SQLite needs free space even to *delete* (the WAL grows first),
so a spool that filled its disk could never drain. Each spool therefore keeps a
small ballast file (``.reserve``); the first time the disk refuses a write the
ballast is deleted, which is enough room for deliveries to be forgotten and
the WAL checkpointed, and it is laid down again once the spool is empty. A
process that starts on a disk a predecessor filled cannot create a spool of its
own: it then *takes over* an orphan spool in place (locks it and uses it as its
own, spending that file's ballast to open it if need be), so what is on the disk
is delivered and deliveries make room. A failed open leaves no file and no file
descriptor behind.

A file lost under a running process (deleted, replaced, truncated or
overwritten) is detected before each write: the path must still name the open
file (device and inode), the file may not have shrunk below what was committed,
and its header must be unchanged. The spool then raises :class:`SpoolLostError`
from every write method, having moved whatever is at the path aside (never
deleting anything) and read back what it could of its own records, so the
writer can continue into a fresh spool without losing them.

A segment whose stored bytes no longer read back (a bit flipped on the disk:
SQLite checks no checksum of its own, gzip's CRC is what notices) cannot be
sent, and must not hold up the records behind it: :meth:`Spool.set_aside` moves
it, raw, into the ``unreadable`` table in one transaction, where it is counted
with the dead letters and listed by ``perf-sdk spool dead`` for a person to
look at. Nothing in it is guessed at or sent.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import json
import logging
import os
import socket
import sqlite3
import stat
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

from perf_sdk._errors import ConfigurationError, PerfSdkError
from perf_sdk._gzip import gzip_member

__all__ = [
    "UNREADABLE",
    "DeadRecord",
    "Segment",
    "Spool",
    "SpoolFileStatus",
    "SpoolLostError",
    "UnreadableSegment",
    "inspect_spool_dir",
]

logger = logging.getLogger("perf_sdk")

#: 3: segment bodies may be packed (see :func:`pack`); an older perf_sdk must not read them as JSON.
#: 4: the ``unreadable`` table (segments whose stored bytes no longer read back).
SCHEMA_VERSION: Final = 4
#: Bytes of ballast each spool keeps, released when the disk fills (see the module docstring).
RESERVE_BYTES: Final = 2 * 1024 * 1024  # more than the WAL can hold un-checkpointed (~1 MB)
SUFFIX: Final = ".spool"
#: SQLite ``application_id`` of the spool files this version creates ("perf"): an overwrite shows in the header.
APPLICATION_ID: Final = 0x70657266
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
#: What SQLite writes beside a database; each must be as trustworthy as the database itself.
_SIDE_FILES: Final = ("-wal", "-shm", "-journal")
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS segments(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    n INTEGER NOT NULL,
    body BLOB NOT NULL,
    accepted_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS segments_by_dataset ON segments(dataset, seq);
CREATE INDEX IF NOT EXISTS segments_by_age ON segments(accepted_at, n);
CREATE TABLE IF NOT EXISTS dead(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    record_id TEXT,
    body BLOB NOT NULL,
    accepted_at REAL NOT NULL,
    failed_at REAL NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS unreadable(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    n INTEGER NOT NULL,
    body BLOB NOT NULL,
    accepted_at REAL NOT NULL,
    found_at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SpoolLostError(PerfSdkError):
    """The spool file was deleted, replaced, truncated or overwritten under this process.

    Raised by :meth:`Spool.append` and every other write method (and by
    :meth:`Spool.verify`) once the loss is seen, and on every call after it. The
    spool is then closed; it never writes again. What the caller can rely on:

    * ``path``: the spool file that was lost;
    * ``reason``: what was seen (deleted, replaced, truncated, overwritten, corrupt);
    * ``moved_to``: where whatever was found at ``path`` was moved for inspection
      (``None`` when nothing was there). Nothing is deleted;
    * ``salvaged``: the ``(dataset, n, body)`` segments still pending in the lost
      file that could be read back through the open connection (when the file
      was deleted or replaced, its old contents are intact behind the open
      descriptor). Append them to the new spool together with what the writer
      still holds: re-sending is harmless, the platform upserts by ``_id``.
    """

    def __init__(
        self,
        path: Path,
        reason: str,
        *,
        moved_to: Path | None = None,
        salvaged: list[tuple[str, int, bytes]] | None = None,
    ) -> None:
        self.path = path
        self.reason = reason
        self.moved_to = moved_to
        self.salvaged = list(salvaged or [])
        where = f"; what was there is kept as {moved_to.name}" if moved_to is not None else ""
        super().__init__(
            f"spool file {path.name} was lost under this process ({reason}){where}; "
            f"{sum(n for _, n, _ in self.salvaged)} pending record(s) read back; continue in a new spool"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_lost, (self.path, self.reason, self.moved_to, self.salvaged))


def _rebuild_lost(
    path: Path, reason: str, moved_to: Path | None, salvaged: list[tuple[str, int, bytes]]
) -> SpoolLostError:
    return SpoolLostError(path, reason, moved_to=moved_to, salvaged=salvaged)


class _Untrusted(Exception):
    """A file in the spool directory that must not be used (the message says why)."""


class _NoRoom(Exception):
    """The disk has no room to copy an orphan spool into this one."""


# packing -----------------------------------------------------------------------------------------
#: The first bytes of a packed body: a gzip member (a JSON body starts with ``[``).
GZIP_MAGIC: Final = b"\x1f\x8b"


def pack(body: bytes) -> bytes:
    """A JSON array's records (the text between its brackets) as one gzip member: how a segment is stored.

    Stored so, a segment takes a sixth of the disk (the spool holds six times the
    records within ``max_spool_bytes``) and of the spool's writes, and requests
    need no second compression: a request is ``[``, the segments' members joined
    by ``,`` and ``]``, each a gzip member of its own (:func:`join_packed`), which
    gzip readers (backdrop's ``GzipFile``, ours) read as one stream.
    """
    if len(body) <= 2 or body[:1] != b"[":
        return body  # nothing to gain, or not a JSON array: kept as it is, read as JSON
    return gzip_member(body[1:-1])


def unpack(stored: bytes) -> bytes:
    """A stored body as the JSON array it holds (bodies written before packing are JSON already)."""
    if stored[:2] != GZIP_MAGIC:
        return stored
    return b"[" + gzip.decompress(stored) + b"]"


def json_size(stored: bytes) -> int:
    """Bytes of the JSON array a stored body holds, without inflating it (gzip's trailer records them)."""
    if stored[:2] != GZIP_MAGIC:
        return len(stored)
    return int.from_bytes(stored[-4:], "little") + 2  # ISIZE is modulo 2**32: a segment is far smaller


def join_packed(bodies: list[bytes]) -> bytes:
    """One gzip request body from packed segments: the JSON array of all their records."""
    return _OPEN + _COMMA.join(bodies) + _CLOSE


_OPEN, _COMMA, _CLOSE = (gzip.compress(c, mtime=0) for c in (b"[", b",", b"]"))


@dataclass(frozen=True)
class Segment:
    seq: int
    dataset: str
    n: int
    #: As stored: packed (:func:`pack`) or, written before packing, the JSON array itself.
    body: bytes
    accepted_at: float

    @property
    def packed(self) -> bool:
        return self.body[:2] == GZIP_MAGIC

    def json(self) -> bytes:
        """The segment's records as a JSON array; one of :data:`UNREADABLE` when the stored bytes no longer read back.

        A packed body is checked by gzip's CRC as it is inflated; a JSON one (written
        before packing, or a replayed dead letter: one record) carries no checksum,
        so it is parsed.
        """
        if self.packed:
            return unpack(self.body)
        self.records()
        return self.body

    def json_size(self) -> int:
        return json_size(self.body)

    def records(self) -> list[dict[str, Any]]:
        """The segment's records; one of :data:`UNREADABLE` when the stored bytes no longer read back."""
        parsed = json.loads(unpack(self.body))
        records = parsed if isinstance(parsed, list) else [parsed]
        if not all(isinstance(r, dict) for r in records):
            raise ValueError("the stored segment is JSON but not an array of records")
        return records


#: What reading a damaged stored body raises: gzip's CRC or length check (``BadGzipFile`` is an
#: ``OSError``), a broken deflate stream (``zlib.error``), a cut one (``EOFError``), bytes that are
#: no longer JSON or UTF-8 (``ValueError``).
UNREADABLE: Final = (OSError, zlib.error, EOFError, ValueError)


@dataclass(frozen=True)
class DeadRecord:
    seq: int
    dataset: str
    record: dict[str, Any]
    failed_at: float
    status: int | None
    reason: str


@dataclass(frozen=True)
class UnreadableSegment:
    """A segment set aside because its stored bytes no longer read back (kept raw, never sent)."""

    seq: int
    dataset: str
    n: int
    stored_bytes: int
    accepted_at: float
    found_at: float
    reason: str


@dataclass
class SpoolFileStatus:
    """What ``perf-sdk spool status`` shows of one spool file."""

    path: Path
    alive: bool
    records: int = 0
    segments: int = 0
    bytes: int = 0
    oldest_accepted_at: float | None = None
    dead: int = 0
    #: Records in segments set aside as unreadable (see :meth:`Spool.set_aside`).
    unreadable: int = 0
    by_dataset: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        # Debian's SQLite zeroes every freed page by default, which makes forgetting a
        # delivered segment write the whole segment again (and fail on a full disk). The
        # spool holds hashed ids and counts only, so FAST (no extra I/O) is enough.
        conn.execute("PRAGMA secure_delete=FAST")
        # Keep the WAL small (checkpoint every ~1 MB, truncate it back to 1 MB): what is on
        # disk is then mostly the database, whose freed pages new records reuse.
        conn.execute("PRAGMA wal_autocheckpoint=256")
        conn.execute("PRAGMA journal_size_limit=1048576")
        conn.execute("PRAGMA busy_timeout=30000")
    except BaseException:
        conn.close()  # a failed open (a full disk) must not keep the file open
        raise
    return conn


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on ``conn``: committed when the block ends, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection, schema: str = "main") -> None:
    """Bring a spool written by an older perf_sdk up to :data:`SCHEMA_VERSION`.

    Version 1 kept one row per record (``outbox(seq, dataset, rid, body, accepted_at)``);
    its rows become one-record segments.
    """
    version = conn.execute(f"PRAGMA {schema}.user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"spool schema {version} is newer than this perf_sdk ({SCHEMA_VERSION})")
    if version == SCHEMA_VERSION:
        return
    with _immediate(conn):
        for statement in _SCHEMA.strip().split(";"):
            if statement.strip():
                conn.execute(statement.replace("IF NOT EXISTS ", f"IF NOT EXISTS {schema}.", 1))
        has_v1 = conn.execute(f"SELECT 1 FROM {schema}.sqlite_master WHERE type='table' AND name='outbox'").fetchone()
        if has_v1:
            rows = conn.execute(f"SELECT dataset, body, accepted_at FROM {schema}.outbox ORDER BY seq").fetchall()
            conn.executemany(
                f"INSERT INTO {schema}.segments(dataset, n, body, accepted_at) VALUES (?, 1, ?, ?)",
                [(ds, b"[" + _as_bytes(body) + b"]", at) for ds, body, at in rows],
            )
            conn.execute(f"DROP TABLE {schema}.outbox")
        conn.execute(f"PRAGMA {schema}.user_version={SCHEMA_VERSION}")


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


# trusting files ----------------------------------------------------------------------------------
def _check_open_file(fd: int, name: str) -> None:
    """The open file must be a regular file of this user's with one name (no planted hard link)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise _Untrusted(f"{name} is not a regular file")
    if st.st_uid != os.geteuid():
        raise _Untrusted(f"{name} belongs to uid {st.st_uid}, not to this process's user (uid {os.geteuid()})")
    if st.st_nlink != 1:
        raise _Untrusted(f"{name} has {st.st_nlink} hard links")


def _open_checked(path: Path, *, create: bool = False, exclusive: bool = False) -> int:
    """Open ``path`` read-write without following a symbolic link, and check what was opened.

    ``create`` makes the file (owner-only) if it is missing; ``exclusive`` insists on
    making it. Raises :class:`_Untrusted` for a link, a foreign or odd file.
    """
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    if create:
        flags |= os.O_CREAT | (os.O_EXCL if exclusive else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Untrusted(f"{path.name} is a symbolic link") from None
        raise
    try:
        _check_open_file(fd, path.name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_side_files(path: Path, *, owner: bool = True) -> None:
    """SQLite opens ``-wal``/``-shm``/``-journal`` by name: each present one must be trustworthy too.

    ``owner=False`` (a read-only view, perhaps by another user) checks only that none is a link.
    """
    for suffix in _SIDE_FILES:
        side = Path(str(path) + suffix)
        try:
            st = os.lstat(side)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            raise _Untrusted(f"{side.name} is not a regular file")
        if owner and (st.st_uid != os.geteuid() or st.st_nlink != 1):
            raise _Untrusted(f"{side.name} belongs to uid {st.st_uid} or has {st.st_nlink} links")


def _same_file(path: Path, fd: int) -> bool:
    """``path`` still names the file open as ``fd`` (not deleted, not replaced, not a link)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _lock(path: Path) -> int | None:
    """Take the exclusive lock on ``path``; the fd to keep, or ``None`` when held elsewhere.

    Never follows a symbolic link (a planted one must not make us create its
    target); raises :class:`_Untrusted` for a lock file that is not ours.
    """
    fd = _open_checked(path, create=True)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _unlink_quietly(path: Path | str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _remove_db_files(path: Path) -> None:
    _unlink_quietly(path.with_suffix(".reserve"))
    for suffix in ("", *_SIDE_FILES):
        _unlink_quietly(str(path) + suffix)


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


def _nearly_full(directory: Path) -> bool:
    """Less free space than one reserve: SQLite's I/O errors there mean "no room", not a bad file."""
    try:
        fs = os.statvfs(directory)
    except OSError:  # pragma: no cover - the directory was just listed
        return False
    return fs.f_bavail * fs.f_frsize < RESERVE_BYTES


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """SQLITE_CORRUPT or SQLITE_NOTADB: the file under the connection is not the spool it wrote."""
    return type(exc) is sqlite3.DatabaseError  # the subclasses are constraint, busy, full, ... errors


def _aside(path: Path) -> Path:
    """A fresh name to move ``path`` aside to: quarantine never overwrites (so never deletes) anything."""
    target = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    while any(os.path.lexists(str(target) + s) for s in ("", *_SIDE_FILES)):
        target = path.with_name(f"{path.name}.corrupt-{int(time.time())}-{os.urandom(2).hex()}")
    return target


def _move_aside(path: Path, *, apart: bool = False) -> Path | None:
    """Move ``path`` and its side files to a fresh quarantine name; where it went (None: nothing there).

    ``apart``: the side files belong to another file than the one now at ``path``
    (ours, when it was replaced): they get names SQLite will not pair with it.
    """
    target = _aside(path)
    moved = False
    for suffix in ("", *_SIDE_FILES):
        to = str(target) + (".lost" if apart and suffix else "") + suffix
        with contextlib.suppress(FileNotFoundError):
            os.rename(str(path) + suffix, to)
            moved = moved or suffix == ""
    return target if moved else None


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path`` itself (not a link's target); None when missing."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _header(fd: int) -> bytes:
    """The parts of the SQLite header that never change while we hold the file: magic and application id."""
    head = os.pread(fd, 72, 0)
    return head[:16] + head[68:72]


def ensure_spool_dir(directory: Path) -> Path:
    """Create the spool directory owner-only; refuse one that is unwritable or that others could write.

    The directory is a trust boundary: everything in it is sent with the
    service's token. One the SDK creates is made 0700 whatever the umask; an
    existing one is checked, never changed behind the operator's back.
    """
    try:
        directory.mkdir(mode=0o700, parents=True)
        created = True
    except FileExistsError:
        created = False
    except OSError as exc:
        raise ConfigurationError(f"cannot create spool_dir {directory}: {exc.strerror} (PERF_SDK_SPOOL_DIR)") from None
    if created:
        os.chmod(directory, 0o700)
    if not directory.is_dir():
        raise ConfigurationError(
            f"spool_dir {directory} is not a directory; point spool_dir (PERF_SDK_SPOOL_DIR) at one"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"spool_dir {directory} is not writable by this process: records could not be kept safe; "
            "point spool_dir (PERF_SDK_SPOOL_DIR) at a writable, persistent directory"
        )
    st = os.stat(directory)
    if st.st_uid != os.geteuid():
        raise ConfigurationError(
            f"spool_dir {directory} belongs to uid {st.st_uid}, not to this process's user (uid {os.geteuid()}): "
            "its owner could plant records that would be sent with this service's token; choose a directory "
            "this user owns (spool_dir, PERF_SDK_SPOOL_DIR)"
        )
    if st.st_mode & 0o022:
        who = " and ".join(w for bit, w in ((0o020, "group"), (0o002, "others")) if st.st_mode & bit)
        raise ConfigurationError(
            f"spool_dir {directory} is writable by {who} (mode {stat.S_IMODE(st.st_mode):o}): another local user "
            f"could plant records that would be sent with this service's token; run `chmod 700 {directory}` or "
            "choose a directory only this user can write (spool_dir, PERF_SDK_SPOOL_DIR)"
        )
    return directory


@dataclass
class _OpenFile:
    """A spool file this process has locked, verified and connected to."""

    path: Path
    lock_fd: int
    fd: int
    conn: sqlite3.Connection


def _create_own(directory: Path) -> _OpenFile:
    """A new spool file of this process's; on any failure nothing is left behind (file or descriptor)."""
    name = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
    path = directory / (name + SUFFIX)
    lock_path = path.with_suffix(".lock")
    with contextlib.ExitStack() as undo:  # unwinds in reverse: connection, file, lock
        lock_fd = _open_checked(lock_path, create=True, exclusive=True)
        undo.callback(os.close, lock_fd)
        undo.callback(_unlink_quietly, lock_path)
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fd = _open_checked(path, create=True, exclusive=True)
        undo.callback(_remove_db_files, path)
        undo.callback(os.close, fd)
        conn = _connect(path)
        undo.callback(conn.close)
        _migrate(conn)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('pid', ?)", (str(os.getpid()),))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the header (and its application id) on disk now
        if _header(fd)[16:] != APPLICATION_ID.to_bytes(4, "big"):  # the checkpoint found no room
            raise sqlite3.OperationalError("database or disk is full (the new spool's header was not written)")
        if not _same_file(path, fd):
            raise _Untrusted(f"{path.name} changed while it was being created")
        undo.pop_all()
    return _OpenFile(path, lock_fd, fd, conn)


def _open_in_place(path: Path) -> _OpenFile | None:
    """Lock and open an orphan spool as this process's own; None when its owner lives.

    Raises :class:`_Untrusted`, ``OSError`` or ``sqlite3.Error``, leaving nothing
    open and the orphan's files as they were.
    """
    lock_fd = _lock(path.with_suffix(".lock"))
    if lock_fd is None:
        return None
    try:
        return _open_locked(path, lock_fd)
    except BaseException:
        os.close(lock_fd)
        raise


def _open_locked(path: Path, lock_fd: int) -> _OpenFile:
    """Open an orphan spool whose lock we hold (the caller keeps ``lock_fd`` if this raises).

    On a full disk SQLite may need a little room to open a WAL database (its
    ``-shm`` index): the orphan's own ballast is spent for it.
    """
    with contextlib.ExitStack() as undo:
        fd = _open_checked(path)
        undo.callback(os.close, fd)
        _check_side_files(path)
        try:
            conn = _connect(path)
        except sqlite3.OperationalError as exc:
            reserve = path.with_suffix(".reserve")
            if not os.path.lexists(reserve):
                raise
            logger.warning("perf_sdk: no room to open %s (%s); spending its reserve to drain it", path.name, exc)
            _unlink_quietly(reserve)
            conn = _connect(path)
        undo.callback(conn.close)
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {ok}")
        _migrate(conn)
        if not _same_file(path, fd):
            raise _Untrusted(f"{path.name} changed while it was being opened")
        undo.pop_all()
    return _OpenFile(path, lock_fd, fd, conn)


class Spool:
    """One process's spool file. Thread-safe: every call holds a short lock, none across network I/O.

    The constructor creates a spool file of this process's own; when the disk
    is too full for that, it takes over an orphan spool in the directory in
    place (see the module docstring). It raises (leaving nothing behind) only
    when neither is possible; the tracker retries it.
    """

    def __init__(self, directory: Path, *, max_bytes: int = 1 << 30) -> None:
        self.directory = ensure_spool_dir(directory)
        self.max_bytes = max_bytes
        self._mutex = threading.Lock()
        self.bytes = 0
        self.closed = False
        #: When the disk last refused an append (monotonic); cleared by a delete that freed room.
        self.full_since: float | None = None
        #: Files this spool could not read: (path it was moved to, reason).
        self.quarantined: list[tuple[Path, str]] = []
        #: Orphans being adopted, by (device, inode): the last ``seq`` copied of each table, so that a copy
        #: interrupted (a busy file, a full disk) resumes where it stopped instead of copying rows twice.
        self._adopting: dict[tuple[int, int], dict[str, int]] = {}
        #: Files in the directory it would not trust (a link, another user's, ...): (path, reason). Left untouched.
        self.refused: list[tuple[Path, str]] = []
        self._lost: SpoolLostError | None = None
        try:
            opened = _create_own(self.directory)
        except (OSError, sqlite3.Error, _Untrusted) as exc:
            no_room = _is_disk_full(exc) or _nearly_full(self.directory)
            taken = self._take_over_orphan() if no_room else None
            if taken is None:
                if isinstance(exc, _Untrusted):  # pragma: no cover - a fresh random name is never planted
                    raise ConfigurationError(f"cannot create a spool file in {self.directory}: {exc}") from None
                raise
            opened = taken
        self._use(opened)
        self._lay_reserve()

    def _use(self, opened: _OpenFile) -> None:
        """Make ``opened`` this spool's file (at construction, or when taking over an orphan in place)."""
        self.path = opened.path
        self._lock_path = opened.path.with_suffix(".lock")
        self._lock_fd = opened.lock_fd
        self._fd = opened.fd
        self._conn = opened.conn
        self._header = _header(self._fd)
        self._wal_path = Path(str(self.path) + "-wal")
        self._wal = _identity(self._wal_path)
        #: The file never shrinks (no auto-vacuum): smaller than this, it was truncated under us.
        self._size_floor = os.fstat(self._fd).st_size
        self._reserve = self.path.with_suffix(".reserve")
        self.bytes = int(self._conn.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM segments").fetchone()[0])
        #: What :meth:`view` answers: refreshed by every change, read without the lock.
        self._view: tuple[int, float | None, int] = (0, None, 0)
        self._refresh_view()

    def __repr__(self) -> str:
        return f"Spool(path={str(self.path)!r})"

    def _take_over_orphan(self) -> _OpenFile | None:
        """The disk has no room for a new spool: use an orphan's file as this spool, in place (no copy)."""
        for path in sorted(self.directory.glob("*" + SUFFIX)):
            try:
                opened = _open_in_place(path)
            except _Untrusted as exc:
                self._refuse(path, str(exc))
                continue
            except (OSError, sqlite3.Error) as exc:
                logger.warning("perf_sdk: could not take over %s (%s)", path.name, exc)
                continue
            if opened is not None:
                logger.warning(
                    "perf_sdk: the spool's disk is full; took over %s, a spool whose process ended, as this "
                    "process's own so that its records are delivered and room is made",
                    path.name,
                )
                return opened
        return None

    def _refuse(self, path: Path, reason: str) -> None:
        """Report a file that will not be used, once per file."""
        if any(p == path for p, _ in self.refused):
            return
        self.refused.append((path, reason))
        logger.error(
            "perf_sdk: not using %s in the spool directory: %s. Another user may have planted it; "
            "inspect it and remove it (its records are not sent)",
            path.name,
            reason,
        )

    # losing the file -----------------------------------------------------------------------------
    def _check_intact(self) -> None:
        """Before a write: is the file at ``path`` still the one we committed to? (With the mutex held.)

        A closed spool answers as a closed SQLite connection does, before any
        descriptor is looked at: its numbers may name the host's own files by now,
        and an uploader still in a request when ``close()`` returned must neither
        take them for a replaced spool nor close them.
        """
        if self._lost is not None:
            raise self._lost_again()
        if self.closed:
            raise sqlite3.ProgrammingError(f"spool {self.path.name} is closed")
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            self._lose("the file was deleted", salvage=True)
        held = os.fstat(self._fd)
        if (st.st_dev, st.st_ino) != (held.st_dev, held.st_ino):
            self._lose("the file was replaced by another one", salvage=True)
        if self._wal is not None and _identity(self._wal_path) != self._wal:
            # SQLite keeps its -wal while a connection is open; without it, commits would go to a file no one sees.
            self._lose("its write-ahead log (-wal) was deleted or replaced", salvage=True)
        if held.st_size < self._size_floor:
            self._lose(f"the file was truncated to {held.st_size} bytes ({self._size_floor} were committed)")
        if _header(self._fd) != self._header:
            self._lose("the file was overwritten (its SQLite header changed)")

    def _lost_again(self) -> SpoolLostError:
        lost = self._lost
        assert lost is not None
        return SpoolLostError(lost.path, lost.reason, moved_to=lost.moved_to, salvaged=lost.salvaged)

    def _lose(self, reason: str, *, salvage: bool = False) -> NoReturn:
        """Give the file up: read back what can be trusted, close, move what is at the path aside, raise.

        ``salvage`` is for a deleted or replaced file: its old contents are intact
        behind our descriptors, so they are read back, and closing the connection
        (which checkpoints into that old file) is harmless. A truncated, overwritten
        or corrupt file is the one at the path: its connection is left open, never
        closed, so SQLite writes nothing more into it before it is moved aside.
        Nothing is deleted but this spool's own ballast and lock.
        """
        salvaged: list[tuple[str, int, bytes]] = []
        if salvage:
            with contextlib.suppress(sqlite3.Error):
                for ds, n, body in self._conn.execute("SELECT dataset, n, body FROM segments ORDER BY seq"):
                    stored = _as_bytes(body)
                    # A damaged one stays raw: append() keeps it as it is, and the next spool's uploader sets it aside.
                    with contextlib.suppress(*UNREADABLE):
                        stored = unpack(stored)  # as appended: JSON
                    salvaged.append((ds, int(n), stored))
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        else:
            _ABANDONED.append(self._conn)
        moved = _move_aside(self.path, apart=salvage)
        _unlink_quietly(self._reserve)
        if salvage:
            os.close(self._fd)
        if _same_file(self._lock_path, self._lock_fd):
            _unlink_quietly(self._lock_path)
        os.close(self._lock_fd)
        self.closed = True
        self._lost = SpoolLostError(self.path, reason, moved_to=moved, salvaged=salvaged)
        logger.error("perf_sdk: %s", self._lost)
        raise self._lost_again()

    def verify(self) -> None:
        """Raise :class:`SpoolLostError` if the file was lost under us (the writer may call it when idle)."""
        with self._mutex:
            if self.closed and self._lost is None:
                return
            self._check_intact()

    @property
    def lost(self) -> SpoolLostError | None:
        """How the file was lost, once it has been (``None`` while all is well)."""
        return self._lost

    # the ballast ---------------------------------------------------------------------------------
    def _lay_reserve(self) -> None:
        if os.path.lexists(self._reserve):
            return
        try:
            fs = os.statvfs(self.directory)
            if fs.f_bavail * fs.f_frsize < 2 * RESERVE_BYTES:
                return  # not while the disk is nearly full; next time the spool is empty
        except (OSError, AttributeError):
            pass
        try:
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, b"\0" * RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError:  # no room for it now: try again when the spool is next empty
            with contextlib.suppress(OSError):
                os.unlink(self._reserve)

    def _release_reserve(self) -> bool:
        """Free the ballast; True if there was one to free (worth retrying the write).

        This spool's own first; else that of a spool whose process ended (its
        lock can be taken): ballast exists to let records drain, and a spool
        taken over on a full disk may have had none of its own.
        """
        try:
            os.unlink(self._reserve)
        except FileNotFoundError:
            return self._release_orphan_reserve()
        logger.warning(
            "perf_sdk: the spool's disk is full; released its %d KB reserve to keep draining", RESERVE_BYTES // 1024
        )
        return True

    def _release_orphan_reserve(self) -> bool:
        for reserve in sorted(self.directory.glob("*.reserve")):
            if reserve == self._reserve or not stat.S_ISREG(os.lstat(reserve).st_mode):
                continue
            try:
                fd = _lock(reserve.with_suffix(".lock"))
            except (_Untrusted, OSError):
                continue
            if fd is None:
                continue  # its owner lives: its ballast is its own
            try:
                _unlink_quietly(reserve)
                if not os.path.lexists(reserve.with_suffix(SUFFIX)):
                    _unlink_quietly(reserve.with_suffix(".lock"))
            finally:
                os.close(fd)
            logger.warning(
                "perf_sdk: the spool's disk is full; released the reserve of %s, whose process ended, to keep draining",
                reserve.stem,
            )
            return True
        return False

    def _write(self, statement: str, rows: list[tuple[Any, ...]], *, use_reserve: bool = False) -> None:
        """One write transaction; on a full disk, a delete (``use_reserve``) may spend the ballast.

        Only deletes may: the ballast exists so the spool can drain, and an append
        that took its room would leave the spool unable to forget what it delivered.
        Checks first that the file is still ours (:class:`SpoolLostError`).
        """
        self._check_intact()
        for attempt in (1, 2, 3):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(statement, rows)
                self._conn.execute("COMMIT")
                self._size_floor = max(self._size_floor, os.fstat(self._fd).st_size)
                return
            except sqlite3.OperationalError as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                if attempt == 3 or not use_reserve or "full" not in str(exc):
                    raise
                if attempt == 1:  # first shrink the WAL back into the database's own free pages
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                elif not self._release_reserve():
                    raise
            except sqlite3.DatabaseError as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                if _is_corrupt(exc):
                    self._lose(f"SQLite reports {exc}")
                raise
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise

    def _update(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        """A small write outside a group commit (with the mutex held), checked like :meth:`_write`."""
        self._check_intact()
        try:
            self._conn.executemany(statement, rows)
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                self._lose(f"SQLite reports {exc}")
            raise

    # writing -----------------------------------------------------------------------------------
    def append(self, segments: list[tuple[str, int, bytes]], accepted_at: float) -> None:
        """Commit ``(dataset, n, json_body)`` segments in one transaction (the group commit).

        Raises :class:`SpoolLostError` (never returns normally) when the file was
        lost under this process; ``sqlite3.OperationalError`` when the disk refuses.
        """
        rows = [(ds, n, pack(body), accepted_at) for ds, n, body in segments]  # before the lock: CPU, not I/O
        with self._mutex:
            try:
                self._write("INSERT INTO segments(dataset, n, body, accepted_at) VALUES (?, ?, ?, ?)", rows)
            except sqlite3.OperationalError as exc:
                if "full" in str(exc):
                    self.full_since = time.monotonic()
                raise
            self.full_since = None
            self.bytes += sum(len(row[2]) for row in rows)
            self._refresh_view()

    def should_hold_appends(self) -> bool:
        """On a full disk, let deliveries free room before adding more (retry every 5 s regardless)."""
        return self.full_since is not None and time.monotonic() - self.full_since < 5.0

    def has_room(self, nbytes: int) -> bool:
        return self.bytes + nbytes <= self.max_bytes

    # reading -----------------------------------------------------------------------------------
    def datasets(self) -> list[str]:
        with self._mutex:
            rows = self._conn.execute("SELECT DISTINCT dataset FROM segments").fetchall()
        return [r[0] for r in rows]

    def next_batch(self, dataset: str, max_records: int, max_bytes: int) -> list[Segment]:
        """The oldest segments of ``dataset`` that fit one request (always at least one)."""
        out: list[Segment] = []
        records = size = 0
        with self._mutex:
            cursor = self._conn.execute(
                "SELECT seq, n, body, accepted_at FROM segments WHERE dataset = ? ORDER BY seq LIMIT 1000",
                (dataset,),
            )
            for seq, n, stored, accepted_at in cursor:
                body = _as_bytes(stored)
                length = json_size(body)  # max_bytes is of JSON, as the platform counts it once inflated
                if out and (records + n > max_records or size + length > max_bytes):
                    break
                out.append(Segment(seq, dataset, n, body, accepted_at))
                records += n
                size += length
            cursor.close()
        return out

    def newest_record(self, dataset: str) -> tuple[int, dict[str, Any]] | None:
        """The last record of ``dataset``'s newest segment, with that segment's ``seq`` (None if none or unreadable)."""
        with self._mutex:
            row = self._conn.execute(
                "SELECT seq, n, body, accepted_at FROM segments WHERE dataset = ? ORDER BY seq DESC LIMIT 1",
                (dataset,),
            ).fetchone()
        if row is None:
            return None
        try:
            records = Segment(row[0], dataset, row[1], _as_bytes(row[2]), row[3]).records()
        except UNREADABLE:
            return None
        return (row[0], records[-1]) if records else None

    def remove(self, segments: list[Segment]) -> None:
        """Forget segments the platform has stored (or that were dead-lettered record by record)."""
        if not segments:
            return
        with self._mutex:
            self._write("DELETE FROM segments WHERE seq = ?", [(s.seq,) for s in segments], use_reserve=True)
            self.full_since = None
            self.bytes = max(0, self.bytes - sum(len(s.body) for s in segments))
            segments_left = self._refresh_view()
            if not segments_left and not self._reserve.exists():  # nothing left: the ballast back
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._size_floor = max(self._size_floor, os.fstat(self._fd).st_size)
                self._lay_reserve()

    def replace(self, segment: Segment, records: list[dict[str, Any]]) -> None:
        """Shrink a segment to the records still owed (after part of it was delivered)."""
        body = pack(json.dumps(records, separators=(",", ":")).encode())
        with self._mutex:
            self._update("UPDATE segments SET n = ?, body = ? WHERE seq = ?", [(len(records), body, segment.seq)])
            self.bytes = max(0, self.bytes - len(segment.body) + len(body))
            self._refresh_view()

    def note_attempt(self, segments: list[Segment]) -> None:
        with self._mutex:
            self._update("UPDATE segments SET attempts = attempts + 1 WHERE seq = ?", [(s.seq,) for s in segments])

    def depth(self) -> tuple[int, int, float | None]:
        """(records pending, segments pending, oldest accepted_at)."""
        with self._mutex:
            return self._depth()

    def _depth(self) -> tuple[int, int, float | None]:
        # From the segments_by_age index alone, never the rows: each body sits before accepted_at in its row,
        # and a scan of the rows read every body's overflow pages (35-42 ms for a 62 MB spool).
        n, segs, oldest = self._conn.execute(
            "SELECT COALESCE(SUM(n), 0), COUNT(*), MIN(accepted_at) FROM segments"
        ).fetchone()
        return int(n), int(segs), oldest

    def view(self) -> tuple[int, float | None, int]:
        """(records pending, oldest accepted_at, records set aside), answered at once, for ``health()``.

        Kept by every change, with the lock held: reading it never takes the lock,
        which the writer holds through each commit's fsync, so a health check on an
        event loop never waits for a disk.
        """
        return self._view

    def _refresh_view(self) -> int:
        """Read the view :meth:`view` answers again (with the lock held); the segments pending."""
        n, segments, oldest = self._depth()
        self._view = (n, oldest, self._dead_count())
        return segments

    # dead letters ------------------------------------------------------------------------------
    def dead_letter(
        self, dataset: str, records: list[dict[str, Any]], accepted_at: float, status: int | None, reason: str
    ) -> None:
        now = time.time()
        with self._mutex:
            # Once per record: a bisect interrupted (a 401 mid-way, a stop) leaves the batch in the spool, and
            # the next pass dead-letters the same record again; the latest verdict replaces the earlier one.
            self._update(
                "DELETE FROM dead WHERE dataset = ? AND record_id = ?",
                [(dataset, str(r.get("_id"))) for r in records],
            )
            self._update(
                "INSERT INTO dead(dataset, record_id, body, accepted_at, failed_at, status, reason) VALUES (?,?,?,?,?,?,?)",
                [
                    (
                        dataset,
                        str(r.get("_id")),
                        json.dumps(r, separators=(",", ":")).encode(),
                        accepted_at,
                        now,
                        status,
                        reason,
                    )
                    for r in records
                ],
            )
            self._refresh_view()

    def dead(self, limit: int = 1000) -> list[DeadRecord]:
        with self._mutex:
            rows = self._conn.execute(
                "SELECT seq, dataset, body, failed_at, status, reason FROM dead ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            DeadRecord(seq, ds, json.loads(body), failed_at, status, reason)
            for seq, ds, body, failed_at, status, reason in rows
        ]

    def dead_count(self) -> int:
        """Records set aside for a person: dead letters, and those in unreadable segments."""
        with self._mutex:
            return self._dead_count()

    def _dead_count(self) -> int:
        return int(
            self._conn.execute(
                "SELECT (SELECT COUNT(*) FROM dead) + (SELECT COALESCE(SUM(n), 0) FROM unreadable)"
            ).fetchone()[0]
        )

    def set_aside(self, segment: Segment, reason: str) -> None:
        """Move a segment whose stored bytes no longer read back out of the outbox, raw, in one transaction.

        It is kept (``unreadable``), counted with the dead letters and listed by
        ``perf-sdk spool dead``; the records behind it go on being delivered.
        """
        with self._mutex:
            self._check_intact()
            with _immediate(self._conn):
                self._conn.execute(
                    "INSERT INTO unreadable(dataset, n, body, accepted_at, found_at, reason) "
                    "SELECT dataset, n, body, accepted_at, ?, ? FROM segments WHERE seq = ?",
                    (time.time(), reason, segment.seq),
                )
                self._conn.execute("DELETE FROM segments WHERE seq = ?", (segment.seq,))
            self.bytes = max(0, self.bytes - len(segment.body))
            self._refresh_view()

    def unreadable(self, limit: int = 1000) -> list[UnreadableSegment]:
        with self._mutex:
            rows = self._conn.execute(
                "SELECT seq, dataset, n, LENGTH(body), accepted_at, found_at, reason FROM unreadable ORDER BY seq "
                "LIMIT ?",
                (limit,),
            ).fetchall()
        return [UnreadableSegment(*row) for row in rows]

    def replay_dead(self) -> int:
        """Move every dead-lettered record back to the outbox (after the cause is fixed)."""
        with self._mutex:
            self._check_intact()
            moved = _replay_dead(self._conn)
            self._refresh_view()
            return moved

    # adoption ----------------------------------------------------------------------------------
    def adopt_orphans(self) -> int:
        """Take over the spool files of dead processes in this directory; records adopted.

        Normally an orphan's rows are copied into this spool. When the disk has no
        room for the copy and this spool is empty, the orphan becomes this spool's
        file in place instead (a process that starts on a full disk still drains it).
        """
        adopted = 0
        for path in sorted(self.directory.glob("*" + SUFFIX)):
            if path == self.path or self.closed:
                continue
            lock_path = path.with_suffix(".lock")
            try:
                fd = _lock(lock_path)
            except _Untrusted as exc:
                self._refuse(path, str(exc))
                continue
            except OSError as exc:
                logger.warning("perf_sdk: cannot lock %s (%s); will try again", lock_path.name, exc)
                continue
            if fd is None:
                continue  # its owner is alive
            kept = False
            try:
                if os.path.lexists(path):
                    try:
                        adopted += self._adopt(path)
                    except _NoRoom:
                        kept = self._move_into(path, fd)
                        adopted += self.depth()[0] if kept else 0
                if not os.path.lexists(path):
                    _unlink_quietly(lock_path)
            finally:
                if not kept:
                    os.close(fd)
        return adopted

    def _adopt(self, path: Path) -> int:
        """Copy one orphan's rows into this spool (we hold its lock); records adopted.

        Only a trusted file is opened; an unreadable one is quarantined; a busy
        file is left for the next pass; no room for the copy raises :class:`_NoRoom`.
        """
        try:
            fd = _open_checked(path)
        except _Untrusted as exc:
            self._refuse(path, str(exc))
            return 0
        identity = os.fstat(fd)
        try:
            _check_side_files(path)
            n = self._copy_in(path, fd)
        except _Untrusted as exc:
            self._refuse(path, str(exc))
            return 0
        except sqlite3.Error as exc:
            if self.closed:
                return 0  # closed half-way: the orphan stays whole, for the next tracker
            if _is_disk_full(exc) or (isinstance(exc, sqlite3.OperationalError) and _nearly_full(self.directory)):
                raise _NoRoom(str(exc)) from None
            if isinstance(exc, sqlite3.OperationalError):  # busy, locked: says nothing about the file
                logger.warning("perf_sdk: could not adopt %s yet (%s); will try again", path.name, exc)
                return 0
            self._quarantine(path, str(exc))
            return 0
        finally:
            os.close(fd)
        _remove_db_files(path)
        self._adopting.pop((identity.st_dev, identity.st_ino), None)
        if n:
            logger.info("perf_sdk: adopted %d records from %s, a spool whose process ended", n, path.name)
        return n

    def _empty(self) -> bool:
        row = self._conn.execute(
            "SELECT (SELECT COUNT(*) FROM segments) + (SELECT COUNT(*) FROM dead) + (SELECT COUNT(*) FROM unreadable)"
        ).fetchone()
        return int(row[0]) == 0

    def _move_into(self, path: Path, lock_fd: int) -> bool:
        """No room to copy the orphan at ``path``: make it this spool's file, if this one is empty.

        True when done (``lock_fd`` is then this spool's lock). A non-empty spool
        waits: its deliveries free pages the copy can reuse on a later pass.
        """
        with self._mutex:
            if self.closed or not self._empty():
                logger.warning("perf_sdk: no room to adopt %s yet; will try again once deliveries free some", path.name)
                return False
        try:
            opened = _open_locked(path, lock_fd)
        except _Untrusted as exc:
            self._refuse(path, str(exc))
            return False
        except (OSError, sqlite3.Error) as exc:
            logger.warning("perf_sdk: could not take over %s (%s); will try again", path.name, exc)
            return False
        with self._mutex:
            if self.closed or not self._empty():  # the writer appended meanwhile: keep our own file
                opened.conn.close()
                os.close(opened.fd)
                return False
            old_path, old_lock_path, old_lock_fd, old_fd, old_conn = (
                self.path,
                self._lock_path,
                self._lock_fd,
                self._fd,
                self._conn,
            )
            self._use(opened)
            self.full_since = None
        with contextlib.suppress(sqlite3.Error):
            old_conn.close()
        if _same_file(old_path, old_fd):
            _remove_db_files(old_path)
            _unlink_quietly(old_lock_path)
        os.close(old_fd)
        os.close(old_lock_fd)
        logger.warning(
            "perf_sdk: the spool's disk is full; took over %s, a spool whose process ended, in place of this "
            "process's own so that its records are delivered and room is made",
            path.name,
        )
        return True

    def _copy_in(self, path: Path, fd: int) -> int:
        probe = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        try:
            probe.execute("PRAGMA busy_timeout=30000")
            ok = probe.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {ok}")
            if not _same_file(path, fd):
                raise _Untrusted(f"{path.name} changed while it was being opened")
            _migrate(probe)
            needed = int(
                probe.execute(
                    "SELECT (SELECT COALESCE(SUM(LENGTH(body)), 0) FROM segments) "
                    "+ (SELECT COALESCE(SUM(LENGTH(body)), 0) FROM dead) "
                    "+ (SELECT COALESCE(SUM(LENGTH(body)), 0) FROM unreadable)"
                ).fetchone()[0]
            )
        finally:
            probe.close()
        fs = os.statvfs(self.directory)
        if fs.f_bavail * fs.f_frsize < needed + 2 * RESERVE_BYTES:
            # Copied a chunk at a time, a copy that ran out of room half-way would leave this spool holding
            # part of the orphan, and no longer empty enough to take the orphan over in place instead.
            raise _NoRoom(f"{needed:,} bytes to copy, {fs.f_bavail * fs.f_frsize:,} free")
        identity = os.fstat(fd)
        done = self._adopting.setdefault((identity.st_dev, identity.st_ino), {})
        with self._mutex:
            self._check_intact()
            self._conn.execute("ATTACH DATABASE ? AS orphan", (str(path),))
        try:
            adopted = 0
            for table, columns in _ADOPTED:
                while True:
                    rows = self._copy_chunk(table, columns, done.get(table, 0))
                    if not rows:
                        break
                    done[table] = rows[-1][0]
                    if table == "segments":
                        adopted += sum(n for _, n, _ in rows)
        finally:
            with self._mutex, contextlib.suppress(sqlite3.Error):
                self._conn.execute("DETACH DATABASE orphan")
        return adopted

    def _copy_chunk(self, table: str, columns: str, after: int) -> list[tuple[int, int, int]]:
        """Copy the orphan's next rows of ``table`` (``seq`` past ``after``) in one transaction of this spool.

        At most :data:`_ADOPT_CHUNK` rows and, past the first, :data:`_ADOPT_CHUNK_BYTES`;
        returns each copied row's ``(seq, n, stored bytes)`` (``n`` is 1 for a dead letter).

        A chunk at a time, the mutex released between chunks: a leftover spool of
        a gigabyte (a process that died in a long outage) is copied in seconds,
        and in one transaction it held up the writer (every recording call waited
        ``max_block``), ``health()`` and ``close()`` for all of them. Rows are
        not deleted from the orphan as they are copied (a transaction over both
        files is not atomic in WAL mode); the orphan is deleted once all are in.
        A crash half-way leaves both copies: re-sending is harmless.
        """
        count = "n" if table != "dead" else "1"
        with self._mutex:
            self._check_intact()
            with _immediate(self._conn):
                rows: list[tuple[int, int, int]] = []
                size = 0
                for seq, n, length in self._conn.execute(  # LENGTH of a blob reads no overflow page
                    f"SELECT seq, {count}, LENGTH(body) FROM orphan.{table} WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after, _ADOPT_CHUNK),
                ).fetchall():
                    if rows and size + length > _ADOPT_CHUNK_BYTES:
                        break
                    rows.append((seq, n, length))
                    size += length
                if rows:
                    self._conn.execute(
                        f"INSERT INTO {table}({columns}) SELECT {columns} FROM orphan.{table} "
                        "WHERE seq > ? AND seq <= ? ORDER BY seq",
                        (after, rows[-1][0]),
                    )
            self._size_floor = max(self._size_floor, os.fstat(self._fd).st_size)
            if table == "segments":
                self.bytes += size
            self._refresh_view()
        return rows

    def _quarantine(self, path: Path, reason: str) -> None:
        target = _move_aside(path) or _aside(path)
        self.quarantined.append((target, reason))
        logger.error(
            "perf_sdk: spool file %s could not be read (%s); moved aside to %s for inspection, "
            "the rest of the spool is still delivered",
            path.name,
            reason,
            target.name,
        )

    # lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Close; delete the file when nothing is left in it (else the next tracker adopts it).

        Deletes only the file this spool opened: if the path now names another
        file, that one is left alone.
        """
        if self.closed:
            return
        self.closed = True
        with self._mutex:
            try:
                empty = self._empty()
            except sqlite3.Error:
                empty = False
            self._conn.close()
        if empty and _same_file(self.path, self._fd):
            _remove_db_files(self.path)
            _unlink_quietly(self._lock_path)
        # Only after the connection: closing any descriptor of the file drops SQLite's POSIX locks on it.
        os.close(self._fd)
        os.close(self._lock_fd)

    def abandon_after_fork(self) -> None:
        """In a forked child: drop this spool without touching the parent's file or lock.

        The connection is kept referenced forever (never closed in the child),
        because SQLite must not use or close a connection across ``fork()``.
        The child's copies of the file's and the lock's descriptors are closed:
        a copy of the lock's would hold the parent's ``flock`` for as long as the
        child lives, so no tracker could adopt the parent's spool after the parent
        died. Closing them releases neither the parent's lock (it holds its own
        copy) nor SQLite's locks (a child inherits no POSIX locks).
        """
        _ABANDONED.append(self._conn)
        self.closed = True
        for fd in (self._fd, self._lock_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


_ABANDONED: list[sqlite3.Connection] = []
#: What adoption copies, table by table; ``segments`` first, its columns from ``dataset, n, body``.
_ADOPTED: Final = (
    ("segments", "dataset, n, body, accepted_at, attempts"),
    ("dead", "dataset, record_id, body, accepted_at, failed_at, status, reason"),
    ("unreadable", "dataset, n, body, accepted_at, found_at, reason"),
)
#: Most rows, and bytes past the first row, copied in one transaction when adopting: the spool's lock is
#: held for one such copy (a few milliseconds), never for a whole orphan.
_ADOPT_CHUNK: Final = 64
_ADOPT_CHUNK_BYTES: Final = 4 << 20


def _replay_dead(conn: sqlite3.Connection, mutex: threading.Lock | None = None) -> int:
    with mutex or contextlib.nullcontext(), _immediate(conn):
        rows = conn.execute("SELECT dataset, body, accepted_at FROM dead ORDER BY seq").fetchall()
        conn.executemany(
            "INSERT INTO segments(dataset, n, body, accepted_at) VALUES (?, 1, ?, ?)",
            [(ds, b"[" + _as_bytes(body) + b"]", accepted_at) for ds, body, accepted_at in rows],
        )
        conn.execute("DELETE FROM dead")
    return len(rows)


def _iter_spool_files(directory: Path) -> Iterator[Path]:
    if directory.is_dir():
        yield from sorted(directory.glob("*" + SUFFIX))


def _owner_alive(lock_path: Path) -> bool:
    """Whether a live process holds ``lock_path``; creates nothing and follows no link (for read-only views)."""
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:  # missing (no owner), or a link: nobody holds it
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def inspect_spool_dir(directory: Path) -> list[SpoolFileStatus]:
    """Read-only view of every spool file in ``directory`` (for ``perf-sdk spool status``).

    Writes nothing, follows no link (a linked file is listed with that as its
    error, and not read), so an operator may run it as another user (root).
    """
    out: list[SpoolFileStatus] = []
    for path in _iter_spool_files(directory):
        status = SpoolFileStatus(path=path, alive=_owner_alive(path.with_suffix(".lock")))
        out.append(status)
        try:
            for item in (path, path.with_suffix(".lock")):
                if os.path.lexists(item) and not stat.S_ISREG(os.lstat(item).st_mode):
                    raise _Untrusted(f"{item.name} is a symbolic link or not a regular file")
            _check_side_files(path, owner=False)
        except (_Untrusted, OSError) as exc:
            status.error = f"not trusted: {exc}" if isinstance(exc, _Untrusted) else str(exc)
            continue
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
            try:
                n, segs, size, oldest = conn.execute(
                    "SELECT COALESCE(SUM(n),0), COUNT(*), COALESCE(SUM(LENGTH(body)),0), MIN(accepted_at) FROM segments"
                ).fetchone()
                status.records, status.segments, status.bytes, status.oldest_accepted_at = (
                    int(n),
                    int(segs),
                    int(size),
                    oldest,
                )
                status.dead = int(conn.execute("SELECT COUNT(*) FROM dead").fetchone()[0])
                if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'unreadable'").fetchone():
                    status.unreadable = int(
                        conn.execute("SELECT COALESCE(SUM(n), 0) FROM unreadable").fetchone()[0]
                    )  # a spool of an older perf_sdk has none
                status.by_dataset = dict(
                    conn.execute("SELECT dataset, SUM(n) FROM segments GROUP BY dataset").fetchall()
                )
            finally:
                conn.close()
        except sqlite3.Error as exc:
            status.error = str(exc)
    return out


def trusted_spool_files(directory: Path) -> Iterator[Path]:
    """The spool files in ``directory`` that are safe to open for writing (the others are logged and skipped).

    Checked with ``lstat``, not by opening: closing a descriptor of a database
    would drop the POSIX locks SQLite holds on it elsewhere in this process.
    """
    for path in _iter_spool_files(directory):
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                raise _Untrusted(f"{path.name} is a symbolic link or not a regular file")
            if st.st_uid != os.geteuid() or st.st_nlink != 1:
                raise _Untrusted(f"{path.name} belongs to uid {st.st_uid} or has {st.st_nlink} links")
            _check_side_files(path)
        except _Untrusted as exc:
            logger.error("perf_sdk: skipping %s: %s", path.name, exc)
            continue
        yield path


def replay_dead_in_dir(directory: Path) -> int:
    """Move dead letters back to the outbox in every spool file whose owner is gone or alive.

    SQLite's own locking makes this safe beside a live owner; its uploader picks
    the records up on its next pass. Files the SDK would not trust are skipped.
    """
    total = 0
    for path in trusted_spool_files(directory):
        conn = _connect(path)
        try:
            _migrate(conn)
            total += _replay_dead(conn)
        finally:
            conn.close()
    return total
