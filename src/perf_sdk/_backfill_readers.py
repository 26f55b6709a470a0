"""Reading history files for a backfill: formats, then the parsing of times, money and counts.

Two layers, so that each can be tested (and reused) alone:

* **Sources** turn a file into numbered raw rows without judging them: CSV with
  any of ``, ; TAB |`` as delimiter (UTF-8, with or without a BOM), JSONL, a
  JSON list (small files only: it is read whole), gzip-compressed versions of
  those (by suffix or by magic bytes), and Excel ``.xlsx`` (streamed with
  openpyxl's ``read_only`` mode, an optional extra). A file that is not what it
  claims (empty, binary, not UTF-8, a header with no column) fails at once with
  :class:`~perf_sdk.ConfigurationError` saying what was expected, because a
  wrong file discovered after a million rejected rows wastes an afternoon.
  The header is found below any title or notes rows (``header_test``). A
  workbook's zip parts are checked before openpyxl opens it
  (:func:`check_xlsx_parts`: a decompression bomb is refused, not inflated),
  and an Excel cell keeps what its number format says: a date cell is a
  :class:`~datetime.date`, a money cell a :class:`CurrencyCell`.
* **Value parsers** (:func:`parse_when`, :func:`parse_amount`,
  :func:`parse_count`, :func:`parse_rating`) turn one cell into what a record
  holds, or raise :class:`~perf_sdk.ValidationError` with the field, the value
  and the rule, which is what a reject file shows. Money goes through
  :class:`~decimal.Decimal`, never float, so ``£0.29`` is 29 pence.

Everything here streams: a source never holds more than one row (the JSON list
form excepted), so a 10-million-row file costs the same memory as a small one.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import gzip
import io
import itertools
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from perf_sdk._errors import ConfigurationError, ValidationError

__all__ = [
    "AMOUNT_UNITS",
    "DELIMITERS",
    "HEADER_SCAN_ROWS",
    "MAX_JSON_LIST_CHARS",
    "MAX_LINE_CHARS",
    "MAX_RECORD_LINES",
    "BrokenRow",
    "CurrencyCell",
    "HeaderTest",
    "Source",
    "check_xlsx_parts",
    "iter_records_file",
    "open_source",
    "parse_amount",
    "parse_count",
    "parse_rating",
    "parse_when",
    "resolve_timezone",
]

#: Delimiters a CSV file may use; the header line decides which.
DELIMITERS: Final = ",;\t|"
AMOUNT_UNITS: Final = ("pence", "pounds")
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZIP_MAGIC: Final = b"PK\x03\x04"
_SNIFF_BYTES: Final = 64 * 1024
#: Limits on an .xlsx workbook's zip parts, checked before openpyxl opens it (a decompression bomb,
#: a small file whose parts inflate to gigabytes, is refused instead of exhausting the host's memory).
#: openpyxl holds some parts whole (shared strings, styles), so those get a lower cap than the
#: worksheets it streams; a real export's parts compress 5-20:1, a bomb's hundreds or thousands to one.
XLSX_MAX_LOADED_PART_BYTES: Final = 100 * 1024 * 1024
XLSX_MAX_SHEET_PART_BYTES: Final = 2 * 1024 * 1024 * 1024
XLSX_MAX_RATIO: Final = 100
_XLSX_RATIO_FLOOR: Final = 16 * 1024 * 1024  # smaller parts may compress as well as they like
_UTC: Final = timezone.utc

RawRow = Any  # list[Any] for CSV and Excel, str (the line) for JSONL, dict for a JSON list or iterable
#: Decides whether a row of cells is the header (``open_source(header_test=...)``): files have title
#: and notes rows above it. Rows past the first ``HEADER_SCAN_ROWS`` non-blank ones are never tried.
HeaderTest = Callable[[Sequence[object]], bool]
HEADER_SCAN_ROWS: Final = 20
#: A quoted CSV value running over more lines than this is taken for an unterminated quote (a note
#: that long is not history): the row is rejected saying so, with the rows it swallowed.
MAX_RECORD_LINES: Final = 100
#: The longest line a CSV or JSONL file may have (characters). A line is read whole before it is split,
#: so without a bound a 400 KB gzip file of one endless line took 870 MB (a decompression bomb): a
#: record's line is a few hundred characters; a megabyte is no history.
MAX_LINE_CHARS: Final = 1 << 20
#: The most characters a JSON list file may hold: it is parsed whole (JSONL is streamed).
MAX_JSON_LIST_CHARS: Final = 32 << 20


@dataclass(frozen=True)
class BrokenRow:
    """A CSV row the reader could not split (an unterminated quote): its first line, and why.

    A source yields it in place of the row so that the row builder rejects it
    like any other broken row, with ``rule`` as the reason.
    """

    text: str
    rule: str
    delimiter: str = ","


def _swallowed(row: list[str], delimiter: str) -> tuple[BrokenRow, list[str]]:
    """A row whose last value ran from an unclosed quote to the end of the file: its line, and the lines after it.

    In a quoted value the csv module keeps the text as it was, but for a
    doubled quote (``""``), which it reads as one; and it leaves the quote at a
    lone one. So a value that never left its quote is the file's text with its
    quotes halved: doubled again and cut at the line ends, it is the lines the
    quote swallowed, to be read again as rows.
    """
    head, *rest = row[-1].replace('"', '""').split("\n")
    if rest and rest[-1] == "":
        rest.pop()
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="").writerow(row[:-1])
    line = (out.getvalue() + delimiter if len(row) > 1 else "") + '"' + head.rstrip("\r")
    rule = (
        f'has a quote (") that is never closed, so the rest of the file ({len(rest):,} lines) would be one value: '
        'close it, or double a quote inside a value (""); the lines after it are read as rows'
    )
    return BrokenRow(line, rule, delimiter), [part + "\n" for part in rest]


def _runaway_rule(lines: int, *, limit: bool = False) -> str:
    why = "past the csv module's limit on a value's length" if limit else f"over more than {MAX_RECORD_LINES} lines"
    return (
        f'has a quote (") that runs {why} ({lines:,} lines): an unterminated quote? The rows in those lines were '
        'not read: close the quote, or double a quote inside a value (""), and run again'
    )


def _first_line(row: list[str], delimiter: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="").writerow(row)
    return out.getvalue().split("\n", 1)[0].rstrip("\r")


@dataclass(frozen=True)
class CurrencyCell:
    """A number from a spreadsheet cell formatted as money (``"£"#,##0.00``): an amount in ``symbol``'s unit.

    The cell's format is the only place a workbook says that 1250.5 means
    pounds and not pence, so the reader keeps it with the number.
    """

    amount: int | float
    symbol: str
    number_format: str

    def __str__(self) -> str:
        return f"{self.symbol}{self.amount}"


# =============================================================================================
# Sources
# =============================================================================================


@dataclass
class Source:
    """One input's rows, numbered as a person looking at the file would number them.

    ``header`` holds the column names as written (for JSON, the keys of the
    first object). ``rows`` yields ``(row_number, raw)``: for CSV and Excel
    the row number counts the header as row 1 (a spreadsheet's numbering), for
    JSONL it is the line number. ``raw`` is a list of cells (CSV, Excel), the
    line's text (JSONL: parsed later, so a broken line is one rejected row,
    not a failed run) or a mapping (JSON list, an iterable of dicts).
    """

    kind: Literal["csv", "jsonl", "json", "xlsx", "iterable"]
    name: str
    header: list[str]
    rows: Iterator[tuple[int, RawRow]]
    delimiter: str = ","
    compressed: bool = False
    #: Bytes of the file as stored (compressed, if it is) read so far, and its size: progress and ETA.
    position: Any = field(default=lambda: 0, repr=False)
    size: int | None = None
    #: True when cells carry their own types (Excel): numbers in a time column are serial dates.
    typed_cells: bool = False
    #: The header's row number (rows above it: a title, notes, blank lines); JSONL: the first object's line.
    header_row: int = 1
    #: Excel: whether the cell at (row number, column index) is a formula with no saved value (read as blank).
    formula_without_value: Callable[[int, int], bool] | None = field(default=None, repr=False)
    _closers: list[Any] = field(default_factory=list, repr=False)

    def original(self, raw: RawRow) -> str:
        """The row as it was in the file, for the reject file."""
        if isinstance(raw, BrokenRow):
            return raw.text
        if isinstance(raw, str):
            return raw.rstrip("\r\n")
        if isinstance(raw, Mapping):
            return json.dumps(raw, default=str, ensure_ascii=False)
        out = io.StringIO()
        csv.writer(out, delimiter=self.delimiter, lineterminator="").writerow(
            ["" if v is None else str(v) for v in raw]
        )
        return out.getvalue()

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):  # closing must not hide the real error
                closer.close()
        self._closers.clear()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _expected() -> str:
    return (
        "expected a CSV file with a header row (delimiter , ; TAB or |, UTF-8), JSONL (one JSON object a line), "
        "either of those gzip-compressed (.gz), or an Excel .xlsx workbook"
    )


def open_source(
    path: str | os.PathLike[str], *, sheet: str | None = None, header_test: HeaderTest | None = None
) -> Source:
    """Open a history file, telling its format by its bytes first and its name second.

    ``header_test`` finds the header of a CSV file or a sheet below a title or
    notes: the first of the first :data:`HEADER_SCAN_ROWS` non-blank rows it
    accepts (when it accepts none, or without it, the first non-blank row).

    Raises :class:`ConfigurationError` for a missing, empty, binary or
    malformed file, naming what was expected.
    """
    file = Path(path)
    try:
        raw = file.open("rb")
    except OSError as exc:
        raise ConfigurationError(f"cannot read records file {str(file)!r}: {exc.strerror or exc}") from exc
    try:
        size = os.fstat(raw.fileno()).st_size
        head = raw.read(8)
        raw.seek(0)
        if not head:
            raise ConfigurationError(f"{file.name} is empty: {_expected()}")
        suffixes = [s.lower() for s in file.suffixes]
        if head.startswith(_ZIP_MAGIC) or (suffixes and suffixes[-1] in (".xlsx", ".xlsm")):
            raw.close()
            return _open_xlsx(file, sheet, header_test)
        stream: IO[bytes] = raw
        compressed = head.startswith(_GZIP_MAGIC)
        if compressed:
            stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
            if suffixes and suffixes[-1] == ".gz":
                suffixes = suffixes[:-1]
        elif suffixes and suffixes[-1] == ".gz":
            raise ConfigurationError(f"{file.name} is named .gz but is not gzip-compressed: {_expected()}")
        source = _open_text(stream, file.name, suffixes[-1] if suffixes else "", header_test)
        source.compressed = compressed
        source.size = size
        source.position = raw.tell
        source._closers.extend([raw] if stream is raw else [raw, stream])
        return source
    except BaseException:
        raw.close()
        raise


def _open_text(stream: IO[bytes], name: str, suffix: str, header_test: HeaderTest | None = None) -> Source:
    buffered: Any = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream, _SNIFF_BYTES)
    try:
        head = buffered.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigurationError(f"{name}: cannot decompress ({exc}): {_expected()}") from exc
    if not head.strip():
        raise ConfigurationError(f"{name} is empty (or begins with {len(head):,} bytes of blank space): {_expected()}")
    if b"\x00" in head:
        raise ConfigurationError(f"{name} looks binary (it holds NUL bytes), not text: {_expected()}")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{name} is not UTF-8 text (byte {exc.start}): save it as UTF-8 (Excel: 'CSV UTF-8'); {_expected()}"
        ) from None
    text = io.TextIOWrapper(buffered, encoding="utf-8-sig", newline="")
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first == b"[" or suffix == ".json":
        return _json_list_source(text, name)
    if first == b"{" or suffix in (".jsonl", ".ndjson"):
        return _jsonl_source(text, name)
    return _csv_source(text, name, header_test)


def _readline(text: io.TextIOWrapper, name: str, number: int) -> str:
    """Line ``number`` of ``text`` ('' at the end), refused past :data:`MAX_LINE_CHARS` before it grows further."""
    line = text.readline(MAX_LINE_CHARS + 1)
    if len(line) > MAX_LINE_CHARS:
        raise ConfigurationError(
            f"{name}: line {number} is longer than {MAX_LINE_CHARS:,} characters, which no row of records is "
            f"(a decompression bomb, or not a file of records): {_expected()}"
        )
    return line


def _lines(text: io.TextIOWrapper, name: str, after: int) -> Iterator[str]:
    """The lines of ``text`` after line ``after``, each bounded as :func:`_readline` bounds it."""
    number = after
    while True:
        number += 1
        line = _readline(text, name, number)
        if not line:
            return
        yield line


def _sniff_delimiter(line: str) -> str:
    """The delimiter the header uses: the candidate that occurs most often outside quotes."""
    unquoted = re.sub(r'"[^"]*"', "", line)
    counts = {d: unquoted.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_source(text: io.TextIOWrapper, name: str, header_test: HeaderTest | None = None) -> Source:
    scanned: list[str] = []  # lines read while looking for the header, fed back to the reader when not it
    lines_read = 0
    chosen: tuple[int, int, str, list[str]] | None = None  # (index in scanned, line number, delimiter, cells)
    first: tuple[int, int, str, list[str]] | None = None
    try:
        while len(scanned) < HEADER_SCAN_ROWS * 4:
            line = _readline(text, name, lines_read + 1)
            if not line:
                break
            lines_read += 1
            scanned.append(line)
            if not line.strip():
                continue
            delimiter = _sniff_delimiter(line)
            cells = next(csv.reader([line], delimiter=delimiter), [])
            candidate = (len(scanned) - 1, lines_read, delimiter, cells)
            if first is None:
                first = candidate
                if header_test is None:
                    break
            if header_test is not None and header_test(cells):
                chosen = candidate
                break
            if sum(1 for x in scanned if x.strip()) >= HEADER_SCAN_ROWS:
                break
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{name} is not UTF-8 text ({exc.reason}): {_expected()}") from None
    chosen = chosen or first
    if chosen is None or not any(h.strip() for h in chosen[3]):
        raise ConfigurationError(f"{name} has no header row: {_expected()}")
    index, header_number, delimiter, header = chosen
    lines: Iterable[str] = itertools.chain(scanned[index + 1 :], _lines(text, name, lines_read))

    def rows() -> Iterator[tuple[int, RawRow]]:
        """The rows, numbered; a quote that runs away with the rows after it is a :class:`BrokenRow` that says so.

        The reader's own count of lines read (``line_num``) tells a row that
        spans several lines, at no cost to the others; only such a row is
        looked at. Rows are numbered as records (a value over two lines is one
        row), as they always were: the numbers are part of the records' ids.
        """
        number = header_number
        reader = csv.reader(lines, delimiter=delimiter)
        read = 0

        def spanning(number: int, row: list[str], span: int) -> tuple[int, RawRow]:
            if span > MAX_RECORD_LINES:
                return number, BrokenRow(_first_line(row, delimiter), _runaway_rule(span), delimiter)
            return number, row

        while True:
            held: tuple[int, list[str], int] | None = None  # a row whose last value runs to the end: the last?
            try:
                for row in reader:
                    if held is not None:
                        yield spanning(*held)
                        held = None
                    number += 1
                    span = reader.line_num - read
                    read = reader.line_num
                    if span == 1:
                        if row:  # a blank line is no row
                            yield number, row
                    elif row and row[-1].endswith(("\n", "\r")):
                        held = (number, row, span)
                    else:
                        yield spanning(number, row, span)
            except UnicodeDecodeError as exc:
                raise ConfigurationError(f"{name}: not UTF-8 text after row {number} ({exc.reason})") from None
            except csv.Error as exc:
                if held is not None:
                    yield spanning(*held)
                span = reader.line_num - read
                read = reader.line_num
                if span < 2:
                    raise ConfigurationError(f"{name}: malformed CSV after row {number} ({exc})") from None
                number += 1
                yield number, BrokenRow("", _runaway_rule(span, limit=True), delimiter)
                continue  # the same reader, from the line after the one it stopped in
            if held is None:
                return
            # The last row, its last value still in quotes at the end of the file: the quote swallowed the rest.
            number = held[0]
            broken, rest = _swallowed(held[1], delimiter)
            yield number, broken
            reader = csv.reader(rest, delimiter=delimiter)
            read = 0

    return Source("csv", name, header, rows(), delimiter=delimiter, header_row=header_number)


def _jsonl_source(text: io.TextIOWrapper, name: str) -> Source:
    try:
        first_line = ""
        lines_before = 0
        while not first_line.strip():
            first_line = _readline(text, name, lines_before + 1)
            lines_before += 1
            if not first_line:
                raise ConfigurationError(f"{name} is empty: {_expected()}")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{name} is not UTF-8 text ({exc.reason}): {_expected()}") from None
    try:
        first = json.loads(first_line)
    except ValueError as exc:
        raise ConfigurationError(f"{name}: line {lines_before} is not JSON ({exc}): {_expected()}") from None
    except RecursionError:
        raise ConfigurationError(f"{name}: line {lines_before} is nested too deeply to read: {_expected()}") from None
    if not isinstance(first, dict):
        raise ConfigurationError(f"{name}: line {lines_before} is not a JSON object: {_expected()}")

    def rows() -> Iterator[tuple[int, RawRow]]:
        yield lines_before, first_line
        number = lines_before
        try:
            for line in _lines(text, name, lines_before):
                number += 1
                if line.strip():
                    yield number, line
        except UnicodeDecodeError as exc:
            raise ConfigurationError(f"{name}: not UTF-8 text after line {number} ({exc.reason})") from None

    return Source("jsonl", name, [str(k) for k in first], rows(), header_row=lines_before)


def _json_list_source(text: io.TextIOWrapper, name: str) -> Source:
    """A JSON list of objects: read whole, so for small files only (JSONL streams)."""
    try:
        content = text.read(MAX_JSON_LIST_CHARS + 1)
        if len(content) > MAX_JSON_LIST_CHARS:
            raise ConfigurationError(
                f"{name} holds more than {MAX_JSON_LIST_CHARS:,} characters, too many to read as one JSON list: "
                "write one record per line (JSONL) instead, which is read a line at a time"
            )
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{name} is not valid JSON ({exc}): {_expected()}") from None
    except RecursionError:
        raise ConfigurationError(f"{name} is nested too deeply to read: {_expected()}") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise ConfigurationError(f"{name} holds no records (a list of JSON objects): {_expected()}")
    header = [str(k) for k in data[0]]
    return Source("json", name, header, iter(list(enumerate(data, 1))))


def check_xlsx_parts(file: Path) -> None:
    """Refuse a workbook whose zip parts would inflate past the limits above, before anything inflates them.

    The sizes are the zip's central directory's own: Python's :mod:`zipfile`
    (which openpyxl reads through) never returns more than a part's declared
    size, so a part that lies about its size fails its CRC instead of growing.
    """
    try:
        with zipfile.ZipFile(file) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ConfigurationError(f"{file.name} is not a readable .xlsx workbook ({exc}): {_expected()}") from exc
    total = 0
    for part in parts:
        size = part.file_size
        total += size
        streamed = part.filename.startswith("xl/worksheets/")
        limit = XLSX_MAX_SHEET_PART_BYTES if streamed else XLSX_MAX_LOADED_PART_BYTES
        if size > limit:
            raise ConfigurationError(
                f"{file.name}: part {part.filename} inflates to {size:,} bytes, over the limit of {limit:,} bytes "
                "for an .xlsx part (a decompression bomb, or a workbook too large: export it as CSV instead)"
            )
        if size > _XLSX_RATIO_FLOOR and size > XLSX_MAX_RATIO * max(part.compress_size, 1):
            raise ConfigurationError(
                f"{file.name}: part {part.filename} inflates {size // max(part.compress_size, 1):,} times "
                f"({part.compress_size:,} to {size:,} bytes), over the limit of {XLSX_MAX_RATIO}:1 for an .xlsx part "
                "(a decompression bomb?): export it as CSV instead"
            )
    if total > XLSX_MAX_SHEET_PART_BYTES:
        raise ConfigurationError(
            f"{file.name} inflates to {total:,} bytes in all, over the limit of {XLSX_MAX_SHEET_PART_BYTES:,} bytes "
            "for an .xlsx workbook: export it as CSV instead"
        )


def _open_xlsx(file: Path, sheet: str | None, header_test: HeaderTest | None = None) -> Source:
    try:
        import openpyxl
    except ImportError as exc:
        raise ConfigurationError(
            f"reading Excel workbooks needs openpyxl: pip install 'perf-sdk[excel]' ({exc})"
        ) from exc
    check_xlsx_parts(file)
    try:
        book = openpyxl.load_workbook(file, read_only=True, data_only=True)
    except Exception as exc:
        raise ConfigurationError(f"{file.name} is not a readable .xlsx workbook ({exc}): {_expected()}") from exc
    try:
        ws = book[sheet] if sheet else book.worksheets[0]
    except (KeyError, IndexError):
        book.close()
        raise ConfigurationError(f"{file.name} has no sheet {sheet!r}; sheets: {book.sheetnames}") from None
    it = (tuple(_cell_value(c) for c in row) for row in ws.iter_rows())
    found = _find_sheet_header(it, header_test)
    if found is None:
        book.close()
        raise ConfigurationError(f"{file.name} (sheet {ws.title!r}) is empty: {_expected()}")
    header_number, header_row, replay, number = found
    width = len(header_row)
    while width and header_row[width - 1] in (None, ""):
        width -= 1
    header = ["" if c is None else str(c) for c in header_row[:width]]

    def rows() -> Iterator[tuple[int, RawRow]]:
        for n, row in itertools.chain(replay, ((k, r) for k, r in enumerate(it, number + 1))):
            cells = list(row[:width])
            if any(c not in (None, "") for c in cells):
                cells.extend([None] * (width - len(cells)))
                if any(c not in (None, "") for c in row[width:]):
                    cells.extend(row[width:])  # cells under no header: the row is refused for it
                yield n, cells

    # openpyxl reads the zip itself: no byte position to report, so the progress bar is indeterminate.
    source = Source("xlsx", file.name, header, rows(), typed_cells=True, header_row=header_number)
    source._closers.append(book)
    part = getattr(ws, "_worksheet_path", None)  # openpyxl's; without it, a blank is just blank
    if isinstance(part, str):
        formulas = _FormulaCells(file, part.lstrip("/"))
        source.formula_without_value = formulas
        source._closers.append(formulas)
    return source


class _FormulaCells:
    """Which cells of a sheet hold a formula and no saved value, read from the sheet's XML when first asked.

    openpyxl gives such a cell as empty (``data_only``: the value a program
    saved, and a program that writes workbooks without calculating them saves
    none), so the row is refused for a blank cell; this says why instead. The
    sheet is read again only if a blank is refused, streaming, row by row, in
    the order rejects come; a question about an earlier row starts over.
    """

    def __init__(self, file: Path, part: str) -> None:
        self._file = file
        self._part = part
        self._rows: Iterator[tuple[int, frozenset[int]]] | None = None
        self._row = 0
        self._columns: frozenset[int] = frozenset()

    def __call__(self, row: int, column: int) -> bool:
        """Whether the cell at ``row`` (the sheet's number) and ``column`` (0 for A) is such a formula."""
        if self._rows is None or row < self._row:
            self.close()
            self._rows = self._scan()
            self._row, self._columns = 0, frozenset()
        while self._row < row:
            try:
                self._row, self._columns = next(self._rows)
            except Exception:  # the end, or an unreadable part: no explanation, not a failed run
                self._row, self._columns = row + 1, frozenset()
                break
        return self._row == row and column in self._columns

    def _scan(self) -> Iterator[tuple[int, frozenset[int]]]:
        from openpyxl.utils.cell import coordinate_to_tuple
        from openpyxl.xml.functions import iterparse

        with zipfile.ZipFile(self._file) as archive, archive.open(self._part) as stream:
            number = 0
            parent = None
            for event, element in iterparse(stream, events=("start", "end")):
                tag = element.tag.rsplit("}", 1)[-1]
                if event == "start":
                    if tag == "sheetData":
                        parent = element
                    continue
                if tag != "row":
                    continue
                number = int(element.get("r") or number + 1)
                ns = element.tag[: -len(tag)]
                columns = set()
                column = 0
                for cell in element.iter(f"{ns}c"):
                    ref = cell.get("r")
                    column = coordinate_to_tuple(ref)[1] if ref else column + 1
                    if cell.find(f"{ns}f") is not None and not cell.findtext(f"{ns}v"):
                        columns.add(column - 1)
                if parent is not None:
                    parent.remove(element)  # a sheet of a million rows is read in constant memory
                if columns:
                    yield number, frozenset(columns)

    def close(self) -> None:
        if self._rows is not None:
            self._rows.close()  # type: ignore[attr-defined]
            self._rows = None


def _find_sheet_header(
    it: Iterator[tuple[Any, ...]], header_test: HeaderTest | None
) -> tuple[int, tuple[Any, ...], list[tuple[int, tuple[Any, ...]]], int] | None:
    """The header row of a sheet: the first non-blank row ``header_test`` accepts among the first few.

    Returns ``(its row number, its cells, rows after it already read, rows read)``,
    or ``None`` for an empty sheet. When no row passes, the first non-blank row
    is the header (so the column error names what the file has).
    """
    first: tuple[int, tuple[Any, ...]] | None = None
    looked: list[tuple[int, tuple[Any, ...]]] = []
    number = 0
    for row in it:
        number += 1
        if not any(c not in (None, "") for c in row):
            continue
        if first is None:
            first = (number, row)
        if header_test is None or header_test(list(row)):
            return number, row, [], number
        looked.append((number, row))
        if len(looked) >= HEADER_SCAN_ROWS:
            break
    if first is None:
        return None
    return first[0], first[1], [(n, r) for n, r in looked if n > first[0]], number


#: ``[$-409]`` and the like: a locale tag in a number format, not a currency.
_LOCALE_TAG_RE: Final = re.compile(r"\[\$-[0-9A-Fa-f]+\]")
_OTHER_CURRENCIES: Final = ("$", "€", "¥", "US$", "EUR", "USD")


def _cell_value(cell: Any) -> Any:
    """A cell's value with what its number format says: a date cell is a date, a money cell is money.

    openpyxl gives a date-formatted cell as a ``datetime`` at midnight; read as
    a moment, 1 April at midnight in London summer time is 31 March 23:00 UTC,
    the previous month. A cell whose format shows a date and no time holds a
    *day*, so it becomes a :class:`~datetime.date` (read as noon local, like a
    date written as text). A number formatted as a currency becomes a
    :class:`CurrencyCell`, so ``parse_amount`` reads it in that currency.
    """
    value = cell.value
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.hour == value.minute == value.second == value.microsecond == 0 and _shows_date_only(cell):
            return value.date()
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        symbol = _currency_of(getattr(cell, "number_format", None) or "General")
        if symbol is not None:
            return CurrencyCell(value, symbol, cell.number_format)
    return value


def _shows_date_only(cell: Any) -> bool:
    return _format_shows_date_only(getattr(cell, "number_format", None) or "General")


@functools.lru_cache(maxsize=256)
def _format_shows_date_only(number_format: str) -> bool:
    from openpyxl.styles.numbers import is_datetime

    return bool(is_datetime(number_format) == "date")


@functools.lru_cache(maxsize=256)
def _currency_of(number_format: str) -> str | None:
    """The currency a number format shows (``£`` for ``"£"#,##0.00`` or ``[$£-809]#,##0``), or ``None``."""
    if number_format == "General":
        return None
    text = _LOCALE_TAG_RE.sub("", number_format)
    if "£" in text:
        return "£"
    for symbol in _OTHER_CURRENCIES:
        if symbol in text:
            return symbol
    return None


def iterable_source(rows: Iterable[Mapping[str, Any]], name: str = "<iterable>") -> Source:
    """Rows a script already holds (dicts), numbered from 1, with the first row's keys as header."""
    iterator = iter(rows)
    try:
        first = next(iterator)
    except StopIteration:
        raise ConfigurationError("the rows to backfill are empty: expected mappings of column to value") from None
    if not isinstance(first, Mapping):
        raise ConfigurationError(f"rows must be mappings of column to value, not {type(first).__name__}")

    def numbered() -> Iterator[tuple[int, RawRow]]:
        yield 1, first
        yield from enumerate(iterator, 2)

    return Source("iterable", name, [str(k) for k in first], numbered())


def iter_records_file(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every row of a history file as a dict of column to value, empty cells left out.

    The plain reading ``perf_sdk.kpis(path=...)`` needs: same formats as a
    backfill (delimiters, BOM, gzip, JSONL, Excel), no column contract. A JSON
    line that is not an object raises :class:`ValidationError` (field ``row``).
    """
    with open_source(path) as source:
        header = source.header
        for number, raw in source.rows:
            if isinstance(raw, str):
                try:
                    obj = json.loads(raw)
                except (ValueError, RecursionError):
                    raise ValidationError("row", number, "a JSON object per line") from None
                if not isinstance(obj, dict):
                    raise ValidationError("row", number, "a JSON object per line")
                yield obj
            elif isinstance(raw, Mapping):
                yield dict(raw)
            elif isinstance(raw, list) and source.kind in ("csv", "xlsx"):
                yield {k: _plain(k, v) for k, v in zip(header, raw, strict=False) if k and v not in (None, "")}
            else:
                raise ValidationError("row", number, "a JSON object per line")


def _plain(column: str, value: Any) -> Any:
    """A typed cell as a plain value: a money cell in ``amount_pence`` as pence, elsewhere its number."""
    if isinstance(value, CurrencyCell):
        return parse_amount(value, field=column) if column == "amount_pence" else value.amount
    return value


# =============================================================================================
# Values
# =============================================================================================

WHEN_RULE: Final = (
    "must be a date or date-time: ISO 8601 (2026-03-31, 2026-03-31T14:05:00Z, 2026-03-31 14:05) "
    "or DD/MM/YYYY [HH:MM[:SS]]"
)
_UK_RE: Final = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_ISO_START_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}")
#: Excel's day 0 (its 1900 system counts a 29 February 1900 that never was, so serials from
#: 61 on, every date since March 1900, are days since 30 December 1899).
_EXCEL_EPOCH: Final = datetime(1899, 12, 30)
_EXCEL_MAX_SERIAL: Final = 2_958_465  # 9999-12-31


def resolve_timezone(name: str | tzinfo) -> tzinfo:
    """A zone by IANA name (``Europe/London``); a :class:`ConfigurationError` naming it otherwise."""
    if isinstance(name, tzinfo):
        return name
    if name.upper() in ("UTC", "Z"):
        return _UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(f"unknown time zone {name!r}: use an IANA name such as Europe/London") from exc


def localize(naive: datetime, zone: tzinfo, field: str, value: object) -> datetime:
    """A naive wall-clock time read in ``zone``.

    A time the clocks skipped (01:30 on the last Sunday of March in London)
    never happened, so it is refused; a time they repeated (01:30 on the last
    Sunday of October) is taken as its first occurrence (summer time), which is
    what a system logging local time would have meant before the change.
    """
    aware = naive.replace(tzinfo=zone, fold=0)
    if zone is _UTC:
        return aware
    if aware.astimezone(_UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise ValidationError(
            field, value, f"does not exist in {zone}: the clocks went forward past it (a daylight-saving gap)"
        )
    return aware


def parse_when(value: object, zone: tzinfo, *, field: str = "timestamp", serials: bool = False) -> datetime:
    """A cell naming a moment, as an aware datetime.

    Accepts ISO 8601 (with ``Z`` or an offset, or naive), a date alone,
    ``DD/MM/YYYY`` with an optional ``HH:MM[:SS]`` (UK order, never US),
    ``datetime``/``date`` objects (Excel cells) and, with ``serials``, Excel
    serial day numbers. Naive values are read in ``zone``.

    A date alone means *that day*, so it is read as noon in ``zone``: midnight
    London time in summer is 23:00 UTC the day before, and a daily total for
    1 April would otherwise count in March, the previous quarter and the
    previous financial year.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else localize(value, zone, field, value)
    if isinstance(value, date):
        return localize(datetime(value.year, value.month, value.day, 12), zone, field, value)
    if serials and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 1 <= value <= _EXCEL_MAX_SERIAL:
            raise ValidationError(field, value, "must be an Excel date (a serial day number from 1 to 2958465)")
        # Whole seconds: serials carry float noise (0.5416666 for 13:00).
        seconds = round(float(value) * 86400)
        epoch = _EXCEL_EPOCH if value >= 61 else _EXCEL_EPOCH + timedelta(days=1)
        naive = epoch + timedelta(seconds=seconds)
        return localize(naive, zone, field, value)
    if not isinstance(value, str):
        raise ValidationError(field, value, WHEN_RULE)
    text = value.strip()
    if _ISO_START_RE.match(text):
        iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
        try:
            if len(iso) == 10:
                day = date.fromisoformat(iso)
                return localize(datetime(day.year, day.month, day.day, 12), zone, field, value)
            moment = datetime.fromisoformat(iso)
        except ValueError:
            raise ValidationError(field, value, WHEN_RULE) from None
        return moment if moment.tzinfo is not None else localize(moment, zone, field, value)
    m = _UK_RE.match(text)
    if m is None:
        raise ValidationError(field, value, WHEN_RULE)
    d, mo, y, hh, mm, ss = m.groups()
    try:
        noon = hh is None  # a date alone: that day (see above)
        naive = datetime(int(y), int(mo), int(d), 12 if noon else int(hh), int(mm or 0), int(ss or 0))
    except ValueError:
        raise ValidationError(field, value, WHEN_RULE + " (no such day or time)") from None
    return localize(naive, zone, field, value)


PENCE_RULE: Final = (
    "must be a whole, non-negative number of pence (e.g. 125000 for £1,250.00); for pounds pass --amount-unit pounds"
)
POUNDS_RULE: Final = "must be a non-negative amount in pounds with at most 2 decimal places, e.g. £1,234.56 or 1234.5"
_PENCE_RE: Final = re.compile(r"^(?:\d+|\d{1,3}(?:,\d{3})+)$")
_POUNDS_RE: Final = re.compile(r"^£?\s*(\d+|\d{1,3}(?:,\d{3})+)(?:\.(\d{1,2}))?$")
_MAX_PENCE: Final = 10**14


def parse_amount(value: object, unit: str = "pence", *, field: str = "amount_pence") -> int:
    """Money as whole pence, exactly: ``£1,234.56`` (pounds) → 123456; ``1250`` (pence) → 1250.

    What the value says of itself wins over ``unit``: a spreadsheet cell
    formatted as pounds (a :class:`CurrencyCell`) and text that starts with
    ``£`` are pounds whatever the unit, because reading them as pence would
    load the figures a hundred times too small. A cell in another currency is
    refused.
    """
    if unit not in AMOUNT_UNITS:
        raise ConfigurationError(f"unknown amount unit {unit!r}: use one of {', '.join(AMOUNT_UNITS)}")
    if isinstance(value, CurrencyCell):
        if value.symbol != "£":
            raise ValidationError(
                field, str(value), f"is formatted as {value.symbol} ({value.number_format}): amounts must be in pounds"
            )
        result = _pounds(value.amount, value, field)
    elif unit == "pounds" or (isinstance(value, str) and value.lstrip().startswith("£")):
        result = _pounds(value, value, field)
    else:
        result = _pence(value, field)
    if result > _MAX_PENCE:
        raise ValidationError(field, value, f"is too large (at most {_MAX_PENCE} pence)")
    return result


def _pounds(value: object, original: object, field: str) -> int:
    if isinstance(value, bool):
        raise ValidationError(field, original, POUNDS_RULE)
    if isinstance(value, (int, float, Decimal)):
        try:
            amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        except InvalidOperation:
            raise ValidationError(field, original, POUNDS_RULE) from None
        pence = amount * 100
        if not pence.is_finite() or pence != pence.to_integral_value() or pence < 0:
            raise ValidationError(field, original, POUNDS_RULE)
        return int(pence)
    if isinstance(value, str):
        m = _POUNDS_RE.match(value.strip())
        if m is None:
            raise ValidationError(field, original, POUNDS_RULE)
        return int(m.group(1).replace(",", "")) * 100 + int((m.group(2) or "0").ljust(2, "0"))
    raise ValidationError(field, original, POUNDS_RULE)


def _pence(value: object, field: str) -> int:
    if isinstance(value, bool):
        raise ValidationError(field, value, PENCE_RULE)
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    elif isinstance(value, str) and _PENCE_RE.match(value.strip()):
        result = int(value.strip().replace(",", ""))
    else:
        raise ValidationError(field, value, PENCE_RULE)
    if result < 0:
        raise ValidationError(field, value, PENCE_RULE)
    return result


COUNT_RULE: Final = "must be a positive whole number (1 for one event, N for N aggregated)"
_COUNT_RE: Final = re.compile(r"^\s*(?:\d+|\d{1,3}(?:,\d{3})+)\s*$")


def parse_count(value: object, *, field: str = "count", zero: bool = False) -> int:
    """A positive whole number (``1,234`` accepted); with ``zero``, 0 too (a wide cell with nothing in it)."""
    if isinstance(value, str):
        if value.isdigit():  # the fast, common case
            number = int(value)
        elif _COUNT_RE.match(value):
            number = int(value.replace(",", ""))
        else:
            raise ValidationError(field, value, COUNT_RULE)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise ValidationError(field, value, COUNT_RULE)
    if number < (0 if zero else 1) or number > 1_000_000_000:
        raise ValidationError(field, value, COUNT_RULE)
    return number


RATING_RULE: Final = "must be a whole number from 1 (very dissatisfied) to 5 (very satisfied)"


def parse_rating(value: object, *, field: str = "rating") -> int:
    """A satisfaction rating, 1..5, from text (``"4"``) or a number (``4``, ``4.0``)."""
    number: int | None = None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or not 1 <= number <= 5:
        raise ValidationError(field, value, RATING_RULE)
    return number
