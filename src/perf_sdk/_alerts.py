"""Prometheus alerting rules for the OpenTelemetry metrics the SDK exports (``_telemetry.py``).

For teams whose services already send OpenTelemetry metrics to Prometheus
(through the Collector's ``prometheus`` / ``prometheusremotewrite`` exporter or
Prometheus's own OTLP receiver): ``perf-sdk alerts prometheus`` writes a rule
file that ``promtool check rules`` accepts, alerting on the SDK's health
(spool backlog, delivery failing, dead letters, refused records) and, when the
service counts its journeys as metrics (``kpi_metrics=True``), on journeys
stopping and on the completion rate and user satisfaction falling below the
definition's targets.

Metric names follow the OpenTelemetry -> Prometheus rules: dots become
underscores, a unit ``s`` adds ``_seconds``, unit annotations in braces
(``{record}``) are dropped, and monotonic counters end in ``_total``
(:func:`prometheus_name`). A test collects the SDK's real instruments and
checks every metric named here exists under that conversion.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from perf_sdk._definition import Definition
from perf_sdk._promql import check_labels, error, parse_selector

__all__ = ["PROMETHEUS_METRICS", "Rule", "prometheus_name", "prometheus_rules", "rules_yaml", "spool_age_seconds"]

#: The SDK's instruments that the rules use: (OpenTelemetry name, unit, is a counter).
PROMETHEUS_METRICS: Final = {
    "spool_age": ("perf_sdk.spool.oldest_age", "s", False),
    "spool_depth": ("perf_sdk.spool.depth", "{record}", False),
    "delivered": ("perf_sdk.records.delivered", "{record}", True),
    "dead_lettered": ("perf_sdk.records.dead_lettered", "{record}", True),
    "unreadable": ("perf_sdk.records.unreadable", "{record}", True),
    "refused": ("perf_sdk.records.refused", "{record}", True),
    "retries": ("perf_sdk.upload.retries", "{retry}", True),
    "transactions": ("perf_sdk.transactions", "{transaction}", True),
    "satisfaction": ("perf_sdk.satisfaction", "{answer}", True),
}

_UNIT_SUFFIXES: Final = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio"}


def prometheus_name(name: str, unit: str, counter: bool) -> str:
    """The name Prometheus shows for an OpenTelemetry instrument (the specification's conversion)."""
    out = name.replace(".", "_")
    suffix = "" if unit.startswith("{") else _UNIT_SUFFIXES.get(unit, unit)
    if suffix and not out.endswith(f"_{suffix}"):
        out += f"_{suffix}"
    if counter:
        out += "_total"
    return out


def _m(key: str) -> str:
    return prometheus_name(*PROMETHEUS_METRICS[key])


@dataclass(frozen=True)
class Rule:
    alert: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str


def spool_age_seconds(minutes: float) -> str:
    """``minutes`` as the PromQL number of seconds the backlog rule compares with; refuses nan, inf and <= 0.

    ``nan`` would make the rule never fire and ``inf`` (or a number that overflows once in seconds) too, though
    promtool accepts both.
    """
    rule = "a finite number of minutes above 0, e.g. 15"
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)):
        raise error("spool_age_minutes", "--spool-age-minutes", minutes, rule)
    text = f"{minutes * 60:g}" if math.isfinite(minutes) and minutes > 0 else ""
    if not text or not math.isfinite(float(text)) or float(text) <= 0:
        raise error("spool_age_minutes", "--spool-age-minutes", minutes, rule)
    return text


def prometheus_rules(
    *,
    spool_age_minutes: float = 15.0,
    by: Sequence[str] = ("job", "instance"),
    selector: str = "",
    definition: Definition | None = None,
) -> list[Rule]:
    """The rules, as data; ``selector`` (e.g. ``service_name="apply"``) narrows every series.

    Raises :class:`~perf_sdk.ConfigurationError` for minutes that are not finite and above 0, a ``by``
    entry that is not a label name, or a ``selector`` that is not label matchers (:func:`parse_selector`).
    """
    threshold = spool_age_seconds(spool_age_minutes)
    by = check_labels(by)
    selector = parse_selector(selector)
    grouping = f" by ({', '.join(by)})" if by else ""

    def series(key: str, extra: str = "") -> str:
        labels = ", ".join(x for x in (selector, extra) if x)
        return f"{_m(key)}{{{labels}}}" if labels else _m(key)

    rules = [
        Rule(
            "PerfSdkSpoolBacklog",
            f"max{grouping} ({series('spool_age')}) > {threshold}",
            "5m",
            "warning",
            "perf_sdk records are waiting in the spool",
            "The oldest record waiting in the SDK's spool is {{ $value | humanizeDuration }} old: the platform is "
            "down, unreachable or refusing the token. Run `perf-sdk spool status` on the host.",
        ),
        Rule(
            "PerfSdkDeliveryFailing",
            f"sum{grouping} (rate({series('retries')}[15m])) > 0\n"
            f"unless sum{grouping} (rate({series('delivered')}[15m])) > 0",
            "15m",
            "warning",
            "perf_sdk uploads are failing",
            "Uploads have been retried for 15 minutes with nothing delivered. Records are safe in the spool; "
            "check the platform's status and the SDK's last_error in health().",
        ),
        Rule(
            "PerfSdkDeadLetters",
            f"sum{grouping} (increase({series('dead_lettered')}[1h])) > 0",
            "0m",
            "critical",
            "the platform refused perf_sdk records for good",
            "{{ $value }} record(s) were dead-lettered in the last hour. Run `perf-sdk spool dead` to see the "
            "platform's reason, fix it, then `perf-sdk spool replay-dead`.",
        ),
        Rule(
            "PerfSdkSpoolUnreadable",
            f"sum{grouping} (increase({series('unreadable')}[1h])) > 0",
            "0m",
            "critical",
            "perf_sdk found spooled records it cannot read back",
            "{{ $value }} spooled record(s) no longer read back from disk and were set aside, unsent. "
            "`perf-sdk spool dead` lists them; check the disk that holds the spool.",
        ),
        Rule(
            "PerfSdkRecordsRefused",
            f"sum{grouping} (increase({series('refused')}[1h])) > 0",
            "0m",
            "warning",
            "perf_sdk refused records from the service",
            "{{ $value }} recording call(s) were refused in the last hour (invalid input, a full queue or spool, "
            "a closed tracker): those events are not counted. See the SDK's WARNING logs.",
        ),
        Rule(
            "PerfSdkNoJourneys",
            f"sum{grouping} (increase({series('transactions', 'stage=' + json.dumps('started'))}[6h])) == 0",
            "30m",
            "warning",
            "no transactions started in 6 hours",
            "The service recorded no transaction starts for 6 hours (needs kpi_metrics=True). Is the service "
            "up, and are the journeys' start paths still right?",
        ),
        Rule(
            "PerfSdkNoCompletions",
            f"sum{grouping} (increase({series('transactions', 'stage=' + json.dumps('started'))}[2h])) > 10\n"
            f"unless sum{grouping} (increase({series('transactions', 'stage=' + json.dumps('completed'))}[2h])) > 0",
            "30m",
            "critical",
            "transactions start but none complete",
            "More than 10 transactions started in 2 hours and none completed: a step of the service may be "
            "broken, or the completion path moved.",
        ),
    ]
    target = definition.targets.completion_rate if definition else None
    if target is not None and target.min is not None:
        digital = 'channel="digital"'
        done = series("transactions", f'stage="completed", {digital}')
        started = series("transactions", f'stage="started", {digital}')
        rules.append(
            Rule(
                "PerfSdkCompletionRateBelowTarget",
                f"sum{grouping} (increase({done}[1d]))\n  / sum{grouping} (increase({started}[1d])) < {target.min:g}",
                "1h",
                "warning",
                "digital completion rate below target",
                f"Digital completions / starts over the last day is {{{{ $value | humanizePercentage }}}}, below "
                f"the target of {target.min * 100:g}% in perf-sdk.toml. Run `perf-sdk check` for the platform's "
                "figures and the trend.",
            )
        )
    satisfaction = definition.targets.user_satisfaction if definition else None
    if satisfaction is not None and satisfaction.min is not None:
        good = series("satisfaction", 'rating=~"4|5"')
        rules.append(
            Rule(
                "PerfSdkSatisfactionBelowTarget",
                f"sum{grouping} (increase({good}[7d]))\n  / sum{grouping} (increase({series('satisfaction')}[7d]))"
                f" < {satisfaction.min:g}",
                "1h",
                "warning",
                "user satisfaction below target",
                f"Answers rating the service 4 or 5 over the last 7 days are {{{{ $value | humanizePercentage }}}} "
                f"of all answers, below the target of {satisfaction.min * 100:g}% in perf-sdk.toml. Run "
                "`perf-sdk check`: it also says when there are too few answers to tell.",
            )
        )
    return rules


def rules_yaml(rules: Sequence[Rule], *, group: str = "perf_sdk") -> str:
    """A Prometheus rule file; strings as JSON (a subset of YAML), expressions as block scalars."""
    lines = [
        "# Alerting rules for perf_sdk's OpenTelemetry metrics; written by `perf-sdk alerts prometheus`.",
        "# Check with: promtool check rules FILE",
        "groups:",
        f"  - name: {json.dumps(group)}",
        "    rules:",
    ]
    for r in rules:
        lines += [f"      - alert: {r.alert}", "        expr: |"]
        lines += [f"          {line}" for line in r.expr.splitlines()]
        if r.duration != "0m":
            lines.append(f"        for: {r.duration}")
        lines += [
            "        labels:",
            f"          severity: {json.dumps(r.severity)}",
            "        annotations:",
            f"          summary: {json.dumps(r.summary)}",
            f"          description: {json.dumps(r.description)}",
        ]
    return "\n".join(lines) + "\n"
