"""The ``perf-sdk`` command.

Each sub-command lives in its own module (``_serve.py``, ``_demo.py`` ...) that
exposes ``register(subparsers)``; this module only wires them and maps errors
to exit statuses: 0 success, 1 a run that finished with rejected records,
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from perf_sdk._errors import ConfigurationError, TransportError, ValidationError
from perf_sdk._version import __version__

#: Sub-command modules, imported only when their command runs (and for --help).
_COMMANDS = ("_serve", "_demo", "_kpis", "_backfill", "_spool", "_publish", "_check", "_mark", "_alerts", "_platform")

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perf-sdk",
        description="Measure and publish a government service's four mandatory KPIs.",
    )
    parser.add_argument("--version", action="version", version=f"perf-sdk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"perf_sdk.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"perf_sdk.cli.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(func(args))
    except ConfigurationError as exc:
        # In the command line's words: --secret, not secret=.
        print(f"perf-sdk: configuration error: {exc.cli_message}", file=sys.stderr)
        return EXIT_USAGE
    except TransportError as exc:  # the platform could not be read (each command says more where it can)
        print(f"perf-sdk: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        print(f"perf-sdk: invalid input: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("perf-sdk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
