"""``perf-sdk alerts prometheus``: rules promtool accepts, that fire as meant, on metrics the SDK really exports."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Sum

from perf_sdk._alerts import PROMETHEUS_METRICS, prometheus_name, prometheus_rules, rules_yaml
from perf_sdk._definition import parse_definition
from perf_sdk._errors import ConfigurationError
from perf_sdk._telemetry import Stats
from perf_sdk.cli import main

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian/Ubuntu: apt-get install prometheus; CI installs it)",
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, check=False)


def test_metric_names_match_what_the_sdk_exports() -> None:
    """Every metric a rule names is one of the SDK's instruments, under OpenTelemetry's Prometheus naming."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        stats = Stats()
        stats.instrument(meter_provider=provider, kpi_metrics=True, spool_view=lambda: (3, 0.0))
        for name in ("accepted", "refused", "spooled", "delivered", "dead_lettered", "unreadable", "retries"):
            stats.add(name)
        stats.journeys("transactions", [{"stage": "started", "channel": "digital", "count": 1}])
        stats.journeys("satisfaction", [{"rating": 5, "channel": "digital", "count": 1}])
        data = reader.get_metrics_data()
        exported = {
            prometheus_name(m.name, m.unit or "", isinstance(m.data, Sum) and m.data.is_monotonic)
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
    finally:
        provider.shutdown()
    wanted = {prometheus_name(*spec) for spec in PROMETHEUS_METRICS.values()}
    assert wanted <= exported, sorted(wanted - exported)
    assert "perf_sdk_spool_oldest_age_seconds" in wanted
    assert "perf_sdk_records_dead_lettered_total" in wanted
    assert "perf_sdk_transactions_total" in wanted


def test_names_follow_the_conversion_rules() -> None:
    assert prometheus_name("perf_sdk.spool.oldest_age", "s", False) == "perf_sdk_spool_oldest_age_seconds"
    assert prometheus_name("perf_sdk.records.delivered", "{record}", True) == "perf_sdk_records_delivered_total"


@needs_promtool
def test_promtool_check_rules_accepts_the_file(tmp_path: Path) -> None:
    definition = tmp_path / "perf-sdk.toml"
    definition.write_text("[targets]\ncompletion_rate = {min = 0.8}\nuser_satisfaction = {min = 0.75}\n")
    out = tmp_path / "perf-sdk-rules.yml"
    args = ["alerts", "prometheus", "--output", str(out), "--definition", str(definition)]
    assert main([*args, "--selector", 'service_name="apply-for-a-licence"']) == 0
    result = _promtool("check", "rules", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout
    assert 'perf_sdk_spool_oldest_age_seconds{service_name="apply-for-a-licence"}' in out.read_text()


UNIT_TESTS = """\
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'perf_sdk_spool_oldest_age_seconds{job="svc", instance="a"}'
        values: '0 60 1000 1060 1120 1180 1240 1300 1360 1420 1480'
      - series: 'perf_sdk_spool_oldest_age_seconds{job="svc", instance="b"}'
        values: '0x10'
      - series: 'perf_sdk_records_dead_lettered_total{job="svc", instance="a"}'
        values: '0 0 0 2 2 2 2 2 2 2 2'
      - series: 'perf_sdk_records_unreadable_total{job="svc", instance="b"}'
        values: '0 0 0 0 300 300 300 300 300 300 300'
    alert_rule_test:
      - eval_time: 10m
        alertname: PerfSdkSpoolBacklog
        exp_alerts:
          - exp_labels: {job: svc, instance: a, severity: warning}
            exp_annotations:
              summary: "perf_sdk records are waiting in the spool"
              description: "The oldest record waiting in the SDK's spool is 24m 40s old: the platform is down, unreachable or refusing the token. Run `perf-sdk spool status` on the host."
      - eval_time: 1m
        alertname: PerfSdkSpoolBacklog
        exp_alerts: []
      - eval_time: 5m
        alertname: PerfSdkDeadLetters
        exp_alerts:
          - exp_labels: {job: svc, instance: a, severity: critical}
            exp_annotations:
              summary: "the platform refused perf_sdk records for good"
              description: "2 record(s) were dead-lettered in the last hour. Run `perf-sdk spool dead` to see the platform's reason, fix it, then `perf-sdk spool replay-dead`."
      - eval_time: 6m
        alertname: PerfSdkSpoolUnreadable
        exp_alerts:
          - exp_labels: {job: svc, instance: b, severity: critical}
            exp_annotations:
              summary: "perf_sdk found spooled records it cannot read back"
              description: "300 spooled record(s) no longer read back from disk and were set aside, unsent. `perf-sdk spool dead` lists them; check the disk that holds the spool."
"""


@needs_promtool
def test_promtool_unit_tests_fire_as_meant(tmp_path: Path) -> None:
    """A backlog over 15 minutes for 5 minutes fires for that instance only; a dead letter fires at once."""
    (tmp_path / "rules.yml").write_text(rules_yaml(prometheus_rules()))
    (tmp_path / "tests.yml").write_text(UNIT_TESTS)
    result = subprocess.run(
        [str(PROMTOOL), "test", "rules", "tests.yml"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_completion_rate_rule_only_with_a_target() -> None:
    assert "PerfSdkCompletionRateBelowTarget" not in rules_yaml(prometheus_rules())
    definition = parse_definition("[targets]\ncompletion_rate = {min = 0.8}\n")
    text = rules_yaml(prometheus_rules(definition=definition))
    assert "PerfSdkCompletionRateBelowTarget" in text and "< 0.8" in text


def test_selector_with_braces_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "prometheus", "--selector", '{job="x"}']) == 2
    assert "without braces" in capsys.readouterr().err


TARGET_TESTS = """\
rule_files: [rules.yml]
evaluation_interval: 30m
tests:
  - interval: 1h
    input_series:
      # per hour: 6 answers rated 5, 4 rated 1 (60% satisfied, below 75%)
      - series: 'perf_sdk_satisfaction_total{job="svc", instance="a", rating="5", channel="digital"}'
        values: '0+6x200'
      - series: 'perf_sdk_satisfaction_total{job="svc", instance="a", rating="1", channel="digital"}'
        values: '0+4x200'
      # per hour: 10 digital starts, 9 completions (90%, above 80%)
      - series: 'perf_sdk_transactions_total{job="svc", instance="a", stage="started", channel="digital"}'
        values: '0+10x200'
      - series: 'perf_sdk_transactions_total{job="svc", instance="a", stage="completed", channel="digital"}'
        values: '0+9x200'
    alert_rule_test:
      - eval_time: 190h
        alertname: PerfSdkSatisfactionBelowTarget
        exp_alerts:
          - exp_labels: {job: svc, instance: a, severity: warning}
            exp_annotations:
              summary: "user satisfaction below target"
              description: "Answers rating the service 4 or 5 over the last 7 days are 60% of all answers, below the target of 75% in perf-sdk.toml. Run `perf-sdk check`: it also says when there are too few answers to tell."
      - eval_time: 190h
        alertname: PerfSdkCompletionRateBelowTarget
        exp_alerts: []
"""


@needs_promtool
def test_promtool_target_rules_fire_as_meant(tmp_path: Path) -> None:
    """Satisfaction at 60% against a 75% target fires; a 90% completion rate against 80% does not."""
    definition = parse_definition("[targets]\ncompletion_rate = {min = 0.8}\nuser_satisfaction = {min = 0.75}\n")
    (tmp_path / "rules.yml").write_text(rules_yaml(prometheus_rules(definition=definition)))
    (tmp_path / "tests.yml").write_text(TARGET_TESTS)
    result = subprocess.run(
        [str(PROMTOOL), "test", "rules", "tests.yml"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# Red-team round 4: flag values that wrote rules promtool accepts but that never or always fire, PromQL
# injected through --by, selectors that broke the file, and --output paths that gave a traceback.


@pytest.mark.parametrize("minutes", ["nan", "inf", "1e999", "-inf", "0", "-1", "3e306"])
def test_spool_age_minutes_must_be_finite_and_positive(minutes: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``> nan`` never fires and ``> inf`` neither: argparse refuses the value, naming flag, value and rule."""
    with pytest.raises(SystemExit) as exited:
        main(["alerts", "prometheus", f"--spool-age-minutes={minutes}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--spool-age-minutes" in err and repr(minutes) in err and "finite number of minutes above 0" in err


@pytest.mark.parametrize("minutes", [math.nan, math.inf, -math.inf, 0.0, -1.0, 3e306, True])
def test_prometheus_rules_refuses_non_finite_minutes(minutes: float) -> None:
    with pytest.raises(ConfigurationError, match="spool_age_minutes") as raised:
        prometheus_rules(spool_age_minutes=minutes)
    assert "--spool-age-minutes" in raised.value.cli_message


def test_small_and_fractional_minutes_still_write_a_threshold() -> None:
    assert "> 90\n" in rules_yaml(prometheus_rules(spool_age_minutes=1.5))
    assert "> 6e-299\n" in rules_yaml(prometheus_rules(spool_age_minutes=1e-300))


@pytest.mark.parametrize(
    "by",
    [
        "job) (up) or on() vector(1) #",
        "job\n        for: 999d\n        x",
        "job\r      - alert: Injected",
        "1job",
        "service.name",
        "jöb",
    ],
)
def test_by_labels_must_be_label_names(by: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A --by label is pasted into ``by (...)``: ``job) (up) or on() vector(1) #`` made an always-firing rule."""
    assert main(["alerts", "prometheus", "--by", by]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"--by {by!r}" in captured.err and "label name" in captured.err
    with pytest.raises(ConfigurationError, match="by="):
        prometheus_rules(by=[by])


def test_by_as_one_string_is_refused() -> None:
    """``by="job"`` would otherwise group by j, o and b."""
    with pytest.raises(ConfigurationError, match="not one string"):
        prometheus_rules(by="job")


BAD_SELECTORS = [
    'job="a"\r        for: 999d\r#',  # \r: a YAML line break inside the block scalar
    'job="a"\u0085        for: 999d\u0085#',  # NEL: another
    'job="a\u2028b"',  # LINE SEPARATOR inside a value
    'job="a\rb"',
    'job="a\tb"',
    'job="a\x00b"',
    'job="a',  # unbalanced quote
    'job="a\\"',  # the closing quote escaped: a trailing backslash
    'job="a\\',
    'job="a"} or vector(1) or up{x="y"',
    'job="a" or vector(1)',
    '{job="x"}',
    'job="a",',
    ',job="a"',
    'job="a",,env="b"',
    "job='a'",
    "job=`a`",
    "job=a",
    'job=="a"',
    'job<>"a"',
    '1job="a"',
    'service.name="a"',
    '__name__="up"',
    'job="\\\'"',  # \' is no escape in a double-quoted PromQL string
    'job="\\d"',
    'job="\\0"',
    'job="\\x4"',
    'job="\\xzz"',
    'job="\\ud800"',
    'job="\\U00110000"',
    'job="\\xff"',  # not UTF-8 once unescaped
    'job=~"("',
    'job=~"(?=a)"',
    'job=~"(a)\\\\1"',  # a back-reference
    'job=~"a\\\\"',  # a regular expression ending in a backslash escapes Prometheus's closing ")"
    'job=~"\\\\j"',  # an escape RE2 does not know
    'job="a" env="b"',
]


@pytest.mark.parametrize("selector", BAD_SELECTORS)
def test_selector_must_be_label_matchers(selector: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Anything but ``label op "string", ...`` is refused, naming --selector; before, these wrote broken PromQL."""
    assert main(["alerts", "prometheus", "--selector", selector]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--selector" in captured.err and "label matchers" in captured.err
    with pytest.raises(ConfigurationError, match="selector="):
        prometheus_rules(selector=selector)


GOOD_SELECTORS = {
    'service_name="apply-for-a-licence"': 'service_name="apply-for-a-licence"',
    ' job = "a" ,\tenv!~"dev|test" ': 'job="a", env!~"dev|test"',
    'a!="x", b=~"\\\\d+", c="é\\u00e9\\U0001F600\\x41\\101\\"\\\\\\n\\r\\t"': (
        'a!="x", b=~"\\\\d+", c="é\\u00e9\\U0001F600\\x41\\101\\"\\\\\\n\\r\\t"'
    ),
    'c="\\xc3\\xa9"': 'c="\\xc3\\xa9"',
    # an escaped "(" before "?=", and an escaped backslash before "1", are neither lookaround nor back-reference
    'job=~"\\\\(?=x", env=~"\\\\\\\\1"': 'job=~"\\\\(?=x", env=~"\\\\\\\\1"',
    'env=~"dev\\\\z|\\\\p{Greek}+|\\\\pL"': 'env=~"dev\\\\z|\\\\p{Greek}+|\\\\pL"',  # RE2 escapes Python lacks
    "   ": "",
}


@pytest.mark.parametrize(("selector", "written"), GOOD_SELECTORS.items())
def test_good_selectors_are_kept(selector: str, written: str) -> None:
    text = rules_yaml(prometheus_rules(selector=selector))
    if written:
        assert f"perf_sdk_spool_oldest_age_seconds{{{written}}}" in text
    else:
        assert "perf_sdk_spool_oldest_age_seconds)" in text


@needs_promtool
def test_promtool_accepts_every_selector_that_passes(tmp_path: Path) -> None:
    """What the selector check lets through promtool parses; every refused one it would have refused or misread."""
    out = tmp_path / "rules.yml"
    definition = parse_definition("[targets]\ncompletion_rate = {min = 0.8}\nuser_satisfaction = {min = 0.75}\n")
    for selector in GOOD_SELECTORS:
        out.write_text(rules_yaml(prometheus_rules(selector=selector, definition=definition)), encoding="utf-8")
        result = _promtool("check", "rules", str(out))
        assert result.returncode == 0, (selector, result.stdout + result.stderr)
        assert "SUCCESS: 9 rules found" in result.stdout


@pytest.mark.parametrize("where", ["dir", "file-as-parent"])
def test_output_that_cannot_be_written_is_a_usage_error(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory, or a parent that cannot be made, was an IsADirectoryError / FileNotFoundError traceback."""
    (tmp_path / "file").write_text("x")
    target = tmp_path if where == "dir" else tmp_path / "file" / "rules.yml"
    assert main(["alerts", "prometheus", "--output", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"--output {str(target)!r}" in err
    assert "Traceback" not in err


def test_output_makes_missing_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "rules.yml"
    assert main(["alerts", "prometheus", "--output", str(target)]) == 0
    assert "PerfSdkSpoolBacklog" in target.read_text()
