"""The Flask integration, with real Flask apps and their test client."""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, abort, redirect, request, session
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

import perf_sdk
from perf_sdk import ConfigurationError
from perf_sdk.integrations import Journey
from perf_sdk.integrations.flask import EXTENSION_KEY, init_app, record_satisfaction
from perf_sdk.platform import LocalPlatform
from perf_sdk.testing import CapturingTracker, capture
from tests.conftest import FAST, SECRET, SERVICE
from tests.integration.journey_cookies import COOKIE, LEGACY_COOKIE, bad_cookies, cookie_value, expires_the_cookie

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
JOURNEYS = [Journey("apply", start="/apply", complete="route:done")]


def create_app(tracker: Any, **options: Any) -> Flask:
    """An application factory, as services write them."""
    app = Flask(__name__)
    app.secret_key = "test-only-secret"
    init_app(app, tracker, journeys=options.pop("journeys", JOURNEYS), **options)

    @app.route("/apply", methods=["GET", "POST"])
    def apply() -> Any:
        return "form"

    @app.get("/apply/done")
    def done() -> str:
        return "complete"

    @app.get("/apply/broken")
    def broken() -> str:
        abort(500)

    @app.post("/feedback")
    def feedback() -> Any:
        record_satisfaction(4)
        return redirect("/thanks", code=303)

    @app.get("/session")
    def show_session() -> str:
        return repr(dict(session))

    return app


@pytest.fixture
def tracker() -> Iterator[CapturingTracker]:
    with capture(service=SERVICE) as t:
        yield t


def test_counts_a_journey_and_ignores_refreshes(tracker: CapturingTracker) -> None:
    client = create_app(tracker).test_client()
    first = client.get("/apply", headers={"User-Agent": BROWSER})
    assert first.headers["Set-Cookie"].startswith(f"{COOKIE}=")
    assert client.get("/apply", headers={"User-Agent": BROWSER}).headers.get("Set-Cookie") is None  # refresh
    client.get("/apply/done", headers={"User-Agent": BROWSER})
    client.get("/apply/done", headers={"User-Agent": BROWSER})
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_cookie_flags_on_localhost_and_on_a_real_host(tracker: CapturingTracker) -> None:
    client = create_app(tracker).test_client()
    local = client.get("/apply").headers["Set-Cookie"]
    assert "HttpOnly" in local and "SameSite=Lax" in local and "Path=/" in local and "Secure" not in local
    remote = create_app(tracker).test_client().get("/apply", base_url="https://apply.service.gov.uk")
    assert "Secure" in remote.headers["Set-Cookie"]


def test_errors_and_bots_are_not_counted(tracker: CapturingTracker) -> None:
    app = create_app(tracker, journeys=[Journey("apply", start="/apply", complete="/apply/broken")])
    client = app.test_client()
    client.get("/apply", headers={"User-Agent": "Googlebot/2.1"})
    assert tracker.counts() == {}
    client.get("/apply")
    assert client.get("/apply/broken").status_code == 500
    assert tracker.counts() == {"started": 1}


def test_application_factory_keeps_apps_apart() -> None:
    with capture(service=SERVICE) as one, capture(service=SERVICE) as two:
        app_one, app_two = create_app(one), create_app(two)
        assert app_one.extensions[EXTENSION_KEY].tracker is one
        app_one.test_client().get("/apply")
        assert one.counts() == {"started": 1} and two.counts() == {}
        app_two.test_client().get("/apply")
        assert two.counts() == {"started": 1}


def test_satisfaction_from_a_feedback_form_is_tied_to_the_transaction(tracker: CapturingTracker) -> None:
    client = create_app(tracker).test_client()
    client.get("/apply")
    client.get("/apply/done")
    client.post("/feedback")
    client.post("/feedback")
    assert len(tracker.of("satisfaction")) == 2
    assert len({r["_id"] for r in tracker.of("satisfaction")}) == 1  # one answer per transaction


def test_record_satisfaction_without_init_app_says_what_to_do() -> None:
    app = Flask(__name__)
    with app.test_request_context("/"), pytest.raises(ConfigurationError, match="init_app"):
        record_satisfaction(3)


def test_session_mode_keeps_no_cookie_of_its_own(tracker: CapturingTracker) -> None:
    client = create_app(tracker, use_session=True).test_client()
    response = client.get("/apply")
    assert "perf_sdk_txn" not in response.headers.get("Set-Cookie", "")
    assert "session=" in response.headers["Set-Cookie"]
    assert "apply.s." in client.get("/session").get_data(as_text=True)
    client.get("/apply/done")
    client.get("/apply/done")
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_a_failing_tracker_never_fails_the_page() -> None:
    class Broken(CapturingTracker):
        def start(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("boom")

    client = create_app(Broken(SERVICE)).test_client()
    assert client.get("/apply").status_code == 200


def test_end_to_end_against_the_local_platform(tmp_path: Path) -> None:
    with LocalPlatform(token="t") as platform:
        tracker = perf_sdk.Tracker(
            service=SERVICE, endpoint=platform.url, token="t", secret=SECRET, spool_dir=tmp_path, **FAST
        )
        try:
            app = create_app(tracker)
            for _ in range(5):
                client = app.test_client()
                client.get("/apply")
                client.get("/apply/done")
                client.get("/apply/done")
            assert tracker.flush(timeout=60)
        finally:
            tracker.close()
        stages = [r["stage"] for r in platform.records(SERVICE, "transactions")]
        assert sorted(stages) == ["completed"] * 5 + ["started"] * 5


def test_missing_flask_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['flask'] = None\n"
        "try:\n    import perf_sdk.integrations.flask\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ConfigurationError") and "pip install 'perf-sdk[flask]'" in out


# the journey cookie is authenticated ---------------------------------------------------------
def started_cookie(app: Flask) -> str:
    response = app.test_client().get("/apply", headers={"User-Agent": BROWSER})
    return cookie_value(response.headers.get("Set-Cookie"), app.extensions[EXTENSION_KEY].cookie_name)


def test_cookies_this_service_did_not_issue_complete_nothing(tracker: CapturingTracker) -> None:
    """Forged, tampered, replayed-from-another-service and truncated cookies: no completion, and the cookie goes."""
    app = create_app(tracker)
    with (
        capture(service="another-service") as other,
        capture(service=SERVICE, secret="another-secret-0123456789") as third,
    ):
        cookies = bad_cookies(started_cookie(app), started_cookie(create_app(other)), started_cookie(create_app(third)))
    tracker.clear()
    client = app.test_client(use_cookies=False)
    for kind, value in cookies.items():
        response = client.get("/apply/done", headers={"User-Agent": BROWSER, "Cookie": f"{COOKIE}={value}"})
        assert response.status_code == 200, kind
        assert tracker.counts() == {}, kind
        assert expires_the_cookie(response.headers.get("Set-Cookie")), kind


def test_five_hundred_made_up_cookies_cannot_inflate_completions(tracker: CapturingTracker) -> None:
    client = create_app(tracker).test_client(use_cookies=False)
    for _ in range(500):
        forged = f"apply.s.{secrets.token_hex(16)}"
        client.get("/apply/done", headers={"User-Agent": BROWSER, "Cookie": f"{COOKIE}={forged}"})
    assert tracker.counts() == {}


def test_a_bad_cookie_is_replaced_by_a_fresh_one_at_the_start(tracker: CapturingTracker) -> None:
    client = create_app(tracker).test_client()
    forged = f"apply.c.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
    fresh = cookie_value(
        client.get("/apply", headers={"User-Agent": BROWSER, "Cookie": f"{COOKIE}={forged}"}).headers.get("Set-Cookie")
    )
    assert fresh != forged
    client.get("/apply/done", headers={"User-Agent": BROWSER})
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_a_made_up_cookie_ties_no_satisfaction_answer(tracker: CapturingTracker) -> None:
    client = create_app(tracker).test_client(use_cookies=False)
    forged = f"apply.c.{secrets.token_hex(16)}"
    for _ in range(2):
        client.post("/feedback", headers={"User-Agent": BROWSER, "Cookie": f"{COOKIE}={forged}"})
    assert len({r["_id"] for r in tracker.of("satisfaction")}) == 2  # two untied answers, not one transaction's


def test_a_request_skipped_as_a_bot_is_said_at_info(
    tracker: CapturingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    client = create_app(tracker).test_client()
    with caplog.at_level(logging.INFO, logger="perf_sdk"):
        client.get("/apply", headers={"User-Agent": "curl/8.5.0"})
        client.get("/apply", headers={"User-Agent": "curl/8.5.0"})
    assert tracker.counts() == {}
    assert [r.levelno for r in caplog.records if "curl/8.5.0" in r.getMessage()] == [logging.INFO]


def test_counting_only_after_consent(tracker: CapturingTracker) -> None:
    """The cookie banner's answer decides: no statistics cookie, and no count, without it."""
    app = create_app(tracker, consent=lambda request: request.cookies.get("cookies_policy") == "accepted")
    client = app.test_client()
    response = client.get("/apply", headers={"User-Agent": BROWSER})
    assert "perf_sdk_txn" not in response.headers.get("Set-Cookie", "") and tracker.counts() == {}
    client.set_cookie("cookies_policy", "accepted")
    assert f"{COOKIE}=" in client.get("/apply", headers={"User-Agent": BROWSER}).headers["Set-Cookie"]
    client.get("/apply/done", headers={"User-Agent": BROWSER})
    assert tracker.counts() == {"started": 1, "completed": 1}


# two services on one host ------------------------------------------------------------------
def test_two_services_on_one_host_each_keep_their_own_cookie() -> None:
    """Two apps dispatched by path, each its own service and secret: neither replaces the other's cookie.

    Under one shared cookie name each read the other's as forged and replaced it: 50 visitors who completed
    both journeys counted 50 starts and no completion for either service.
    """
    with (
        capture(service="fishing-licence", secret="fishing-secret-0123456789") as fish,
        capture(service="boat-licence", secret="boat-secret-0123456789abc") as boat,
    ):
        site = DispatcherMiddleware(Flask("root"), {"/fish": create_app(fish), "/boat": create_app(boat)})
        for _ in range(5):
            client = Client(site)
            client.get("/fish/apply", headers={"User-Agent": BROWSER})
            client.get("/boat/apply", headers={"User-Agent": BROWSER})
            client.get("/fish/apply/done", headers={"User-Agent": BROWSER})
            client.get("/boat/apply/done", headers={"User-Agent": BROWSER})
        assert fish.counts() == {"started": 5, "completed": 5}
        assert boat.counts() == {"started": 5, "completed": 5}
        assert client.get_cookie("perf_sdk_txn_fishing-licence") and client.get_cookie("perf_sdk_txn_boat-licence")
        assert client.get_cookie("perf_sdk_txn") is None


def test_a_cookie_name_of_your_own_is_used_as_given(tracker: CapturingTracker) -> None:
    response = create_app(tracker, cookie_name="licence_txn").test_client().get("/apply")
    assert response.headers["Set-Cookie"].startswith("licence_txn=")


def test_a_journey_started_before_the_upgrade_completes_and_its_cookie_moves(tracker: CapturingTracker) -> None:
    """A visitor part-way through when per-service names shipped holds ``perf_sdk_txn``: their completion counts."""
    app = create_app(tracker)
    before_upgrade = started_cookie(app)  # the same signature an earlier version put under the old name
    tracker.clear()
    client = app.test_client(use_cookies=False)
    response = client.get("/apply/done", headers={"User-Agent": BROWSER, "Cookie": f"{LEGACY_COOKIE}={before_upgrade}"})
    assert tracker.counts() == {"completed": 1}
    set_cookies = response.headers.getlist("Set-Cookie")
    moved = cookie_value(set_cookies[0])
    assert app.extensions[EXTENSION_KEY].load(moved).entries["apply"].state == "c"
    assert expires_the_cookie(set_cookies, LEGACY_COOKIE)  # ours: its state now lives under the new name
    client.get("/apply/done", headers={"User-Agent": BROWSER, "Cookie": f"{COOKIE}={moved}"})
    assert tracker.counts() == {"completed": 1}  # a refresh: once


def test_an_old_named_cookie_of_another_service_is_neither_read_nor_touched(tracker: CapturingTracker) -> None:
    """A neighbour on the same host, not yet upgraded, still uses ``perf_sdk_txn``: it is theirs, left alone."""
    with capture(service="boat-licence") as boat:
        theirs = started_cookie(create_app(boat))
    client = create_app(tracker).test_client(use_cookies=False)
    headers = {"User-Agent": BROWSER, "Cookie": f"{LEGACY_COOKIE}={theirs}"}
    done = client.get("/apply/done", headers=headers)
    assert tracker.counts() == {} and "Set-Cookie" not in done.headers
    start = client.get("/apply", headers=headers)
    assert tracker.counts() == {"started": 1}
    assert [c.split("=", 1)[0] for c in start.headers.getlist("Set-Cookie")] == [COOKIE]


# redirects -----------------------------------------------------------------------------------
def guarded_app(tracker: Any, complete: str = "/apply/confirmation") -> Flask:
    """A confirmation page that sends a visitor who submitted nothing back to the form, as services do."""
    app = Flask(__name__)
    app.secret_key = "test-only-secret"
    init_app(app, tracker, journeys=[Journey("apply", start="/apply", complete=complete)])

    @app.route("/apply", methods=["GET", "POST"])
    def apply() -> Any:
        if request.method == "POST":
            session["submitted"] = True
            return redirect("/apply/confirmation")  # post-redirect-get
        return "form"

    @app.post("/apply/submit")
    def submit() -> Any:
        session["submitted"] = True
        return redirect("/apply/confirmation", code=303)

    @app.get("/apply/confirmation")
    def confirmation() -> Any:
        if not session.get("submitted"):
            return redirect("/apply")  # the guard: you have not applied yet
        return "Application complete"

    return app


def test_a_confirmation_page_redirecting_a_visitor_who_submitted_nothing_completes_nothing(
    tracker: CapturingTracker,
) -> None:
    app = guarded_app(tracker)
    for _ in range(20):
        client = app.test_client()
        client.get("/apply", headers={"User-Agent": BROWSER})
        assert client.get("/apply/confirmation", headers={"User-Agent": BROWSER}).status_code == 302
    assert tracker.counts() == {"started": 20}
    client.post("/apply", headers={"User-Agent": BROWSER})  # the last visitor submits
    assert client.get("/apply/confirmation", headers={"User-Agent": BROWSER}).status_code == 200
    assert tracker.counts() == {"started": 20, "completed": 1}


def test_a_submission_answered_with_a_redirect_completes(tracker: CapturingTracker) -> None:
    """Post-redirect-get: a complete page that is the form's POST counts on its 303."""
    client = guarded_app(tracker, complete="/apply/submit").test_client()
    client.get("/apply", headers={"User-Agent": BROWSER})
    assert client.post("/apply/submit", headers={"User-Agent": BROWSER}).status_code == 303
    assert tracker.counts() == {"started": 1, "completed": 1}
