"""Intervals for proportions and their differences: Wilson score and Newcombe's method.

Why these two, and not the textbook ``p ± 1.96·sqrt(p(1-p)/n)`` (Wald):
service figures are often near 0% or 100% (a completion rate of 97%) and
often over small counts (a quiet week's satisfaction answers), where Wald's
interval escapes 0..1 and covers the truth far less than 95% of the time.
Wilson's score interval stays inside 0..1 and keeps its coverage; Newcombe's
"hybrid score" interval for a difference (his method 10, 1998) is built from
two Wilson intervals and inherits both properties. ``perf-sdk check`` calls a
drop significant when the whole Newcombe interval for *now - baseline* lies
below zero, and ``perf-sdk kpis --around`` calls a change significant when its
interval excludes zero: one method for both, written out in
``docs/guides/success.md``.

Pure functions of counts; no dependency beyond :mod:`math`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

__all__ = ["Difference", "Interval", "newcombe_difference", "wilson_interval", "z_for"]


def z_for(confidence: float) -> float:
    """The two-sided normal quantile: 1.96 for 0.95."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r}: a fraction between 0 and 1, e.g. 0.95")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


@dataclass(frozen=True)
class Interval:
    """A proportion ``successes / trials`` and its confidence interval ``low`` .. ``high``."""

    estimate: float
    low: float
    high: float
    successes: float
    trials: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "successes": self.successes,
            "trials": self.trials,
        }


def wilson_interval(successes: float, trials: float, confidence: float = 0.95) -> Interval:
    """Wilson's score interval for ``successes / trials``.

    With ``p = x/n`` and ``z`` the normal quantile::

        centre = (p + z²/2n) / (1 + z²/n)
        half   = z / (1 + z²/n) · sqrt(p(1-p)/n + z²/4n²)

    >>> i = wilson_interval(8, 10)
    >>> round(i.low, 4), round(i.high, 4)
    (0.4902, 0.9433)
    """
    if trials <= 0:
        raise ValueError(f"trials={trials!r}: at least one trial is needed for an interval")
    if successes < 0 or successes > trials:
        raise ValueError(f"successes={successes!r}: between 0 and trials ({trials!r})")
    z = z_for(confidence)
    p = successes / trials
    z2n = z * z / trials
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / trials + z * z / (4.0 * trials * trials))
    # at 0 or n the exact bound is 0 or 1; the float arithmetic can land a hair inside it
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Interval(p, low, high, successes, trials)


@dataclass(frozen=True)
class Difference:
    """``after - before`` for two proportions, with Newcombe's interval ``low`` .. ``high``."""

    before: Interval
    after: Interval
    difference: float
    low: float
    high: float
    confidence: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero (a real change at this confidence)."""
        return self.low > 0.0 or self.high < 0.0

    @property
    def significant_drop(self) -> bool:
        """Whether the whole interval lies below zero."""
        return self.high < 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "difference": self.difference,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "significant": self.significant,
        }


def newcombe_difference(
    before_successes: float,
    before_trials: float,
    after_successes: float,
    after_trials: float,
    confidence: float = 0.95,
) -> Difference:
    """Newcombe's hybrid score interval for ``p_after - p_before``.

    With Wilson intervals ``(l1, u1)`` for ``p1 = after`` and ``(l2, u2)`` for
    ``p2 = before`` and ``d = p1 - p2``::

        low  = d - sqrt((p1 - l1)² + (u2 - p2)²)
        high = d + sqrt((u1 - p1)² + (p2 - l2)²)

    >>> d = newcombe_difference(80, 100, 60, 100)
    >>> round(d.difference, 2), round(d.low, 4), round(d.high, 4), d.significant
    (-0.2, -0.3185, -0.0731, True)
    """
    b = wilson_interval(before_successes, before_trials, confidence)
    a = wilson_interval(after_successes, after_trials, confidence)
    d = a.estimate - b.estimate
    low = d - math.sqrt((a.estimate - a.low) ** 2 + (b.high - b.estimate) ** 2)
    high = d + math.sqrt((a.high - a.estimate) ** 2 + (b.estimate - b.low) ** 2)
    return Difference(b, a, d, low, high, confidence)
