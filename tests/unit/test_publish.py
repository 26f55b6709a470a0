"""perf_sdk.publish from records and files: the site's files, their contents, determinism."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from perf_sdk import ConfigurationError, ValidationError
from perf_sdk._publish import ServiceInfo, publish
from perf_sdk._publish_files import KPI_FIELDS, SERVICE_FIELDS
from perf_sdk.cli import main

PUBLISHED = "2026-04-02T09:30:00Z"


def _records(seed: int, months: int = 15, *, costs: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(months):
        year, month = 2025 + i // 12, i % 12 + 1
        ts = f"{year}-{month:02d}-10T10:00:00Z"
        out += [
            {"_timestamp": ts, "stage": "started", "channel": "digital", "count": 100 + seed * 10 + i},
            {"_timestamp": ts, "stage": "completed", "channel": "digital", "count": 70 + seed * 5 + i},
            {"_timestamp": ts, "stage": "completed", "channel": "phone", "count": 30 - seed},
        ]
        out += [{"_timestamp": ts, "rating": r, "channel": "digital", "count": r * 2 + seed} for r in range(1, 6)]
        if costs:
            out.append({"_timestamp": ts, "period": "month", "amount_pence": 200_000 + seed, "channel": "all"})
    return out


RECORDS = {"apply-for-a-licence": _records(0), "renew-a-permit": _records(1), "book-a-test": _records(2, costs=False)}
META = {
    "apply-for-a-licence": ServiceInfo("apply-for-a-licence", "Apply for a licence", "Licensing Office"),
    "renew-a-permit": {"title": "Renew a permit", "organisation": "Permit Agency"},
}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    publish(out, records=RECORDS, metadata=META, published_at=PUBLISHED, base_url="https://perf.example.gov.uk/")
    return out


def test_the_files_the_issue_names(site: Path) -> None:
    for name in ("index.html", "services.csv", "datapackage.json", "services.schema.json"):
        assert (site / name).is_file()
    for slug in RECORDS:
        for name in ("index.html", "kpis.csv", "kpis.json", "kpis.schema.json", "ckan-dataset.json"):
            assert (site / slug / name).is_file(), f"{slug}/{name}"


def test_same_data_same_bytes_and_rerun_replaces(site: Path, tmp_path: Path) -> None:
    publish(tmp_path, records=RECORDS, metadata=META, published_at=PUBLISHED, base_url="https://perf.example.gov.uk/")
    assert _tree(tmp_path) == _tree(site)
    publish(tmp_path, records=RECORDS, metadata=META, published_at=PUBLISHED, base_url="https://perf.example.gov.uk/")
    assert _tree(tmp_path) == _tree(site)  # nothing duplicated, nothing left behind


def test_kpis_rows(site: Path) -> None:
    rows = list(csv.DictReader(io.StringIO((site / "apply-for-a-licence" / "kpis.csv").read_text("utf-8"))))
    assert list(rows[0]) == [f["name"] for f in KPI_FIELDS]
    q1 = next(r for r in rows if r["period"] == "2026-Q1")
    assert q1["period_name"] == "January to March 2026"
    assert (q1["start"], q1["end"], q1["complete"]) == ("2026-01-01", "2026-03-31", "true")
    assert q1["completion_rate_numerator"] == str(sum(70 + i for i in (12, 13, 14)))
    assert q1["satisfaction_very_satisfied"] == "30"  # 10 a month, three months
    assert q1["satisfaction_answers"] == str(3 * sum(r * 2 for r in range(1, 6)))
    assert q1["completed_phone"] == "90"
    assert q1["revision_date"] == "2026-04-02"
    unknown = next(r for r in csv.DictReader(io.StringIO((site / "book-a-test" / "kpis.csv").read_text("utf-8"))))
    assert unknown["cost_per_transaction_value"] == ""
    assert unknown["cost_per_transaction_unknown_reason"] == "no cost records"
    as_json = json.loads((site / "apply-for-a-licence" / "kpis.json").read_text("utf-8"))
    assert [r["period"] for r in as_json] == [r["period"] for r in rows]
    assert as_json[-1]["complete"] is True
    assert as_json[-1]["completion_rate_unknown_reason"] == ""


def test_services_csv_is_every_service_by_period(site: Path) -> None:
    rows = list(csv.DictReader(io.StringIO((site / "services.csv").read_text("utf-8"))))
    assert list(rows[0]) == [f["name"] for f in SERVICE_FIELDS]
    assert {(r["service"], r["period"]) for r in rows} == {
        (s, p) for s in RECORDS for p in ("2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4", "2026-Q1")
    }
    assert {r["organisation"] for r in rows} == {"Licensing Office", "Permit Agency", ""}


def test_schemas_describe_the_columns(site: Path) -> None:
    schema = json.loads((site / "apply-for-a-licence" / "kpis.schema.json").read_text("utf-8"))
    names = [f["name"] for f in schema["fields"]]
    assert names == [f["name"] for f in KPI_FIELDS]
    titles = {f["name"]: f["title"] for f in schema["fields"]}
    assert titles["satisfaction_very_dissatisfied"] == "Very dissatisfied"
    assert titles["satisfaction_very_satisfied"] == "Very satisfied"
    assert schema["primaryKey"] == ["period"]


def test_ckan_payload(site: Path) -> None:
    ckan = json.loads((site / "renew-a-permit" / "ckan-dataset.json").read_text("utf-8"))
    assert ckan["license_id"] == "uk-ogl"
    assert ckan["title"] == "Renew a permit: service performance"
    assert ckan["owner_org"] == "permit-agency"
    assert {"name": "Digital service performance"} in ckan["tags"]
    assert ckan["update_frequency"] == "quarterly"
    urls = [r["url"] for r in ckan["resources"]]
    assert "https://perf.example.gov.uk/renew-a-permit/kpis.csv" in urls
    assert all(u.startswith("https://perf.example.gov.uk/") for u in urls)
    anonymous = json.loads((site / "book-a-test" / "ckan-dataset.json").read_text("utf-8"))
    assert "owner_org" not in anonymous and "organization" not in anonymous


def _ld(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/ld\+json">(.*?)</script>', page, re.DOTALL)
    assert match
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_json_ld_in_every_page(site: Path) -> None:
    ld = _ld((site / "renew-a-permit" / "index.html").read_text("utf-8"))
    assert ld["@type"] == "Dataset"
    assert ld["creator"] == {"@type": "Organization", "name": "Permit Agency"}
    assert ld["distribution"][0]["contentUrl"] == "https://perf.example.gov.uk/renew-a-permit/kpis.csv"
    assert ld["temporalCoverage"] == "2025-01-01/2026-03-31"
    assert _ld((site / "index.html").read_text("utf-8"))["@type"] == "Dataset"


def test_services_list_compares(site: Path) -> None:
    page = (site / "index.html").read_text("utf-8")
    assert "January to March 2026, the latest complete quarter" in page
    assert "Median across services" in page
    assert page.index("Apply for a licence") < page.index("Book a test") < page.index("Renew a permit")
    # sortable without script: each heading links to a pre-rendered order
    assert 'href="sorted/completion-rate-descending.html"' in page
    cost = (site / "sorted" / "cost-per-transaction-ascending.html").read_text("utf-8")
    assert 'aria-sort="ascending"' in cost
    # cheapest first; Book a test has no cost records: unknown, last
    assert cost.index("Renew a permit") < cost.index("Apply for a licence") < cost.index("Book a test")
    assert '<th scope="col">Rank</th>' in cost
    # filterable by a figure without script: the services above and below each median
    above = (site / "filtered" / "completion-rate-above-median.html").read_text("utf-8").split("<tbody>")[1]
    below = (site / "filtered" / "completion-rate-below-median.html").read_text("utf-8").split("<tbody>")[1]
    titles = ("Apply for a licence", "Book a test", "Renew a permit")
    assert sum(t in above for t in titles) == sum(t in below for t in titles) == 1  # the median service in neither
    assert 'href="filtered/cost-per-transaction-below-median.html"' in page
    # filterable without script: a page per organisation
    org = (site / "organisations" / "permit-agency.html").read_text("utf-8")
    assert "Renew a permit" in org and "Apply for a licence" not in org.split("<tbody>")[1]


def test_on_a_phone_the_list_is_a_card_per_service_named_by_column(site: Path) -> None:
    """The phone layout is CSS alone: the same table, each cell's column named by its place (no bytes per row)."""
    from perf_sdk._publish_site import COLUMNS, NARROW

    page = (site / "index.html").read_text("utf-8")
    assert '<table class="list sortable">' in page and "data-label" not in page
    assert f"@media (max-width:{NARROW})" in page
    names = [words for key, words in COLUMNS.items() if key != "service"]
    for n, words in enumerate(names, 1):
        assert f'table.list td:nth-of-type({n})::before{{content:"{words}";content:"{words}"/""}}' in page
        assert f'table.list.ranked td:nth-of-type({n + 1})::before{{content:"{words}"' in page
    assert '<table class="list ranked sortable">' in (
        site / "sorted" / "cost-per-transaction-ascending.html"
    ).read_text("utf-8")
    assert '<table class="list">' in (site / "organisations" / "permit-agency.html").read_text("utf-8")
    assert '<table class="list">' in (site / "filtered" / "completion-rate-above-median.html").read_text("utf-8")


def test_service_page_shows_rank_median_and_files(site: Path) -> None:
    page = (site / "apply-for-a-licence" / "index.html").read_text("utf-8")
    assert "Ranked 2 of 2 services" in page  # cost: the dearer of the two with cost records
    assert "Ranked 3 of 3 services" in page
    assert 'href="kpis.csv"' in page and 'href="ckan-dataset.json"' in page
    assert 'href="../index.html"' in page
    assert "Licensing Office" in page


def test_revision_dates_survive_while_figures_do_not_change(tmp_path: Path) -> None:
    recs = {"renew-a-permit": _records(1)}
    publish(tmp_path, records=recs, published_at="2026-04-02T09:30:00Z")
    changed = [*recs["renew-a-permit"], {"_timestamp": "2026-02-10T10:00:00Z", "stage": "started", "channel": "phone"}]
    publish(tmp_path, records={"renew-a-permit": changed}, published_at="2026-05-01T09:30:00Z")
    rows = json.loads((tmp_path / "renew-a-permit" / "kpis.json").read_text("utf-8"))
    dates = {r["period"]: r["revision_date"] for r in rows}
    assert dates["2025-Q4"] == "2026-04-02"
    assert dates["2026-Q1"] == "2026-05-01"


def test_csv_cells_cannot_be_formulas(tmp_path: Path) -> None:
    publish(
        tmp_path,
        records={"renew-a-permit": _records(1)},
        metadata={"renew-a-permit": {"title": '=HYPERLINK("http://evil.example")', "organisation": "@org"}},
        published_at=PUBLISHED,
    )
    row = next(csv.DictReader(io.StringIO((tmp_path / "services.csv").read_text("utf-8"))))
    assert row["service_title"] == '\'=HYPERLINK("http://evil.example")'
    assert row["organisation"] == "'@org"


def test_markup_in_metadata_is_text(tmp_path: Path) -> None:
    title = "</script><script>alert(1)</script>"
    publish(tmp_path, records={"renew-a-permit": _records(1)}, service_title=title, published_at=PUBLISHED)
    page = (tmp_path / "renew-a-permit" / "index.html").read_text("utf-8")
    assert "<script>alert" not in page
    assert _ld(page)["name"].startswith(title)
    assert "alert" not in (tmp_path / "index.html").read_text("utf-8").replace("&lt;script&gt;alert", "")


def test_published_at_from_the_data(tmp_path: Path) -> None:
    result = publish(tmp_path, records={"renew-a-permit": _records(1, months=14)})
    # data through February 2026: published as of 1 March, January to March is partial
    assert result.published_at.isoformat() == "2026-03-01T00:00:00+00:00"
    assert result.period == "2025-Q4"
    page = (tmp_path / "renew-a-permit" / "index.html").read_text("utf-8")
    assert "January to March 2026 (partial)" in page
    rows = json.loads((tmp_path / "renew-a-permit" / "kpis.json").read_text("utf-8"))
    assert rows[-1]["complete"] is False


def test_a_single_service_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _records(1)) + "\n", encoding="utf-8")
    out = tmp_path / "site"
    argv = ["publish", "--out", str(out), "--service", "renew-a-permit", "--file", str(path)]
    assert main([*argv, "--published-at", PUBLISHED, "--service-title", "Renew your permit"]) == 0
    assert "Renew your permit" in (out / "renew-a-permit" / "index.html").read_text("utf-8")
    from_records = tmp_path / "again"
    publish(from_records, records={"renew-a-permit": _records(1)}, published_at=PUBLISHED)
    assert (out / "renew-a-permit" / "kpis.csv").read_bytes() == (
        from_records / "renew-a-permit" / "kpis.csv"
    ).read_bytes()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--published-at", "yesterday"], "invalid --published-at 'yesterday'"),
        (["--published-at", "2026-04-02T09:30:00"], "a date-time with a zone"),
        (["--base-url", "perf.example.gov.uk"], "invalid --base-url"),
        (["--file", "x.csv"], "--file x.csv: name the service"),
    ],
)
def test_cli_refuses_bad_input_naming_the_flag(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_no_source_is_a_configuration_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERF_SDK_ENDPOINT", raising=False)
    monkeypatch.delenv("PERF_SDK_READ_ENDPOINT", raising=False)
    with pytest.raises(ConfigurationError, match="no source to publish from"):
        publish(tmp_path)
    with pytest.raises(ValidationError, match="period"):
        publish(tmp_path, records=RECORDS, period="week")
    assert date(2026, 1, 1)


def test_discovers_services_from_a_stagecraft_listing(tmp_path: Path) -> None:
    respx = pytest.importorskip("respx")
    import httpx

    from perf_sdk._publish import discover_services

    listing = [
        {"name": "renew-a-permit-transactions", "data_group": "renew-a-permit", "data_type": "transactions"},
        {
            "data_group": "renew-a-permit",
            "data_type": "costs",
            "service": {"title": "Renew a permit", "organisation": "PA"},
        },
        {"data_group": "Not A Slug", "data_type": "x"},
        "junk",
    ]
    with respx.mock(base_url="https://perf.example.gov.uk") as mock:
        mock.get("/data-sets").mock(return_value=httpx.Response(200, json=listing))
        found = discover_services("https://perf.example.gov.uk", token="secret-token")
        assert mock.calls.last.request.headers["authorization"] == "Bearer secret-token"
    assert found == {"renew-a-permit": ServiceInfo("renew-a-permit", "Renew a permit", "PA")}
    with respx.mock(base_url="https://perf.example.gov.uk") as mock:
        mock.get("/data-sets").mock(return_value=httpx.Response(404))
        mock.get("/performance/data-sets.json").mock(return_value=httpx.Response(404))
        with pytest.raises(ConfigurationError, match="name the services with --service"):
            discover_services("https://perf.example.gov.uk")


def test_metadata_file_at_the_cli(tmp_path: Path) -> None:
    records = tmp_path / "a.jsonl"
    records.write_text("\n".join(json.dumps(r) for r in _records(1)) + "\n", encoding="utf-8")
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"renew-a-permit": {"title": "Renew it", "organisation": "Permit Agency"}}), "utf-8")
    out = tmp_path / "site"
    argv = ["publish", "--out", str(out), "--file", f"renew-a-permit={records}", "--metadata", str(meta)]
    assert main([*argv, "--published-at", PUBLISHED]) == 0
    assert "Renew it" in (out / "index.html").read_text("utf-8")
    meta.write_text("[1, 2]", "utf-8")
    assert main([*argv, "--published-at", PUBLISHED]) == 2


DEFINITION = """\
title = "Apply for a licence"
organisation = "Department for Licences"

[targets]
completion_rate = {min = 0.80}

[kpis.refunds_paid]
name = "Refunds paid"
definition = "Money refunded to applicants."
why = "Refunds are failure demand."
compute = "sum"
of = {data_type = "refunds", field = "amount_pence"}
unit = "pence"
"""


def test_a_definition_adds_targets_other_kpis_and_names(tmp_path: Path) -> None:
    path = tmp_path / "perf-sdk.toml"
    path.write_text(DEFINITION, encoding="utf-8")
    records = {
        "transactions": [r for r in _records(0) if "stage" in r],
        "refunds": [{"_timestamp": "2026-02-10T10:00:00Z", "amount_pence": 1_500, "count": 1}],
    }
    out = tmp_path / "site"
    publish(out, records={"apply-for-a-licence": records}, definition=path, published_at=PUBLISHED)
    page = (out / "apply-for-a-licence" / "index.html").read_text("utf-8")
    assert "<h1>Apply for a licence</h1>" in page and "Department for Licences" in page
    assert "Target: at least 80.0%, missed" in page  # 70-odd completed of 100-odd started
    assert "Other KPIs" in page and "Refunds paid" in page
    rows = list(csv.DictReader(io.StringIO((out / "apply-for-a-licence" / "kpis.csv").read_text("utf-8"))))
    assert rows[-1]["refunds_paid_value"] == "1500"
    schema = json.loads((out / "apply-for-a-licence" / "kpis.schema.json").read_text("utf-8"))
    assert [f["name"] for f in schema["fields"]][-4:] == [
        "refunds_paid_value",
        "refunds_paid_numerator",
        "refunds_paid_denominator",
        "refunds_paid_unknown_reason",
    ]
    with pytest.raises(ConfigurationError, match="a single service"):
        publish(tmp_path / "two", records=RECORDS, definition=path, published_at=PUBLISHED)


@pytest.mark.parametrize(
    ("period", "latest", "name", "frequency"),
    [
        ("month", "2026-03", "March 2026", "monthly"),
        ("financial-year", "2025-26", "2025-26", "annual"),
        ("year", "2025", "2025", "annual"),
    ],
)
def test_other_periods(tmp_path: Path, period: str, latest: str, name: str, frequency: str) -> None:
    result = publish(tmp_path, records={"renew-a-permit": _records(1)}, period=period, published_at=PUBLISHED)
    assert result.period == latest
    rows = json.loads((tmp_path / "renew-a-permit" / "kpis.json").read_text("utf-8"))
    assert {"period": latest, "period_name": name, "period_type": period}.items() <= next(
        r for r in rows if r["period"] == latest
    ).items()
    assert f"{name} at a glance" in (tmp_path / "renew-a-permit" / "index.html").read_text("utf-8")
    ckan = json.loads((tmp_path / "renew-a-permit" / "ckan-dataset.json").read_text("utf-8"))
    assert ckan["update_frequency"] == frequency


def test_out_that_is_a_file_exits_2_naming_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _records(1)) + "\n", encoding="utf-8")
    blocker = tmp_path / "site"
    blocker.write_text("not a folder", encoding="utf-8")
    argv = ["publish", "--out", str(blocker), "--file", f"renew-a-permit={path}", "--published-at", PUBLISHED]
    assert main(argv) == 2
    assert f"cannot write the site to --out {blocker}" in capsys.readouterr().err


def test_rerun_removes_what_it_no_longer_publishes_and_nothing_else(tmp_path: Path) -> None:
    publish(tmp_path, records=RECORDS, metadata=META, published_at=PUBLISHED)
    (tmp_path / "CNAME").write_text("perf.example.gov.uk\n", encoding="utf-8")
    (tmp_path / "renew-a-permit" / "notes.txt").write_text("ours\n", encoding="utf-8")
    publish(tmp_path, records={"apply-for-a-licence": RECORDS["apply-for-a-licence"]}, published_at=PUBLISHED)
    fresh = tmp_path / "fresh"
    publish(fresh, records={"apply-for-a-licence": RECORDS["apply-for-a-licence"]}, published_at=PUBLISHED)
    left = {k for k in _tree(tmp_path) if not k.startswith("fresh/")}
    assert left == set(_tree(fresh)) | {"CNAME", "renew-a-permit/notes.txt"}
    assert not (tmp_path / "book-a-test").exists()
    assert not (tmp_path / "organisations").exists()


# ---------------------------------------------------------------------------
# One service's failure is its own (review 2, item 1 and defect 14)
# ---------------------------------------------------------------------------


def _unreadable() -> Any:
    """Records that cannot be read: the failure no record-level check can skip."""
    yield RECORDS["book-a-test"][0]
    raise RuntimeError("the disk went away")


def test_a_failing_service_is_left_out_and_every_other_published(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = {"apply-for-a-licence": RECORDS["apply-for-a-licence"], "broken-service": _unreadable()}
    result = publish(tmp_path, records=records, published_at=PUBLISHED)
    assert result.services == ("apply-for-a-licence",)
    assert result.failed == {"broken-service": "RuntimeError: the disk went away"}
    assert "service 'broken-service' left out of this publication" in caplog.text
    assert (tmp_path / "apply-for-a-licence" / "kpis.csv").exists()
    assert not (tmp_path / "broken-service").exists()
    assert "broken-service" not in (tmp_path / "services.csv").read_text("utf-8")


def test_a_failed_service_keeps_its_earlier_files(tmp_path: Path) -> None:
    publish(tmp_path, records=RECORDS, published_at=PUBLISHED)
    before = _tree(tmp_path)
    records = {**RECORDS, "book-a-test": _unreadable()}
    result = publish(tmp_path, records=records, published_at=PUBLISHED)
    assert set(result.failed) == {"book-a-test"}
    after = _tree(tmp_path)
    for name in ("index.html", "kpis.csv", "kpis.json", "kpis.schema.json", "ckan-dataset.json"):
        assert after[f"book-a-test/{name}"] == before[f"book-a-test/{name}"]
    manifest = json.loads((tmp_path / ".perf-sdk-manifest").read_text("utf-8"))
    assert "book-a-test/kpis.csv" in manifest["files"]  # still perf_sdk's: a later run may remove it
    publish(tmp_path, records={"apply-for-a-licence": RECORDS["apply-for-a-licence"]}, published_at=PUBLISHED)
    assert not (tmp_path / "book-a-test").exists()


def test_every_service_failing_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="every service failed") as caught:
        publish(tmp_path / "site", records={"a": _unreadable(), "b": _unreadable()}, published_at=PUBLISHED)
    assert "a: RuntimeError: the disk went away" in str(caught.value)
    assert not (tmp_path / "site").exists()


def test_cli_exits_1_naming_the_service_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in RECORDS["renew-a-permit"]) + "\n", encoding="utf-8")
    missing = tmp_path / "missing.jsonl"
    out = tmp_path / "site"
    argv = ["publish", "--out", str(out), "--file", f"renew-a-permit={good}", "--file", f"gone={missing}"]
    assert main([*argv, "--published-at", PUBLISHED]) == 1
    captured = capsys.readouterr()
    assert "Published 1 service(s)" in captured.out
    assert "service 'gone' left out of this publication" in captured.err
    assert "finished with problems: 1 service(s) left out" in captured.err
    assert (out / "renew-a-permit" / "kpis.csv").exists()


def test_a_name_that_cannot_be_a_folder_is_left_out(tmp_path: Path) -> None:
    long = "a" * 300  # a data group the write API took before names were capped
    records = {"renew-a-permit": RECORDS["renew-a-permit"], long: RECORDS["book-a-test"]}
    result = publish(tmp_path, records=records, published_at=PUBLISHED)
    assert result.services == ("renew-a-permit",)
    assert "at most 255 bytes, not 300" in result.failed[long]
    assert (tmp_path / "renew-a-permit" / "index.html").exists()
    live = publish(None, records=records, published_at=PUBLISHED)  # the live site: the same rule, the same bytes
    assert live.services == ("renew-a-permit",) and long in live.failed


# ---------------------------------------------------------------------------
# Only what perf_sdk wrote is removed (review 2, item 2)
# ---------------------------------------------------------------------------


def test_refuses_a_folder_it_never_published_to(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "budget.csv").write_text("year,amount\n2025,100\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("my repo\n", encoding="utf-8")
    package = {"name": "my-budget", "resources": [{"path": "data/budget.csv"}, {"path": "README.md"}]}
    (tmp_path / "datapackage.json").write_text(json.dumps(package), encoding="utf-8")
    before = _tree(tmp_path)
    with pytest.raises(ConfigurationError, match="perf_sdk has never published there"):
        publish(tmp_path, records=RECORDS, published_at=PUBLISHED)
    assert _tree(tmp_path) == before
    records = tmp_path.parent / f"{tmp_path.name}-records.jsonl"
    records.write_text(json.dumps(RECORDS["renew-a-permit"][0]) + "\n", encoding="utf-8")
    argv = ["publish", "--out", str(tmp_path), "--file", f"renew-a-permit={records}", "--published-at", PUBLISHED]
    assert main(argv) == 2
    assert f"--out {tmp_path} is not empty and perf_sdk has never published there" in capsys.readouterr().err
    assert _tree(tmp_path) == before


def test_a_site_an_older_perf_sdk_wrote_is_taken_over(tmp_path: Path) -> None:
    publish(tmp_path, records=RECORDS, published_at=PUBLISHED)
    (tmp_path / ".perf-sdk-manifest").unlink()  # as an older perf_sdk left it: its own shapes only
    publish(tmp_path, records={"renew-a-permit": RECORDS["renew-a-permit"]}, published_at=PUBLISHED)
    assert not (tmp_path / "book-a-test").exists()
    assert (tmp_path / ".perf-sdk-manifest").exists()


def test_removes_only_listed_paths_of_its_own_shapes(tmp_path: Path) -> None:
    site = tmp_path / "site"
    publish(site, records=RECORDS, published_at=PUBLISHED)
    (tmp_path / "outside.txt").write_text("not ours\n", encoding="utf-8")
    (site / "README.md").write_text("mine\n", encoding="utf-8")
    (site / "data").mkdir()
    (site / "data" / "budget.csv").write_text("year\n", encoding="utf-8")
    manifest = json.loads((site / ".perf-sdk-manifest").read_text("utf-8"))
    manifest["files"] += ["../outside.txt", "README.md", "data/budget.csv", "/etc/hostname"]
    (site / ".perf-sdk-manifest").write_text(json.dumps(manifest), encoding="utf-8")
    publish(site, records={"renew-a-permit": RECORDS["renew-a-permit"]}, published_at=PUBLISHED)
    assert (tmp_path / "outside.txt").exists() and (site / "README.md").exists()
    assert (site / "data" / "budget.csv").exists()
    assert not (site / "book-a-test").exists()
    assert "README.md" not in json.loads((site / ".perf-sdk-manifest").read_text("utf-8"))["files"]


def test_a_single_services_title_is_not_given_to_another_when_one_fails(tmp_path: Path) -> None:
    records = {"renew-a-permit": RECORDS["renew-a-permit"], "broken-service": _unreadable()}
    result = publish(tmp_path, records=records, service_title="Broken service's title", published_at=PUBLISHED)
    assert result.services == ("renew-a-permit",)
    assert "Broken service&#x27;s title" not in (tmp_path / "renew-a-permit" / "index.html").read_text("utf-8")
    assert "Broken service's title" not in (tmp_path / "renew-a-permit" / "index.html").read_text("utf-8")


def test_organisations_whose_names_make_one_slug_get_a_page_each(tmp_path: Path) -> None:
    # "Marine & Fisheries Agency" and "Marine Fisheries Agency" made one page name: the second page replaced
    # the first, and both links led to a page listing only the other organisation's service.
    publish(
        tmp_path,
        records={"fish-licence": _records(1), "tax-return": _records(1)},
        metadata={
            "fish-licence": {"title": "Fish licence", "organisation": "Marine & Fisheries Agency"},
            "tax-return": {"title": "Tax return", "organisation": "Marine Fisheries Agency"},
        },
        published_at=PUBLISHED,
    )
    pages = sorted((tmp_path / "organisations").iterdir())
    assert [p.name for p in pages] == ["marine-fisheries-agency-2.html", "marine-fisheries-agency.html"]
    listed = {p.name: re.findall(r'<a href="\.\./([a-z-]+)/index.html">', p.read_text()) for p in pages}
    assert sorted(listed.values()) == [["fish-licence"], ["tax-return"]]
    index = (tmp_path / "index.html").read_text()
    links = dict(re.findall(r'<a href="organisations/([^"]+)">([^<]+)</a>', index))
    assert {links[name] for name in listed} == {"Marine &amp; Fisheries Agency", "Marine Fisheries Agency"}
    for name, services in listed.items():
        assert ("Marine &amp;" in links[name]) == (services == ["fish-licence"])


@pytest.mark.parametrize("title", ["", "   ", "\u200b \u00a0"])
def test_a_title_with_nothing_visible_is_replaced_by_the_slugs_words(tmp_path: Path, title: str) -> None:
    # An empty <h1> and an empty link fail WCAG (a heading and a link must have text).
    publish(
        tmp_path,
        records={"fish-licence": _records(1)},
        metadata={"fish-licence": {"title": title}},
        published_at=PUBLISHED,
    )
    page = (tmp_path / "fish-licence" / "index.html").read_text()
    assert re.search(r"<h1>(.*?)</h1>", page).group(1) == "Fish licence"  # type: ignore[union-attr]
    assert re.findall(r'<a href="fish-licence/index.html">(.*?)</a>', (tmp_path / "index.html").read_text()) == [
        "Fish licence"
    ]


# ---------------------------------------------------------------------------
# The output folder is a trust boundary (red-team round 4)
# ---------------------------------------------------------------------------

ONE = {"renew-a-permit": RECORDS["renew-a-permit"]}


@pytest.mark.parametrize("planted", ["index.html.tmp", "renew-a-permit", "sorted", "index.html"])
def test_a_link_planted_in_the_site_is_refused_and_nothing_outside_is_written(tmp_path: Path, planted: str) -> None:
    # index.html.tmp -> a file outside: the publication was written through it (and index.html became the link);
    # a linked service folder or sorted/ sent every write of it outside the site.
    site, outside = tmp_path / "site", tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("not the site's\n", encoding="utf-8")
    publish(site, records=ONE, published_at=PUBLISHED)
    target = site / planted
    if target.is_dir():
        for child in sorted(target.rglob("*"), reverse=True):
            child.unlink() if child.is_file() else child.rmdir()
        target.rmdir()
        target.symlink_to(outside, target_is_directory=True)
    else:
        target.unlink(missing_ok=True)
        target.symlink_to(outside / "victim.txt")
    before = _tree(outside)
    with pytest.raises(ConfigurationError, match=f"holds a link, '{planted}'"):
        publish(site, records=RECORDS, published_at="2026-05-02T09:30:00Z")
    assert _tree(outside) == before


def test_a_folder_every_user_may_write_is_refused_even_with_a_manifest(tmp_path: Path) -> None:
    # A 0777 folder with a forged manifest and a planted link was accepted as perf_sdk's own.
    site = tmp_path / "shared"
    site.mkdir()
    (site / ".perf-sdk-manifest").write_text('{"generator": "perf_sdk", "files": []}', encoding="utf-8")
    site.chmod(0o777)
    with pytest.raises(ConfigurationError, match="writable by every user \\(mode 0777\\): run chmod o-w"):
        publish(site, records=ONE, published_at=PUBLISHED)
    assert sorted(p.name for p in site.iterdir()) == [".perf-sdk-manifest"]
    site.chmod(0o1777)  # sticky, as /tmp: others cannot replace what is the user's
    publish(site, records=ONE, published_at=PUBLISHED)
    assert (site / "renew-a-permit" / "index.html").is_file()


def test_a_hand_written_site_of_the_same_shapes_is_not_taken_over(tmp_path: Path) -> None:
    # index.html overwritten and about/, contact/ and team/index.html deleted: they looked like services' pages.
    for name in ("index.html", "about/index.html", "contact/index.html", "team/index.html"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"<h1>{name}</h1>\n", encoding="utf-8")
    before = _tree(tmp_path)
    with pytest.raises(ConfigurationError, match="perf_sdk has never published there"):
        publish(tmp_path, records=ONE, published_at=PUBLISHED)
    assert _tree(tmp_path) == before


def test_a_write_failing_half_way_leaves_the_last_publication_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A disk full mid-publish left new data files beside an old page, a wrong datapackage hash and a .tmp file.
    publish(tmp_path, records=RECORDS, published_at=PUBLISHED)
    before = _tree(tmp_path)
    real, calls = os.fdopen, [0]

    def filling(fd: int, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 6:
            os.close(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, *args, **kwargs)

    monkeypatch.setattr("perf_sdk._publish.os.fdopen", filling)
    with pytest.raises(OSError, match="No space left"):
        publish(tmp_path, records=ONE, published_at="2026-05-02T09:30:00Z")
    monkeypatch.undo()
    assert calls[0] == 6
    assert _tree(tmp_path) == before  # every file as it was, and no temporary one left


def test_a_killed_runs_temporary_files_are_removed(tmp_path: Path) -> None:
    publish(tmp_path, records=ONE, published_at=PUBLISHED)
    (tmp_path / ".index.html.0123456789abcdef.tmp").write_text("half", encoding="utf-8")
    (tmp_path / "renew-a-permit" / ".kpis.csv.fedcba9876543210.tmp").write_text("half", encoding="utf-8")
    publish(tmp_path, records=ONE, published_at=PUBLISHED)
    assert not list(tmp_path.rglob("*.tmp"))


def test_one_services_odd_metadata_is_its_own_problem(tmp_path: Path) -> None:
    # A title holding a lone surrogate made every page fail to encode: nothing published for any service.
    # An organisation name past 255 bytes made a file name too long half-way through the site.
    long_org = "Department for " + "Very Long Names " * 30
    meta = {
        "renew-a-permit": {"title": "Renew a perm\udce9t", "organisation": long_org},
        "book-a-test": {"title": "Book a test", "organisation": long_org + "Too"},
    }
    result = publish(tmp_path, records=RECORDS, metadata=meta, published_at=PUBLISHED)
    assert not result.failed
    assert "Renew a perm\ufffdt" in (tmp_path / "renew-a-permit" / "index.html").read_text("utf-8")
    pages = sorted(p.name for p in (tmp_path / "organisations").iterdir())
    assert len(pages) == 2 and all(len(p.encode()) <= 105 for p in pages)  # two pages: the names differ late


@pytest.mark.parametrize("slug", ["organisations", "sorted", "filtered"])
def test_a_service_named_like_the_sites_own_folders_is_left_out(tmp_path: Path, slug: str) -> None:
    # organisations/index.html was both that service's page and an organisation's list page.
    result = publish(tmp_path, records={slug: RECORDS["renew-a-permit"], **ONE}, published_at=PUBLISHED)
    assert list(result.failed) == [slug] and "the site's own folders" in str(result.failed[slug])
    assert (tmp_path / "renew-a-permit" / "index.html").is_file()


def test_a_count_of_five_thousand_digits_is_skipped_not_an_error() -> None:
    # int() refuses 4,300 digits or more: one record took a service off publish, the live site and kpis.
    from perf_sdk._kpi import whole_number

    assert whole_number("1" * 5_000) is None and whole_number(" 1,234 ") == 1234
    records = {"renew-a-permit": [*RECORDS["renew-a-permit"], {**RECORDS["renew-a-permit"][0], "count": "1" * 5_000}]}
    result = publish(None, records=records, published_at=PUBLISHED)
    assert not result.failed


def test_records_left_out_are_said_on_the_page_without_their_values(tmp_path: Path) -> None:
    # Completions whose count was "80 (est.)" were skipped: the page said 0.0% with no word of it.
    rows = [
        r if r.get("stage") != "completed" else {**r, "count": "80 (est.) ring 07700 900123"}
        for r in RECORDS["renew-a-permit"]
    ]
    publish(tmp_path, records={"renew-a-permit": rows}, published_at=PUBLISHED)
    page = (tmp_path / "renew-a-permit" / "index.html").read_text("utf-8")
    assert "30 transactions records skipped: its count is not a whole number" in page
    assert "07700" not in page
