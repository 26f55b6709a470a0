"""The writer: queued recording calls → validated records → the spool.

The second stage of recording → **writer** → spool → uploader → transport. The
hot path (:mod:`perf_sdk._tracker`) only appends a tuple to :attr:`Writer.queue`;
everything that costs (validation, hashing transaction ids, ids, timestamps,
JSON) happens here, off the caller's thread.

It has two parts, as OpenTelemetry keeps its ``BatchSpanProcessor`` apart from
the exporter and sentry-python's ``BackgroundWorker`` keeps its thread apart
from what it runs:

* :func:`build` is a **pure function**: queued items in, spool segments and
  refusals out. No thread, no disk, no clock; tests call it directly. A table
  (:data:`BUILDERS`) maps each kind of queued call to the function that builds
  its record, so a new kind is a new row, not a new branch.
* :class:`Writer` is the thread around it: it wakes every ``commit_interval``,
  drains the queue a chunk at a time, and group-commits each chunk's segments
  to the spool in one transaction.

What the writer promises (docs/guarantees.md):

* **One bad record never takes its neighbours down.** Building, the
  ``before_send`` hook, validation and serialising each fail *per record*: the
  bad one is refused and reported (``on_error``, ``health()``, the log), the
  rest are stored.
* **Stopping persists everything.** :meth:`Writer.stop` drains the whole queue
  into the spool, however long the platform takes to answer (the platform is
  the uploader's business, not the writer's): the deadline bounds only a
  writer that cannot make progress (no spool, a full disk). What could not be
  persisted is returned as a number, logged at ERROR and counted, never lost
  silently.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import pydantic_core

from perf_sdk._errors import PerfSdkError, ValidationError
from perf_sdk._protocol import CHANNELS
from perf_sdk._records import RecordBuilder, future_timestamps, unencodable_field, validate_records
from perf_sdk._spool import SpoolLostError

__all__ = [
    "BUILDERS",
    "BUILT",
    "COMPLETE",
    "COST",
    "GENERIC",
    "MARK",
    "SATISFACTION",
    "START",
    "VALIDATED",
    "Built",
    "Outbox",
    "Refusal",
    "Writer",
    "build",
]

logger = logging.getLogger("perf_sdk")

# Kinds of queued call: the first element of each queued tuple. Plain ints, so
# the hot path builds a tuple and nothing else.
START: Final = 0  # (START, transaction_id, channel, at, count)
COMPLETE: Final = 1  # (COMPLETE, transaction_id, channel, at, count)
SATISFACTION: Final = 2  # (SATISFACTION, rating, transaction_id, channel, at, count)
COST: Final = 3  # (COST, amount_pence, period, cost_type, channel, at, count)
GENERIC: Final = 4  # (GENERIC, data_type, fields, at, count)
BUILT: Final = 5  # (BUILT, data_type, record): built by the caller (submit); validated here
MARK: Final = 6  # (MARK, label, description, at)
VALIDATED: Final = 7  # (VALIDATED, data_type, record): built *and* validated by the caller (strict mode, backfill)

#: The stage a START or COMPLETE item records, by kind (``build`` builds journeys without the table's call).
_STAGE_OF: Final = {START: "started", COMPLETE: "completed"}

#: Items per chunk: a chunk is built, then committed to the spool in one transaction (an fsync each), as
#: a segment of up to ``batch_size`` records, which the uploader sends a request at a time. 5,000 (the
#: default batch size) makes 2.5 times fewer commits and one request per segment: 0.3 µs a record less
#: than 2,000, in commits and uploads. Building starts and completions is Python code, which hands the
#: GIL over as any other; the single calls into pydantic-core that hold it stay at :data:`SLICE` records.
CHUNK: Final = 5_000
#: Records per call into pydantic-core (validation, JSON): each holds the GIL, about a millisecond at most.
SLICE: Final = 2_000

BeforeSend = Callable[[dict[str, Any]], "dict[str, Any] | None"]
Segment = tuple[str, int, bytes]  # (dataset, records, JSON array)


def _start(b: RecordBuilder, item: tuple[Any, ...]) -> tuple[str, dict[str, Any] | None]:
    return "transactions", b.transaction(_STAGE_OF[START], item[1], item[2], item[3], item[4])


def _complete(b: RecordBuilder, item: tuple[Any, ...]) -> tuple[str, dict[str, Any] | None]:
    return "transactions", b.transaction(_STAGE_OF[COMPLETE], item[1], item[2], item[3], item[4])


def _satisfaction(b: RecordBuilder, item: tuple[Any, ...]) -> tuple[str, dict[str, Any] | None]:
    return "satisfaction", b.satisfaction(item[1], item[2], item[3], item[4], item[5])


def _cost(b: RecordBuilder, item: tuple[Any, ...]) -> tuple[str, dict[str, Any] | None]:
    return "costs", b.cost(item[1], item[2], item[3], item[4], item[5], item[6])


def _generic(b: RecordBuilder, item: tuple[Any, ...]) -> tuple[str, dict[str, Any] | None]:
    return item[1], b.generic(item[1], item[2], item[3], item[4])


def _built(b: RecordBuilder, item: tuple[Any, ...]) -> tuple[str, dict[str, Any] | None]:
    record = item[2]
    if not isinstance(record, dict):
        raise ValidationError("record", type(record).__name__, "must be a dict of a record's fields")
    future = future_timestamps([record])  # the builder checks the times it makes; this one came built
    if future:
        raise future[0]
    return item[1], record


def _mark(b: RecordBuilder, item: tuple[Any, ...]) -> tuple[str, dict[str, Any] | None]:
    return "marks", b.mark(item[1], item[2], item[3])


#: Kind of queued call → the function that builds its record: ``(data type, record or None)``,
#: ``None`` when sampling leaves the record out. Indexed by the kind constants above.
BUILDERS: Final[tuple[Callable[[RecordBuilder, tuple[Any, ...]], tuple[str, dict[str, Any] | None]], ...]] = (
    _start,
    _complete,
    _satisfaction,
    _cost,
    _generic,
    _built,
    _mark,
)


@dataclass(frozen=True)
class Refusal:
    """A record accepted by a call and refused afterwards: why, and what (when there is a record to show)."""

    error: BaseException
    records: list[dict[str, Any]] = field(default_factory=list)
    count: int = 1


@dataclass
class Built:
    """What :func:`build` made of a chunk of queued items."""

    segments: list[Segment] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    sampled_out: int = 0
    #: The records stored, by data type (the service's own journey metrics count them).
    stored: dict[str, Iterable[dict[str, Any]]] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return sum(n for _, n, _ in self.segments)


class _Journeys:
    """Consecutive starts or completions alike in all but their id: one template, a list of ids.

    Same stage, channel, count and second: written as JSON by joining the ids with
    the text between two of them, byte for byte what ``pydantic_core.to_json``
    writes for their records (every part is known safe: a hex id, a stage and a
    channel of the protocol's, a whole count, the builder's timestamp text), and
    made into dicts only if something iterates :attr:`Built.stored`.
    """

    __slots__ = ("channel", "count", "given", "ids", "stage", "tail", "timestamp", "transaction_ids")

    def __init__(self, stage: str, channel: str, count: int, timestamp: str, *, given: bool = False) -> None:
        self.stage, self.channel, self.count, self.timestamp = stage, channel, count, timestamp
        #: True when the general path made the records (their ids come with them); else ids are hashed.
        self.given = given
        #: The ids to hash (the builder's, in one call per stage: :func:`_hash_journeys`).
        self.transaction_ids: list[str] = []
        #: Record ids, once hashed (or given: a record the general path made).
        self.ids: list[str] = []
        self.tail = f'","_timestamp":"{timestamp}","count":{count},"stage":"{stage}","channel":"{channel}"}}'

    def json(self, start: int, stop: int) -> str:
        """Records ``start`` to ``stop`` as JSON objects joined by commas (no brackets)."""
        ids = self.ids if start == 0 and stop == len(self.ids) else self.ids[start:stop]
        return '{"_id":"' + (self.tail + ',{"_id":"').join(ids) + self.tail

    def records(self) -> Iterator[dict[str, Any]]:
        for rid in self.ids:
            yield {
                "_id": rid,
                "_timestamp": self.timestamp,
                "count": self.count,
                "stage": self.stage,
                "channel": self.channel,
            }


class _Stored:
    """A data type's stored records: dicts, then journeys kept as ids (dicts made on iteration)."""

    __slots__ = ("journeys", "records")

    def __init__(self, records: list[dict[str, Any]], journeys: list[_Journeys]) -> None:
        self.records, self.journeys = records, journeys

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.records
        for run in self.journeys:
            yield from run.records()

    def __len__(self) -> int:
        return len(self.records) + sum(len(run.ids) for run in self.journeys)


def build(
    items: Sequence[tuple[Any, ...]],
    builder: RecordBuilder,
    *,
    batch_size: int = 5_000,
    before_send: BeforeSend | None = None,
) -> Built:
    """Turn queued items into spool segments, refusing bad records one at a time.

    Pure: no thread, no disk, no logging; the caller reports ``refusals``.
    Every item ends in exactly one of ``segments`` (stored), ``refusals`` or
    ``sampled_out``, so ``len(items) == records + refused + sampled_out``.
    """
    out = Built()
    # Without a before_send hook, a start, completion or answer the builder made is valid exactly when
    # its caller's channel, count and rating are: checked here in a few comparisons, those records skip
    # the schema pass (a fifth of the writer's cost); anything else gets the full check and its message.
    fast = before_send is None
    by_type: dict[str, list[dict[str, Any]]] = {}
    trusted: dict[str, list[dict[str, Any]]] = {}
    builders, transaction, stage_of = BUILDERS, builder.transaction, _STAGE_OF
    # Those plainly valid starts and completions as runs alike but for their ids (_Journeys): most of what
    # a service records. An item with a string id and a float time joins the open run of its kind, channel
    # and count in its second (its id is hashed with the run's others, in one call per stage); the first of
    # a run is checked as _plainly_valid_journey checks and its time made by builder.timestamp. Runs stay
    # open side by side, so starts and completions interleaved (two channels, say) still make long runs.
    # Records go out run by run, so two records of different ids may swap places, which changes nothing
    # (the platform upserts each by its own id); two of the same id never do: a record whose stage and id
    # came before in this chunk goes in a run opened after every other (the platform keeps the last sent).
    # Anything else takes the general path, with its messages.
    journeys: list[_Journeys] = []
    bulk = fast and builder.ids_in_bulk
    open_runs: dict[tuple[Any, ...], _Journeys] = {}
    seen: set[tuple[int, str]] = set()
    given: _Journeys | None = None  # the run of records the general path made, while it is the last run
    low = high = 0.0  # the open runs' second: [low, high)
    isfinite = math.isfinite
    for item in items:
        kind = item[0]
        if kind <= COMPLETE and bulk:
            txn, at = item[1], item[3]
            if type(txn) is str and 0 < len(txn) <= 1024 and type(at) is float and isfinite(at):
                ident = (kind, txn)
                if ident in seen or not low <= at < high:
                    open_runs = {}  # a record again, or another second: runs of its own, after the others
                    low = float(math.floor(at))
                    high = low + 1.0
                seen.add(ident)
                channel, count = item[2], item[4]
                key = (kind, channel, count)
                run = open_runs.get(key) if type(channel) is str and type(count) is int else None
                if run is not None:
                    run.transaction_ids.append(txn)
                    continue
                if _plainly_valid_journey(channel, count):
                    try:
                        timestamp = builder.timestamp(at)
                    except ValidationError:
                        pass  # refused by the general path, with its message
                    else:
                        run = _Journeys(stage_of[kind], channel, count, timestamp)
                        run.transaction_ids.append(txn)
                        journeys.append(run)
                        open_runs[key] = run
                        continue
        if kind == VALIDATED and isinstance(item[2], dict):
            trusted.setdefault(item[1], []).append(item[2])
            continue
        if kind == VALIDATED:
            kind = BUILT  # not what it claims: checked like any other
        try:
            if kind <= COMPLETE:  # most of what a service records: its builder without the table's call
                data_type, record = "transactions", transaction(stage_of[kind], item[1], item[2], item[3], item[4])
            else:
                data_type, record = builders[kind](builder, item)
        except ValidationError as exc:
            out.refusals.append(Refusal(exc))
            continue
        except Exception as exc:
            out.refusals.append(Refusal(PerfSdkError(f"could not build the record: {type(exc).__name__}: {exc}")))
            continue
        if record is None:
            out.sampled_out += 1
        elif fast and kind <= COMPLETE and _plainly_valid_journey(item[2], item[4]):  # the caller's fields
            stage, timestamp, count = record["stage"], record["_timestamp"], record["count"]
            channel = item[2]
            if (
                given is None
                or given is not journeys[-1]
                or not (stage is given.stage and channel is given.channel)
                or not (count == given.count and timestamp == given.timestamp)
            ):
                given = _Journeys(stage, channel, count, timestamp, given=True)
                journeys.append(given)
            if type(item[1]) is str:
                seen.add((kind, item[1]))
            open_runs = {}  # later records open runs after this one: its place is kept among the journeys
            given.ids.append(record["_id"])
        elif fast and kind <= SATISFACTION and _plainly_valid(kind, record):
            trusted.setdefault(data_type, []).append(record)
        else:
            by_type.setdefault(data_type, []).append(record)
    _hash_journeys(builder, journeys, out.refusals)
    data_types = by_type.keys() | trusted.keys()
    if journeys:
        data_types.add("transactions")
    for data_type in sorted(data_types):
        candidates = by_type.get(data_type, [])
        if before_send is not None and candidates:
            candidates = _apply_before_send(before_send, candidates, out.refusals)
        good, bad = _validate(data_type, candidates, check_future=before_send is not None)
        out.refusals.extend(Refusal(error, [candidates[index]]) for index, error in bad)
        good.extend(trusted.get(data_type, ()))
        runs = journeys if data_type == "transactions" else []
        if good or runs:
            out.stored[data_type] = _segments(f"{builder.service}/{data_type}", good, runs, batch_size, out)
    return out


def _hash_journeys(builder: RecordBuilder, journeys: list[_Journeys], refusals: list[Refusal]) -> None:
    """Each run's record ids, from its transaction ids; one UTF-8 cannot encode is refused (and left out).

    One :meth:`RecordBuilder.transaction_ids` call per stage for all its runs, not one per run: runs of
    one (starts and completions interleaved) made the call's own cost a record's.
    """
    by_stage: dict[str, list[_Journeys]] = {}
    for run in journeys:
        if not run.given:
            by_stage.setdefault(run.stage, []).append(run)
    empty = False
    for stage, runs in by_stage.items():
        ids = builder.transaction_ids(stage, [t for run in runs for t in run.transaction_ids])
        start = 0
        for run in runs:
            stop = start + len(run.transaction_ids)
            run.ids = [rid for rid in ids[start:stop] if rid is not None]
            if len(run.ids) < stop - start:
                for txn, rid in zip(run.transaction_ids, ids[start:stop], strict=True):
                    if rid is None:
                        refusals.append(_unhashable(builder, txn))
            run.transaction_ids = []
            empty = empty or not run.ids
            start = stop
    if empty:
        journeys[:] = [run for run in journeys if run.ids]


def _unhashable(builder: RecordBuilder, transaction_id: str) -> Refusal:
    """The refusal of a transaction id UTF-8 cannot encode, with the message the general path gives."""
    try:
        builder.hash_transaction_id(transaction_id)  # raises
    except ValidationError as exc:
        return Refusal(exc)
    return Refusal(PerfSdkError("could not build the record: its id could not be hashed"))  # pragma: no cover


def _segments(
    dataset: str, records: list[dict[str, Any]], runs: list[_Journeys], batch_size: int, out: Built
) -> _Stored:
    """Segments of at most ``batch_size`` records: ``records`` (as JSON, refusing what cannot be), then ``runs``."""
    stored: list[dict[str, Any]] = []
    total = len(records) + sum(len(run.ids) for run in runs)
    index = offset = 0  # the next run record to write: runs[index].ids[offset]
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        parts: list[bytes] = []
        n = 0
        if start < len(records):
            body, kept = _serialise(records[start:stop], out.refusals)
            if kept:
                parts.append(body[1:-1])
                n += len(kept)
                stored.extend(kept)
        texts: list[str] = []
        wanted = stop - max(start, len(records))
        while wanted > 0:
            run = runs[index]
            take = min(wanted, len(run.ids) - offset)
            texts.append(run.json(offset, offset + take))
            n += take
            wanted -= take
            offset += take
            if offset == len(run.ids):
                index, offset = index + 1, 0
        if texts:
            parts.append(",".join(texts).encode())
        if n:
            out.segments.append((dataset, n, b"[" + b",".join(parts) + b"]"))
    return _Stored(stored, runs)


def _validate(
    data_type: str, records: list[dict[str, Any]], *, check_future: bool = False
) -> tuple[list[dict[str, Any]], list[tuple[int, ValidationError]]]:
    """``validate_records``, made total: if the batch cannot be validated at all, each record alone."""
    if not records:
        return [], []
    if len(records) > SLICE:  # one call into pydantic-core per slice, not one for the whole chunk
        good_all: list[dict[str, Any]] = []
        bad_all: list[tuple[int, ValidationError]] = []
        for start in range(0, len(records), SLICE):
            ok, wrong = _validate(data_type, records[start : start + SLICE], check_future=check_future)
            good_all.extend(ok)
            bad_all.extend((start + index, error) for index, error in wrong)
        return good_all, bad_all
    try:
        # Times the builder made were checked as it made them (see _built); a before_send hook's are not.
        return validate_records(data_type, records, check_future=check_future)
    except Exception:  # a record shaped so oddly that the batch check itself fails: find which
        good: list[dict[str, Any]] = []
        bad: list[tuple[int, ValidationError]] = []
        for index, record in enumerate(records):
            try:
                ok, wrong = validate_records(data_type, [record], check_future=check_future)
            except Exception as exc:
                bad.append((index, ValidationError("record", None, f"cannot be checked ({type(exc).__name__})")))
                continue
            good.extend(ok)
            bad.extend((index, error) for _, error in wrong)
        return good, bad


_CHANNELS: Final = frozenset(CHANNELS)


def _plainly_valid_journey(channel: object, count: object) -> bool:
    """The caller-given fields of a start or completion (the builder made its stage, id and time)."""
    # type() first: a list or dict as a channel cannot be hashed for the set look-up
    return type(channel) is str and channel in _CHANNELS and type(count) is int and 1 <= count <= 1_000_000_000


def _plainly_valid(kind: int, record: dict[str, Any]) -> bool:
    """The caller-given fields of a record the builder made (stage, id and time it made itself)."""
    if not _plainly_valid_journey(record["channel"], record["count"]):
        return False
    if kind == SATISFACTION:
        rating = record["rating"]
        return type(rating) is int and 1 <= rating <= 5
    return True


def _apply_before_send(
    hook: BeforeSend, records: list[dict[str, Any]], refusals: list[Refusal]
) -> list[dict[str, Any]]:
    """The service's hook on each record; a hook that raises or returns a non-dict refuses that record only."""
    kept = []
    for record in records:
        try:
            result: object = hook(record)  # whatever its annotation says, a service's hook may return anything
        except Exception as exc:
            refusals.append(Refusal(PerfSdkError(f"before_send raised {type(exc).__name__}: {exc}"), [record]))
            continue
        if result is None:
            continue  # the hook dropped it on purpose
        if not isinstance(result, dict):
            refusals.append(
                Refusal(
                    ValidationError("before_send", type(result).__name__, "must return the record (a dict) or None"),
                    [record],
                )
            )
            continue
        kept.append(result)
    return kept


def _serialise(chunk: list[dict[str, Any]], refusals: list[Refusal]) -> tuple[bytes, list[dict[str, Any]]]:
    """The chunk as one JSON array; if it cannot be, each record alone, refusing those that fail."""
    if len(chunk) > SLICE:  # one call into pydantic-core per slice (see SLICE)
        parts: list[bytes] = []
        kept_all: list[dict[str, Any]] = []
        for start in range(0, len(chunk), SLICE):
            body, some = _serialise(chunk[start : start + SLICE], refusals)
            if some:
                parts.append(body[1:-1])
                kept_all.extend(some)
        return b"[" + b",".join(parts) + b"]", kept_all
    with contextlib.suppress(Exception):  # a lone surrogate, a value JSON cannot hold: find which record
        return pydantic_core.to_json(chunk), chunk
    bodies: list[bytes] = []
    kept: list[dict[str, Any]] = []
    for record in chunk:
        try:
            bodies.append(pydantic_core.to_json(record))
        except Exception as exc:
            bad = unencodable_field(record)
            error = (
                ValidationError(bad[0], bad[1], "must be valid Unicode text (it holds a lone surrogate)")
                if bad is not None
                else ValidationError("record", None, f"cannot be written as JSON ({type(exc).__name__})")
            )
            refusals.append(Refusal(error))
            continue
        kept.append(record)
    return b"[" + b",".join(bodies) + b"]", kept


class Outbox(Protocol):
    """What the writer needs of the spool (:class:`perf_sdk._spool.Spool` in production)."""

    @property
    def closed(self) -> bool: ...

    def append(self, segments: list[Segment], accepted_at: float) -> None: ...

    def should_hold_appends(self) -> bool: ...

    def has_room(self, nbytes: int) -> bool: ...


class Writer:
    """The background thread that builds queued calls and group-commits them to the spool.

    Its interface is small on purpose: :meth:`start`, :meth:`wake`,
    :meth:`wait_drained`, :meth:`wait_for_room`, :meth:`stop` and
    :meth:`reset_after_fork`. The spool is opened *by the writer* (through
    ``open_outbox``, retried about once a second while it fails) so that no
    caller's thread ever waits for a disk.

    ``queue`` is the deque the hot path appends to: a ``deque.append`` is atomic
    under the GIL, so producers need no lock.
    """

    def __init__(
        self,
        *,
        builder: Callable[[], RecordBuilder],
        open_outbox: Callable[[], Outbox | None],
        refuse: Callable[[Refusal], None],
        stats: Any,
        commit_interval: float = 0.05,
        batch_size: int = 5_000,
        max_spool_bytes: int = 1 << 30,
        before_send: BeforeSend | None = None,
        on_spooled: Callable[[], None] | None = None,
        on_spool_lost: Callable[[BaseException], Outbox | None] | None = None,
    ) -> None:
        self._make_builder = builder
        self._open_outbox = open_outbox
        self._refuse = refuse
        self._stats = stats
        self._interval = commit_interval
        self._batch_size = batch_size
        self._max_spool_bytes = max_spool_bytes
        self.before_send = before_send
        self._on_spooled = on_spooled
        self._on_spool_lost = on_spool_lost
        self.reset_after_fork()

    def reset_after_fork(self) -> None:
        """Fresh per-process state: a forked child starts with an empty queue and no thread."""
        self.queue: deque[tuple[Any, ...]] = deque()
        self._wake = threading.Event()
        self._drained = threading.Condition()
        self._drains = 0
        self._stopping = False
        self._abandon = False
        self._thread: threading.Thread | None = None
        self._unspooled: list[Segment] = []
        self._outbox: Outbox | None = None
        #: True while the writer cannot make progress (no spool yet, or the disk refuses).
        self.stuck = False
        self._quiet_until = 0.0
        #: Items popped from the queue and not yet committed or refused (counted in pending()).
        self._in_flight = 0
        self._last_progress = time.monotonic()

    # the interface ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def outbox(self) -> Outbox | None:
        return self._outbox

    def pending(self) -> int:
        """Records accepted and not yet in the spool: queued, being built, or built and not committed."""
        return len(self.queue) + self._in_flight + sum(n for _, n, _ in self._unspooled)

    @property
    def on_writer_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="perf-sdk-writer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def wait_drained(self, deadline: float) -> bool:
        """Until a full drain that began after this call has committed; False at ``deadline``."""
        with self._drained:
            target = self._drains + 2
            self._wake.set()
            while self._drains < target:
                if not self.running:
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.set()
                self._drained.wait(min(remaining, 0.5))
        return True

    def wait_for_room(self, max_queue: int, deadline: float) -> bool:
        """Until the queue holds fewer than ``max_queue`` items; False at ``deadline`` or if the writer stopped."""
        self._wake.set()
        while len(self.queue) >= max_queue:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.running:
                return False
            with self._drained:
                self._drained.wait(min(remaining, 0.05))
        return True

    def stop(self, deadline: float, *, stall: float = 2.0, hard_limit: float = 30.0) -> int:
        """Persist everything queued, then stop the thread; returns how many records could not be persisted.

        Waits as long as the writer makes progress. Past ``deadline`` it gives
        up when the writer is stuck (no spool could be opened, the disk
        refuses) or has made no progress for ``stall`` seconds (a hook that
        hangs), and in any case ``hard_limit`` seconds after ``deadline`` (a
        disk that hangs must not hang the host's shutdown). Called on the
        writer's own thread (``close()`` from a hook), it only asks the thread
        to finish and reports what is still pending.
        """
        thread = self._thread
        if thread is not None and self.on_writer_thread:
            self._stopping = True
            return 0  # the thread persists the rest when the hook returns; the caller reports pending()
        if thread is not None:
            self._stopping = True
            self._wake.set()
            give_up = deadline + hard_limit
            while thread.is_alive():
                thread.join(0.05)
                now = time.monotonic()
                stalled = now - self._last_progress >= stall
                if (now >= deadline and (self.stuck or stalled)) or now >= give_up:
                    self._abandon = True
                    self._wake.set()
                    thread.join(0.5)
                    break
        if not self.running:
            self._persist_stragglers()
        lost = self.pending()
        if lost:
            self.queue.clear()  # counted and reported here, once: not again by a later sweep
            self._unspooled = []
            self._stats.add("unpersisted", lost)
            logger.error(
                "perf_sdk: %d accepted record(s) could not be written to the spool before shutdown (%s); they are lost",
                lost,
                self._stats.last_error or "no spool could be opened",
            )
        return lost

    # the thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        builder = self._make_builder()
        self._builder = builder
        while not self._open():
            self.stuck = True
            if self._abandon:
                return
            self._wake.wait(0.05 if self._stopping else 1.0)
            self._wake.clear()
        self.stuck = False
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            stopping = self._stopping
            try:
                self._drain(builder, final=stopping)
            except Exception as exc:  # pragma: no cover - build() and commit() handle their own failures
                logger.exception("perf_sdk: writer error: %s", exc)
                self._stats.error(f"writer: {type(exc).__name__}: {exc}")
            self._check_outbox()
            with self._drained:
                self._drains += 1
                self._drained.notify_all()
            if self._abandon or (stopping and not self.queue and not self._unspooled):
                return

    def _open(self) -> bool:
        try:
            self._outbox = self._open_outbox()
        except Exception as exc:  # the opener reports its own failures
            logger.debug("perf_sdk: could not open the spool: %s", exc)
            self._outbox = None
        return self._outbox is not None

    def _drain(self, builder: RecordBuilder, *, final: bool = False) -> None:
        q = self.queue
        popleft = q.popleft
        while q or self._unspooled:
            if self._abandon:
                return
            if not self._commit(force=final):
                self.stuck = True
                if final:
                    time.sleep(0.05)  # the disk refuses: retry until stop() gives up
                    continue
                return  # keep the queue (it is bounded) and try again next time
            # Counted before they are popped: pending() may count a chunk twice for a moment, never miss
            # it. Only this thread pops, so the queue holds at least ``n`` until it has.
            n = min(CHUNK, len(q))
            self._in_flight = n
            items = [popleft() for _ in range(n)]
            if items:
                try:
                    self._process(builder, items)
                except Exception as exc:  # build() refuses per record; this is a last line, never a silent drop
                    logger.exception("perf_sdk: writer error: %s", exc)
                    self._refuse(
                        Refusal(PerfSdkError(f"the writer failed: {type(exc).__name__}: {exc}"), count=len(items))
                    )
                finally:
                    self._in_flight = 0
            self._last_progress = time.monotonic()
            with self._drained:
                self._drained.notify_all()
        if not self._commit(force=final):
            self.stuck = True

    def _process(self, builder: RecordBuilder, items: list[tuple[Any, ...]]) -> None:
        stats = self._stats
        stats.add("accepted", len(items))
        built = build(items, builder, batch_size=self._batch_size, before_send=self.before_send)
        for refusal in built.refusals:
            self._refuse(refusal)
        if built.sampled_out:
            stats.add("sampled_out", built.sampled_out)
        if built.segments:
            self._unspooled.extend(built.segments)
        self._in_flight = 0  # every item is now in _unspooled, refused or sampled out
        for data_type, records in built.stored.items():
            try:
                stats.journeys(data_type, records)
            except Exception:  # the service's own metrics must never cost it records
                logger.exception("perf_sdk: journey metrics failed")
        if built.segments:
            self._commit()

    def _commit(self, force: bool = False) -> bool:
        """Group-commit what was built; False when the disk refused (kept in memory for later)."""
        outbox = self._outbox
        if not self._unspooled:
            return True
        if outbox is None or outbox.closed:
            return False
        if outbox.should_hold_appends() and not force:
            return False  # the disk is full: let deliveries free room first
        # The segments stay in _unspooled (and so in pending()) until the spool holds them: a flush() that
        # looked while they were being written would otherwise find them nowhere and report "all stored".
        pending = list(self._unspooled)
        room: list[Segment] = []
        for dataset, n, body in pending:
            if outbox.has_room(len(body) + sum(len(seg[2]) for seg in room)):
                room.append((dataset, n, body))
            else:
                self._refuse(
                    Refusal(
                        PerfSdkError(
                            f"the spool is full (max_spool_bytes={self._max_spool_bytes}): {n} record(s) of "
                            f"{dataset} not accepted; has the platform been unreachable for a long time?"
                        ),
                        count=n,
                    )
                )
        try:
            outbox.append(room, time.time())
        except Exception as exc:
            self._unspooled = room + self._unspooled[len(pending) :]  # the refused ones (no room) are gone
            if self._spool_lost(exc) and not getattr(self, "_recommitting", False):
                self._recommitting = True  # once: a fresh spool lost again waits for the next drain
                try:
                    return self._commit(force)
                finally:
                    self._recommitting = False
            self._stats.error(f"spool: {exc}")
            now = time.monotonic()
            if now >= self._quiet_until:  # once a minute, not once a commit
                self._quiet_until = now + 60.0
                logger.error(
                    "perf_sdk: could not write the spool (%s); %d record(s) kept in memory and retried",
                    exc,
                    sum(n for _, n, _ in self._unspooled),
                )
            return False
        self._unspooled = self._unspooled[len(pending) :]  # in the spool now, and counted there
        self.stuck = False
        self._last_progress = time.monotonic()
        self._stats.add("spooled", sum(n for _, n, _ in room))
        if self._on_spooled is not None:
            self._on_spooled()
        return True

    def _check_outbox(self) -> None:
        """An idle writer still notices a spool lost under it (the uploader may have seen it first)."""
        outbox = self._outbox
        verify = getattr(outbox, "verify", None)
        if verify is None or self._unspooled or self.queue:
            return  # a commit is about to check anyway
        try:
            verify()
        except SpoolLostError as exc:
            if self._spool_lost(exc):
                self._commit()
        except Exception as exc:  # pragma: no cover - reporting only
            logger.debug("perf_sdk: spool check failed: %s", exc)

    def _spool_lost(self, exc: BaseException) -> bool:
        """The spool file was replaced, truncated or deleted under us: continue into a fresh one."""
        if not isinstance(exc, SpoolLostError) or self._on_spool_lost is None:
            return False
        logger.error("perf_sdk: %s; continuing into a fresh spool (records held in memory are kept)", exc)
        self._stats.error(f"spool lost: {exc}")
        # What the lost file still held and could be read back goes first: re-sending is harmless (upserts).
        self._unspooled = list(exc.salvaged) + self._unspooled
        try:
            self._outbox = self._on_spool_lost(exc)
        except Exception as reopen_error:
            logger.error("perf_sdk: could not open a fresh spool: %s", reopen_error)
            self._outbox = None
        return self._outbox is not None

    def _persist_stragglers(self) -> None:
        """After the thread has stopped: what a caller appended while it stopped, committed on this thread."""
        if not self.queue or self._outbox is None or self._outbox.closed:
            return
        builder = getattr(self, "_builder", None) or self._make_builder()
        try:
            self._drain(builder)
        except Exception as exc:  # pragma: no cover - reported as unpersisted by stop()
            logger.error("perf_sdk: could not persist the last records: %s", exc)
