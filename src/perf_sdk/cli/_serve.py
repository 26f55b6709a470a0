"""``perf-sdk serve``: run the local Performance Platform (write and read API).

Binds loopback by default: the platform is for development and demos, and its
one token would otherwise guard a server open to the network. The socket is
bound here, before uvicorn starts, so that a port in use is a clear
configuration error (exit 2) and ``--port 0`` can report the port it got.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
from pathlib import Path
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
            "(GET /data/<group>/<type>?group_by=...&period=...) backed by SQLite."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port to bind (default: 8000; 0 picks a free one)")
    p.add_argument("--db", help="SQLite file to keep the data in (default: in memory, lost at exit)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument(
        "--token",
        help="one bearer token for every data set (default: $PERF_SDK_TOKEN, else a generated one)",
    )
    auth.add_argument(
        "--tokens-file",
        help='JSON file {"<group>/<type>": "<token>", ...}: only those data sets exist, each with its token',
    )
    p.set_defaults(func=run)


def _read_tokens(path: str) -> dict[str, str]:
    try:
        tokens = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read --tokens-file {path}: {exc}") from None
    if not isinstance(tokens, dict) or not tokens:
        raise ConfigurationError(f'--tokens-file {path} must hold a JSON object {{"<group>/<type>": "<token>"}}')
    return tokens


def run(args: argparse.Namespace) -> int:
    from perf_sdk.platform import create_app  # needs the platform extra
    from perf_sdk.platform._server import serve

    tokens = _read_tokens(args.tokens_file) if args.tokens_file else None
    token: str | None = None
    generated = False
    if tokens is None:
        token = args.token or env_value("token")
        if not token:
            token, generated = secrets.token_urlsafe(24), True
    app = create_app(db=args.db or ":memory:", token=token, tokens=tokens)

    try:
        family = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((args.host, args.port), family=family)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {args.host}:{args.port}: {exc}; choose another --port") from None
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{port}"

    print(f"perf-sdk: Performance Platform listening on {url}")
    print(f"  storage: {args.db or 'in memory (lost at exit; keep it with --db PATH)'}")
    if tokens is not None:
        print(f"  data sets: {', '.join(sorted(tokens))} (tokens from {args.tokens_file})")
        example_set, example_token = sorted(tokens.items())[0]
    else:
        source = "generated" if generated else ("--token" if args.token else "$PERF_SDK_TOKEN")
        print(f"  token ({source}): {token}")
        example_set, example_token = "my-service/transactions", token or ""
    print("next:")
    print(f"  export PERF_SDK_ENDPOINT={url} PERF_SDK_TOKEN={example_token}")
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
