"""A simulated government service, for the demo, examples and tests.

A year of "apply for a licence": visitors start and finish online (each
visitor a real transaction id, some refreshing the confirmation page), the
phone line, paper forms and counter appointments report daily totals, some
users answer the satisfaction question, and finance reports monthly costs by
type. Demand follows the seasons (a spring peak, quiet Augusts and
Christmases, light weekends), digital take-up grows through the year, drop-off
falls as the service improves, and satisfaction rises with it.

Everything goes through a real :class:`~perf_sdk.Tracker`, and the simulator
keeps its own tally of what it sent, so the KPIs read back from the platform
can be checked against arithmetic done here, independently of ``_kpi.py``.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from perf_sdk._tracker import Tracker

__all__ = ["SimulatedService", "Tally", "quarter_start"]

#: Offline channels' share of non-digital demand, and their completion rates.
_OFFLINE = {"phone": (0.55, 0.93), "paper": (0.35, 0.86), "face_to_face": (0.10, 0.97)}
#: Monthly costs in pence at the start of the year; staff costs fall as take-up grows.
_COSTS = {"staff": 14_500_000, "it": 3_800_000, "accommodation": 1_650_000, "postage": 420_000}


def quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


@dataclass
class Tally:
    """What the simulation sent, per quarter (its first day), as the platform should store it."""

    started: Counter[tuple[date, str]] = field(default_factory=Counter)
    completed: Counter[tuple[date, str]] = field(default_factory=Counter)
    ratings: Counter[tuple[date, int]] = field(default_factory=Counter)
    costs: Counter[date] = field(default_factory=Counter)
    calls: int = 0
    duplicates: int = 0

    def quarters(self) -> list[date]:
        return sorted({q for q, _ in self.started} | set(self.costs))

    def expected(self, quarter: date) -> dict[str, float | None]:
        """The four KPIs of a quarter, by hand from the tally."""
        digital_started = self.started[quarter, "digital"]
        digital_done = self.completed[quarter, "digital"]
        all_done = sum(n for (q, _), n in self.completed.items() if q == quarter)
        answers = sum(n for (q, _), n in self.ratings.items() if q == quarter)
        happy = self.ratings[quarter, 4] + self.ratings[quarter, 5]
        cost = self.costs.get(quarter)
        return {
            "completion_rate": digital_done / digital_started if digital_started else None,
            "user_satisfaction": happy / answers if answers else None,
            "cost_per_transaction": cost / all_done if cost is not None and all_done else None,
            "digital_take_up": digital_done / all_done if all_done else None,
        }


@dataclass
class SimulatedService:
    """Drives a tracker through ``months`` months from ``start`` (the first of a month)."""

    start: date
    months: int = 12
    seed: int = 2026
    #: Digital visitors on an average weekday at the start of the year.
    daily_visitors: int = 300

    def days(self) -> list[date]:
        end_month = self.start.month - 1 + self.months
        end = date(self.start.year + end_month // 12, end_month % 12 + 1, 1)
        return [self.start + timedelta(days=i) for i in range((end - self.start).days)]

    def run(self, tracker: Tracker, progress: Callable[[int, int], None] | None = None) -> Tally:
        rng = random.Random(self.seed)
        tally = Tally()
        days = self.days()
        for index, day in enumerate(days):
            self._day(tracker, rng, tally, day, index / max(1, len(days) - 1))
            if progress is not None:
                progress(index + 1, len(days))
        self._costs(tracker, tally, days)
        return tally

    def _demand(self, day: date) -> float:
        season = 1.0 + 0.35 * math.sin(2 * math.pi * (day.timetuple().tm_yday - 20) / 365.25)
        if day.month == 8:
            season *= 0.8
        if day.month == 12 and day.day >= 20:
            season *= 0.5
        if day.weekday() >= 5:
            season *= 0.45
        return season

    def _day(self, tracker: Tracker, rng: random.Random, tally: Tally, day: date, progress: float) -> None:
        quarter = quarter_start(day)
        demand = self._demand(day) * self.daily_visitors
        digital_share = 0.62 + 0.20 * progress
        completion = 0.70 + 0.14 * progress
        midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        # Online: one transaction per visitor, through the real hot path.
        visitors = max(0, round(rng.gauss(demand, math.sqrt(demand))))
        for i in range(visitors):
            txn = f"{self.seed}-{day.isoformat()}-{i}"
            began = midnight + timedelta(seconds=rng.randrange(6 * 3600, 22 * 3600))
            tracker.start(txn, channel="digital", at=began)
            tally.started[quarter, "digital"] += 1
            tally.calls += 1
            if rng.random() >= completion:
                continue  # dropped out
            done = began + timedelta(seconds=rng.randrange(180, 3000))
            tracker.complete(txn, channel="digital", at=done)
            tally.completed[quarter, "digital"] += 1
            tally.calls += 1
            if rng.random() < 0.08:  # refreshed the confirmation page: stored once
                tracker.complete(txn, channel="digital", at=done + timedelta(seconds=5))
                tally.calls += 1
                tally.duplicates += 1
            if rng.random() < 0.18:
                rating = self._rating(rng, progress)
                tracker.satisfaction(rating, channel="digital", transaction_id=txn, at=done)
                tally.ratings[quarter, rating] += 1
                tally.calls += 1
        # Offline: daily totals, reported by the contact centre and the post room.
        offline = demand * (1 - digital_share) / digital_share
        noon = midnight + timedelta(hours=12)
        for channel, (share, rate) in _OFFLINE.items():
            started = max(0, round(offline * share * rng.uniform(0.9, 1.1)))
            completed = sum(1 for _ in range(started) if rng.random() < rate)
            if started:
                tracker.start(None, channel=channel, count=started, at=noon)
                tally.started[quarter, channel] += started
                tally.calls += 1
            if completed:
                tracker.complete(None, channel=channel, count=completed, at=noon)
                tally.completed[quarter, channel] += completed
                tally.calls += 1
        if day.weekday() == 4:  # the weekly phone survey
            answers = max(1, round(offline * 0.05))
            for rating, n in Counter(self._rating(rng, progress * 0.5) for _ in range(answers)).items():
                tracker.satisfaction(rating, channel="phone", count=n, at=noon)
                tally.ratings[quarter, rating] += n
                tally.calls += 1

    @staticmethod
    def _rating(rng: random.Random, progress: float) -> int:
        weights = [0.07 - 0.03 * progress, 0.08 - 0.03 * progress, 0.12, 0.40, 0.33 + 0.06 * progress]
        return rng.choices((1, 2, 3, 4, 5), weights)[0]

    def _costs(self, tracker: Tracker, tally: Tally, days: list[date]) -> None:
        months = sorted({(d.year, d.month) for d in days})
        for index, (year, month) in enumerate(months):
            for cost_type, monthly in _COSTS.items():
                factor = 1.0 - (0.12 * index / 11 if cost_type in ("staff", "postage") else 0.0)
                amount = round(monthly * factor)
                tracker.cost(amount, period=f"{year}-{month:02d}", cost_type=cost_type, channel="all")
                tally.costs[quarter_start(date(year, month, 1))] += amount
                tally.calls += 1
