"""PromQL pieces a user gives ``perf-sdk alerts prometheus``, checked before they are pasted into a rule.

A ``--by`` label or a ``--selector`` goes into every rule's expression as it is
written, so anything but label names and label matchers could change what a
rule means (``job) (up) or on() vector(1) #`` made one that always fires) or
make a rule file promtool refuses. :func:`parse_selector` reads the matchers
as PromQL does (Go's string escapes; for ``=~`` / ``!~`` a regular expression
RE2 would take, as far as Python's ``re`` can tell) and writes them back in
one spelling; :func:`check_labels` takes label names only. Each refusal is a
:class:`~perf_sdk.ConfigurationError` naming the argument and, at the command
line, the flag.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import Final

from perf_sdk._errors import ConfigurationError

__all__ = ["check_labels", "error", "parse_selector"]

#: A Prometheus label name (the classic rule, which every Prometheus version accepts unquoted).
_LABEL: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LABEL_RULE: Final = "a label name: letters, digits and '_', not starting with a digit"
_SELECTOR_RULE: Final = 'comma-separated label matchers without braces, e.g. service_name="apply", env!~"dev|test"'
#: One escape inside a double-quoted PromQL string (Go's rules; ``\'`` is not one of them).
_ESCAPES: Final = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
#: Constructs Go's RE2 refuses though Python's ``re`` accepts them: lookaround and (once each escape is
#: replaced by ``_``, a back-reference by NUL) back-references.
_PERL_ONLY: Final = re.compile(r"\(\?(?:[=!]|<[=!]|P=)|\x00")
#: The letters and digits RE2 takes after a backslash (any ASCII punctuation may be escaped too).
_RE2_ESCAPES: Final = frozenset("aftnrvxABbzdDsSwWpPQE01234567")
_RE2_ONLY: Final = re.compile(r"\\(\\|z|[pP](?:\{[^}]*\}|[A-Za-z])?|x\{[0-9A-Fa-f]*\})")
_AS_PYTHON: Final = {"z": r"\Z", "p": r"\d", "P": r"\d", "x": r"\x41"}


def check_labels(by: Sequence[str]) -> list[str]:
    """The grouping labels, each a plain label name (anything else would be pasted into the PromQL)."""
    if isinstance(by, str):
        raise error("by", "--by", by, "a sequence of label names, e.g. ('job', 'instance'), not one string")
    labels = list(by)
    for label in labels:
        if not isinstance(label, str) or not _LABEL.fullmatch(label):
            raise error("by", "--by", label, _LABEL_RULE)
    return labels


def parse_selector(selector: str) -> str:
    """``selector`` checked as PromQL label matchers and written back as ``label op "value", ...``.

    Each matcher is a label name, one of ``=``, ``!=``, ``=~``, ``!~`` and a double-quoted PromQL string
    with Go's escapes; the value must be UTF-8 once unescaped and, for a regular expression, parse.
    Spaces and tabs may stand between the parts. Nothing else passes: no braces, line breaks (``\\r``,
    NEL, U+2028), control characters or PromQL outside the matchers.
    """
    if not isinstance(selector, str):
        raise error("selector", "--selector", selector, _SELECTOR_RULE)
    matchers: list[str] = []
    i, n = 0, len(selector)

    def skip(at: int) -> int:
        while at < n and selector[at] in " \t":
            at += 1
        return at

    def refuse(why: str) -> ConfigurationError:
        return error("selector", "--selector", selector, f"{why}; write {_SELECTOR_RULE}")

    i = skip(0)
    if i == n:
        return ""
    if selector[i] == "{":
        raise refuse("braces: the rules add them")
    while True:
        label = _LABEL.match(selector, i)
        if label is None:
            raise refuse(f"expected a label name at character {i + 1}")
        if label.group() == "__name__":
            raise refuse("the metric name is the rule's own, not a matcher (__name__)")
        i = skip(label.end())
        op = next((o for o in ("=~", "!~", "!=", "=") if selector.startswith(o, i)), None)
        if op is None:
            raise refuse(f"expected =, !=, =~ or !~ after {label.group()!r}")
        i = skip(i + len(op))
        end, value = _promql_string(selector, i, refuse)
        if op in ("=~", "!~"):
            _check_regex(value, refuse)
        matchers.append(f"{label.group()}{op}{selector[i:end]}")
        i = skip(end)
        if i == n:
            return ", ".join(matchers)
        if selector[i] != ",":
            raise refuse(f"expected ',' or the end after the matcher for {label.group()!r}, at character {i + 1}")
        i = skip(i + 1)
        if i == n:
            raise refuse("a trailing ','")


def _promql_string(text: str, i: int, refuse: Callable[[str], ConfigurationError]) -> tuple[int, str]:
    """The double-quoted string at ``text[i]``: the index just past it and its value."""
    if i >= len(text) or text[i] != '"':
        raise refuse(f"expected a double-quoted value at character {i + 1}")
    out = bytearray()
    i += 1
    while True:
        if i >= len(text):
            raise refuse('a value without its closing "')
        ch = text[i]
        if ch == '"':
            break
        if ch != "\\":
            if not _printable(ch):
                raise refuse(f"{ch!r} inside a value: write it as an escape such as \\n, \\t or \\u0085")
            out += ch.encode("utf-8")
            i += 1
            continue
        esc = text[i + 1 : i + 2]
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 2
            continue
        if esc and esc in "01234567":
            digits, base, limit = 3, 8, 0xFF
        else:
            digits, base, limit = {"x": (2, 16, 0xFF), "u": (4, 16, 0x10FFFF), "U": (8, 16, 0x10FFFF)}.get(
                esc, (0, 0, 0)
            )
        if not digits:
            raise refuse(f"unknown escape \\{esc} in a value (a trailing backslash?)" if esc else "a value ends in \\")
        start = i + 1 if base == 8 else i + 2
        chunk = text[start : start + digits]
        hexdigits = "0123456789abcdefABCDEF" if base == 16 else "01234567"
        if len(chunk) != digits or any(c not in hexdigits for c in chunk):
            raise refuse(f"escape \\{text[i + 1 : start + digits]} needs {digits} digits")
        code = int(chunk, base)
        if code > limit or 0xD800 <= code < 0xE000:
            raise refuse(f"escape \\{text[i + 1 : start + digits]} is not a Unicode code point")
        out += bytes([code]) if limit == 0xFF else chr(code).encode("utf-8")
        i = start + digits
    try:
        value = out.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse("a value whose escapes do not make UTF-8") from None
    return i + 1, value


def _printable(ch: str) -> bool:
    """A character YAML and PromQL both take as it is: no control characters or line breaks."""
    code = ord(ch)
    if code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code < 0xE000:
        return False
    return code not in (0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF)


def _check_regex(value: str, refuse: Callable[[str], ConfigurationError]) -> None:
    """Refuse a regular expression promtool (Go's RE2) would refuse, as far as Python can tell."""
    for escape in re.finditer(r"\\([\s\S]?)", value):
        char = escape.group(1)
        if not (char and char.isascii() and (not char.isalnum() or char in _RE2_ESCAPES)):
            raise refuse(f"{value!r}: \\{char} is not an escape Prometheus's regular expressions know")
    escapes_hidden = re.sub(r"\\([\s\S])", lambda m: "\x00" if m.group(1) in "123456789" else "_", value)
    if _PERL_ONLY.search(escapes_hidden):
        raise refuse(f"{value!r} uses lookaround or a back-reference, which Prometheus's regular expressions lack")
    # RE2's \z, \pL / \p{Greek} and \x{41}, which Python lacks, become Python's nearest (\Z is refused in a
    # class as RE2 refuses \z there), so Python checks the rest of the expression.
    python = _RE2_ONLY.sub(lambda m: _AS_PYTHON.get(m.group(1)[0], m.group()), value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(python)
    except re.error as exc:
        if not re.match(r"bad escape \\[QE]", str(exc)):  # RE2's \Q...\E quoting: Python has none
            raise refuse(f"{value!r} is not a regular expression ({exc})") from None


def error(field: str, flag: str, value: object, rule: str) -> ConfigurationError:
    return ConfigurationError(f"{field}={value!r}: {rule}", cli_message=f"{flag} {value!r}: {rule}")
