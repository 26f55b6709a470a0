"""The Performance Platform's wire rules, as backdrop enforces them.

One place for the facts both ends share: the local platform validates incoming
records with :func:`record_problems`, and the SDK's tests check that every record
its models accept passes it. Source: alphagov/backdrop ``backdrop/core/validation.py``
and ``backdrop/write/api.py`` (see ``shared/spec/PLATFORM.md``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

__all__ = [
    "CHANNELS",
    "COST_PERIODS",
    "DATA_TYPES",
    "KEY_RE",
    "SLUG_RE",
    "STAGES",
    "TIMESTAMP_RE",
    "parse_timestamp",
    "record_problems",
]

#: A key, lower-cased, must match this (so at least two characters).
KEY_RE: Final = re.compile(r"^[a-z_][a-z0-9_]+$")
#: Data-group and data-type names.
SLUG_RE: Final = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
#: ISO 8601 date-time with a zone: ``Z``, ``+HH:MM`` or ``+HHMM``. Backdrop takes no
#: fraction of a second, so neither does the SDK send one.
TIMESTAMP_RE: Final = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(Z|[+-]\d{2}:?\d{2})$")
#: The only internal (underscore) keys a client may send.
ALLOWED_INTERNAL_KEYS: Final = frozenset({"_timestamp", "_id"})

CHANNELS: Final = ("digital", "phone", "paper", "face_to_face", "other")
STAGES: Final = ("started", "completed")
COST_PERIODS: Final = ("month", "quarter", "year")
DATA_TYPES: Final = ("transactions", "satisfaction", "costs")


def parse_timestamp(text: str) -> datetime | None:
    """Parse a backdrop ``_timestamp``; ``None`` when it is not one (format or date)."""
    m = TIMESTAMP_RE.match(text)
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
            if not isinstance(key, str) or not KEY_RE.match(key.lower()):
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
