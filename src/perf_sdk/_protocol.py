"""The Performance Platform's wire rules, as backdrop enforces them.

One place for the facts both ends share. Two strengths, on purpose:

* :func:`record_problems` and :data:`TIMESTAMP_RE` are what the **SDK sends**:
  the strict form (whole seconds, a zone, no nulls), which every platform takes.
  The SDK's tests check that every record its models accept passes it.
* :func:`platform_record_problems` and :func:`parse_lenient_timestamp` are what
  a **platform accepts** from any client, as backdrop does (it parses with
  dateutil): fractions of a second, a naive time (UTC), a space for ``T``, a
  date alone (midnight UTC), ``+HHMM``, ``null`` values, and its time-chunk
  fields ``_start_at`` / ``_end_at``. alphagov's performanceplatform-client
  sends ``datetime.isoformat()``, microseconds included.

Names (keys, data-group and data-type slugs) are ASCII and matched whole:
the patterns end in ``\\Z``, not ``$`` (which lets a trailing newline through),
so ``.match()`` and ``.fullmatch()`` agree; a key is ASCII before it is
lower-cased (:func:`key_ok`). A platform also bounds lengths backdrop left
to its database: names :data:`MAX_SLUG_CHARS`, ids :data:`MAX_ID_CHARS`
(:func:`platform_name_problem`, :func:`platform_record_problems`); the SDK
sends short slugs and 64-character hash ids. Source: alphagov/backdrop
``backdrop/core/validation.py`` and ``backdrop/write/api.py`` (see
``shared/spec/PLATFORM.md``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Final

__all__ = [
    "CHANNELS",
    "COST_PERIODS",
    "DATA_TYPES",
    "KEY_RE",
    "MAX_ID_CHARS",
    "MAX_SLUG_CHARS",
    "SLUG_RE",
    "STAGES",
    "TIMESTAMP_RE",
    "has_lone_surrogate",
    "key_ok",
    "parse_lenient_timestamp",
    "parse_timestamp",
    "platform_name_problem",
    "platform_record_problems",
    "record_problems",
]

#: A key, lower-cased, must match this whole (so at least two characters, ASCII only).
KEY_RE: Final = re.compile(r"\A[a-z_][a-z0-9_]+\Z", re.ASCII)
#: Data-group and data-type names, matched whole, ASCII only.
SLUG_RE: Final = re.compile(r"\A[a-z0-9]+(?:-[a-z0-9]+)*\Z", re.ASCII)
#: The longest data-group or data-type name a platform takes: backdrop's slugs are short
#: (``apply-for-a-licence``), and a name is a path segment, a file name and a page title.
MAX_SLUG_CHARS: Final = 64
#: The longest ``_id`` a platform takes: ids are keys, stored and indexed once per record.
MAX_ID_CHARS: Final = 256
#: What the SDK sends: ISO 8601 date-time in whole seconds with a zone (``Z``, ``+HH:MM``
#: or ``+HHMM``). Backdrop accepts more (see :func:`parse_lenient_timestamp`); this is the
#: form every platform takes and the one the SDK's records keep.
TIMESTAMP_RE: Final = re.compile(r"\A(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(Z|[+-]\d{2}:?\d{2})\Z", re.ASCII)
#: What a platform accepts: a date, optionally a time (``T`` or a space) with optional
#: seconds and fraction, optionally a zone (``Z``, ``+HH:MM``, ``+HHMM``, ``+HH``).
LENIENT_TIMESTAMP_RE: Final = re.compile(
    r"\A(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?\Z",
    re.ASCII,
)
#: The only internal (underscore) keys the SDK sends.
ALLOWED_INTERNAL_KEYS: Final = frozenset({"_timestamp", "_id"})
#: The internal keys a platform accepts: backdrop's reserved keywords.
PLATFORM_INTERNAL_KEYS: Final = frozenset({"_timestamp", "_id", "_start_at", "_end_at"})
#: The time fields a platform parses leniently.
PLATFORM_TIME_KEYS: Final = ("_timestamp", "_start_at", "_end_at")

CHANNELS: Final = ("digital", "phone", "paper", "face_to_face", "other")
STAGES: Final = ("started", "completed")
COST_PERIODS: Final = ("month", "quarter", "year")
DATA_TYPES: Final = ("transactions", "satisfaction", "costs")


def parse_timestamp(text: str) -> datetime | None:
    """Parse a backdrop ``_timestamp``; ``None`` when it is not one (format or date)."""
    m = TIMESTAMP_RE.match(text) if text.isascii() else None
    if m is None:
        return None
    zone = m.group(7)
    if zone != "Z" and ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    iso = text[: m.start(7)] + ("+00:00" if zone == "Z" else zone)
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        return None


def parse_lenient_timestamp(text: str) -> datetime | None:
    """Parse a time as backdrop accepts it from any client; ``None`` when it is not one.

    Zone-aware result: a naive time is UTC, a date alone is midnight UTC, a
    fraction is kept to the microsecond (digits past the sixth are dropped).

    >>> parse_lenient_timestamp("2024-01-15T10:00:00.250Z").isoformat()
    '2024-01-15T10:00:00.250000+00:00'
    >>> parse_lenient_timestamp("2024-01-15").isoformat()
    '2024-01-15T00:00:00+00:00'
    >>> parse_lenient_timestamp("2024-01-15 10:00:00+0100").isoformat()
    '2024-01-15T10:00:00+01:00'
    """
    m = LENIENT_TIMESTAMP_RE.match(text) if text.isascii() else None
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    tz = timezone.utc
    if zone and zone not in ("Z", "z"):
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or 0)
        if hours > 23 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-offset if zone[0] == "-" else offset)
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError:
        return None


def key_ok(key: object) -> bool:
    """Whether ``key`` is a valid record key: ASCII first, then :data:`KEY_RE` on it lower-cased.

    ASCII first, because ``str.lower`` maps some non-ASCII letters into ASCII
    (the Kelvin sign ``"\\u212a"`` lower-cases to ``"k"``): the rule holds for the
    key as sent, not only for its lower-cased form.

    >>> key_ok("Count"), key_ok("\\u212a\\u212a"), key_ok("a")
    (True, False, False)
    """
    return isinstance(key, str) and key.isascii() and KEY_RE.fullmatch(key.lower()) is not None


def platform_name_problem(what: str, name: str) -> str | None:
    """Why a platform refuses ``name`` as a data group or type (``what`` says which); ``None`` when valid.

    >>> platform_name_problem("data group", "apply-for-a-licence") is None
    True
    >>> platform_name_problem("data type", "x" * 65)
    'the data type name is 65 characters long; the most is 64'
    """
    if len(name) > MAX_SLUG_CHARS:
        return f"the {what} name is {len(name)} characters long; the most is {MAX_SLUG_CHARS}"
    if not SLUG_RE.fullmatch(name):
        return f"the {what} name {name!r} is not a slug: lower-case ASCII letters and digits, joined by single -"
    return None


def has_lone_surrogate(text: str) -> bool:
    """Whether UTF-8 cannot encode ``text`` (a lone surrogate such as ``"caf\\udce9"``).

    JSON's ``\\udce9`` escape decodes to one; a platform that stored it could
    not write it back out, and every later read of the data set would fail.
    """
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


#: Keys already found valid: a platform sees the same few keys millions of times.
_GOOD_KEYS: set[str] = set()
_WHITESPACE: Final = re.compile(r"\s")
_SCALARS: Final = (str, int, float, bool)


@functools.lru_cache(maxsize=65_536)
def _timestamp_ok(text: str) -> bool:
    return parse_timestamp(text) is not None


def record_problems(record: Any) -> list[str]:
    """Every reason backdrop would refuse ``record``; an empty list means valid.

    Hot on the platform's write path (every record of every batch), hence the
    caches: key verdicts and timestamp verdicts repeat across records.
    """
    if not isinstance(record, Mapping):
        return [f"record must be a JSON object, got {type(record).__name__}"]
    problems: list[str] = []
    for key, value in record.items():
        if key not in _GOOD_KEYS:
            if not key_ok(key):
                problems.append(f"{key!r} is not a valid key")
                continue
            if key.startswith("_") and key not in ALLOWED_INTERNAL_KEYS:
                problems.append(f"{key!r} is not a recognised internal field")
                continue
            if len(_GOOD_KEYS) < 4096:
                _GOOD_KEYS.add(key)
        kind = type(value)
        if kind is str or kind is int or kind is bool:
            continue
        if value is None or not isinstance(value, _SCALARS):
            problems.append(f"the value for field {key!r} must be a string, integer, float or boolean")
        elif isinstance(value, float) and not math.isfinite(value):  # NaN and infinities are not JSON
            problems.append(f"the value for field {key!r} must be a finite number")
    ts = record.get("_timestamp")
    if ts is not None and (not isinstance(ts, str) or not _timestamp_ok(ts)):
        problems.append(f"_timestamp is not a valid datetime object: {ts!r}")
    rid = record.get("_id")
    if rid is not None and (not isinstance(rid, str) or not rid or _WHITESPACE.search(rid)):
        problems.append(f"_id is not a valid id: {rid!r}")
    return problems


_GOOD_PLATFORM_KEYS: set[str] = set()


@functools.lru_cache(maxsize=65_536)
def _lenient_ok(text: str) -> bool:
    return parse_lenient_timestamp(text) is not None


def _platform_key_problem(key: Any) -> str | None:
    if not key_ok(key):
        # Escaped to ASCII: a Kelvin sign shows as \u212a, not as a K that looks valid.
        shown = key.encode("ascii", "backslashreplace").decode() if isinstance(key, str) else key
        return f"{shown!r} is not a valid key: keys are ASCII letters, digits and _, at least two characters"
    if key.startswith("_") and key not in PLATFORM_INTERNAL_KEYS:
        return f"{key!r} is not a recognised internal field: only {', '.join(sorted(PLATFORM_INTERNAL_KEYS))}"
    return None


def platform_record_problems(record: Any, limit: int | None = None) -> list[str]:
    """Every reason a platform refuses ``record`` from any client (the first ``limit``); empty means valid.

    Lenient where backdrop is (see the module docstring): ``null`` values,
    :func:`parse_lenient_timestamp` times in ``_timestamp``, ``_start_at`` and
    ``_end_at``. Stricter where backdrop would store what it cannot give back:
    a string with a lone surrogate is refused, naming the field, and so is a field
    value (not an ``_id``) holding NUL (SQLite's JSON functions end a string there, PostgreSQL's text
    cannot hold it: grouped and filtered reads would differ by backend).
    """
    if not isinstance(record, Mapping):
        return [f"record must be a JSON object, got {type(record).__name__}"]
    problems: list[str] = []
    for key, value in record.items():
        if limit is not None and len(problems) >= limit:
            return problems
        if key not in _GOOD_PLATFORM_KEYS:
            problem = _platform_key_problem(key)
            if problem is not None:
                problems.append(problem)
                continue
            if len(_GOOD_PLATFORM_KEYS) < 4096:
                _GOOD_PLATFORM_KEYS.add(key)
        kind = type(value)
        if kind is int or kind is bool or value is None:
            continue
        if kind is str:
            if has_lone_surrogate(value):
                problems.append(
                    f"the value for field {key!r} is not valid Unicode (a lone surrogate): "
                    f"{value.encode('utf-8', 'backslashreplace').decode()!r}"
                )
            elif "\x00" in value and key != "_id":  # an _id is kept exactly on both (as bytes on PostgreSQL)
                problems.append(f"the value for field {key!r} holds a NUL character (\\u0000), which no text may hold")
        elif not isinstance(value, _SCALARS):
            problems.append(f"the value for field {key!r} must be a string, integer, float, boolean or null")
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"the value for field {key!r} must be a finite number")
    for key in PLATFORM_TIME_KEYS:
        value = record.get(key)
        if value is not None and (not isinstance(value, str) or not _lenient_ok(value)):
            problems.append(
                f"{key} is not a valid datetime object: {value!r} (ISO 8601, e.g. 2024-01-15T10:00:00Z; "
                "a fraction, a naive time (UTC) or a date alone are accepted)"
            )
    rid = record.get("_id")
    if rid is not None and (not isinstance(rid, str) or not rid or _WHITESPACE.search(rid)):
        shown = f"{rid[:40]!r}..." if isinstance(rid, str) and len(rid) > MAX_ID_CHARS else repr(rid)
        problems.append(f"_id is not a valid id: {shown}")
    elif isinstance(rid, str) and len(rid) > MAX_ID_CHARS:
        problems.append(f"_id is too long: {len(rid)} characters, the most is {MAX_ID_CHARS} ({rid[:40]!r}...)")
    return problems
