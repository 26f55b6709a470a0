"""Coverage-guided fuzzing (atheris) of perf_sdk's doors: ``python -m tests.reliability.atheris_harness -atheris_runs=N``.

Each input is split three ways by a FuzzedDataProvider and fed to:

* the platform's request parsing: a body through ``json`` and backdrop's record
  rules, and a query string through the read API's parser;
* backfill's date and money parsers;
* record building and validation, as a strict recording call would run them.

The only exceptions allowed are each door's own clear errors (``QueryError``,
``ValidationError``); anything else is a crash, and atheris reports it.
"""

from __future__ import annotations

import contextlib
import json
import sys
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import atheris

from perf_sdk._backfill_readers import parse_amount, parse_when
from perf_sdk._errors import ValidationError
from perf_sdk._protocol import record_problems
from perf_sdk._records import RecordBuilder, validate_records
from perf_sdk.platform._query import QueryError, parse_query

LONDON = ZoneInfo("Europe/London")
BUILDER = RecordBuilder("fuzz-service", "fuzz-secret-0123456789")


def _check_clear(error: ValidationError) -> None:
    """A refusal must say which field and which rule."""
    if not (error.field and error.rule):
        raise AssertionError(f"unclear validation error: {error!r}")


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    body = fdp.ConsumeUnicodeNoSurrogates(200)
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    for record in parsed if isinstance(parsed, list) else [parsed]:
        problems = record_problems(record)
        assert isinstance(problems, list)
    with contextlib.suppress(QueryError):
        parse_query(parse_qsl(fdp.ConsumeUnicodeNoSurrogates(120)))
    text = fdp.ConsumeUnicodeNoSurrogates(40)
    for parse in (lambda: parse_when(text, LONDON), lambda: parse_amount(text, "pounds"), lambda: parse_amount(text)):
        try:
            parse()
        except ValidationError as exc:
            _check_clear(exc)
    try:
        record = BUILDER.transaction(
            fdp.PickValueInList(["started", "completed", "x"]),
            fdp.ConsumeUnicodeNoSurrogates(20) or None,
            fdp.ConsumeUnicodeNoSurrogates(12),
            fdp.ConsumeFloat(),
            fdp.ConsumeIntInRange(-2, 2**40),
        )
        if record is not None:
            validate_records("transactions", [record])
    except ValidationError as exc:
        _check_clear(exc)


if __name__ == "__main__":
    # instrument_all, not instrument_imports: an editable install's import hook hides modules from the latter.
    atheris.instrument_all()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
