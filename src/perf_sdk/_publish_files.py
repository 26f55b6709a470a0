"""The published data files: rows, their Table Schemas, and data.gov.uk's metadata.

These files are a contract with whoever downloads them (a spreadsheet user, a
department's data team, data.gov.uk's harvester), so their columns are named
once, here, with the JSON Table Schema that documents them; the CSV, the JSON,
the schema and ``docs/guides/publishing.md`` all follow from :data:`KPI_FIELDS`
and :data:`SERVICE_FIELDS`. Columns are only ever added at the end.

Everything is a pure function of its inputs: no clock, no set ordering, floats
rounded, JSON with sorted-free fixed key order, so the same data gives the same
bytes and a scheduled publish gives a meaningful diff.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Final

from perf_sdk import _csv
from perf_sdk._kpi import KPI_KEYS, KPI_NAMES, RATINGS, Kpi, PeriodKpis
from perf_sdk._periods import human_label
from perf_sdk._protocol import CHANNELS

__all__ = [
    "KPI_FIELDS",
    "LICENCE",
    "RATING_LABELS",
    "SERVICE_FIELDS",
    "ServiceInfo",
    "ckan_dataset",
    "dumps",
    "dumps_rows",
    "kpi_rows",
    "other_kpi_fields",
    "service_rows",
    "table_schema",
    "to_csv",
    "unknown_reason",
]

#: The labels GOV.UK's Service Manual asks satisfaction counts to carry, by rating.
RATING_LABELS: Final[Mapping[int, str]] = {
    1: "Very dissatisfied",
    2: "Dissatisfied",
    3: "Neither satisfied nor dissatisfied",
    4: "Satisfied",
    5: "Very satisfied",
}
RATING_KEYS: Final[Mapping[int, str]] = {r: RATING_LABELS[r].lower().replace(" ", "_") for r in RATINGS}

#: Open Government Licence v3.0: data.gov.uk's ``uk-ogl``.
LICENCE: Final[Mapping[str, str]] = {
    "name": "OGL-UK-3.0",
    "path": "https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/",
    "title": "Open Government Licence v3.0",
}
TOPIC: Final = "Digital service performance"

_KPI_UNITS: Final[Mapping[str, str]] = {
    "completion_rate": "a fraction from 0 to 1 (digital completed / digital started)",
    "user_satisfaction": "a fraction from 0 to 1 (answers rated 4 or 5 / all answers)",
    "satisfaction_score": "a fraction from 0 to 1 (5 counts 1, 4 counts 0.75 ... 1 counts 0, averaged)",
    "cost_per_transaction": "pence (cost of the period, all channels / completed transactions, all channels)",
    "digital_take_up": "a fraction from 0 to 1 (digital completed / completed in all channels)",
}
_PUBLISHED_KPIS: Final = (*KPI_KEYS, "satisfaction_score")


@dataclass(frozen=True)
class ServiceInfo:
    """What a reader needs to know about a service beyond its numbers."""

    slug: str
    title: str
    organisation: str = ""
    description: str = ""
    #: When the service started taking transactions (ISO date), if known.
    start_date: str = ""

    @staticmethod
    def from_slug(slug: str) -> ServiceInfo:
        """A title made from the slug (``apply-for-a-licence`` -> "Apply for a licence") when none is configured."""
        words = slug.replace("-", " ").replace("_", " ").strip()
        return ServiceInfo(slug, words[:1].upper() + words[1:])


def _field(name: str, type_: str, title: str, description: str, **constraints: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": type_, "title": title, "description": description}
    if type_ == "date":
        out["format"] = "%Y-%m-%d"
    if constraints:
        out["constraints"] = constraints
    return out


def _period_fields() -> list[dict[str, Any]]:
    return [
        _field("period", "string", "Period", "The period's label: 2026-Q1, 2026-03, 2026 or 2025-26", required=True),
        _field("period_name", "string", "Period name", "The period as people say it: January to March 2026"),
        _field(
            "period_type",
            "string",
            "Period type",
            "month, quarter, year or financial-year",
            enum=["month", "quarter", "year", "financial-year"],
        ),
        _field("start", "date", "Start", "First day of the period", required=True),
        _field("end", "date", "End", "Last day of the period (inclusive)", required=True),
        _field(
            "complete",
            "boolean",
            "Complete",
            "false while the period is not over at publication: its figures are partial",
        ),
    ]


def _kpi_fields(key: str, *, reason: bool = True) -> list[dict[str, Any]]:
    name = KPI_NAMES[key]
    fields = [
        _field(f"{key}_value", "number", name, f"{name}, {_KPI_UNITS[key]}; empty when unknown", minimum=0),
        _field(f"{key}_numerator", "number", f"{name}: numerator", f"What {name.lower()} divides", minimum=0),
        _field(f"{key}_denominator", "number", f"{name}: denominator", f"What {name.lower()} divides by", minimum=0),
    ]
    if reason:
        fields.append(
            _field(
                f"{key}_unknown_reason",
                "string",
                f"{name}: why unknown",
                "Empty when the value is known; a value that cannot be right (more completions than starts) is withheld, with the reason here",
            )
        )
    return fields


def _kpi_schema_fields() -> list[dict[str, Any]]:
    fields = _period_fields()
    for key in _PUBLISHED_KPIS:
        fields += _kpi_fields(key)
    for rating in RATINGS:
        label = RATING_LABELS[rating]
        fields.append(
            _field(
                f"satisfaction_{RATING_KEYS[rating]}",
                "integer",
                label,
                f"Answers rating the service {rating} of 5 ({label})",
                minimum=0,
            )
        )
    fields.append(_field("satisfaction_answers", "integer", "Answers", "Everyone who answered", minimum=0))
    for stage in ("started", "completed"):
        for channel in CHANNELS:
            words = channel.replace("_", " ")
            fields.append(
                _field(
                    f"{stage}_{channel}",
                    "integer",
                    f"{stage.capitalize()}, {words}",
                    f"Transactions {stage} in the {words} channel",
                    minimum=0,
                )
            )
    fields.append(_field("completed_all", "integer", "Completed, all channels", "Every channel", minimum=0))
    fields.append(_field("cost_pence", "integer", "Cost (pence)", "Cost records inside the period; empty if none"))
    fields.append(
        _field("revision_date", "date", "Revision date", "When this row's figures last changed", required=True)
    )
    return fields


KPI_FIELDS: Final[tuple[dict[str, Any], ...]] = tuple(_kpi_schema_fields())


def other_kpi_fields(others: Sequence[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Columns for a performance definition's other KPIs, ``(key, name, unit)``, after the fixed ones."""
    fields = []
    for key, name, unit in others:
        fields += [
            _field(f"{key}_value", "number", name, f"{name} ({unit}); empty when unknown"),
            _field(f"{key}_numerator", "number", f"{name}: numerator", f"What {name} divides (or sums)"),
            _field(f"{key}_denominator", "number", f"{name}: denominator", f"What {name} divides by (or counts)"),
            _field(f"{key}_unknown_reason", "string", f"{name}: why unknown", "Empty when the value is known"),
        ]
    return fields


def _service_schema_fields() -> list[dict[str, Any]]:
    fields = [
        _field("service", "string", "Service", "The service's slug (its data group)", required=True),
        _field("service_title", "string", "Service title", "The service's name"),
        _field("organisation", "string", "Organisation", "The organisation running the service"),
        *_period_fields(),
    ]
    for key in KPI_KEYS:
        fields += _kpi_fields(key, reason=False)
    fields.append(_field("completed_all", "integer", "Completed, all channels", "Every channel", minimum=0))
    fields.append(_field("satisfaction_answers", "integer", "Answers", "Everyone who answered", minimum=0))
    fields.append(
        _field("revision_date", "date", "Revision date", "When this row's figures last changed", required=True)
    )
    return fields


SERVICE_FIELDS: Final[tuple[dict[str, Any], ...]] = tuple(_service_schema_fields())


def table_schema(fields: Sequence[Mapping[str, Any]], primary_key: Sequence[str]) -> dict[str, Any]:
    """A JSON Table Schema (Frictionless) for rows made of ``fields``."""
    return {
        "fields": [dict(f) for f in fields],
        "missingValues": [""],
        "primaryKey": list(primary_key),
    }


# ---------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------


def unknown_reason(key: str, kpi: Kpi, p: PeriodKpis) -> str:
    """Why a KPI has no value, in words a reader of the file understands; empty when known."""
    if kpi.flag:
        return kpi.flag
    if kpi.value is not None:
        return ""
    if key == "completion_rate":
        return "no digital transactions started"
    if key in ("user_satisfaction", "satisfaction_score"):
        return "no satisfaction answers"
    if key == "cost_per_transaction" and not p.costs_by_type:
        return "no cost records"
    return "no completed transactions"


def _number(value: float | None, places: int) -> float | int | None:
    if value is None:
        return None
    rounded = round(float(value), places)
    return int(rounded) if rounded.is_integer() else rounded


def _kpi_cells(key: str, kpi: Kpi, p: PeriodKpis, *, reason: bool = True) -> dict[str, Any]:
    places = 2 if key == "cost_per_transaction" else 6
    cells: dict[str, Any] = {
        f"{key}_value": _number(kpi.value, places),
        f"{key}_numerator": _number(kpi.numerator, 2),
        f"{key}_denominator": _number(kpi.denominator, 2),
    }
    if reason:
        cells[f"{key}_unknown_reason"] = unknown_reason(key, kpi, p)
    return cells


def _period_cells(p: PeriodKpis, as_of: date) -> dict[str, Any]:
    return {
        "period": p.label,
        "period_name": human_label(p.period, p.start, p.end),
        "period_type": p.period,
        "start": p.start.isoformat(),
        "end": (p.end - timedelta(days=1)).isoformat(),
        "complete": p.end <= as_of and not p.partial,
    }


def _channel(p: PeriodKpis, channel: str, stage: str) -> int:
    return next((getattr(c, stage) for c in p.channels if c.channel == channel), 0)


def kpi_rows(
    periods: Sequence[PeriodKpis], as_of: date, revised: Mapping[str, str], published: date
) -> list[dict[str, Any]]:
    """One row per period, in :data:`KPI_FIELDS` order.

    ``revised`` holds each period's earlier row revision date (from the files
    already published); a row whose figures are unchanged keeps it, a new or
    changed row takes ``published``.
    """
    rows = []
    for p in periods:
        row = _period_cells(p, as_of)
        for key in _PUBLISHED_KPIS:
            row |= _kpi_cells(key, p.kpi(key), p)
        for rating in RATINGS:
            row[f"satisfaction_{RATING_KEYS[rating]}"] = p.ratings.get(rating, 0)
        row["satisfaction_answers"] = sum(p.ratings.values())
        for stage in ("started", "completed"):
            for channel in CHANNELS:
                row[f"{stage}_{channel}"] = _channel(p, channel, stage)
        row["completed_all"] = sum(c.completed for c in p.channels)
        row["cost_pence"] = sum(p.costs_by_type.values()) if p.costs_by_type else None
        row["revision_date"] = published.isoformat()
        for other in p.other:
            kpi = other.kpi
            row[f"{other.key}_value"] = _number(kpi.value, 6)
            row[f"{other.key}_numerator"] = _number(kpi.numerator, 2)
            row[f"{other.key}_denominator"] = _number(kpi.denominator, 2)
            row[f"{other.key}_unknown_reason"] = kpi.flag or ("" if kpi.value is not None else "nothing to divide by")
        rows.append(row)
    return _keep_revisions(rows, revised)


def _keep_revisions(rows: list[dict[str, Any]], previous: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        old = previous.get(row["period"])
        same = isinstance(old, Mapping) and _without_revision(old) == _without_revision(row)
        out.append(row | {"revision_date": old.get("revision_date", row["revision_date"])} if same and old else row)
    return out


def _without_revision(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "revision_date"}


def service_rows(
    info: ServiceInfo, periods: Sequence[PeriodKpis], kpi_rows_: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The service's rows of ``services.csv``: the same figures as its ``kpis.csv``, fewer columns."""
    rows = []
    for p, full in zip(periods, kpi_rows_, strict=True):
        row: dict[str, Any] = {"service": info.slug, "service_title": info.title, "organisation": info.organisation}
        row |= {k: full[k] for k in ("period", "period_name", "period_type", "start", "end", "complete")}
        for key in KPI_KEYS:
            row |= _kpi_cells(key, p.kpi(key), p, reason=False)
        row["completed_all"] = full["completed_all"]
        row["satisfaction_answers"] = full["satisfaction_answers"]
        row["revision_date"] = full["revision_date"]
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------
# Serialisation
# ---------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def to_csv(rows: Sequence[Mapping[str, Any]], fields: Sequence[Mapping[str, Any]]) -> str:
    """CSV through the formula-injection guard: a title typed as ``=HYPERLINK(...)`` stays text."""
    out = io.StringIO()
    writer = _csv.DictWriter(out, [f["name"] for f in fields], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def dumps(data: Any) -> str:
    """JSON as every published file writes it: indented, UTF-8 text, a final newline, key order kept."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def dumps_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """A JSON list with one object a line: as diffable as indented JSON, at the C encoder's speed."""
    if not rows:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n"


def ckan_dataset(
    info: ServiceInfo,
    resources: Sequence[tuple[str, str, str, str]],
    *,
    base_url: str | None,
    frequency: str,
    published_at: datetime,
    coverage: tuple[date, date] | None,
) -> dict[str, Any]:
    """The payload for CKAN's ``package_create`` on data.gov.uk.

    ``resources`` are ``(name, path relative to the site root, format, description)``;
    their URLs are absolute when ``base_url`` is given (data.gov.uk needs them so),
    relative otherwise.
    """
    notes = info.description or f"Performance data for the {info.title} service: the four mandatory KPIs."
    notes += (
        " Completion rate, user satisfaction (with the count of answers at each level), cost per transaction "
        "and digital take-up, per period, as the GOV.UK Service Manual asks services to publish."
    )
    extras = [
        {"key": "update_frequency", "value": frequency},
        {"key": "theme-primary", "value": "digital-service-performance"},
        {"key": "date_updated", "value": published_at.date().isoformat()},
    ]
    if coverage:
        extras += [
            {"key": "temporal_coverage-from", "value": coverage[0].isoformat()},
            {"key": "temporal_coverage-to", "value": coverage[1].isoformat()},
        ]
    payload: dict[str, Any] = {
        "name": f"{info.slug}-service-performance"[:100],
        "title": f"{info.title}: service performance",
        "notes": notes,
        "license_id": "uk-ogl",
        "tags": [{"name": TOPIC}, {"name": "KPI"}, {"name": "service performance"}],
        "groups": [{"name": "digital-service-performance", "title": TOPIC}],
        "update_frequency": frequency,
        "extras": extras,
        "resources": [
            {
                "name": name,
                "url": absolute(base_url, path),
                "format": fmt,
                "description": description,
            }
            for name, path, fmt, description in resources
        ],
    }
    if info.organisation:  # CKAN's organisation name; data.gov.uk's may differ (the guide says so)
        payload["owner_org"] = _org_slug(info.organisation)
        payload["organization"] = {"title": info.organisation}
    return payload


def absolute(base_url: str | None, path: str) -> str:
    """``path`` (relative to the site root) under ``base_url``, or as it is without one."""
    return f"{base_url.rstrip('/')}/{path}" if base_url else path


def _org_slug(organisation: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in organisation.lower())
    return "-".join(part for part in slug.split("-") if part)


def iso_utc(at: datetime) -> str:
    """``2026-04-02T09:30:00Z``: one spelling of a publication time in every file."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
