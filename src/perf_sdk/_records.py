"""The records perf_sdk sends, their validation, and the ids that make re-sending safe.

Record shapes follow ``PLATFORM.md``: every record carries ``_id``,
``_timestamp`` and ``count``; ``transactions`` add ``stage`` and ``channel``,
``satisfaction`` adds ``rating`` and ``channel``, ``costs`` add ``period``,
``amount_pence``, ``channel`` and ``cost_type``.

The schemas are pydantic ``TypedDict`` models so a whole batch validates in one
call into pydantic-core (about 0.4 µs a record, against 2 µs for a model
instance each): validation runs on every record, in the background, without
becoming the SDK's cost.

Ids are what make retries, restarts and replays harmless: the platform upserts
by ``_id``, so a record sent twice is stored once. A record with a natural key
(a transaction's stage, a cost's period and type, an answer tied to a
transaction) gets an id derived from that key; any other gets 128 random bits,
drawn once when the record is built and kept with it on disk.
"""

from __future__ import annotations

import binascii
import calendar
import hashlib
import math
import os
import time
from collections.abc import Mapping
from datetime import date, datetime, timezone
from typing import Annotated, Any, Final, Literal

import pydantic
from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, with_config
from typing_extensions import NotRequired, TypedDict

from perf_sdk._errors import ValidationError
from perf_sdk._periods import PERIOD_RULE, PeriodLabel, month_label, parse_period_label
from perf_sdk._protocol import CHANNELS, SLUG_RE, STAGES, parse_timestamp, record_problems

__all__ = [
    "CostRecord",
    "PeriodLabel",
    "RecordBuilder",
    "SatisfactionRecord",
    "TransactionRecord",
    "parse_period_label",
    "unencodable_field",
    "validate_records",
]

Channel = Literal["digital", "phone", "paper", "face_to_face", "other"]
Count = Annotated[int, Field(strict=True, ge=1, le=1_000_000_000)]
RecordId = Annotated[str, StringConstraints(pattern=r"^\S+$", min_length=1, max_length=128)]
Timestamp = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:?\d{2})$")]


@with_config(ConfigDict(extra="allow"))
class TransactionRecord(TypedDict):
    """``transactions``: transactions started or completed in a channel."""

    _id: RecordId
    _timestamp: Timestamp
    count: Count
    stage: Literal["started", "completed"]
    channel: Channel
    period: NotRequired[Literal["hour", "day", "week", "month", "quarter", "year"]]


@with_config(ConfigDict(extra="allow"))
class SatisfactionRecord(TypedDict):
    """``satisfaction``: answers to the satisfaction question (5 = very satisfied)."""

    _id: RecordId
    _timestamp: Timestamp
    count: Count
    rating: Annotated[int, Field(strict=True, ge=1, le=5)]
    channel: Channel


@with_config(ConfigDict(extra="allow"))
class CostRecord(TypedDict):
    """``costs``: money spent on the service in a month, quarter or year."""

    _id: RecordId
    _timestamp: Timestamp
    count: Count
    period: Literal["month", "quarter", "year"]
    amount_pence: Annotated[int, Field(strict=True, ge=0, le=10**14)]
    channel: Literal["digital", "phone", "paper", "face_to_face", "other", "all"]
    cost_type: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$", max_length=64)]


# Extra fields (a before_send hook's enrichment) are kept, and checked by the platform's generic rules.
_ADAPTERS: Final[dict[str, TypeAdapter[Any]]] = {
    "transactions": TypeAdapter(list[TransactionRecord]),
    "satisfaction": TypeAdapter(list[SatisfactionRecord]),
    "costs": TypeAdapter(list[CostRecord]),
}
#: Keys a record of each type has without extras; a longer record has extras to check.
_BASE_KEYS: Final = {"transactions": 5, "satisfaction": 5, "costs": 7}

#: What each field accepts, in the words an error message should use.
_RULES: Final = {
    "count": "must be a positive whole number (1 for one event, N for N aggregated)",
    "stage": f"must be one of {', '.join(STAGES)}",
    "channel": f"must be one of {', '.join(CHANNELS)}",
    "rating": "must be a whole number from 1 (very dissatisfied) to 5 (very satisfied)",
    "amount_pence": "must be a whole, non-negative number of pence (e.g. 125000 for £1,250.00)",
    "cost_type": "must be a lower-case slug such as staff, it or accommodation",
    "period": PERIOD_RULE,
    "_timestamp": "must be an ISO 8601 date-time with a zone",
    "_id": "must be a non-empty string with no white space",
}
_COST_CHANNEL_RULE: Final = f"must be one of {', '.join(CHANNELS)}, or all"


def _error_from_pydantic(data_type: str, err: Mapping[str, Any]) -> ValidationError:
    loc = [p for p in err.get("loc", ()) if isinstance(p, str)]
    field = loc[-1] if loc else "record"
    if err.get("type") == "missing":
        return ValidationError(field, None, "is required")
    if err.get("type") == "extra_forbidden":
        return ValidationError(field, err.get("input"), "is not a field of " + data_type)
    rule = _RULES.get(field, err.get("msg", "is not valid"))
    if data_type == "costs" and field == "channel":
        rule = _COST_CHANNEL_RULE
    return ValidationError(field, err.get("input"), rule)


def unencodable_field(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first key or text value that UTF-8 cannot encode (a lone surrogate), as (field, printable value).

    WSGI servers decode undecodable request bytes with ``surrogateescape``, so
    such strings reach a service from ordinary input; JSON cannot carry them.
    The value is returned with the surrogate escaped, safe to log.
    """
    for key, value in record.items():
        for text in (key, value):
            if isinstance(text, str):
                try:
                    text.encode()
                except UnicodeEncodeError:
                    return str(key).encode("utf-8", "backslashreplace").decode(), text.encode(
                        "utf-8", "backslashreplace"
                    ).decode()
    return None


#: How far ahead of this machine's clock a record's time may be (clocks drift; a record from the future is a bug).
MAX_CLOCK_SKEW: Final = 300.0
FUTURE_RULE: Final = "must not be in the future (more than 5 minutes ahead of this machine's clock)"


def future_timestamps(records: list[dict[str, Any]], now: float | None = None) -> dict[int, ValidationError]:
    """Records whose ``_timestamp`` lies more than :data:`MAX_CLOCK_SKEW` ahead of ``now``, by index.

    A future time would land in a period that has not happened yet, and stay
    there unseen until it does. The SDK's own timestamps are UTC text compared
    as text (cheap: every record is checked); any other zone is parsed.
    """
    limit = (time.time() if now is None else now) + MAX_CLOCK_SKEW
    limit_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(limit))
    found: dict[int, ValidationError] = {}
    for i, record in enumerate(records):
        ts = record.get("_timestamp") if isinstance(record, dict) else None
        if not isinstance(ts, str) or len(ts) < 19:
            continue
        if ts.endswith(("+00:00", "Z")) and len(ts) <= 25:
            future = ts[:19] > limit_text
        else:
            moment = parse_timestamp(ts)
            future = moment is not None and moment.timestamp() > limit
        if future:
            found[i] = ValidationError("_timestamp", ts, FUTURE_RULE)
    return found


def validate_records(
    data_type: str, records: list[dict[str, Any]], *, now: float | None = None, check_future: bool = True
) -> tuple[list[dict[str, Any]], list[tuple[int, ValidationError]]]:
    """Validate a batch of one data type: (valid records, [(index, error)]).

    Known data types go through their pydantic schema; any other data type
    (``Tracker.record`` with a name of the service's own) through backdrop's
    generic rules, so nothing leaves the process that the platform would refuse.
    A record dated in the future (see :data:`MAX_CLOCK_SKEW`) is refused too;
    ``check_future=False`` skips that scan for records a :class:`RecordBuilder`
    made (it refuses a future time once per distinct second as it builds).
    """
    future = future_timestamps(records, now) if check_future else {}
    if not future:
        return _validate_shapes(data_type, records)
    kept = [i for i in range(len(records)) if i not in future]
    good, bad = _validate_shapes(data_type, [records[i] for i in kept])
    return good, sorted([(kept[j], error) for j, error in bad] + list(future.items()), key=lambda pair: pair[0])


def _validate_shapes(
    data_type: str, records: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[tuple[int, ValidationError]]]:
    adapter = _ADAPTERS.get(data_type)
    if adapter is None:
        good: list[dict[str, Any]] = []
        bad: list[tuple[int, ValidationError]] = []
        for i, rec in enumerate(records):
            problems = record_problems(rec)
            count = rec.get("count") if isinstance(rec, dict) else None
            if problems:
                bad.append((i, ValidationError("record", rec, "; ".join(problems))))
            elif type(count) is not int or not 1 <= count <= 1_000_000_000:
                # The same rule as the known types: a service's own data type is summed the same way.
                bad.append((i, ValidationError("count", count, _RULES["count"])))
            else:
                good.append(rec)
        return good, bad
    errors: dict[int, ValidationError] = {}
    base = _BASE_KEYS[data_type]
    for i, rec in enumerate(records):
        if len(rec) > base:
            problems = record_problems(rec)
            if problems:
                errors[i] = ValidationError("record", rec, "; ".join(problems))
    if not errors:
        try:
            return adapter.validate_python(records), []
        except pydantic.ValidationError as exc:
            for err in exc.errors():
                index = err["loc"][0] if err["loc"] else 0
                if isinstance(index, int) and index not in errors:
                    errors[index] = _error_from_pydantic(data_type, err)
    else:
        for i, rec in enumerate(records):
            if i not in errors:
                try:
                    adapter.validate_python([rec])
                except pydantic.ValidationError as exc:
                    errors[i] = _error_from_pydantic(data_type, exc.errors()[0])
    kept = [r for i, r in enumerate(records) if i not in errors]
    return adapter.validate_python(kept), sorted(errors.items())


# --- periods: what a label means lives in _periods.py; re-exported here for older imports ------------

# --- building records ---------------------------------------------------------------------------

_UTC: Final = timezone.utc
_AT_RULE: Final = "must be a timezone-aware datetime, e.g. datetime.now(timezone.utc)"


def _hmac_pads(key: bytes) -> tuple[Any, Any]:
    """SHA-256 of the key XOR ipad and of the key XOR opad: HMAC's two keyed states."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key))


class RecordBuilder:
    """Turns recording calls into platform records: hashes, ids, timestamps.

    Holds the service's secret, so its repr says nothing of it. Not thread-safe
    (its timestamp cache): one builder per thread that builds.
    """

    __slots__ = (
        "_id_base",
        "_id_prefix",
        "_inner",
        "_last",
        "_outer",
        "_secret",
        "_stage_ids",
        "sample_every",
        "service",
    )

    def __init__(self, service: str, secret: str | bytes | None, sample_every: int = 1) -> None:
        self.service = service
        #: Keep 1 in N transactions and answers, scaling their count by N (see Settings.sample_rate).
        self.sample_every = sample_every
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self._id_prefix = f"{service}\x1f".encode()
        # HMAC-SHA256 keyed once: the inner and outer hashes of the padded key are computed here and
        # copied per id (RFC 2104), all in C; hmac.new() re-derived them on every call, and hmac's own
        # copy() runs in Python. Hashing was the writer's largest single cost.
        pads = _hmac_pads(self._secret) if self._secret is not None else (None, None)
        self._inner: Any = pads[0]
        self._outer: Any = pads[1]
        self._id_base = hashlib.sha256(self._id_prefix)
        #: natural_id("transactions", stage, ...) with everything but the hashed id already hashed, per stage.
        self._stage_ids = {
            stage: hashlib.sha256(self._id_prefix + f"transactions\x1f{stage}\x1f".encode()) for stage in STAGES
        }
        #: (second, its text): one attribute, so threads sharing a builder never mix the two. NaN to
        #: start with, as no second equals it (-1 did: a time in the last second of 1969 got no text).
        self._last: tuple[float, str] = (math.nan, "")

    def __repr__(self) -> str:
        return f"RecordBuilder(service={self.service!r}, secret=<redacted>)"

    # ids ---------------------------------------------------------------------------------------
    def hash_transaction_id(self, transaction_id: object, field: str = "transaction_id") -> str:
        """HMAC-SHA256 of a transaction id, keyed with the service secret, as hex."""
        if isinstance(transaction_id, int) and not isinstance(transaction_id, bool):
            transaction_id = str(transaction_id)
        if not isinstance(transaction_id, str) or not transaction_id or len(transaction_id) > 1024:
            raise ValidationError(field, "<redacted>", "must be a non-empty string of at most 1024 characters")
        if self._secret is None:
            raise ValidationError(
                field, "<redacted>", "needs the service secret to be hashed (secret=... or PERF_SDK_SECRET)"
            )
        try:
            data = transaction_id.encode()
        except UnicodeEncodeError:
            raise ValidationError(
                field, "<redacted>", "must be valid Unicode text (it holds a lone surrogate)"
            ) from None
        inner, outer = self._inner.copy(), self._outer.copy()
        inner.update(data)
        outer.update(inner.digest())
        return str(outer.hexdigest())

    @property
    def ids_in_bulk(self) -> bool:
        """Whether :meth:`transaction_ids` can serve: a secret to hash with, and no sampling to decide."""
        return self._inner is not None and self.sample_every == 1

    def transaction_ids(self, stage: str, transaction_ids: list[str]) -> list[str | None]:
        """The ``_id`` of each ``transactions`` record of ``stage`` for these transaction ids, in one call.

        The same id as :meth:`transaction` gives (``natural_id("transactions", stage,
        hash_transaction_id(t))``), for ids the caller has checked are ``str`` of 1 to 1024
        characters; ``None`` in the place of one UTF-8 cannot encode (which
        :meth:`hash_transaction_id` refuses). The writer's loop: one frame for many
        records, not a call each. Only when :attr:`ids_in_bulk`.
        """
        icopy, ocopy, ncopy = self._inner.copy, self._outer.copy, self._stage_ids[stage].copy
        hexlify = binascii.hexlify
        ids: list[str | None] = []
        add = ids.append
        for transaction_id in transaction_ids:
            try:
                data = transaction_id.encode()
            except UnicodeEncodeError:
                add(None)
                continue
            inner = icopy()
            inner.update(data)
            outer = ocopy()
            outer.update(inner.digest())
            natural = ncopy()
            natural.update(hexlify(outer.digest()))
            add(natural.hexdigest()[:32])
        return ids

    def natural_id(self, *parts: str) -> str:
        """A deterministic 128-bit id from the service and a record's natural key."""
        digest = self._id_base.copy()  # sha256(service + separator + parts), the prefix hashed once
        digest.update("\x1f".join(parts).encode())
        return digest.hexdigest()[:32]

    @staticmethod
    def random_id() -> str:
        return os.urandom(16).hex()

    # time --------------------------------------------------------------------------------------
    def timestamp(self, at: object, field: str = "at") -> str:
        """Backdrop's ``_timestamp`` (UTC, whole seconds) from epoch seconds or an aware datetime."""
        if isinstance(at, float):
            if not math.isfinite(at):
                raise ValidationError(field, at, "must be a finite number of seconds since 1970, or " + _AT_RULE[8:])
            sec = math.floor(at)
        elif isinstance(at, datetime):
            if at.tzinfo is None or at.utcoffset() is None:
                raise ValidationError(field, at, _AT_RULE)
            try:
                sec = calendar.timegm(at.astimezone(_UTC).timetuple())
            except (OverflowError, ValueError):
                raise ValidationError(field, at, "is out of range (years 1000 to 9999)") from None
        elif isinstance(at, date):
            raise ValidationError(field, at, _AT_RULE + " (a date alone has no time or zone)")
        elif isinstance(at, int) and not isinstance(at, bool):
            sec = at
        else:
            raise ValidationError(field, at, _AT_RULE)
        last = self._last
        if last[0] == sec:
            return last[1]
        if sec > time.time() + MAX_CLOCK_SKEW:  # checked once per distinct second: a cached one passed already
            raise ValidationError(field, at, FUTURE_RULE)
        try:
            text = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(sec))
        except (OverflowError, OSError, ValueError):
            raise ValidationError(field, at, "is out of range") from None
        if not text[0].isdigit() or len(text) != 25:
            raise ValidationError(field, at, "must be between the years 1000 and 9999")
        self._last = (sec, text)
        return text

    # records -----------------------------------------------------------------------------------
    def _sample(self, hashed: str | None, count: object) -> object | None:
        """Sampling: the count to send (scaled by N), or ``None`` to leave the record out.

        The decision for a transaction rests on its hashed id, so its start, its
        completion and its answer are kept or left out together and completion
        rates stay exact; single events without an id are drawn at random;
        aggregates (``count`` > 1 without an id) are always kept as they are.
        """
        n = self.sample_every
        if hashed is not None:
            keep = int(hashed[:8], 16) % n == 0
        elif count == 1:
            keep = int.from_bytes(os.urandom(4), "big") % n == 0
        else:
            return count
        if not keep:
            return None
        return count * n if type(count) is int else count

    def _keyed(self, transaction_id: object, count: object) -> tuple[str | None, object] | None:
        """The hashed transaction id and the count to send; ``None`` when sampling leaves the record out."""
        hashed = None if transaction_id is None else self.hash_transaction_id(transaction_id)
        if self.sample_every > 1:
            count = self._sample(hashed, count)
            if count is None:
                return None
        return hashed, count

    def transaction(
        self, stage: str, transaction_id: object, channel: object, at: object, count: object
    ) -> dict[str, Any] | None:
        """A ``transactions`` record; ``None`` when sampling leaves it out."""
        # The common case (a string id, no sampling, a float time in a second already seen) in one frame:
        # the same id and record as the general path below, without its five calls. Anything else, and
        # anything that would be refused, takes the general path and its messages.
        if type(transaction_id) is str and self.sample_every == 1 and 0 < len(transaction_id) <= 1024:
            base, last = self._stage_ids.get(stage), self._last
            if base is not None and self._inner is not None and type(at) is float and last[0] <= at < last[0] + 1:
                # (the time test is False for NaN, the infinities and a second not yet seen)
                try:
                    data = transaction_id.encode()
                except UnicodeEncodeError:
                    pass
                else:
                    inner, outer, natural = self._inner.copy(), self._outer.copy(), base.copy()
                    inner.update(data)
                    outer.update(inner.digest())
                    natural.update(binascii.hexlify(outer.digest()))
                    return {
                        "_id": natural.hexdigest()[:32],
                        "_timestamp": last[1],
                        "count": count,
                        "stage": stage,
                        "channel": channel,
                    }
        keyed = self._keyed(transaction_id, count)
        if keyed is None:
            return None
        hashed, count = keyed
        rid = self.random_id() if hashed is None else self.natural_id("transactions", str(stage), hashed)
        return {"_id": rid, "_timestamp": self.timestamp(at), "count": count, "stage": stage, "channel": channel}

    def satisfaction(
        self, rating: object, transaction_id: object, channel: object, at: object, count: object
    ) -> dict[str, Any] | None:
        """A ``satisfaction`` record; ``None`` when sampling leaves it out."""
        keyed = self._keyed(transaction_id, count)
        if keyed is None:
            return None
        hashed, count = keyed
        rid = self.random_id() if hashed is None else self.natural_id("satisfaction", hashed)
        return {"_id": rid, "_timestamp": self.timestamp(at), "count": count, "rating": rating, "channel": channel}

    def cost(
        self,
        amount_pence: object,
        period: object,
        cost_type: object,
        channel: object,
        at: object,
        count: object,
    ) -> dict[str, Any]:
        if period is None:
            try:
                if isinstance(at, (int, float)) and not isinstance(at, bool):
                    moment = datetime.fromtimestamp(at, _UTC)
                else:
                    moment = _aware(at)
            except (OverflowError, OSError, ValueError):
                raise ValidationError("at", at, "is out of range (years 1970 to 9999)") from None
            period = month_label(moment)
        p = parse_period_label(period)
        rid = self.natural_id("costs", p.label, str(cost_type), str(channel))
        return {
            "_id": rid,
            "_timestamp": self.timestamp(p.start),
            "count": count,
            "period": p.granularity,
            "amount_pence": amount_pence,
            "channel": channel,
            "cost_type": cost_type,
        }

    def mark(self, label: object, description: object, at: object) -> dict[str, Any]:
        """A ``marks`` record: a change to the service, for before/after comparisons of its KPIs."""
        if not isinstance(label, str) or not label.strip() or len(label) > 200:
            raise ValidationError("label", label, "must be a non-empty text of at most 200 characters")
        if description is not None and (not isinstance(description, str) or len(description) > 2000):
            raise ValidationError("description", description, "must be a text of at most 2000 characters")
        timestamp = self.timestamp(at)
        record: dict[str, Any] = {
            "_id": self.natural_id("marks", label.strip(), timestamp),
            "_timestamp": timestamp,
            "count": 1,
            "label": label.strip(),
        }
        if description is not None:
            record["description"] = description
        return record

    def generic(self, data_type: str, fields: Mapping[str, Any], at: object, count: object) -> dict[str, Any] | None:
        """A record of a known data type from its fields, or of a service's own data type."""
        fields = dict(fields)
        txn = fields.pop("transaction_id", None)
        if data_type in ("transactions", "satisfaction"):
            if data_type == "transactions":
                built = self.transaction(fields.pop("stage", None), txn, fields.pop("channel", "digital"), at, count)
            else:
                built = self.satisfaction(fields.pop("rating", None), txn, fields.pop("channel", "digital"), at, count)
            return None if built is None else built | fields
        if data_type == "costs":
            return (
                self.cost(
                    fields.pop("amount_pence", None),
                    fields.pop("period", None),
                    fields.pop("cost_type", None),
                    fields.pop("channel", "all"),
                    at,
                    count,
                )
                | fields
            )
        if not SLUG_RE.match(data_type):
            raise ValidationError("data_type", data_type, "must be a lower-case slug, e.g. transactions")
        rid = self.natural_id(data_type, self.hash_transaction_id(txn)) if txn is not None else self.random_id()
        return {"_id": rid, "_timestamp": self.timestamp(at), "count": count} | fields


def _aware(at: object) -> datetime:
    if isinstance(at, datetime) and at.tzinfo is not None:
        return at
    raise ValidationError("at", at, _AT_RULE)
