"""A service's performance definition: what success looks like, in one TOML file.

``perf-sdk.toml`` beside the service (or any path given with ``--definition`` /
``definition=``) holds the service's title and organisation, a target for each
of the four KPIs with the period it applies to, the service's *other* KPIs
(each with a plain-English definition, why the team chose it, and how it is
computed from records), and the thresholds ``perf-sdk check`` alerts on::

    title = "Apply for a licence"
    organisation = "Department for Licences"

    [targets]
    completion_rate = {min = 0.80}
    cost_per_transaction = {max_pence = 2500, period = "quarter"}

    [kpis.completed_without_a_call]
    name = "Completed without a call"
    definition = "Share of completed applications whose applicant never phoned us."
    why = "Calls cost us £8 each and mean the online service did not answer a question."
    compute = "ratio"
    numerator = {data_type = "outcomes", where = {called = false}}
    denominator = {data_type = "transactions", where = {stage = "completed"}}

Why pydantic plus a line finder: the models give one set of rules for the
library and the CLI, and every broken rule comes back with its place in the
TOML (``tomllib`` keeps no positions, so :func:`_line_of` finds the table
header and key) and what to write instead. The file is read, never executed:
a computation is a choice among ``ratio``, ``sum`` and ``mean`` of named
fields, not an expression.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from perf_sdk._errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 in CI
    import tomli as tomllib

__all__ = [
    "DEFAULT_DEFINITION_PATH",
    "Checks",
    "Definition",
    "DefinitionError",
    "Measure",
    "OtherKpi",
    "Target",
    "Targets",
    "load_definition",
    "parse_definition",
]

#: Where the CLI looks when ``--definition`` is not given.
DEFAULT_DEFINITION_PATH: Final = "perf-sdk.toml"

TargetPeriod = Literal["day", "week", "month", "quarter", "year", "financial-year"]
# \A...\Z, not ^...$: "$" also matches before a trailing newline, so "days\n" would pass and never match a record.
_KEY_RE: Final = re.compile(r"\A[a-z_][a-z0-9_]+\Z", re.ASCII)
_SLUG_RE: Final = re.compile(r"\A[a-z0-9]+(?:-[a-z0-9]+)*\Z", re.ASCII)
_MARKS_TYPE: Final = "marks"


class DefinitionError(ConfigurationError):
    """The definition file breaks a rule; ``line`` is 1-based (``None`` when not found)."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}, line {line}" if line else path
        super().__init__(f"{where}: {message}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_NOT_A_NUMBER: Final = "not_a_number"


def _no_bool_or_text(value: Any) -> Any:
    """Refuse true/false and text where a number belongs (pydantic would read true as 1 and "0.8" as 0.8)."""
    if isinstance(value, (bool, str)):
        raise PydanticCustomError(_NOT_A_NUMBER, "not a number: {value}", {"value": _toml_value(value)})
    return value


#: A number in the file: an integer or a float, never true/false or text in quotes.
_Number = Annotated[float, BeforeValidator(_no_bool_or_text)]
#: A whole number in the file, never true/false or text in quotes.
_Whole = Annotated[int, BeforeValidator(_no_bool_or_text)]


_REQUIRED_TEXT: Final = ("name", "definition", "why")


def _not_blank(value: str | None, info: ValidationInfo) -> str | None:
    """Text that a person reads (a name, a title) must say something: "" and "   " are refused."""
    if value is not None and not value.strip():
        name = info.field_name
        remedy = "write it in words" if name in _REQUIRED_TEXT else "write it in words, or remove the key"
        raise ValueError(f"{name} = {value!r} is blank: {remedy}")
    return value


def _fraction_problem(value: float) -> str | None:
    """Why ``value`` is not a fraction from 0 to 1 (``None`` when it is one)."""
    if 0.0 <= value <= 1.0:
        return None
    if 1.0 < value <= 100.0:
        return f"write {value / 100:.2f} (for {value:g}%), not {value:g}"
    return f"write a number from 0 to 1 (0.80 for 80%), not {value:g}"


class Target(_Model):
    """A bound on a KPI: ``min`` and/or ``max`` (fractions for rates), for one period kind or all."""

    min: _Number | None = None
    max: _Number | None = None
    #: The period kind the target is set for (``None``: every period reported).
    period: TargetPeriod | None = None

    @field_validator("min", "max")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):  # nan would make every verdict "met"
            raise ValueError(f"{value}: write a finite number, e.g. 0.8")
        return value

    @model_validator(mode="after")
    def _one_bound(self) -> Target:
        if self.min is None and self.max is None:
            raise ValueError("a target needs a bound: write min = 0.80 (at least) or max = ... (at most)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g}): min must not exceed max; swap them")
        return self

    def applies_to(self, kind: str) -> bool:
        return self.period is None or self.period == kind

    def verdict(self, value: float | None) -> str:
        """``met``, ``missed`` or ``unknown`` (no value, a flagged one, or one that is not finite).

        NaN compares false with every bound, so without the finite test it would always be "met".
        """
        if value is None or not math.isfinite(value):
            return "unknown"
        if self.min is not None and value < self.min:
            return "missed"
        if self.max is not None and value > self.max:
            return "missed"
        return "met"


class RateTarget(Target):
    """A target for a rate: bounds are fractions, 0.80 for 80%."""

    @field_validator("min", "max")
    @classmethod
    def _fraction(cls, value: float | None) -> float | None:
        problem = None if value is None else _fraction_problem(value)
        if problem:
            raise ValueError(f"rates are fractions: {problem}")
        return value


class CostTarget(_Model):
    """A target for cost per transaction, in pence: ``max_pence = 2500`` is at most £25.00."""

    max_pence: _Whole | None = Field(default=None, ge=0)
    min_pence: _Whole | None = Field(default=None, ge=0)
    period: TargetPeriod | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> CostTarget:
        if self.max_pence is None and self.min_pence is None:
            raise ValueError("a cost target needs a bound in pence: write max_pence = 2500 (for £25.00)")
        if self.min_pence is not None and self.max_pence is not None and self.min_pence > self.max_pence:
            # as_target() would build a Target that refuses it, in every report, long after loading
            raise ValueError(
                f"min_pence ({self.min_pence}) is above max_pence ({self.max_pence}): "
                "min_pence must not exceed max_pence; swap them"
            )
        return self

    def as_target(self) -> Target:
        return Target(
            min=None if self.min_pence is None else float(self.min_pence),
            max=None if self.max_pence is None else float(self.max_pence),
            period=self.period,
        )


class Targets(_Model):
    """The ``[targets]`` table: one entry per mandatory KPI, each optional."""

    completion_rate: RateTarget | None = None
    user_satisfaction: RateTarget | None = None
    digital_take_up: RateTarget | None = None
    cost_per_transaction: CostTarget | None = None

    def for_key(self, key: str) -> Target | None:
        value = getattr(self, key, None)
        if isinstance(value, CostTarget):
            return value.as_target()
        return value if isinstance(value, Target) else None


class Measure(_Model):
    """A total over one data set's records: the sum of ``field`` over records matching ``where``.

    ``field = "count"`` (the default) counts events (every record carries
    ``count``); another numeric field sums it (``amount_pence``, ``days``).
    ``where`` keeps records whose fields equal the values given.
    """

    data_type: str
    field: str = "count"
    where: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("data_type")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG_RE.match(value):
            raise ValueError(
                f"data_type {value!r} is not a data-type name: lower-case letters, digits and '-', "
                "e.g. transactions or contact-centre-calls"
            )
        return value

    @field_validator("field")
    @classmethod
    def _key(cls, value: str) -> str:
        if not _KEY_RE.match(value):
            raise ValueError(f"field {value!r} is not a record field name: lower-case letters, digits and '_'")
        return value

    @field_validator("where")
    @classmethod
    def _keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not _KEY_RE.match(key):
                raise ValueError(f"where key {key!r} is not a record field name: lower-case letters, digits and '_'")
        return value

    @property
    def id(self) -> str:
        """A stable name for this measure (the key of its totals in :class:`~perf_sdk._kpi.Counts`)."""
        where = ",".join(f"{k}={v!r}" for k, v in sorted(self.where.items()))
        return f"{self.data_type}:{self.field}[{where}]"

    def matches(self, record: Mapping[str, Any]) -> bool:
        for key, wanted in self.where.items():
            got = record.get(key)
            if isinstance(wanted, bool) or isinstance(got, bool):
                if got is not wanted and str(got).lower() != str(wanted).lower():
                    return False
            elif isinstance(wanted, (int, float)) and not isinstance(got, str):
                if got != wanted:
                    return False
            elif str(got) != str(wanted):
                return False
        return True

    def describe(self) -> str:
        what = "records" if self.field == "count" else f"{self.field}"
        where = " and ".join(f"{k} = {_toml_value(v)}" for k, v in self.where.items())
        return f"{what} of {self.data_type}" + (f" where {where}" if where else "")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


class OtherKpi(_Model):
    """One of the service's own KPIs, beside the four.

    ``compute`` is ``ratio`` (``numerator`` / ``denominator``, two measures),
    ``sum`` (the total of ``of``) or ``mean`` (the mean of ``of``'s field over
    the records that carry it).
    """

    key: str
    name: str
    definition: str
    why: str
    compute: Literal["ratio", "sum", "mean"]
    numerator: Measure | None = None
    denominator: Measure | None = None
    of: Measure | None = None
    #: ``percent`` (the default for a ratio), ``pence``, or a word printed after the number (``days``).
    unit: str | None = None
    target: Target | None = None

    _text = field_validator("name", "definition", "why", "unit")(_not_blank)

    @field_validator("target")
    @classmethod
    def _percent_target(cls, value: Target | None, info: ValidationInfo) -> Target | None:
        """A percent KPI's target is a fraction, as the four's rate targets are: 80 would read "at least 8000%"."""
        if value is None or "compute" not in info.data or "unit" not in info.data:
            return value  # compute or unit is itself wrong: that error is reported
        unit = info.data["unit"] or ("percent" if info.data["compute"] == "ratio" else "")
        if unit != "percent":
            return value
        for bound in ("min", "max"):
            number = getattr(value, bound)
            problem = None if number is None else _fraction_problem(number)
            if problem:
                raise ValueError(f"{bound} = {number:g}: a percent KPI's target is a fraction: {problem}")
        return value

    @model_validator(mode="after")
    def _shape(self) -> OtherKpi:
        if self.compute == "ratio":
            missing = [n for n in ("numerator", "denominator") if getattr(self, n) is None]
            if missing:
                raise ValueError(
                    f'compute = "ratio" needs {" and ".join(missing)}: write e.g. '
                    'numerator = {data_type = "outcomes", where = {called = false}}'
                )
            if self.of is not None:
                raise ValueError('compute = "ratio" takes numerator and denominator, not of: remove of')
        else:
            if self.of is None:
                raise ValueError(
                    f'compute = "{self.compute}" needs of: write e.g. of = {{data_type = "decisions", field = "days"}}'
                )
            if self.numerator is not None or self.denominator is not None:
                raise ValueError(
                    f'compute = "{self.compute}" takes of, not numerator/denominator: '
                    'use compute = "ratio" for a ratio of two counts'
                )
        return self

    @property
    def display_unit(self) -> str:
        return self.unit or ("percent" if self.compute == "ratio" else "")

    def measures(self) -> tuple[Measure, ...]:
        return tuple(m for m in (self.numerator, self.denominator, self.of) if m is not None)

    def how(self) -> str:
        """How it is computed, in words (for tables, CSV and the dashboard)."""
        if self.compute == "ratio":
            assert self.numerator is not None and self.denominator is not None
            return f"{self.numerator.describe()} / {self.denominator.describe()}"
        assert self.of is not None
        return f"{self.compute} of {self.of.describe()}"


class Checks(_Model):
    """The ``[checks]`` table: what ``perf-sdk check`` alerts on, and its thresholds."""

    #: Period kinds checked, each its latest complete period.
    periods: tuple[Literal["day", "week", "month", "quarter"], ...] = ("day", "week", "month", "quarter")
    #: How many periods before the latest make its baseline.
    baseline_periods: _Whole = Field(default=4, ge=1, le=52)
    #: Confidence of the drop test (Newcombe's interval on the difference); 99% because one run makes up to
    #: twelve comparisons, and at 95% a steady service would alarm on about one run in four.
    confidence: _Number = Field(default=0.99, gt=0.5, lt=1.0)
    #: Fewer satisfaction answers than this in a period: too few to say anything.
    min_answers: _Whole = Field(default=30, ge=1)
    #: Hours without a new record before a data set counts as silent.
    max_silence_hours: dict[str, _Number] = Field(default_factory=lambda: {"transactions": 24.0, "satisfaction": 168.0})
    #: Minutes the oldest record may wait in the SDK's spool (with ``--spool-dir``).
    max_spool_age_minutes: _Number = Field(default=60.0, gt=0, allow_inf_nan=False)

    @field_validator("max_silence_hours")
    @classmethod
    def _data_types(cls, value: dict[str, float]) -> dict[str, float]:
        for key, hours in value.items():
            if not _SLUG_RE.match(key):
                raise ValueError(f"max_silence_hours key {key!r} is not a data-type name, e.g. transactions")
            if not math.isfinite(hours) or hours <= 0:  # nan compares false with everything: it would never fire
                raise ValueError(f"max_silence_hours.{key} = {hours}: a number of hours above 0, e.g. 24")
        return value


class Definition(_Model):
    """A parsed ``perf-sdk.toml``: title, organisation, targets, other KPIs, checks."""

    title: str | None = None
    organisation: str | None = None
    service: str | None = None
    description: str | None = None
    targets: Targets = Field(default_factory=Targets)
    kpis: tuple[OtherKpi, ...] = ()
    checks: Checks = Field(default_factory=Checks)
    _source: str | None = PrivateAttr(default=None)

    _text = field_validator("title", "organisation", "description")(_not_blank)

    @property
    def source(self) -> str | None:
        """The file it was read from, for messages (not a key of the TOML)."""
        return self._source

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        if value is not None and not _SLUG_RE.match(value):
            raise ValueError(f"service {value!r} is not a data-group slug: lower-case letters, digits and '-'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _kpi_table(cls, data: Any) -> Any:
        """``[kpis.<key>]`` tables become a tuple of :class:`OtherKpi`, in file order, each with its key."""
        if isinstance(data, dict) and isinstance(data.get("kpis"), dict):
            data = dict(data)
            data["kpis"] = [
                {"key": key, **value} if isinstance(value, dict) else value for key, value in data["kpis"].items()
            ]
        return data

    @model_validator(mode="after")
    def _keys(self) -> Definition:
        for kpi in self.kpis:
            if not _KEY_RE.match(kpi.key):
                raise ValueError(f"kpis.{kpi.key}: a KPI key is lower-case letters, digits and '_'")
            if kpi.key in ("completion_rate", "user_satisfaction", "cost_per_transaction", "digital_take_up"):
                raise ValueError(f"kpis.{kpi.key}: that is one of the four; set its target in [targets]")
            if kpi.key == "satisfaction_score":  # exported beside the four: another KPI would replace it
                raise ValueError(
                    f"kpis.{kpi.key}: that name is the SDK's own weighted satisfaction score; give this KPI another key"
                )
        return self

    def measures(self) -> tuple[Measure, ...]:
        """Every distinct measure the other KPIs need, in order of first use."""
        seen: dict[str, Measure] = {}
        for kpi in self.kpis:
            for m in kpi.measures():
                seen.setdefault(m.id, m)
        return tuple(seen.values())


# ---------------------------------------------------------------------------
# Reading, and errors that point at a line
# ---------------------------------------------------------------------------

_HEADER_RE: Final = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEYLINE_RE: Final = re.compile(r"^\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")


def _header_path(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in text.split("."))


def _line_of(text: str, loc: Sequence[str | int]) -> int | None:
    """The 1-based line that ``loc`` (a pydantic error location) refers to, as best the text tells.

    Finds the longest table header (``[a.b]``) that prefixes ``loc``, then the
    first line within that table setting the next key (a bare ``key =`` or a
    dotted ``key.sub =``); inline tables are found through their key's line.
    """
    parts = [str(p) for p in loc if not isinstance(p, int)]
    if parts and parts[0] == "kpis" and len(parts) > 1 and parts[1] == "key":
        parts = parts[:1]
    lines = text.splitlines()
    best_line, best_len = None, -1
    current: tuple[str, ...] = ()
    for number, line in enumerate(lines, start=1):
        header = _HEADER_RE.match(line)
        if header:
            current = _header_path(header.group(1))
            if tuple(parts[: len(current)]) == current and len(current) > best_len:
                best_line, best_len = number, len(current)
                # the key inside this table
                rest = parts[len(current) :]
                if rest:
                    found = _key_line(lines, number, rest[0])
                    if found:
                        return found
                else:
                    return number
            continue
        if not current and parts and best_len < 0:
            m = _KEYLINE_RE.match(line)
            if m and _header_path(m.group(1))[0] == parts[0]:
                return number
    return best_line


def _key_line(lines: Sequence[str], header_line: int, key: str) -> int | None:
    for number in range(header_line + 1, len(lines) + 1):
        line = lines[number - 1]
        if _HEADER_RE.match(line):
            return None
        m = _KEYLINE_RE.match(line)
        if m and _header_path(m.group(1))[0] == key:
            return number
    return None


_MEASURE_KEYS: Final = ("data_type", "field", "where")
_ALLOWED: Final[Mapping[str, Sequence[str]]] = {
    "": ("title", "organisation", "service", "description", "targets", "kpis", "checks"),
    "targets": ("completion_rate", "user_satisfaction", "digital_take_up", "cost_per_transaction"),
    "targets.cost_per_transaction": ("max_pence", "min_pence", "period"),
    "targets.*": ("min", "max", "period"),
    "kpis.*": ("name", "definition", "why", "compute", "numerator", "denominator", "of", "unit", "target"),
    "kpis.*.target": ("min", "max", "period"),
    "kpis.*.numerator": _MEASURE_KEYS,
    "kpis.*.denominator": _MEASURE_KEYS,
    "kpis.*.of": _MEASURE_KEYS,
    "checks": (
        "periods",
        "baseline_periods",
        "confidence",
        "min_answers",
        "max_silence_hours",
        "max_spool_age_minutes",
    ),
}


_TABLE_EXAMPLES: Final[Mapping[str, str]] = {
    "completion_rate": "completion_rate = {min = 0.80}",
    "user_satisfaction": "user_satisfaction = {min = 0.75}",
    "digital_take_up": "digital_take_up = {min = 0.60}",
    "cost_per_transaction": "cost_per_transaction = {max_pence = 2500}",
    "kpis": "one [kpis.<key>] table for each of the service's own KPIs",
    "targets": "a [targets] table",
    "checks": "a [checks] table",
    "numerator": 'numerator = {data_type = "outcomes", where = {called = false}}',
    "denominator": 'denominator = {data_type = "transactions", where = {stage = "completed"}}',
    "of": 'of = {data_type = "decisions", field = "days"}',
    "target": "target = {min = 0.9}",
    "where": 'where = {stage = "completed"}',
}


_NUMBER_EXAMPLES: Final[Mapping[str, str]] = {
    "max_pence": "2500",
    "min_pence": "500",
    "baseline_periods": "4",
    "confidence": "0.99",
    "min_answers": "30",
    "max_spool_age_minutes": "60",
}


def _is_finite_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _hint(error: Mapping[str, Any], parts: Sequence[str]) -> str:
    """What to write instead, for the error kinds a person makes."""
    kind = str(error.get("type", ""))
    name = parts[-1] if parts else ""
    if len(parts) > 1 and parts[-2] == "where":
        return f'write text, a number or true/false (e.g. {name} = "done"), not {error.get("input")!r}'
    if kind in ("dict_type", "model_type", "model_attributes_type", "tuple_type"):
        return f"{name} must be a table: write {_TABLE_EXAMPLES.get(name, name + ' = {...}')}"
    if kind == "extra_forbidden":
        parent = list(parts[:-1])
        if len(parent) > 1 and parent[0] == "kpis":
            parent[1] = "*"
        table = ".".join(parent)
        allowed = _ALLOWED.get(table) or _ALLOWED.get(".".join([*parent[:1], "*", *parent[2:]]), ())
        close = difflib.get_close_matches(name, allowed, n=1) or [a for a in allowed if a.startswith(f"{name}_")]
        if close:
            return f"unknown key {name!r}: did you mean {close[0]!r}?"
        if allowed:
            return f"unknown key {name!r}: write one of {', '.join(allowed)}"
        return f"unknown key {name!r}: remove it"
    if kind == "missing":
        return f"{name} is required: add {name} = ..."
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{name} = {error.get('input')!r} is not allowed: write one of {expected}"
    if kind == _NOT_A_NUMBER:
        given = error.get("input")
        example = _NUMBER_EXAMPLES.get(name, "24" if len(parts) > 1 and parts[-2] == "max_silence_hours" else "0.8")
        if isinstance(given, bool):
            return (
                f"{name} = {_toml_value(given)} is true/false, not a number: write a number (e.g. {name} = {example})"
            )
        if isinstance(given, str) and _is_finite_number(given):
            example = given.strip()
        return f"{name} = {_toml_value(given)} is text, not a number: write a number, without quotes (e.g. {name} = {example})"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        return f"{name} = {error.get('input')!r}: write a number, without quotes (e.g. {name} = 0.8)"
    if kind in ("string_type",):
        return f'{name} = {error.get("input")!r}: write text in quotes (e.g. {name} = "...")'
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def parse_definition(text: str, *, source: str = "perf-sdk.toml") -> Definition:
    """A :class:`Definition` from TOML text; every problem as a :class:`DefinitionError` naming its line.

    >>> d = parse_definition('title = "Apply"\\n[targets]\\ncompletion_rate = {min = 0.8}\\n')
    >>> d.targets.completion_rate.min
    0.8
    >>> parse_definition('[targets]\\ncompletion_rate = {min = 80}\\n')
    Traceback (most recent call last):
    ...
    perf_sdk._definition.DefinitionError: perf-sdk.toml, line 2: targets.completion_rate.min: rates are fractions: write 0.80 (for 80%), not 80
    """
    text = text.removeprefix("\ufeff")  # a byte-order mark, as some Windows editors write: not part of the TOML
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise DefinitionError(
            source, int(m.group(1)) if m else None, f"not valid TOML ({exc}); see docs/guides/success.md"
        ) from None
    except RecursionError:
        raise DefinitionError(
            source, None, "nested too deeply to read (arrays or tables inside each other thousands deep)"
        ) from None
    try:
        definition = Definition.model_validate(data)
        definition._source = source
        return definition
    except RecursionError:
        raise DefinitionError(source, None, "nested too deeply to check (values inside each other)") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = list(first["loc"])
        if loc and loc[0] == "kpis" and len(loc) > 1 and isinstance(loc[1], int):
            keys = list(data.get("kpis", {}))
            loc[1] = keys[loc[1]] if loc[1] < len(keys) else loc[1]
        parts = [str(p) for p in loc if not str(p).startswith(("function-", "literal["))]
        if "where" in parts[:-1]:  # a union's member names ("str", "int" ...) say nothing to a reader
            parts = parts[: parts.index("where") + 2]
        hint = _hint(first, parts)
        if not parts:  # a rule over the whole file names its table in the message
            m = re.match(r"(kpis\.[a-z0-9_]+):\s*(.*)", hint)
            if m:
                parts, hint = m.group(1).split("."), m.group(2)
        line = _line_of(text, parts)
        where = ".".join(parts) or "the file"
        raise DefinitionError(source, line, f"{where}: {hint}") from None


def load_definition(path: str | os.PathLike[str]) -> Definition:
    """Read and check a definition file (UTF-8 TOML, with or without a byte-order mark)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DefinitionError(
            str(p), None, "no such file; write one (see docs/guides/success.md) or pass --definition PATH"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(str(p), None, f"cannot read it ({exc})") from None
    return parse_definition(text, source=str(p))
