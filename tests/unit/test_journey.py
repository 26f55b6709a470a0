"""The journey counting rules, framework-free: matching, bots, cookie flags, rotation."""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

import perf_sdk
from perf_sdk import ConfigurationError
from perf_sdk._journey import (
    DEFAULT_BOT_USER_AGENTS,
    Journey,
    JourneyEngine,
    VisitorState,
    cookie_from_header,
    cookie_name_for,
)
from perf_sdk.testing import CapturingTracker, capture

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
APPLY = Journey("apply", start="/apply", complete="/apply/confirmation")


class Visitor:
    """A browser in miniature: keeps the stored value the engine hands back."""

    def __init__(self, engine: JourneyEngine, user_agent: str = BROWSER) -> None:
        self.engine = engine
        self.user_agent = user_agent
        self.stored: str | None = None

    def get(self, path: str, status: int = 200, method: str = "GET", route: str | None = None) -> str | None:
        hits = self.engine.match(path, (route,))
        new = self.engine.observe(
            hits, method=method, status=status, user_agent=self.user_agent, stored=self.stored, request=None
        )
        if new is not None:
            self.stored = new
        return new


@pytest.fixture
def tracker() -> Any:
    with capture(service="apply-for-a-licence") as t:
        yield t


def engine_for(tracker: CapturingTracker, *journeys: Journey, **options: Any) -> JourneyEngine:
    return JourneyEngine(tracker, journeys or (APPLY,), **options)


# matching ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/apply", "/apply", True),
        ("/apply", "/apply/", True),
        ("/apply/", "/apply", True),
        ("/apply", "/apply/confirmation", False),
        ("/apply", "/applyx", False),
        ("/", "/", True),
        ("/apply/*", "/apply/step-2", True),
        ("/apply/*", "/apply/", True),
        ("/apply/*", "/apply", False),
        ("/apply/*", "/applications", False),
        (r"re:/case/\d+/done", "/case/42/done", True),
        (r"re:/case/\d+/done", "/case/42/done/extra", False),
        (re.compile(r"/case/[a-z]+"), "/case/abc", True),
        (re.compile(r"/case/[a-z]+"), "/case/123", False),
    ],
)
def test_path_patterns(tracker: CapturingTracker, pattern: Any, path: str, matches: bool) -> None:
    engine = engine_for(tracker, Journey("j", start=pattern, complete="/never"))
    assert bool(engine.match(path)) is matches


def test_route_names_match_the_frameworks_route_not_the_path(tracker: CapturingTracker) -> None:
    engine = engine_for(tracker, Journey("j", start="route:apply_start", complete="route:done"))
    assert engine.uses_routes
    assert engine.match("/anything", ("apply_start",))[0].start
    assert engine.match("/anything", (None, "done"))[0].complete
    assert not engine.match("/apply_start", ())


def test_several_patterns_and_several_journeys(tracker: CapturingTracker) -> None:
    a = Journey("a", start=["/a", "/a/begin"], complete="/done")
    b = Journey("b", start="/b", complete="/done")
    engine = engine_for(tracker, a, b)
    assert [h.journey.name for h in engine.match("/a/begin")] == ["a"]
    assert sorted(h.journey.name for h in engine.match("/done")) == ["a", "b"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Apply Now"}, "lower-case slug"),
        ({"start": "apply"}, "must start with '/'"),
        ({"start": "re:("}, "bad regex"),
        ({"start": "route:"}, "route name"),
        ({"start": []}, "at least one"),
        ({"channel": "web"}, "must be one of"),
    ],
)
def test_journeys_are_checked_when_declared(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"name": "apply", "start": "/apply", "complete": "/done"} | kwargs
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Journey(args.pop("name"), **args)


def test_two_journeys_with_one_name_are_refused(tracker: CapturingTracker) -> None:
    with pytest.raises(ConfigurationError, match="share a name"):
        engine_for(tracker, APPLY, Journey("apply", start="/x", complete="/y"))


# counting ------------------------------------------------------------------------------------
def test_a_journey_counts_one_start_and_one_completion(tracker: CapturingTracker) -> None:
    visitor = Visitor(engine_for(tracker))
    visitor.get("/")  # not a journey page: nothing, and no cookie
    assert visitor.stored is None
    visitor.get("/apply")
    visitor.get("/apply", method="POST", status=303)  # the form posts back to its own page
    visitor.get("/apply/confirmation")
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_refresh_and_back_button_never_count_twice(tracker: CapturingTracker) -> None:
    visitor = Visitor(engine_for(tracker))
    visitor.get("/apply")
    visitor.get("/apply")  # refresh
    visitor.get("/apply/confirmation")
    assert visitor.get("/apply/confirmation") is None  # refresh: nothing to store either
    visitor.get("/apply/confirmation", method="POST", status=303)  # back, resubmit
    assert tracker.counts() == {"started": 1, "completed": 1}
    assert len(tracker.of("transactions")) == 2


def test_a_confirmation_page_under_the_start_prefix_never_counts_twice(tracker: CapturingTracker) -> None:
    """``start="/apply/*"`` also matches ``/apply/done``: refreshing the completed page is not a new start."""
    visitor = Visitor(engine_for(tracker, Journey("apply", start="/apply/*", complete="/apply/done")))
    visitor.get("/apply/name")
    visitor.get("/apply/done")
    for _ in range(10):
        visitor.get("/apply/done")  # refreshes of the confirmation page
    assert tracker.counts() == {"started": 1, "completed": 1}
    visitor.get("/apply/name")  # a new application after the first: a new start, as before
    visitor.get("/apply/done")
    assert tracker.counts() == {"started": 2, "completed": 2}


def test_the_transaction_id_rotates_after_a_completion(tracker: CapturingTracker) -> None:
    engine = engine_for(tracker)
    visitor = Visitor(engine)
    visitor.get("/apply")
    first = visitor.engine.load(visitor.stored).transaction_id("apply")
    visitor.get("/apply/confirmation")
    assert visitor.engine.load(visitor.stored).transaction_id("apply") == first  # kept only for the feedback page
    visitor.get("/apply")  # applies again: a new transaction
    second = visitor.engine.load(visitor.stored).transaction_id("apply")
    assert second is not None and first is not None and second != first
    visitor.get("/apply/confirmation")
    assert tracker.counts() == {"started": 2, "completed": 2}
    tracker.assert_completed(first)
    tracker.assert_completed(second)


def test_ids_given_to_the_tracker_combine_journey_and_a_random_128_bit_id(tracker: CapturingTracker) -> None:
    visitor = Visitor(engine_for(tracker))
    visitor.get("/apply")
    name, _, token = visitor.engine.load(visitor.stored).transaction_id("apply").partition(":")  # type: ignore[union-attr]
    assert name == "apply"
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    record = tracker.assert_started(f"apply:{token}")
    assert token not in str(record)  # the platform gets its HMAC only


def test_two_journeys_on_one_visitor_do_not_collide(tracker: CapturingTracker) -> None:
    renew = Journey("renew", start="/renew", complete="/renew/done")
    visitor = Visitor(engine_for(tracker, APPLY, renew))
    visitor.get("/apply")
    visitor.get("/renew")
    visitor.get("/renew/done")
    visitor.get("/apply/confirmation")
    state = visitor.engine.load(visitor.stored)
    assert state.transaction_id("apply") != state.transaction_id("renew")
    assert tracker.counts() == {"started": 2, "completed": 2}


def test_a_completion_without_a_start_is_not_counted_by_default(tracker: CapturingTracker) -> None:
    visitor = Visitor(engine_for(tracker))
    visitor.get("/apply/confirmation")
    assert tracker.counts() == {}


def test_unstarted_completions_can_be_counted_once(tracker: CapturingTracker) -> None:
    visitor = Visitor(engine_for(tracker, count_unstarted_completions=True))
    visitor.get("/apply/confirmation")
    visitor.get("/apply/confirmation")  # refresh
    assert tracker.counts() == {"completed": 1}


@pytest.mark.parametrize("status", [400, 403, 404, 422, 500, 503])
def test_error_responses_count_nothing(tracker: CapturingTracker, status: int) -> None:
    visitor = Visitor(engine_for(tracker))
    assert visitor.get("/apply", status=status) is None
    visitor.get("/apply")
    visitor.get("/apply/confirmation", status=status)
    assert tracker.counts() == {"started": 1}


@pytest.mark.parametrize("status", [200, 201, 204, 301, 302, 303, 304])
def test_success_and_redirect_responses_count(tracker: CapturingTracker, status: int) -> None:
    Visitor(engine_for(tracker)).get("/apply", status=status)
    assert tracker.counts() == {"started": 1}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_answering_a_get_of_a_complete_page_completes_nothing(
    tracker: CapturingTracker, status: int
) -> None:
    """A confirmation page's guard (nothing submitted: back to the form) is not the page seen."""
    visitor = Visitor(engine_for(tracker))
    visitor.get("/apply")
    assert visitor.get("/apply/confirmation", status=status) is None
    assert tracker.counts() == {"started": 1}
    visitor.get("/apply/confirmation")  # the page itself, once the application is in
    assert tracker.counts() == {"started": 1, "completed": 1}


@pytest.mark.parametrize(("method", "status"), [("POST", 303), ("POST", 302), ("PUT", 303), ("GET", 304), ("GET", 200)])
def test_a_submission_answered_with_a_redirect_completes(tracker: CapturingTracker, method: str, status: int) -> None:
    """Post-redirect-get: the submission went through. A 304 is the page itself, from the browser's cache."""
    visitor = Visitor(engine_for(tracker))
    visitor.get("/apply")
    visitor.get("/apply/confirmation", method=method, status=status)
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_a_guard_redirect_on_a_page_that_also_starts_neither_completes_nor_restarts(tracker: CapturingTracker) -> None:
    visitor = Visitor(engine_for(tracker, Journey("apply", start="/apply/*", complete="/apply/done")))
    visitor.get("/apply/name")
    visitor.get("/apply/done", status=302)  # started, nothing submitted yet: sent back
    assert tracker.counts() == {"started": 1}
    visitor.get("/apply/done")
    visitor.get("/apply/done", status=302)  # completed: a redirect is neither a new start nor a completion
    assert tracker.counts() == {"started": 1, "completed": 1}
    Visitor(visitor.engine).get("/apply/done", status=302)  # a newcomer sent to the start: a start, as before
    assert tracker.counts() == {"started": 2, "completed": 1}


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_head_and_options_count_nothing(tracker: CapturingTracker, method: str) -> None:
    Visitor(engine_for(tracker)).get("/apply", method=method)
    assert tracker.counts() == {}


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
        "Baiduspider+(+http://www.baidu.com/search/spider.htm)",
        "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
        "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
        "curl/8.5.0",
        "Wget/1.21.4",
        "python-requests/2.32.3",
        "Python-urllib/3.11",
        "Go-http-client/1.1",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0 Safari/537.36",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "kube-probe/1.29",
    ],
)
def test_bots_are_not_counted(tracker: CapturingTracker, user_agent: str) -> None:
    Visitor(engine_for(tracker), user_agent=user_agent).get("/apply")
    assert tracker.counts() == {}


@pytest.mark.parametrize(
    "user_agent",
    [
        BROWSER,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 10; CUBOT_X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:127.0) Gecko/20100101 Firefox/127.0",
        "python-httpx/0.28.1",  # load tests: counted, by design
        "",
        None,
    ],
)
def test_people_and_load_tests_are_counted(tracker: CapturingTracker, user_agent: str | None) -> None:
    Visitor(engine_for(tracker), user_agent=user_agent).get("/apply")  # type: ignore[arg-type]
    assert tracker.counts() == {"started": 1}


def test_the_bot_rule_is_configurable(tracker: CapturingTracker) -> None:
    Visitor(engine_for(tracker, bot_user_agents=r"python-httpx"), user_agent="python-httpx/0.28").get("/apply")
    Visitor(engine_for(tracker, bot_user_agents=None), user_agent="Googlebot/2.1").get("/apply")
    assert tracker.counts() == {"started": 1}
    assert re.search(DEFAULT_BOT_USER_AGENTS, "GoogleBot", re.IGNORECASE)


def test_a_channel_callable_gets_the_request(tracker: CapturingTracker) -> None:
    assisted = Journey("apply", start="/apply", complete="/done", channel=lambda req: req["channel"])
    engine = engine_for(tracker, assisted)
    new = engine.observe(
        engine.match("/apply"), method="GET", status=200, user_agent=BROWSER, stored=None, request={"channel": "phone"}
    )
    engine.observe(
        engine.match("/done"), method="GET", status=200, user_agent=BROWSER, stored=new, request={"channel": "phone"}
    )
    assert tracker.counts(channel="phone") == {"started": 1, "completed": 1}


def test_a_failing_channel_callable_skips_the_count_and_never_raises(tracker: CapturingTracker) -> None:
    def broken(request: Any) -> str:
        raise RuntimeError("no user")

    engine = engine_for(tracker, Journey("apply", start="/apply", complete="/done", channel=broken))
    assert engine.observe(engine.match("/apply"), method="GET", status=200, user_agent=BROWSER, stored=None) is None
    assert tracker.counts() == {}


# state and cookie ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "stored",
    [
        "garbage",
        "apply.s.nothex",
        "apply.x.0123456789abcdef0123456789abcdef",
        "apply.s.0123456789abcdef0123456789abcdef.extra",
        "Apply.s.0123456789abcdef0123456789abcdef",
        "x" * 5000,
        12,
    ],
)
def test_a_malformed_stored_value_reads_as_a_new_visitor(tracker: CapturingTracker, stored: Any) -> None:
    assert VisitorState.parse(stored).entries == {}
    visitor = Visitor(engine_for(tracker))
    visitor.stored = stored
    visitor.get("/apply")
    assert tracker.counts() == {"started": 1}


def test_state_of_removed_journeys_is_dropped(tracker: CapturingTracker) -> None:
    engine = engine_for(tracker)
    raw = "gone.s.0123456789abcdef0123456789abcdef~apply.c.fedcba9876543210fedcba9876543210"
    old = engine.dump(VisitorState.parse(raw))  # signed, as a visitor's browser would hold it
    assert list(engine.load(old).entries) == ["apply"]
    assert "gone" not in repr(engine.load(old)) and "fedcba" not in repr(engine.load(old))


@pytest.mark.parametrize(
    ("host", "scheme", "secure"),
    [
        ("localhost:5000", "http", False),
        ("127.0.0.1:8000", "http", False),
        ("[::1]:8000", "http", False),
        ("app.localhost", "http", False),
        ("localhost", "https", True),
        ("apply.service.gov.uk", "https", True),
        ("apply.service.gov.uk", "http", True),  # behind a TLS-terminating proxy
        (None, "http", True),
    ],
)
def test_cookie_flags(tracker: CapturingTracker, host: str | None, scheme: str, secure: bool) -> None:
    cookie = engine_for(tracker).cookie("v", host=host, scheme=scheme)
    header = cookie.header()
    assert header.startswith("perf_sdk_txn_apply-for-a-licence=v; ")
    assert "; HttpOnly" in header and "; SameSite=Lax" in header and "; Path=/" in header
    assert ("; Secure" in header) is secure
    assert "Max-Age" not in header  # a browser-session cookie by default


def test_cookie_options(tracker: CapturingTracker) -> None:
    engine = engine_for(tracker, cookie_name="txn", cookie_secure=False, cookie_max_age=86400)
    header = engine.cookie("v", host="apply.service.gov.uk", scheme="https").header()
    assert header.startswith("txn=v; ") and "Max-Age=86400" in header and "Secure" not in header
    with pytest.raises(ConfigurationError):
        engine_for(tracker, cookie_name="bad name")


def test_each_service_has_its_own_cookie_name(tracker: CapturingTracker) -> None:
    """Services on one host never share a cookie: under one name each replaced the other's as forged."""
    assert engine_for(tracker).cookie_name == "perf_sdk_txn_apply-for-a-licence"
    with capture(service="boat-licence") as boat:
        assert JourneyEngine(boat, (APPLY,)).cookie_name == "perf_sdk_txn_boat-licence"
    long_a, long_b = "a" * 60 + "-one", "a" * 60 + "-two"
    assert len(cookie_name_for(long_a)) <= 64 and cookie_name_for(long_a) != cookie_name_for(long_b)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cookie_name_for(long_a))
    assert engine_for(tracker, cookie_name="perf_sdk_txn").cookie_name == "perf_sdk_txn"  # your own: as given


def test_a_cookie_of_earlier_versions_is_read_only_if_it_is_this_services(tracker: CapturingTracker) -> None:
    """Journeys in flight across the upgrade complete; another service's old cookie is not read or touched."""
    engine = engine_for(tracker)
    ours = started_cookie(engine)
    with capture(service="boat-licence") as boat:
        theirs = started_cookie(JourneyEngine(boat, (APPLY,)))
    tracker.clear()
    done = engine.match("/apply/confirmation")

    stored = engine.read_cookie({"perf_sdk_txn": ours}.get)
    new = engine.observe(done, method="GET", status=200, user_agent=BROWSER, stored=stored)
    assert tracker.counts() == {"completed": 1} and new is not None
    mine, old = engine.cookies(new, stored, host="apply.service.gov.uk", scheme="https")
    assert mine.name == "perf_sdk_txn_apply-for-a-licence" and engine.load(mine.value).entries["apply"].state == "c"
    assert (old.name, old.value, old.max_age, old.secure) == ("perf_sdk_txn", "", 0, True)

    stored = engine.read_cookie({"perf_sdk_txn": theirs}.get)
    assert engine.observe(done, method="GET", status=200, user_agent=BROWSER, stored=stored) is None
    new = engine.observe(engine.match("/apply"), method="GET", status=200, user_agent=BROWSER, stored=stored)
    assert new is not None and [c.name for c in engine.cookies(new, stored, host=None)] == [mine.name]
    assert tracker.counts() == {"completed": 1, "started": 1}

    both = {"perf_sdk_txn": ours, mine.name: mine.value}.get
    assert engine.read_cookie(both) == mine.value  # the service's own cookie wins
    assert engine_for(tracker, cookie_name="txn").read_cookie({"perf_sdk_txn": ours}.get) is None  # your own name


def test_cookie_from_header() -> None:
    assert cookie_from_header("a=1; perf_sdk_txn=abc; b=2", "perf_sdk_txn") == "abc"
    assert cookie_from_header('perf_sdk_txn="abc"', "perf_sdk_txn") == "abc"
    assert cookie_from_header("xperf_sdk_txn=abc", "perf_sdk_txn") is None
    assert cookie_from_header(None, "perf_sdk_txn") is None


def test_satisfaction_is_tied_to_the_transaction_just_completed(tracker: CapturingTracker) -> None:
    engine = engine_for(tracker)
    visitor = Visitor(engine)
    visitor.get("/apply")
    visitor.get("/apply/confirmation")
    engine.record_satisfaction(3, visitor.stored)
    engine.record_satisfaction(5, visitor.stored)  # a second answer replaces the first
    txn = visitor.engine.load(visitor.stored).transaction_id("apply")
    expected = tracker._caller_builder.natural_id("satisfaction", tracker._caller_builder.hash_transaction_id(txn))
    assert {r["_id"] for r in tracker.of("satisfaction")} == {expected}
    assert tracker.of("satisfaction")[-1]["rating"] == 5


def test_satisfaction_without_a_journey_is_recorded_untied(tracker: CapturingTracker) -> None:
    engine = engine_for(tracker)
    engine.record_satisfaction(4, None)
    engine.record_satisfaction(4, None)
    assert len({r["_id"] for r in tracker.of("satisfaction")}) == 2


# the authenticated cookie ----------------------------------------------------------------------
def started_cookie(engine: JourneyEngine) -> str:
    visitor = Visitor(engine)
    visitor.get("/apply")
    assert visitor.stored is not None
    return visitor.stored


def bad_cookies(engine: JourneyEngine, tracker: CapturingTracker) -> dict[str, str]:
    """Every way a visitor could hand back a cookie this service did not issue."""
    valid = started_cookie(engine)
    payload, _, mac = valid.rpartition(".")
    name, state, txn = payload.split(".")
    flip = {"0": "1"}
    with capture(service="another-service") as other:  # same secret, another service
        from_other_service = started_cookie(JourneyEngine(other, (APPLY,)))
    with capture(service="apply-for-a-licence", secret="another-secret-0123456789") as other:
        from_other_secret = started_cookie(JourneyEngine(other, (APPLY,)))
    tracker.clear()
    return {
        "forged, unsigned": f"{name}.s.{secrets.token_hex(16)}",
        "forged, made-up mac": f"{name}.s.{secrets.token_hex(16)}.{secrets.token_hex(16)}",
        "tampered id": f"{name}.{state}.{txn[:-1]}{flip.get(txn[-1], '0')}.{mac}",
        "tampered state": f"{name}.c.{txn}.{mac}",
        "tampered mac": f"{payload}.{mac[:-1]}{flip.get(mac[-1], '0')}",
        "another service, same secret": from_other_service,
        "same service, another secret": from_other_secret,
        "truncated by one": valid[:-1],
        "truncated to half": valid[: len(valid) // 2],
        "mac dropped": payload,
        "non-ascii": valid[:-1] + "é",
    }


def test_a_valid_cookie_is_signed_and_completes(tracker: CapturingTracker) -> None:
    engine = engine_for(tracker)
    cookie = started_cookie(engine)
    assert re.fullmatch(r"apply\.s\.[0-9a-f]{32}\.[0-9a-f]{32}", cookie)
    engine.observe(engine.match("/apply/confirmation"), method="GET", status=200, user_agent=BROWSER, stored=cookie)
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_forged_tampered_replayed_and_truncated_cookies_complete_nothing(tracker: CapturingTracker) -> None:
    engine = engine_for(tracker)
    for kind, cookie in bad_cookies(engine, tracker).items():
        new = engine.observe(
            engine.match("/apply/confirmation"), method="GET", status=200, user_agent=BROWSER, stored=cookie
        )
        assert tracker.counts() == {}, kind
        assert new == "", kind  # the bad cookie is replaced (removed: there is nothing to keep)
        assert engine.load(cookie).entries == {}, kind


def test_five_hundred_made_up_cookies_count_no_completion(tracker: CapturingTracker) -> None:
    engine = engine_for(tracker)
    hits = engine.match("/apply/confirmation")
    for _ in range(500):
        forged = f"apply.s.{secrets.token_hex(16)}"
        engine.observe(hits, method="GET", status=200, user_agent=BROWSER, stored=forged)
    assert tracker.counts() == {}


def test_a_start_with_a_bad_cookie_issues_a_fresh_signed_one(tracker: CapturingTracker) -> None:
    engine = engine_for(tracker)
    visitor = Visitor(engine)
    visitor.stored = f"apply.c.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
    visitor.get("/apply")
    assert visitor.stored is not None and engine.load(visitor.stored).entries["apply"].state == "s"
    visitor.get("/apply/confirmation")
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_satisfaction_is_tied_only_to_a_transaction_this_sdk_issued(tracker: CapturingTracker) -> None:
    engine = engine_for(tracker)
    forged_txn = secrets.token_hex(16)
    forged = f"apply.c.{forged_txn}"
    engine.record_satisfaction(5, forged)
    engine.record_satisfaction(5, forged)
    builder = tracker._caller_builder
    tied = builder.natural_id("satisfaction", builder.hash_transaction_id(f"apply:{forged_txn}"))
    ids = {r["_id"] for r in tracker.of("satisfaction")}
    assert tied not in ids and len(ids) == 2  # two untied answers, not one transaction's


def test_session_mode_stores_the_state_unsigned(tracker: CapturingTracker) -> None:
    """The framework signs (or keeps server-side) its own session: no second signature."""
    visitor = Visitor(engine_for(tracker, use_session=True))
    visitor.get("/apply")
    assert re.fullmatch(r"apply\.s\.[0-9a-f]{32}", visitor.stored or "")


class _NoSend:
    def send(self, data_type: str, body: bytes) -> None:  # pragma: no cover - nothing is recorded
        raise AssertionError("nothing should be sent")

    def close(self) -> None:
        return None


def test_cookie_mode_without_a_secret_is_refused_at_set_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERF_SDK_SECRET", raising=False)
    tracker = perf_sdk.Tracker(service="apply-for-a-licence", transport=_NoSend(), spool_dir=tmp_path)
    try:
        with pytest.raises(ConfigurationError, match=r"secret.*PERF_SDK_SECRET.*use_session=True"):
            JourneyEngine(tracker, (APPLY,))
        JourneyEngine(tracker, (APPLY,), use_session=True)  # the framework's session needs no key of ours
    finally:
        tracker.close(timeout=1)


def test_a_switched_off_tracker_without_a_secret_signs_with_a_process_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("PERF_SDK_SECRET", raising=False)
    tracker = perf_sdk.Tracker(service="apply-for-a-licence", transport=_NoSend(), spool_dir=tmp_path, enabled=False)
    try:
        with caplog.at_level(logging.INFO, logger="perf_sdk"):
            engine = JourneyEngine(tracker, (APPLY,))
        assert "random key of this process" in caplog.text
        cookie = engine.dump(VisitorState.parse(f"apply.s.{secrets.token_hex(16)}"))
        assert engine.load(cookie).entries and JourneyEngine(tracker, (APPLY,)).load(cookie).entries
    finally:
        tracker.close(timeout=1)


def test_the_first_request_skipped_as_a_bot_is_said_once_at_info(
    tracker: CapturingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_for(tracker)
    with caplog.at_level(logging.INFO, logger="perf_sdk"):
        Visitor(engine, user_agent="curl/8.5.0").get("/apply")
        Visitor(engine, user_agent="curl/8.5.0").get("/apply")
        Visitor(engine, user_agent="Wget/1.21.4").get("/apply")
    said = [r for r in caplog.records if "bot" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert "curl/8.5.0" in said[0].getMessage() and "bot_user_agents=None" in said[0].getMessage()
    assert tracker.counts() == {}


# consent -------------------------------------------------------------------------------------
def test_without_consent_nothing_is_read_set_or_counted(tracker: CapturingTracker) -> None:
    engine = engine_for(tracker, consent=lambda request: request["agreed"])
    hits = engine.match("/apply")
    assert (
        engine.observe(hits, method="GET", status=200, user_agent=BROWSER, stored=None, request={"agreed": False})
        is None
    )
    assert tracker.counts() == {}
    cookie = engine.observe(hits, method="GET", status=200, user_agent=BROWSER, stored=None, request={"agreed": True})
    assert cookie is not None and tracker.counts() == {"started": 1}
    done = engine.match("/apply/confirmation")
    engine.observe(done, method="GET", status=200, user_agent=BROWSER, stored=cookie, request={"agreed": False})
    assert tracker.counts() == {"started": 1}  # consent withdrawn: the cookie is not even read


def test_without_consent_a_rating_is_recorded_untied(tracker: CapturingTracker) -> None:
    engine = engine_for(tracker, consent=lambda request: False)
    engine.record_satisfaction(4, engine.dump(VisitorState.parse(f"apply.c.{secrets.token_hex(16)}")))
    engine.record_satisfaction(4, engine.dump(VisitorState.parse(f"apply.c.{secrets.token_hex(16)}")))
    assert len(tracker.of("satisfaction")) == 2


def test_a_failing_consent_callable_counts_as_no_consent(
    tracker: CapturingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: Any) -> bool:
        raise KeyError("cookies_policy")

    visitor = Visitor(engine_for(tracker, consent=broken))
    assert visitor.get("/apply") is None
    assert tracker.counts() == {} and "consent callable failed" in caplog.text
    with pytest.raises(ConfigurationError, match="consent"):
        engine_for(tracker, consent="yes")
