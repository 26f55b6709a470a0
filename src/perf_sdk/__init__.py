"""perf_sdk: measure and publish a government service's four mandatory KPIs.

Record journeys with :class:`Tracker` (or :class:`AsyncTracker`); every record
is validated, spooled to disk and delivered exactly once in effect to a
Performance Platform write API.

The names below are imported on first use, not with the package: a service
that only records never pays for the KPI, backfill or asyncio code, and
pytest's plugin discovery imports nothing of the SDK until a test uses it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from perf_sdk._version import __version__

if TYPE_CHECKING:  # what a type checker and an IDE see; at run time, __getattr__ below
    from perf_sdk._around import AroundReport, kpis_around
    from perf_sdk._async import AsyncTracker
    from perf_sdk._backfill import BackfillSummary, backfill
    from perf_sdk._check import CheckReport, check
    from perf_sdk._definition import Definition, DefinitionError, load_definition
    from perf_sdk._errors import (
        ConfigurationError,
        PerfSdkError,
        RejectedError,
        RetryableError,
        TransportError,
        ValidationError,
    )
    from perf_sdk._journey import Journey
    from perf_sdk._kpi import Kpi, KpiReport, Mark, PeriodKpis
    from perf_sdk._kpi_sources import kpis
    from perf_sdk._publish import PublishResult, publish
    from perf_sdk._publish_files import ServiceInfo
    from perf_sdk._records import CostRecord, SatisfactionRecord, TransactionRecord
    from perf_sdk._telemetry import Health
    from perf_sdk._tracker import FlushResult, RecordSink, Tracker

#: Public name -> the private module that defines it.
_EXPORTS: dict[str, str] = {
    "AroundReport": "_around",
    "kpis_around": "_around",
    "AsyncTracker": "_async",
    "BackfillSummary": "_backfill",
    "backfill": "_backfill",
    "CheckReport": "_check",
    "check": "_check",
    "Definition": "_definition",
    "DefinitionError": "_definition",
    "load_definition": "_definition",
    "ConfigurationError": "_errors",
    "PerfSdkError": "_errors",
    "RejectedError": "_errors",
    "RetryableError": "_errors",
    "TransportError": "_errors",
    "ValidationError": "_errors",
    "Journey": "_journey",
    "Kpi": "_kpi",
    "KpiReport": "_kpi",
    "Mark": "_kpi",
    "PeriodKpis": "_kpi",
    "kpis": "_kpi_sources",
    "PublishResult": "_publish",
    "publish": "_publish",
    "ServiceInfo": "_publish_files",
    "CostRecord": "_records",
    "SatisfactionRecord": "_records",
    "TransactionRecord": "_records",
    "Health": "_telemetry",
    "FlushResult": "_tracker",
    "RecordSink": "_tracker",
    "Tracker": "_tracker",
}

__all__ = [
    "AroundReport",
    "AsyncTracker",
    "BackfillSummary",
    "CheckReport",
    "ConfigurationError",
    "CostRecord",
    "Definition",
    "DefinitionError",
    "FlushResult",
    "Health",
    "Journey",
    "Kpi",
    "KpiReport",
    "Mark",
    "PerfSdkError",
    "PeriodKpis",
    "PublishResult",
    "RecordSink",
    "RejectedError",
    "RetryableError",
    "SatisfactionRecord",
    "ServiceInfo",
    "Tracker",
    "TransactionRecord",
    "TransportError",
    "ValidationError",
    "__version__",
    "backfill",
    "check",
    "kpis",
    "kpis_around",
    "load_definition",
    "publish",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'perf_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"perf_sdk.{module}"), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
