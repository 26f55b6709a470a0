"""Journey cookies a service did not issue, for the Flask, Django and ASGI integration tests.

Each framework test gets a valid cookie from its own app, one from the same app
built for another service (same secret) and one from the same service with
another secret; :func:`bad_cookies` turns them into every way a visitor could
hand back a cookie that must count nothing: made up, edited, replayed from
another service, truncated.

Each service has its own cookie, ``perf_sdk_txn_<service>``; :data:`COOKIE` is
the test service's, :data:`LEGACY_COOKIE` the one name every service shared before.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from perf_sdk._journey import DEFAULT_COOKIE_NAME, cookie_name_for
from tests.conftest import SERVICE

COOKIE = cookie_name_for(SERVICE)
LEGACY_COOKIE = DEFAULT_COOKIE_NAME


def cookie_value(set_cookie: str | None, name: str = COOKIE) -> str:
    """Cookie ``name``'s value from a ``Set-Cookie`` header (one cookie per header)."""
    assert set_cookie is not None, "no Set-Cookie header"
    for header in set_cookie.split(", "):  # joined headers, when a client folds them
        key, _, rest = header.partition("=")
        if key.strip() == name:
            return rest.split(";", 1)[0].strip('"')
    raise AssertionError(f"no {name} in {set_cookie!r}")


def expires_the_cookie(set_cookie: str | Sequence[str] | None, name: str = COOKIE) -> bool:
    """Whether the response's ``Set-Cookie`` header (or list of them) tells the browser to drop cookie ``name``."""
    headers = [set_cookie] if isinstance(set_cookie, str) else list(set_cookie or ())
    for header in headers:
        if header.startswith(f"{name}="):
            text = header.lower()
            return "max-age=0" in text or "expires=thu, 01 jan 1970" in text
    return False


def bad_cookies(valid: str, from_other_service: str, from_other_secret: str) -> dict[str, str]:
    """Cookies that must count nothing, by kind; ``valid`` is a started journey's cookie of the app under test."""
    payload, _, mac = valid.rpartition(".")
    name, state, txn = payload.split(".")

    def flip(text: str) -> str:
        return text[:-1] + ("1" if text[-1] == "0" else "0")

    return {
        "forged, unsigned": f"{name}.s.{secrets.token_hex(16)}",
        "forged, made-up mac": f"{name}.s.{secrets.token_hex(16)}.{secrets.token_hex(16)}",
        "tampered id": f"{name}.{state}.{flip(txn)}.{mac}",
        "tampered mac": f"{payload}.{flip(mac)}",
        "replayed from another service": from_other_service,
        "replayed from another secret": from_other_secret,
        "truncated by one": valid[:-1],
        "truncated to half": valid[: len(valid) // 2],
        "signature cut off": payload,
    }
