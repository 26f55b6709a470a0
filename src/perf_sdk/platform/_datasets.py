"""The platform's data-set configuration: who may write where, and how each data set answers.

Backdrop kept this in stagecraft, its admin application; here it is one JSON
file (``perf-sdk serve --tokens-file``) or a mapping given to
:func:`~perf_sdk.platform.create_app`. Two shapes are read:

* the original one, ``{"<group>/<type>": "<token>", ...}``: only those data
  sets exist, each with its token and the default settings;
* the full one::

    {
      "token": "...",               # optional: one token for every data set
      "admin_token": "...",         # optional: DELETE /data-sets/<name>
      "services": {"<group>": {"title": "...", "organisation": "...",
                               "description": "...", "start_date": "2024-04-01"}},
      "data_sets": {"<group>/<type>": {"token": "...", "name": "...",
                                       "raw_queries_allowed": true, "published": true,
                                       "realtime": false, "max_age_expected": 86400}}
    }

  With ``token`` any ``<group>/<type>`` of slugs (at most 64 characters
  each) is created on its first write and ``data_sets`` only adjusts settings; without it only the listed
  data sets exist and each needs its own ``token``.

Settings, as backdrop's data-set configuration means them:

``raw_queries_allowed`` (default **true** here, false on backdrop)
    whether a read may list records (no ``group_by`` nor ``period``); when
    false, backdrop's checks on bounds apply too: at least 7 days, midnight,
    a Monday for weeks, the first of the month for months.
``published`` (default true)
    an unpublished data set answers with backdrop's warning and ``no-cache``.
``realtime`` (default false)
    ``Cache-Control: max-age=120`` instead of ``1800``.
``max_age_expected`` (seconds, default 31 days, ``null`` for never)
    ``GET /_status/data-sets`` lists a data set not written for longer.

The services' metadata (title, organisation, description, start date) is
for the pages that publish the figures: :meth:`PlatformConfig.service` and
:meth:`PlatformConfig.services` are the accessors.

Tokens are kept out of every ``repr``.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Final

from perf_sdk._errors import ConfigurationError
from perf_sdk._protocol import has_lone_surrogate, platform_name_problem

__all__ = [
    "DEFAULT_MAX_AGE_EXPECTED",
    "DataSetConfig",
    "PlatformConfig",
    "ServiceConfig",
    "load_config",
    "name_problems",
]

_log = logging.getLogger("perf_sdk.platform")

#: Backdrop's default: a data set not written for 31 days is out of date.
DEFAULT_MAX_AGE_EXPECTED: Final = 2_678_400
_DATA_SET_KEYS: Final = frozenset({"token", "name", "raw_queries_allowed", "published", "realtime", "max_age_expected"})
_SERVICE_KEYS: Final = frozenset({"title", "organisation", "description", "start_date"})
_TOP_KEYS: Final = frozenset({"token", "admin_token", "services", "data_sets"})


@dataclass(frozen=True)
class DataSetConfig:
    """One data set's settings (see the module docstring)."""

    group: str
    type: str
    token: str | None = field(default=None, repr=False)
    name: str = ""
    raw_queries_allowed: bool = True
    published: bool = True
    realtime: bool = False
    max_age_expected: int | None = DEFAULT_MAX_AGE_EXPECTED

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", f"{self.group}-{self.type}")

    @property
    def path(self) -> str:
        """``<group>/<type>``."""
        return f"{self.group}/{self.type}"


@dataclass(frozen=True)
class ServiceConfig:
    """A service's metadata, for the pages that publish its figures."""

    slug: str
    title: str | None = None
    organisation: str | None = None
    description: str | None = None
    start_date: date | None = None


@dataclass(frozen=True)
class PlatformConfig:
    """Every data set the platform knows, the tokens, and the services' metadata."""

    token: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    data_sets: Mapping[tuple[str, str], DataSetConfig] = field(default_factory=dict)
    service_info: Mapping[str, ServiceConfig] = field(default_factory=dict)

    def data_set(self, group: str, type_: str) -> DataSetConfig | None:
        """The data set's settings; ``None`` when it cannot exist (not declared, no shared token)."""
        found = self.data_sets.get((group, type_))
        if found is not None:
            return found
        if self.token is not None and name_problems(group, type_) == []:
            return DataSetConfig(group, type_)
        return None

    def by_name(self, name: str) -> DataSetConfig | None:
        """The declared data set called ``name`` (backdrop's name, used by ``DELETE /data-sets/<name>``)."""
        return next((d for d in self.data_sets.values() if d.name == name), None)

    def name_of(self, group: str, type_: str) -> str:
        """The name of data set ``<group>/<type>``: its configured ``name``, else ``<group>-<type>``."""
        found = self.data_sets.get((group, type_))
        return found.name if found is not None else f"{group}-{type_}"

    def write_token(self, data_set: DataSetConfig) -> str | None:
        """The token that writes ``data_set``: its own, else the shared one."""
        return data_set.token if data_set.token is not None else self.token

    def service(self, slug: str) -> ServiceConfig | None:
        """The metadata of the service whose data group is ``slug``, if configured."""
        return self.service_info.get(slug)

    def services(self) -> list[ServiceConfig]:
        """Every configured service, by slug."""
        return [self.service_info[k] for k in sorted(self.service_info)]

    @classmethod
    def single_token(cls, token: str) -> PlatformConfig:
        """One token for every data set, all settings at their defaults."""
        return cls(token=_token(token, "token", "the configuration"))

    @classmethod
    def from_tokens(cls, tokens: Mapping[str, Any], source: str = "tokens") -> PlatformConfig:
        """The original shape: ``{"<group>/<type>": "<token>"}``."""
        data_sets = {}
        for name, token in tokens.items():
            group, type_ = _data_set_name(name, source)
            data_sets[(group, type_)] = DataSetConfig(
                group, type_, token=_token(token, f"the token for {name!r}", source)
            )
        return cls(data_sets=data_sets)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "the data-set configuration") -> PlatformConfig:
        """Either shape (see the module docstring); :class:`ConfigurationError` naming the field otherwise."""
        if not isinstance(data, Mapping) or not data:
            raise ConfigurationError(f"{source} must be a non-empty JSON object")
        if not (set(data) & {"data_sets", "services", "token", "admin_token"}):
            return cls.from_tokens(data, source)
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise ConfigurationError(
                f"{source}: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(_TOP_KEYS))}"
            )
        token = _token(data["token"], "token", source) if data.get("token") is not None else None
        admin = _token(data["admin_token"], "admin_token", source) if data.get("admin_token") is not None else None
        data_sets: dict[tuple[str, str], DataSetConfig] = {}
        for name, settings in _mapping(data.get("data_sets", {}), "data_sets", source).items():
            item = _data_set(name, _mapping(settings, f"data_sets[{name!r}]", source), source)
            if item.token is None and token is None:
                raise ConfigurationError(f"{source}: data_sets[{name!r}] needs a 'token' (or give a top-level 'token')")
            data_sets[(item.group, item.type)] = item
        names = [d.name for d in data_sets.values()]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ConfigurationError(f"{source}: two data sets are named {dup!r}; give each a different 'name'")
        if not data_sets and token is None:
            raise ConfigurationError(f"{source}: give 'data_sets' with their tokens, or one 'token' for every data set")
        if admin is not None and (admin == token or any(d.token == admin for d in data_sets.values())):
            raise ConfigurationError(
                f"{source}: admin_token is also a data set's write token, so that writer could delete every data "
                "set: give admin_token a value of its own"
            )
        services = {
            slug: _service(slug, _mapping(info, f"services[{slug!r}]", source), source)
            for slug, info in _mapping(data.get("services", {}), "services", source).items()
        }
        return cls(token=token, admin_token=admin, data_sets=data_sets, service_info=services)

    def with_defaults(self, **settings: Any) -> PlatformConfig:
        """A copy where every declared data set takes ``settings`` (for tests)."""
        return replace(self, data_sets={k: replace(v, **settings) for k, v in self.data_sets.items()})


def load_config(path: str | Path) -> PlatformConfig:
    """Read a data-set configuration file (either shape); :class:`ConfigurationError` if it cannot be used.

    The file holds every write token and the admin token, so it is a trust
    boundary, as the SDK's spool directory is: a file another user owns or may
    write is refused (that user could add a data set of their own, or take the
    admin token), and one others may read is used with a warning. A key given
    twice is refused: JSON keeps the last silently, which would drop a token.
    """
    source = f"--tokens-file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
        _check_owner(Path(path), source)
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise ConfigurationError(f"{source}: {exc.args[0]!r} is given twice; give each key once") from None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {source}: {exc}") from None
    return PlatformConfig.from_mapping(data, source)


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _check_owner(path: Path, source: str) -> None:
    """Refuse a tokens file another user owns or may write; warn when others may read it (POSIX only)."""
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None:
        return
    st = path.stat()
    if st.st_uid not in (geteuid(), 0):
        raise ConfigurationError(
            f"{source} belongs to another user (uid {st.st_uid}): it holds the tokens, so it must be yours or root's"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigurationError(
            f"{source} may be written by other users (mode {stat.S_IMODE(st.st_mode):04o}): run chmod 600 {path}"
        )
    if st.st_mode & stat.S_IROTH:
        _log.warning(
            "%s may be read by every user on this host (mode %04o) and holds the tokens: run chmod 600 %s",
            source,
            stat.S_IMODE(st.st_mode),
            path,
        )


def _mapping(value: Any, what: str, source: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{source}: {what} must be a JSON object, got {type(value).__name__}")
    return value


def _token(value: Any, what: str, source: str) -> str:
    """A bearer token: printable ASCII without spaces (RFC 6750's characters, near enough).

    A token with spaces around it, a control character or a non-ASCII letter
    loads but can never match what a client sends (headers are Latin-1 and
    trimmed), so its data set could silently never be written. The value is
    never echoed.
    """
    token = _text(value, what, source)
    if not all("!" <= c <= "~" for c in token):
        raise ConfigurationError(
            f"{source}: {what} must be printable ASCII with no spaces (letters, digits and -._~+/=)"
        )
    return token


def _text(value: Any, what: str, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{source}: {what} must be a non-empty string")
    return value


def name_problems(group: str, type_: str) -> list[str]:
    """Why ``<group>/<type>`` cannot name a data set (slugs of at most 64 characters); empty when it can."""
    found = (platform_name_problem("data group", group), platform_name_problem("data type", type_))
    return [problem for problem in found if problem is not None]


def _data_set_name(name: Any, source: str) -> tuple[str, str]:
    group, sep, type_ = str(name).partition("/")
    if not (isinstance(name, str) and sep and not name_problems(group, type_)):
        raise ConfigurationError(
            f"{source}: {name!r} is not a data set name: use '<group>/<type>', lower-case slugs "
            "of at most 64 characters, e.g. 'apply-for-a-licence/transactions'"
        )
    return group, type_


def _flag(settings: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = settings.get(key, default)
    if not isinstance(value, bool):
        raise ConfigurationError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _data_set(name: str, settings: Mapping[str, Any], source: str) -> DataSetConfig:
    group, type_ = _data_set_name(name, source)
    where = f"{source}: data_sets[{name!r}]"
    unknown = set(settings) - _DATA_SET_KEYS
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_DATA_SET_KEYS))}"
        )
    token = _token(settings["token"], f"data_sets[{name!r}].token", source) if "token" in settings else None
    label = settings.get("name", "")
    if not isinstance(label, str) or (label and not all(c.isascii() and (c.isalnum() or c in "-_") for c in label)):
        raise ConfigurationError(f"{where}: name must be ASCII letters, digits, - and _, got {label!r}")
    max_age = settings.get("max_age_expected", DEFAULT_MAX_AGE_EXPECTED)
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0):
        raise ConfigurationError(
            f"{where}: max_age_expected must be a whole number of seconds or null, got {max_age!r}"
        )
    return DataSetConfig(
        group,
        type_,
        token=token,
        name=label,
        raw_queries_allowed=_flag(settings, "raw_queries_allowed", True, where),
        published=_flag(settings, "published", True, where),
        realtime=_flag(settings, "realtime", False, where),
        max_age_expected=max_age,
    )


def _service(slug: str, info: Mapping[str, Any], source: str) -> ServiceConfig:
    where = f"{source}: services[{slug!r}]"
    if platform_name_problem("data group", slug) is not None:
        raise ConfigurationError(
            f"{where}: a service is named by its data group, a lower-case slug of at most 64 characters"
        )
    unknown = set(info) - _SERVICE_KEYS
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_SERVICE_KEYS))}"
        )
    texts: dict[str, str | None] = {}
    for key in ("title", "organisation", "description"):
        value = info.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{where}: {key} must be text, got {value!r}")
        if value is not None and has_lone_surrogate(value):  # no page and no JSON answer could be written
            raise ConfigurationError(f"{where}: {key} is not valid Unicode text (it holds a lone surrogate)")
        texts[key] = value
    start: date | None = None
    if info.get("start_date") is not None:
        try:
            start = date.fromisoformat(str(info["start_date"]))
        except ValueError:
            raise ConfigurationError(
                f"{where}: start_date must be a date YYYY-MM-DD, got {info['start_date']!r}"
            ) from None
    return ServiceConfig(slug, texts["title"], texts["organisation"], texts["description"], start)
