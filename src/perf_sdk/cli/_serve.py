"""``perf-sdk serve``: run the local Performance Platform (write and read API).

Binds loopback by default: the platform is for development and demos, and its
one token would otherwise guard a server open to the network. The socket is
bound here, before uvicorn starts, so that a port in use is a clear
configuration error (exit 2) and ``--port 0`` can report the port it got.

On start it prints one block of ``export`` lines, every variable a service
needs to report here (endpoint, token or tokens, service, and a freshly
generated secret for hashing transaction ids), so that a newcomer's next step
is one paste.
"""

from __future__ import annotations

import argparse
import secrets
import socket
from typing import Any

from perf_sdk._config import env_value
from perf_sdk._errors import ConfigurationError

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the local Performance Platform (write + read API) for development and demos",
        description=(
            "Serve the Performance Platform write API (POST/PUT /data/<group>/<type>) and read API "
            "(GET /data/<group>/<type>?group_by=...&period=...) backed by SQLite, or by PostgreSQL "
            "with --db postgresql://... (pip install 'perf-sdk[postgres]')."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port to bind (default: 8000; 0 picks a free one)")
    p.add_argument(
        "--db",
        help=(
            "where to keep the data: a SQLite file, or a postgresql://user@host/db URL (migrated at start) "
            "(default: $PERF_SDK_PLATFORM_DB, else in memory, lost at exit)"
        ),
    )
    auth = p.add_mutually_exclusive_group()
    auth.add_argument(
        "--token",
        help="one bearer token for every data set (default: $PERF_SDK_TOKEN, else a generated one)",
    )
    auth.add_argument(
        "--tokens-file",
        help=(
            'data-set configuration, JSON: {"<group>/<type>": "<token>", ...}, or {"data_sets": {...}, '
            '"services": {...}, "admin_token": ...} with per-data-set settings (see the local platform guide)'
        ),
    )
    p.set_defaults(func=run)


def export_block(url: str, tokens: dict[str, str], service: str, secret: str, *, token: str | None = None) -> list[str]:
    """The lines a newcomer pastes into the shell that runs their service.

    ``tokens`` maps a data type to its own token (a data-set configuration);
    ``token`` is the one token for every data set otherwise.
    """
    lines = [f"export PERF_SDK_ENDPOINT={url}"]
    if token is not None:
        lines.append(f"export PERF_SDK_TOKEN={token}")
    for data_type, value in sorted(tokens.items()):
        lines.append(f"export PERF_SDK_TOKEN_{data_type.upper().replace('-', '_')}={value}")
    lines.append(f"export PERF_SDK_SERVICE={service}")
    lines.append(f"export PERF_SDK_SECRET={secret}")
    return lines


def _storage(db: str | None) -> str:
    """Where the data is kept, as printed: a URL without its password."""
    if not db:
        return "in memory (lost at exit; keep it with --db PATH or --db postgresql://...)"
    if "://" in db:
        from perf_sdk.platform._postgres import redact

        return redact(db)
    return db


def run(args: argparse.Namespace) -> int:
    from perf_sdk.platform import create_app  # needs the platform extra
    from perf_sdk.platform._datasets import load_config
    from perf_sdk.platform._server import serve

    config = load_config(args.tokens_file) if args.tokens_file else None
    tokens = None if config is None else {d.path: config.write_token(d) or "" for d in config.data_sets.values()}
    token: str | None = None
    generated = False
    if config is None:
        token = args.token or env_value("token")
        if not token:
            token, generated = secrets.token_urlsafe(24), True
    db = args.db or env_value("platform_db")
    if config is not None:
        app = create_app(db=db or ":memory:", config=config)
    else:
        app = create_app(db=db or ":memory:", token=token)

    try:
        family = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((args.host, args.port), family=family)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {args.host}:{args.port}: {exc}; choose another --port") from None
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{port}"

    print(f"perf-sdk: Performance Platform listening on {url}")
    print(f"  storage: {_storage(db)}")
    if config is not None and tokens:
        print(f"  data sets: {', '.join(sorted(tokens))} (from {args.tokens_file})")
        example_set, example_token = sorted(tokens.items())[0]
        service = example_set.partition("/")[0]
        per_type = {path.partition("/")[2]: value for path, value in tokens.items() if path.startswith(service + "/")}
        block = export_block(url, per_type, service, secrets.token_urlsafe(32), token=config.token)
    else:
        shared = token if token is not None else (config.token if config is not None else None) or ""
        if config is None:
            source = "generated" if generated else ("--token" if args.token else "$PERF_SDK_TOKEN")
            print(f"  token ({source}): {shared}")
        example_set, example_token = "my-service/transactions", shared
        block = export_block(url, {}, "my-service", secrets.token_urlsafe(32), token=shared)
    print()
    print("Paste into the shell that runs your service (PERF_SDK_SECRET is freshly generated: keep it, it keys")
    print("the hashes of transaction ids; change PERF_SDK_SERVICE to your service's slug):")
    print()
    for line in block:
        print(f"  {line}")
    print()
    print("Then try it:")
    print(
        f"  curl -X POST {url}/data/{example_set} -H 'Authorization: Bearer {example_token}' "
        "-H 'Content-Type: application/json' "
        """-d '{"_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 1}'"""
    )
    print(f"  curl '{url}/data/{example_set}?group_by=stage&period=month&collect=count:sum'")
    print("  Ctrl-C stops the server.", flush=True)

    try:
        serve(app, sock)
    finally:
        sock.close()
        app.state.store.close()
    return 0
