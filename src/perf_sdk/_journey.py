"""Journeys: count transactions from page views, with no hand-written calls.

A :class:`Journey` names the pages where a visitor's transaction starts and
completes. :class:`JourneyEngine` holds every counting rule, framework-free, so
the Flask, Django and ASGI integrations are thin adapters that hand it the
facts of one response (path, route name, status, user agent, the visitor's
stored state) and apply what it answers (a new cookie or session value).

The rules, and why:

* A start counts on a *successful* response (2xx or 3xx) of a start page, a
  completion on a successful response of a complete page. A 4xx or 5xx is a
  visitor who did not get the page, so it is not a step of their journey.
* A redirect (3xx other than 304) completes only when it answers a submission
  (``POST``, ``PUT``, ...: post-redirect-get, the submission went through). A
  redirect answering a ``GET`` of a complete page is the page sending the
  visitor elsewhere (the usual guard: nothing submitted yet, back to the form),
  so the visitor did not see it and nothing completes. A start still counts on
  any 2xx or 3xx (a start page that redirects to the first question is the
  journey beginning).
* Each journey a visitor is on has its own transaction id: 128 random bits kept
  in the SDK's own cookie (or the framework's session). The id given to the
  tracker is ``"<journey name>:<id>"``, so two journeys never collide, and the
  tracker HMACs it before anything leaves the process: the clear id lives only
  in the visitor's browser and in memory for the length of a request.
* The cookie also records whether the journey is *started* or *completed*. A
  refresh or back-button on a start page of a started journey, or on a complete
  page of a completed one, counts nothing (and even if it were sent, the
  tracker's deterministic record ids would store it once). A completion
  without a start is not counted unless ``count_unstarted_completions=True``.
* After a journey completes, the next start draws a new id: a visitor applying
  twice is two transactions. The completed id is kept until then only so that a
  feedback page can tie its rating to the transaction just completed.
* The SDK's cookie is *authenticated*: its value ends in an HMAC-SHA256 (128
  bits) keyed with a key derived from the service's secret and name, checked in
  constant time. A cookie that fails (made up, edited, truncated, or issued by
  another service) reads as no cookie at all, and the response replaces it. So
  a completion, and a satisfaction answer tied to a transaction, count only for
  a start this SDK issued: nobody can inflate completions by inventing or
  rotating ids. In session mode the framework's session is already signed or
  server-side, so its value is stored as it is.
* Each service has its own cookie, ``perf_sdk_txn_<service>``: two services on
  one host (two apps dispatched by path, as a department's site often is) each
  keep their own, where under one shared name each would read the other's as
  forged and replace it, losing both services' completions. The name of
  earlier versions, ``perf_sdk_txn``, is still *read* when the service's own
  cookie is absent, so journeys in flight across an upgrade complete: if its
  signature is this service's, its state moves to the new cookie and the old
  one is expired; if not (another service's, not yet upgraded), it is neither
  read nor touched.
* Cookie mode needs the secret. A tracker that will send records but has no
  secret is refused when the integration is set up (a key drawn at random per
  process would make every cookie fail at the other workers of a multi-worker
  server, silently losing completions). A switched-off tracker sends nothing,
  so there a random per-process key is used and said once at INFO.
* Requests whose ``User-Agent`` matches :data:`DEFAULT_BOT_USER_AGENTS` (crawlers,
  uptime monitors, command-line HTTP clients such as curl) are not counted, and
  the first one skipped is said at INFO, so a first test with curl that counts
  nothing explains itself. The default does *not* match httpx's
  ``python-httpx/x.y``, so load tests count like visitors.
* ``HEAD`` and ``OPTIONS`` requests (link checkers, CORS pre-flight) are never
  counted: no person saw a page.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from perf_sdk._config import Settings
from perf_sdk._errors import ConfigurationError
from perf_sdk._protocol import CHANNELS

__all__ = [
    "DEFAULT_BOT_USER_AGENTS",
    "DEFAULT_COOKIE_NAME",
    "CookieSpec",
    "Journey",
    "JourneyEngine",
    "VisitorState",
    "cookie_name_for",
]

logger = logging.getLogger("perf_sdk")

#: One pattern: an exact path, a prefix ending in ``*``, ``"re:<regex>"`` or a
#: compiled regex (matched against the whole path), or ``"route:<name>"``.
PathPattern = str | re.Pattern[str]
ChannelRule = str | Callable[[Any], str]

#: The cookie name of versions before per-service names, and the prefix of every default name.
DEFAULT_COOKIE_NAME: Final = "perf_sdk_txn"
DEFAULT_SESSION_KEY: Final = "perf_sdk_txn"

#: Case-insensitive, searched anywhere in the ``User-Agent``. Crawlers (``bot``
#: but not the CUBOT phone brand, ``crawl``, ``spider``, ``slurp``), link
#: previews, uptime and health checkers, headless browsers and command-line or
#: library HTTP clients that are not a person's browser. Deliberately *not*
#: ``httpx``: a load test driven by httpx is counted like real visitors (send
#: your own ``User-Agent``, or pass ``bot_user_agents=``, to exclude it).
DEFAULT_BOT_USER_AGENTS: Final = (
    r"(?<!cu)bot|crawl|spider|slurp|archiver|monitor|uptime|pingdom|statuscake|site24x7|nagios|zabbix"
    r"|check_http|healthcheck|kube-probe|curl/|wget/|python-requests|python-urllib|aiohttp|go-http-client"
    r"|java/|okhttp|apache-httpclient|libwww|scrapy|node-fetch|axios/|headlesschrome|phantomjs|lighthouse"
    r"|facebookexternalhit|feedfetcher|mediapartners"
)

_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ID_RE: Final = re.compile(r"^[0-9a-f]{32}$")
_UNCOUNTED_METHODS: Final = frozenset({"HEAD", "OPTIONS"})
#: Methods that only read: a redirect answering one is not the page shown, so it completes nothing.
_READ_METHODS: Final = frozenset({"GET", "HEAD"})
_COOKIE_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_BOT_CACHE_SIZE: Final = 4096
_STARTED: Final = "s"
_COMPLETED: Final = "c"
#: Domain separation: the cookie key is never the key that hashes transaction ids.
_COOKIE_KEY_LABEL: Final = b"perf_sdk journey cookie v1"
#: Hex digits of HMAC-SHA256 kept in the cookie: 128 bits, as many as the id itself.
_MAC_HEX: Final = 32


class Recorder(Protocol):
    """What the engine needs of a tracker: :class:`~perf_sdk.Tracker` and
    :class:`~perf_sdk.AsyncTracker` both fit (their recording calls only enqueue)."""

    def start(self, transaction_id: str | None = ..., *, channel: str = ...) -> None: ...

    def complete(self, transaction_id: str | None = ..., *, channel: str = ...) -> None: ...

    def satisfaction(self, rating: int, *, channel: str = ..., transaction_id: str | None = ...) -> None: ...


class Journey:
    """The pages where a visitor's transaction starts and completes.

    >>> Journey("apply-for-a-licence", start="/apply", complete="/apply/confirmation")
    Journey('apply-for-a-licence', start=('/apply',), complete=('/apply/confirmation',), channel='digital')

    ``start`` and ``complete`` are one pattern or several:

    * ``"/apply/confirmation"``: that path (a trailing ``/`` is ignored);
    * ``"/apply/*"``: every path under ``/apply/``;
    * ``"re:^/apply/[0-9]+/done$"`` or ``re.compile(...)``: a regex matching the whole path;
    * ``"route:confirmation"``: the framework's route name (Flask endpoint, Django URL name
      or ``namespace:name``, Starlette/FastAPI route name).

    ``channel`` is a channel name, or a callable given the framework's request
    (Flask ``request``, Django ``HttpRequest``, the ASGI ``scope``) that returns
    one, e.g. ``"phone"`` when a caseworker uses the service for a caller.
    Paths are the application's own: without the prefix it is served under
    (``SCRIPT_NAME``, the ASGI ``root_path`` a request arrives with), but with
    the prefix of a ``Mount`` inside it (``/apply/start`` for a page ``/start``
    under ``Mount("/apply")``).
    """

    __slots__ = ("_complete", "_start", "channel", "complete", "name", "start")

    def __init__(
        self,
        name: str,
        *,
        start: PathPattern | Iterable[PathPattern],
        complete: PathPattern | Iterable[PathPattern],
        channel: ChannelRule = "digital",
    ) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigurationError(
                f"Journey name {name!r}: use a lower-case slug of letters, digits, '-' and '_' (at most 64), "
                "e.g. 'apply-for-a-licence'; it is part of the visitor's cookie"
            )
        if isinstance(channel, str) and channel not in CHANNELS:
            raise ConfigurationError(f"Journey {name!r}: channel {channel!r} must be one of {', '.join(CHANNELS)}")
        if not isinstance(channel, str) and not callable(channel):
            raise ConfigurationError(f"Journey {name!r}: channel must be a channel name or a callable(request)")
        self.name = name
        self.start = _as_tuple(start)
        self.complete = _as_tuple(complete)
        self.channel = channel
        if not self.start or not self.complete:
            raise ConfigurationError(f"Journey {name!r}: give at least one start and one complete pattern")
        self._start = [_Pattern.parse(p, name) for p in self.start]
        self._complete = [_Pattern.parse(p, name) for p in self.complete]

    def channel_for(self, request: Any) -> str:
        """The channel of this request; a callable's failure or bad answer raises."""
        rule = self.channel
        if isinstance(rule, str):
            return rule
        value = rule(request)
        if value not in CHANNELS:
            raise ValueError(f"channel callable returned {value!r}, not one of {', '.join(CHANNELS)}")
        return str(value)

    def __repr__(self) -> str:
        channel = self.channel if isinstance(self.channel, str) else getattr(self.channel, "__name__", "<callable>")
        return f"Journey({self.name!r}, start={self.start!r}, complete={self.complete!r}, channel={channel!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Journey):
            return NotImplemented
        return (self.name, self.start, self.complete, self.channel) == (
            other.name,
            other.start,
            other.complete,
            other.channel,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.start, self.complete))


def _as_tuple(value: PathPattern | Iterable[PathPattern]) -> tuple[PathPattern, ...]:
    if isinstance(value, (str, re.Pattern)):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class _Pattern:
    kind: str  # "exact" | "prefix" | "regex" | "route"
    text: str
    regex: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, pattern: PathPattern, journey: str) -> _Pattern:
        if isinstance(pattern, re.Pattern):
            return cls("regex", pattern.pattern, pattern)
        if not isinstance(pattern, str) or not pattern:
            raise ConfigurationError(f"Journey {journey!r}: pattern {pattern!r} must be a non-empty string or a regex")
        if pattern.startswith("route:"):
            route = pattern[len("route:") :]
            if not route:
                raise ConfigurationError(f"Journey {journey!r}: 'route:' needs a route name, e.g. 'route:apply_start'")
            return cls("route", route)
        if pattern.startswith("re:"):
            try:
                return cls("regex", pattern[3:], re.compile(pattern[3:]))
            except re.error as exc:
                raise ConfigurationError(f"Journey {journey!r}: bad regex {pattern!r}: {exc}") from None
        if not pattern.startswith("/"):
            raise ConfigurationError(
                f"Journey {journey!r}: path {pattern!r} must start with '/' "
                "(or be 'route:<name>', 're:<regex>', or a compiled regex)"
            )
        if pattern.endswith("*"):
            return cls("prefix", pattern[:-1])
        return cls("exact", _normalise(pattern))


def _normalise(path: str) -> str:
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


@dataclass(frozen=True)
class CookieSpec:
    """The cookie an integration sets: each framework's ``set_cookie`` takes these fields."""

    name: str
    value: str
    secure: bool
    max_age: int | None
    path: str = "/"
    httponly: bool = True
    samesite: str = "Lax"

    def set_on(self, response: Any) -> None:
        """Set it on a Werkzeug (Flask) or Django response: both ``set_cookie`` take these keywords."""
        response.set_cookie(
            self.name,
            self.value,
            max_age=self.max_age,
            path=self.path,
            secure=self.secure,
            httponly=self.httponly,
            samesite=self.samesite,
        )

    def header(self) -> str:
        """The ``Set-Cookie`` header value, for integrations with no cookie helper (ASGI)."""
        parts = [f"{self.name}={self.value}", f"Path={self.path}"]
        if self.max_age is not None:
            parts.append(f"Max-Age={self.max_age}")
        if self.httponly:
            parts.append("HttpOnly")
        if self.secure:
            parts.append("Secure")
        parts.append(f"SameSite={self.samesite}")
        return "; ".join(parts)


def cookie_name_for(service: str) -> str:
    """The default cookie name of ``service``: ``perf_sdk_txn_<service>``, so services on one host never share one.

    >>> cookie_name_for("apply-for-a-licence")
    'perf_sdk_txn_apply-for-a-licence'

    A slug too long for a 64-character name keeps its first 42 characters and
    a hash of the whole, so two long slugs still get two names.
    """
    name = f"{DEFAULT_COOKIE_NAME}_{service}"
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(service.encode()).hexdigest()[:8]
    return f"{name[:55]}_{digest}"


@dataclass
class _LegacyCookie:
    """A cookie under the name of earlier versions (``perf_sdk_txn``), read when the service's own is absent.

    It may be another service's, not yet upgraded, on the same host: it is read
    only if its signature is this service's (``ours``), and only then replaced.
    """

    name: str
    value: str
    ours: bool = False


@dataclass
class _Entry:
    state: str  # _STARTED or _COMPLETED
    txn: str  # 32 hex: the current transaction (started) or the one just completed


class VisitorState:
    """One visitor's journeys: which are started or completed, under which id.

    Serialised as ``name.s.<32 hex>~name.c.<32 hex>``, most recently used last,
    for a cookie or a session value alike. Anything malformed reads as a new
    visitor rather than failing the request.
    """

    __slots__ = ("changed", "entries")

    def __init__(self, entries: dict[str, _Entry] | None = None) -> None:
        self.entries: dict[str, _Entry] = entries or {}
        self.changed = False

    @classmethod
    def parse(cls, value: object, known: Mapping[str, Journey] | None = None) -> VisitorState:
        entries: dict[str, _Entry] = {}
        if isinstance(value, str) and value and len(value) <= 4096:
            for item in value.split("~"):
                parts = item.split(".")
                if len(parts) != 3:
                    return cls()
                name, state, txn = parts
                if state not in (_STARTED, _COMPLETED) or not _ID_RE.match(txn) or not _NAME_RE.match(name):
                    return cls()
                if known is None or name in known:
                    entries[name] = _Entry(state, txn)
        return cls(entries)

    def dumps(self) -> str:
        return "~".join(f"{name}.{e.state}.{e.txn}" for name, e in self.entries.items())

    def replace_stored(self) -> None:
        """Have the integration store this state even if no count changes it (a rejected cookie)."""
        self.changed = True

    def _touch(self, name: str, entry: _Entry) -> None:
        self.entries.pop(name, None)
        self.entries[name] = entry  # most recent last
        self.changed = True

    def transaction_id(self, journey: str) -> str | None:
        """The id the tracker is given for ``journey`` (started or just completed), if any."""
        entry = self.entries.get(journey)
        return f"{journey}:{entry.txn}" if entry is not None else None

    def latest(self) -> str | None:
        """The journey this visitor touched last, if any."""
        return next(reversed(self.entries), None)

    def __repr__(self) -> str:  # never show ids
        return f"VisitorState({ {n: e.state for n, e in self.entries.items()} })"


@dataclass(frozen=True)
class _Hit:
    journey: Journey
    start: bool
    complete: bool


def _new_id() -> str:
    return secrets.token_hex(16)


class JourneyEngine:
    """Every counting rule, shared by the Flask, Django and ASGI integrations.

    An integration calls :meth:`match` (cheap: a dict look-up for exact paths)
    for each response, and only when it hits, :meth:`observe` with the
    visitor's stored state; it stores what ``observe`` returns (cookie or
    session) when that is not ``None``.

    Options:

    * ``cookie_name``: ``None`` (default) names it after the tracker's service,
      ``perf_sdk_txn_<service>`` (:func:`cookie_name_for`), so two services on
      one host never share a cookie; a name of your own is used as it is (give
      each service its own). ``cookie_secure``: ``None`` (default)
      sets ``Secure`` unless the site is served over plain http on localhost or
      127.0.0.1 (so local development works); ``cookie_max_age``: ``None`` (a
      browser-session cookie: nothing outlives the visit) or seconds, for
      services with save-and-return journeys that span days.
    * ``use_session``: keep the state in the framework's session (key
      ``session_key``) instead of the SDK's own cookie.
    * ``bot_user_agents``: a regex (case-insensitive, searched) or ``None`` to
      count every user agent.
    * ``count_unstarted_completions``: count a completion for a visitor with no
      started journey (a visitor who started before the SDK was deployed, or
      whose cookie was lost). Off by default: completion rate must not exceed
      100%, and with it on anyone can add completions by loading the
      confirmation page without a cookie.
    * ``consent``: a callable given the framework's request (as ``channel`` is)
      that says whether this visitor agreed to the statistics cookie. When it
      answers False the SDK neither reads nor sets its cookie (or session
      value) and counts nothing for the request; a rating is recorded untied.
      A callable that raises counts as no consent. ``None``: no check (a
      service relying on PECR's statistics exception, or on ``use_session``).

    In cookie mode the stored value is signed with a key derived from the
    tracker's secret (see the module docstring); :meth:`load` and
    :meth:`dump` are the only places that know the cookie's format.
    """

    def __init__(
        self,
        tracker: Recorder,
        journeys: Iterable[Journey],
        *,
        cookie_name: str | None = None,
        cookie_secure: bool | None = None,
        cookie_max_age: int | None = None,
        use_session: bool = False,
        session_key: str = DEFAULT_SESSION_KEY,
        bot_user_agents: str | re.Pattern[str] | None = DEFAULT_BOT_USER_AGENTS,
        count_unstarted_completions: bool = False,
        consent: Callable[[Any], bool] | None = None,
    ) -> None:
        self.tracker = tracker
        self.journeys: tuple[Journey, ...] = tuple(journeys)
        for journey in self.journeys:
            if not isinstance(journey, Journey):
                raise ConfigurationError(f"journeys must be perf_sdk.Journey objects, not {journey!r}")
        names = [j.name for j in self.journeys]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"two journeys share a name: {sorted(n for n in names if names.count(n) > 1)}")
        if cookie_name is not None and (not isinstance(cookie_name, str) or not _COOKIE_NAME_RE.fullmatch(cookie_name)):
            raise ConfigurationError(f"cookie_name {cookie_name!r}: use letters, digits, '_' and '-' (at most 64)")
        if cookie_max_age is not None and cookie_max_age <= 0:
            raise ConfigurationError("cookie_max_age must be a positive number of seconds, or None")
        self.by_name: dict[str, Journey] = {j.name: j for j in self.journeys}
        settings = _settings_of(tracker)
        #: The service's cookie; the name of earlier versions is only read, as a fallback (see the module docstring).
        self.cookie_name = cookie_name or (cookie_name_for(settings.service) if settings else DEFAULT_COOKIE_NAME)
        self.legacy_cookie_name = (
            DEFAULT_COOKIE_NAME
            if cookie_name is None and not use_session and self.cookie_name != DEFAULT_COOKIE_NAME
            else None
        )
        self.cookie_secure = cookie_secure
        self.cookie_max_age = cookie_max_age
        self.use_session = use_session
        self.session_key = session_key
        self.count_unstarted_completions = count_unstarted_completions
        if consent is not None and not callable(consent):
            raise ConfigurationError(f"consent must be a callable(request) -> bool, not {consent!r}")
        self.consent = consent
        if isinstance(bot_user_agents, str):
            bot_user_agents = re.compile(bot_user_agents, re.IGNORECASE)
        self._bots = bot_user_agents
        self._bot_cache: dict[str, bool] = {}
        # Indexes: exact paths by dict, the rest scanned (a handful per service).
        self._exact: dict[str, list[tuple[Journey, bool]]] = {}
        self._routes: dict[str, list[tuple[Journey, bool]]] = {}
        self._scanned: list[tuple[_Pattern, Journey, bool]] = []
        for journey in self.journeys:
            for patterns, is_start in ((journey._start, True), (journey._complete, False)):
                for p in patterns:
                    if p.kind == "exact":
                        self._exact.setdefault(p.text, []).append((journey, is_start))
                    elif p.kind == "route":
                        self._routes.setdefault(p.text, []).append((journey, is_start))
                    else:
                        self._scanned.append((p, journey, is_start))
        #: True when some journey names a route: an integration must wait for routing to know.
        self.uses_routes = bool(self._routes)
        self._key = None if use_session else _cookie_key(tracker)
        self._said_bot = False

    # matching --------------------------------------------------------------------------------
    def match(self, path: str, routes: Sequence[str | None] = ()) -> tuple[_Hit, ...]:
        """Which journeys this path (or route name) starts or completes; usually none."""
        found: list[tuple[Journey, bool]] = []
        exact = self._exact.get(_normalise(path))
        if exact:
            found.extend(exact)
        for p, journey, is_start in self._scanned:
            if (p.kind == "prefix" and path.startswith(p.text)) or (
                p.regex is not None and p.regex.fullmatch(path) is not None
            ):
                found.append((journey, is_start))
        if self._routes:
            for route in routes:
                if route and route in self._routes:
                    found.extend(self._routes[route])
        if not found:
            return ()
        hits: dict[str, _Hit] = {}
        for journey, is_start in found:
            prev = hits.get(journey.name)
            hits[journey.name] = _Hit(
                journey,
                start=is_start or (prev is not None and prev.start),
                complete=(not is_start) or (prev is not None and prev.complete),
            )
        return tuple(hits.values())

    def is_bot(self, user_agent: str | None) -> bool:
        """Whether the bot rule matches; remembered per user agent (a search costs 20-40 µs, a look-up 0.1)."""
        if not user_agent or self._bots is None:
            return False
        cache = self._bot_cache
        known = cache.get(user_agent)
        if known is None:
            if len(cache) >= _BOT_CACHE_SIZE:
                cache.clear()  # crude but bounded: user agents are few, so this is rare
            known = cache[user_agent] = self._bots.search(user_agent) is not None
        return known

    def counts(self, method: str, status: int, user_agent: str | None) -> bool:
        """Whether a response of this kind can count at all (success, a person, a page view)."""
        if not 200 <= status < 400 or method.upper() in _UNCOUNTED_METHODS:
            return False
        if self.is_bot(user_agent):
            self._say_bot_once(user_agent or "")
            return False
        return True

    def _say_bot_once(self, user_agent: str) -> None:
        """The first request skipped as a bot, at INFO: a first test with curl otherwise counts zero in silence."""
        if self._said_bot:
            return
        self._said_bot = True
        logger.info(
            "perf_sdk: not counting journey pages requested by bots or command-line clients "
            "(User-Agent %r matched the bot rule); use a browser's User-Agent to test, or pass "
            "bot_user_agents=None to count every client (said once)",
            user_agent[:120],
        )

    def consented(self, request: Any) -> bool:
        """Whether the ``consent`` rule lets this request use the SDK's cookie; no rule: yes."""
        if self.consent is None:
            return True
        try:
            return bool(self.consent(request))
        except Exception:
            logger.exception("perf_sdk: the consent callable failed; this request is not counted")
            return False

    # state -----------------------------------------------------------------------------------
    def load(self, stored: object) -> VisitorState:
        """The visitor's state from their cookie (its signature checked) or session value.

        A cookie whose signature fails reads as a new visitor whose state must
        be stored again (``changed``), so the response replaces the bad cookie.
        A cookie under the old name (:meth:`read_cookie`) is read only if its
        signature is this service's, and then moves to the service's cookie;
        otherwise it is left alone, as another service's may be.
        """
        if self._key is None:
            return VisitorState.parse(stored, self.by_name)
        if isinstance(stored, _LegacyCookie):
            payload = _verified(self._key, stored.value)
            if payload is None:
                return VisitorState()  # not ours to read, nor to replace
            stored.ours = True
            state = VisitorState.parse(payload, self.by_name)
            state.replace_stored()  # store it under the service's own name
            return state
        payload = _verified(self._key, stored)
        state = VisitorState.parse(payload, self.by_name)
        if payload is None and stored:
            state.replace_stored()
        return state

    def dump(self, state: VisitorState) -> str:
        """The value to store: signed for a cookie; ``""`` when nothing is left (remove it)."""
        payload = state.dumps()
        if self._key is None or not payload:
            return payload
        return f"{payload}.{_mac(self._key, payload)}"

    def observe(
        self,
        hits: Sequence[_Hit],
        *,
        method: str,
        status: int,
        user_agent: str | None,
        stored: object,
        request: Any = None,
    ) -> str | None:
        """Count what this response means; the new stored value when it changed, else ``None``.

        Never raises: a failure (a channel callable that raises) is logged and
        that count skipped, rather than guessed or allowed to fail the page.
        """
        if not hits or not self.counts(method, status, user_agent):
            return None
        completes = self.completes(method, status)
        if not completes and not any(hit.start for hit in hits):
            return None  # a complete page redirecting a GET (a guard): nothing can count
        if not self.consented(request):
            return None
        state = self.load(stored)
        for hit in hits:
            try:
                self._step(hit, state, request, completes=completes)
            except Exception:
                logger.exception("perf_sdk: journey %r not counted for this request", hit.journey.name)
        return self.dump(state) if state.changed else None

    @staticmethod
    def completes(method: str, status: int) -> bool:
        """Whether a successful response of a complete page completes: not a redirect answering a ``GET``.

        Post-redirect-get (a ``POST`` answered with a 3xx) is a submission that
        went through; a ``GET`` answered with a redirect is the page sending the
        visitor elsewhere (a confirmation page's guard: nothing submitted yet).
        A 304 is the page itself, from the browser's cache.
        """
        return not (300 <= status < 400 and status != 304 and method.upper() in _READ_METHODS)

    def _step(self, hit: _Hit, state: VisitorState, request: Any, *, completes: bool = True) -> None:
        journey = hit.journey
        name = journey.name
        entry = state.entries.get(name)
        if hit.start and hit.complete and entry is not None and entry.state == _COMPLETED:
            return  # the confirmation page also matches the start pattern: a refresh of it is not a new start
        if hit.start and (entry is None or entry.state == _COMPLETED):
            channel = journey.channel_for(request)
            txn = _new_id()  # a new transaction: after a completion, the id rotates here
            self.tracker.start(f"{name}:{txn}", channel=channel)
            state._touch(name, _Entry(_STARTED, txn))
            return
        if not hit.complete or not completes:
            return
        if entry is not None and entry.state == _STARTED:
            channel = journey.channel_for(request)
            self.tracker.complete(f"{name}:{entry.txn}", channel=channel)
            state._touch(name, _Entry(_COMPLETED, entry.txn))
        elif entry is None and self.count_unstarted_completions:
            channel = journey.channel_for(request)
            txn = _new_id()
            self.tracker.complete(f"{name}:{txn}", channel=channel)
            state._touch(name, _Entry(_COMPLETED, txn))
        # a completed journey's complete page again (refresh, back, double submit): nothing

    def record_satisfaction(
        self,
        rating: int,
        stored: object,
        *,
        channel: str | None = None,
        journey: str | None = None,
        request: Any = None,
    ) -> None:
        """A rating from the visitor's feedback form, tied to their transaction when there is one.

        Tied to ``journey``'s transaction, else to the journey they touched
        last (typically the one just completed); one answer per transaction,
        the latest standing. With no journey it is recorded untied.
        """
        state = self.load(stored if self.consented(request) else None)
        name = journey if journey is not None else state.latest()
        txn = state.transaction_id(name) if name is not None else None
        if channel is None:
            j = self.by_name.get(name) if name is not None else None
            channel = "digital"
            if j is not None:
                try:
                    channel = j.channel_for(request)
                except Exception:
                    logger.exception("perf_sdk: channel of journey %r failed; rating recorded as digital", name)
        self.tracker.satisfaction(rating, channel=channel, transaction_id=txn)

    # cookies ---------------------------------------------------------------------------------
    def read_cookie(self, get: Callable[[str], str | None]) -> object:
        """The stored value for :meth:`observe`, given the request's cookie by name (``request.cookies.get``).

        The service's own cookie; when it is absent, a cookie under the name of
        earlier versions (``perf_sdk_txn``), so journeys in flight across an
        upgrade still complete. :meth:`load` reads that one only if it is ours.
        """
        value = get(self.cookie_name)
        if value or self.legacy_cookie_name is None:
            return value
        legacy = get(self.legacy_cookie_name)
        return _LegacyCookie(self.legacy_cookie_name, legacy) if legacy else value

    def cookies(self, value: str, stored: object, *, host: str | None, scheme: str = "http") -> list[CookieSpec]:
        """The cookies to set for the value :meth:`observe` returned: the service's, and the old one's removal.

        The old-named cookie is expired only when it was this service's (its
        state now lives in the service's cookie); another service's is never touched.
        """
        mine = self.cookie(value, host=host, scheme=scheme)
        if isinstance(stored, _LegacyCookie) and stored.ours:
            return [mine, replace(mine, name=stored.name, value="", max_age=0)]
        return [mine]

    def cookie(self, value: str, *, host: str | None, scheme: str = "http") -> CookieSpec:
        """The visitor's cookie carrying ``value``, with flags for this site; ``""`` expires it."""
        secure = self.cookie_secure
        if secure is None:
            secure = scheme == "https" or not _is_loopback_host(host)
        max_age = self.cookie_max_age if value else 0
        return CookieSpec(self.cookie_name, value, secure=secure, max_age=max_age)


def _mac(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode("ascii"), hashlib.sha256).hexdigest()[:_MAC_HEX]


def _verified(key: bytes, stored: object) -> str | None:
    """The payload of a cookie value whose MAC is right, else ``None``; compared in constant time."""
    if not isinstance(stored, str) or len(stored) > 4096 or not stored.isascii():
        return None
    payload, dot, mac = stored.rpartition(".")
    if not dot or len(mac) != _MAC_HEX or not payload:
        return None
    return payload if hmac.compare_digest(mac, _mac(key, payload)) else None


def _settings_of(tracker: object) -> Settings | None:
    """The tracker's settings: a Tracker's own, or those of the Tracker an AsyncTracker wraps."""
    for candidate in (tracker, getattr(tracker, "tracker", None)):
        settings = getattr(candidate, "settings", None)
        if isinstance(settings, Settings):
            return settings
    return None


#: The key of switched-off trackers with no secret: random, this process only (nothing is sent anyway).
_PROCESS_KEY: Final = secrets.token_bytes(32)


def _cookie_key(tracker: object) -> bytes:
    """The key that signs the journey cookie: derived from the service's secret and name.

    Derived (never the secret itself) so a cookie's MAC can never be mistaken
    for a hashed transaction id, and keyed with the service name so a cookie
    from another service that shares the secret is still refused. Without a
    secret there is nothing safe to derive from: a tracker that sends records
    is refused here, at set-up; a switched-off one gets a per-process random key.
    """
    settings = _settings_of(tracker)
    secret = settings.secret.get_secret_value() if settings is not None and settings.secret is not None else ""
    if secret:
        assert settings is not None
        return hmac.new(secret.encode(), _COOKIE_KEY_LABEL + b"\0" + settings.service.encode(), hashlib.sha256).digest()
    if settings is not None and not settings.enabled:
        logger.info(
            "perf_sdk: no secret and perf_sdk is off, so journey cookies are signed with a random key of this "
            "process only; set PERF_SDK_SECRET before switching it on"
        )
        return _PROCESS_KEY
    raise ConfigurationError(
        "journey cookies are signed with a key derived from the service's secret, so that a made-up cookie "
        "cannot count a completion, and this tracker has none: pass secret=... or set PERF_SDK_SECRET "
        "(the same value in every worker), or pass use_session=True to keep the journey in the framework's session"
    )


def _is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host in _LOOPBACK_HOSTS or host.endswith(".localhost")


def cookie_from_header(header: str | None, name: str) -> str | None:
    """One cookie's value from a ``Cookie`` header, without a full parse (the ASGI hot path)."""
    if not header or name not in header:
        return None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip('"')
    return None
