"""Journey cookies a service did not issue, for the Flask, Django and ASGI integration tests.

Each framework test gets a valid cookie from its own app, one from the same app
built for another service (same secret) and one from the same service with
another secret; :func:`bad_cookies` turns them into every way a visitor could
hand back a cookie that must count nothing: made up, edited, replayed from
another service, truncated.
"""

from __future__ import annotations

import secrets

COOKIE = "perf_sdk_txn"


def cookie_value(set_cookie: str | None) -> str:
    """The journey cookie's value from a ``Set-Cookie`` header (one cookie per header)."""
    assert set_cookie is not None, "no Set-Cookie header"
    for header in set_cookie.split(", "):  # joined headers, when a client folds them
        name, _, rest = header.partition("=")
        if name.strip() == COOKIE:
            return rest.split(";", 1)[0].strip('"')
    raise AssertionError(f"no {COOKIE} in {set_cookie!r}")


def expires_the_cookie(set_cookie: str | None) -> bool:
    """Whether the response tells the browser to drop the journey cookie."""
    if not set_cookie or f"{COOKIE}=" not in set_cookie:
        return False
    text = set_cookie.lower()
    return "max-age=0" in text or "expires=thu, 01 jan 1970" in text


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
