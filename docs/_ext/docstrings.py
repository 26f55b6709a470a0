"""A griffe extension for the API reference: perf_sdk's reST-flavoured docstrings, read as Markdown.

The source's docstrings use Sphinx roles (``:class:`~perf_sdk.Tracker```) and
doctest blocks (``>>> ...``). Markdown would show the roles literally and turn
``>>>`` lines into nested quotations, so before rendering each role becomes
inline code and each doctest block a fenced ``pycon`` block. The source is not
changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":\w+:`(~?)([^`]+)`")


def _convert(text: str) -> str:
    text = _ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text)
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            block = []
            while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
                block.append(lines[i][len(indent) :])
                i += 1
            out += [f"{indent}```pycon", *(indent + b for b in block), f"{indent}```"]
            continue
        if line.rstrip().endswith("::") and i + 1 < len(lines):
            # reST literal block: "text::" followed by an indented block.
            out.append(line.rstrip()[:-1])
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())] if i < len(lines) else ""
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(indent)) and indent:
                block.append(lines[i][len(indent) :])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += ["", "```", *block, "```", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class ReSTToMarkdown(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _convert(obj.docstring.value)
