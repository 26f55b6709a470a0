"""The documentation site builds cleanly, and its reference pages match the code.

``mkdocs build --strict`` fails on any warning: a broken link or anchor, a page
missing from the navigation, an API object mkdocstrings cannot find. The two
reference checks catch drift the build cannot see: a command-line option or a
setting added, renamed or re-defaulted in the code but not in the docs.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="the docs toolchain (mkdocstrings with pymdown-extensions 13) needs Python 3.11+; CI builds the site on 3.11",
)
@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="mkdocs and mkdocstrings are not installed (the dev extra)",
)
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "reference" / "api" / "index.html").is_file()


# --- the command-line reference -----------------------------------------------------------------


def _commands() -> dict[str, set[str]]:
    """``"perf-sdk spool status"`` -> its visible options (and positional metavars)."""
    from perf_sdk.cli import build_parser

    found: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        options: set[str] = set()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    walk(subparser, f"{name} {sub}")
            elif isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            elif action.option_strings:
                options.update(o for o in action.option_strings if o.startswith("--"))
            else:
                options.add(str(action.metavar or action.dest))
        found[name] = options

    walk(build_parser(), "perf-sdk")
    return found


def _sections(text: str) -> dict[str, str]:
    """Headings ``## perf-sdk kpis`` / ``### perf-sdk spool status`` -> the text under them."""
    parts = re.split(r"^#{2,3} (perf-sdk[a-z -]*)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_cli_reference_documents_every_command_and_option() -> None:
    sections = _sections((DOCS / "reference" / "cli.md").read_text(encoding="utf-8"))
    commands = _commands()
    leaves = {name: opts for name, opts in commands.items() if not any(o.startswith(name + " ") for o in commands)}
    missing_sections = sorted(set(leaves) - set(sections))
    assert not missing_sections, f"reference/cli.md has no section for {missing_sections}"
    for name, options in leaves.items():
        section = sections[name]
        rows = {m.group(1) for m in re.finditer(r"^\| `([A-Z-][A-Za-z_-]*)", section, flags=re.MULTILINE)}
        missing = sorted(options - rows)
        assert not missing, f"{name}: options missing from reference/cli.md: {missing}"
        stale = sorted(o for o in rows if o.startswith("--") and o not in options)
        assert not stale, f"{name}: reference/cli.md documents options the command does not have: {stale}"


# --- the configuration reference ----------------------------------------------------------------


def _configuration_rows() -> dict[str, tuple[str, str]]:
    """Argument -> (environment variable cell, default cell) from the settings tables."""
    text = (DOCS / "reference" / "configuration.md").read_text(encoding="utf-8")
    rows = {}
    for m in re.finditer(r"^\| `([a-z_]+)` \| ([^|]+) \| ([^|]+) \|", text, flags=re.MULTILINE):
        rows[m.group(1)] = (m.group(2).strip(), m.group(3).strip())
    return rows


def test_configuration_reference_documents_every_setting_its_variable_and_default() -> None:
    from pydantic_core import PydanticUndefined

    from perf_sdk._config import ENV, Settings

    rows = _configuration_rows()
    missing = sorted(set(Settings.model_fields) - set(rows))
    assert not missing, f"reference/configuration.md does not document {missing}"
    for name, field in Settings.model_fields.items():
        variable, default = rows[name]
        if name in ENV:
            assert f"`{ENV[name]}`" == variable, f"{name}: the variable is {ENV[name]}, the docs say {variable}"
        elif name != "tokens":
            assert variable == "—", f"{name} has no environment variable, the docs say {variable}"
        if field.default is PydanticUndefined or not default.startswith("`"):
            continue  # required, or computed (spool_dir): described in words
        documented = ast.literal_eval(default.strip("`"))
        assert documented == field.default, f"{name}: the default is {field.default!r}, the docs say {default}"
