"""CSV the SDK writes, safe to open in a spreadsheet.

Reject files echo third parties' cells, and KPI exports and published files
carry labels a person typed; an operator opens them in Excel or LibreOffice.
A cell that begins with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage
return, which some spreadsheets skip before looking for one of those) is read
as a formula there: ``=HYPERLINK(...)`` phones home, ``+cmd|' /C calc'!A0``
runs a program after a warning most people click through. This is CSV (or
formula) injection.

Following OWASP's advice, such a cell is written with a single quote in front
(``'=HYPERLINK(...)``): spreadsheets show the text, do not evaluate it, and a
reader of the raw file still sees the original after the quote. Quoting of
commas and double quotes is left to :mod:`csv`, which already does it.

What stays as it is, because it cannot be a formula and changing it would
break the file's numbers:

* ``int`` and ``float`` values (``-5`` stays ``-5``), and ``None`` (an empty cell);
* strings that are a plain decimal number (``"-0.05"``, ``"+3"``, ``"1e-3"``):
  a spreadsheet reads them as that number, and the KPI export writes its
  changes that way.

Every CSV the SDK writes goes through :func:`writer` or :class:`DictWriter`
(or, for a cell built by hand, :func:`neutralise`); the rule lives here once.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final, Protocol

__all__ = ["FORMULA_PREFIXES", "DictWriter", "SafeWriter", "neutralise", "neutralise_row", "writer"]

#: First characters that make a spreadsheet read a cell as a formula (OWASP's list).
FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class _Writable(Protocol):
    def write(self, text: str, /) -> object: ...


def neutralise(value: object) -> object:
    """``value`` as a cell a spreadsheet will not evaluate: a leading ``'`` where it could start a formula.

    Numbers and ``None`` come back unchanged; anything else is written as its
    ``str()``, so an object whose text starts with ``=`` is caught too.

    >>> neutralise("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> neutralise(-5), neutralise("-0.05"), neutralise("caf\\u00e9")
    (-5, '-0.05', 'café')
    """
    if value is None or isinstance(value, (int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def neutralise_row(row: Iterable[object]) -> list[object]:
    """Every cell of ``row`` through :func:`neutralise`."""
    return [neutralise(value) for value in row]


class SafeWriter:
    """A :func:`csv.writer` whose every cell goes through :func:`neutralise`."""

    def __init__(self, handle: _Writable, **fmtparams: Any) -> None:
        self._writer = csv.writer(handle, **fmtparams)

    def writerow(self, row: Iterable[object]) -> object:
        return self._writer.writerow(neutralise_row(row))

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(handle: _Writable, **fmtparams: Any) -> SafeWriter:
    """Like :func:`csv.writer` (same formatting parameters), with formula cells neutralised."""
    return SafeWriter(handle, **fmtparams)


class DictWriter:
    """Like :class:`csv.DictWriter`, with formula cells neutralised (header included).

    ``extrasaction`` and ``restval`` mean what they mean there; a missing key
    is ``restval`` (default empty).
    """

    def __init__(
        self,
        handle: _Writable,
        fieldnames: Collection[str],
        *,
        restval: object = "",
        extrasaction: str = "raise",
        **fmtparams: Any,
    ) -> None:
        if extrasaction not in ("raise", "ignore"):
            raise ValueError(f"extrasaction must be 'raise' or 'ignore', not {extrasaction!r}")
        self.fieldnames = list(fieldnames)
        self._known = frozenset(self.fieldnames)
        self._restval = restval
        self._raise_on_extra = extrasaction == "raise"
        self._writer = SafeWriter(handle, **fmtparams)

    def writeheader(self) -> object:
        return self._writer.writerow(self.fieldnames)

    def writerow(self, rowdict: Mapping[str, object]) -> object:
        if self._raise_on_extra:
            extra = [key for key in rowdict if key not in self._known]
            if extra:
                raise ValueError(f"dict contains fields not in fieldnames: {', '.join(map(repr, extra))}")
        return self._writer.writerow([rowdict.get(key, self._restval) for key in self.fieldnames])

    def writerows(self, rowdicts: Iterable[Mapping[str, object]]) -> None:
        for rowdict in rowdicts:
            self.writerow(rowdict)
