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

__all__ = [
    "CHANNEL_ALIASES",
    "COLUMNS",
    "REQUIRED",
    "SHAPES",
    "ColumnPlan",
    "Shape",
    "channel_name",
    "decide_data_type",
    "decide_shape",
    "looks_like_header",
    "normalise_column",
    "plan_columns",
]

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
#: Other spellings of a column, as backdrop exports and stagecraft schemas wrote them, and as
#: spreadsheets title them (``Month`` holds a month: a label such as 2026-03, or a date in it).
_ALIASES: Final = {"_timestamp": "timestamp", "month": "period"}
#: Channel columns (and values) as people title them, normalised: ``By post`` -> ``by_post`` -> paper.
CHANNEL_ALIASES: Final[Mapping[str, str]] = {
    "online": "digital",
    "web": "digital",
    "website": "digital",
    "telephone": "phone",
    "by_phone": "phone",
    "by_telephone": "phone",
    "post": "paper",
    "by_post": "paper",
    "postal": "paper",
    "in_person": "face_to_face",
    "face_to_face": "face_to_face",
}
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
_WIDE_TRANSACTION_FIELDS: Final = frozenset({"stage", "period", "total", *_TIME_COLUMNS})
_WIDE_SATISFACTION_FIELDS: Final = frozenset({"channel", "total", "period", *_TIME_COLUMNS})
#: How a field's column is read, for ``--dry-run``'s account of the columns.
_FIELD_READINGS: Final = {
    "timestamp": "the time (a date alone is that day)",
    "period": "the month, quarter or year: a label (2026-03, 2026-Q1, 2026, April 2026) or a date in the month",
    "stage": "the stage (started or completed)",
    "channel": "the channel",
    "count": "how many (a blank is refused, not 1)",
    "rating": "the rating (1 to 5)",
    "transaction_id": "the transaction id (hashed with the secret)",
    "amount_pence": "the amount (pence; a cell formatted in £ is pounds)",
    "cost_type": "the cost type",
}


def normalise_column(name: str) -> str:
    """``" Face-to-face "`` → ``face_to_face``: headers written by people, read leniently."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def channel_name(name: str) -> str | None:
    """The channel a normalised name means (``by_post`` → ``paper``), or ``None``."""
    bare = name[8:] if name.startswith("channel_") else name
    bare = CHANNEL_ALIASES.get(bare, bare)
    return bare if bare in CHANNELS else None


@dataclass(frozen=True)
class ColumnPlan:
    """Which source column feeds which field, decided once from the header.

    ``keys`` maps a field to its source key: an index for list rows (CSV,
    Excel), a column name for mapping rows (JSON). ``cells`` lists a wide
    shape's value columns as ``(channel or rating, key)``. ``readings`` says,
    for each source column as written, how it is read (``--dry-run`` prints it).
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
    readings: tuple[tuple[str, str], ...] = ()

    def field_for(self, column: str) -> str | None:
        """The field a column (of a JSON line) feeds; ``""`` to read past it, ``None`` if unknown."""
        kind, value = _classify(column, self.mapping, self.data_type, self.shape)
        if kind == "field":
            return _field_name(value, self.shape)
        if kind == "unknown" and not self.ignore_extra:
            return None
        return ""

    def describe(self) -> str:
        used = [*self.keys, *(str(c) for c, _ in self.cells)]
        return f"{self.data_type} ({self.shape}): {', '.join(used)}"


def _expected_columns(data_type: str, shape: Shape) -> str:
    if shape == "wide-transactions":
        return (
            "a time column (timestamp, _timestamp, period_start, start_at or date, or a period label such as Month) "
            "and a column per channel (channel_digital or digital / Online, phone / Telephone, paper / Post / By post, "
            "face_to_face / In person, other); optional stage, Total (checked against the channels)"
        )
    if shape == "wide-satisfaction":
        return (
            "a time column (timestamp, _timestamp, period_start ...) and rating_1 ... rating_5; optional channel, total"
        )
    cols = COLUMNS[data_type]
    need = REQUIRED[data_type]
    return ", ".join(need) + " (required); " + ", ".join(c for c in cols if c not in need) + " (optional)"


def looks_like_header(cells: Sequence[object], column_map: Mapping[str, str] | None = None) -> bool:
    """Whether a row names at least two columns the backfill reads: how a header is told from a title row.

    Spreadsheets carry a title, notes or a blank row above the header; a row
    that names two known columns (after ``--map``) is the header.
    """
    mapping = _read_map(column_map)
    known = 0
    for cell in cells:
        if isinstance(cell, str) and cell.strip() and _known_anywhere(_rename(cell, mapping)):
            known += 1
            if known >= 2:
                return True
    return False


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

    Four steps, each its own function: read ``--map``, tell the shape, tell the
    data type, then give each column its part (and check nothing required is
    missing).

    Raises :class:`ConfigurationError` for unknown columns (unless
    ``ignore_extra``), missing required ones, two columns for one field, or a
    data type the columns do not tell.
    """
    if data_type is not None and data_type not in DATA_TYPES:
        raise ConfigurationError(f"unknown data type {data_type!r}: use one of {', '.join(DATA_TYPES)}")
    if shape is not None and shape not in SHAPES:
        raise ConfigurationError(f"unknown shape {shape!r}: use one of {', '.join(SHAPES)}")
    mapping = _read_map(column_map)
    present = {n for n in (_rename(raw, mapping) for raw in header) if n}
    shape_t = decide_shape(present, data_type, shape)
    data_type = decide_data_type(present, data_type, shape_t, source_name)
    parts = _assign(
        header, mapping, data_type, shape_t, by_index=by_index, ignore_extra=ignore_extra, source_name=source_name
    )
    parts.check(header, data_type, shape_t, source_name)
    return ColumnPlan(
        data_type,
        shape_t,
        parts.keys,
        tuple(parts.cells),
        parts.by_name,
        frozenset(parts.ignored),
        len(header),
        mapping,
        ignore_extra,
        tuple(parts.readings),
    )


def _read_map(column_map: Mapping[str, str] | None) -> dict[str, str]:
    """``--map SOURCE=FIELD`` as source name (as written, and normalised) -> field; an unknown FIELD is refused."""
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
    return mapping


def decide_shape(present: set[str], data_type: str | None, shape: str | None) -> Shape:
    """The shape asked for, or the one the columns show: rating_N columns, or a column per channel."""
    if shape in ("wide-transactions", "wide-satisfaction"):
        return shape  # type: ignore[return-value]
    if shape is None:
        has_ratings = any(_RATING_COLUMN_RE.match(n) for n in present) and "rating" not in present
        if has_ratings and data_type in (None, "satisfaction"):
            return "wide-satisfaction"
        has_channel_cells = any(channel_name(n) for n in present) and "channel" not in present
        if has_channel_cells and data_type in (None, "transactions") and "count" not in present:
            return "wide-transactions"
    return "narrow"


def decide_data_type(present: set[str], data_type: str | None, shape: Shape, source_name: str) -> str:
    """The data type asked for, the one a wide shape holds, or the one a narrow file's columns tell."""
    wide_type = {"wide-transactions": "transactions", "wide-satisfaction": "satisfaction"}.get(shape)
    if wide_type is not None:
        if data_type not in (None, wide_type):
            raise ConfigurationError(f"shape {shape} holds {wide_type}, not {data_type}")
        return wide_type
    if data_type is not None:
        return data_type
    found = [t for t, col in _TYPE_COLUMN if col in present]
    if len(found) != 1:
        why = "columns of several" if found else "no column that tells the"
        raise ConfigurationError(
            f"{source_name} has {why} data type ({', '.join(sorted(present)) or 'no columns'}): expected a "
            "stage (transactions), rating (satisfaction) or amount_pence (costs) column, or pass --type"
        )
    return found[0]


@dataclass
class _Assignment:
    """Each column's part under a plan, as :func:`_assign` found them."""

    keys: dict[str, Any] = field(default_factory=dict)
    cells: list[tuple[Any, Any]] = field(default_factory=list)
    by_name: dict[str, str] = field(default_factory=dict)
    ignored: set[str] = field(default_factory=set)
    unknown: list[str] = field(default_factory=list)
    readings: list[tuple[str, str]] = field(default_factory=list)

    def check(self, header: Sequence[str], data_type: str, shape: Shape, source_name: str) -> None:
        """Refuse unknown columns, and a plan missing a required one, naming what was expected."""
        if self.unknown:
            raise ConfigurationError(
                f"{source_name}: unknown column(s) {', '.join(repr(u) for u in self.unknown)} for {data_type} "
                f"({shape}); expected {_expected_columns(data_type, shape)}. Rename with --map SOURCE=FIELD, "
                "or pass --ignore-extra to read past them"
            )
        missing = _missing_columns(self.keys, bool(self.cells), data_type, shape)
        if missing:
            raise ConfigurationError(
                f"{source_name}: missing column(s) {', '.join(missing)} for {data_type} ({shape}); "
                f"expected {_expected_columns(data_type, shape)}; found {', '.join(repr(str(h)) for h in header)}"
            )


def _assign(
    header: Sequence[str],
    mapping: Mapping[str, str],
    data_type: str,
    shape: Shape,
    *,
    by_index: bool,
    ignore_extra: bool,
    source_name: str,
) -> _Assignment:
    """Give each column its part: a field, a wide shape's value cell, read past, or unknown."""
    out = _Assignment()
    for index, raw in enumerate(header):
        key: Any = index if by_index else raw
        original = "" if raw is None else str(raw)
        kind, value = _classify(original, mapping, data_type, shape)
        if kind == "cell":
            if any(c == value for c, _ in out.cells):
                raise ConfigurationError(f"{source_name} has two columns for {value}: {list(header)}")
            out.cells.append((value, key))
            out.by_name[original] = ""
            out.readings.append((original, _cell_reading(value, data_type)))
        elif kind == "field":
            field_name = _field_name(value, shape)
            if field_name in out.keys:
                raise ConfigurationError(
                    f"{source_name} has two columns for {field_name!r} (after --map): keep one, or rename with "
                    f"--map; columns: {list(header)}"
                )
            out.keys[field_name] = key
            out.by_name[original] = field_name
            out.readings.append((original, _field_reading(field_name, shape)))
        elif kind == "ignored" or ignore_extra:
            out.ignored.add(original)
            why = "--ignore-extra" if kind != "ignored" else ("no name" if not original.strip() else "not used")
            out.readings.append((original, f"read past ({why})"))
        else:
            out.unknown.append(original)
    return out


def _field_name(value: Any, shape: str) -> str:
    return "timestamp" if shape != "narrow" and value in _TIME_COLUMNS else str(value)


def _field_reading(field_name: str, shape: Shape) -> str:
    if field_name == "total":
        part = "channels" if shape == "wide-transactions" else "ratings"
        return f"total: checked against the sum of the {part}, not counted again"
    return f"{field_name}: {_FIELD_READINGS.get(field_name, field_name)}"


def _cell_reading(value: Any, data_type: str) -> str:
    if data_type == "satisfaction":
        return f"rating {value}: how many answered {value} (one record per non-empty cell)"
    return f"channel {value}: how many {value} transactions (one record per non-empty cell)"


def _missing_columns(keys: Mapping[str, Any], has_cells: bool, data_type: str, shape: Shape) -> list[str]:
    if shape == "narrow":
        missing = [c for c in REQUIRED[data_type] if c not in keys]
        if data_type == "transactions" and missing == ["timestamp"] and "period" in keys:
            return []  # a period label can name the time
        return missing
    missing = [] if ("timestamp" in keys or "period" in keys) else ["a time column"]
    if not has_cells:
        missing.append("rating_1 ... rating_5" if shape == "wide-satisfaction" else "channel columns")
    return missing


def _rename(raw: object, mapping: Mapping[str, str]) -> str:
    name = str(raw).strip() if raw is not None else ""
    target = mapping.get(name) or mapping.get(normalise_column(name)) or normalise_column(name)
    return _ALIASES.get(target, target)


def _known_anywhere(name: str) -> bool:
    return (
        any(name in cols for cols in COLUMNS.values())
        or name in _TIME_COLUMNS
        or name == "total"
        or channel_name(name) is not None
        or _RATING_COLUMN_RE.match(name) is not None
    )


def _classify(column: str, mapping: Mapping[str, str], data_type: str, shape: str) -> tuple[str, Any]:
    """What a source column is under a plan: ("field", name), ("cell", channel or rating), ("ignored", None)
    or ("unknown", None)."""
    name = _rename(column, mapping)
    if not name:
        return "ignored", None
    if shape == "wide-transactions":
        channel = channel_name(name)
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
