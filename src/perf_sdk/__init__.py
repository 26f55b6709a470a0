"""perf_sdk: measure and publish a government service's four mandatory KPIs."""

from perf_sdk._errors import (
    ConfigurationError,
    PerfSdkError,
    RejectedError,
    RetryableError,
    TransportError,
    ValidationError,
)
from perf_sdk._version import __version__

__all__ = [
    "ConfigurationError",
    "PerfSdkError",
    "RejectedError",
    "RetryableError",
    "TransportError",
    "ValidationError",
    "__version__",
]
