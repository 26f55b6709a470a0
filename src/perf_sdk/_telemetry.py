"""The SDK's own health: counters every stage updates, read by ``Tracker.health()``.

Counters are plain integers owned by one background thread each (the writer
counts what it accepts, refuses and spools; the uploader what it delivers,
retries and dead-letters), so updating them costs nothing on the host's threads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Health", "Stats"]


@dataclass
class Stats:
    accepted: int = 0
    refused: int = 0
    spooled: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    retries: int = 0
    requests: int = 0
    adopted: int = 0
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def refuse(self, n: int = 1) -> None:
        with self._lock:
            self.refused += n

    def error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = time.time()

    def snapshot(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


@dataclass(frozen=True)
class Health:
    """A tracker's state, for a health endpoint or an alert.

    Alert when ``oldest_pending_age`` grows past your tolerance (records are
    waiting: the platform is down or refusing), when ``dead_letters`` is not 0
    (records the platform refused for good), or when ``paused`` is not empty
    (a token or data set is wrong).
    """

    spool_depth: int
    oldest_pending_age: float | None
    last_success: float | None
    last_error: str | None
    dead_letters: int
    paused: tuple[str, ...]
    counters: dict[str, Any]

    @property
    def healthy(self) -> bool:
        return not self.paused and self.dead_letters == 0 and (self.oldest_pending_age or 0.0) < 300.0
