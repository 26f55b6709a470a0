"""A history file's rows as the SDK's records: the values, the rejects and the ids.

The column contract (which column feeds which field) is decided first, by
:mod:`perf_sdk._backfill_columns`; this module reads the rows by it, a chunk at
a time, parsing each value with the parsers of :mod:`perf_sdk._backfill_readers`.

Ids make a backfill idempotent (API.md: "derives from the data set and the
row's content and position"). A record's ``_id`` is 32 hex digits: 8 naming the
run's source (SHA-256 of service, ``backfill``, data type, source name), 10 the
data row's number counted from the header (the header is row 1, whatever title
or notes rows sit above it: adding one changes no id, and a file whose header
is its first line keeps the ids earlier versions gave it), and 14 of the SHA-256 of all that plus the record's *key*: what the
record is about, normalised (its UTC ``_timestamp``, stage or rating, channel)
but not how many it counts. The row number in the middle keeps one file's ids
in ascending order, so the platform's id index grows at its end instead of
taking a random page per record (random ids halve the local platform's ingest
rate once its index outgrows the page cache). Running the same file
twice, or from two machines, stores each record once; a corrected *count* in
place replaces the old figure; two exports that share a file name never collide
unless they say the same thing on the same row. Rows that carry their own
identity use the Tracker's ids instead, so backfilled and live records agree: a
``transaction_id`` gives the Tracker's id for that transaction's start or
completion (or satisfaction answer), and a cost row the Tracker's cost id
(period label, cost type, channel), so a re-reported cost replaces the old one.

Ids are derived from the row alone, never from :data:`ORIGIN_FIELD`: the
engine (``_backfill``) marks each record it sends as backfilled, and a file
backfilled before records carried the mark upserts the same records when
run again, now marked.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any, Final

from perf_sdk._backfill_columns import ColumnPlan, channel_name, normalise_column
from perf_sdk._backfill_readers import BrokenRow, RawRow, parse_amount, parse_count, parse_rating, parse_when
from perf_sdk._errors import ConfigurationError, ValidationError
from perf_sdk._periods import parse_period_label
from perf_sdk._protocol import CHANNELS, STAGES
from perf_sdk._records import RecordBuilder

__all__ = [
    "BACKFILL_ORIGIN",
    "BLANK_COUNT_RULE",
    "FORMULA_RULE",
    "ORIGIN_FIELD",
    "TRANSACTION_ID_WITHHELD",
    "RowBuilder",
    "month_cell_label",
]

#: The field that tells a backfilled record from a live one (which has none), and its value on backfilled ones.
#: A plain field: the platform takes no ``_``-prefixed one but ``_id`` and ``_timestamp``.
ORIGIN_FIELD: Final = "origin"
BACKFILL_ORIGIN: Final = "backfill"

#: Why an Excel cell is blank when it holds a formula the program that saved the workbook did not calculate.
FORMULA_RULE: Final = (
    "is a formula with no saved value (the workbook was written by a program that does not calculate formulas): "
    "open the workbook in Excel and save it, or export the sheet to CSV, and run again"
)

#: What the reject file shows instead of a transaction id: ids leave the process only as HMACs.
TRANSACTION_ID_WITHHELD: Final = "<transaction id withheld>"
#: A ``"key": value`` pair of a JSON line, whole or cut short (a line that does not parse, or its first 80 characters).
_JSON_PAIR_RE: Final = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,}\]\s]*)')
_LINE_WITHHELD: Final = "<line withheld: its transaction id cannot be told apart from its other cells>"
_NESTED_RULE: Final = "is nested too deeply to read (a JSON object of plain values is expected)"

BLANK_COUNT_RULE: Final = (
    "is blank: a blank count means no data (or 0), not one event; write the number, or leave the row out"
)
_MONTHS: Final = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        1,
    )
    for name in names
}
_MONTH_NAME_RE: Final = re.compile(r"^([a-z]+)\.?[\s\-/]+(\d{4}|\d{2})$")

_GRANULARITIES: Final = frozenset({"hour", "day", "week", "month", "quarter", "year"})
_CHANNEL_RULE: Final = f"must be one of {', '.join(CHANNELS)}"
_COST_CHANNEL_RULE: Final = _CHANNEL_RULE + ", or all"
_STAGE_RULE: Final = f"must be one of {', '.join(STAGES)}"
_COST_TYPE_RE: Final = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
_CACHE_LIMIT: Final = 100_000
_FAST_ISO_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}[T ](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:Z|z|\+00:00)?$")
_UNSET: Final = object()
_sha256: Final = hashlib.sha256


def _present(value: Any) -> bool:
    return value is not None and (not isinstance(value, str) or bool(value.strip()))


class RowBuilder:
    """Builds a chunk of rows into records; what a row breaks becomes a reject, not an exception.

    Plain Python and caches on purpose: this is the backfill's hot loop. A
    timestamp, a channel or a stage is parsed once per distinct text, not once
    per row (history files repeat them), and a row is a dict for only as long
    as it takes to read it.
    """

    def __init__(
        self,
        plan: ColumnPlan,
        builder: RecordBuilder,
        *,
        source_name: str,
        zone: tzinfo,
        amount_unit: str = "pence",
        serials: bool = False,
        ignore_extra: bool = False,
        can_hash: bool = True,
        header_row: int = 1,
    ) -> None:
        self.plan = plan
        self.builder = builder
        self.zone = zone
        self.amount_unit = amount_unit
        self.serials = serials
        self.ignore_extra = ignore_extra
        self.can_hash = can_hash
        self.data_type = plan.data_type
        #: Rows above the header (a title, notes, blank lines): ids number data rows from the header,
        #: so adding or removing a title row changes no id.
        self._above = header_row - 1
        self._prefix = f"{builder.service}\x1fbackfill\x1f{plan.data_type}\x1f{source_name}\x1f".encode()
        self._run = hashlib.sha256(self._prefix).hexdigest()[:8]
        self._when: dict[Any, str] = {}
        self._channels: dict[Any, str] = {}
        self._stages: dict[Any, str] = {}
        self._labels: dict[Any, tuple[str, str, str]] = {}
        self._offsets: dict[str, Any] = {}
        self._ratings: dict[Any, int] = {}
        #: Each cost's natural key -> the data row that gave it: a second row with the same key would replace
        #: the first on the platform (one cost per period, type and channel), so it is refused instead.
        self._costs_seen: dict[str, int] = {}
        self._days: dict[str, bool] = {}
        self._items = [(f, k) for f, k in plan.keys.items()]
        self._key_fields: dict[Any, str | None] = {}
        keys = plan.keys
        self._fast: tuple[int, int, int, int | None, str, dict[Any, Any]] | None = None
        if (
            plan.shape == "narrow"
            and plan.data_type in ("transactions", "satisfaction")
            and isinstance(keys.get("timestamp"), int)
            and "transaction_id" not in keys
            and "period" not in keys
        ):
            key_field = "stage" if plan.data_type == "transactions" else "rating"
            self._fast = (
                keys["timestamp"],
                keys[key_field],
                keys["channel"],
                keys.get("count"),
                key_field,
                self._stages if key_field == "stage" else self._ratings,
            )
        self._build: Callable[[int, RawRow], dict[str, Any] | list[dict[str, Any]]]
        if plan.shape == "wide-transactions":
            self._build = self._wide_transactions
        elif plan.shape == "wide-satisfaction":
            self._build = self._wide_satisfaction
        else:
            self._build = {
                "transactions": self._transactions,
                "satisfaction": self._satisfaction,
                "costs": self._costs,
            }[plan.data_type]

    # -- reading a row ----------------------------------------------------------------------
    def fields(self, raw: RawRow) -> dict[str, Any]:
        """The row's values by field (absent or blank cells left out, but a blank count kept to be refused)."""
        if isinstance(raw, list):
            return self._list_fields(raw)
        if isinstance(raw, BrokenRow):
            raise ValidationError("row", None, raw.rule)
        if isinstance(raw, str):
            obj = _json_line(raw)
            if not isinstance(obj, dict):
                raise ValidationError("row", raw.strip()[:80], "must be a JSON object")
            raw = obj
        if not isinstance(raw, Mapping):
            raise ValidationError("row", raw, "must be a mapping of column to value")
        return self._mapping_fields(raw)

    def _list_fields(self, raw: list[Any]) -> dict[str, Any]:
        width = self.plan.width
        if len(raw) > width and any(_present(v) for v in raw[width:]):
            raise ValidationError(
                "row", len(raw), f"has {len(raw)} cells but the header has {width} (a delimiter inside a value?)"
            )
        n = len(raw)
        out = {}
        for f, k in self._items:
            v = raw[k] if k < n else None
            if v is not None and v != "":
                out[f] = v
            elif f == "count":
                out[f] = ""  # a blank count is refused, never read as 1
        return out

    def _mapping_fields(self, raw: Mapping[Any, Any]) -> dict[str, Any]:
        out = {}
        names = self._key_fields
        for key, value in raw.items():
            name = names.get(key)
            if name is None:
                name = names[key] = self.plan.field_for(str(key))
            if name is None:
                raise ValidationError(
                    str(key),
                    value,
                    f"is not a column of {self.data_type}; rename it with --map SOURCE=FIELD or pass --ignore-extra",
                )
            if name and _present(value):
                out[name] = value
            elif name == "count":
                out[name] = ""  # a blank count is refused, never read as 1
        return out

    @staticmethod
    def cell(raw: RawRow, key: Any) -> Any:
        if isinstance(raw, list):
            return raw[key] if key < len(raw) else None
        return raw.get(key) if isinstance(raw, Mapping) else None

    @staticmethod
    def parsed(raw: RawRow) -> RawRow:
        """A JSON line as its object (once, for the wide shapes that read it twice)."""
        if isinstance(raw, BrokenRow):
            raise ValidationError("row", None, raw.rule)
        if isinstance(raw, str):
            return _json_line(raw)
        return raw

    # -- the reject file ----------------------------------------------------------------------
    def without_transaction_id(self, raw: RawRow) -> RawRow:
        """``raw`` with its transaction id replaced by :data:`TRANSACTION_ID_WITHHELD`, to echo in the reject file.

        Transaction ids leave the process only as HMACs; an operator fixing a
        row has its row number, every other cell and the rule, which is enough.
        A JSON line is rewritten only when it holds an id (and, when it does not
        parse, every ``"key": value`` pair of a transaction id column is).
        """
        if isinstance(raw, list):
            k = self.plan.keys.get("transaction_id")
            if isinstance(k, int) and k < len(raw) and _present(raw[k]):
                raw = list(raw)
                raw[k] = TRANSACTION_ID_WITHHELD
            return raw
        if isinstance(raw, BrokenRow):
            return self._broken_without_transaction_id(raw)
        if isinstance(raw, Mapping):
            keys = [key for key in raw if self._is_transaction_id(key)]
            return {key: TRANSACTION_ID_WITHHELD if key in keys else v for key, v in raw.items()} if keys else raw
        if isinstance(raw, str):
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError):
                obj = None
            if isinstance(obj, dict):
                keys = [key for key in obj if self._is_transaction_id(key)]
                if not keys:
                    return raw
                with contextlib.suppress(ValueError, RecursionError):
                    return json.dumps(
                        {key: TRANSACTION_ID_WITHHELD if key in keys else v for key, v in obj.items()},
                        ensure_ascii=False,
                    )
            return _JSON_PAIR_RE.sub(self._withhold_pair, raw)
        return raw

    def _broken_without_transaction_id(self, raw: BrokenRow) -> BrokenRow:
        """A broken line's transaction id cell withheld; the whole line when its cells cannot be told apart."""
        k = self.plan.keys.get("transaction_id")
        if k is None:
            return raw
        cells = next(csv.reader([raw.text], delimiter=raw.delimiter), [])
        if not isinstance(k, int) or k >= len(cells):  # swallowed by the quote, if there at all
            return dataclasses.replace(raw, text=_LINE_WITHHELD)
        tid = cells[k].strip()
        if not tid:
            return raw
        if len(tid) >= 4 and raw.text.count(tid) == 1:
            return dataclasses.replace(raw, text=raw.text.replace(tid, TRANSACTION_ID_WITHHELD))
        return dataclasses.replace(raw, text=_LINE_WITHHELD)

    def column_of(self, field_name: str) -> int | None:
        """The index of the column a field was read from (CSV and Excel), or ``None``."""
        key = self.plan.keys.get(field_name)
        return key if isinstance(key, int) else None

    def reject_value(self, error: ValidationError) -> Any:
        """The ``value`` column of a reject: the value as read, except a transaction id (see above)."""
        if error.field == "transaction_id":
            return TRANSACTION_ID_WITHHELD
        if error.field == "row" and isinstance(error.value, str):
            return _JSON_PAIR_RE.sub(self._withhold_pair, error.value)
        return error.value

    def _is_transaction_id(self, key: Any) -> bool:
        name = self._key_fields.get(key)
        if name is None:
            name = self.plan.field_for(str(key))
        return name == "transaction_id"

    def _withhold_pair(self, m: re.Match[str]) -> str:
        if not self._is_transaction_id(m.group(1)):
            return m.group(0)
        return f'"{m.group(1)}"{m.group(2)}"{TRANSACTION_ID_WITHHELD}"'

    # -- the chunk --------------------------------------------------------------------------
    def build(
        self, rows: Sequence[tuple[int, RawRow]]
    ) -> tuple[list[dict[str, Any]], list[int], list[tuple[int, ValidationError]]]:
        """``(records, row index of each record, [(row index, error)])`` for a chunk of rows."""
        records: list[dict[str, Any]] = []
        owners: list[int] = []
        rejects: list[tuple[int, ValidationError]] = []
        build = self._build
        append, own = records.append, owners.append
        slow: Sequence[tuple[int, tuple[int, RawRow]]] = (
            self._fast_chunk(rows, records, owners) if self._fast is not None else list(enumerate(rows))
        )
        above = self._above
        for index, (number, raw) in slow:
            try:
                built = build(number - above, raw)
            except ValidationError as exc:
                rejects.append((index, exc))
                continue
            if isinstance(built, dict):
                append(built)
                own(index)
            else:
                for record in built:
                    append(record)
                    own(index)
        if slow and self._fast is not None:  # slow rows were appended after the fast ones: restore file order
            order = sorted(range(len(records)), key=owners.__getitem__)
            records[:] = [records[i] for i in order]
            owners[:] = [owners[i] for i in order]
        if len(self._when) > _CACHE_LIMIT:
            self._when.clear()
        if len(self._offsets) > _CACHE_LIMIT or len(self._days) > _CACHE_LIMIT:
            self._offsets.clear()
            self._days.clear()
        return records, owners, rejects

    def _fast_chunk(
        self, rows: Sequence[tuple[int, RawRow]], records: list[dict[str, Any]], owners: list[int]
    ) -> list[tuple[int, tuple[int, RawRow]]]:
        """The common case of a narrow CSV transactions or satisfaction file, inlined.

        Every value is looked up in the caches the general path fills
        (channel, stage, rating text) or read by the ISO fast path; a row with
        anything else (a first-seen value, an error, an odd time) is left for
        the general path, which decides and explains. Same records, same ids,
        about twice as fast.
        """
        assert self._fast is not None
        ti, ki, ci, ni, field_name, keys = self._fast
        width = self.plan.width
        when = self._when
        channels = self._channels
        fast_iso = self._fast_iso
        prefix, run, sha = self._prefix, self._run, _sha256
        append, own = records.append, owners.append
        above = self._above
        slow: list[tuple[int, tuple[int, RawRow]]] = []
        for index, item in enumerate(rows):
            number, row = item
            number -= above
            try:
                if type(row) is not list or len(row) != width:
                    raise LookupError
                t = row[ti]
                ts = when.get(t)
                if ts is None:
                    ts = fast_iso(t)
                    if ts is None:
                        raise LookupError
                key = keys[row[ki]]
                channel = channels[row[ci]]
                if ni is None:
                    count = 1
                else:
                    c = row[ni]
                    if c.isdigit():
                        count = int(c)
                        if not 0 < count <= 1_000_000_000:
                            raise LookupError
                    else:
                        raise LookupError
            except (LookupError, TypeError, AttributeError):  # a typed (Excel) cell, or anything unusual
                slow.append((index, item))
                continue
            digest = sha(prefix + f"{number}\x1f{ts}\x1f{key}\x1f{channel}".encode()).hexdigest()
            append(
                {
                    "_id": f"{run}{number:010x}{digest[:14]}",
                    "_timestamp": ts,
                    "count": count,
                    field_name: key,
                    "channel": channel,
                }
            )
            own(index)
        return slow

    # -- values -----------------------------------------------------------------------------
    def _timestamp(self, value: Any) -> str:
        try:
            return self._when[value]
        except (KeyError, TypeError):
            pass
        if type(value) is str:
            text = self._fast_iso(value)
            if text is not None:
                return text  # not cached: a unique time a row is the common case here
        text = self.builder.timestamp(parse_when(value, self.zone, serials=self.serials), field="timestamp")
        with contextlib.suppress(TypeError):  # an unhashable cell is simply not cached
            self._when[value] = text
        return text

    def _fast_iso(self, value: str) -> str | None:
        """``YYYY-MM-DD[T ]HH:MM:SS`` with ``Z``, ``+00:00`` or no zone, without the general parser.

        Files of events have a distinct time on every row, so this is the hot
        path: whole seconds, UTC or the local zone outside the hour of a clock
        change (the offset is looked up once per hour of data, a date checked
        once per day). Anything else returns ``None`` for :func:`parse_when`.
        """
        if _FAST_ISO_RE.match(value) is None:
            return None
        day = value[:10]
        ok = self._days.get(day)
        if ok is None:
            try:
                ok = date.fromisoformat(day).year >= 1000
            except ValueError:
                ok = False
            self._days[day] = ok
        if not ok:
            return None
        tail = value[19:]
        if tail == "":
            hour = value[:13]
            offset = self._offsets.get(hour, _UNSET)
            if offset is _UNSET:
                offset = self._offsets[hour] = self._hour_offset(datetime.fromisoformat(hour + ":00:00"))
            if offset is None:
                return None
            if offset:
                moment = datetime.fromisoformat(value) - offset
                return None if moment.year < 1000 else moment.isoformat() + "+00:00"
        elif tail not in ("Z", "+00:00", "z"):
            return None
        return f"{day}T{value[11:19]}+00:00"

    def _hour_offset(self, moment: datetime) -> timedelta | None:
        """The local zone's UTC offset for a whole wall-clock hour, or ``None`` if it changes within it."""
        if self.zone is timezone.utc:
            return timedelta(0)
        first = moment.replace(minute=0, second=0, tzinfo=self.zone, fold=0)
        last = moment.replace(minute=59, second=59, tzinfo=self.zone, fold=0)
        a, b = first.utcoffset(), last.utcoffset()
        a1 = first.replace(fold=1).utcoffset()
        b1 = last.replace(fold=1).utcoffset()
        if a is None or not a == b == a1 == b1:
            return None  # a clock change (gap or repeat) in this hour: the general parser decides
        return a

    def _channel(self, value: Any, *, costs: bool = False) -> str:
        try:
            return self._channels[value]
        except (KeyError, TypeError):
            pass
        name = normalise_column(value) if isinstance(value, str) else None
        text = "all" if costs and name == "all" else (channel_name(name) if name is not None else None)
        if text is None:
            raise ValidationError("channel", value, _COST_CHANNEL_RULE if costs else _CHANNEL_RULE)
        self._channels[value] = text
        return text

    def _stage(self, value: Any) -> str:
        try:
            return self._stages[value]
        except (KeyError, TypeError):
            pass
        text = value.strip().lower() if isinstance(value, str) else None
        if text not in STAGES:
            raise ValidationError("stage", value, _STAGE_RULE)
        self._stages[value] = text
        return text

    def _label(self, value: Any) -> tuple[str, str, str]:
        """A period label's (label, granularity, start as ``_timestamp``)."""
        try:
            return self._labels[value]
        except (KeyError, TypeError):
            pass
        p = parse_period_label(month_cell_label(value, self.zone))
        out = (p.label, p.granularity, self.builder.timestamp(p.start))
        self._labels[value] = out
        return out

    def _hash(self, number: int, transaction_id: Any) -> str:
        """A transaction id's HMAC, or a :class:`ConfigurationError` that stops the run when there is no secret.

        Not a reject: every later row with an id would fail the same way, and
        the fix is a flag, not the file.
        """
        if not self.can_hash:
            raise ConfigurationError(
                f"no secret: row {number + self._above} has a transaction_id, and transaction ids are sent only as HMAC-SHA256 "
                "hashes keyed with the service's secret: pass --secret or set PERF_SDK_SECRET (secret= in Python)"
            )
        return self.builder.hash_transaction_id(_tid(transaction_id))

    def _id(self, number: int, *key: str) -> str:
        digest = _sha256(self._prefix + "\x1f".join((str(number), *key)).encode()).hexdigest()
        return f"{self._run}{number:010x}{digest[:14]}"

    def _when_and_period(self, f: Mapping[str, Any]) -> tuple[str, str | None]:
        """A transactions row's time and optional granularity: from ``timestamp``, or a ``period`` label."""
        period = f.get("period")
        granularity = None
        if period is not None:
            text = period.strip().lower() if isinstance(period, str) else period
            if text in _GRANULARITIES:
                granularity = text
            elif "timestamp" not in f:
                _, granularity, ts = self._label(period)
                return ts, granularity
            else:
                raise ValidationError(
                    "period", period, "must be hour, day, week, month, quarter or year (or a label such as 2026-03)"
                )
        ts_value = f.get("timestamp")
        if ts_value is None:
            raise ValidationError("timestamp", None, "is required (or a period label such as 2026-03)")
        return self._timestamp(ts_value), granularity

    # -- record builders, one per data type and shape ----------------------------------------
    def _transactions(self, number: int, raw: RawRow) -> dict[str, Any]:
        f = self.fields(raw)
        if "period" in f:
            ts, granularity = self._when_and_period(f)
        else:
            ts_value = f.get("timestamp")
            if ts_value is None:
                raise ValidationError("timestamp", None, "is required")
            ts, granularity = self._timestamp(ts_value), None
        stage = f.get("stage")
        stage = self._stage(stage) if stage is not None else _missing("stage")
        channel = f.get("channel")
        channel = self._channel(channel) if channel is not None else _missing("channel")
        count = _count(f)
        tid = f.get("transaction_id")
        if tid is not None:
            rid = self.builder.natural_id("transactions", stage, self._hash(number, tid))
        else:
            digest = _sha256(self._prefix + f"{number}\x1f{ts}\x1f{stage}\x1f{channel}".encode()).hexdigest()
            rid = f"{self._run}{number:010x}{digest[:14]}"
        record = {"_id": rid, "_timestamp": ts, "count": count, "stage": stage, "channel": channel}
        if granularity is not None:
            record["period"] = granularity
        return record

    def _satisfaction(self, number: int, raw: RawRow) -> dict[str, Any]:
        f = self.fields(raw)
        ts_value = f.get("timestamp")
        ts = self._timestamp(ts_value) if ts_value is not None else _missing("timestamp")
        rating_value = f.get("rating")
        rating = parse_rating(rating_value) if rating_value is not None else _missing("rating")
        if type(rating_value) is str and len(self._ratings) < 100:
            self._ratings[rating_value] = rating
        channel = f.get("channel")
        channel = self._channel(channel) if channel is not None else _missing("channel")
        count = _count(f)
        tid = f.get("transaction_id")
        if tid is not None:
            rid = self.builder.natural_id("satisfaction", self._hash(number, tid))
        else:
            rid = self._id(number, ts, str(rating), channel)
        return {"_id": rid, "_timestamp": ts, "count": count, "rating": rating, "channel": channel}

    def _costs(self, number: int, raw: RawRow) -> dict[str, Any]:
        f = self.fields(raw)
        if "timestamp" in f:
            raise ValidationError(
                "timestamp",
                f["timestamp"],
                "a cost row names its period in period (2026-Q1, 2026-03, 2026), not a time",
            )
        period = f.get("period")
        label, granularity, ts = self._label(period) if period is not None else _missing("period")
        amount = f.get("amount_pence")
        pence = parse_amount(amount, self.amount_unit) if amount is not None else _missing("amount_pence")
        cost_type = f.get("cost_type")
        if cost_type is None:
            _missing("cost_type")
        cost_type = str(cost_type).strip().lower()
        if not _COST_TYPE_RE.match(cost_type) or len(cost_type) > 64:
            raise ValidationError(
                "cost_type", f.get("cost_type"), "must be a lower-case slug such as staff, it or accommodation"
            )
        channel = f.get("channel")
        channel = "all" if channel is None else self._channel(channel, costs=True)
        count = _count(f)
        rid = self.builder.natural_id("costs", label, cost_type, channel)
        first = self._costs_seen.setdefault(rid, number)
        if first != number:
            raise ValidationError(
                "cost_type",
                cost_type,
                f"row {first + self._above} is already the {cost_type} cost of {label} "
                f"({'all channels' if channel == 'all' else channel}): the platform keeps one cost per period, "
                "cost type and channel, so this row would replace that one; add them up into one row, or give "
                "them different cost types",
            )
        return {
            "_id": rid,
            "_timestamp": ts,
            "count": count,
            "period": granularity,
            "amount_pence": pence,
            "channel": channel,
            "cost_type": cost_type,
        }

    def _wide_transactions(self, number: int, raw: RawRow) -> list[dict[str, Any]]:
        raw = self.parsed(raw)
        f = self.fields(raw)
        ts, granularity = self._when_and_period(f)
        stage = f.get("stage")
        stage = "completed" if stage is None else self._stage(stage)
        out = []
        total = 0
        for channel, key in self.plan.cells:
            value = self.cell(raw, key)
            if not _present(value):
                continue
            count = parse_count(value, field=f"channel_{channel}", zero=True)
            total += count
            if count:
                record = {
                    "_id": self._id(number, ts, stage, channel),
                    "_timestamp": ts,
                    "count": count,
                    "stage": stage,
                    "channel": channel,
                }
                if granularity is not None:
                    record["period"] = granularity
                out.append(record)
        stated = f.get("total")
        if stated is not None and parse_count(stated, field="total", zero=True) != total:
            channels = " + ".join(str(c) for c, _ in self.plan.cells)
            raise ValidationError("total", stated, f"must equal {channels} ({total})")
        return out

    def _wide_satisfaction(self, number: int, raw: RawRow) -> list[dict[str, Any]]:
        raw = self.parsed(raw)
        f = self.fields(raw)
        if "timestamp" in f:
            ts = self._timestamp(f["timestamp"])
        elif "period" in f:
            ts = self._label(f["period"])[2]
        else:
            ts = _missing("timestamp")
        channel = f.get("channel")
        channel = "digital" if channel is None else self._channel(channel)
        out = []
        total = 0
        for rating, key in self.plan.cells:
            value = self.cell(raw, key)
            if not _present(value):
                continue
            count = parse_count(value, field=f"rating_{rating}", zero=True)
            total += count
            if count:
                out.append(
                    {
                        "_id": self._id(number, ts, str(rating), channel),
                        "_timestamp": ts,
                        "count": count,
                        "rating": rating,
                        "channel": channel,
                    }
                )
        stated = f.get("total")
        if stated is not None and parse_count(stated, field="total", zero=True) != total:
            raise ValidationError("total", stated, f"must equal rating_1 + ... + rating_5 ({total})")
        return out


def _json_line(raw: str) -> Any:
    """A JSON line's value; a line that is not JSON, or nested past Python's recursion limit, is a reject."""
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValidationError("row", raw.strip()[:80], f"must be a JSON object ({exc})") from None
    except RecursionError:
        raise ValidationError("row", raw.strip()[:80], _NESTED_RULE) from None


def _missing(field_name: str) -> Any:
    raise ValidationError(field_name, None, "is required")


def _tid(value: Any) -> Any:
    # Spreadsheet cells hold numeric ids as floats (12345.0): hash them as the text a service logged.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value.strip() if isinstance(value, str) else value


def _count(f: Mapping[str, Any]) -> int:
    """A narrow row's count: 1 without a count column (a row is an event), never 1 for a blank cell in one."""
    if "count" not in f:
        return 1
    value = f["count"]
    if not _present(value):
        raise ValidationError("count", "" if value is None else value, BLANK_COUNT_RULE)
    return parse_count(value)


def month_cell_label(value: Any, zone: tzinfo) -> Any:
    """A ``Month`` cell as a period label: a date (an Excel cell) or ``April 2026`` / ``Apr-26`` → ``2026-04``.

    Anything else comes back as it was, for :func:`perf_sdk._periods.parse_period_label` (what a
    label means has one home there) to read or refuse.
    """
    if isinstance(value, datetime):
        moment = value.astimezone(zone) if value.tzinfo is not None else value
        return f"{moment.year:04d}-{moment.month:02d}"
    if isinstance(value, date):
        return f"{value.year:04d}-{value.month:02d}"
    if isinstance(value, str):
        m = _MONTH_NAME_RE.match(value.strip().lower())
        if m is not None and m.group(1) in _MONTHS:
            year = int(m.group(2))
            year = year + 2000 if year < 100 else year
            return f"{year:04d}-{_MONTHS[m.group(1)]:02d}"
    return value
