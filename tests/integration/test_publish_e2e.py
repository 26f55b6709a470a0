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


# ---------------------------------------------------------------------------
# The live site: built in the background, one service's failure its own (review 2)
# ---------------------------------------------------------------------------

import threading  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

from starlette.routing import Mount  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from perf_sdk.platform import create_app  # noqa: E402
from perf_sdk.platform._backend import open_backend  # noqa: E402

WAIT = 60.0  # generous: a deadline, never a measurement
RECORD = {"_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 10, "_id": "s"}
DONE = {"_timestamp": "2026-01-05T10:00:00Z", "stage": "completed", "channel": "digital", "count": 7, "_id": "c"}


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 4, 2, 9, 30, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self) -> None:
        self.now += timedelta(seconds=61)  # past the live site's least interval between builds


class _Store:
    """The platform's SQLite store, with faults a test switches on: a service that cannot be read, a stuck build."""

    def __init__(self) -> None:
        self.inner = open_backend(":memory:")
        self.broken: set[str] = set()
        self.fail_builds = False
        self.release = threading.Event()
        self.release.set()
        self.builds = 0

    def read(self, group: str, type_: str, query: Any) -> Any:
        if group in self.broken:
            raise RuntimeError("the disk went away")
        return self.inner.read(group, type_, query)

    def last_updated(self) -> Any:
        if threading.current_thread().name == "perf-sdk-live-site":
            self.builds += 1
            assert self.release.wait(WAIT)
            if self.fail_builds:
                raise RuntimeError("the database is down")
        return self.inner.last_updated()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _live(app: Any) -> Any:
    return next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "/performance").state.live_site


def _settled(app: Any) -> None:
    assert _live(app).idle.wait(WAIT)


def _q1(client: TestClient, slug: str) -> Any:
    answer = client.get(f"/performance/{slug}/kpis.json")
    if answer.status_code != 200:
        return answer.status_code
    row = next((r for r in answer.json() if r["period"] == "2026-Q1"), None)
    return None if row is None else (row["completion_rate_numerator"], row["completion_rate_denominator"])


@pytest.fixture
def live() -> Iterator[tuple[TestClient, _Store, _Clock]]:
    store, clock = _Store(), _Clock()
    app = create_app(config={"token": "tok", "admin_token": "adm"}, backend=store, clock=clock)  # type: ignore[arg-type]
    with TestClient(app) as client:
        client.headers["Authorization"] = "Bearer tok"
        for slug in ("good-service", "broken-service"):
            assert client.post(f"/data/{slug}/transactions", json=[RECORD, DONE]).status_code == 200
        yield client, store, clock


def test_live_site_leaves_a_failing_service_out(
    live: tuple[TestClient, _Store, _Clock], caplog: pytest.LogCaptureFixture
) -> None:
    client, store, _ = live
    store.broken.add("broken-service")
    index = client.get("/performance/")
    assert index.status_code == 200 and "Good service" in index.text
    assert _q1(client, "good-service") == (7, 10)
    assert _q1(client, "broken-service") == 404
    assert "service 'broken-service' left out of this publication" in caplog.text


def test_a_failed_rebuild_keeps_the_last_good_site_and_is_not_retried_per_request(
    live: tuple[TestClient, _Store, _Clock], caplog: pytest.LogCaptureFixture
) -> None:
    client, store, clock = live
    assert _q1(client, "good-service") == (7, 10)
    store.fail_builds = True
    assert client.put("/data/good-service/transactions", json=[]).status_code == 200
    clock.advance()
    assert _q1(client, "good-service") == (7, 10)  # starts the rebuild; the last good site meanwhile
    _settled(client.app)
    assert "could not be rebuilt" in caplog.text
    builds = store.builds
    for _ in range(5):
        assert _q1(client, "good-service") == (7, 10)
    _settled(client.app)
    assert store.builds == builds  # no rebuild per request after a failure
    store.fail_builds = False
    clock.advance()
    client.get("/performance/")
    _settled(client.app)
    assert _q1(client, "good-service") != (7, 10)


def test_emptying_and_deleting_a_data_set_change_the_live_site(live: tuple[TestClient, _Store, _Clock]) -> None:
    client, _, clock = live
    assert _q1(client, "good-service") == (7, 10) and _q1(client, "broken-service") == (7, 10)
    assert client.put("/data/good-service/transactions", json=[]).status_code == 200
    clock.advance()
    client.get("/performance/")
    _settled(client.app)
    assert _q1(client, "good-service") != (7, 10)
    deleted = client.delete("/data-sets/broken-service-transactions", headers={"Authorization": "Bearer adm"})
    assert deleted.status_code == 200
    clock.advance()
    client.get("/performance/")
    _settled(client.app)
    assert _q1(client, "broken-service") == 404


def test_requests_never_wait_for_a_rebuild(live: tuple[TestClient, _Store, _Clock]) -> None:
    client, store, clock = live
    assert _q1(client, "good-service") == (7, 10)
    store.release.clear()  # the next build is stuck until released
    assert client.post("/data/good-service/transactions", json=[{**DONE, "_id": "c2"}]).status_code == 200
    clock.advance()
    for _ in range(3):  # answered from the last site while the build is stuck
        assert _q1(client, "good-service") == (7, 10)
    assert store.builds == 2  # one rebuild at a time
    store.release.set()
    _settled(client.app)
    assert _q1(client, "good-service") == (14, 10)


def test_the_first_request_waits_a_bounded_time_then_503() -> None:
    store = _Store()
    store.release.clear()
    from perf_sdk.platform._performance import performance_app

    app = performance_app(store, first_wait=0.2)
    with TestClient(app) as client:
        answer = client.get("/")
        assert answer.status_code == 503 and int(answer.headers["retry-after"]) >= 1
        store.release.set()
        assert app.state.live_site.idle.wait(WAIT)
        assert client.get("/").status_code == 200


def test_redirects_are_relative_never_from_host(platform: LocalPlatform) -> None:
    with httpx.Client(base_url=platform.url, timeout=60) as client:
        for path, location in (
            ("/performance", "./performance/"),
            ("/performance/renew-a-permit", "./renew-a-permit/"),
        ):
            answer = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
            assert answer.status_code == 308 and answer.headers["location"] == location
        assert (
            client.get("/performance/renew-a-permit", follow_redirects=True).url.path == "/performance/renew-a-permit/"
        )


def test_no_backfill_note_when_every_record_was_sent_live(site: Path) -> None:
    """Records without ``origin`` are live: the pages carry the general note only, never a count of backfilled ones."""
    for slug in SERVICES:
        page = (site / slug / "index.html").read_text("utf-8")
        assert "were loaded from earlier records (backfilled)" not in page
        assert "Records sent live by the service and records loaded from its history (backfilled) count" in page


def test_unpublished_data_sets_stay_off_the_live_site() -> None:
    # The live site listed an unpublished service in data-sets.json and served its figures as open data
    # (Open Government Licence, cacheable), while the read API answered with backdrop's warning.
    cost = {"_id": "k", "_timestamp": "2026-01-01T00:00:00Z", "period": "month", "channel": "all"}
    config = {
        "admin_token": "adm",
        "data_sets": {
            "open-service/transactions": {"token": "t1"},
            "hidden-service/transactions": {"token": "t2", "published": False},
            "mixed-service/transactions": {"token": "t3"},
            "mixed-service/costs": {"token": "t4", "published": False},
        },
    }
    app = create_app(config=config, clock=_Clock())
    with TestClient(app) as client:
        for url, token, records in (
            ("/data/open-service/transactions", "t1", [RECORD, DONE]),
            ("/data/hidden-service/transactions", "t2", [RECORD, DONE]),
            ("/data/mixed-service/transactions", "t3", [RECORD, DONE]),
            ("/data/mixed-service/costs", "t4", [{**cost, "amount_pence": 123_456_789}]),
        ):
            answer = client.post(url, json=records, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
        assert "unpublished" in client.get("/data/hidden-service/transactions").json()["warning"]
        listing = [s["data_group"] for s in client.get("/performance/data-sets.json").json()]
        assert listing == ["mixed-service", "open-service"]
        index = client.get("/performance/")
        assert index.status_code == 200 and "Open service" in index.text and "Hidden service" not in index.text
        assert client.get("/performance/hidden-service/").status_code == 404
        assert _q1(client, "open-service") == (7, 10) and _q1(client, "mixed-service") == (7, 10)
        page = client.get("/performance/mixed-service/").text
        assert "1,234,567" not in page and "1234567" not in client.get("/performance/mixed-service/kpis.csv").text
    app.state.store.close()
