"""Settings: explicit arguments first, ``PERF_SDK_*`` environment variables second.

Everything the SDK reads from its environment is read here, once, into one
validated :class:`Settings`; no other module touches ``os.environ``. A bad value
fails at construction with a :class:`~perf_sdk.ConfigurationError` that says what
to set and where, because a misconfigured tracker discovered at 3 a.m. is worse
than one that refuses to start.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from perf_sdk._errors import ConfigurationError
from perf_sdk._protocol import DATA_TYPES, SLUG_RE

__all__ = ["ReadSettings", "Settings", "default_spool_dir", "env_value", "is_loopback_url", "resolve_spool_dir"]

#: argument name -> environment variable.
ENV: Final = {
    "service": "PERF_SDK_SERVICE",
    "endpoint": "PERF_SDK_ENDPOINT",
    "read_endpoint": "PERF_SDK_READ_ENDPOINT",
    "token": "PERF_SDK_TOKEN",
    "secret": "PERF_SDK_SECRET",
    "spool_dir": "PERF_SDK_SPOOL_DIR",
    "strict": "PERF_SDK_STRICT",
    "debug": "PERF_SDK_DEBUG",
    "allow_insecure_http": "PERF_SDK_ALLOW_INSECURE_HTTP",
    "ca_bundle": "PERF_SDK_CA_BUNDLE",
    "enabled": "PERF_SDK_ENABLED",
}
#: Variables of single commands, not tracker settings (read through :func:`env_value`).
COMMAND_ENV: Final = {
    "definition": "PERF_SDK_DEFINITION",
    "webhook_url": "PERF_SDK_WEBHOOK_URL",
    "webhook_token": "PERF_SDK_WEBHOOK_TOKEN",
    "platform_db": "PERF_SDK_PLATFORM_DB",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def default_spool_dir(service: str) -> Path:
    """Where a tracker keeps its outbox when no ``spool_dir`` is given.

    A per-user state directory (``$XDG_STATE_HOME`` or ``~/.local/state``), one
    folder per service, so two services on one host never adopt each other's
    records.
    """
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "perf-sdk" / service


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseModel):
    """One tracker's validated configuration. Secrets are :class:`SecretStr`, so
    they never show in a repr, a log line or an exception."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    service: str
    #: False when the SDK is switched off (``enabled=False`` / ``PERF_SDK_ENABLED=0``) or,
    #: when the caller allows it, has nowhere to send; ``disabled_reason`` says which.
    enabled: bool = True
    disabled_reason: str | None = None
    endpoint: str | None = None
    read_endpoint: str | None = None
    token: SecretStr | None = None
    tokens: dict[str, SecretStr] = Field(default_factory=dict)
    secret: SecretStr | None = None
    spool_dir: Path
    strict: bool = False
    debug: bool = False
    allow_insecure_http: bool = False
    ca_bundle: Path | None = None
    timeout: float = Field(10.0, gt=0)
    #: Most records the uploader puts in one request, and most bytes (as sent, before gzip).
    batch_size: int = Field(5000, ge=1, le=100_000)
    batch_bytes: int = Field(2_000_000, ge=1_000)
    #: Requests bigger than this (bytes) are gzip-compressed.
    gzip_threshold: int = Field(32_768, ge=0)
    #: How often the background writer commits accepted records to disk (seconds).
    #: The window a hard kill can lose is this plus one commit.
    commit_interval: float = Field(0.05, gt=0, le=1.0)
    #: Records waiting in memory for the writer; past it, recording calls wait
    #: up to ``max_block`` seconds for room, then refuse (logged, counted, on_error).
    max_queue: int = Field(50_000, ge=100)
    max_block: float = Field(1.0, ge=0)
    #: Spool size cap in bytes of record JSON; past it, new records are refused.
    max_spool_bytes: int = Field(1 << 30, ge=1 << 16)
    #: Retry back-off: first delay, ceiling (seconds). Retries never stop while
    #: records are on disk; only close() ends them.
    retry_initial: float = Field(0.5, gt=0)
    retry_max: float = Field(60.0, gt=0)
    #: How long a data set stays paused after a 401/403/404 before one probe.
    pause_seconds: float = Field(300.0, gt=0)
    #: Keep 1 in N transactions (by hashed transaction id, so a start and its completion
    #: are kept or left out together) and multiply the kept records' ``count`` by N,
    #: so KPIs stay right. 1.0 keeps everything; allowed values are 1/N (0.5, 0.1, 0.01 ...).
    sample_rate: float = Field(1.0, gt=0, le=1)
    #: How long interpreter exit may spend delivering what is left (the rest stays on disk).
    exit_timeout: float = Field(2.0, ge=0)

    @field_validator("service")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG_RE.match(value):
            raise ValueError("must be a lower-case slug of letters, digits and hyphens, e.g. 'apply-for-a-licence'")
        return value

    @field_validator("endpoint", "read_endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_url(value)

    @field_validator("sample_rate")
    @classmethod
    def _one_in_n(cls, value: float) -> float:
        n = round(1 / value)
        if abs(n * value - 1) > 1e-9:
            raise ValueError("must be 1/N for a whole N (1, 0.5, 0.25, 0.1, 0.01 ...), so counts scale exactly")
        return value

    @property
    def sample_every(self) -> int:
        return round(1 / self.sample_rate)

    @field_validator("tokens")
    @classmethod
    def _token_types(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        unknown = sorted(set(value) - set(DATA_TYPES))
        if unknown:
            raise ValueError(f"keys must be data types {DATA_TYPES}, not {unknown}")
        return {key: _clean_token(token) for key, token in value.items()}

    @field_validator("token")
    @classmethod
    def _token_text(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else _clean_token(value)

    def token_for(self, data_type: str) -> str | None:
        token = self.tokens.get(data_type) or self.token
        return token.get_secret_value() if token is not None else None

    @classmethod
    def resolve(
        cls,
        *,
        need_endpoint: bool = True,
        need_secret: bool = False,
        allow_disabled: bool = False,
        environ: Mapping[str, str] | None = None,
        **given: Any,
    ) -> Settings:
        """Build settings from keyword arguments, falling back to ``PERF_SDK_*``.

        ``need_secret``: refuse settings without a secret (a caller that will hash
        transaction ids at once, such as a backfill with a ``transaction_id`` column).
        Otherwise the secret is optional, and ``settings.secret`` is None without one;
        when given it must still be at least 16 characters.

        ``allow_disabled``: instead of raising, return settings with ``enabled=False``
        and a ``disabled_reason`` when the SDK is switched off (``enabled=False`` or
        ``PERF_SDK_ENABLED=0``) or, with ``need_endpoint``, no endpoint is configured,
        so a service's local run and its tests need no configuration (like Sentry
        without a DSN). A bad value is still an error: a typo is not a way to switch off.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        for name, var in ENV.items():
            if name not in values and env.get(var) not in (None, ""):
                values[name] = env[var]
        for name in ("strict", "debug", "allow_insecure_http", "enabled"):
            if isinstance(values.get(name), str):
                values[name] = _parse_bool(ENV[name], values[name])
        if "tokens" not in values:
            per_type = {
                t: env[f"PERF_SDK_TOKEN_{t.upper()}"] for t in DATA_TYPES if env.get(f"PERF_SDK_TOKEN_{t.upper()}")
            }
            if per_type:
                values["tokens"] = per_type
        reason = _disabled_reason(values, need_endpoint=need_endpoint, enabled_given=given.get("enabled") is not None)
        if reason is not None and not allow_disabled and values.get("enabled") is False and need_endpoint:
            raise ConfigurationError(
                f"{reason}, but this needs perf_sdk on: unset PERF_SDK_ENABLED or pass enabled=True"
            )
        disabled = reason is not None and allow_disabled
        if disabled:
            values["enabled"] = False
            values["disabled_reason"] = reason
            # Nothing will be sent, so nothing else is required: a placeholder service keeps
            # strict validation and the record builder working in a run with no configuration.
            values.setdefault("service", _UNCONFIGURED_SERVICE)
        if "service" not in values:
            raise ConfigurationError("no service: pass service='your-service-slug' or set PERF_SDK_SERVICE")
        if "spool_dir" not in values and isinstance(values["service"], str):
            values["spool_dir"] = default_spool_dir(values["service"])
        try:
            settings = cls(**values)
        except pydantic.ValidationError as exc:
            raise _configuration_error(exc) from None
        settings._check(need_endpoint=need_endpoint and not disabled, need_secret=need_secret)
        return settings

    def _check(self, *, need_endpoint: bool, need_secret: bool) -> None:
        if need_secret and (self.secret is None or not self.secret.get_secret_value()):
            why = "no secret: transaction ids are sent only as HMAC-SHA256 hashes keyed with the service's secret; "
            raise ConfigurationError(
                why + "pass secret=... or set PERF_SDK_SECRET (keep it in your secret store)",
                cli_message=why + "give --secret or set PERF_SDK_SECRET (keep it in your secret store)",
            )
        if self.secret is not None and len(self.secret.get_secret_value()) < 16:
            raise ConfigurationError("secret is too short: use at least 16 characters (32 random bytes is best)")
        if self.secret is not None and not self.secret.get_secret_value().strip():
            # 40 spaces (a template's blank filled with spaces) was a key anyone could guess.
            raise ConfigurationError(
                "secret is blank (white space only): use 32 random bytes, "
                "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if need_endpoint:
            if self.endpoint is None:
                raise ConfigurationError(
                    "no endpoint: pass endpoint='https://...' (the platform's write API) or set PERF_SDK_ENDPOINT; "
                    "for a local platform run `perf-sdk serve`",
                    cli_message="no endpoint: give --endpoint https://... (the platform's write API) or set "
                    "PERF_SDK_ENDPOINT; for a local platform run `perf-sdk serve`",
                )
            if not any(self.token_for(t) for t in DATA_TYPES):
                raise ConfigurationError(
                    "no token: pass token=... (or tokens={...}) or set PERF_SDK_TOKEN",
                    cli_message="no token: give --token or set PERF_SDK_TOKEN",
                )
        for url in (self.endpoint, self.read_endpoint):
            if not self.enabled and url == self.endpoint:
                continue  # switched off: nothing is sent to the write endpoint
            _refuse_plain_http(url, allow=self.allow_insecure_http)
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ConfigurationError(f"ca_bundle {self.ca_bundle} is not a file (PERF_SDK_CA_BUNDLE)")

    def __repr_args__(self) -> Any:
        # SecretStr already masks; drop the noise of defaults for readable logs.
        for key, value in super().__repr_args__():
            if key in {"service", "enabled", "endpoint", "read_endpoint", "spool_dir", "strict", "token", "secret"}:
                yield key, value


class ReadSettings(BaseModel):
    """Where to read a service's published data sets (``kpis``, ``publish``), validated.

    The same rules as the write side's :class:`Settings`: the URL must be
    ``http(s)://`` with a host, and plain ``http://`` to a host other than this
    one is refused unless ``allow_insecure_http``, so a bearer token never crosses
    the network in clear. The read base URL is, in order: ``read_endpoint``,
    ``PERF_SDK_READ_ENDPOINT``, ``endpoint``, ``PERF_SDK_ENDPOINT`` (backdrop
    deploys reads apart from writes; a single-URL platform serves both).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str | None = None
    read_endpoint: str | None = None
    token: SecretStr | None = None
    allow_insecure_http: bool = False

    @field_validator("service")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        return None if value is None else Settings._slug(value)

    @field_validator("read_endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_url(value)

    @field_validator("token")
    @classmethod
    def _token_text(cls, value: SecretStr | None) -> SecretStr | None:
        # As the write side's: a secret file's newline stripped, and nothing a header cannot carry (left in,
        # httpx's error quoted the whole header, token and all, into check's findings and the webhook).
        return None if value is None else _clean_token(value)

    @property
    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token is not None else None

    @classmethod
    def resolve(
        cls,
        *,
        service: str | None = None,
        endpoint: str | None = None,
        read_endpoint: str | None = None,
        token: str | None = None,
        allow_insecure_http: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ReadSettings:
        """Explicit arguments first, then ``PERF_SDK_*``; a bad value is a ConfigurationError naming it."""
        env = os.environ if environ is None else environ
        # Which argument the URL came from, so an error names the one the caller gave.
        origin, url = next(
            ((name, value) for name, value in _read_url_candidates(read_endpoint, endpoint, env) if value),
            ("read_endpoint", None),
        )
        insecure: bool | str | None = allow_insecure_http
        if insecure is None:
            insecure = env.get(ENV["allow_insecure_http"]) or False
        if isinstance(insecure, str):
            insecure = _parse_bool(ENV["allow_insecure_http"], insecure)
        try:
            settings = cls(
                service=service or env.get(ENV["service"]) or None,
                read_endpoint=url,
                token=SecretStr(raw_token) if (raw_token := token or env.get(ENV["token"])) else None,
                allow_insecure_http=insecure,
            )
        except pydantic.ValidationError as exc:
            raise _configuration_error(exc, rename={"read_endpoint": origin}) from None
        _refuse_plain_http(settings.read_endpoint, allow=settings.allow_insecure_http)
        return settings


def _read_url_candidates(
    read_endpoint: str | None, endpoint: str | None, env: Mapping[str, str]
) -> tuple[tuple[str, str | None], ...]:
    return (
        ("read_endpoint", read_endpoint),
        ("read_endpoint", env.get(ENV["read_endpoint"])),
        ("endpoint", endpoint),
        ("endpoint", env.get(ENV["endpoint"])),
    )


def env_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The ``PERF_SDK_*`` variable for argument ``name`` (``token``, ``service`` ...), None when unset or empty.

    For the few callers that need one raw value (``perf-sdk serve``'s token),
    so that this module stays the only one reading the environment.
    """
    env = os.environ if environ is None else environ
    return env.get(ENV.get(name) or COMMAND_ENV[name]) or None


def resolve_spool_dir(
    spool_dir: str | Path | None = None, service: str | None = None, *, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The spool directory: ``spool_dir``, ``PERF_SDK_SPOOL_DIR``, or the service's default; None if none is known."""
    env = os.environ if environ is None else environ
    given = spool_dir or env.get(ENV["spool_dir"])
    if given:
        return Path(given)
    service = service or env.get(ENV["service"])
    return default_spool_dir(service) if service else None


def _clean_token(token: SecretStr) -> SecretStr:
    """A token read from a secrets file ends with a newline: strip it; white space inside is a mistake.

    (An HTTP header cannot carry a newline: left in, every upload would fail as
    "cannot connect", for ever.)
    """
    text = token.get_secret_value().strip()
    if not text or any(ch.isspace() or not ch.isprintable() or not ch.isascii() for ch in text):
        # (Non-ASCII cannot be sent in a header either: every request would fail with an encoding error.)
        raise ValueError(
            "must be the token's text alone: printable ASCII, with no white space or control characters in it"
        )
    return SecretStr(text)


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None or ("://" not in value and "@" in value):
        # Credentials in a URL end up in every repr, log line and error that names the endpoint.
        raise ValueError(
            "must not carry a user name or password (https://user:password@...): give the platform's "
            "token with token= / PERF_SDK_TOKEN"
        )
    if "://" not in value:
        raise ValueError(f"{value!r} has no scheme: write it as http://{value} or https://{value}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL, e.g. https://perf.example.gov.uk")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("must not hold white space or control characters (a stray space or newline?)")
    try:
        parts.port  # noqa: B018 - a port that is not a number from 0 to 65535 raises here, not at the first upload
    except ValueError:
        raise ValueError(f"has a port that is not a number from 1 to 65535: {parts.netloc!r}") from None
    if parts.query or parts.fragment:
        raise ValueError(
            "must be the platform's base URL, without a query string or fragment, e.g. https://perf.example.gov.uk"
        )
    return value.rstrip("/")


def _refuse_plain_http(url: str | None, *, allow: bool) -> None:
    if url and url.startswith("http://") and not allow and not is_loopback_url(url):
        why = (
            f"refusing plain http:// to a non-loopback host ({urlsplit(url).hostname}): tokens and records "
            "would cross the network unencrypted; use https://, or "
        )
        raise ConfigurationError(
            why + "pass allow_insecure_http=True (PERF_SDK_ALLOW_INSECURE_HTTP=1) if a TLS-terminating proxy "
            "sits on this host's network",
            cli_message=why + "set PERF_SDK_ALLOW_INSECURE_HTTP=1 if a TLS-terminating proxy sits on this "
            "host's network",
        )


def _configuration_error(exc: pydantic.ValidationError, rename: Mapping[str, str] | None = None) -> ConfigurationError:
    """A pydantic error as a ConfigurationError naming the argument, the variable and (for the CLI) the flag."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "settings"
    field = (rename or {}).get(field, field)
    var = ENV.get(field.split(".")[0], "")
    msg = str(err["msg"]).removeprefix("Value error, ")
    also = f" or {var}" if var else ""
    flag = "--" + field.split(".")[0].replace("_", "-")
    return ConfigurationError(
        f"invalid {field} (argument {field}={also}): {msg}",
        cli_message=f"invalid {flag} ({flag}{also}): {msg}",
    )


#: The service name of a switched-off tracker given none (a slug, so validation still holds).
_UNCONFIGURED_SERVICE: Final = "unconfigured"


def _disabled_reason(values: Mapping[str, Any], *, need_endpoint: bool, enabled_given: bool) -> str | None:
    """Why the SDK is off, or None when it is on."""
    if values.get("enabled") is False:
        return "switched off by " + ("enabled=False" if enabled_given else "PERF_SDK_ENABLED")
    if need_endpoint and values.get("endpoint") is None:
        return "no endpoint configured (pass endpoint=... or set PERF_SDK_ENDPOINT to send records)"
    return None


def _parse_bool(var: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"{var}={text!r}: use 1/0, true/false, yes/no or on/off")
