"""The uploader: a background worker that empties the spool into the platform.

It takes the oldest segments of each data set as one request (by record count
and bytes), sends them through a :class:`~perf_sdk._transport.Transport`, and
forgets them only once the platform has answered ``200 {"status": "ok"}``. What
happens otherwise is policy, and all of it lives here:

* retryable failures (5xx, 429, 408, dropped connections, time-outs) are retried
  with exponential back-off and full jitter, honouring ``Retry-After``, for as
  long as it takes: the records wait on disk, so an outage of hours loses nothing;
* ``400`` means some record is bad: the batch is bisected until the bad records
  are alone, and those are dead-lettered with the platform's message while the
  rest go through;
* ``413`` means too big: the batch is split in halves; a single record too big
  for the platform is dead-lettered;
* a platform that refuses record after record (``refused_in_a_row``, 20, with
  nothing taken between them) may be refusing the data set, not records: a
  stricter schema, a field every record carries. The rest of the batch is then
  sent in the parts already cut, once each, and the data set's newest record
  once; if the platform takes none of them, the data set is paused like a
  configuration problem, its records kept in the spool, instead of every record
  being bisected out (two requests and an ERROR line per record) and
  dead-lettered. If it takes any, the refused records are old bad ones (a hook's
  bug, since fixed): they are bisected out and dead-lettered as usual, so they
  never hold up the records behind them;
* ``401``/``403``/``404`` (and other refusals) are configuration problems: the
  data set is paused, with one clear error, keeping its records, and probed
  again after ``pause_seconds``;
* a segment whose stored bytes no longer read back (a flipped bit on the disk)
  is set aside raw (:meth:`~perf_sdk._spool.Spool.set_aside`), counted and
  logged at ERROR, and the records behind it are delivered: never sent, never
  retried for ever. It is found without inflating what is sent as stored: the
  platform's gzip reader refuses the request (its CRC check), and the bisection
  that follows reads every segment.

Re-sending is always safe because every record carries a fixed ``_id`` and the
platform upserts by it; so a crash between "platform stored it" and "spool
forgot it" costs one duplicate request, never a duplicate record.

While it waits to retry, the uploader says what for, in one line a person can act
on ("waiting for https://...: connection refused, retry 4 in 8 s; records are safe
on disk"): in ``Stats.waiting_for`` (so ``health().waiting_for``, a progress line)
and in the log.

The thread is only a driver: :meth:`Uploader.run_pass` is one whole pass (every
data set with work gets a request, retried to a verdict) and runs on the
caller's thread, with the clock, the sleep and the jitter injectable, so the
policy above is tested by calling it, not by polling a live worker.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_never

from perf_sdk._errors import PerfSdkError, RejectedError, RetryableError, TransportError, scrub
from perf_sdk._spool import UNREADABLE, Segment, Spool, join_packed
from perf_sdk._telemetry import Stats
from perf_sdk._transport import HttpTransport, Transport

__all__ = ["Uploader"]

logger = logging.getLogger("perf_sdk")

#: Refusals of the records sent, not of the data set: a bad record (400, 422) or too many bytes (413). The
#: batch is split to find what the platform takes; any other refusal pauses the data set.
_RECORD_REFUSALS = frozenset({400, 413, 422})
#: Most segments joined as gzip members in one request (2n + 1 members); more are sent as one JSON array,
#: well within what gzip readers accept (the local platform: 1,000 members).
_MAX_JOINED = 100
ErrorHook = Callable[[BaseException, list[dict[str, Any]]], None]
#: A record the platform refused for good: the record, the HTTP status, the platform's reason.
_Refusal = tuple[dict[str, Any], int | None, str]


class _Stopped(Exception):
    """Raised out of a back-off sleep when the uploader is asked to stop."""


class _SetAside(Exception):
    """Raised out of a retry when a segment of the request no longer read back (it has been set aside)."""


class Uploader:
    """One per process: a daemon thread draining one :class:`Spool`."""

    def __init__(
        self,
        spool: Spool,
        transport: Transport,
        stats: Stats,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        batch_size: int = 1000,
        batch_bytes: int = 2_000_000,
        retry_initial: float = 0.5,
        retry_max: float = 60.0,
        pause_seconds: float = 300.0,
        adopt_every: float = 30.0,
        on_error: ErrorHook | None = None,
        on_dead_letter: ErrorHook | None = None,
        refused_in_a_row: int = 20,
    ) -> None:
        self.spool = spool
        self.transport = transport
        #: Packed segments go to the platform as stored only through HttpTransport's own send: a
        #: transport of the service's (or a subclass overriding ``send``) is promised JSON.
        self._send_gzip: Callable[[str, bytes], None] | None = (
            getattr(transport, "send_gzip", None) if type(transport).send is HttpTransport.send else None
        )
        self.stats = stats
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.pause_seconds = pause_seconds
        self.adopt_every = adopt_every
        self.on_error = on_error
        self.on_dead_letter = on_dead_letter
        self.refused_in_a_row = refused_in_a_row
        self._clock = clock
        #: How a back-off waits; by default on the stop event, so stop() cuts it short.
        self._sleep_for = sleep
        self._rng = rng or random.Random()
        #: dataset -> monotonic time until which it is paused, and why.
        self.paused: dict[str, tuple[float, str]] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._adopt_now = threading.Event()
        self._adopt_now.set()
        #: Notified after every pass, so flush() can wait without polling.
        self.progress = threading.Condition()
        self.passes = 0
        self._thread: threading.Thread | None = None

    # control -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="perf-sdk-uploader", daemon=True)
        self._thread.start()

    def wake(self, adopt: bool = False, probe_paused: bool = False) -> None:
        """Start a pass now; ``adopt`` looks for dead processes' spools first, and
        ``probe_paused`` tries paused data sets once more (the caller may have fixed them)."""
        if adopt:
            self._adopt_now.set()
        if probe_paused:
            for dataset, (_, why) in list(self.paused.items()):
                self.paused[dataset] = (0.0, why)
        self._wake.set()

    def stop(self, timeout: float) -> bool:
        """Ask the worker to stop; True when it has (False: still in a request, left as daemon)."""
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return True
        if threading.current_thread() is self._thread:
            return False  # asked from a hook on this very thread: it stops when the hook returns
        self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def paused_datasets(self) -> tuple[str, ...]:
        now = self._clock()
        return tuple(ds for ds, (until, _) in self.paused.items() if until > now)

    # the loop ----------------------------------------------------------------------------------
    def _run(self) -> None:
        next_adopt = 0.0
        while not self._stop.is_set():
            try:
                if self._adopt_now.is_set() or time.monotonic() >= next_adopt:
                    self._adopt_now.clear()
                    next_adopt = time.monotonic() + self.adopt_every
                    self.stats.add("adopted", self.spool.adopt_orphans())
                worked = self.run_pass()
            except sqlite3.ProgrammingError:
                break  # the spool was closed under us (close() timed out): the next process adopts it
            except Exception as exc:  # never let the worker die
                logger.exception("perf_sdk: uploader error (will retry): %s", exc)
                self.stats.error(f"uploader: {type(exc).__name__}: {exc}")
                worked = False
                if self._stop.wait(min(self.retry_max, 5.0)):
                    break
            with self.progress:
                self.passes += 1
                self.progress.notify_all()
            if not worked:
                self._wake.wait(self._idle_wait())
                self._wake.clear()
        with self.progress:
            self.progress.notify_all()

    def _idle_wait(self) -> float:
        now = self._clock()
        waits = [until - now for until, _ in self.paused.values() if until > now]
        return max(0.05, min([self.adopt_every, *waits]))

    def run_pass(self) -> bool:
        """One pass: a request per data set with work, each retried to a verdict.

        True if anything was attempted. Returns early (False) when the uploader is
        asked to stop, even in the middle of a back-off: what was not delivered
        stays in the spool.
        """
        worked = False
        try:
            for dataset in self.spool.datasets():
                if self._stop.is_set():
                    return False
                until, _ = self.paused.get(dataset, (0.0, ""))
                if until > self._clock():
                    continue
                segments = self.spool.next_batch(dataset, self.batch_size, self.batch_bytes)
                if segments:
                    self._deliver(dataset, segments)
                    worked = True
        except _Stopped:
            return False
        finally:
            self.stats.waiting_for = None
        return worked

    # delivery ----------------------------------------------------------------------------------
    def _deliver(self, dataset: str, segments: list[Segment]) -> None:
        try:
            body, send = self._request(segments)
        except UNREADABLE:
            if self._readable_records(dataset, segments) is not None:
                raise  # nothing unreadable in them: not a stored body's fault
            return  # the readable ones go in the next pass, as a request of their own
        n = sum(s.n for s in segments)
        started = time.perf_counter()
        try:
            self._send(dataset, body, n, send, lambda: self._readable_records(dataset, segments) is not None)
        except _SetAside:
            return  # the rest go in the next pass
        except RejectedError as exc:
            if exc.status in _RECORD_REFUSALS:
                records = self._readable_records(dataset, segments)
                if records is None:
                    return  # the refusal was of bytes set aside now; the rest go in the next pass
                try:
                    refused = self._resolve(dataset, segments, records, exc)
                except RejectedError as config_exc:
                    self._pause(dataset, config_exc, n)  # nothing dead-lettered: the batch stays in the outbox
                    return
                self._dead_letters(dataset, refused, segments[0].accepted_at)
            else:
                self._pause(dataset, exc, n)
                return
        else:
            self._delivered(n)
            logger.debug(
                "perf_sdk: delivered %d records to %s (%d bytes) in %.0f ms",
                n,
                dataset,
                len(body),
                (time.perf_counter() - started) * 1000,
            )
        self.paused.pop(dataset, None)
        self.spool.remove(segments)
        self.stats.waiting_for = None

    def _readable_records(self, dataset: str, segments: list[Segment]) -> list[dict[str, Any]] | None:
        """The segments' records; None when some segment no longer read back (those are set aside).

        A damaged segment's other records are not guessed at: a stream that fails its
        check may have decoded to other records before it failed.
        """
        records: list[dict[str, Any]] = []
        damaged = False
        for segment in segments:
            try:
                records.extend(segment.records())
            except UNREADABLE as exc:
                damaged = True
                self._set_aside(dataset, segment, exc)
        return None if damaged else records

    def _set_aside(self, dataset: str, segment: Segment, exc: BaseException) -> None:
        reason = f"stored segment no longer reads back ({type(exc).__name__}: {exc})"
        self.spool.set_aside(segment, reason)
        self.stats.add("unreadable", segment.n)
        self.stats.error(f"{dataset}: {segment.n} spooled record(s) unreadable")
        logger.error(
            "perf_sdk: %d spooled record(s) of %s no longer read back from disk (%s): set aside unsent, the "
            "records behind them go on; `perf-sdk spool dead` lists them. Check the disk that holds the spool.",
            segment.n,
            dataset,
            reason,
        )
        if self.on_error is not None:
            self._hook(self.on_error, PerfSdkError(f"{dataset}: {segment.n} spooled record(s): {reason}"), [])

    def _resolve(
        self, dataset: str, segments: list[Segment], records: list[dict[str, Any]], exc: RejectedError
    ) -> list[_Refusal]:
        """Deliver what the platform takes from a refused batch; what it refuses, record by record.

        After ``refused_in_a_row`` records refused one after another with nothing
        taken between them, refused parts are no longer split: the rest of the
        batch is sent in the parts already cut, once each. If the platform takes
        none of them, nor the data set's newest record, it refuses the data set,
        not records: :class:`RejectedError` is raised for the caller to pause it,
        and nothing is dead-lettered. Otherwise the parts set aside are split to
        the last record as usual.
        """
        refused: list[_Refusal] = []
        deferred: list[tuple[list[dict[str, Any]], RejectedError]] = []
        taken = self._bisect(dataset, [(records, exc)], refused, deferred, self.refused_in_a_row)
        if deferred:
            newer = None if taken else self._newer_is_taken(dataset, segments)
            if not taken and not newer:
                also = "" if newer is None else ", and the newest record waiting"
                raise RejectedError(
                    f"the platform took none of the {len(records)} records of {dataset} it was sent "
                    f"({len(refused)} refused one after another, the rest in parts{also}: "
                    f"{self._reason(exc)}); it refuses this data set's records, not one bad record: "
                    "check what it expects",
                    status=exc.status,
                    messages=exc.messages,
                )
            self._bisect(dataset, deferred, refused, [], None)
        return refused

    def _bisect(
        self,
        dataset: str,
        parts: list[tuple[list[dict[str, Any]], RejectedError]],
        refused: list[_Refusal],
        deferred: list[tuple[list[dict[str, Any]], RejectedError]],
        limit: int | None,
    ) -> bool:
        """Split refused ``parts`` in halves, in order, until each refused record is alone; True if any was taken.

        Past ``limit`` refusals in a row, a refused part goes to ``deferred`` whole.
        """
        taken = False
        in_a_row = 0
        stack: list[tuple[list[dict[str, Any]], RejectedError | None]] = list(reversed(parts))
        while stack:
            part, why = stack.pop()
            if why is None:
                try:
                    self._send(dataset, _json(part), len(part))
                except RejectedError as sub:
                    if sub.status not in _RECORD_REFUSALS:
                        raise  # a 401 half-way: the caller pauses the data set
                    why = sub
                else:
                    self._delivered(len(part))
                    taken, in_a_row = True, 0
                    continue
            if limit is not None and in_a_row >= limit:
                deferred.append((part, why))
            elif len(part) == 1:
                in_a_row += 1
                refused.append((part[0], why.status, self._reason(why)))
            else:
                mid = len(part) // 2
                stack += [(part[mid:], None), (part[:mid], None)]
        return taken

    def _newer_is_taken(self, dataset: str, segments: list[Segment]) -> bool | None:
        """Does the platform take the data set's newest record? None when it is in this batch (or there is none).

        Tells old bad records (a hook's bug, since fixed) from a platform refusing the
        data set: the newest record is sent again with its own batch later, stored once.
        """
        newest = self.spool.newest_record(dataset)
        if newest is None or newest[0] <= max(s.seq for s in segments):
            return None
        try:
            self._send(dataset, _json([newest[1]]), 1)
        except RejectedError as sub:
            if sub.status not in _RECORD_REFUSALS:
                raise
            return False
        self._delivered(1)
        return True

    def _reason(self, exc: RejectedError) -> str:
        reason = self._text("; ".join(exc.messages) or str(exc))
        return f"record too large for the platform (413): {reason}" if exc.status == 413 else reason

    def _request(self, segments: list[Segment]) -> tuple[bytes, Callable[[str, bytes], None]]:
        """The body of one request for ``segments``, and the transport's call that sends such a body.

        Packed segments go as they are stored, their gzip members joined, when the
        transport would compress that much JSON anyway; otherwise as one JSON array.
        """
        threshold = getattr(self.transport, "gzip_threshold", 0)
        if (
            self._send_gzip is not None
            and len(segments) <= _MAX_JOINED
            and all(s.packed for s in segments)
            and threshold
            and sum(s.json_size() for s in segments) > threshold
        ):
            return join_packed([s.body for s in segments]), self._send_gzip
        return _join(segments), self.transport.send

    def _send(
        self,
        dataset: str,
        body: bytes,
        n: int,
        send: Callable[[str, bytes], None] | None = None,
        readable: Callable[[], bool] | None = None,
    ) -> None:
        """Send until success or a permanent refusal, however long the outage (JSON unless ``send`` says).

        Before the first retry, ``readable`` checks that the stored segments behind
        ``body`` still read back (and sets aside those that do not, raising
        :class:`_SetAside`): a platform that answers a damaged body with a 5xx
        instead of a 400 would otherwise have it retried for ever, and every
        record behind it held up.
        """
        data_type = dataset.rsplit("/", 1)[-1]
        send = send or self.transport.send
        retrying = Retrying(
            retry=retry_if_exception_type(RetryableError),
            wait=self._wait,
            stop=stop_never,
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                retry = attempt.retry_state.attempt_number - 1
                if retry == 1 and readable is not None and not readable():
                    raise _SetAside
                self.stats.add("requests")
                with self.stats.upload_span(dataset, n, len(body), retry) as outcome:
                    try:
                        send(data_type, body)
                    except TransportError as exc:
                        outcome["status"] = exc.status
                        raise
                    outcome["status"] = 200

    def _wait(self, state: RetryCallState) -> float:
        """Full-jitter exponential back-off, lengthened (never shortened) by the platform's Retry-After.

        A ``Retry-After: 0`` (or a negative or unparseable one) must not turn the
        back-off off: a platform saying so would make the uploader spin.
        """
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        ceiling = min(self.retry_max, self.retry_initial * 2 ** min(state.attempt_number - 1, 30))
        delay = self._rng.uniform(self.retry_initial / 2, ceiling)
        if isinstance(retry_after, (int, float)) and math.isfinite(retry_after) and retry_after > 0:
            delay = max(delay, min(float(retry_after), max(self.retry_max, 1.0) * 10))
        return float(delay)

    def _sleep(self, seconds: float) -> None:
        if self._sleep_for is not None:
            self._sleep_for(seconds)
            if self._stop.is_set():
                raise _Stopped
        elif self._stop.wait(seconds):
            raise _Stopped

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.add("retries")
        exc = state.outcome.exception() if state.outcome else None
        message = self._text(str(exc))
        self.stats.error(message)
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        waiting = self.waiting_text(exc, state.attempt_number, delay)
        self.stats.waiting_for = waiting
        level = (
            logging.WARNING
            if state.attempt_number in (1, 10, 100) or state.attempt_number % 1000 == 0
            else logging.DEBUG
        )
        logger.log(level, "perf_sdk: %s (%s)", waiting, message)
        if state.attempt_number == 1 and self.on_error is not None and isinstance(exc, TransportError):
            self._hook(self.on_error, exc, [])

    def waiting_text(self, exc: BaseException | None, retry: int, delay: float) -> str:
        """What a wait is for, in words a person can act on (for ``health()`` and progress lines)."""
        where = getattr(self.transport, "endpoint", None) or "the platform"
        reason = self._text(getattr(exc, "reason", None) or (str(exc) if exc is not None else "no answer"))
        return f"waiting for {where}: {reason}, retry {retry} in {delay:.0f} s; records are safe on disk"

    def _delivered(self, n: int) -> None:
        self.stats.delivered_now(n)

    def _dead_letters(self, dataset: str, refused: list[_Refusal], accepted_at: float) -> None:
        """Dead-letter what a bisection left, one log line and hook call per distinct refusal (not per record)."""
        groups: dict[tuple[int | None, str], list[dict[str, Any]]] = {}
        for record, status, reason in refused:
            groups.setdefault((status, reason), []).append(record)
        for (status, reason), records in groups.items():
            self._dead(dataset, records, accepted_at, status, reason)

    def _dead(
        self, dataset: str, records: list[dict[str, Any]], accepted_at: float, status: int | None, reason: str
    ) -> None:
        self.spool.dead_letter(dataset, records, accepted_at, status, reason)
        self.stats.add("dead_lettered", len(records))
        logger.error(
            "perf_sdk: the platform refused %d record(s) of %s for good (%s); kept as dead letters: "
            "see `perf-sdk spool status`, fix, then `perf-sdk spool replay-dead`",
            len(records),
            dataset,
            reason,
        )
        error = RejectedError(f"{dataset}: {reason}", status=status)
        if self.on_dead_letter is not None:
            self._hook(self.on_dead_letter, error, records)
        if self.on_error is not None:
            self._hook(self.on_error, error, records)

    def _pause(self, dataset: str, exc: RejectedError, n: int) -> None:
        first = dataset not in self.paused
        why = self._text(str(exc))
        self.paused[dataset] = (self._clock() + self.pause_seconds, why)
        self.stats.error(why)
        hint = {
            401: "the token is missing or wrong for this data set (token=/tokens=, PERF_SDK_TOKEN)",
            403: "the token is not allowed to write this data set",
            404: "the platform has no such data set: check service= and the endpoint",
        }.get(exc.status or 0, "the platform refuses these requests")
        if first:
            logger.error(
                "perf_sdk: pausing uploads to %s: %s; %s. %d record(s) are kept on disk and will be sent "
                "once this is fixed (next try in %.0f s)",
                dataset,
                why,
                hint,
                n,
                self.pause_seconds,
            )
            if self.on_error is not None:
                self._hook(self.on_error, exc, [])

    def _text(self, text: str) -> str:
        """Server-provided ``text`` without credentials, before it goes to a log, health() or the dead letters.

        :class:`~perf_sdk._transport.HttpTransport` scrubs at the source, knowing its
        tokens; this is the same guard for any other transport.
        """
        scrubber = getattr(self.transport, "scrub", None)
        return scrubber(text) if callable(scrubber) else scrub(text)

    @staticmethod
    def _hook(hook: ErrorHook, error: BaseException, records: list[dict[str, Any]]) -> None:
        try:
            hook(error, records)
        except Exception:
            logger.exception("perf_sdk: an error hook raised; ignored")


def _join(segments: list[Segment]) -> bytes:
    """One JSON array of the segments' records."""
    if len(segments) == 1:
        return segments[0].json()
    bodies = [s.json() for s in segments]
    return b"[" + b",".join(b[1:-1] for b in bodies if len(b) > 2) + b"]"


def _json(records: list[dict[str, Any]]) -> bytes:
    """Records as the compact JSON array a request carries."""
    return json.dumps(records, separators=(",", ":")).encode()
