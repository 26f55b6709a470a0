"""Run backdrop's own behave scenarios (read API and write API) against perf_sdk's local platform.

Usage::

    python benchmarks/backdrop_features.py PATH/TO/backdrop [-v] [--only WORDS]

``PATH`` is a checkout of alphagov/backdrop (a working tree: ``git archive``
one into a temporary directory). Nothing of backdrop is imported or copied:
this script reads ``features/read_api/*.feature`` and
``features/write_api/*.feature`` and the JSON fixtures they name, and
interprets each step itself, the way backdrop's ``features/steps/*.py`` do,
against our platform served in-process (Starlette's test client).

Translations, because backdrop's test harness reaches inside its own
storage where ours has an HTTP API:

* A data set called ``foo`` is ``/data/foo/foo`` unless its settings give a
  ``data_group`` and ``data_type``; underscores become hyphens (our data-set
  names are slugs). A short path ``/foo?...`` is read as ``/data/<group>/<type>?...``.
* "``F`` is in ``D`` data_set" posts the fixture through the write API with the
  data set's token (backdrop saves straight into its store), leaving out the
  ``_day_start_at`` / ``_week_start_at`` / ``_month_start_at`` keys backdrop
  derives itself.
* "a record updated N seconds ago" posts a record while the platform's clock
  stands N seconds in the past.
* "the stored data should contain ..." counts the stored records.

Each scenario gets a fresh platform. A scenario with a step this script does
not understand is reported as ``skip`` and counted apart. Prints one line per
scenario and the totals; exit status 0 whatever the outcome (a benchmark,
not a test).
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

# This folder holds a platform.py of its own, which would shadow the standard library's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from starlette.testclient import TestClient  # noqa: E402

from perf_sdk.platform import create_app  # noqa: E402

ADMIN_TOKEN = "dev-create-endpoint-token"
#: Keys backdrop derives and stores itself; its fixtures carry them because its steps write to storage directly.
DERIVED_KEYS = (
    "_hour_start_at",
    "_day_start_at",
    "_week_start_at",
    "_month_start_at",
    "_quarter_start_at",
    "_year_start_at",
    "_updated_at",
)


class Unsupported(Exception):
    """A step this runner cannot interpret."""


@dataclass
class Step:
    text: str
    table: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Scenario:
    feature: str
    name: str
    steps: list[Step]


def parse_feature(path: Path) -> list[Scenario]:
    """Scenarios of a ``.feature`` file, each with the Background's steps in front."""
    scenarios: list[Scenario] = []
    background: list[Step] = []
    current: list[Step] | None = None
    header: list[str] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "@")):
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if current is None or not current:
                continue
            if header is None:
                header = cells
            else:
                current[-1].table.append(dict(zip(header, cells, strict=False)))
            continue
        header = None
        if line.startswith("Feature:"):
            continue
        if line.startswith("Background:"):
            current = background
            continue
        if line.startswith("Scenario:"):
            current = list(background)
            scenarios.append(Scenario(path.stem, line.split(":", 1)[1].strip(), current))
            continue
        if current is None:
            continue  # the feature's free-text description
        words = line.split(None, 1)
        if words[0].lower() in ("given", "when", "then", "and", "but") and len(words) > 1:
            current.append(Step(words[1]))
    return scenarios


def _setting(value: str) -> Any:
    return None if value == "None" else json.loads(value)


def _slug(name: str) -> str:
    return name.replace("_", "-").lower()


def _nth(nth: str, data: list[Any]) -> Any:
    m = re.match(r"\d+", nth)
    if m:
        return data[int(m.group(0)) - 1]
    if nth == "last":
        return data[-1]
    if nth == "first":
        return data[0]
    raise Unsupported(nth)


def _parse_time(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class Clock:
    """The platform's clock, movable by the runner."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


class Run:
    """One scenario's state: its platform, the request being built, the last response."""

    def __init__(self, scenario: Scenario, fixtures: Path) -> None:
        self.scenario = scenario
        self.fixtures = fixtures
        self.data_sets: dict[str, dict[str, Any]] = {}
        self._declare_all()
        self.clock = Clock()
        self.client = self._client()
        self.response: Any = None
        self.body: bytes | None = None
        self.token: str | None = None
        self.compressed = False
        self.data_set: str | None = None

    # ------------------------------------------------------------ set-up

    def _declare_all(self) -> None:
        """Every data set the scenario names, with its settings (needed before the platform starts)."""
        for step in self.scenario.steps:
            m = re.fullmatch(
                r'"[^"]+" is in "([^"]+)" data_set( with settings)?', step.text, re.IGNORECASE
            ) or re.fullmatch(r'I have a data_set named "([^"]+)" with settings', step.text, re.IGNORECASE)
            if m:
                settings = {row["key"]: _setting(row["value"]) for row in step.table}
                self.data_sets[m.group(1)] = settings

    def _entry(self, name: str, settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        group = _slug(settings.get("data_group") or name)
        type_ = _slug(settings.get("data_type") or name)
        entry: dict[str, Any] = {"token": f"{name}-bearer-token", "name": name}
        entry["raw_queries_allowed"] = bool(settings.get("raw_queries_allowed", False))
        for key in ("published", "realtime"):
            if key in settings:
                entry[key] = settings[key]
        if "max_age_expected" in settings:
            entry["max_age_expected"] = settings["max_age_expected"]
        return f"{group}/{type_}", entry

    def _client(self) -> TestClient:
        entries = dict(self._entry(name, s) for name, s in self.data_sets.items())
        if not entries:
            entries["unused/unused"] = {"token": "unused-bearer-token"}
        params = inspect.signature(create_app).parameters
        if "config" in params:
            app = create_app(config={"admin_token": ADMIN_TOKEN, "data_sets": entries}, clock=self.clock)
        else:  # the platform before data-set configuration existed
            app = create_app(tokens={k: v["token"] for k, v in entries.items()})
        self.app = app
        return TestClient(app, raise_server_exceptions=False)

    def close(self) -> None:
        self.client.close()
        self.app.state.store.close()

    def path_of(self, name: str) -> str:
        key, _ = self._entry(name, self.data_sets.get(name, {}))
        return f"/data/{key}"

    def translate(self, path: str) -> str:
        base, sep, query = path.partition("?")
        m = re.fullmatch(r"/([A-Za-z0-9_-]+)", base)
        if m and m.group(1) in self.data_sets:
            base = self.path_of(m.group(1))
        elif base.startswith("/data/"):
            base = _slug(base)
        return base + sep + query

    def post_fixture(self, fixture: str, name: str) -> None:
        records = json.loads((self.fixtures / fixture).read_text(encoding="utf-8"))
        for record in records:
            for key in DERIVED_KEYS:
                record.pop(key, None)
        token = self._entry(name, self.data_sets[name])[1]["token"]
        response = self.client.post(self.path_of(name), json=records, headers={"Authorization": f"Bearer {token}"})
        if response.status_code != 200:
            raise AssertionError(f"loading {fixture}: {response.status_code} {response.text[:300]}")

    def stored(self) -> list[dict[str, Any]]:
        assert self.data_set is not None
        group, _, type_ = self.path_of(self.data_set)[len("/data/") :].partition("/")
        return list(self.app.state.store.records(group, type_))

    def send(self, method: str, path: str, *, malformed: bool = False) -> None:
        headers: dict[str, str] = {"Content-Type": "application/json"}
        if self.token is not None:
            headers["Orthoriszation" if malformed else "Authorization"] = f"Bearer {self.token}"
        body = self.body or b""
        if self.compressed:
            headers["Content-Encoding"] = "gzip"
        self.response = self.client.request(method, self.translate(path), content=body, headers=headers)

    def data(self) -> list[Any]:
        body = self.response.json()
        if "data" not in body:
            raise AssertionError(f"no data in the answer: {self.response.status_code} {str(body)[:300]}")
        return list(body["data"])


Handler = Callable[[Run, "re.Match[str]", Step], None]
STEPS: list[tuple[re.Pattern[str], Handler]] = []


def step(pattern: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        STEPS.append((re.compile(pattern, re.IGNORECASE), fn))
        return fn

    return register


def check(ok: bool, message: str) -> None:
    if not ok:
        raise AssertionError(message)


@step(r'"([^"]+)" is in "([^"]+)" data_set( with settings)?')
def _fixture(run: Run, m: re.Match[str], s: Step) -> None:
    run.post_fixture(m.group(1), m.group(2))
    run.data_set = m.group(2)


@step(r'I have a data_set named "([^"]+)" with settings')
def _named(run: Run, m: re.Match[str], s: Step) -> None:
    run.data_set = m.group(1)


@step(r"the api is running in protected mode|Stagecraft is running")
def _nothing(run: Run, m: re.Match[str], s: Step) -> None:
    pass


@step(r'I have a record updated "(\d+) seconds?" ago in the "([^"]+)" data_set')
def _updated(run: Run, m: re.Match[str], s: Step) -> None:
    name = m.group(2)
    token = run._entry(name, run.data_sets[name])[1]["token"]
    run.clock.offset = -timedelta(seconds=int(m.group(1)))
    try:
        response = run.client.post(run.path_of(name), json={"value": 1}, headers={"Authorization": f"Bearer {token}"})
    finally:
        run.clock.offset = timedelta()
    check(response.status_code == 200, f"posting the record: {response.status_code} {response.text[:200]}")


@step(r'I have the data in "([^"]+)"')
def _data_in(run: Run, m: re.Match[str], s: Step) -> None:
    run.body = (run.fixtures / m.group(1)).read_bytes()


@step(r"I have JSON data '(.*)'")
def _json_data(run: Run, m: re.Match[str], s: Step) -> None:
    run.body = m.group(1).encode()


@step(r"I have an empty request body")
def _empty(run: Run, m: re.Match[str], s: Step) -> None:
    run.body = b""


@step(r"I use the bearer token for the data_set")
def _own_token(run: Run, m: re.Match[str], s: Step) -> None:
    assert run.data_set is not None
    run.token = f"{run.data_set}-bearer-token"


@step(r'I have the bearer token "([^"]+)"')
def _given_token(run: Run, m: re.Match[str], s: Step) -> None:
    run.token = m.group(1)


@step(r"I have compressed content")
def _compressed(run: Run, m: re.Match[str], s: Step) -> None:
    run.compressed = True


@step(r'I go to "([^"]+)"')
def _go(run: Run, m: re.Match[str], s: Step) -> None:
    run.response = run.client.get(run.translate(m.group(1)))


@step(r'I send another request to "([^"]+)" with the received etag')
def _etag_again(run: Run, m: re.Match[str], s: Step) -> None:
    etag = run.response.headers.get("etag")
    check(etag is not None, "the first answer had no ETag")
    run.response = run.client.get(run.translate(m.group(1)), headers={"If-None-Match": etag})


@step(r'I "(POST|PUT)" the compressed request body to the path "([^"]+)"')
def _post_compressed(run: Run, m: re.Match[str], s: Step) -> None:
    run.body = gzip.compress(run.body or b"")
    run.compressed = True
    run.send(m.group(1), m.group(2))


@step(r'I (POST|PUT) to the specific path "([^"]+)"')
def _post(run: Run, m: re.Match[str], s: Step) -> None:
    run.send(m.group(1), m.group(2))


@step(r'I (POST|PUT) to "([^"]+)" with a malformed authorization header')
def _post_malformed(run: Run, m: re.Match[str], s: Step) -> None:
    run.send(m.group(1), m.group(2), malformed=True)


@step(r'I send a DELETE request to "([^"]+)"')
def _delete(run: Run, m: re.Match[str], s: Step) -> None:
    run.body = None
    run.send("DELETE", m.group(1))


@step(r'I should get back a status of "(\d+)"')
def _status(run: Run, m: re.Match[str], s: Step) -> None:
    code = run.response.status_code
    check(code == int(m.group(1)), f"status {code}, not {m.group(1)}: {run.response.text[:300]}")


@step(r'I should get a "([^"]+)" header of "([^"]*)"')
@step(r'the "([^"]+)" header should be "([^"]*)"')
def _header(run: Run, m: re.Match[str], s: Step) -> None:
    got = run.response.headers.get(m.group(1))
    check(got == m.group(2), f"{m.group(1)}: {got!r}, not {m.group(2)!r}")


@step(r'the "([^"]+)" header should not be empty')
def _header_set(run: Run, m: re.Match[str], s: Step) -> None:
    check(bool(run.response.headers.get(m.group(1))), f"no {m.group(1)} header")


@step(r'I should get back the message "(.*)"$')
def _message(run: Run, m: re.Match[str], s: Step) -> None:
    got = run.response.json().get("message")
    check(got == m.group(1), f"message {got!r}, not {m.group(1)!r}")


@step(r'I should get back the status of "([^"]+)"')
def _status_field(run: Run, m: re.Match[str], s: Step) -> None:
    got = run.response.json().get("status")
    check(got == m.group(1), f"status field {got!r}, not {m.group(1)!r}")


@step(r'I should get back the parse error "(.*)"$')
def _parse_error(run: Run, m: re.Match[str], s: Step) -> None:
    got = str(run.response.json().get("message"))
    check(re.match(m.group(1), got) is not None, f"message {got!r} does not match {m.group(1)!r}")


@step(r'I should get back a warning of "(.*)"$')
def _warning(run: Run, m: re.Match[str], s: Step) -> None:
    got = run.response.json().get("warning")
    check(got == m.group(1), f"warning {got!r}")


@step(r'the JSON should have "(\d+)" results?|the JSON should have "(\d+)" result\(s\)')
def _results(run: Run, m: re.Match[str], s: Step) -> None:
    data, want = run.data(), int(m.group(1) or m.group(2))
    check(len(data) == want, f"{len(data)} results, not {want}: {json.dumps(data)[:400]}")


@step(r'the "([^"]+)" result should be "(.*)"$')
def _result_is(run: Run, m: re.Match[str], s: Step) -> None:
    got = _nth(m.group(1), run.data())
    want = json.loads(m.group(2))
    check(got == want, f"{got} != {want}")


@step(r'the "([^"]+)" result should have "([^"]+)" equaling the integer "(-?\d+)"')
def _equals_int(run: Run, m: re.Match[str], s: Step) -> None:
    got = _nth(m.group(1), run.data()).get(m.group(2))
    check(got == int(m.group(3)), f"{m.group(2)} = {got!r}, not {m.group(3)}")


@step(r'the "([^"]+)" result should have "([^"]+)" equaling "(.*)"$')
def _equals(run: Run, m: re.Match[str], s: Step) -> None:
    got = _nth(m.group(1), run.data()).get(m.group(2))
    check(got == m.group(3), f"{m.group(2)} = {got!r}, not {m.group(3)!r}")


@step(r'the "([^"]+)" result should have "([^"]+)" with item with entries "(.*)"$')
def _item_entries(run: Run, m: re.Match[str], s: Step) -> None:
    items = _nth(m.group(1), run.data()).get(m.group(2)) or []
    want = json.loads(m.group(3))
    check(any(all(i.get(k) == v for k, v in want.items()) for i in items), f"no item with {want} in {items}")


@step(r'the "([^"]+)" result should have "([^"]+)" with item "(.*)"$')
def _item(run: Run, m: re.Match[str], s: Step) -> None:
    items = _nth(m.group(1), run.data()).get(m.group(2)) or []
    want = json.loads(m.group(3))
    check(want in items, f"{want!r} not in {items}")


@step(r'the "([^"]+)" result should have "([^"]+)" with json "(.*)"$')
def _with_json(run: Run, m: re.Match[str], s: Step) -> None:
    got = _nth(m.group(1), run.data()).get(m.group(2))
    check(got == json.loads(m.group(3)), f"{m.group(2)} = {got!r}, not {m.group(3)}")


@step(r'the "([^"]+)" result should have a sub group with "([^"]+)" with json "(.*)"$')
def _sub_group(run: Run, m: re.Match[str], s: Step) -> None:
    values = _nth(m.group(1), run.data()).get("values") or []
    want = json.loads(m.group(3))
    check(any(v.get(m.group(2)) == want for v in values), f"no sub group with {m.group(2)} = {want}")


@step(r'the stored data should contain "(\d+)" "([^"]+)" equaling "(.*)"$')
def _stored_equal(run: Run, m: re.Match[str], s: Step) -> None:
    n = sum(1 for r in run.stored() if r.get(m.group(2)) == m.group(3))
    check(n == int(m.group(1)), f"{n} records with {m.group(2)} = {m.group(3)}")


@step(r'the stored data should contain "(\d+)" "([^"]+)" on "([^"]+)"')
def _stored_on(run: Run, m: re.Match[str], s: Step) -> None:
    key, when = m.group(2), _parse_time(m.group(3))
    records = run.stored()
    if key == "_week_start_at":
        n = sum(1 for r in records if when <= _parse_time(r["_timestamp"]) < when + timedelta(days=7))
    else:
        n = sum(1 for r in records if key in r and _parse_time(str(r[key])) == when)
    check(n == int(m.group(1)), f"{n} records with {key} on {m.group(3)}")


@step(r'the collection called "([^"]+)" should not exist')
def _gone(run: Run, m: re.Match[str], s: Step) -> None:
    name = m.group(1)
    group, _, type_ = run.path_of(name)[len("/data/") :].partition("/")
    check(run.app.state.store.count(group, type_) == 0, "the data set still holds records")


def run_scenario(scenario: Scenario, fixtures: Path) -> tuple[str, str]:
    """``("pass" | "fail" | "skip", detail)``."""
    plan: list[tuple[Handler, re.Match[str], Step]] = []
    for s in scenario.steps:
        for pattern, fn in STEPS:
            m = pattern.fullmatch(s.text)
            if m:
                plan.append((fn, m, s))
                break
        else:
            return "skip", f"cannot interpret: {s.text}"
    run = Run(scenario, fixtures)
    try:
        for fn, m, s in plan:
            try:
                fn(run, m, s)
            except AssertionError as exc:
                return "fail", f"{s.text}: {exc}"
            except Exception as exc:  # a crash in a step is a failure of the scenario, reported
                return "fail", f"{s.text}: {type(exc).__name__}: {exc}"
        return "pass", ""
    finally:
        run.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backdrop", type=Path, help="a checkout (working tree) of alphagov/backdrop")
    parser.add_argument("-v", "--verbose", action="store_true", help="print why each failing scenario failed")
    parser.add_argument("--only", help="run only scenarios whose feature or name contains this")
    args = parser.parse_args(argv)
    features = args.backdrop / "features"
    totals = {"pass": 0, "fail": 0, "skip": 0}
    for folder in ("read_api", "write_api"):
        for path in sorted((features / folder).glob("*.feature")):
            for scenario in parse_feature(path):
                label = f"{folder}/{scenario.feature}: {scenario.name}"
                if args.only and args.only not in label:
                    continue
                verdict, detail = run_scenario(scenario, features / "fixtures")
                totals[verdict] += 1
                print(f"{verdict.upper():4}  {label}")
                if detail and (args.verbose or verdict == "skip"):
                    print(f"      {detail[:600]}")
    total = sum(totals.values())
    print(f"\n{totals['pass']} passed, {totals['fail']} failed, {totals['skip']} not interpreted, of {total} scenarios")
    return 0


if __name__ == "__main__":
    sys.exit(main())
