"""The pytest plugin (entry point ``perf_sdk``): the ``perf_tracker`` fixture.

pytest imports every installed plugin at start-up, in every project that has
perf_sdk installed, so this module imports nothing of the SDK until a test
asks for the fixture. (``perf_sdk/__init__.py`` is lazy for the same reason.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from perf_sdk.testing import CapturingTracker


@pytest.fixture
def perf_tracker() -> Iterator[CapturingTracker]:
    """A fresh :class:`perf_sdk.testing.CapturingTracker` for one test."""
    from perf_sdk.testing import capture

    with capture() as tracker:
        yield tracker
