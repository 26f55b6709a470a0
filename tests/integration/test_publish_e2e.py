"""perf-sdk publish against a real local platform: three services, every file checked, the live site the same."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
frictionless = pytest.importorskip("frictionless")

from perf_sdk._publish import publish  # noqa: E402
from perf_sdk.cli import main  # noqa: E402
from perf_sdk.platform import LocalPlatform  # noqa: E402

PUBLISHED = "2026-04-02T09:30:00Z"
SERVICES = {
    "apply-for-a-licence": {"title": "Apply for a licence", "organisation": "Licensing Office"},
    "renew-a-permit": {"title": "Renew a permit", "organisation": "Permit Agency"},
    "book-a-test": {
        "title": "Book a driving test",
        "organisation": "Driving Agency",
        "description": "Tests.",
        "start_date": "2024-04-01",
    },
}
CHANNELS = ("digital", "phone", "paper", "face_to_face")


def _records(n: int) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"transactions": [], "satisfaction": [], "costs": []}
    for i in range(27):  # January 2024 to March 2026
        year, month = 2024 + i // 12, i % 12 + 1
        ts = f"{year}-{month:02d}-15T12:00:00Z"
        for c, channel in enumerate(CHANNELS):
            started = 200 + 10 * n + i + c
            out["transactions"] += [
                {"_id": f"s{i}{c}", "_timestamp": ts, "stage": "started", "channel": channel, "count": started},
                {"_id": f"c{i}{c}", "_timestamp": ts, "stage": "completed", "channel": channel, "count": started // 2},
            ]
        for rating in range(1, 6):
            count = rating * (n + 2) + i
            out["satisfaction"].append(
                {"_id": f"r{i}{rating}", "_timestamp": ts, "rating": rating, "channel": "digital", "count": count}
            )
        if n != 2 or i < 20:  # one service stops sending costs: unknown cost per transaction
            out["costs"].append(
                {
                    "_id": f"k{i}",
                    "_timestamp": f"{year}-{month:02d}-01T00:00:00Z",
                    "period": "month",
                    "amount_pence": 400_000 + 1_000 * n,
                    "channel": "all",
                    "cost_type": "staff",
                    "count": 1,
                }
            )
    return out


@pytest.fixture(scope="module")
def platform() -> Iterator[LocalPlatform]:
    config = {"token": "t", "services": SERVICES}
    with LocalPlatform(config=config) as p:
        with httpx.Client(base_url=p.url, headers={"Authorization": "Bearer t"}, timeout=30) as client:
            for n, slug in enumerate(SERVICES):
                for data_type, items in _records(n).items():
                    response = client.post(f"/data/{slug}/{data_type}", json=items)
                    assert response.status_code == 200, response.text
        yield p


@pytest.fixture(scope="module")
def site(platform: LocalPlatform, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    argv = ["publish", "--out", str(out), "--read-endpoint", platform.url, "--published-at", PUBLISHED]
    assert main([*argv, "--base-url", "https://perf.example.gov.uk/"]) == 0
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_service_the_platform_holds_with_its_metadata(site: Path) -> None:
    assert sorted(p.name for p in site.iterdir() if p.is_dir() and (p / "kpis.csv").exists()) == sorted(SERVICES)
    page = (site / "book-a-test" / "index.html").read_text("utf-8")
    assert "<h1>Book a driving test</h1>" in page and "Driving Agency" in page
    ckan = json.loads((site / "book-a-test" / "ckan-dataset.json").read_text("utf-8"))
    assert ckan["owner_org"] == "driving-agency"


def test_the_data_package_is_valid(site: Path) -> None:
    package = json.loads((site / "datapackage.json").read_text("utf-8"))
    on_disk = {name for name in _tree(site) if name not in ("datapackage.json", ".perf-sdk-manifest")}
    assert {r["path"] for r in package["resources"]} == on_disk  # every file, nothing else
    report = frictionless.validate(str(site / "datapackage.json"))
    assert report.valid, report.flatten(["title", "message"])


@pytest.mark.parametrize("slug", sorted(SERVICES))
def test_each_data_file_against_its_schema(site: Path, slug: str) -> None:
    schema = frictionless.Schema.from_descriptor(json.loads((site / slug / "kpis.schema.json").read_text("utf-8")))
    for name in ("kpis.csv", "kpis.json"):
        resource = frictionless.Resource(path=name, basepath=str(site / slug), schema=schema)
        report = frictionless.validate(resource)
        assert report.valid, (name, report.flatten(["rowNumber", "fieldName", "message"]))
    rows = list(csv.DictReader(io.StringIO((site / slug / "kpis.csv").read_text("utf-8"))))
    assert [r["name"] for r in schema.to_descriptor()["fields"]] == list(rows[0])
    assert json.loads((site / slug / "kpis.json").read_text("utf-8"))[0]["period"] == rows[0]["period"]
    services = frictionless.Schema.from_descriptor(json.loads((site / "services.schema.json").read_text("utf-8")))
    report = frictionless.validate(frictionless.Resource(path="services.csv", basepath=str(site), schema=services))
    assert report.valid, report.flatten(["rowNumber", "fieldName", "message"])


def test_same_figures_as_from_memory(site: Path, tmp_path: Path) -> None:
    publish(
        tmp_path,
        records={slug: _records(n) for n, slug in enumerate(SERVICES)},
        metadata=SERVICES,
        published_at=PUBLISHED,
        base_url="https://perf.example.gov.uk/",
    )
    assert _tree(tmp_path) == _tree(site)


def test_rerun_is_byte_identical(platform: LocalPlatform, site: Path, tmp_path: Path) -> None:
    before = _tree(site)
    argv = ["publish", "--out", str(site), "--read-endpoint", platform.url, "--published-at", PUBLISHED]
    assert main([*argv, "--base-url", "https://perf.example.gov.uk/"]) == 0
    assert _tree(site) == before
    names = ["--service", "renew-a-permit", "--service", "apply-for-a-licence", "--service", "book-a-test"]
    assert (
        main(
            [
                "publish",
                "--out",
                str(tmp_path),
                "--endpoint",
                platform.url,
                "--published-at",
                PUBLISHED,
                *names,
                "--base-url",
                "https://perf.example.gov.uk/",
            ]
        )
        == 0
    )
    assert _tree(tmp_path) == before  # named in any order: the same site


def test_the_platform_serves_the_site_live(platform: LocalPlatform) -> None:
    with httpx.Client(base_url=platform.url, timeout=60) as client:
        index = client.get("/performance/")
        assert index.status_code == 200, index.text
        assert index.headers["content-type"].startswith("text/html")
        assert "Apply for a licence" in index.text and "Book a driving test" in index.text
        page = client.get("/performance/renew-a-permit/")
        assert page.status_code == 200 and "<h1>Renew a permit</h1>" in page.text
        assert "Running since 1 April 2024." in client.get("/performance/book-a-test/").text
        assert client.get("/performance/renew-a-permit", follow_redirects=False).status_code == 308
        data = client.get("/performance/renew-a-permit/kpis.csv")
        assert data.headers["content-type"].startswith("text/csv")
        assert data.text.startswith("period,period_name,")
        assert client.get("/performance/datapackage.json").json()["name"] == "digital-service-performance"
        assert client.get("/performance/nothing-here/").status_code == 404
        listing = client.get("/performance/data-sets.json").json()
        assert {
            "data_group": "book-a-test",
            "title": "Book a driving test",
            "organisation": "Driving Agency",
            "description": "Tests.",
            "start_date": "2024-04-01",
        } in listing


@pytest.mark.parametrize("period", ["month", "financial-year"])
def test_other_periods_read_the_same_as_from_memory(platform: LocalPlatform, tmp_path: Path, period: str) -> None:
    out = tmp_path / "api"
    argv = ["publish", "--out", str(out), "--read-endpoint", platform.url, "--published-at", PUBLISHED]
    assert main([*argv, "--period", period, "--service", "renew-a-permit"]) == 0
    publish(
        tmp_path / "memory",
        records={"renew-a-permit": _records(1)},
        metadata={"renew-a-permit": SERVICES["renew-a-permit"]},
        published_at=PUBLISHED,
        period=period,
    )
    assert _tree(out) == _tree(tmp_path / "memory")
