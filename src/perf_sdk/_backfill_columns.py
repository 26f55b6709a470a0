"""A history file's header: the column contract of a backfill, decided once before any row is read.

The column contract (API.md, "Backfill input") in one place: which columns each
data type takes, which it needs, how ``--map`` renames them, and the two *wide*
shapes GOV.UK services published on the Performance Platform (alphagov
stagecraft's data types), turned into one record per cell:

``wide-transactions``
    One row per period, a column per channel: ``channel_digital``,
    ``channel_phone`` ... or simply ``digital``, ``phone``, ``paper``,
    ``face_to_face`` (``face-to-face``), ``other``. The time is in
    ``timestamp``, ``_timestamp``, ``period_start``, ``start_at`` or ``date``, or
    a ``period`` label (``2026-03``); ``period`` may instead name the
    granularity (``month``, as stagecraft's ``transactions-by-channel`` did).
    ``stage`` is optional and defaults to ``completed``: those data sets
    counted transactions done. Each non-zero cell becomes one ``transactions``
    record with that cell's ``count``.
``wide-satisfaction``
    Stagecraft's ``customer-satisfaction``: a time column and ``rating_1`` ...
    ``rating_5`` (counts of each answer); ``channel`` optional (default
    ``digital``: the feedback page of the digital service); ``total``, when
    present, must equal the sum of the five (a mismatch rejects the row);
    ``comments`` and ``slug`` are read past. Each non-zero cell becomes one
    ``satisfaction`` record.

A :class:`ColumnPlan` is the whole decision; :mod:`perf_sdk._backfill_rows`
turns rows into records by it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from perf_sdk._errors import ConfigurationError
from perf_sdk._protocol import CHANNELS, DATA_TYPES

__all__ = ["COLUMNS", "REQUIRED", "SHAPES", "ColumnPlan", "Shape", "normalise_column", "plan_columns"]

Shape = Literal["narrow", "wide-transactions", "wide-satisfaction"]
SHAPES: Final = ("narrow", "wide-transactions", "wide-satisfaction")

#: Columns each data type takes in the narrow (API.md) shape, and those it needs.
COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "transactions": ("timestamp", "stage", "channel", "count", "transaction_id", "period"),
    "satisfaction": ("timestamp", "rating", "channel", "count", "transaction_id"),
    "costs": ("period", "amount_pence", "cost_type", "channel", "count", "timestamp"),
}
REQUIRED: Final[Mapping[str, tuple[str, ...]]] = {
    "transactions": ("timestamp", "stage", "channel"),
    "satisfaction": ("timestamp", "rating", "channel"),
    "costs": ("period", "amount_pence", "cost_type"),
}
#: The column that tells a narrow file's data type when --type is not given.
_TYPE_COLUMN: Final = (("transactions", "stage"), ("satisfaction", "rating"), ("costs", "amount_pence"))
#: Other spellings of a column, as backdrop exports and stagecraft schemas wrote them.
_ALIASES: Final = {"_timestamp": "timestamp"}
_TIME_COLUMNS: Final = ("timestamp", "period_start", "start_at", "_start_at", "date")
#: Read past in the wide shapes: backdrop's computed fields and stagecraft's extras.
_WIDE_IGNORED: Final = frozenset(
    {
        "_id",
        "_updated_at",
        "_count",
        "_hour_start_at",
        "_day_start_at",
        "_week_start_at",
        "_month_start_at",
        "_quarter_start_at",
        "_year_start_at",
        "comments",
        "slug",
        "service",
        "data_type",
        "dashboard_slug",
    }
)
_RATING_COLUMN_RE: Final = re.compile(r"^rating_([1-5])$")
_WIDE_TRANSACTION_FIELDS: Final = frozenset({"stage", "period", *_TIME_COLUMNS})
_WIDE_SATISFACTION_FIELDS: Final = frozenset({"channel", "total", "period", *_TIME_COLUMNS})


def normalise_column(name: str) -> str:
    """``" Face-to-face "`` → ``face_to_face``: headers written by people, read leniently."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def _channel_of_column(name: str) -> str | None:
    bare = name[8:] if name.startswith("channel_") else name
    return bare if bare in CHANNELS else None


@dataclass(frozen=True)
class ColumnPlan:
    """Which source column feeds which field, decided once from the header.

    ``keys`` maps a field to its source key: an index for list rows (CSV,
    Excel), a column name for mapping rows (JSON). ``cells`` lists a wide
    shape's value columns as ``(channel or rating, key)``.
    """

    data_type: str
    shape: Shape
    keys: dict[str, Any]
    cells: tuple[tuple[Any, Any], ...] = ()
    #: Source column name -> field, for mapping rows (JSONL lines may have keys of their own).
    by_name: dict[str, str] = field(default_factory=dict)
    #: Source columns read past (--ignore-extra, or the wide shapes' extras).
    ignored: frozenset[str] = frozenset()
    width: int = 0
    mapping: dict[str, str] = field(default_factory=dict)
    ignore_extra: bool = False

    def field_for(self, column: str) -> str | None:
        """The field a column (of a JSON line) feeds; ``""`` to read past it, ``None`` if unknown."""
        kind, value = _classify(column, self.mapping, self.data_type, self.shape)
        if kind == "field":
            return "timestamp" if self.shape != "narrow" and value in _TIME_COLUMNS else str(value)
        if kind == "unknown" and not self.ignore_extra:
            return None
        return ""

    def describe(self) -> str:
        used = [*self.keys, *(str(c) for c, _ in self.cells)]
        return f"{self.data_type} ({self.shape}): {', '.join(used)}"


def _expected_columns(data_type: str, shape: Shape) -> str:
    if shape == "wide-transactions":
        return (
            "a time column (timestamp, _timestamp, period_start, start_at or date, or a period label) and a column "
            "per channel (channel_digital or digital, phone, paper, face_to_face, other); optional stage, period"
        )
    if shape == "wide-satisfaction":
        return (
            "a time column (timestamp, _timestamp, period_start ...) and rating_1 ... rating_5; optional channel, total"
        )
    cols = COLUMNS[data_type]
    need = REQUIRED[data_type]
    return ", ".join(need) + " (required); " + ", ".join(c for c in cols if c not in need) + " (optional)"


def plan_columns(
    header: Sequence[str],
    *,
    data_type: str | None = None,
    shape: str | None = None,
    column_map: Mapping[str, str] | None = None,
    ignore_extra: bool = False,
    by_index: bool = True,
    source_name: str = "the file",
) -> ColumnPlan:
    """Decide the data type, the shape and each column's field, or fail naming what was expected.

    Raises :class:`ConfigurationError` for unknown columns (unless
    ``ignore_extra``), missing required ones, two columns for one field, or a
    data type the columns do not tell.
    """
    if data_type is not None and data_type not in DATA_TYPES:
        raise ConfigurationError(f"unknown data type {data_type!r}: use one of {', '.join(DATA_TYPES)}")
    if shape is not None and shape not in SHAPES:
        raise ConfigurationError(f"unknown shape {shape!r}: use one of {', '.join(SHAPES)}")
    mapping: dict[str, str] = {}
    for src, dst in (column_map or {}).items():
        target = normalise_column(dst)
        target = _ALIASES.get(target, target)
        if not _known_anywhere(target):
            raise ConfigurationError(
                f"--map {src}={dst}: {dst!r} is not a column the backfill reads; fields are "
                f"{', '.join(sorted({c for cols in COLUMNS.values() for c in cols}))}, or a wide shape's "
                "channel_<channel> / rating_<n>"
            )
        mapping[src.strip()] = target
        mapping[normalise_column(src)] = target
    names = [_rename(raw, mapping) for raw in header]
    present = {n for n in names if n}

    # the shape
    has_ratings = any(_RATING_COLUMN_RE.match(n) for n in present) and "rating" not in present
    has_channel_cells = any(_channel_of_column(n) for n in present) and "channel" not in present
    if shape is None or shape == "narrow":
        if shape is None and has_ratings and data_type in (None, "satisfaction"):
            shape = "wide-satisfaction"
        elif shape is None and has_channel_cells and data_type in (None, "transactions") and "count" not in present:
            shape = "wide-transactions"
        else:
            shape = "narrow"
    wide_type = {"wide-transactions": "transactions", "wide-satisfaction": "satisfaction"}.get(shape)
    if wide_type is not None:
        if data_type not in (None, wide_type):
            raise ConfigurationError(f"shape {shape} holds {wide_type}, not {data_type}")
        data_type = wide_type
    if data_type is None:
        found = [t for t, col in _TYPE_COLUMN if col in present]
        if len(found) != 1:
            why = "columns of several" if found else "no column that tells the"
            raise ConfigurationError(
                f"{source_name} has {why} data type ({', '.join(sorted(present)) or 'no columns'}): expected a "
                "stage (transactions), rating (satisfaction) or amount_pence (costs) column, or pass --type"
            )
        data_type = found[0]
    shape_t: Shape = shape  # type: ignore[assignment]

    keys: dict[str, Any] = {}
    cells: list[tuple[Any, Any]] = []
    by_name: dict[str, str] = {}
    unknown: list[str] = []
    ignored: set[str] = set()
    for index, raw in enumerate(header):
        key: Any = index if by_index else raw
        original = "" if raw is None else str(raw)
        kind, value = _classify(original, mapping, data_type, shape_t)
        if kind == "cell":
            if any(c == value for c, _ in cells):
                raise ConfigurationError(f"{source_name} has two columns for {value}: {list(header)}")
            cells.append((value, key))
            by_name[original] = ""
        elif kind == "field":
            field_name = "timestamp" if shape_t != "narrow" and value in _TIME_COLUMNS else str(value)
            if field_name in keys:
                raise ConfigurationError(
                    f"{source_name} has two columns for {field_name!r} (after --map): keep one, or rename with --map"
                )
            keys[field_name] = key
            by_name[original] = field_name
        elif kind == "ignored" or ignore_extra:
            ignored.add(original)
        else:
            unknown.append(original)
    if unknown:
        raise ConfigurationError(
            f"{source_name}: unknown column(s) {', '.join(repr(u) for u in unknown)} for {data_type} ({shape_t}); "
            f"expected {_expected_columns(data_type, shape_t)}. Rename with --map SOURCE=FIELD, "
            "or pass --ignore-extra to read past them"
        )
    if shape_t == "narrow":
        missing = [c for c in REQUIRED[data_type] if c not in keys]
        if data_type == "transactions" and missing == ["timestamp"] and "period" in keys:
            missing = []  # a period label can name the time
    else:
        missing = [] if ("timestamp" in keys or "period" in keys) else ["a time column"]
        if not cells:
            missing.append("rating_1 ... rating_5" if shape_t == "wide-satisfaction" else "channel columns")
    if missing:
        raise ConfigurationError(
            f"{source_name}: missing column(s) {', '.join(missing)} for {data_type} ({shape_t}); "
            f"expected {_expected_columns(data_type, shape_t)}; found {', '.join(repr(str(h)) for h in header)}"
        )
    return ColumnPlan(
        data_type,
        shape_t,
        keys,
        tuple(cells),
        by_name,
        frozenset(ignored),
        len(header),
        mapping,
        ignore_extra,
    )


def _rename(raw: object, mapping: Mapping[str, str]) -> str:
    name = str(raw).strip() if raw is not None else ""
    target = mapping.get(name) or mapping.get(normalise_column(name)) or normalise_column(name)
    return _ALIASES.get(target, target)


def _known_anywhere(name: str) -> bool:
    return (
        any(name in cols for cols in COLUMNS.values())
        or name in _TIME_COLUMNS
        or name == "total"
        or _channel_of_column(name) is not None
        or _RATING_COLUMN_RE.match(name) is not None
    )


def _classify(column: str, mapping: Mapping[str, str], data_type: str, shape: str) -> tuple[str, Any]:
    """What a source column is under a plan: ("field", name), ("cell", channel or rating), ("ignored", None)
    or ("unknown", None)."""
    name = _rename(column, mapping)
    if not name:
        return "ignored", None
    if shape == "wide-transactions":
        channel = _channel_of_column(name)
        if channel is not None:
            return "cell", channel
        allowed: frozenset[str] | tuple[str, ...] = _WIDE_TRANSACTION_FIELDS
    elif shape == "wide-satisfaction":
        m = _RATING_COLUMN_RE.match(name)
        if m:
            return "cell", int(m.group(1))
        allowed = _WIDE_SATISFACTION_FIELDS
    else:
        allowed = COLUMNS[data_type]
    if name in allowed:
        return "field", name
    if shape != "narrow" and name in _WIDE_IGNORED:
        return "ignored", None
    return "unknown", None
