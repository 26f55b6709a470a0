"""perf_sdk: measure and publish a government service's four mandatory KPIs.

Record journeys with :class:`Tracker` (or :class:`AsyncTracker`); every record
is validated, spooled to disk and delivered exactly once in effect to a
Performance Platform write API.
"""

from perf_sdk._async import AsyncTracker
from perf_sdk._backfill import BackfillSummary, backfill
from perf_sdk._errors import (
    ConfigurationError,
    PerfSdkError,
    RejectedError,
    RetryableError,
    TransportError,
    ValidationError,
)
from perf_sdk._journey import Journey
from perf_sdk._kpi import Kpi, KpiReport, PeriodKpis
from perf_sdk._kpi_sources import kpis
from perf_sdk._records import CostRecord, SatisfactionRecord, TransactionRecord
from perf_sdk._telemetry import Health
from perf_sdk._tracker import FlushResult, Tracker
from perf_sdk._version import __version__

__all__ = [
    "AsyncTracker",
    "BackfillSummary",
    "ConfigurationError",
    "CostRecord",
    "FlushResult",
    "Health",
    "Journey",
    "Kpi",
    "KpiReport",
    "PerfSdkError",
    "PeriodKpis",
    "RejectedError",
    "RetryableError",
    "SatisfactionRecord",
    "Tracker",
    "TransactionRecord",
    "TransportError",
    "ValidationError",
    "__version__",
    "backfill",
    "kpis",
]
